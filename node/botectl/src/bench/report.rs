//! What a bench run measured ([`RunReport`], [`BenchReport`]) and how it is
//! shown: latency percentiles from per-message samples, a human-readable
//! table and a JSON rendering (written by hand: the report is flat).

use std::fmt::{self, Write as _};
use std::time::Duration;

/// Round-trip or one-way latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub samples: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Latency {
    /// Percentiles (nearest rank) of samples in nanoseconds; `None` when empty.
    pub fn from_nanos(mut samples: Vec<u64>) -> Option<Latency> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let rank = |q: f64| {
            let i = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i] as f64 / 1000.0
        };
        Some(Latency {
            samples: samples.len() as u64,
            p50_us: rank(0.50),
            p99_us: rank(0.99),
            p999_us: rank(0.999),
            max_us: samples[samples.len() - 1] as f64 / 1000.0,
        })
    }
}

/// What the spawned (or `--router-pid`) router process used during a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RouterUsage {
    /// User + system CPU time spent during the run.
    pub cpu_seconds: f64,
    /// `cpu_seconds` per message received, in microseconds.
    pub cpu_us_per_message: f64,
    /// Resident set size before the run (kB, VmRSS).
    pub rss_before_kb: u64,
    /// Peak resident set size of the process so far (kB, VmHWM).
    pub peak_rss_kb: u64,
    /// Routers on the path (all spawned routers of a chain).
    pub routers: usize,
    /// User + system CPU time of all `routers` during the run.
    pub all_cpu_seconds: f64,
}

/// One pass: one path (direct or through routers), one mode.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    /// "direct", or "router 127.0.0.1:5672" / "routers A -> B".
    pub path: String,
    /// "throughput" or "rr".
    pub mode: &'static str,
    pub presettled: bool,
    pub senders: usize,
    pub receivers: usize,
    /// Messages the run was asked to move (requests in rr mode).
    pub messages: u64,
    /// Encoded size of one message (bare message, as sent).
    pub message_bytes: usize,
    /// Messages the senders wrote (requests in rr mode).
    pub sent: u64,
    /// Messages the receivers got (replies in rr mode).
    pub received: u64,
    /// Sender-side outcomes of unsettled sends (all zero when presettled).
    pub accepted: u64,
    pub released: u64,
    pub modified: u64,
    pub rejected: u64,
    /// Presettled: sent - received.
    pub dropped: u64,
    /// From the first send to the last receive (and, unsettled, the last
    /// settlement at the sender).
    pub elapsed: Duration,
    pub msgs_per_sec: f64,
    pub mb_per_sec: f64,
    /// Throughput: send-to-receive latency; rr: the round trip.
    pub latency: Option<Latency>,
    pub router: Option<RouterUsage>,
    /// User + system CPU time of the bench's own process (the clients)
    /// during the run.
    pub clients_cpu_seconds: f64,
    /// The round (`--runs`) this run belongs to, from 0.
    pub round: usize,
    /// The sampling ratio of a traced run (`--tracing`).
    pub tracing: Option<f64>,
    /// Why the run is incomplete (missing, dropped or refused messages,
    /// a timeout). Empty for a good run.
    pub problems: Vec<String>,
}

impl RunReport {
    pub fn is_complete(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Everything one `botectl bench` invocation measured.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    pub runs: Vec<RunReport>,
    /// `--compare`: routed msgs/s over direct msgs/s (the median over the
    /// rounds of `--runs`).
    pub ratio: Option<f64>,
}

/// The median of `values` (sorted in place); `None` when empty.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

/// A traced run set against the untraced routed run of its round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TracedPair {
    pub round: usize,
    pub ratio: f64,
    /// Traced msgs/s over untraced msgs/s.
    pub throughput: f64,
    /// Router CPU per message (first router), untraced then traced (µs).
    pub router_cpu_us: Option<(f64, f64)>,
    /// CPU per message of all routers, untraced then traced (µs).
    pub routers_cpu_us: Option<(f64, f64)>,
    /// Client (bench process) CPU per message, untraced then traced (µs).
    pub clients_cpu_us: (f64, f64),
}

/// The median, minimum and maximum of some figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut v: Vec<f64> = values.into_iter().collect();
        let median = median(&mut v)?;
        Some(Spread {
            median,
            min: v[0],
            max: v[v.len() - 1],
        })
    }
}

impl fmt::Display for Spread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3} ({:.3}-{:.3})", self.median, self.min, self.max)
    }
}

fn per_message(cpu_seconds: f64, received: u64) -> f64 {
    if received == 0 {
        0.0
    } else {
        cpu_seconds * 1e6 / received as f64
    }
}

impl BenchReport {
    pub fn is_complete(&self) -> bool {
        self.runs.iter().all(RunReport::is_complete)
    }

    /// Each traced run against the untraced routed run of the same round.
    pub fn traced_pairs(&self) -> Vec<TracedPair> {
        let mut pairs = Vec::new();
        for traced in &self.runs {
            let Some(ratio) = traced.tracing else {
                continue;
            };
            let Some(base) = self
                .runs
                .iter()
                .find(|r| r.round == traced.round && r.tracing.is_none() && r.path != "direct")
            else {
                continue;
            };
            if base.msgs_per_sec <= 0.0 {
                continue;
            }
            let both = |f: &dyn Fn(&RouterUsage) -> f64| match (&base.router, &traced.router) {
                (Some(b), Some(t)) => Some((
                    per_message(f(b), base.received),
                    per_message(f(t), traced.received),
                )),
                _ => None,
            };
            pairs.push(TracedPair {
                round: traced.round,
                ratio,
                throughput: traced.msgs_per_sec / base.msgs_per_sec,
                router_cpu_us: both(&|u| u.cpu_seconds),
                routers_cpu_us: both(&|u| u.all_cpu_seconds),
                clients_cpu_us: (
                    per_message(base.clients_cpu_seconds, base.received),
                    per_message(traced.clients_cpu_seconds, traced.received),
                ),
            });
        }
        pairs
    }

    /// The sampling ratios of the traced runs, in first-seen order.
    fn tracing_ratios(&self) -> Vec<f64> {
        let mut ratios: Vec<f64> = Vec::new();
        for r in self.runs.iter().filter_map(|r| r.tracing) {
            if !ratios.contains(&r) {
                ratios.push(r);
            }
        }
        ratios
    }

    /// A JSON object: `{"runs": [...], "ratio": ..., "tracing": [...]}`.
    pub fn to_json(&self) -> String {
        let mut s = String::from("{\"runs\":[");
        for (i, r) in self.runs.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            run_json(&mut s, r);
        }
        s.push_str("],\"ratio\":");
        opt_num(&mut s, self.ratio);
        s.push_str(",\"tracing\":[");
        let pairs = self.traced_pairs();
        for (i, ratio) in self.tracing_ratios().into_iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let of = pairs.iter().filter(|p| p.ratio == ratio);
            s.push_str("{\"sampling_ratio\":");
            num(&mut s, ratio);
            s.push_str(",\"throughput_ratios\":[");
            for (j, p) in of.clone().enumerate() {
                if j > 0 {
                    s.push(',');
                }
                num(&mut s, p.throughput);
            }
            s.push_str("],\"median_throughput_ratio\":");
            opt_num(
                &mut s,
                Spread::of(of.map(|p| p.throughput)).map(|m| m.median),
            );
            s.push('}');
        }
        s.push_str("]}");
        s
    }
}

fn num(s: &mut String, v: f64) {
    if v.is_finite() {
        let _ = write!(s, "{v}");
    } else {
        s.push_str("null");
    }
}

fn opt_num(s: &mut String, v: Option<f64>) {
    match v {
        Some(v) => num(s, v),
        None => s.push_str("null"),
    }
}

fn string(s: &mut String, v: &str) {
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
}

fn run_json(s: &mut String, r: &RunReport) {
    s.push_str("{\"path\":");
    string(s, &r.path);
    let _ = write!(
        s,
        ",\"mode\":\"{}\",\"presettled\":{},\"senders\":{},\"receivers\":{},\"messages\":{},\
         \"message_bytes\":{},\"sent\":{},\"received\":{},\"accepted\":{},\"released\":{},\
         \"modified\":{},\"rejected\":{},\"dropped\":{},\"elapsed_s\":",
        r.mode,
        r.presettled,
        r.senders,
        r.receivers,
        r.messages,
        r.message_bytes,
        r.sent,
        r.received,
        r.accepted,
        r.released,
        r.modified,
        r.rejected,
        r.dropped
    );
    num(s, r.elapsed.as_secs_f64());
    s.push_str(",\"msgs_per_sec\":");
    num(s, r.msgs_per_sec);
    s.push_str(",\"mb_per_sec\":");
    num(s, r.mb_per_sec);
    s.push_str(",\"latency_us\":");
    match &r.latency {
        Some(l) => {
            let _ = write!(s, "{{\"samples\":{},\"p50\":", l.samples);
            num(s, l.p50_us);
            s.push_str(",\"p99\":");
            num(s, l.p99_us);
            s.push_str(",\"p999\":");
            num(s, l.p999_us);
            s.push_str(",\"max\":");
            num(s, l.max_us);
            s.push('}');
        }
        None => s.push_str("null"),
    }
    s.push_str(",\"router\":");
    match &r.router {
        Some(u) => {
            s.push_str("{\"cpu_seconds\":");
            num(s, u.cpu_seconds);
            s.push_str(",\"cpu_us_per_message\":");
            num(s, u.cpu_us_per_message);
            let _ = write!(
                s,
                ",\"rss_before_kb\":{},\"peak_rss_kb\":{},\"routers\":{},\"all_cpu_seconds\":",
                u.rss_before_kb, u.peak_rss_kb, u.routers
            );
            num(s, u.all_cpu_seconds);
            s.push('}');
        }
        None => s.push_str("null"),
    }
    s.push_str(",\"clients_cpu_seconds\":");
    num(s, r.clients_cpu_seconds);
    let _ = write!(s, ",\"round\":{},\"tracing\":", r.round);
    opt_num(s, r.tracing);
    s.push_str(",\"problems\":[");
    for (i, p) in r.problems.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        string(s, p);
    }
    s.push_str("]}");
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let settle = if self.presettled {
            "presettled"
        } else {
            "unsettled"
        };
        writeln!(
            f,
            "{} | {} {} | {} sender(s), {} receiver(s) | {} messages of {} bytes",
            self.path,
            self.mode,
            settle,
            self.senders,
            self.receivers,
            self.messages,
            self.message_bytes
        )?;
        writeln!(
            f,
            "  {:.0} msg/s  {:.1} MB/s  in {:.3} s",
            self.msgs_per_sec,
            self.mb_per_sec,
            self.elapsed.as_secs_f64()
        )?;
        if self.presettled {
            writeln!(
                f,
                "  sent {}  received {}  dropped {}",
                self.sent, self.received, self.dropped
            )?;
        } else {
            writeln!(
                f,
                "  sent {}  received {}  settled at sender: accepted {} released {} modified {} rejected {}",
                self.sent,
                self.received,
                self.accepted,
                self.released,
                self.modified,
                self.rejected
            )?;
        }
        if let Some(l) = &self.latency {
            let what = if self.mode == "rr" {
                "round trip"
            } else {
                "latency"
            };
            writeln!(
                f,
                "  {what} p50 {:.0} us  p99 {:.0} us  p99.9 {:.0} us  max {:.0} us  ({} samples)",
                l.p50_us, l.p99_us, l.p999_us, l.max_us, l.samples
            )?;
        }
        if let Some(u) = &self.router {
            writeln!(
                f,
                "  router: {:.3} s CPU, {:.2} us CPU/message, RSS {} kB before, peak {} kB",
                u.cpu_seconds, u.cpu_us_per_message, u.rss_before_kb, u.peak_rss_kb
            )?;
            if u.routers > 1 {
                writeln!(
                    f,
                    "  all {} routers: {:.3} s CPU, {:.2} us CPU/message",
                    u.routers,
                    u.all_cpu_seconds,
                    per_message(u.all_cpu_seconds, self.received)
                )?;
            }
        }
        writeln!(
            f,
            "  clients: {:.3} s CPU, {:.2} us CPU/message",
            self.clients_cpu_seconds,
            per_message(self.clients_cpu_seconds, self.received)
        )?;
        for p in &self.problems {
            writeln!(f, "  PROBLEM: {p}")?;
        }
        Ok(())
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.runs {
            write!(f, "{r}")?;
        }
        if let Some(ratio) = self.ratio {
            let rounds = self.runs.iter().map(|r| r.round).max().unwrap_or(0) + 1;
            if rounds > 1 {
                writeln!(
                    f,
                    "ratio routed / direct: {ratio:.3} (median of {rounds} rounds)"
                )?;
            } else {
                writeln!(f, "ratio routed / direct: {ratio:.3}")?;
            }
        }
        // Traced runs: each against the untraced run of its own round.
        let pairs = self.traced_pairs();
        for ratio in self.tracing_ratios() {
            let of: Vec<&TracedPair> = pairs.iter().filter(|p| p.ratio == ratio).collect();
            let list: Vec<String> = of.iter().map(|p| format!("{:.3}", p.throughput)).collect();
            if let Some(t) = Spread::of(of.iter().map(|p| p.throughput)) {
                writeln!(
                    f,
                    "sampling {ratio}: throughput x untraced {t} over {} pair(s): {}",
                    of.len(),
                    list.join(" ")
                )?;
            }
            let cpu = |pick: &dyn Fn(&TracedPair) -> Option<(f64, f64)>| {
                let base = Spread::of(of.iter().filter_map(|p| pick(p)).map(|c| c.0));
                let traced = Spread::of(of.iter().filter_map(|p| pick(p)).map(|c| c.1));
                base.zip(traced)
            };
            if let Some((b, t)) = cpu(&|p| p.router_cpu_us) {
                writeln!(f, "  router CPU/message (us): untraced {b}, traced {t}")?;
            }
            if of.iter().any(|p| p.routers_cpu_us != p.router_cpu_us)
                && let Some((b, t)) = cpu(&|p| p.routers_cpu_us)
            {
                writeln!(
                    f,
                    "  all routers CPU/message (us): untraced {b}, traced {t}"
                )?;
            }
            if let Some((b, t)) = cpu(&|p| Some(p.clients_cpu_us)) {
                writeln!(f, "  clients CPU/message (us): untraced {b}, traced {t}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let l = Latency::from_nanos((1..=1000).map(|i| i * 1000).collect()).unwrap();
        assert_eq!(l.samples, 1000);
        assert_eq!(l.p50_us, 500.0);
        assert_eq!(l.p99_us, 990.0);
        assert_eq!(l.p999_us, 999.0);
        assert_eq!(l.max_us, 1000.0);
        assert!(Latency::from_nanos(Vec::new()).is_none());
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }
}

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
    /// `--compare`: routed msgs/s over direct msgs/s (throughput mode) or
    /// direct p50 over routed p50 (rr mode: the routed share of speed).
    pub ratio: Option<f64>,
}

impl BenchReport {
    pub fn is_complete(&self) -> bool {
        self.runs.iter().all(RunReport::is_complete)
    }

    /// A JSON object: `{"runs": [...], "ratio": ...}`.
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
        s.push('}');
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
                ",\"rss_before_kb\":{},\"peak_rss_kb\":{}}}",
                u.rss_before_kb, u.peak_rss_kb
            );
        }
        None => s.push_str("null"),
    }
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
        }
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
            writeln!(f, "ratio routed / direct: {ratio:.3}")?;
        }
        // Further runs (traced ones): against the first routed run.
        let first_routed = self.runs.iter().position(|r| r.path != "direct");
        if let Some(i) = first_routed
            && self.runs[i].msgs_per_sec > 0.0
        {
            for r in &self.runs[i + 1..] {
                writeln!(
                    f,
                    "ratio to the first routed run: {:.3}  ({})",
                    r.msgs_per_sec / self.runs[i].msgs_per_sec,
                    r.path
                )?;
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
}

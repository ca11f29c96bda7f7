//! A router process's CPU time and memory, read from `/proc` around a
//! bench run.

use super::BenchError;

/// `/proc/<pid>/stat` counts CPU time in USER_HZ ticks, which Linux fixes
/// at 100 per second for user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// A process's CPU time and memory at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcSample {
    pub cpu_seconds: f64,
    pub rss_kb: u64,
    pub hwm_kb: u64,
}

impl ProcSample {
    /// Reads `/proc/<pid>/stat` (utime + stime) and `/proc/<pid>/status`
    /// (VmRSS, VmHWM).
    pub fn read(pid: u32) -> Result<ProcSample, BenchError> {
        let stat_path = format!("/proc/{pid}/stat");
        let stat = std::fs::read_to_string(&stat_path)
            .map_err(|e| BenchError::Proc(format!("{stat_path}: {e}")))?;
        // The command name (field 2) may hold spaces; fields after its ')'
        // start at field 3, so utime (14) and stime (15) are at 11 and 12.
        let after = stat
            .rfind(')')
            .map(|i| &stat[i + 1..])
            .ok_or_else(|| BenchError::Proc(format!("{stat_path}: no ')'")))?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let tick = |i: usize| -> Result<f64, BenchError> {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .map(|t| t as f64 / TICKS_PER_SECOND)
                .ok_or_else(|| BenchError::Proc(format!("{stat_path}: field {}", i + 3)))
        };
        let cpu_seconds = tick(11)? + tick(12)?;
        let status_path = format!("/proc/{pid}/status");
        let status = std::fs::read_to_string(&status_path)
            .map_err(|e| BenchError::Proc(format!("{status_path}: {e}")))?;
        let kb = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok(ProcSample {
            cpu_seconds,
            rss_kb: kb("VmRSS:"),
            hwm_kb: kb("VmHWM:"),
        })
    }
}

/// CPU time (ns, from each thread's `/proc/<pid>/task/<tid>/schedstat`)
/// of the process's threads whose name is not in `exclude`: fine enough
/// to time a window of a few milliseconds, where `stat`'s 10 ms ticks are
/// not. Threads that ended are not counted.
pub fn threads_cpu_ns(pid: u32, exclude: &[&str]) -> Result<u64, BenchError> {
    let dir = format!("/proc/{pid}/task");
    let tasks = std::fs::read_dir(&dir).map_err(|e| BenchError::Proc(format!("{dir}: {e}")))?;
    let mut total = 0;
    for task in tasks.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if exclude.contains(&comm.trim_end()) {
            continue;
        }
        // A thread may end between the listing and the read.
        if let Ok(schedstat) = std::fs::read_to_string(path.join("schedstat")) {
            total += schedstat
                .split_whitespace()
                .next()
                .and_then(|ns| ns.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_sample_reads_cpu_and_memory() {
        let s = ProcSample::read(std::process::id()).unwrap();
        assert!(s.rss_kb > 0);
        assert!(s.hwm_kb >= s.rss_kb);
        assert!(s.cpu_seconds >= 0.0);
    }

    #[test]
    fn thread_cpu_counts_a_busy_thread_unless_it_is_excluded() {
        let me = std::process::id();
        let (spun, wait) = std::sync::mpsc::channel();
        let (done, hold) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("bench-spinner".into())
            .spawn(move || {
                // Busy until the thread has had 20 ms of CPU, however
                // loaded the machine is.
                let mine = |ns: &mut u64| {
                    let tid = current_tid();
                    *ns = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
                        .ok()
                        .and_then(|s| s.split_whitespace().next()?.parse().ok())
                        .unwrap_or(0);
                };
                let mut ns = 0;
                while ns < 20_000_000 {
                    for _ in 0..100_000 {
                        std::hint::black_box(ns);
                    }
                    mine(&mut ns);
                }
                spun.send(()).unwrap();
                let _ = hold.recv();
            })
            .unwrap();
        wait.recv().unwrap();
        let all = threads_cpu_ns(me, &[]).unwrap();
        let without = threads_cpu_ns(me, &["bench-spinner"]).unwrap();
        drop(done);
        assert!(
            all >= without + 20_000_000,
            "{all} ns with, {without} without"
        );
    }

    /// This thread's id, from `/proc/thread-self`.
    fn current_tid() -> String {
        std::fs::read_link("/proc/thread-self")
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default()
    }
}

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
}

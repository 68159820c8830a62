//! The statistics a run leaves behind for `kemu bench` (`-stats-file FILE`): exit counts per
//! reason, retired instructions, the run's wall time and the CPU time of its vCPU threads.
//!
//! [`RunStats`] is gathered by the machine when it stops and written as plain `key value` lines
//! (first line `kemu-stats 1`, then one line per field, `exit <reason> <count>` per exit
//! reason); [`RunStats::parse`] reads it back in the bench process.

use std::fmt::Write as _;
use std::time::Duration;

use crate::accel::{ExitReason, ExitStats};

/// The first line of a stats file.
const MAGIC: &str = "kemu-stats 1";

/// What one machine run measured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunStats {
    /// The accelerator (`kvm`, `tcg`).
    pub accel: String,
    /// Number of vCPUs.
    pub vcpus: usize,
    /// Wall time from building the machine to its stop, in nanoseconds.
    pub run_ns: u64,
    /// User CPU time of all vCPU threads, in microseconds.
    pub vcpu_user_us: u64,
    /// System CPU time of all vCPU threads, in microseconds.
    pub vcpu_sys_us: u64,
    /// Retired guest instructions (0 under KVM, which does not count them).
    pub instructions: u64,
    /// Exits per reason, summed over vCPUs, in [`ExitReason::ALL`] order.
    pub exits: Vec<(String, u64)>,
}

/// A malformed stats file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StatsFileError {
    /// The first line is not `kemu-stats 1`.
    #[error("not a kemu stats file (first line is not '{MAGIC}')")]
    Magic,
    /// A line that is not `key value` with a known key and a number where one belongs.
    #[error("line {line}: cannot read '{text}'")]
    Line {
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
}

impl RunStats {
    /// Gather the counters of a stopped machine.
    pub fn gather(accel: &str, stats: &ExitStats, run: Duration, vcpu: CpuTime) -> Self {
        RunStats {
            accel: accel.to_string(),
            vcpus: stats.vcpus(),
            run_ns: u64::try_from(run.as_nanos()).unwrap_or(u64::MAX),
            vcpu_user_us: vcpu.user_us,
            vcpu_sys_us: vcpu.sys_us,
            instructions: (0..stats.vcpus()).map(|v| stats.instructions(v)).sum(),
            exits: ExitReason::ALL
                .iter()
                .map(|&r| (r.name().to_string(), stats.total(r)))
                .collect(),
        }
    }

    /// Total exits over all reasons.
    pub fn total_exits(&self) -> u64 {
        self.exits.iter().map(|(_, n)| n).sum()
    }

    /// The file text.
    pub fn to_text(&self) -> String {
        let mut s = format!("{MAGIC}\n");
        let _ = writeln!(s, "accel {}", self.accel);
        let _ = writeln!(s, "vcpus {}", self.vcpus);
        let _ = writeln!(s, "run_ns {}", self.run_ns);
        let _ = writeln!(s, "vcpu_user_us {}", self.vcpu_user_us);
        let _ = writeln!(s, "vcpu_sys_us {}", self.vcpu_sys_us);
        let _ = writeln!(s, "instructions {}", self.instructions);
        for (reason, n) in &self.exits {
            let _ = writeln!(s, "exit {reason} {n}");
        }
        s
    }

    /// Read a file written by [`RunStats::to_text`].
    pub fn parse(text: &str) -> Result<Self, StatsFileError> {
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(StatsFileError::Magic);
        }
        let mut r = RunStats::default();
        for (i, line) in lines.enumerate() {
            let bad = || StatsFileError::Line {
                line: i + 2,
                text: line.to_string(),
            };
            let words: Vec<&str> = line.split_whitespace().collect();
            let num = |w: Option<&&str>| w.and_then(|w| w.parse::<u64>().ok()).ok_or_else(bad);
            match words.as_slice() {
                [] => {}
                ["accel", a] => r.accel = (*a).to_string(),
                ["vcpus", n] => r.vcpus = num(Some(n))? as usize,
                ["run_ns", n] => r.run_ns = num(Some(n))?,
                ["vcpu_user_us", n] => r.vcpu_user_us = num(Some(n))?,
                ["vcpu_sys_us", n] => r.vcpu_sys_us = num(Some(n))?,
                ["instructions", n] => r.instructions = num(Some(n))?,
                ["exit", reason, n] => r.exits.push(((*reason).to_string(), num(Some(n))?)),
                _ => return Err(bad()),
            }
        }
        Ok(r)
    }
}

/// CPU time spent by a thread (or a sum of threads).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTime {
    /// User time in microseconds.
    pub user_us: u64,
    /// System time in microseconds.
    pub sys_us: u64,
}

impl std::ops::Add for CpuTime {
    type Output = CpuTime;
    fn add(self, o: CpuTime) -> CpuTime {
        CpuTime {
            user_us: self.user_us + o.user_us,
            sys_us: self.sys_us + o.sys_us,
        }
    }
}

fn micros(t: libc::timeval) -> u64 {
    (t.tv_sec.max(0) as u64) * 1_000_000 + t.tv_usec.max(0) as u64
}

impl CpuTime {
    /// The CPU time the calling thread has used so far (zero if the OS will not say).
    pub fn this_thread() -> CpuTime {
        // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `ru` is a valid, writable `rusage` for the duration of the call.
        if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
            return CpuTime::default();
        }
        CpuTime::from_rusage(&ru)
    }

    /// User and system time of a `rusage` record.
    pub fn from_rusage(ru: &libc::rusage) -> CpuTime {
        CpuTime {
            user_us: micros(ru.ru_utime),
            sys_us: micros(ru.ru_stime),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let stats = ExitStats::new(2);
        stats.count(0, ExitReason::PioWrite);
        stats.count(1, ExitReason::PioWrite);
        stats.count(1, ExitReason::Halt);
        stats.add_instructions(0, 1000);
        let cpu = CpuTime {
            user_us: 5,
            sys_us: 7,
        };
        let r = RunStats::gather("tcg", &stats, Duration::from_millis(3), cpu);
        assert_eq!(r.total_exits(), 3);
        let back = RunStats::parse(&r.to_text()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.instructions, 1000);
        assert_eq!(back.run_ns, 3_000_000);
        assert!(back.exits.contains(&("io-out".to_string(), 2)));
    }

    #[test]
    fn bad_files() {
        assert_eq!(RunStats::parse("hello"), Err(StatsFileError::Magic));
        let e = RunStats::parse("kemu-stats 1\nrun_ns many\n").unwrap_err();
        assert_eq!(e.to_string(), "line 2: cannot read 'run_ns many'");
        assert!(RunStats::parse("kemu-stats 1\nexit io-out\n").is_err());
    }

    #[test]
    fn thread_time_moves() {
        let a = CpuTime::this_thread();
        let mut x = 0u64;
        for i in 0..3_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = CpuTime::this_thread();
        assert!(b.user_us + b.sys_us >= a.user_us + a.sys_us);
    }
}

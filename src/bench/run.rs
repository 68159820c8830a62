//! One bench run: a child `kemu` process booting the guest under one accelerator, timed from
//! spawn to exit, its CPU time taken from `wait4`, its exit counters read from the stats file
//! it writes at exit (`-stats-file`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{BenchAccel, BenchError};
use crate::machine::stats_file::{CpuTime, RunStats};

/// What one run measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The accelerator.
    pub accel: BenchAccel,
    /// Wall time of the whole child process, spawn to exit.
    pub wall: Duration,
    /// CPU time of the whole child process (every thread), from `wait4`.
    pub process_cpu: CpuTime,
    /// The child's exit status.
    pub status: i32,
    /// What the machine counted.
    pub stats: RunStats,
}

/// How to start a run.
pub struct RunSpec<'a> {
    /// The `kemu` executable.
    pub exe: &'a Path,
    /// The guest's options (without `-accel`).
    pub guest_args: &'a [String],
    /// Where the child writes its stats (removed after reading).
    pub stats_path: PathBuf,
    /// The child is killed after this long.
    pub timeout: Duration,
}

/// Run the guest once under `accel`.
pub fn run_once(spec: &RunSpec<'_>, accel: BenchAccel) -> Result<Sample, BenchError> {
    let _ = std::fs::remove_file(&spec.stats_path);
    let start = Instant::now();
    let mut child = Command::new(spec.exe)
        .args(spec.guest_args)
        .args(accel.args())
        .arg("-stats-file")
        .arg(&spec.stats_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| BenchError::Spawn {
            exe: spec.exe.to_path_buf(),
            source,
        })?;
    let pid = child.id() as libc::pid_t;
    let mut err_pipe = child.stderr.take();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(p) = err_pipe.as_mut() {
            let _ = p.read_to_string(&mut s);
        }
        s
    });
    // The watchdog kills the child if it runs past the timeout; it is told when the child is
    // reaped (the channel closes).
    let (done, wait) = mpsc::channel::<()>();
    let timeout = spec.timeout;
    let watchdog = std::thread::spawn(move || {
        if wait.recv_timeout(timeout) == Err(mpsc::RecvTimeoutError::Timeout) {
            // SAFETY: kill(2) with a pid we spawned and have not reaped yet (the main thread
            // is blocked in wait4 on it); it touches no memory of ours.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            return true;
        }
        false
    });
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = loop {
        // SAFETY: `status` and `ru` are valid, writable locals for the duration of the call;
        // the pid is our own unreaped child.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r != -1 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break r;
        }
    };
    let wall = start.elapsed();
    drop(done);
    let timed_out = watchdog.join().unwrap_or(false);
    let stderr = stderr.join().unwrap_or_default();
    if reaped != pid {
        return Err(BenchError::Wait(std::io::Error::last_os_error()));
    }
    let what = format!("kemu {}", accel.args().join(" "));
    if timed_out {
        return Err(BenchError::Child {
            what,
            problem: format!("killed after the {} s timeout", timeout.as_secs()),
            stderr,
        });
    }
    if !libc::WIFEXITED(status) {
        return Err(BenchError::Child {
            what,
            problem: format!("killed by signal {}", libc::WTERMSIG(status)),
            stderr,
        });
    }
    let code = libc::WEXITSTATUS(status);
    let text = std::fs::read_to_string(&spec.stats_path).map_err(|e| BenchError::Child {
        what: what.clone(),
        problem: format!("exited with status {code} and left no stats ({e})"),
        stderr: stderr.clone(),
    })?;
    let _ = std::fs::remove_file(&spec.stats_path);
    let stats = RunStats::parse(&text).map_err(|e| BenchError::Child {
        what,
        problem: format!("stats file: {e}"),
        stderr,
    })?;
    Ok(Sample {
        accel,
        wall,
        process_cpu: CpuTime::from_rusage(&ru),
        status: code,
        stats,
    })
}

//! Helpers shared by the integration tests: run the `kemu` binary with a time limit and capture
//! what it printed.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one kemu run produced.
pub struct Run {
    /// Exit status (None: killed by a signal or the time limit).
    pub status: Option<i32>,
    /// Guest serial output (stdout).
    pub stdout: String,
    /// kemu's own messages.
    pub stderr: String,
    /// Wall time.
    pub elapsed: Duration,
}

/// Path of a built test guest.
pub fn guest(name: &str) -> PathBuf {
    Path::new(kemu::guests::GUEST_DIR).join(name)
}

/// The expected serial output of guest `name` (`tests/guest-images/NAME.expected`).
pub fn expected(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/guest-images")
        .join(format!("{name}.expected"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Run kemu with `args`, no stdin, killing it after `limit`.
pub fn kemu(args: &[&str], limit: Duration) -> Run {
    kemu_with_input(args, None, limit)
}

/// Run kemu with `args` and `input` piped to its stdin (none: no stdin), killing it after
/// `limit`.
pub fn kemu_with_input(args: &[&str], input: Option<&[u8]>, limit: Duration) -> Run {
    kemu_run(None, args, input, limit)
}

/// Run kemu with `args` in directory `dir` (relative output paths land there), no stdin,
/// killing it after `limit`.
pub fn kemu_in(dir: &Path, args: &[&str], limit: Duration) -> Run {
    kemu_run(Some(dir), args, None, limit)
}

/// Run kemu with `args` in directory `dir` with `input` on its stdin, killing it after
/// `limit`.
pub fn kemu_in_with_input(dir: &Path, args: &[&str], input: &[u8], limit: Duration) -> Run {
    kemu_run(Some(dir), args, Some(input), limit)
}

fn kemu_run(dir: Option<&Path>, args: &[&str], input: Option<&[u8]>, limit: Duration) -> Run {
    let start = Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kemu"));
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let mut child = cmd
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kemu");
    if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
        use std::io::Write;
        let _ = stdin.write_all(bytes);
    }
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st.code();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        status,
        stdout: String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned(),
        elapsed: start.elapsed(),
    }
}

/// Whether KVM tests can run; prints the loud skip line when not.
pub fn kvm_or_skip(test: &str) -> bool {
    if Path::new("/dev/kvm").exists() {
        true
    } else {
        eprintln!("{test}: SKIPPED (no /dev/kvm)");
        false
    }
}

/// Boot test guest `file` under `accel` with `-smp smp`, check its serial output against
/// `expected` and its exit status. Returns false (after a loud skip line) when KVM is asked
/// for and absent.
pub fn run_guest(accel: &str, file: &str, expected_name: &str, status: i32, smp: &str) -> bool {
    run_guest_with(accel, &[], file, expected_name, status, smp)
}

/// [`run_guest`] with `extra` arguments after the usual ones (e.g. `-machine
/// kernel-irqchip=off`).
pub fn run_guest_with(
    accel: &str,
    extra: &[&str],
    file: &str,
    expected_name: &str,
    status: i32,
    smp: &str,
) -> bool {
    if accel == "kvm" && !kvm_or_skip(file) {
        return false;
    }
    let path = guest(file);
    let mut args = vec![
        "-accel",
        accel,
        "-m",
        "128",
        "-smp",
        smp,
        "-kernel",
        path.to_str().unwrap(),
        "-nographic",
        "-no-reboot",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
    ];
    args.extend_from_slice(extra);
    let r = kemu(&args, Duration::from_secs(120));
    let want = expected(expected_name);
    assert_eq!(
        r.stdout, want,
        "{file} under {accel} {extra:?}: serial output differs; stderr: {}",
        r.stderr
    );
    assert_eq!(
        r.status,
        Some(status),
        "{file} under {accel} {extra:?}: stderr: {}",
        r.stderr
    );
    true
}

/// Run kemu with `args` (no stdin) to the end, and also return the CPU time (user + system)
/// the kemu process used, from `wait4`. `limit` kills a run that hangs.
// The child is reaped by `wait4` (which also reports its rusage), not by `Child::wait`.
#[allow(clippy::zombie_processes)]
pub fn kemu_cpu_time(args: &[&str], limit: Duration) -> (Run, Duration) {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kemu"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kemu");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let pid = child.id() as libc::pid_t;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killer = {
        let done = done.clone();
        std::thread::spawn(move || {
            while start.elapsed() < limit {
                if done.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            // SAFETY: kill(2) on our own child, which is not reaped yet: `done` is set only
            // after wait4 returns, and wait4 is what reaps it.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        })
    };
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child with valid pointers to locals; std's Child is not waited
    // on afterwards (it is dropped without wait, which does not reap).
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = killer.join();
    let code = (r == pid && libc::WIFEXITED(status)).then(|| libc::WEXITSTATUS(status));
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    let cpu = tv(usage.ru_utime) + tv(usage.ru_stime);
    let run = Run {
        status: code,
        stdout: String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned(),
        elapsed: start.elapsed(),
    };
    (run, cpu)
}

/// The Linux guest `scripts/make-linux-guest.sh` built in `dir` (relative to the repository,
/// or `KEMU_LINUX_GUEST` when set), if it holds `file` and the initramfs. Missing: a failure
/// under `KEMU_REQUIRE_LINUX_GUEST=1` (CI), else a loud SKIPPED line for `test` and `None`.
pub fn linux_guest(test: &str, dir: &str, file: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("KEMU_LINUX_GUEST")
        .filter(|_| dir == "build/linux-guest")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir));
    if dir.join(file).exists() && dir.join("initramfs.cpio.gz").exists() {
        return Some(dir);
    }
    assert!(
        std::env::var("KEMU_REQUIRE_LINUX_GUEST").as_deref() != Ok("1"),
        "no Linux guest in {} (run scripts/make-linux-guest.sh)",
        dir.display()
    );
    eprintln!(
        "{test}: SKIPPED (no Linux guest in {}; run scripts/make-linux-guest.sh)",
        dir.display()
    );
    None
}

/// Run kemu with `args` as a user at its console would: for each `(prompt, input)` step, wait
/// until the serial output (stdout) shows `prompt` after what the previous steps waited for,
/// then write `input` to kemu's stdin. Kills kemu after `limit`; a prompt that never comes ends
/// the script (the caller's checks on the output then fail with the whole transcript).
pub fn kemu_scripted(args: &[&str], steps: &[(&str, &[u8])], limit: Duration) -> Run {
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kemu"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kemu");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let seen = Arc::new(Mutex::new(Vec::<u8>::new()));
    let sink = seen.clone();
    let t_out = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => sink.lock().unwrap().extend_from_slice(&buf[..n]),
            }
        }
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let mut from = 0usize;
    let mut status = None;
    let mut exited = false;
    'steps: for (prompt, input) in steps {
        loop {
            let found = {
                let s = seen.lock().unwrap();
                let hay = &s[from.min(s.len())..];
                hay.windows(prompt.len().max(1))
                    .position(|w| w == prompt.as_bytes())
                    .map(|p| from + p + prompt.len())
            };
            if let Some(end) = found {
                from = end;
                let _ = stdin.write_all(input);
                let _ = stdin.flush();
                break;
            }
            if let Some(st) = child.try_wait().expect("wait") {
                status = st.code();
                exited = true;
                break 'steps;
            }
            if start.elapsed() > limit {
                break 'steps;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    if !exited {
        status = loop {
            if let Some(st) = child.try_wait().expect("wait") {
                break st.code();
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
    }
    drop(stdin);
    let _ = t_out.join();
    let stdout = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    Run {
        status,
        stdout,
        stderr: String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned(),
        elapsed: start.elapsed(),
    }
}

//! The gdbstub end to end: a real `gdb -batch` connects to `kemu -S -gdb tcp::PORT`, sets a
//! breakpoint in the `gdb_target` guest, checks registers and memory there, single-steps and
//! continues to the guest's exit, under the software CPU and under KVM.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound and released: the kernel will not hand it out again
/// at once).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn gdb_available(test: &str) -> bool {
    let ok = Command::new("gdb")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        // scripts/test.sh installs gdb; a bare `cargo test` without it says so loudly.
        eprintln!("{test}: SKIPPED (no gdb; apt-get install gdb)");
    }
    ok
}

/// kemu started with a gdb server, and its output so far.
struct Kemu {
    child: Child,
    stdout: mpsc::Receiver<String>,
}

/// Start kemu on `guest` with `-S -gdb tcp::PORT`; returns once it listens.
fn start_kemu(guest: &str, accel: &str, smp: &str, port: u16) -> Kemu {
    let guest = common::guest(guest);
    let mut child = Command::new(env!("CARGO_BIN_EXE_kemu"))
        .args([
            "-accel",
            accel,
            "-smp",
            smp,
            "-kernel",
            guest.to_str().expect("utf-8 path"),
            "-nographic",
            "-no-reboot",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-S",
            "-gdb",
            &format!("tcp::{port}"),
        ])
        .env("RUST_LOG", "kemu=info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kemu");
    let err = child.stderr.take().expect("stderr");
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if line.contains("waiting for gdb") {
                let _ = ready_tx.send(());
            }
            eprintln!("kemu: {line}");
        }
    });
    let mut out = child.stdout.take().expect("stdout");
    let (out_tx, out_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        let _ = out_tx.send(s);
    });
    ready_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("kemu did not start its gdb server");
    Kemu {
        child,
        stdout: out_rx,
    }
}

impl Kemu {
    /// Wait for kemu to exit; returns its status and serial output.
    fn finish(mut self, limit: Duration) -> (Option<i32>, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                break st.code();
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = self
            .stdout
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_default();
        (status, out)
    }
}

/// What gdb prints (with `echo`) just before the `continue` a test interrupts.
const CONTINUING: &str = "@continuing";

/// Run `gdb -batch` with `script` (commands, one a line); returns everything it printed.
/// With `interrupt_after`, gdb gets a SIGINT (a Ctrl-C) that long after it printed
/// [`CONTINUING`].
fn run_gdb(script: &str, limit: Duration, interrupt_after: Option<Duration>) -> String {
    let dir = std::env::temp_dir();
    let path = dir.join(format!(
        "kemu-gdb-{}-{}.gdb",
        std::process::id(),
        free_port()
    ));
    std::fs::write(&path, script).expect("write gdb script");
    let mut child = Command::new("gdb")
        .args(["-batch", "-nx", "-x"])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gdb");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let (seen_tx, seen_rx) = mpsc::channel();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        for line in BufReader::new(&mut out).lines().map_while(Result::ok) {
            if line.contains(CONTINUING) {
                let _ = seen_tx.send(Instant::now());
            }
            s.push_str(&line);
            s.push('\n');
        }
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let mut interrupt = interrupt_after;
    let mut continuing: Option<Instant> = None;
    while child.try_wait().expect("wait gdb").is_none() {
        if continuing.is_none() {
            continuing = seen_rx.try_recv().ok();
        }
        if interrupt.is_some_and(|d| continuing.is_some_and(|t| t.elapsed() > d)) {
            interrupt = None;
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.wait();
    let _ = std::fs::remove_file(&path);
    format!(
        "{}{}",
        t_out.join().unwrap_or_default(),
        t_err.join().unwrap_or_default()
    )
}

/// The session every accelerator must pass: `bp` is `break` or `hbreak`.
fn session_script(port: u16, bp: &str) -> String {
    let symbols = common::guest("gdb_target.elf64");
    assert!(Path::new(&symbols).exists(), "{}", symbols.display());
    format!(
        "set pagination off\n\
         set confirm off\n\
         symbol-file {}\n\
         target remote 127.0.0.1:{port}\n\
         echo @start\\n\n\
         info registers rip\n\
         {bp} gdb_here\n\
         continue\n\
         echo @stopped\\n\n\
         info registers rip rbx rcx\n\
         x/4bx &gdb_bytes\n\
         monitor mode\n\
         monitor phys\n\
         x/4bx &gdb_bytes\n\
         monitor virt\n\
         stepi\n\
         echo @stepped\\n\n\
         info registers rip rbx\n\
         info threads\n\
         continue\n",
        symbols.display()
    )
}

/// Check the transcript of [`session_script`].
fn check_session(out: &str) {
    let section = |from: &str, to: &str| -> String {
        let a = out
            .find(from)
            .unwrap_or_else(|| panic!("no {from} in:\n{out}"));
        let b = out[a..].find(to).map_or(out.len(), |b| a + b);
        out[a..b].to_string()
    };
    let start = section("@start", "@stopped");
    assert!(start.contains("0x100020"), "entry point:\n{out}");
    let stopped = section("@stopped", "@stepped");
    assert!(stopped.contains("<gdb_here>"), "breakpoint:\n{out}");
    assert!(stopped.contains("0x1122334455667788"), "rbx:\n{out}");
    assert!(stopped.contains("0x4b454d55"), "rcx:\n{out}");
    assert_eq!(
        stopped.matches("0xde\t0xad\t0xbe\t0xef").count(),
        2,
        "memory, virtual then physical:\n{out}"
    );
    // gdb prints monitor output on stderr, after stdout here.
    assert!(
        out.contains("vCPU 0 (thread 1): long mode (64-bit), CPL 0"),
        "monitor mode:\n{out}"
    );
    let stepped = section("@stepped", "exited");
    assert!(stepped.contains("<gdb_after>"), "stepi:\n{out}");
    assert!(
        stepped.contains("0x1122334455667789"),
        "rbx after add:\n{out}"
    );
    assert!(out.contains("exited with code 01"), "exit status:\n{out}");
}

fn session(accel: &str, bp: &str) {
    let port = free_port();
    let kemu = start_kemu("gdb_target.bin", accel, "1", port);
    let out = run_gdb(&session_script(port, bp), Duration::from_secs(120), None);
    let (status, serial) = kemu.finish(Duration::from_secs(30));
    check_session(&out);
    assert_eq!(serial, "gdb target done\n");
    assert_eq!(status, Some(1));
}

#[test]
fn tcg_breakpoint_registers_memory_step_continue() {
    if gdb_available("tcg gdb session") {
        session("tcg", "break");
    }
}

#[test]
fn tcg_hardware_breakpoint() {
    if gdb_available("tcg gdb hbreak session") {
        session("tcg", "hbreak");
    }
}

#[test]
fn kvm_breakpoint_registers_memory_step_continue() {
    if gdb_available("kvm gdb session") && common::kvm_or_skip("kvm gdb session") {
        session("kvm", "break");
    }
}

#[test]
fn kvm_hardware_breakpoint() {
    if gdb_available("kvm gdb hbreak session") && common::kvm_or_skip("kvm gdb hbreak session") {
        session("kvm", "hbreak");
    }
}

/// Ctrl-C while the guest runs stops every vCPU; gdb sees one thread per vCPU; a memory write
/// lets the guest go on to its end. `gdb_target` spins while its `gdb_spin` byte is set.
fn interrupt_session(accel: &str) {
    let port = free_port();
    let kemu = start_kemu("gdb_target.bin", accel, "2", port);
    let symbols = common::guest("gdb_target.elf64");
    let script = format!(
        "set pagination off\n\
         set confirm off\n\
         symbol-file {}\n\
         target remote 127.0.0.1:{port}\n\
         set var *(unsigned char *)&gdb_spin = 1\n\
         echo {CONTINUING}\\n\n\
         continue\n\
         echo @interrupted\\n\n\
         info threads\n\
         thread 2\n\
         info registers rip\n\
         thread 1\n\
         set var *(unsigned char *)&gdb_spin = 0\n\
         continue\n",
        symbols.display()
    );
    let out = run_gdb(
        &script,
        Duration::from_secs(120),
        Some(Duration::from_secs(1)),
    );
    let (status, serial) = kemu.finish(Duration::from_secs(30));
    assert!(out.contains("SIGINT"), "no interrupt stop:\n{out}");
    let after = &out[out.find("@interrupted").unwrap_or(0)..];
    assert!(
        after.contains("gdb_spin_loop"),
        "stopped in the spin loop:\n{out}"
    );
    assert!(
        after.contains("Thread 1.1") && after.contains("Thread 1.2"),
        "threads:\n{out}"
    );
    assert!(after.contains("Switching to thread 2"), "thread 2:\n{out}");
    assert!(out.contains("exited with code 01"), "exit status:\n{out}");
    assert_eq!(serial, "gdb target done\n");
    assert_eq!(status, Some(1));
}

#[test]
fn tcg_ctrl_c_threads_memory_write() {
    if gdb_available("tcg gdb interrupt") {
        interrupt_session("tcg");
    }
}

#[test]
fn kvm_ctrl_c_threads_memory_write() {
    if gdb_available("kvm gdb interrupt") && common::kvm_or_skip("kvm gdb interrupt") {
        interrupt_session("kvm");
    }
}

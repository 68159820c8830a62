//! The human monitor end to end: kemu runs the `powerbtn` guest with `-monitor stdio` (or the
//! serial console with `Ctrl-A c`), the test types commands and reads the replies up to the
//! next `(kemu) ` prompt. Checks stop/cont, `info status|registers|exits|mtree|pci`, `x`/`xp`,
//! `system_powerdown` (the guest sees the power button and powers off), `quit`, and that
//! `info exits` reports exactly the exits `-d exits` logs (issue 7, done-when 3).

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const PROMPT: &str = "(kemu) ";
const LIMIT: Duration = Duration::from_secs(60);

/// A running kemu whose stdin the test types into.
struct Session {
    child: Child,
    stdin: ChildStdin,
    out: mpsc::Receiver<Vec<u8>>,
    /// stdout not yet consumed.
    pending: String,
}

impl Session {
    fn start(args: &[&str]) -> Session {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kemu"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn kemu");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Session {
            child,
            stdin,
            out: rx,
            pending: String::new(),
        }
    }

    /// Read stdout until `marker` appears; returns everything before it (consumed with it).
    fn read_until(&mut self, marker: &str) -> String {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(i) = self.pending.find(marker) {
                let before = self.pending[..i].to_string();
                self.pending.drain(..i + marker.len());
                return before;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.out.recv_timeout(left) {
                Ok(bytes) => self.pending.push_str(&String::from_utf8_lossy(&bytes)),
                Err(_) => {
                    let _ = self.child.kill();
                    panic!("no '{marker}' from kemu; output so far:\n{}", self.pending);
                }
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stdin.write_all(bytes).expect("write to kemu");
        self.stdin.flush().expect("flush");
    }

    /// Type a command line, return its reply (the text up to the next prompt).
    fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\n").as_bytes());
        self.read_until(PROMPT)
    }

    /// Wait for kemu to exit; its status.
    fn wait(mut self) -> Option<i32> {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("kemu did not exit");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("kemu-monitor-{}-{name}", std::process::id()))
}

/// Wait until the file at `path` contains `text`.
fn wait_for_file(path: &PathBuf, text: &str) -> String {
    let deadline = Instant::now() + LIMIT;
    loop {
        let s = std::fs::read_to_string(path).unwrap_or_default();
        if s.contains(text) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{}: no '{text}' in:\n{s}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The per-reason totals of an `ExitStats::table()` (`reason  cpu0 .. total` rows).
fn table_totals(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let total = words.last()?.parse().ok()?;
            let name = words.first()?;
            (*name != "instructions").then(|| (name.to_string(), total))
        })
        .collect()
}

#[test]
fn hmp_stops_inspects_and_quits_and_info_exits_matches_d_exits() {
    let serial = temp("serial-a.log");
    let log = temp("exits-a.log");
    let guest = common::guest("powerbtn.bin");
    let mut s = Session::start(&[
        "-accel",
        "tcg",
        "-kernel",
        guest.to_str().unwrap(),
        "-serial",
        &format!("file:{}", serial.display()),
        "-monitor",
        "stdio",
        "-d",
        "exits",
        "-D",
        log.to_str().unwrap(),
    ]);
    let banner = s.read_until(PROMPT);
    assert!(banner.contains("monitor - type 'help'"), "{banner}");
    wait_for_file(&serial, "waiting for the power button");
    assert_eq!(s.cmd("info status"), "VM status: running\n");
    assert_eq!(s.cmd("stop"), "");
    assert_eq!(s.cmd("info status"), "VM status: paused\n");

    let regs = s.cmd("info registers");
    assert!(regs.starts_with("RAX="), "{regs}");
    assert!(
        regs.contains("CS =0008 0000000000000000 ffffffff 00a09b00 DPL=0 CS64 [-RA]"),
        "{regs}"
    );
    assert!(regs.contains("EFER=0000000000000501"), "{regs}");
    let cpus = s.cmd("info cpus");
    assert!(cpus.starts_with("* CPU #0: pc=0x00000000001"), "{cpus}");
    // The multiboot header's magic (0x1BADB002) at the 1 MiB load address, by physical and by
    // virtual address (identity-mapped).
    assert_eq!(
        s.cmd("xp/4xb 0x100000"),
        "0000000000100000: 0x02 0xb0 0xad 0x1b\n"
    );
    assert_eq!(s.cmd("x/1xw 0x100000"), "0000000000100000: 0x1badb002\n");
    let code = s.cmd("x/2i $pc");
    assert_eq!(code.lines().count(), 2, "{code}");
    assert!(code.starts_with("0x00000000001"), "{code}");
    let mtree = s.cmd("info mtree");
    assert!(mtree.contains("(prio 0, ram): ram-below-4g"), "{mtree}");
    assert!(
        mtree.contains("0000000000000600-000000000000060f (prio 0, i/o): acpi-pm"),
        "{mtree}"
    );
    let pci = s.cmd("info pci");
    assert!(pci.contains("Host bridge: PCI device 8086:1237"), "{pci}");
    assert!(s.cmd("frobnicate").starts_with("Error: unknown command"));

    let exits = s.cmd("info exits");
    s.send(b"quit\n");
    assert_eq!(s.wait(), Some(0));
    let info = table_totals(&exits);
    assert!(info.get("io-in").copied().unwrap_or(0) > 0, "{exits}");

    // Every exit `-d exits` logged, per reason: the same counts (the machine was paused between
    // `info exits` and `quit`, so nothing ran in between).
    let text = std::fs::read_to_string(&log).expect("the -D log");
    let mut logged: BTreeMap<String, u64> = BTreeMap::new();
    for l in text.lines() {
        if let Some((_, reason)) = l.split_once("] cpu0 exit ") {
            *logged.entry(reason.to_string()).or_default() += 1;
        }
    }
    assert_eq!(info, logged, "info exits:\n{exits}");
    let _ = std::fs::remove_file(&serial);
    let _ = std::fs::remove_file(&log);
}

/// `-S` without gdb starts paused; `cont` runs the guest; `system_powerdown` presses the
/// power button and the guest powers off (status 0).
fn start_paused_cont_and_power_button(accel: &str) {
    let serial = temp(&format!("serial-b-{accel}.log"));
    let guest = common::guest("powerbtn.bin");
    let mut s = Session::start(&[
        "-accel",
        accel,
        "-S",
        "-kernel",
        guest.to_str().unwrap(),
        "-serial",
        &format!("file:{}", serial.display()),
        "-monitor",
        "stdio",
    ]);
    s.read_until(PROMPT);
    // The machine may still be being built when the first command arrives.
    let deadline = Instant::now() + LIMIT;
    loop {
        let st = s.cmd("info status");
        if st == "VM status: paused\n" {
            break;
        }
        assert_eq!(st, "VM status: shutdown\n");
        assert!(Instant::now() < deadline, "the machine never came up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let regs = s.cmd("info registers");
    assert!(regs.contains("EIP=") || regs.contains("RIP="), "{regs}");
    assert!(
        std::fs::read_to_string(&serial)
            .unwrap_or_default()
            .is_empty(),
        "a paused guest printed something"
    );
    assert_eq!(s.cmd("cont"), "");
    assert_eq!(s.cmd("info status"), "VM status: running\n");
    wait_for_file(&serial, "waiting for the power button");
    assert_eq!(s.cmd("system_powerdown"), "");
    assert_eq!(s.wait(), Some(0));
    let out = std::fs::read_to_string(&serial).unwrap_or_default();
    assert_eq!(out, common::expected("powerbtn"));
    let _ = std::fs::remove_file(&serial);
}

#[test]
fn hmp_start_paused_cont_powerdown_tcg() {
    start_paused_cont_and_power_button("tcg");
}

#[test]
fn hmp_start_paused_cont_powerdown_kvm() {
    if common::kvm_or_skip("hmp_start_paused_cont_powerdown_kvm") {
        start_paused_cont_and_power_button("kvm");
    }
}

/// On the serial console (`-serial stdio`), Ctrl-A c switches to the monitor and back.
#[test]
fn ctrl_a_c_switches_the_console_to_the_monitor() {
    let guest = common::guest("powerbtn.bin");
    let mut s = Session::start(&["-accel", "tcg", "-kernel", guest.to_str().unwrap()]);
    s.read_until("waiting for the power button\n");
    s.send(b"\x01c");
    s.read_until(PROMPT);
    s.send(b"info status\r");
    let reply = s.read_until(PROMPT);
    assert!(reply.contains("VM status: running"), "{reply}");
    // Back to the guest, and again to the monitor: no second banner.
    s.send(b"\x01c\x01c");
    let again = s.read_until(PROMPT);
    assert!(!again.contains("type 'help'"), "{again}");
    s.send(b"system_powerdown\r");
    s.read_until("power button pressed, powering off");
    assert_eq!(s.wait(), Some(0));
}

/// `system_reset` rebuilds the machine (the guest starts over, its serial file kept) and a
/// paused machine stays paused across the reset, as under QEMU.
#[test]
fn hmp_system_reset_restarts_the_guest_and_keeps_it_paused() {
    let serial = temp("serial-c.log");
    let guest = common::guest("powerbtn.bin");
    let mut s = Session::start(&[
        "-accel",
        "tcg",
        "-kernel",
        guest.to_str().unwrap(),
        "-serial",
        &format!("file:{}", serial.display()),
        "-monitor",
        "stdio",
    ]);
    s.read_until(PROMPT);
    wait_for_file(&serial, "waiting for the power button");
    assert_eq!(s.cmd("stop"), "");
    assert_eq!(s.cmd("system_reset"), "");
    // The rebuilt machine comes up paused.
    let deadline = Instant::now() + LIMIT;
    loop {
        let st = s.cmd("info status");
        if st == "VM status: paused\n" {
            break;
        }
        assert!(Instant::now() < deadline, "after the reset: {st}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let once = std::fs::read_to_string(&serial).unwrap_or_default();
    assert_eq!(once.matches("waiting").count(), 1, "{once}");
    assert_eq!(s.cmd("cont"), "");
    let deadline = Instant::now() + LIMIT;
    while std::fs::read_to_string(&serial)
        .unwrap_or_default()
        .matches("waiting")
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "the guest did not start over");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(s.cmd("system_powerdown"), "");
    assert_eq!(s.wait(), Some(0));
    let _ = std::fs::remove_file(&serial);
}

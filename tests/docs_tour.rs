//! Every `kemu` command in `docs/tour.md` runs as written: the ```sh blocks are extracted, each
//! line starting with `kemu` is split into words (double quotes group) and run with a time limit
//! in a scratch directory, and must exit with status 0. Commands with `-accel kvm` are skipped
//! loudly without /dev/kvm (`kemu bench` skips KVM itself).
//!
//! A ```gdb block belongs to the `kemu` command just before it (one with `-s -S`): kemu is
//! started, and once it waits for gdb, `gdb -batch` runs the block as its script and must exit
//! 0, and so must kemu (skipped loudly without gdb). A ```hmp block is piped to the stdin of the
//! `kemu` command before it (`-monitor stdio`).

mod common;

use std::path::Path;
use std::time::Duration;

use common::{kemu_in, kvm_or_skip};

/// What runs with a command: nothing, a gdb script, or monitor input.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
enum Companion {
    #[default]
    None,
    Gdb(String),
    Hmp(String),
}

/// The `kemu ...` lines of the ```sh blocks of a Markdown text, each with the ```gdb or ```hmp
/// block that follows it.
fn tour_commands(md: &str) -> Vec<(String, Companion)> {
    let mut out: Vec<(String, Companion)> = Vec::new();
    let mut block: Option<&str> = None;
    let mut text = String::new();
    for line in md.lines() {
        let t = line.trim();
        if let Some(fence) = t.strip_prefix("```") {
            match block.take() {
                Some(kind @ ("gdb" | "hmp")) => {
                    if let Some(last) = out.last_mut() {
                        last.1 = if kind == "gdb" {
                            Companion::Gdb(std::mem::take(&mut text))
                        } else {
                            Companion::Hmp(std::mem::take(&mut text))
                        };
                    }
                }
                Some(_) => {}
                None => block = Some(fence),
            }
            text.clear();
            continue;
        }
        match block {
            Some("sh") if t == "kemu" || t.starts_with("kemu ") => {
                out.push((t.to_string(), Companion::None))
            }
            Some("gdb" | "hmp") => {
                text.push_str(line);
                text.push('\n');
            }
            _ => {}
        }
    }
    out
}

/// The `kemu ...` lines of the ```sh blocks of a Markdown text.
fn sh_commands(md: &str) -> Vec<String> {
    tour_commands(md).into_iter().map(|(c, _)| c).collect()
}

fn gdb_available(cmd: &str) -> bool {
    let ok = std::process::Command::new("gdb")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("tour: `{cmd}` with gdb: SKIPPED (no gdb; apt-get install gdb)");
    }
    ok
}

/// Start kemu (`args`, in `dir`), wait until it waits for gdb, run `gdb -batch` with `script`;
/// both must exit 0.
fn run_with_gdb(dir: &Path, cmd: &str, args: &[&str], script: &str) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut kemu = Command::new(env!("CARGO_BIN_EXE_kemu"))
        .current_dir(dir)
        .args(args)
        .env("RUST_LOG", "kemu=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kemu");
    let err = kemu.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if line.contains("waiting for gdb") {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(Duration::from_secs(60)).is_err() {
        let _ = kemu.kill();
        panic!("`{cmd}` did not start its gdb server");
    }
    let script_path = dir.join("tour.gdb");
    std::fs::write(&script_path, script).unwrap();
    let gdb = Command::new("gdb")
        .args(["-batch", "-nx", "-x"])
        .arg(&script_path)
        .stdin(Stdio::null())
        .output()
        .expect("run gdb");
    // gdb prints `monitor` replies on stderr in batch mode.
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&gdb.stdout),
        String::from_utf8_lossy(&gdb.stderr)
    );
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(st) = kemu.try_wait().expect("wait") {
            break st.code();
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = kemu.kill();
            let _ = kemu.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        gdb.status.success(),
        "gdb failed on the tour's script:\n{out}"
    );
    // The tour's claims: the reset vector, the mode switches, CPL 3 in user_main, the end.
    for want in [
        "real mode, CPL 0, CS:RIP f000:0xfff0 (linear 0xfffffff0)",
        "protected mode (32-bit), CPL 0, CS:RIP 0008:0x100020",
        "rax            0x2badb002",
        "long mode (64-bit), CPL 0, CS:RIP 0008:0x10005b",
        "efer           0x501",
        "long mode (64-bit), CPL 3, CS:RIP 002b:0x1015e1",
        "exited normally",
    ] {
        assert!(out.contains(want), "gdb output lacks '{want}':\n{out}");
    }
    assert_eq!(status, Some(0), "`{cmd}` under gdb");
}

/// Split a command line into words; double quotes group words and are removed.
fn words(cmd: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in cmd.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[test]
fn extraction_and_splitting() {
    let md = "x\n```sh\nkemu -demo\ncargo build\n```\n```text\nkemu not run\n```\n";
    assert_eq!(sh_commands(md), ["kemu -demo"]);
    let md = "```sh\nkemu -S -s\n```\ntext\n```gdb\ntarget remote :1234\n```\n\
              ```sh\nkemu -monitor stdio\n```\n```hmp\ninfo status\ncont\n```\n";
    assert_eq!(
        tour_commands(md),
        [
            (
                "kemu -S -s".to_string(),
                Companion::Gdb("target remote :1234\n".into())
            ),
            (
                "kemu -monitor stdio".to_string(),
                Companion::Hmp("info status\ncont\n".into())
            )
        ]
    );
    assert_eq!(
        words(r#"kemu -append "console=ttyS0 quiet" -m 1G"#),
        ["kemu", "-append", "console=ttyS0 quiet", "-m", "1G"]
    );
}

#[test]
fn every_tour_command_runs() {
    let md_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/tour.md");
    let md = std::fs::read_to_string(&md_path).unwrap();
    let cmds = tour_commands(&md);
    assert!(cmds.len() >= 5, "the tour lost its commands: {cmds:?}");
    let dir = std::env::temp_dir().join(format!("kemu-tour-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (cmd, companion) in &cmds {
        let w = words(cmd);
        if w.windows(2).any(|p| p[0] == "-accel" && p[1] == "kvm") && !kvm_or_skip(cmd) {
            continue;
        }
        let args: Vec<&str> = w[1..].iter().map(String::as_str).collect();
        let r = match companion {
            Companion::Gdb(script) => {
                if gdb_available(cmd) {
                    run_with_gdb(&dir, cmd, &args, script);
                    eprintln!("tour: `{cmd}` with gdb ok");
                }
                continue;
            }
            Companion::Hmp(input) => {
                let r = common::kemu_in_with_input(
                    &dir,
                    &args,
                    input.as_bytes(),
                    Duration::from_secs(300),
                );
                assert!(
                    r.stdout.contains("VM status: paused") && r.stdout.contains("CS =f000"),
                    "`{cmd}`: monitor output:\n{}",
                    r.stdout
                );
                r
            }
            Companion::None => kemu_in(&dir, &args, Duration::from_secs(300)),
        };
        assert_eq!(
            r.status,
            Some(0),
            "`{cmd}` failed\nstdout: {}\nstderr: {}",
            r.stdout,
            r.stderr
        );
        eprintln!("tour: `{cmd}` ok in {:.1} s", r.elapsed.as_secs_f64());
    }
    // The files the tour talks about were written.
    for f in ["boot.log", "cpu.log", "bench.svg"] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    let boot = std::fs::read_to_string(dir.join("boot.log")).unwrap();
    assert!(boot.contains("boot stage 0x06"), "{boot}");
    let _ = std::fs::remove_dir_all(&dir);
}

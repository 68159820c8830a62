//! Every `kemu` command in `docs/tour.md` runs as written: the ```sh blocks are extracted, each
//! line starting with `kemu` is split into words (double quotes group) and run with a time limit
//! in a scratch directory, and must exit with status 0. Commands with `-accel kvm` are skipped
//! loudly without /dev/kvm (`kemu bench` skips KVM itself).

mod common;

use std::path::Path;
use std::time::Duration;

use common::{kemu_in, kvm_or_skip};

/// The `kemu ...` lines of the ```sh blocks of a Markdown text.
fn sh_commands(md: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_sh = false;
    for line in md.lines() {
        let t = line.trim();
        if t.starts_with("```") {
            in_sh = !in_sh && t == "```sh";
            continue;
        }
        if in_sh && (t == "kemu" || t.starts_with("kemu ")) {
            out.push(t.to_string());
        }
    }
    out
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
    assert_eq!(
        words(r#"kemu -append "console=ttyS0 quiet" -m 1G"#),
        ["kemu", "-append", "console=ttyS0 quiet", "-m", "1G"]
    );
}

#[test]
fn every_tour_command_runs() {
    let md_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/tour.md");
    let md = std::fs::read_to_string(&md_path).unwrap();
    let cmds = sh_commands(&md);
    assert!(cmds.len() >= 5, "the tour lost its commands: {cmds:?}");
    let dir = std::env::temp_dir().join(format!("kemu-tour-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for cmd in &cmds {
        let w = words(cmd);
        if w.windows(2).any(|p| p[0] == "-accel" && p[1] == "kvm") && !kvm_or_skip(cmd) {
            continue;
        }
        let args: Vec<&str> = w[1..].iter().map(String::as_str).collect();
        let r = kemu_in(&dir, &args, Duration::from_secs(300));
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

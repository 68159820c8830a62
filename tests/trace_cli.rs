//! `-d` end to end on the demo guest: `in_asm` is stable from run to run, `int` shows the demo's
//! #GP from CPL 3, `-d exits` logs exactly the exits its end-of-run table counts (under both
//! accelerators), and under KVM the software-CPU items print one note and change nothing else.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use common::{kemu, kvm_or_skip};

fn log_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("kemu-trace-{}-{name}.log", std::process::id()))
}

/// Run the demo under `accel` with `-d items -D file`; returns the log text.
fn demo_log(accel: &str, items: &str, name: &str) -> String {
    let path = log_path(name);
    let r = kemu(
        &[
            "-demo",
            "-accel",
            accel,
            "-d",
            items,
            "-D",
            path.to_str().unwrap(),
        ],
        Duration::from_secs(120),
    );
    assert_eq!(r.status, Some(0), "stderr: {}", r.stderr);
    assert!(r.stdout.contains("kemu demo: done"), "{}", r.stdout);
    let text = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    text
}

#[test]
fn in_asm_is_identical_across_runs() {
    let a = demo_log("tcg", "in_asm", "asm1");
    let b = demo_log("tcg", "in_asm", "asm2");
    assert!(a.contains("IN: cpu0 32-bit phys 0x100020\n"), "{a}");
    assert!(a.contains("wrmsr"), "{a}");
    assert!(a.lines().filter(|l| l.starts_with("IN: ")).count() > 50);
    assert_eq!(a, b, "two runs of the demo decoded different blocks");
}

#[test]
fn int_shows_the_general_protection_fault_from_user_mode() {
    let log = demo_log("tcg", "int", "int");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0].starts_with("cpu0 int      0: v=0d e=0000 i=0 cpl=3 IP=002b:"),
        "{}",
        lines[0]
    );
}

/// Exit lines per reason, and the totals of the `exit statistics` table.
fn exit_lines_and_table(log: &str) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let mut lines = BTreeMap::new();
    let mut table = BTreeMap::new();
    let mut in_table = false;
    for l in log.lines() {
        if l.starts_with("exit statistics") {
            in_table = true;
            continue;
        }
        if in_table {
            let w: Vec<&str> = l.split_whitespace().collect();
            if w.first() == Some(&"exit") || w.first() == Some(&"instructions") || w.is_empty() {
                continue;
            }
            let total: u64 = w.last().unwrap().parse().unwrap();
            table.insert(w[0].to_string(), total);
        } else if let Some((_, rest)) = l.split_once("] cpu") {
            let reason = rest.split_once(" exit ").unwrap().1;
            *lines.entry(reason.to_string()).or_insert(0) += 1;
        }
    }
    (lines, table)
}

fn exits_match_table(accel: &str) {
    let log = demo_log(accel, "exits", &format!("exits-{accel}"));
    let (lines, table) = exit_lines_and_table(&log);
    assert!(table.get("io-out").copied().unwrap_or(0) > 100, "{log}");
    assert_eq!(
        lines, table,
        "{accel}: exit lines per reason differ from the table"
    );
}

#[test]
fn exit_lines_equal_the_table_under_tcg() {
    exits_match_table("tcg");
}

#[test]
fn exit_lines_equal_the_table_under_kvm() {
    if kvm_or_skip("exit_lines_equal_the_table_under_kvm") {
        exits_match_table("kvm");
    }
}

#[test]
fn kvm_notes_that_cpu_traces_need_tcg() {
    if !kvm_or_skip("kvm_notes_that_cpu_traces_need_tcg") {
        return;
    }
    let path = log_path("kvm-note");
    let r = kemu(
        &[
            "-demo",
            "-accel",
            "kvm",
            "-d",
            "in_asm,int,exits",
            "-D",
            path.to_str().unwrap(),
        ],
        Duration::from_secs(120),
    );
    let log = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(r.status, Some(0), "{}", r.stderr);
    let notes: Vec<&str> = r.stderr.lines().filter(|l| l.contains("need")).collect();
    assert_eq!(notes.len(), 1, "{}", r.stderr);
    assert!(notes[0].contains("-accel tcg"), "{}", notes[0]);
    assert!(!log.contains("IN: "), "no in_asm under kvm");
    let (lines, table) = exit_lines_and_table(&log);
    assert_eq!(lines, table);
}

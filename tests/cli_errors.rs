//! Bad input gets one line naming the problem and a non-zero status: no panic, no backtrace.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::kemu;

fn tmp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kemu-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Run kemu with `args` and check for one `kemu: ...` line that contains `needle`.
fn fails_with(args: &[&str], needle: &str) {
    let r = kemu(args, Duration::from_secs(60));
    assert_ne!(r.status, Some(0), "{args:?} succeeded");
    assert!(r.status.is_some(), "{args:?} was killed (hang?)");
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: not one line: {:?}", r.stderr);
    assert!(lines[0].starts_with("kemu: "), "{args:?}: {:?}", lines[0]);
    assert!(
        lines[0].contains(needle),
        "{args:?}: {:?} lacks {needle:?}",
        lines[0]
    );
    assert!(!r.stderr.contains("panicked"), "{args:?}: {}", r.stderr);
}

#[test]
fn unknown_option() {
    fails_with(&["-frobnicate", "7"], "unknown option '-frobnicate'");
}

#[test]
fn option_without_value() {
    fails_with(&["-kernel"], "needs a value");
}

#[test]
fn missing_kernel_file() {
    fails_with(&["-kernel", "/nonexistent/bzImage"], "/nonexistent/bzImage");
}

#[test]
fn truncated_bzimage() {
    // A setup header that claims 4 setup sectors and a protected-mode kernel, cut short.
    let mut img = vec![0u8; 0x400];
    img[0x1f1] = 4; // setup_sects
    img[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
    img[0x200..0x202].copy_from_slice(&[0xeb, 0x6a]); // jump over a 2.15 header
    img[0x202..0x206].copy_from_slice(b"HdrS");
    img[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    img[0x211] = 1; // loadflags: LOADED_HIGH
    img[0x236] = 3; // xloadflags: 64-bit entry, above 4G
    let p = tmp("truncated-bzImage", &img);
    fails_with(&["-kernel", p.to_str().unwrap()], "truncated");
}

#[test]
fn not_a_kernel() {
    let p = tmp("notes.txt", b"this is a text file, not a kernel\n");
    fails_with(&["-kernel", p.to_str().unwrap()], "not a Linux bzImage");
}

#[test]
fn zero_memory() {
    fails_with(&["-m", "0", "-kernel", "x"], "at least 1 MiB");
}

#[test]
fn zero_cpus() {
    fails_with(&["-smp", "0", "-kernel", "x"], "at least 1");
}

#[test]
fn bad_accelerator_and_machine() {
    fails_with(&["-accel", "hvf", "-kernel", "x"], "unknown accelerator");
    fails_with(
        &["-machine", "q35", "-kernel", "x"],
        "unsupported machine type",
    );
    fails_with(
        &["-device", "e1000", "-kernel", "x"],
        "unsupported device 'e1000'",
    );
}

#[test]
fn kvm_without_a_usable_device() {
    let r = std::process::Command::new(env!("CARGO_BIN_EXE_kemu"))
        .args([
            "-accel",
            "kvm",
            "-kernel",
            common::guest("hello.bin").to_str().unwrap(),
        ])
        .env("KEMU_KVM_DEVICE", "/nonexistent/kvm")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("/nonexistent/kvm"), "{err}");
}

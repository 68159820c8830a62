//! Debian's kernels boot to a busybox shell under the software CPU (`-accel tcg`): the cloud
//! kernel on one and on two vCPUs, the generic kernel on one. The initramfs's `/init`
//! (`scripts/make-linux-guest.sh`) prints a marker, `uname -a`, `/proc/cpuinfo`, `date`, a
//! pipeline, and runs `poweroff -f`, which must end kemu with status 0.
//!
//! The guests come from `scripts/make-linux-guest.sh` (run by `scripts/test.sh` for both
//! flavours). Without them the tests fail when `KEMU_REQUIRE_LINUX_GUEST=1` (CI) and say
//! SKIPPED otherwise. Each boot runs once per CI run: they are the slowest tests.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::kemu;

fn guest(flavour_dir: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(flavour_dir);
    if dir.join("bzImage").exists() && dir.join("initramfs.cpio.gz").exists() {
        return Some(dir);
    }
    assert!(
        std::env::var("KEMU_REQUIRE_LINUX_GUEST").as_deref() != Ok("1"),
        "no Linux guest in {} (run scripts/make-linux-guest.sh)",
        dir.display()
    );
    eprintln!(
        "linux_tcg: SKIPPED (no Linux guest in {}; run scripts/make-linux-guest.sh)",
        dir.display()
    );
    None
}

/// Boot `dir`'s bzImage + initramfs with `smp` vCPUs; check the init's output and status 0.
fn boot(flavour_dir: &str, smp: &str) {
    let Some(dir) = guest(flavour_dir) else {
        return;
    };
    let kernel = dir.join("bzImage");
    let initrd = dir.join("initramfs.cpio.gz");
    let r = kemu(
        &[
            "-accel",
            "tcg",
            "-m",
            "512",
            "-smp",
            smp,
            "-kernel",
            kernel.to_str().unwrap(),
            "-initrd",
            initrd.to_str().unwrap(),
            "-append",
            "console=ttyS0 panic=-1",
            "-nographic",
            "-no-reboot",
        ],
        Duration::from_secs(900),
    );
    eprintln!(
        "linux_tcg {flavour_dir} -smp {smp}: status {:?} after {:.1} s; stderr: {}",
        r.status,
        r.elapsed.as_secs_f64(),
        r.stderr.trim()
    );
    let tail = &r.stdout[r.stdout.len().saturating_sub(3000)..];
    assert!(
        r.stdout.contains("KEMU-LINUX-GUEST-OK"),
        "init never ran; serial output ends: {tail}"
    );
    assert!(r.stdout.contains("Linux kemu") || r.stdout.contains("Linux (none)"));
    assert!(r.stdout.contains("\nKEMU"), "the pipeline's output: {tail}");
    let cpus = r.stdout.matches("processor\t:").count();
    assert_eq!(cpus.to_string(), smp, "CPUs in /proc/cpuinfo: {tail}");
    assert_eq!(r.status, Some(0), "poweroff -f must end kemu: {tail}");
}

#[test]
fn cloud_kernel_boots_to_init_on_one_vcpu() {
    boot("build/linux-guest", "1");
}

#[test]
fn cloud_kernel_boots_to_init_on_two_vcpus() {
    boot("build/linux-guest", "2");
}

#[test]
fn generic_kernel_boots_to_init() {
    boot("build/linux-guest-generic", "1");
}

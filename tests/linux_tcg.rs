//! Debian's kernels boot under the software CPU (`-accel tcg`) to the initramfs's `/init`
//! (`scripts/make-linux-guest.sh`), which prints a marker, `uname -a`, `/proc/cpuinfo`, `date`
//! and a pipeline's output, then runs `poweroff -f`: kemu must exit with status 0.
//! The cloud kernel (bzImage) runs on one and on two vCPUs, the generic kernel (vmlinux, PVH
//! entry) on one.
//!
//! The guests come from `scripts/make-linux-guest.sh` (run by `scripts/test.sh` for both
//! flavours). Without them the tests fail when `KEMU_REQUIRE_LINUX_GUEST=1` (CI) and say
//! SKIPPED otherwise. Each boot runs once per CI run: they are the slowest tests.

mod common;

use std::time::Duration;

use common::{kemu, linux_guest};

/// Boot `dir`'s `image` (bzImage, or vmlinux through its PVH note) + initramfs with `smp`
/// vCPUs; check the boot log, the power-off and status 0.
fn boot(flavour_dir: &str, image: &str, smp: &str) {
    let Some(dir) = linux_guest("linux_tcg", flavour_dir, image) else {
        return;
    };
    let kernel = dir.join(image);
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
    let out = &r.stdout;
    let tail = &out[out.len().saturating_sub(3000)..];
    assert!(out.contains("Linux version 6.1"), "no banner: {tail}");
    assert!(
        out.contains("Run /init as init process"),
        "init never ran; serial output ends: {tail}"
    );
    if smp == "2" {
        assert!(
            out.contains("Brought up 1 node, 2 CPUs"),
            "the second vCPU did not come up: {tail}"
        );
    }
    assert!(out.contains("KEMU-LINUX-GUEST-OK"), "init's output: {tail}");
    assert!(out.contains("Linux (none) 6.1"), "uname -a: {tail}");
    assert!(out.contains("\nKEMU"), "the pipeline's output: {tail}");
    let cpus = out.matches("processor\t:").count();
    assert_eq!(cpus.to_string(), smp, "CPUs in /proc/cpuinfo: {tail}");
    assert!(out.contains("reboot: Power down"), "no power-off: {tail}");
    assert_eq!(r.status, Some(0), "poweroff -f must end kemu: {tail}");
}

#[test]
fn cloud_kernel_boots_to_init_on_one_vcpu() {
    boot("build/linux-guest", "bzImage", "1");
}

#[test]
fn cloud_kernel_boots_to_init_on_two_vcpus() {
    boot("build/linux-guest", "bzImage", "2");
}

/// The generic kernel's bzImage carries an xz payload whose decompression alone takes minutes
/// on the interpreter (the cloud kernel's is lz4), so this one boots its vmlinux through PVH.
#[test]
fn generic_kernel_boots_to_init() {
    boot("build/linux-guest-generic", "vmlinux", "1");
}

/// The interactive shell (`kemu.shell`, README "Linux on the software CPU, interactively"):
/// type a command once the prompt shows, see its output, then power off; kemu exits 0.
#[test]
fn cloud_kernel_shell_takes_typed_commands() {
    let Some(dir) = linux_guest("linux_tcg shell", "build/linux-guest", "bzImage") else {
        return;
    };
    let kernel = dir.join("bzImage");
    let initrd = dir.join("initramfs.cpio.gz");
    let r = common::kemu_scripted(
        &[
            "-accel",
            "tcg",
            "-m",
            "512",
            "-kernel",
            kernel.to_str().unwrap(),
            "-initrd",
            initrd.to_str().unwrap(),
            "-append",
            "console=ttyS0 panic=-1 kemu.shell",
            "-nographic",
            "-no-reboot",
        ],
        &[
            ("busybox shell (poweroff -f to leave)", b""),
            ("# ", b"echo hi-from-$((6*7))\n"),
            ("hi-from-42", b""),
            ("# ", b"poweroff -f\n"),
        ],
        Duration::from_secs(900),
    );
    eprintln!(
        "linux_tcg shell: status {:?} after {:.1} s; stderr: {}",
        r.status,
        r.elapsed.as_secs_f64(),
        r.stderr.trim()
    );
    let out = &r.stdout;
    let tail = &out[out.len().saturating_sub(3000)..];
    assert!(out.contains("busybox shell"), "no shell: {tail}");
    assert!(
        out.lines().any(|l| l.trim_end() == "hi-from-42"),
        "the typed command's output: {tail}"
    );
    assert!(out.contains("reboot: Power down"), "no power-off: {tail}");
    assert_eq!(r.status, Some(0), "poweroff -f must end kemu: {tail}");
}

//! Debian's cloud kernel under `-accel kvm` (ELF vmlinux entered through PVH): its banner comes
//! out of our serial port. On real KVM it boots to the initramfs marker and powers off (status
//! 0); on this project's PVM hosts the host's instruction emulator gives up at CPL 0 and kemu
//! must end with a one-line report naming the instruction (status 1).
//!
//! The guest comes from `scripts/make-linux-guest.sh` (run by `scripts/test.sh`). Without it
//! the test fails when `KEMU_REQUIRE_LINUX_GUEST=1` (CI) and says SKIPPED otherwise.

mod common;

use std::time::Duration;

use common::{kemu, kvm_or_skip, linux_guest};

#[test]
fn debian_kernel_banner_under_kvm() {
    if !kvm_or_skip("linux_kvm") {
        return;
    }
    let Some(dir) = linux_guest("linux_kvm", "build/linux-guest", "vmlinux") else {
        return;
    };
    let vmlinux = dir.join("vmlinux");
    let initrd = dir.join("initramfs.cpio.gz");
    let r = kemu(
        &[
            "-accel",
            "kvm",
            "-m",
            "512",
            "-kernel",
            vmlinux.to_str().unwrap(),
            "-initrd",
            initrd.to_str().unwrap(),
            "-append",
            "console=ttyS0 earlyprintk=serial,ttyS0 panic=-1",
            "-nographic",
            "-no-reboot",
        ],
        Duration::from_secs(600),
    );
    eprintln!(
        "linux_kvm: status {:?} after {:.1} s; stderr: {}",
        r.status,
        r.elapsed.as_secs_f64(),
        r.stderr.trim()
    );
    assert!(
        r.stdout.contains("Linux version 6.1"),
        "no banner; serial output starts: {:?}",
        &r.stdout[..r.stdout.len().min(2000)]
    );
    if r.stdout.contains("KEMU-LINUX-GUEST-OK") {
        // Real KVM: the whole boot.
        assert_eq!(r.status, Some(0), "{}", r.stderr);
        return;
    }
    // PVM: the clear report, not a hang.
    assert_eq!(
        r.status,
        Some(1),
        "expected the internal-error report: {}",
        r.stderr
    );
    let report = r.stderr.lines().last().unwrap_or_default();
    assert!(report.starts_with("kemu: "), "{report}");
    assert!(report.contains("KVM internal error"), "{report}");
    assert!(report.contains("RIP=0x"), "{report}");
    assert!(report.contains("CPL=0"), "{report}");
    assert!(report.contains("instruction: "), "{report}");
    assert!(!report.contains("(invalid encoding)"), "{report}");
}

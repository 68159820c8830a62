//! Debian's cloud kernel drives kemu's virtio-blk disks under the software CPU (`-accel tcg`):
//! one boot with two drives, a raw image (vda) and a qcow2 image made by `kemu img create` and
//! filled by `qemu-io` (vdb). The initramfs's `/init` (`scripts/make-linux-guest.sh`, switch
//! `kemu.disktest`) loads the virtio modules of the same kernel package, prints each disk's
//! sha256 read with O_DIRECT, writes a known pattern across a qcow2 allocation boundary, syncs,
//! drops its caches and prints the sha256 again (through the kernel log). Both checksums must equal the host's, the raw
//! file must then hold the pattern, and the qcow2 image must pass `qemu-img check` and convert
//! (`qemu-img convert -O raw`) to the same bytes.
//!
//! Needs the Linux guest (`KEMU_REQUIRE_LINUX_GUEST=1` makes its absence a failure, as in
//! `tests/linux_tcg.rs`) and Debian's `qemu-utils` (`qemu-img`, `qemu-io`) as the peer.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{kemu, linux_guest};

/// Each disk's size: 2 MiB, so the guest's checksums stay cheap under the interpreter.
const SIZE: usize = 2 << 20;
/// Where the guest writes its pattern and how much (KiB): from inside the qcow2 image's first
/// allocated 512 KiB into the unallocated clusters after it.
const PATTERN_OFF_KIB: usize = 448;
const PATTERN_LEN_KIB: usize = 128;

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kemu-linux-disk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Run `prog args`; its status and stdout+stderr.
fn tool(prog: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{prog}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn have(prog: &str) -> bool {
    Command::new(prog).arg("--version").output().is_ok()
}

/// The host's sha256 of `bytes` (coreutils' `sha256sum` of a scratch file).
fn sha256(dir: &Path, bytes: &[u8]) -> String {
    let f = dir.join("sha-input");
    std::fs::write(&f, bytes).unwrap();
    let (st, out) = tool("sha256sum", &[f.to_str().unwrap()]);
    assert_eq!(st, 0, "sha256sum: {out}");
    out.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Deterministic, non-periodic bytes (xorshift).
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `bytes` after the guest's write to `disk`: "kemu-DISK\n" repeated over the pattern region
/// (what `yes kemu-DISK | head -c` makes).
fn with_pattern(bytes: &[u8], disk: &str) -> Vec<u8> {
    let line = format!("kemu-{disk}\n");
    let mut out = bytes.to_vec();
    let start = PATTERN_OFF_KIB * 1024;
    let len = PATTERN_LEN_KIB * 1024;
    for (i, b) in out[start..start + len].iter_mut().enumerate() {
        *b = line.as_bytes()[i % line.len()];
    }
    out
}

/// The value after `KEMU-DISK disk key ` in the guest's output (the guest prints through the
/// kernel log, so a timestamp may come first).
fn guest_says<'a>(out: &'a str, disk: &str, key: &str) -> Option<&'a str> {
    let marker = format!("KEMU-DISK {disk} {key} ");
    out.lines().find_map(|l| {
        let at = l.find(marker.as_str())?;
        Some(l[at + marker.len()..].trim_end())
    })
}

/// `qemu-img convert -O raw` of a qcow2 image, read back.
fn qcow2_bytes(dir: &Path, img: &Path) -> Vec<u8> {
    let raw = dir.join("converted.raw");
    let (st, out) = tool(
        "qemu-img",
        &[
            "convert",
            "-f",
            "qcow2",
            "-O",
            "raw",
            img.to_str().unwrap(),
            raw.to_str().unwrap(),
        ],
    );
    assert_eq!(st, 0, "qemu-img convert: {out}");
    std::fs::read(raw).unwrap()
}

#[test]
fn cloud_kernel_reads_and_writes_raw_and_qcow2_virtio_disks() {
    let Some(guest) = linux_guest("linux_disk", "build/linux-guest", "bzImage") else {
        return;
    };
    if !have("qemu-img") || !have("qemu-io") {
        assert!(
            std::env::var("KEMU_REQUIRE_LINUX_GUEST").as_deref() != Ok("1"),
            "linux_disk needs qemu-img and qemu-io (Debian's qemu-utils)"
        );
        eprintln!("linux_disk: SKIPPED (no qemu-img/qemu-io: install qemu-utils)");
        return;
    }
    // The disk test came with version 4 of the script's initramfs; older caches lack it.
    let version = std::fs::read_to_string(guest.join("initramfs.version")).unwrap_or_default();
    assert!(
        version.trim().parse::<u32>().is_ok_and(|v| v >= 4),
        "{}: an initramfs without kemu.disktest (version {:?}); run scripts/make-linux-guest.sh",
        guest.display(),
        version.trim()
    );
    let dir = scratch();

    // vda: raw, every byte known.
    let raw = dir.join("disk.raw");
    let raw_before = noise(SIZE);
    std::fs::write(&raw, &raw_before).unwrap();

    // vdb: qcow2 from `kemu img create`, two allocated extents (one partial cluster) written by
    // qemu-io, the rest unallocated.
    let qcow2 = dir.join("disk.qcow2");
    let q = qcow2.to_str().unwrap();
    let (st, out) = tool(
        env!("CARGO_BIN_EXE_kemu"),
        &["img", "create", "-f", "qcow2", q, "2M"],
    );
    assert_eq!(st, 0, "kemu img create: {out}");
    let (st, out) = tool(
        "qemu-io",
        &[
            "-f",
            "qcow2",
            "-c",
            "write -P 0x5a 0 512k",
            "-c",
            "write -P 0xa5 1536k 12k",
            q,
        ],
    );
    assert_eq!(st, 0, "qemu-io: {out}");
    let qcow2_before = qcow2_bytes(&dir, &qcow2);
    assert_eq!(qcow2_before.len(), SIZE);

    let kernel = guest.join("bzImage");
    let initrd = guest.join("initramfs.cpio.gz");
    let append = format!(
        "console=ttyS0 panic=-1 kemu.disktest kemu.disks=vda,vdb kemu.pattern={PATTERN_OFF_KIB}+{PATTERN_LEN_KIB}"
    );
    let drive_raw = format!("file={},format=raw,if=virtio", raw.display());
    let drive_qcow2 = format!("file={q},format=qcow2,if=virtio");
    let r = kemu(
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
            &append,
            "-drive",
            &drive_raw,
            "-drive",
            &drive_qcow2,
            "-nographic",
            "-no-reboot",
        ],
        Duration::from_secs(900),
    );
    eprintln!(
        "linux_disk: status {:?} after {:.1} s; stderr: {}",
        r.status,
        r.elapsed.as_secs_f64(),
        r.stderr.trim()
    );
    let out = &r.stdout;
    let tail = &out[out.len().saturating_sub(4000)..];
    assert!(
        out.contains("KEMU-DISK-DONE"),
        "the disk test did not finish: {tail}"
    );
    assert_eq!(r.status, Some(0), "poweroff -f must end kemu: {tail}");

    for (disk, before) in [("vda", &raw_before), ("vdb", &qcow2_before)] {
        let size = SIZE.to_string();
        assert_eq!(guest_says(out, disk, "size"), Some(size.as_str()), "{tail}");
        let sum = sha256(&dir, before);
        assert_eq!(
            guest_says(out, disk, "before"),
            Some(sum.as_str()),
            "{disk}: the guest read other bytes than the image holds: {tail}"
        );
        let wrote = format!("{PATTERN_LEN_KIB} KiB at {PATTERN_OFF_KIB} KiB");
        assert_eq!(
            guest_says(out, disk, "wrote"),
            Some(wrote.as_str()),
            "{tail}"
        );
        let sum = sha256(&dir, &with_pattern(before, disk));
        assert_eq!(
            guest_says(out, disk, "after"),
            Some(sum.as_str()),
            "{disk}: the guest read back other bytes than it wrote: {tail}"
        );
    }

    // The host sees what the guest wrote.
    let raw_after = std::fs::read(&raw).unwrap();
    assert!(
        raw_after == with_pattern(&raw_before, "vda"),
        "the raw image does not hold the guest's write"
    );
    let (st, out) = tool("qemu-img", &["check", "-f", "qcow2", q]);
    assert_eq!(st, 0, "qemu-img check after the guest's write: {out}");
    assert!(
        out.contains("No errors were found"),
        "qemu-img check: {out}"
    );
    assert!(
        qcow2_bytes(&dir, &qcow2) == with_pattern(&qcow2_before, "vdb"),
        "the qcow2 image does not hold the guest's write"
    );
    let _ = std::fs::remove_dir_all(dir);
}

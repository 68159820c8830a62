//! virtio-blk end to end: the `virtio_blk` test guest drives kemu's virtio-pci disk under the
//! software CPU and under KVM, on raw and qcow2 images made by `kemu img` and by `qemu-img`;
//! afterwards `qemu-img check` must pass and `qemu-img convert -O raw` must show the sector
//! the guest wrote. Also: wild descriptors fail with IOERR and leave the image alone,
//! `-snapshot` and `readonly=on` never write the image, INTx# reaches the CPU through the
//! 8259s (slot 1 INTA# = IRQ 11), and a SIGKILL in the middle of a write
//! loop leaves a qcow2 image that `qemu-img check` finds uncorrupted.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{guest, kemu, kvm_or_skip, Run};

/// The image size every test uses (1 MiB = 2048 sectors).
const SIZE: usize = 1 << 20;
/// The sector the guest writes.
const SECTOR: usize = 5;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kemu-virtio-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Deterministic, non-periodic bytes (xorshift).
fn data() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The guest's checksum of sectors 0..8: h = rol(h, 5) ^ byte.
fn checksum(bytes: &[u8]) -> String {
    let h = bytes[..4096]
        .iter()
        .fold(0u64, |h, &b| h.rotate_left(5) ^ u64::from(b));
    format!("{h:016x}")
}

/// What the guest writes to sector 5: "KEMU" then byte i = i.
fn pattern() -> Vec<u8> {
    let mut p: Vec<u8> = (0..512).map(|i| i as u8).collect();
    p[..4].copy_from_slice(b"KEMU");
    p
}

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

fn have_qemu_img() -> bool {
    let ok = Command::new("qemu-img")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        eprintln!("qemu-img: SKIPPED (no qemu-img)");
    }
    ok
}

fn kemu_img(args: &[&str]) {
    let (code, text) = tool(env!("CARGO_BIN_EXE_kemu"), &[&["img"], args].concat());
    assert_eq!(code, 0, "kemu img {args:?}: {text}");
}

/// Make `dir/NAME` holding [`data`] in `format`, with `maker` ("kemu" or "qemu-img").
fn make_image(dir: &Path, maker: &str, format: &str) -> PathBuf {
    let raw = dir.join("seed.raw");
    std::fs::write(&raw, data()).unwrap();
    if format == "raw" {
        return raw;
    }
    let out = dir.join(format!("disk-{maker}.qcow2"));
    let (r, o) = (raw.to_str().unwrap(), out.to_str().unwrap());
    match maker {
        "kemu" => kemu_img(&["convert", "-f", "raw", "-O", "qcow2", r, o]),
        _ => {
            let (code, text) = tool("qemu-img", &["convert", "-f", "raw", "-O", "qcow2", r, o]);
            assert_eq!(code, 0, "qemu-img convert: {text}");
        }
    }
    out
}

fn boot(accel: &str, drive: &str, extra: &[&str], mode: &str) -> Run {
    let g = guest("virtio_blk.bin");
    let mut args = vec![
        "-accel",
        accel,
        "-m",
        "128",
        "-kernel",
        g.to_str().unwrap(),
        "-nographic",
        "-no-reboot",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-drive",
        drive,
        "-append",
        mode,
    ];
    args.extend_from_slice(extra);
    kemu(&args, Duration::from_secs(120))
}

fn accels(test: &str) -> Vec<&'static str> {
    let mut v = vec!["tcg"];
    if kvm_or_skip(test) {
        v.push("kvm");
    }
    v
}

/// The disk's contents as raw bytes (through `qemu-img convert` for qcow2).
fn contents(dir: &Path, image: &Path, format: &str) -> Vec<u8> {
    if format == "raw" {
        return std::fs::read(image).unwrap();
    }
    let out = dir.join("contents.raw");
    let (code, text) = tool(
        "qemu-img",
        &[
            "convert",
            "-f",
            "qcow2",
            "-O",
            "raw",
            image.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "qemu-img convert -O raw: {text}");
    std::fs::read(out).unwrap()
}

fn assert_line(r: &Run, line: &str) {
    assert!(
        r.stdout.lines().any(|l| l == line),
        "missing line {line:?} in:\n{}\nstderr: {}",
        r.stdout,
        r.stderr
    );
}

#[test]
fn reads_writes_and_flushes_on_raw_and_qcow2() {
    if !have_qemu_img() {
        return;
    }
    let want_sum = checksum(&data());
    for accel in accels("virtio_blk reads_writes_and_flushes") {
        for (maker, format) in [("kemu", "raw"), ("kemu", "qcow2"), ("qemu-img", "qcow2")] {
            let dir = scratch(&format!("rw-{accel}-{maker}-{format}"));
            let img = make_image(&dir, maker, format);
            let drive = format!("file={},format={format},if=virtio", img.display());
            let r = boot(accel, &drive, &[], "");
            let what = format!("{accel} {maker} {format}");
            assert_line(&r, "virtio_blk: capacity 2048 sectors");
            assert_line(&r, "virtio_blk: read sectors 0-7 status 0");
            assert_line(
                &r,
                &format!("virtio_blk: checksum of sectors 0-7: {want_sum}"),
            );
            assert_line(&r, "virtio_blk: id 'kemu-disk0' status 0");
            assert_line(&r, "virtio_blk: write sector 5 status 0");
            assert_line(&r, "virtio_blk: flush status 0");
            assert_line(&r, "virtio_blk: sector 5 reads back what was written");
            assert_eq!(r.status, Some(1), "{what}: {}", r.stderr);
            if format == "qcow2" {
                let (code, text) = tool("qemu-img", &["check", img.to_str().unwrap()]);
                assert_eq!(code, 0, "{what}: qemu-img check: {text}");
            }
            let got = contents(&dir, &img, format);
            let mut want = data();
            want[SECTOR * 512..SECTOR * 512 + 512].copy_from_slice(&pattern());
            assert!(
                got == want,
                "{what}: the disk is not the seed plus sector 5"
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

#[test]
fn wild_descriptors_get_ioerr_and_leave_the_image_alone() {
    for accel in accels("virtio_blk wild_descriptors") {
        let dir = scratch(&format!("wild-{accel}"));
        let img = make_image(&dir, "kemu", "raw");
        let drive = format!("file={},format=raw", img.display());
        let r = boot(accel, &drive, &[], "w");
        assert_line(&r, "virtio_blk: write from outside RAM status 1");
        assert_line(&r, "virtio_blk: read into outside RAM status 1");
        assert_line(&r, "virtio_blk: read sectors 0-7 status 0");
        assert_eq!(r.status, Some(1), "{accel}: {}", r.stderr);
        assert!(
            std::fs::read(&img).unwrap() == data(),
            "{accel}: image changed"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn intx_reaches_the_cpu_through_the_8259s() {
    // Under KVM the line ends in the in-kernel irqchip, under tcg and under KVM with
    // kernel-irqchip=off in kemu's PIC.
    let mut runs: Vec<(&str, &[&str])> = accels("virtio_blk intx")
        .into_iter()
        .map(|a| (a, &[][..]))
        .collect();
    if runs.len() > 1 {
        runs.push(("kvm", &["-machine", "kernel-irqchip=off"]));
    }
    for (i, (accel, extra)) in runs.into_iter().enumerate() {
        let dir = scratch(&format!("intx-{accel}-{i}"));
        let img = make_image(&dir, "kemu", "raw");
        let drive = format!("file={},format=raw", img.display());
        let r = boot(accel, &drive, extra, "i");
        assert_line(&r, "virtio_blk: interrupt line 11");
        assert_line(&r, "virtio_blk: flush status 0");
        assert_line(&r, "virtio_blk: INTx interrupt taken, ISR 1");
        assert_eq!(r.status, Some(1), "{accel}: {}", r.stderr);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn snapshot_and_readonly_never_write_the_image() {
    for accel in accels("virtio_blk snapshot_and_readonly") {
        let dir = scratch(&format!("ro-{accel}"));
        let img = make_image(&dir, "kemu", "raw");
        // -snapshot: the guest sees its write, the file does not change.
        let drive = format!("file={},format=raw", img.display());
        let r = boot(accel, &drive, &["-snapshot"], "");
        assert_line(&r, "virtio_blk: write sector 5 status 0");
        assert_line(&r, "virtio_blk: sector 5 reads back what was written");
        assert_eq!(r.status, Some(1), "{accel} -snapshot: {}", r.stderr);
        assert!(
            std::fs::read(&img).unwrap() == data(),
            "{accel}: -snapshot wrote"
        );
        // readonly=on: the device says so and writes fail with IOERR.
        let drive = format!("file={},format=raw,readonly=on", img.display());
        let r = boot(accel, &drive, &[], "");
        assert_line(&r, "virtio_blk: read-only device");
        assert_line(&r, "virtio_blk: write sector 5 status 1");
        assert_line(&r, "virtio_blk: read sectors 0-7 status 0");
        assert_eq!(r.status, Some(1), "{accel} readonly: {}", r.stderr);
        assert!(
            std::fs::read(&img).unwrap() == data(),
            "{accel}: readonly wrote"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn sigkill_during_writes_leaves_a_consistent_qcow2() {
    if !have_qemu_img() {
        return;
    }
    for accel in accels("virtio_blk sigkill") {
        let dir = scratch(&format!("kill-{accel}"));
        let img = dir.join("loop.qcow2");
        kemu_img(&["create", "-f", "qcow2", img.to_str().unwrap(), "1M"]);
        let g = guest("virtio_blk.bin");
        let drive = format!("file={},format=qcow2", img.display());
        let mut child = Command::new(env!("CARGO_BIN_EXE_kemu"))
            .args([
                "-accel",
                accel,
                "-m",
                "128",
                "-kernel",
                g.to_str().unwrap(),
                "-nographic",
                "-no-reboot",
                "-device",
                "isa-debug-exit,iobase=0xf4,iosize=0x04",
                "-drive",
                &drive,
                "-append",
                "l",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        assert!(
            child.try_wait().unwrap().is_none(),
            "{accel}: kemu ended before the kill"
        );
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
        let (code, text) = tool("qemu-img", &["check", img.to_str().unwrap()]);
        // 0: clean; 3: leaked clusters only. 2 would be corruption.
        assert!(
            code == 0 || code == 3,
            "{accel}: qemu-img check {code}: {text}"
        );
        // The loop did write: the first sector holds a counter now.
        let got = contents(&dir, &img, "qcow2");
        assert!(got.iter().any(|&b| b != 0), "{accel}: nothing was written");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn drive_errors_name_the_problem() {
    let g = guest("virtio_blk.bin");
    let r = kemu(
        &[
            "-kernel",
            g.to_str().unwrap(),
            "-drive",
            "file=/nonexistent/disk.img,format=raw",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(r.status, Some(1));
    assert!(r.stderr.contains("/nonexistent/disk.img"), "{}", r.stderr);
    let r = kemu(
        &[
            "-kernel",
            g.to_str().unwrap(),
            "-drive",
            "file=x.img,if=ide",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(r.status, Some(1));
    assert!(
        r.stderr.contains("no IDE controller; use if=virtio"),
        "{}",
        r.stderr
    );
}

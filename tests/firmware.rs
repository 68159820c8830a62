//! kemu's firmware and `-bios`, mostly under `-accel tcg` (under KVM where /dev/kvm exists):
//! the boot CPU starts at the reset vector (0xFFFFFFF0, real mode), the firmware prints each
//! step on COM1 and hands over to the kernel the machine loaded; a user ROM runs from the same
//! place.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{expected, guest, kemu};

/// The firmware's lines before the handover line, for `cpus` CPUs and 128 MiB.
fn firmware_prefix(cpus: usize) -> String {
    format!(
        "kemu firmware: real mode, first instruction at 0xfffffff0\n\
         kemu firmware: fw_cfg \"QEMU\": 128 MiB RAM, {cpus} CPU(s)\n\
         kemu firmware: protected mode\n\
         kemu firmware: long mode\n\
         kemu firmware: handing over to "
    )
}

/// Splits serial output into the firmware's five lines and what the kernel printed, checking
/// the firmware's part; returns (handover line, kernel output).
fn split_firmware(out: &str, cpus: usize) -> (String, String) {
    let prefix = firmware_prefix(cpus);
    assert!(out.starts_with(&prefix), "firmware lines missing:\n{out}");
    let rest = &out[prefix.len()..];
    let (line, kernel) = rest.split_once('\n').unwrap_or((rest, ""));
    (line.to_string(), kernel.to_string())
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("kemu-fw-{}-{name}", std::process::id()))
}

/// `kemu -accel tcg` with no kernel: the demo guest, from the reset vector, exit status 0.
#[test]
fn demo_boots_from_the_reset_vector() {
    let r = kemu(&["-accel", "tcg", "-smp", "2"], Duration::from_secs(60));
    assert_eq!(r.status, Some(0), "{}", r.stderr);
    let (line, kernel) = split_firmware(&r.stdout, 2);
    assert!(
        line.starts_with("multiboot kernel at 0x00100")
            && line.ends_with(" in 32-bit protected mode"),
        "{line}"
    );
    assert_eq!(kernel, expected("demo"));
}

/// `kemu` with no arguments at all: the same path, on our CPU (QEMU's default accelerator
/// is TCG too), exit status 0.
#[test]
fn no_arguments_boot_the_demo_from_the_reset_vector() {
    let r = kemu(&[], Duration::from_secs(60));
    assert_eq!(r.status, Some(0), "{}", r.stderr);
    let (line, kernel) = split_firmware(&r.stdout, 1);
    assert!(line.starts_with("multiboot kernel at 0x00100"), "{line}");
    assert_eq!(
        kernel,
        expected("demo").replace("lists 2 enabled", "lists 1 enabled")
    );
}

/// `-bios kemu` puts the firmware in front of a `-kernel` (flat and ELF32 multiboot), under
/// tcg and, where /dev/kvm exists, under KVM (the ROM is a memory slot there).
#[test]
fn multiboot_kernels_through_the_firmware() {
    let mut runs = vec![
        ("tcg", "hello.bin"),
        ("tcg", "hello.elf"),
        ("tcg", "cpl3.bin"),
    ];
    if common::kvm_or_skip("multiboot_kernels_through_the_firmware under kvm") {
        runs.extend([("kvm", "hello.bin"), ("kvm", "cpl3.bin")]);
    }
    for (accel, file) in runs {
        let r = kemu(
            &[
                "-accel",
                accel,
                "-bios",
                "kemu",
                "-kernel",
                guest(file).to_str().unwrap(),
                "-device",
                "isa-debug-exit,iobase=0xf4,iosize=0x04",
            ],
            Duration::from_secs(60),
        );
        let (line, kernel) = split_firmware(&r.stdout, 1);
        assert!(
            line.starts_with("multiboot kernel at 0x"),
            "{accel} {file}: {line}"
        );
        let name = file.split('.').next().unwrap_or(file);
        assert_eq!(kernel, expected(name), "{accel} {file}: {}", r.stderr);
        assert_eq!(r.status, Some(1), "{accel} {file}: {}", r.stderr);
    }
}

/// Our firmware given as a file behaves like `-bios kemu`.
#[test]
fn the_firmware_as_a_bios_file() {
    let rom = Path::new(kemu::guests::GUEST_DIR)
        .parent()
        .map(|p| p.join("bios/kemu-bios.bin"))
        .unwrap();
    let r = kemu(
        &[
            "-accel",
            "tcg",
            "-bios",
            rom.to_str().unwrap(),
            "-kernel",
            guest("hello.bin").to_str().unwrap(),
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
        ],
        Duration::from_secs(60),
    );
    let (_, kernel) = split_firmware(&r.stdout, 1);
    assert_eq!(kernel, expected("hello"), "{}", r.stderr);
    assert_eq!(r.status, Some(1));

    // Without a kernel it has nothing to hand over to: it says so and halts (killed here).
    let r = kemu(
        &["-accel", "tcg", "-bios", rom.to_str().unwrap()],
        Duration::from_secs(5),
    );
    assert!(
        r.stdout
            .contains("kemu firmware: no etc/kemu/boot in fw_cfg (nothing to boot); halting"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
}

/// A user ROM of 128 KiB: the CPU's first fetch is at 0xFFFFFFF0 (the top mapping), whose far
/// jump lands in the low alias at 0xFFFF8 (the RAM copy), which exits through debug-exit.
#[test]
fn a_user_rom_runs_from_the_reset_vector_and_its_low_alias() {
    let mut rom = vec![0xffu8; 128 << 10];
    let end = rom.len();
    // 0xFFFFFFF0: ljmp $0xf000, $0xfff8
    rom[end - 16..end - 11].copy_from_slice(&[0xea, 0xf8, 0xff, 0x00, 0xf0]);
    // 0xFFFF8: mov $0x2a, %al; out %al, $0xf4; hlt
    rom[end - 8..end - 3].copy_from_slice(&[0xb0, 0x2a, 0xe6, 0xf4, 0xf4]);
    let path = temp("user.rom");
    std::fs::write(&path, &rom).unwrap();
    for accel in ["tcg", "kvm"] {
        if accel == "kvm" && !common::kvm_or_skip("user ROM under kvm") {
            continue;
        }
        let r = kemu(
            &[
                "-accel",
                accel,
                "-bios",
                path.to_str().unwrap(),
                "-device",
                "isa-debug-exit,iobase=0xf4,iosize=0x04",
            ],
            Duration::from_secs(30),
        );
        assert_eq!(r.status, Some(85), "{accel}: {}", r.stderr);
    }

    // A ROM whose size is not a multiple of 64 KiB is refused, as QEMU refuses it.
    std::fs::write(&path, vec![0u8; 1000]).unwrap();
    let r = kemu(
        &["-accel", "tcg", "-bios", path.to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert_eq!(r.status, Some(1));
    assert!(r.stderr.contains("multiple of 64 KiB"), "{}", r.stderr);
    let _ = std::fs::remove_file(path);
}

/// The Linux 64-bit handover, with memtest86+ (a bzImage-style kernel) when it is installed:
/// the firmware hands over in long mode and the kernel keeps running (killed after 5 s; what
/// memtest86+ itself does under tcg is `tests/memtest.rs`'s business).
#[test]
fn linux_64bit_handover() {
    let memtest = Path::new("/boot/memtest86+x64.bin");
    if !memtest.is_file() {
        eprintln!("linux_64bit_handover: SKIPPED (/boot/memtest86+x64.bin missing)");
        return;
    }
    let r = kemu(
        &[
            "-accel",
            "tcg",
            "-bios",
            "kemu",
            "-m",
            "128",
            "-kernel",
            memtest.to_str().unwrap(),
            "-append",
            "console=ttyS0,115200",
        ],
        Duration::from_secs(5),
    );
    let (line, _) = split_firmware(&r.stdout, 1);
    assert_eq!(
        line,
        "Linux kernel (64-bit boot protocol) at 0x00100200 in long mode"
    );
    assert_eq!(r.status, None, "kemu stopped: {}", r.stderr);
}

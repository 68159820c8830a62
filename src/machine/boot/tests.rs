//! Format detection, error messages and robustness against truncated and random images.

use std::path::Path;

use super::*;
use crate::machine::memory::create_ram;

const RAM: u64 = 32 << 20;

fn cfg() -> BootConfig {
    BootConfig {
        cmdline: "console=ttyS0".into(),
        initrd: Some(vec![1; 3000]),
        ram_size: RAM,
        cpus: 2,
    }
}

#[test]
fn unknown_formats_name_what_was_expected() {
    let ram = create_ram(RAM).unwrap();
    let e = load_kernel(&ram, b"just some text, not a kernel", &cfg()).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, BootError::UnknownFormat { .. }));
    assert!(
        msg.contains("not a Linux bzImage, an ELF vmlinux with a PVH note, or a multiboot kernel"),
        "{msg}"
    );
    // An ELF64 without the note.
    let mut elf = testimg::pvh_elf(0x100_0000);
    elf[0xb8] = 17;
    let msg = load_kernel(&ram, &elf, &cfg()).unwrap_err().to_string();
    assert!(msg.contains("without a PVH note"), "{msg}");
}

#[test]
fn config_errors() {
    let ram = create_ram(RAM).unwrap();
    let img = testimg::multiboot_kludge();
    let mut c = cfg();
    c.cpus = 0;
    assert!(matches!(
        load_kernel(&ram, &img, &c),
        Err(BootError::Config(_))
    ));
    let mut c = cfg();
    c.ram_size = 2 * RAM;
    assert!(matches!(
        load_kernel(&ram, &img, &c),
        Err(BootError::Config(_))
    ));
    let mut c = cfg();
    c.cmdline = "a\0b".into();
    assert!(matches!(
        load_kernel(&ram, &img, &c),
        Err(BootError::Cmdline(_))
    ));
}

#[test]
fn files_that_cannot_be_read_name_their_path() {
    let ram = create_ram(RAM).unwrap();
    let path = Path::new("/nonexistent/kemu-test-kernel");
    let msg = load_kernel_file(&ram, path, &cfg())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("/nonexistent/kemu-test-kernel"), "{msg}");
    let msg = read_initrd(path).unwrap_err().to_string();
    assert!(
        msg.contains("initrd") && msg.contains("kemu-test-kernel"),
        "{msg}"
    );
}

#[test]
fn truncated_images_error_with_structure_and_offset() {
    let ram = create_ram(RAM).unwrap();
    let img = testimg::pvh_elf(0x100_0000);
    let msg = load_kernel(&ram, &img[..100], &cfg())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("ELF program header 0") && msg.contains("0x40"),
        "{msg}"
    );
    let img = testimg::bzimage(0x20f, 0);
    let msg = load_kernel(&ram, &img[..0x240], &cfg())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("Linux setup header") && msg.contains("0x1f1"),
        "{msg}"
    );
}

/// Every prefix of every test image, and corrupted copies, give an error or a setup; never a
/// panic.
#[test]
fn truncation_and_corruption_never_panic() {
    let ram = create_ram(RAM).unwrap();
    let images = [
        testimg::bzimage(0x20f, 0x4000),
        testimg::pvh_elf(0x100_0000),
        testimg::multiboot_elf32(),
        testimg::multiboot_kludge(),
    ];
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for img in &images {
        for len in 0..=img.len() {
            let _ = load_kernel(&ram, &img[..len], &cfg());
        }
        for _ in 0..300 {
            let mut bad = img.clone();
            for _ in 0..(next() % 8 + 1) {
                let i = (next() as usize) % bad.len();
                bad[i] = next() as u8;
            }
            let _ = load_kernel(&ram, &bad, &cfg());
        }
    }
    for _ in 0..300 {
        let len = (next() % 9000) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Half of them wear a valid-looking signature so the parsers behind it run.
        match next() % 4 {
            0 if len >= 0x206 => bytes[0x202..0x206].copy_from_slice(b"HdrS"),
            1 if len >= 16 => {
                bytes[..4].copy_from_slice(b"\x7fELF");
                bytes[4] = 1 + (next() % 2) as u8;
                bytes[5] = 1;
            }
            2 if len >= 48 => {
                bytes[..4].copy_from_slice(&0x1bad_b002u32.to_le_bytes());
                let flags = (next() as u32) & 0x1_0003;
                testimg_set_flags(&mut bytes, flags);
            }
            _ => {}
        }
        let _ = load_kernel(&ram, &bytes, &cfg());
    }
}

fn testimg_set_flags(v: &mut [u8], flags: u32) {
    v[4..8].copy_from_slice(&flags.to_le_bytes());
    let sum = 0u32.wrapping_sub(0x1bad_b002).wrapping_sub(flags);
    v[8..12].copy_from_slice(&sum.to_le_bytes());
}

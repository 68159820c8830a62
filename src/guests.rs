//! Guest images built into the binary: the demo guest `kemu` boots with no arguments, and the
//! small test guests of `tests/guest-images`.
//!
//! `build.rs` assembles every `tests/guest-images/NAME.S` into `$OUT_DIR/guests/NAME.bin` (a
//! flat multiboot image, a.out kludge, loaded at 1 MiB) and a few into `NAME.elf` (ELF32
//! multiboot); this module embeds them with `include_bytes!`, so data leaves it only as
//! `&'static [u8]`. What each guest prints and how it ends is in `tests/guest-images/README.md`;
//! its exact serial output is in `tests/guest-images/NAME.expected` ([`expected_output`]).

mod table {
    include!(concat!(env!("OUT_DIR"), "/guests/table.rs"));
}

/// The directory holding the built guest files (`NAME.bin`, `NAME.elf`), for tests that hand a
/// path to the CLI.
pub const GUEST_DIR: &str = concat!(env!("OUT_DIR"), "/guests");

/// The embedded demo guest: a flat multiboot image that walks a learner through multiboot
/// entry, long mode, the ACPI tables, a trip to CPL 3 and back, and ends with ACPI power-off
/// (so `kemu` exits 0).
pub fn demo() -> &'static [u8] {
    by_name("demo").unwrap_or(&[])
}

/// A built test guest by name: `"hello"` is `hello.bin` (flat multiboot), `"hello.elf"` the
/// ELF32 variant. `None` for an unknown name.
pub fn by_name(name: &str) -> Option<&'static [u8]> {
    table::GUESTS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, bytes, _)| *bytes)
}

/// The names of all built guests (as [`by_name`] accepts them).
pub fn names() -> impl Iterator<Item = &'static str> {
    table::GUESTS.iter().map(|(n, _, _)| *n)
}

/// The exact serial output guest `name` prints with 2 CPUs (its `tests/guest-images/NAME.expected`;
/// `hello.elf` shares `hello`'s). `None` for an unknown guest or one without the file.
pub fn expected_output(name: &str) -> Option<&'static str> {
    table::GUESTS
        .iter()
        .find(|(n, _, _)| *n == name)
        .and_then(|(_, _, expected)| *expected)
}

/// The debug-exit value a guest reports on success (the process exit status is
/// `(value << 1) | 1`). The demo powers off instead (status 0); `exit_code` reports 0x2a.
pub const SUCCESS_EXIT_VALUE: u32 = 0;

/// The exit status the emulator process must end with when guest `name` succeeds: 0 for the
/// demo and `powerbtn` (ACPI power-off), 85 for `exit_code` (debug-exit 0x2a), 1 for the others (debug-exit
/// 0). `None` for an unknown guest.
pub fn expected_exit_status(name: &str) -> Option<i32> {
    by_name(name)?;
    Some(match name.strip_suffix(".elf").unwrap_or(name) {
        "demo" | "powerbtn" => 0,
        "exit_code" => 85,
        _ => ((SUCCESS_EXIT_VALUE << 1) | 1) as i32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flat image starts with the multiboot header: magic, flags with bit 16 (the
    /// a.out kludge), checksum, and a load address of 1 MiB.
    #[test]
    fn flat_images_carry_an_aout_kludge_multiboot_header() {
        for name in names().filter(|n| !n.ends_with(".elf")) {
            let img = by_name(name).unwrap_or_default();
            let word = |i: usize| {
                u32::from_le_bytes([img[4 * i], img[4 * i + 1], img[4 * i + 2], img[4 * i + 3]])
            };
            assert_eq!(word(0), 0x1BAD_B002, "{name}: magic");
            assert_ne!(word(1) & (1 << 16), 0, "{name}: a.out kludge flag");
            assert_eq!(
                word(0).wrapping_add(word(1)).wrapping_add(word(2)),
                0,
                "{name}: checksum"
            );
            assert_eq!(word(3), 0x10_0000, "{name}: header_addr");
            assert_eq!(word(4), 0x10_0000, "{name}: load_addr");
            assert_eq!(
                (word(5) - word(4)) as usize,
                img.len(),
                "{name}: load_end_addr"
            );
            assert!(word(6) >= word(5), "{name}: bss_end_addr");
        }
    }

    #[test]
    fn the_elf_variant_is_elf32_i386() {
        let elf = by_name("hello.elf").unwrap_or_default();
        assert_eq!(&elf[..4], b"\x7fELF");
        assert_eq!(elf[4], 1, "ELFCLASS32");
        assert_eq!(u16::from_le_bytes([elf[18], elf[19]]), 3, "EM_386");
    }

    #[test]
    fn demo_and_named_guests_are_present() {
        assert!(!demo().is_empty());
        for name in ["hello", "hello.elf", "exit_code", "pio_bench", "demo"] {
            assert!(by_name(name).is_some(), "{name}");
        }
        assert!(by_name("no-such-guest").is_none());
        assert_eq!(expected_output("hello.elf"), Some("hello from long mode\n"));
        assert_eq!(expected_exit_status("hello.elf"), Some(1));
        assert_eq!(expected_exit_status("exit_code"), Some(85));
        assert_eq!(expected_exit_status("demo"), Some(0));
        assert_eq!(expected_exit_status("no-such-guest"), None);
        assert!(std::path::Path::new(GUEST_DIR).join("hello.bin").is_file());
    }

    /// A guest added without an expected-output file would silently go unchecked.
    #[test]
    fn every_guest_has_an_expected_output() {
        for name in names() {
            assert!(
                expected_output(name).is_some(),
                "{name}: add tests/guest-images/{name}.expected"
            );
        }
    }
}

//! Small synthetic kernel images for the loader tests, built byte by byte.

fn put16(v: &mut [u8], off: usize, x: u16) {
    v[off..off + 2].copy_from_slice(&x.to_le_bytes());
}
fn put32(v: &mut [u8], off: usize, x: u32) {
    v[off..off + 4].copy_from_slice(&x.to_le_bytes());
}
fn put64(v: &mut [u8], off: usize, x: u64) {
    v[off..off + 8].copy_from_slice(&x.to_le_bytes());
}

/// A bzImage: one setup sector after the boot sector, then 4 KiB of "kernel" starting with
/// AA BB CC DD. `version` is the boot protocol, `init_size` the decompression footprint.
pub fn bzimage(version: u16, init_size: u32) -> Vec<u8> {
    let mut v = vec![0u8; 1024 + 0x1000];
    v[0x1f1] = 1; // setup_sects
    put16(&mut v, 0x1fe, 0xaa55);
    v[0x200] = 0xeb;
    v[0x201] = 0x6a; // header ends at 0x26c
    v[0x202..0x206].copy_from_slice(b"HdrS");
    put16(&mut v, 0x206, version);
    v[0x211] = 0x01; // LOADED_HIGH
    put32(&mut v, 0x214, 0x100000); // code32_start
    put32(&mut v, 0x22c, 0x37ff_ffff); // initrd_addr_max
    put16(&mut v, 0x236, 0x0003); // XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G
    put32(&mut v, 0x238, 256); // cmdline_size
    put32(&mut v, 0x260, init_size);
    v[1024..1028].copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
    v
}

/// An ELF64 with one PT_LOAD (0x100 bytes of HLT at 16 MiB, memsz 0x2000) and a PT_NOTE with
/// the PVH entry `entry`.
pub fn pvh_elf(entry: u32) -> Vec<u8> {
    let mut v = vec![0u8; 0x200];
    v[..4].copy_from_slice(b"\x7fELF");
    v[4] = 2; // ELFCLASS64
    v[5] = 1; // little-endian
    v[6] = 1;
    put16(&mut v, 16, 2); // ET_EXEC
    put16(&mut v, 18, 62); // EM_X86_64
    put32(&mut v, 20, 1);
    put64(&mut v, 24, 0xffff_ffff_8100_0000); // e_entry (virtual, unused by PVH)
    put64(&mut v, 32, 64); // e_phoff
    put16(&mut v, 52, 64);
    put16(&mut v, 54, 56);
    put16(&mut v, 56, 2);
    // PT_LOAD
    put32(&mut v, 64, 1);
    put32(&mut v, 68, 5);
    put64(&mut v, 64 + 8, 0x100);
    put64(&mut v, 64 + 16, 0xffff_ffff_8100_0000);
    put64(&mut v, 64 + 24, 0x100_0000);
    put64(&mut v, 64 + 32, 0x100);
    put64(&mut v, 64 + 40, 0x2000);
    // PT_NOTE
    put32(&mut v, 120, 4);
    put64(&mut v, 120 + 8, 0xb0);
    put64(&mut v, 120 + 32, 20);
    put64(&mut v, 120 + 40, 20);
    // The note: namesz 4, descsz 4, type 18, "Xen\0", entry.
    put32(&mut v, 0xb0, 4);
    put32(&mut v, 0xb4, 4);
    put32(&mut v, 0xb8, 18);
    v[0xbc..0xc0].copy_from_slice(b"Xen\0");
    put32(&mut v, 0xc0, entry);
    v[0x100..0x200].fill(0xf4);
    v
}

/// Moves the PT_LOAD segment of a [`pvh_elf`] image.
pub fn set_paddr64(v: &mut [u8], paddr: u64) {
    put64(v, 64 + 24, paddr);
}

/// Rewrites the flags (and checksum) of the multiboot header at `off`.
pub fn set_multiboot_flags(v: &mut [u8], off: usize, flags: u32) {
    put32(v, off + 4, flags);
    put32(
        v,
        off + 8,
        0u32.wrapping_sub(0x1bad_b002).wrapping_sub(flags),
    );
}

/// An ELF32 multiboot kernel: one PT_LOAD at 1 MiB (file offset 0x60, memsz 0x1000) that
/// starts with the multiboot header; entry at 0x100010.
pub fn multiboot_elf32() -> Vec<u8> {
    let mut v = vec![0u8; 0x80];
    v[..4].copy_from_slice(b"\x7fELF");
    v[4] = 1; // ELFCLASS32
    v[5] = 1;
    v[6] = 1;
    put16(&mut v, 16, 2);
    put16(&mut v, 18, 3); // EM_386
    put32(&mut v, 20, 1);
    put32(&mut v, 24, 0x100010); // e_entry
    put32(&mut v, 28, 52); // e_phoff
    put16(&mut v, 40, 52);
    put16(&mut v, 42, 32);
    put16(&mut v, 44, 1);
    put32(&mut v, 52, 1); // PT_LOAD
    put32(&mut v, 56, 0x60); // p_offset
    put32(&mut v, 60, 0x100000); // p_vaddr
    put32(&mut v, 64, 0x100000); // p_paddr
    put32(&mut v, 68, 0x20); // p_filesz
    put32(&mut v, 72, 0x1000); // p_memsz
    put32(&mut v, 0x60, 0x1bad_b002);
    set_multiboot_flags(&mut v, 0x60, 0x3);
    v[0x70..0x80].fill(0xf4);
    v
}

/// An a.out-kludge multiboot kernel: header at offset 0 with address fields loading the whole
/// 0x40-byte file at 2 MiB, BSS to 0x203000, entry 0x200020.
pub fn multiboot_kludge() -> Vec<u8> {
    let mut v = vec![0u8; 0x40];
    put32(&mut v, 0, 0x1bad_b002);
    set_multiboot_flags(&mut v, 0, 0x1_0003);
    put32(&mut v, 12, 0x200000); // header_addr
    put32(&mut v, 16, 0x200000); // load_addr
    put32(&mut v, 20, 0); // load_end_addr: whole file
    put32(&mut v, 24, 0x203000); // bss_end_addr
    put32(&mut v, 28, 0x200020); // entry_addr
    v[0x20..0x40].fill(0xf4);
    v
}

//! Multiboot v1 (the GNU Multiboot Specification 0.6.96) for small test kernels, as QEMU's
//! `-kernel` does.
//!
//! In: an image with a multiboot header in its first 8 KiB. Out: the kernel loaded either from
//! its ELF program headers (at `p_paddr`) or, when header flag 16 is set, by the a.out kludge's
//! address fields; the command line; the initrd as one module; the multiboot information
//! structure at `MULTIBOOT_INFO_ADDR` (memory sizes, e820-style mmap, module, command line,
//! boot loader name "kemu"); and the BSP in 32-bit protected mode, paging off, flat segments,
//! EAX = 0x2BADB002, EBX = the information structure.
//!
//! Required header flags kemu cannot honour (video mode, bit 2; unknown bits 3..15) are
//! refused, as the specification asks of a boot loader.

use super::{elf::ElfFile, entry, guest, image, BootConfig, BootError, BootMethod, BootSetup};
use crate::accel::reg;
use crate::accel::GuestRam;
use crate::machine::memory::{
    e820_map, low_ram_end, CMDLINE_MAX, EBDA_START, HIMEM_START, MULTIBOOT_INFO_ADDR,
};

/// Header magic.
pub const HEADER_MAGIC: u32 = 0x1BAD_B002;
/// EAX at entry.
pub const BOOTLOADER_MAGIC: u32 = 0x2BAD_B002;
/// The header must lie within this many bytes from the start.
const SEARCH_LIMIT: usize = 8192;
/// Header flag: align modules on 4 KiB (we always do).
const FLAG_PAGE_ALIGN: u32 = 1 << 0;
/// Header flag: memory information wanted (always given).
const FLAG_MEMORY_INFO: u32 = 1 << 1;
/// Header flag: video mode information wanted.
const FLAG_VIDEO_MODE: u32 = 1 << 2;
/// Header flag: the address fields are valid (a.out kludge).
const FLAG_AOUT_KLUDGE: u32 = 1 << 16;

/// Info flags.
const INFO_MEMORY: u32 = 1 << 0;
const INFO_CMDLINE: u32 = 1 << 2;
const INFO_MODS: u32 = 1 << 3;
const INFO_MMAP: u32 = 1 << 6;
const INFO_LOADER_NAME: u32 = 1 << 9;

/// Layout of the information page.
const MMAP_ADDR: u64 = MULTIBOOT_INFO_ADDR + 0x100;
const MMAP_MAX: usize = 0x200 / 24;
const MODS_ADDR: u64 = MULTIBOOT_INFO_ADDR + 0x300;
const MOD_STRING_ADDR: u64 = MULTIBOOT_INFO_ADDR + 0x400;
const LOADER_NAME_ADDR: u64 = MULTIBOOT_INFO_ADDR + 0x410;
/// Size of the information structure we write (through the framebuffer fields, zeroed).
const INFO_SIZE: usize = 120;

/// A multiboot header found in an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    /// Offset of the header in the image.
    offset: u64,
    /// Its flags.
    flags: u32,
}

impl Header {
    /// Looks for a header (magic with a valid checksum, 4-byte aligned) in the first 8 KiB.
    pub(super) fn find(img: &[u8]) -> Result<Option<Header>, BootError> {
        let end = img.len().min(SEARCH_LIMIT);
        let mut off = 0;
        while off + 12 <= end {
            let o = off as u64;
            if image::u32_at(img, o, "multiboot header")? == HEADER_MAGIC {
                let flags = image::u32_at(img, o + 4, "multiboot header")?;
                let checksum = image::u32_at(img, o + 8, "multiboot header")?;
                if HEADER_MAGIC.wrapping_add(flags).wrapping_add(checksum) == 0 {
                    return Ok(Some(Header { offset: o, flags }));
                }
            }
            off += 4;
        }
        Ok(None)
    }
}

/// Loads through the a.out kludge: returns (start, end, entry).
fn load_kludge(
    ram: &GuestRam,
    img: &[u8],
    header: &Header,
    limit: u64,
) -> Result<(u64, u64, u64), BootError> {
    let what = "multiboot header address fields";
    let field = |i: u64| -> Result<u64, BootError> {
        Ok(u64::from(image::u32_at(
            img,
            header.offset + 12 + 4 * i,
            what,
        )?))
    };
    let (header_addr, load_addr, load_end, bss_end, entry) =
        (field(0)?, field(1)?, field(2)?, field(3)?, field(4)?);
    let invalid = |detail: String| BootError::Invalid {
        what: what.into(),
        detail,
    };
    if load_addr > header_addr {
        return Err(invalid(format!(
            "load_addr {load_addr:#x} is above header_addr {header_addr:#x}"
        )));
    }
    let file_start = header
        .offset
        .checked_sub(header_addr - load_addr)
        .ok_or_else(|| {
            invalid(format!(
                "header_addr - load_addr = {:#x} is more than the header's offset {:#x}",
                header_addr - load_addr,
                header.offset
            ))
        })?;
    let file_len = if load_end == 0 {
        img.len() as u64 - file_start
    } else {
        load_end.checked_sub(load_addr).ok_or_else(|| {
            invalid(format!(
                "load_end_addr {load_end:#x} is below load_addr {load_addr:#x}"
            ))
        })?
    };
    let end = load_addr + file_len;
    let mem_end = if bss_end == 0 { end } else { bss_end };
    if mem_end < end {
        return Err(invalid(format!(
            "bss_end_addr {bss_end:#x} is below the end of the loaded image {end:#x}"
        )));
    }
    let data = image::bytes(
        img,
        file_start,
        file_len,
        "multiboot a.out kernel text and data",
    )?;
    guest::check_placement(
        ram,
        "multiboot kernel",
        load_addr,
        mem_end - load_addr,
        limit,
    )?;
    guest::write(ram, load_addr, data, "multiboot kernel")?;
    guest::zero(ram, end, mem_end - end, "multiboot kernel BSS")?;
    Ok((load_addr, mem_end, entry))
}

/// Loads an ELF multiboot kernel: returns (start, end, entry).
fn load_elf(ram: &GuestRam, img: &[u8], limit: u64) -> Result<(u64, u64, u64), BootError> {
    if !img.starts_with(super::elf::ELF_MAGIC) {
        return Err(BootError::Invalid {
            what: "multiboot kernel".into(),
            detail: "the header has no address fields (flag 16 clear), so the image must be \
                     ELF, but it has no ELF magic"
                .into(),
        });
    }
    let file = ElfFile::parse(img)?;
    let (start, end) = file.load(ram, img, limit)?;
    Ok((start, end, file.entry))
}

/// Builds the information structure and what it points at.
fn write_info(
    ram: &GuestRam,
    cfg: &BootConfig,
    cmdline_addr: u64,
    initrd: Option<(u64, u64)>,
) -> Result<(), BootError> {
    let low_end = low_ram_end(cfg.ram_size);
    let map = e820_map(cfg.ram_size);
    let mmap: Vec<u8> = map
        .iter()
        .take(MMAP_MAX)
        .flat_map(|e| {
            let mut b = Vec::with_capacity(24);
            b.extend_from_slice(&20u32.to_le_bytes()); // size of the rest of the entry
            b.extend_from_slice(&e.addr.to_le_bytes());
            b.extend_from_slice(&e.size.to_le_bytes());
            b.extend_from_slice(&e.kind.code().to_le_bytes());
            b
        })
        .collect();
    guest::write(ram, MMAP_ADDR, &mmap, "multiboot memory map")?;
    guest::write(ram, MOD_STRING_ADDR, b"initrd\0", "multiboot module string")?;
    guest::write(
        ram,
        LOADER_NAME_ADDR,
        b"kemu\0",
        "multiboot boot loader name",
    )?;

    let mut info = [0u8; INFO_SIZE];
    let mut put = |off: usize, v: u32| info[off..off + 4].copy_from_slice(&v.to_le_bytes());
    put(
        0,
        INFO_MEMORY | INFO_CMDLINE | INFO_MODS | INFO_MMAP | INFO_LOADER_NAME,
    );
    put(4, (EBDA_START / 1024) as u32);
    put(8, (low_end.saturating_sub(HIMEM_START) / 1024) as u32);
    put(16, cmdline_addr as u32);
    if let Some((addr, size)) = initrd {
        let mut module = [0u8; 16];
        module[0..4].copy_from_slice(&(addr as u32).to_le_bytes());
        module[4..8].copy_from_slice(&((addr + size) as u32).to_le_bytes());
        module[8..12].copy_from_slice(&(MOD_STRING_ADDR as u32).to_le_bytes());
        guest::write(ram, MODS_ADDR, &module, "multiboot module list")?;
        put(20, 1);
    }
    put(24, MODS_ADDR as u32);
    put(44, mmap.len() as u32);
    put(48, MMAP_ADDR as u32);
    put(64, LOADER_NAME_ADDR as u32);
    guest::write(ram, MULTIBOOT_INFO_ADDR, &info, "multiboot information")
}

/// Loads a multiboot kernel.
pub(super) fn load(
    ram: &GuestRam,
    img: &[u8],
    header: &Header,
    cfg: &BootConfig,
    rsdp: u64,
) -> Result<BootSetup, BootError> {
    if header.flags & FLAG_VIDEO_MODE != 0 {
        return Err(BootError::Unsupported(
            "the multiboot header requires video mode information (flag bit 2), which kemu \
             does not provide"
                .into(),
        ));
    }
    let unknown = header.flags & 0xffff & !(FLAG_PAGE_ALIGN | FLAG_MEMORY_INFO);
    if unknown != 0 {
        return Err(BootError::Unsupported(format!(
            "the multiboot header requires features kemu does not know (flag bits {unknown:#x})"
        )));
    }
    // 32-bit kernel, paging off: everything must sit below 4 GiB, i.e. in low RAM.
    let limit = low_ram_end(cfg.ram_size);
    let (start, end, entry) = if header.flags & FLAG_AOUT_KLUDGE != 0 {
        load_kludge(ram, img, header, limit)?
    } else {
        load_elf(ram, img, limit)?
    };
    if entry >= 1 << 32 {
        return Err(BootError::Invalid {
            what: "multiboot kernel".into(),
            detail: format!("entry point {entry:#x} is not a 32-bit address"),
        });
    }
    let cmdline_addr = guest::write_cmdline(ram, &cfg.cmdline, CMDLINE_MAX - 1)?;
    let initrd = match &cfg.initrd {
        Some(data) => {
            let lowest = (end + 0xfff) & !0xfff;
            Some(guest::place_initrd(ram, data, lowest, limit)?)
        }
        None => None,
    };
    write_info(ram, cfg, cmdline_addr, initrd)?;

    let mut bsp = entry::protected_mode(ram, entry)?;
    bsp.gpr[reg::RAX] = u64::from(BOOTLOADER_MAGIC);
    bsp.gpr[reg::RBX] = MULTIBOOT_INFO_ADDR;
    Ok(BootSetup {
        bsp,
        method: BootMethod::Multiboot,
        entry,
        kernel: (start, end),
        initrd,
        rsdp,
    })
}

#[cfg(test)]
mod tests {
    use vm_memory::{Bytes, GuestAddress};

    use super::*;
    use crate::machine::boot::{load_kernel, testimg};
    use crate::machine::memory::{create_ram, CMDLINE_ADDR};

    const RAM: u64 = 32 << 20;

    fn cfg(initrd: Option<Vec<u8>>) -> BootConfig {
        BootConfig {
            cmdline: "hello multiboot".into(),
            initrd,
            ram_size: RAM,
            cpus: 1,
        }
    }

    fn u32_at(ram: &GuestRam, addr: u64) -> u32 {
        ram.read_obj(GuestAddress(addr)).unwrap()
    }

    fn check_info(ram: &GuestRam, setup: &BootSetup) {
        let s = &setup.bsp;
        assert_eq!(s.gpr[reg::RAX], 0x2bad_b002);
        assert_eq!(s.gpr[reg::RBX], MULTIBOOT_INFO_ADDR);
        assert_eq!(s.code_bitness(), 32);
        assert_eq!(s.cr0 & (1 << 31), 0);
        let info = MULTIBOOT_INFO_ADDR;
        let flags = u32_at(ram, info);
        assert_eq!(flags, 0x24d);
        assert_eq!(u32_at(ram, info + 4), 639);
        assert_eq!(u32_at(ram, info + 8) as u64, (RAM - (1 << 20)) / 1024);
        assert_eq!(u32_at(ram, info + 16) as u64, CMDLINE_ADDR);
        let mut line = [0u8; 16];
        ram.read_slice(&mut line, GuestAddress(CMDLINE_ADDR))
            .unwrap();
        assert_eq!(&line, b"hello multiboot\0");
        // mmap: entries of 24 bytes, size field 20, last one is RAM above 1 MiB.
        let len = u32_at(ram, info + 44) as u64;
        let addr = u32_at(ram, info + 48) as u64;
        assert_eq!(len, 24 * e820_map(RAM).len() as u64);
        let last = addr + len - 24;
        assert_eq!(u32_at(ram, last), 20);
        assert_eq!(
            ram.read_obj::<u64>(GuestAddress(last + 4)).unwrap(),
            1 << 20
        );
        assert_eq!(u32_at(ram, last + 20), 1);
        let name = u32_at(ram, info + 64) as u64;
        let mut n = [0u8; 5];
        ram.read_slice(&mut n, GuestAddress(name)).unwrap();
        assert_eq!(&n, b"kemu\0");
    }

    #[test]
    fn boots_an_elf32_multiboot_kernel() {
        let ram = create_ram(RAM).unwrap();
        let img = testimg::multiboot_elf32();
        let setup = load_kernel(&ram, &img, &cfg(Some(vec![3; 100]))).unwrap();
        assert_eq!(setup.method, BootMethod::Multiboot);
        assert_eq!(setup.entry, 0x100010);
        assert_eq!(setup.bsp.rip, 0x100010);
        check_info(&ram, &setup);
        assert_eq!(ram.read_obj::<u8>(GuestAddress(0x100000)).unwrap(), 0x02);
        // The module: start, end, string "initrd".
        assert_eq!(u32_at(&ram, MULTIBOOT_INFO_ADDR + 20), 1);
        let mods = u32_at(&ram, MULTIBOOT_INFO_ADDR + 24) as u64;
        let (start, end) = (u32_at(&ram, mods) as u64, u32_at(&ram, mods + 4) as u64);
        assert_eq!((start, end - start), setup.initrd.unwrap());
        assert_eq!(start % 4096, 0);
        assert_eq!(ram.read_obj::<u8>(GuestAddress(start)).unwrap(), 3);
    }

    #[test]
    fn boots_an_aout_kludge_kernel() {
        let ram = create_ram(RAM).unwrap();
        let img = testimg::multiboot_kludge();
        let setup = load_kernel(&ram, &img, &cfg(None)).unwrap();
        assert_eq!(setup.entry, 0x200020);
        check_info(&ram, &setup);
        assert_eq!(u32_at(&ram, MULTIBOOT_INFO_ADDR + 20), 0, "no modules");
        // load_addr = 0x200000 holds the header (file offset 0); BSS up to 0x203000 is zeroed.
        assert_eq!(u32_at(&ram, 0x200000), HEADER_MAGIC);
        assert_eq!(setup.kernel, (0x200000, 0x203000));
    }

    #[test]
    fn refuses_video_and_unknown_flags() {
        let ram = create_ram(RAM).unwrap();
        let mut img = testimg::multiboot_kludge();
        testimg::set_multiboot_flags(&mut img, 0, (1 << 16) | (1 << 2));
        let e = load_kernel(&ram, &img, &cfg(None)).unwrap_err();
        assert!(e.to_string().contains("video"), "{e}");
        testimg::set_multiboot_flags(&mut img, 0, (1 << 16) | (1 << 5));
        let e = load_kernel(&ram, &img, &cfg(None)).unwrap_err();
        assert!(e.to_string().contains("0x20"), "{e}");
    }

    #[test]
    fn bad_checksum_is_not_a_header() {
        let mut img = testimg::multiboot_kludge();
        img[8] ^= 1;
        assert_eq!(Header::find(&img).unwrap(), None);
    }
}

//! The PVH boot protocol (xenbits.xen.org/docs/unstable/misc/pvh.html) for ELF vmlinux images
//! that carry a `XEN_ELFNOTE_PHYS32_ENTRY` note.
//!
//! In: the parsed ELF and its PVH entry. Out: `PT_LOAD` segments at their physical addresses,
//! the command line, the initrd as module 0, an `hvm_start_info` (version 1, with the e820 map
//! and the RSDP) at `PVH_START_INFO_ADDR`, and the BSP in 32-bit protected mode, paging off,
//! flat segments, EBX = the start_info address, at the note's entry.

use linux_loader::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info, XEN_HVM_START_MAGIC_VALUE,
};
use vm_memory::ByteValued;

use super::{elf::ElfFile, entry, guest, BootConfig, BootError, BootMethod, BootSetup};
use crate::accel::reg;
use crate::accel::GuestRam;
use crate::machine::memory::{e820_map, low_ram_end, CMDLINE_MAX, PVH_START_INFO_ADDR};

/// Module list, right after the start_info.
const MODLIST_ADDR: u64 = PVH_START_INFO_ADDR + 0x40;
/// Memory map, after the (one-entry) module list.
const MEMMAP_ADDR: u64 = PVH_START_INFO_ADDR + 0x80;
/// Entries that fit between `MEMMAP_ADDR` and the end of the page.
const MEMMAP_MAX: usize = (0x1000 - 0x80) / 24;

/// Loads an ELF vmlinux through its PVH entry.
pub(super) fn load(
    ram: &GuestRam,
    img: &[u8],
    file: &ElfFile,
    entry: u64,
    cfg: &BootConfig,
    rsdp: u64,
) -> Result<BootSetup, BootError> {
    let low_end = low_ram_end(cfg.ram_size);
    if entry >= 1 << 32 {
        return Err(BootError::Invalid {
            what: "PVH note".into(),
            detail: format!("entry point {entry:#x} is not a 32-bit physical address"),
        });
    }
    let (kernel_start, kernel_end) = file.load(ram, img, low_end)?;
    let cmdline_addr = guest::write_cmdline(ram, &cfg.cmdline, CMDLINE_MAX - 1)?;
    let initrd = match &cfg.initrd {
        Some(data) => {
            let lowest = (kernel_end + 0xfff) & !0xfff;
            Some(guest::place_initrd(ram, data, lowest, low_end)?)
        }
        None => None,
    };

    let map = e820_map(cfg.ram_size);
    let memmap: Vec<u8> = map
        .iter()
        .take(MEMMAP_MAX)
        .flat_map(|e| {
            hvm_memmap_table_entry {
                addr: e.addr,
                size: e.size,
                type_: e.kind.code(),
                reserved: 0,
            }
            .as_slice()
            .to_vec()
        })
        .collect();
    guest::write(ram, MEMMAP_ADDR, &memmap, "PVH memory map")?;

    let mut info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: 1,
        cmdline_paddr: cmdline_addr,
        rsdp_paddr: rsdp,
        memmap_paddr: MEMMAP_ADDR,
        memmap_entries: map.len().min(MEMMAP_MAX) as u32,
        ..hvm_start_info::default()
    };
    if let Some((addr, size)) = initrd {
        let module = hvm_modlist_entry {
            paddr: addr,
            size,
            ..hvm_modlist_entry::default()
        };
        guest::write(ram, MODLIST_ADDR, module.as_slice(), "PVH module list")?;
        info.nr_modules = 1;
        info.modlist_paddr = MODLIST_ADDR;
    }
    guest::write(ram, PVH_START_INFO_ADDR, info.as_slice(), "PVH start_info")?;

    let mut bsp = entry::protected_mode(ram, entry)?;
    bsp.gpr[reg::RBX] = PVH_START_INFO_ADDR;
    Ok(BootSetup {
        bsp,
        method: BootMethod::Pvh,
        entry,
        kernel: (kernel_start, kernel_end),
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

    #[test]
    fn boots_an_elf_with_a_pvh_note() {
        let ram = create_ram(RAM).unwrap();
        let img = testimg::pvh_elf(0x0100_00c0);
        let cfg = BootConfig {
            cmdline: "root=/dev/vda".into(),
            initrd: Some(vec![7; 5000]),
            ram_size: RAM,
            cpus: 1,
        };
        let setup = load_kernel(&ram, &img, &cfg).unwrap();
        assert_eq!(setup.method, BootMethod::Pvh);
        assert_eq!(setup.entry, 0x0100_00c0);
        let s = &setup.bsp;
        assert_eq!(s.rip, 0x0100_00c0);
        assert_eq!(s.gpr[reg::RBX], PVH_START_INFO_ADDR);
        assert_eq!(s.code_bitness(), 32);
        assert_eq!(s.cr0 & (1 << 31), 0, "paging off");
        assert_eq!(s.rflags & (1 << 9), 0);
        assert_eq!((s.tr.base, s.tr.limit, s.tr.type_), (0, 0x67, 0xb));

        // Segment bytes at p_paddr, BSS zeroed after them.
        let mut seg = [0u8; 8];
        ram.read_slice(&mut seg, GuestAddress(0x0100_0000)).unwrap();
        assert_eq!(&seg[..4], &[0xf4, 0xf4, 0xf4, 0xf4]);
        assert_eq!(setup.kernel, (0x0100_0000, 0x0100_0000 + 0x2000));

        let info: hvm_start_info = ram.read_obj(GuestAddress(PVH_START_INFO_ADDR)).unwrap();
        assert_eq!(info.magic, 0x336e_c578);
        assert_eq!(info.version, 1);
        assert_eq!(info.cmdline_paddr, CMDLINE_ADDR);
        assert_eq!(info.rsdp_paddr, setup.rsdp);
        assert_eq!(info.nr_modules, 1);
        let module: hvm_modlist_entry = ram.read_obj(GuestAddress(info.modlist_paddr)).unwrap();
        assert_eq!((module.paddr, module.size), setup.initrd.unwrap());
        assert_eq!(module.size, 5000);
        assert_eq!(info.memmap_entries as usize, e820_map(RAM).len());
        let last: hvm_memmap_table_entry = ram
            .read_obj(GuestAddress(
                info.memmap_paddr + 24 * u64::from(info.memmap_entries - 1),
            ))
            .unwrap();
        assert_eq!(
            (last.addr, last.size, last.type_),
            (0x100000, RAM - 0x100000, 1)
        );
    }

    #[test]
    fn segments_outside_ram_are_errors() {
        let ram = create_ram(RAM).unwrap();
        let cfg = BootConfig {
            ram_size: RAM,
            cpus: 1,
            ..BootConfig::default()
        };
        // Segment at 64 MiB in a 32 MiB guest.
        let mut img = testimg::pvh_elf(0x0400_0000);
        testimg::set_paddr64(&mut img, 0x0400_0000);
        let e = load_kernel(&ram, &img, &cfg).unwrap_err();
        assert!(matches!(e, BootError::DoesNotFit { .. }), "{e}");
        // Segment over the boot structures.
        testimg::set_paddr64(&mut img, 0x7000);
        let e = load_kernel(&ram, &img, &cfg).unwrap_err();
        assert!(e.to_string().contains("boot structures"), "{e}");
    }

    /// Loads a real vmlinux through PVH: `$KEMU_TEST_VMLINUX`
    /// (`cargo test --lib machine -- --ignored`).
    #[test]
    #[ignore]
    fn loads_a_real_vmlinux() {
        let Some(path) = std::env::var_os("KEMU_TEST_VMLINUX") else {
            eprintln!("no $KEMU_TEST_VMLINUX");
            return;
        };
        let ram_size = 256 << 20;
        let ram = create_ram(ram_size).unwrap();
        let cfg = BootConfig {
            cmdline: "console=ttyS0".into(),
            initrd: Some(vec![0x42; 1 << 20]),
            ram_size,
            cpus: 2,
        };
        let setup = crate::machine::boot::load_kernel_file(&ram, std::path::Path::new(&path), &cfg)
            .unwrap();
        assert_eq!(setup.method, BootMethod::Pvh);
        assert!(setup.entry >= 0x100_0000 && setup.entry < setup.kernel.1);
        assert!(setup.kernel.1 <= setup.initrd.unwrap().0);
    }
}

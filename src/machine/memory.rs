//! The PC's guest-physical memory layout: where RAM sits, what the e820 map tells the guest, and
//! the fixed addresses the boot code and the ACPI tables use.
//!
//! Data enters as a RAM size (bytes, from `-m`); it leaves as a [`GuestRam`] mapping
//! ([`create_ram`]), an e820 table ([`e820_map`]) and the constants below, which the boot loaders
//! (`machine::boot`) and the ACPI writer (`machine::acpi`) share so no two structures collide.
//!
//! RAM is split around the 1 GiB PCI/MMIO hole below 4 GiB, like a real chipset:
//!
//! ```text
//! 0x0000_0000 .. min(size, 3 GiB)        low RAM
//! 0xC000_0000 .. 0x1_0000_0000           hole: PCI MMIO, IOAPIC 0xFEC00000, LAPIC 0xFEE00000,
//!                                        firmware at the top
//! 0x1_0000_0000 .. + (size - 3 GiB)      high RAM (only when size > 3 GiB)
//! ```
//!
//! The legacy hole 0xA0000..0x100000 stays RAM in the mapping (VGA is not modelled; the firmware
//! shadow and the ACPI tables live there), but e820 reports it as reserved or leaves it out.
//!
//! Fixed addresses in low memory (all below the EBDA, all inside the first 1 MiB):
//!
//! | Address                  | Constant                | What                                   |
//! |--------------------------|-------------------------|----------------------------------------|
//! | 0x0500..0x0530           | [`BOOT_GDT_ADDR`]       | boot GDT (null, code32, code64, data, TSS) |
//! | 0x6000..0x7000           | [`PVH_START_INFO_ADDR`] | PVH `hvm_start_info`, module list, memmap |
//! | 0x7000..0x8000           | [`ZERO_PAGE_ADDR`]      | Linux `boot_params` (the zero page)    |
//! | 0x8000..0x9000           | [`MULTIBOOT_INFO_ADDR`] | multiboot info, mmap, module, strings  |
//! | 0x9000..0xF000           | [`PML4_ADDR`]           | PML4, PDPT (0xA000), 4 PDs (0xB000..)  |
//! | 0xF000..0x10000          | [`BOOT_STACK_TOP`]      | boot stack (RSP starts at 0x10000)     |
//! | 0x20000..0x30000         | [`CMDLINE_ADDR`]        | kernel command line ([`CMDLINE_MAX`])  |
//! | 0x9FC00..0xA0000         | [`EBDA_START`]          | EBDA (e820 reserved)                   |
//! | 0xE0000..0xF0000         | [`ACPI_START`]          | RSDP at 0xE0000, then the ACPI tables (e820 type 3, ACPI) |
//! | 0xF0000..0x100000        | [`BIOS_AREA_START`]     | BIOS area / firmware shadow (e820 reserved) |
//! | 0x100000..               | [`KERNEL_LOAD_ADDR`]    | Linux protected-mode kernel            |
//! | top of low RAM           | —                       | initrd, page-aligned, as high as allowed |
//!
//! The RSDP sits at 0xE0000 rather than in 0xF0000..0xFFFFF so that a firmware image shadowed
//! into the BIOS area cannot overwrite it; 0xE0000 is still inside the range guests scan for
//! `"RSD PTR "`. The region holding the tables is reported as type 3 (ACPI reclaimable): the
//! tables are plain data the OS reads once, and no firmware keeps state there (which is what
//! type 4, NVS, would mean).

use thiserror::Error;
use vm_memory::GuestAddress;

use crate::accel::GuestRam;

/// One KiB.
const KIB: u64 = 1 << 10;
/// One MiB.
const MIB: u64 = 1 << 20;
/// One GiB.
const GIB: u64 = 1 << 30;

/// Smallest RAM the machine accepts.
pub const MIN_RAM_SIZE: u64 = MIB;
/// Largest RAM the machine accepts (1 TiB): beyond this the guest page tables and the host's
/// address space reservations get silly for an emulator.
pub const MAX_RAM_SIZE: u64 = 1 << 40;

/// Start of the PCI/MMIO hole below 4 GiB; low RAM ends here at the latest.
pub const MMIO_HOLE_START: u64 = 3 * GIB;
/// End of the PCI/MMIO hole (4 GiB); high RAM starts here.
pub const MMIO_HOLE_END: u64 = 4 * GIB;
/// The I/O APIC's MMIO base.
pub const IOAPIC_ADDR: u64 = 0xFEC0_0000;
/// The local APICs' MMIO base.
pub const LAPIC_ADDR: u64 = 0xFEE0_0000;

/// Boot GDT (6 descriptors, see `machine::boot`).
pub const BOOT_GDT_ADDR: u64 = 0x500;
/// PVH `hvm_start_info`; its module list and memory map follow in the same page.
pub const PVH_START_INFO_ADDR: u64 = 0x6000;
/// Linux zero page (`boot_params`).
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
/// Multiboot information structure; its mmap, module list and strings follow in the same page.
pub const MULTIBOOT_INFO_ADDR: u64 = 0x8000;
/// PML4 of the identity map used for the 64-bit Linux entry.
pub const PML4_ADDR: u64 = 0x9000;
/// PDPT of the identity map.
pub const PDPT_ADDR: u64 = 0xA000;
/// First of the four page directories (2 MiB pages) of the identity map.
pub const PD_ADDR: u64 = 0xB000;
/// Initial stack pointer handed to kernels (the stack page is 0xF000..0x10000).
pub const BOOT_STACK_TOP: u64 = 0x10000;
/// Kernel command line.
pub const CMDLINE_ADDR: u64 = 0x20000;
/// Room for the command line, terminating NUL included.
pub const CMDLINE_MAX: u64 = 0x10000;
/// End of the boot structures in low memory: kernels must not load below this.
pub const BOOT_AREA_END: u64 = CMDLINE_ADDR + CMDLINE_MAX;
/// Extended BIOS data area (reserved to the top of conventional memory).
pub const EBDA_START: u64 = 0x9FC00;
/// Start of the legacy VGA/ROM hole (not RAM in e820).
pub const LEGACY_HOLE_START: u64 = 0xA0000;
/// Start of the ACPI area: the RSDP, then the tables.
pub const ACPI_START: u64 = 0xE0000;
/// Where the RSDP is written (16-byte aligned, inside the BIOS scan range).
pub const RSDP_ADDR: u64 = ACPI_START;
/// End of the ACPI area (exclusive).
pub const ACPI_END: u64 = 0xF0000;
/// Start of the BIOS area (firmware shadow).
pub const BIOS_AREA_START: u64 = 0xF0000;
/// Start of extended memory.
pub const HIMEM_START: u64 = MIB;
/// Where the Linux protected-mode kernel is loaded.
pub const KERNEL_LOAD_ADDR: u64 = HIMEM_START;

/// What an e820 range is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum E820Kind {
    /// Usable RAM (type 1).
    Ram,
    /// Reserved (type 2).
    Reserved,
    /// ACPI tables, reclaimable after the OS has read them (type 3).
    Acpi,
    /// ACPI non-volatile storage (type 4).
    Nvs,
}

impl E820Kind {
    /// The numeric e820 type, as in the zero page, PVH memmap and multiboot mmap.
    pub fn code(self) -> u32 {
        match self {
            E820Kind::Ram => 1,
            E820Kind::Reserved => 2,
            E820Kind::Acpi => 3,
            E820Kind::Nvs => 4,
        }
    }
}

/// One range of the e820 memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    /// Start address.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// What the range is.
    pub kind: E820Kind,
}

/// Why guest RAM could not be created.
#[derive(Debug, Error)]
pub enum MemoryError {
    /// The size is below the minimum.
    #[error("RAM size {size} bytes is too small: the PC machine needs at least 1 MiB")]
    TooSmall {
        /// Requested size.
        size: u64,
    },
    /// The size is above the cap.
    #[error("RAM size {size} bytes is too large: at most {max} bytes (1 TiB)")]
    TooLarge {
        /// Requested size.
        size: u64,
        /// The cap.
        max: u64,
    },
    /// The size is not a whole number of pages.
    #[error("RAM size {size} bytes is not a multiple of 4 KiB")]
    Unaligned {
        /// Requested size.
        size: u64,
    },
    /// The host refused the mapping.
    #[error("cannot map {size} bytes of guest RAM: {source}")]
    Map {
        /// Requested size.
        size: u64,
        /// What vm-memory said.
        #[source]
        source: vm_memory::mmap::FromRangesError,
    },
}

/// End of low RAM (exclusive): RAM below the PCI hole.
pub fn low_ram_end(ram_size: u64) -> u64 {
    ram_size.min(MMIO_HOLE_START)
}

/// Bytes of RAM mapped above 4 GiB.
pub fn high_ram_size(ram_size: u64) -> u64 {
    ram_size.saturating_sub(MMIO_HOLE_START)
}

/// The (start, length) RAM regions for a RAM size: low RAM, then high RAM if any.
pub fn ram_regions(ram_size: u64) -> Vec<(u64, u64)> {
    let mut regions = vec![(0, low_ram_end(ram_size))];
    if high_ram_size(ram_size) > 0 {
        regions.push((MMIO_HOLE_END, high_ram_size(ram_size)));
    }
    regions
}

/// Checks a RAM size against the machine's limits.
pub fn check_ram_size(size: u64) -> Result<(), MemoryError> {
    if size < MIN_RAM_SIZE {
        return Err(MemoryError::TooSmall { size });
    }
    if size > MAX_RAM_SIZE {
        return Err(MemoryError::TooLarge {
            size,
            max: MAX_RAM_SIZE,
        });
    }
    if !size.is_multiple_of(4 * KIB) {
        return Err(MemoryError::Unaligned { size });
    }
    Ok(())
}

/// Maps `size` bytes of zeroed guest RAM with the PC layout (low RAM, hole, high RAM).
pub fn create_ram(size: u64) -> Result<GuestRam, MemoryError> {
    create_ram_with_rom(size, 0)
}

/// Like [`create_ram`], plus (when `rom_len` > 0) a region of `rom_len` bytes ending at 4 GiB
/// for a firmware ROM: how the ROM reaches KVM, as one more memory slot. The machine fills it;
/// it is not RAM to the guest (e820 leaves it out).
pub fn create_ram_with_rom(size: u64, rom_len: u64) -> Result<GuestRam, MemoryError> {
    check_ram_size(size)?;
    let rom = (rom_len > 0).then(|| (GuestAddress(MMIO_HOLE_END - rom_len), rom_len as usize));
    let ranges: Vec<(GuestAddress, usize)> = ram_regions(size)
        .into_iter()
        // The cap (1 TiB) fits usize on the 64-bit hosts kemu runs on.
        .map(|(start, len)| (GuestAddress(start), len as usize))
        .chain(rom)
        .collect();
    GuestRam::from_ranges(&ranges).map_err(|source| MemoryError::Map { size, source })
}

/// The e820 map for a RAM size, sorted by address.
///
/// Low memory below the EBDA and RAM from 1 MiB are usable; the EBDA and BIOS area are reserved,
/// the ACPI area is type 3, the VGA hole and the PCI hole are left out (reserved by omission).
pub fn e820_map(ram_size: u64) -> Vec<E820Entry> {
    let low_end = low_ram_end(ram_size);
    let mut map = vec![
        E820Entry {
            addr: 0,
            size: EBDA_START.min(low_end),
            kind: E820Kind::Ram,
        },
        E820Entry {
            addr: EBDA_START,
            size: LEGACY_HOLE_START - EBDA_START,
            kind: E820Kind::Reserved,
        },
        E820Entry {
            addr: ACPI_START,
            size: ACPI_END - ACPI_START,
            kind: E820Kind::Acpi,
        },
        E820Entry {
            addr: BIOS_AREA_START,
            size: HIMEM_START - BIOS_AREA_START,
            kind: E820Kind::Reserved,
        },
    ];
    if low_end > HIMEM_START {
        map.push(E820Entry {
            addr: HIMEM_START,
            size: low_end - HIMEM_START,
            kind: E820Kind::Ram,
        });
    }
    let high = high_ram_size(ram_size);
    if high > 0 {
        map.push(E820Entry {
            addr: MMIO_HOLE_END,
            size: high,
            kind: E820Kind::Ram,
        });
    }
    map
}

#[cfg(test)]
mod tests {
    use vm_memory::{Bytes, GuestMemoryBackend};

    use super::*;

    #[test]
    fn sizes_out_of_range_are_errors() {
        assert!(matches!(create_ram(0), Err(MemoryError::TooSmall { .. })));
        assert!(matches!(
            create_ram(MIB - 4096),
            Err(MemoryError::TooSmall { .. })
        ));
        assert!(matches!(
            create_ram(MAX_RAM_SIZE + 4096),
            Err(MemoryError::TooLarge { .. })
        ));
        assert!(matches!(
            create_ram(MIB + 1),
            Err(MemoryError::Unaligned { .. })
        ));
        let msg = create_ram(0).unwrap_err().to_string();
        assert!(msg.contains("at least 1 MiB"), "{msg}");
    }

    #[test]
    fn small_ram_is_one_region() {
        let ram = create_ram(64 * MIB).unwrap();
        assert_eq!(ram.num_regions(), 1);
        assert_eq!(ram.last_addr(), GuestAddress(64 * MIB - 1));
        // The legacy hole is RAM in the mapping.
        ram.write_obj(0x1234u32, GuestAddress(0xA0000)).unwrap();
        assert_eq!(ram.read_obj::<u32>(GuestAddress(0xA0000)).unwrap(), 0x1234);
    }

    #[test]
    fn large_ram_splits_around_the_hole() {
        let ram = create_ram(5 * GIB).unwrap();
        assert_eq!(ram.num_regions(), 2);
        assert!(GuestMemoryBackend::check_range(
            &ram,
            GuestAddress(MMIO_HOLE_START - 8),
            8
        ));
        assert!(!GuestMemoryBackend::check_range(
            &ram,
            GuestAddress(MMIO_HOLE_START),
            1
        ));
        assert!(!GuestMemoryBackend::check_range(
            &ram,
            GuestAddress(LAPIC_ADDR),
            1
        ));
        assert_eq!(ram.last_addr(), GuestAddress(MMIO_HOLE_END + 2 * GIB - 1));
    }

    #[test]
    fn e820_layout() {
        let map = e820_map(5 * GIB);
        let total_ram: u64 = map
            .iter()
            .filter(|e| e.kind == E820Kind::Ram)
            .map(|e| e.size)
            .sum();
        // Everything but the EBDA and the 384 KiB legacy area is usable.
        assert_eq!(total_ram, 5 * GIB - (HIMEM_START - EBDA_START));
        for pair in map.windows(2) {
            assert!(pair[0].addr + pair[0].size <= pair[1].addr, "{map:?}");
        }
        assert!(map.iter().any(|e| e.kind == E820Kind::Acpi
            && e.addr <= RSDP_ADDR
            && RSDP_ADDR < e.addr + e.size));
        // Nothing usable inside the PCI hole.
        assert!(map
            .iter()
            .all(|e| e.addr + e.size <= MMIO_HOLE_START || e.addr >= MMIO_HOLE_END));

        let tiny = e820_map(MIB);
        assert_eq!(tiny.len(), 4);
        assert_eq!(tiny[0].size, EBDA_START);
    }

    #[test]
    fn boot_structures_do_not_overlap() {
        let areas = [
            (BOOT_GDT_ADDR, 0x30),
            (PVH_START_INFO_ADDR, 0x1000),
            (ZERO_PAGE_ADDR, 0x1000),
            (MULTIBOOT_INFO_ADDR, 0x1000),
            (PML4_ADDR, 0x6000),
            (BOOT_STACK_TOP - 0x1000, 0x1000),
            (CMDLINE_ADDR, CMDLINE_MAX),
        ];
        for (i, a) in areas.iter().enumerate() {
            assert!(a.0 + a.1 <= EBDA_START);
            for b in &areas[i + 1..] {
                assert!(a.0 + a.1 <= b.0 || b.0 + b.1 <= a.0, "{a:x?} {b:x?}");
            }
        }
    }
}

//! ACPI tables for the PC machine: how the guest OS learns about its CPUs, interrupt routing,
//! power-off (S5) and reset, without firmware.
//!
//! Data enters as the CPU count and RAM size; it leaves as tables written into guest RAM in the
//! ACPI area that `machine::memory` reserves (0xE0000..0xF0000, e820 type 3), and the RSDP's
//! address, which the boot loaders also hand to the kernel (zero page, PVH start_info).
//!
//! Layout (each table 64-byte aligned, in this order from [`RSDP_ADDR`]):
//! RSDP (revision 2; also points at an RSDT for 32-bit guests) → RSDT/XSDT → FADT → MADT;
//! the FADT points at the DSDT and the FACS.
//!
//! The platform these tables describe (the devices elsewhere implement it):
//! - MADT: LAPICs at 0xFEE00000 with APIC IDs 0..cpus-1, one IOAPIC (ID = cpus) at 0xFEC00000
//!   with GSI base 0, ISA IRQ0 → GSI2 (edge, high), IRQ9 → GSI9 (level, high: the SCI),
//!   LINT1 = NMI on every CPU, PCAT_COMPAT (dual 8259s present).
//! - FADT (revision 6.5, not hardware-reduced): PM1a event block 0x600 (4 bytes), PM1a control
//!   0x604 (2 bytes), PM timer 0x608 (4 bytes, 24-bit), SCI = IRQ 9, SMI_CMD = 0 (ACPI mode is
//!   always on), reset register I/O 0xCF9 value 0x06, 8042 and legacy devices present, RTC
//!   century at CMOS 0x32.
//! - DSDT: `\_S5` = Package {0, 0, 0, 0} (SLP_TYP 0 means power-off to the PM device), and a
//!   PCI host bridge `\_SB.PCI0` (PNP0A03, bus 0) whose `_CRS` gives buses 0..255, ports
//!   0xCF8..0xCFF, I/O 0..0xCF7 and 0xD00..0xFFFF, memory 0xA0000..0xBFFFF and the hole
//!   0xC0000000..0xFEBFFFFF, and whose `_PRT` routes each slot's INTA#..INTD# straight to a
//!   GSI (`machine::pci::intx_gsi`: 10 or 11, level, shared).

use acpi_tables::aml;
use acpi_tables::facs::FACS;
use acpi_tables::fadt::{FADTBuilder, Flags, PmProfile};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{EnabledStatus, IoApic, ProcessorLocalApic};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;
use thiserror::Error;
use vm_memory::{Bytes, GuestAddress};

use crate::accel::GuestRam;
use crate::machine::memory::{ACPI_END, IOAPIC_ADDR, LAPIC_ADDR, MMIO_HOLE_START, RSDP_ADDR};
use crate::machine::pci::intx_gsi;

/// OEM ID in every table.
const OEM_ID: [u8; 6] = *b"KEMU  ";
/// OEM revision in every table.
const OEM_REVISION: u32 = 1;
/// Most CPUs the MADT can describe: xAPIC IDs are 8 bits, 0xFF is broadcast, and the IOAPIC
/// takes the ID after the last CPU.
pub const MAX_CPUS: usize = 254;

// The PM block and reset register the FADT describes are the devices' own addresses, so the
// tables and the device model cannot disagree.
pub use crate::devices::acpi_pm::{
    PM1A_CNT as PM1A_CNT_BLK, PM1A_EVT as PM1A_EVT_BLK, PM_TMR as PM_TMR_BLK,
    RESET_REG_PORT as RESET_PORT, RESET_VALUE,
};
/// The SCI's ISA IRQ (and GSI), as the MADT override byte.
pub const SCI_IRQ: u8 = crate::devices::acpi_pm::SCI_IRQ as u8;

/// MADT flag: the PC has dual 8259s that must be masked when the IOAPIC is used.
const MADT_PCAT_COMPAT: u32 = 1;
/// IAPC_BOOT_ARCH: LEGACY_DEVICES | 8042.
const IAPC_BOOT_ARCH: u16 = 0x3;
/// CMOS index of the century byte.
const CENTURY_CMOS: u8 = 0x32;
/// MPS INTI flags: active high, edge triggered.
const INTI_EDGE_HIGH: u16 = 0x5;
/// MPS INTI flags: active high, level triggered.
const INTI_LEVEL_HIGH: u16 = 0xD;

/// Why the tables could not be written.
#[derive(Debug, Error)]
pub enum AcpiError {
    /// The CPU count is outside what the MADT can describe.
    #[error("cannot describe {cpus} CPUs in the ACPI MADT: 1 to {MAX_CPUS} are supported")]
    CpuCount {
        /// Requested count.
        cpus: usize,
    },
    /// The tables outgrew the ACPI area.
    #[error(
        "ACPI tables need {need:#x} bytes from {RSDP_ADDR:#x}, past the area's end {ACPI_END:#x}"
    )]
    TooBig {
        /// End address they would need.
        need: u64,
    },
    /// Guest RAM could not be written.
    #[error("writing ACPI table {table} at {addr:#x}: {source}")]
    Write {
        /// Table signature.
        table: &'static str,
        /// Where.
        addr: u64,
        /// What vm-memory said.
        #[source]
        source: vm_memory::GuestMemoryError,
    },
}

/// Serialises any AML object or table.
fn bytes_of(aml: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    aml.to_aml_bytes(&mut v);
    v
}

/// An I/O-space GAS for the FADT's extended register blocks.
fn io_gas(port: u16, bytes: u8, access: AccessSize) -> GAS {
    GAS::new(
        AddressSpace::SystemIo,
        bytes * 8,
        0,
        access,
        u64::from(port),
    )
}

/// The DSDT: `\_S5` and the PCI host bridge.
fn dsdt() -> Vec<u8> {
    let s5_pkg = aml::Package::new(vec![&aml::ZERO, &aml::ZERO, &aml::ZERO, &aml::ZERO]);
    let s5 = aml::Name::new("_S5_".into(), &s5_pkg);
    let hid = aml::EISAName::new("PNP0A03");
    let pci_hid = aml::Name::new("_HID".into(), &hid);
    let pci_adr = aml::Name::new("_ADR".into(), &aml::ZERO);
    let pci_bbn = aml::Name::new("_BBN".into(), &aml::ZERO);
    let pci_uid = aml::Name::new("_UID".into(), &aml::ZERO);
    // Windows the host bridge decodes: bus 0..255, config ports, all other I/O, the VGA window
    // and the MMIO hole up to the IOAPIC.
    let buses = aml::AddressSpace::new_bus_number(0u16, 0xff);
    let cfg_ports = aml::IO::new(0xcf8, 0xcf8, 1, 8);
    let io_low = aml::AddressSpace::new_io(0u16, 0xcf7, None);
    let io_high = aml::AddressSpace::new_io(0xd00u16, 0xffff, None);
    let vga = aml::AddressSpace::new_memory(
        aml::AddressSpaceCacheable::Cacheable,
        true,
        0xa_0000u32,
        0xb_ffff,
        None,
    );
    let mmio = aml::AddressSpace::new_memory(
        aml::AddressSpaceCacheable::NotCacheable,
        true,
        MMIO_HOLE_START as u32,
        IOAPIC_ADDR as u32 - 1,
        None,
    );
    let crs_template =
        aml::ResourceTemplate::new(vec![&buses, &cfg_ports, &io_low, &io_high, &vga, &mmio]);
    let pci_crs = aml::Name::new("_CRS".into(), &crs_template);
    // _PRT: every slot's four pins straight to a GSI (no link devices), as `machine::pci`
    // routes them. Entries: {address 0xSSSSFFFF, pin 0..3, source 0, GSI}.
    let routes: Vec<(u32, u8, u32)> = (1u8..32)
        .flat_map(|slot| {
            (0u8..4).map(move |pin| (u32::from(slot) << 16 | 0xffff, pin, intx_gsi(slot, pin)))
        })
        .collect();
    let entries: Vec<aml::Package> = routes
        .iter()
        .map(|(addr, pin, gsi)| aml::Package::new(vec![addr, pin, &aml::ZERO, gsi]))
        .collect();
    let prt_pkg = aml::Package::new(entries.iter().map(|p| p as &dyn Aml).collect());
    let pci_prt = aml::Name::new("_PRT".into(), &prt_pkg);
    let pci0 = aml::Device::new(
        "PCI0".into(),
        vec![&pci_hid, &pci_adr, &pci_bbn, &pci_uid, &pci_crs, &pci_prt],
    );
    let sb = aml::Scope::new("\\_SB_".into(), vec![&pci0]);
    let mut table = Sdt::new(*b"DSDT", 36, 2, OEM_ID, *b"KEMUDSDT", OEM_REVISION);
    table.append_slice(&bytes_of(&s5));
    table.append_slice(&bytes_of(&sb));
    table.as_slice().to_vec()
}

/// The MADT: one LAPIC per CPU, the IOAPIC, ISA overrides, LINT1 NMI.
fn madt(cpus: usize) -> Vec<u8> {
    let mut table = Sdt::new(*b"APIC", 44, 3, OEM_ID, *b"KEMUAPIC", OEM_REVISION);
    table.write_u32(36, LAPIC_ADDR as u32);
    table.write_u32(40, MADT_PCAT_COMPAT);
    for id in 0..cpus {
        // `cpus` <= MAX_CPUS (254), checked by the caller, so the IDs fit a byte.
        let lapic = ProcessorLocalApic::new(id as u8, id as u8, EnabledStatus::Enabled);
        table.append_slice(&bytes_of(&lapic));
    }
    table.append_slice(&bytes_of(&IoApic::new(cpus as u8, IOAPIC_ADDR as u32, 0)));
    for (irq, gsi, flags) in [
        (0u8, 2u32, INTI_EDGE_HIGH),
        (SCI_IRQ, u32::from(SCI_IRQ), INTI_LEVEL_HIGH),
    ] {
        // Interrupt Source Override: type 2, length 10, bus 0 (ISA), source, GSI, flags.
        let mut iso = vec![2, 10, 0, irq];
        iso.extend_from_slice(&gsi.to_le_bytes());
        iso.extend_from_slice(&flags.to_le_bytes());
        table.append_slice(&iso);
    }
    // Local APIC NMI: type 4, length 6, all processors (0xFF), flags 0 (conforming), LINT1.
    table.append_slice(&[4, 6, 0xff, 0, 0, 1]);
    table.as_slice().to_vec()
}

/// The FADT, pointing at the DSDT and FACS.
fn fadt(dsdt_addr: u64, facs_addr: u64) -> Vec<u8> {
    let mut f = FADTBuilder::new(OEM_ID, *b"KEMUFACP", OEM_REVISION)
        .flag(Flags::Wbinvd)
        .flag(Flags::ProcC1)
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton)
        .flag(Flags::ResetRegSup)
        .preferred_pm_profile(PmProfile::Unspecified);
    // The addresses sit below 1 MiB, so the 32-bit and 64-bit DSDT fields can agree.
    f.dsdt = (dsdt_addr as u32).into();
    f.x_dsdt = dsdt_addr.into();
    // The FACS only in the 32-bit field: the spec wants FIRMWARE_CTRL zero when X_FIRMWARE_CTRL
    // is used, and Linux lists a FACS named by both twice.
    f.firmware_ctrl = (facs_addr as u32).into();
    f.sci_int = u16::from(SCI_IRQ).into();
    f.smi_cmd = 0.into();
    f.pm1a_evt_blk = u32::from(PM1A_EVT_BLK).into();
    f.pm1a_cnt_blk = u32::from(PM1A_CNT_BLK).into();
    f.pm_tmr_blk = u32::from(PM_TMR_BLK).into();
    f.pm1_evt_len = 4;
    f.pm1_cnt_len = 2;
    f.pm_tmr_len = 4;
    f.century = CENTURY_CMOS;
    f.iapc_boot_arch = IAPC_BOOT_ARCH.into();
    f.reset_reg = io_gas(RESET_PORT, 1, AccessSize::ByteAccess);
    f.reset_value = RESET_VALUE;
    f.x_pm1a_evt_blk = io_gas(PM1A_EVT_BLK, 4, AccessSize::Undefined);
    f.x_pm1a_cnt_blk = io_gas(PM1A_CNT_BLK, 2, AccessSize::Undefined);
    f.x_pm_tmr_blk = io_gas(PM_TMR_BLK, 4, AccessSize::Undefined);
    bytes_of(&f.finalize())
}

/// The RSDT (32-bit pointers), for guests that predate the XSDT.
fn rsdt(entries: &[u64]) -> Vec<u8> {
    let mut table = Sdt::new(*b"RSDT", 36, 1, OEM_ID, *b"KEMURSDT", OEM_REVISION);
    for &e in entries {
        table.append_slice(&(e as u32).to_le_bytes());
    }
    table.as_slice().to_vec()
}

/// The RSDP: the crate's revision-2 RSDP with the RSDT address filled in and both checksums
/// recomputed.
fn rsdp(xsdt_addr: u64, rsdt_addr: u64) -> Vec<u8> {
    let mut b = bytes_of(&Rsdp::new(OEM_ID, xsdt_addr));
    b[16..20].copy_from_slice(&(rsdt_addr as u32).to_le_bytes());
    b[8] = 0;
    b[8] = checksum(&b[..20]);
    b[32] = 0;
    b[32] = checksum(&b);
    b
}

/// The byte that makes `data` sum to zero.
fn checksum(data: &[u8]) -> u8 {
    0u8.wrapping_sub(data.iter().fold(0u8, |a, &b| a.wrapping_add(b)))
}

/// Rounds up to 64 bytes (FACS needs it; the rest are aligned alike for tidiness).
fn align64(v: u64) -> u64 {
    (v + 63) & !63
}

/// Writes the ACPI tables for `cpus` CPUs and returns the RSDP's guest-physical address.
///
/// `ram_size` is accepted for future tables (SRAT); the current set does not depend on it.
pub fn write_acpi_tables(ram: &GuestRam, cpus: usize, ram_size: u64) -> Result<u64, AcpiError> {
    let _ = ram_size;
    if cpus == 0 || cpus > MAX_CPUS {
        return Err(AcpiError::CpuCount { cpus });
    }
    let mut tables: Vec<(&'static str, u64, Vec<u8>)> = Vec::new();
    let mut next = align64(RSDP_ADDR + Rsdp::len() as u64);
    let mut place = |sig: &'static str, len: usize| {
        let addr = next;
        next = align64(addr + len as u64);
        (sig, addr)
    };

    let dsdt = dsdt();
    let madt = madt(cpus);
    let (_, facs_addr) = place("FACS", FACS::len());
    let (_, dsdt_addr) = place("DSDT", dsdt.len());
    let (_, madt_addr) = place("APIC", madt.len());
    let fadt = fadt(dsdt_addr, facs_addr);
    let (_, fadt_addr) = place("FACP", fadt.len());
    let entries = [fadt_addr, madt_addr];
    let mut xsdt = XSDT::new(OEM_ID, *b"KEMUXSDT", OEM_REVISION);
    for e in entries {
        xsdt.add_entry(e);
    }
    let xsdt = bytes_of(&xsdt);
    let (_, xsdt_addr) = place("XSDT", xsdt.len());
    let rsdt = rsdt(&entries);
    let (_, rsdt_addr) = place("RSDT", rsdt.len());
    if next > ACPI_END {
        return Err(AcpiError::TooBig { need: next });
    }

    tables.push(("FACS", facs_addr, bytes_of(&FACS::new())));
    tables.push(("DSDT", dsdt_addr, dsdt));
    tables.push(("APIC", madt_addr, madt));
    tables.push(("FACP", fadt_addr, fadt));
    tables.push(("XSDT", xsdt_addr, xsdt));
    tables.push(("RSDT", rsdt_addr, rsdt));
    tables.push(("RSDP", RSDP_ADDR, rsdp(xsdt_addr, rsdt_addr)));
    for (table, addr, data) in tables {
        ram.write_slice(&data, GuestAddress(addr))
            .map_err(|source| AcpiError::Write {
                table,
                addr,
                source,
            })?;
    }
    Ok(RSDP_ADDR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::memory::{create_ram, ACPI_START};

    fn read(ram: &GuestRam, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        ram.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
    }

    /// Reads a whole SDT at `addr`, checking its checksum; returns the bytes.
    fn table(ram: &GuestRam, addr: u64, sig: &[u8; 4]) -> Vec<u8> {
        let head = read(ram, addr, 36);
        assert_eq!(&head[..4], sig, "signature at {addr:#x}");
        let len = u32_at(&head, 4) as usize;
        let t = read(ram, addr, len);
        assert_eq!(checksum(&t), 0, "{} checksum", String::from_utf8_lossy(sig));
        assert!(addr >= ACPI_START && addr + len as u64 <= ACPI_END);
        t
    }

    #[test]
    fn tables_parse_back() {
        let ram = create_ram(64 << 20).unwrap();
        for cpus in [1usize, 4, MAX_CPUS] {
            let rsdp_addr = write_acpi_tables(&ram, cpus, 64 << 20).unwrap();
            assert_eq!(rsdp_addr % 16, 0);
            let rsdp = read(&ram, rsdp_addr, 36);
            assert_eq!(&rsdp[..8], b"RSD PTR ");
            assert_eq!(rsdp[15], 2, "revision");
            assert_eq!(rsdp.iter().take(20).fold(0u8, |a, &b| a.wrapping_add(b)), 0);
            assert_eq!(rsdp.iter().fold(0u8, |a, &b| a.wrapping_add(b)), 0);

            let xsdt = table(&ram, u64_at(&rsdp, 24), b"XSDT");
            let rsdt = table(&ram, u64::from(u32_at(&rsdp, 16)), b"RSDT");
            let entries: Vec<u64> = xsdt[36..].chunks(8).map(|c| u64_at(c, 0)).collect();
            let entries32: Vec<u64> = rsdt[36..]
                .chunks(4)
                .map(|c| u64::from(u32_at(c, 0)))
                .collect();
            assert_eq!(entries, entries32);
            assert_eq!(entries.len(), 2);

            let fadt = table(&ram, entries[0], b"FACP");
            assert_eq!(fadt.len(), 276);
            assert_eq!(
                u32_at(&fadt, 40) as u64,
                u64_at(&fadt, 140),
                "DSDT = X_DSDT"
            );
            assert_eq!(u16::from_le_bytes([fadt[46], fadt[47]]), 9, "SCI_INT");
            assert_eq!(u32_at(&fadt, 48), 0, "SMI_CMD");
            assert_eq!(u32_at(&fadt, 56), 0x600, "PM1a_EVT_BLK");
            assert_eq!(u32_at(&fadt, 64), 0x604, "PM1a_CNT_BLK");
            assert_eq!(u32_at(&fadt, 76), 0x608, "PM_TMR_BLK");
            assert_eq!((fadt[88], fadt[89], fadt[91]), (4, 2, 4), "block lengths");
            assert_eq!(fadt[108], 0x32, "century");
            assert_eq!(
                u16::from_le_bytes([fadt[109], fadt[110]]),
                3,
                "IAPC_BOOT_ARCH"
            );
            let flags = u32_at(&fadt, 112);
            assert_ne!(flags & (1 << 10), 0, "RESET_REG_SUP");
            assert_eq!(flags & (1 << 20), 0, "not HW_REDUCED");
            assert_eq!(flags & (1 << 8), 0, "24-bit PM timer");
            assert_eq!(fadt[116], 1, "reset reg in I/O space");
            assert_eq!(u64_at(&fadt, 120), 0xcf9);
            assert_eq!(fadt[128], 6, "reset value");
            assert_eq!(u64_at(&fadt, 148 + 4), 0x600, "X_PM1a_EVT_BLK");
            assert_eq!(fadt[148 + 1], 32);
            assert_eq!(u64_at(&fadt, 172 + 4), 0x604, "X_PM1a_CNT_BLK");
            assert_eq!(u64_at(&fadt, 208 + 4), 0x608, "X_PM_TMR_BLK");

            assert_eq!(u64_at(&fadt, 132), 0, "X_FIRMWARE_CTRL unused");
            let facs_addr = u64::from(u32_at(&fadt, 36));
            assert_eq!(facs_addr % 64, 0);
            assert_eq!(&read(&ram, facs_addr, 4), b"FACS");

            let dsdt = table(&ram, u64::from(u32_at(&fadt, 40)), b"DSDT");
            let aml = &dsdt[36..];
            let s5 = aml.windows(4).position(|w| w == b"_S5_").unwrap();
            // NameOp _S5_ PackageOp PkgLength(6) NumElements(4) Zero Zero Zero Zero
            assert_eq!(aml[s5 - 1], 0x08);
            assert_eq!(&aml[s5 + 4..s5 + 11], &[0x12, 6, 4, 0, 0, 0, 0]);
            assert!(aml.windows(4).any(|w| w == b"PCI0"));
            // EISAID("PNP0A03") = 0x030AD041 as a DWordConst.
            assert!(aml.windows(5).any(|w| w == [0x0c, 0x41, 0xd0, 0x0a, 0x03]));

            let madt = table(&ram, entries[1], b"APIC");
            assert_eq!(u32_at(&madt, 36), 0xfee0_0000);
            assert_eq!(u32_at(&madt, 40), 1, "PCAT_COMPAT");
            let mut pos = 44;
            let (mut lapics, mut ioapics, mut isos) = (Vec::new(), 0, Vec::new());
            while pos < madt.len() {
                let (kind, len) = (madt[pos], madt[pos + 1] as usize);
                assert!(len >= 2 && pos + len <= madt.len());
                match kind {
                    0 => {
                        assert_eq!(u32_at(&madt, pos + 4), 1, "enabled");
                        lapics.push(madt[pos + 3]);
                    }
                    1 => {
                        ioapics += 1;
                        assert_eq!(madt[pos + 2] as usize, cpus, "IOAPIC id");
                        assert_eq!(u32_at(&madt, pos + 4), 0xfec0_0000);
                        assert_eq!(u32_at(&madt, pos + 8), 0);
                    }
                    2 => isos.push((
                        madt[pos + 3],
                        u32_at(&madt, pos + 4),
                        u16::from_le_bytes([madt[pos + 8], madt[pos + 9]]),
                    )),
                    _ => {}
                }
                pos += len;
            }
            assert_eq!(lapics, (0..cpus).map(|i| i as u8).collect::<Vec<_>>());
            assert_eq!(ioapics, 1);
            assert_eq!(isos, vec![(0, 2, 0x5), (9, 9, 0xd)]);
        }
    }

    #[test]
    fn bad_cpu_counts_are_errors() {
        let ram = create_ram(16 << 20).unwrap();
        assert!(matches!(
            write_acpi_tables(&ram, 0, 16 << 20),
            Err(AcpiError::CpuCount { cpus: 0 })
        ));
        let msg = write_acpi_tables(&ram, MAX_CPUS + 1, 16 << 20)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("255 CPUs"), "{msg}");
    }

    /// Writes the tables to `$KEMU_ACPI_DUMP/*.dat` for checking with `iasl -d`
    /// (`cargo test --lib machine::acpi -- --ignored`).
    #[test]
    #[ignore]
    fn dump_for_iasl() {
        let Some(dir) = std::env::var_os("KEMU_ACPI_DUMP") else {
            eprintln!("set KEMU_ACPI_DUMP to a directory");
            return;
        };
        let dir = std::path::PathBuf::from(dir);
        let ram = create_ram(64 << 20).unwrap();
        let rsdp_addr = write_acpi_tables(&ram, 2, 64 << 20).unwrap();
        let rsdp = read(&ram, rsdp_addr, 36);
        let xsdt = table(&ram, u64_at(&rsdp, 24), b"XSDT");
        let fadt_addr = u64_at(&xsdt, 36);
        let madt_addr = u64_at(&xsdt, 44);
        let fadt = table(&ram, fadt_addr, b"FACP");
        let dsdt = table(&ram, u64::from(u32_at(&fadt, 40)), b"DSDT");
        let madt = table(&ram, madt_addr, b"APIC");
        for (name, data) in [
            ("dsdt", dsdt),
            ("facp", fadt),
            ("apic", madt),
            ("xsdt", xsdt),
        ] {
            std::fs::write(dir.join(format!("{name}.dat")), data).unwrap();
        }
    }
}

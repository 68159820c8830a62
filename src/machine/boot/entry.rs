//! The CPU state kernels are entered in, and the tables in RAM that state points at: one boot
//! GDT shared by all protocols, and (for 64-bit Linux) an identity map of the first 4 GiB.
//!
//! The GDT descriptors are encoded from the very [`Segment`] values loaded into the segment
//! caches, so the cache and the table can never disagree (both KVM and the software CPU load the
//! caches as is; a guest reloading a selector gets the same segment back).
//!
//! GDT layout at `BOOT_GDT_ADDR`: 0x00 null, 0x08 flat 32-bit code, 0x10 64-bit code
//! (`__BOOT_CS`), 0x18 flat data (`__BOOT_DS`), 0x20..0x30 busy TSS (base 0, limit 0x67; 16
//! bytes so it is also a valid long-mode system descriptor).

use super::{guest, BootError};
use crate::accel::GuestRam;
use crate::accel::{reg, DescriptorTable, Segment, VcpuState};
use crate::machine::memory::{BOOT_GDT_ADDR, BOOT_STACK_TOP, PDPT_ADDR, PD_ADDR, PML4_ADDR};

/// Flat 32-bit code selector.
pub(super) const CODE32_SEL: u16 = 0x08;
/// 64-bit code selector (Linux `__BOOT_CS`).
pub(super) const CODE64_SEL: u16 = 0x10;
/// Flat data selector (Linux `__BOOT_DS`).
pub(super) const DATA_SEL: u16 = 0x18;
/// TSS selector.
pub(super) const TSS_SEL: u16 = 0x20;
/// Bytes in the boot GDT.
const GDT_SIZE: u16 = 0x30;

/// CR0 bits we set: PE, ET, NE.
const CR0_PE: u64 = 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
/// Page-table entry bits: present, writable, page size (2 MiB leaf).
const PTE_P: u64 = 1;
const PTE_RW: u64 = 1 << 1;
const PTE_PS: u64 = 1 << 7;

/// The busy TSS the task register holds (base 0, limit 0x67, as PVH asks).
fn tss() -> Segment {
    Segment {
        selector: TSS_SEL,
        base: 0,
        limit: 0x67,
        type_: 0xb,
        s: false,
        present: true,
        ..Segment::default()
    }
}

/// An empty but valid LDT register, like after RESET.
fn ldt() -> Segment {
    Segment {
        type_: 0x2,
        s: false,
        present: true,
        limit: 0xffff,
        ..Segment::default()
    }
}

/// Encodes a segment as an 8-byte GDT descriptor (the low half for system descriptors).
pub(super) fn descriptor(seg: &Segment) -> u64 {
    let limit = if seg.g { seg.limit >> 12 } else { seg.limit };
    let limit = u64::from(limit & 0xf_ffff);
    let ar = u64::from(seg.access_rights());
    let base = seg.base & 0xffff_ffff;
    (limit & 0xffff)
        | (base & 0xff_ffff) << 16
        | (ar & 0xff) << 40
        | (limit >> 16) << 48
        | ((ar >> 12) & 0xf) << 52
        | (base >> 24) << 56
}

/// Writes the boot GDT and returns the GDTR that points at it.
fn write_gdt(ram: &GuestRam) -> Result<DescriptorTable, BootError> {
    let entries = [
        0,
        descriptor(&Segment::flat(CODE32_SEL, 0xb, false)),
        descriptor(&Segment::flat(CODE64_SEL, 0xb, true)),
        descriptor(&Segment::flat(DATA_SEL, 0x3, false)),
        descriptor(&tss()),
        0, // high half of the TSS descriptor in long mode: base bits 63..32 = 0
    ];
    let bytes: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
    guest::write(ram, BOOT_GDT_ADDR, &bytes, "boot GDT")?;
    Ok(DescriptorTable {
        base: BOOT_GDT_ADDR,
        limit: GDT_SIZE - 1,
    })
}

/// Writes page tables identity-mapping 0..4 GiB with 2 MiB pages; returns CR3.
fn write_identity_map(ram: &GuestRam) -> Result<u64, BootError> {
    let mut pml4 = vec![0u8; 4096];
    pml4[..8].copy_from_slice(&(PDPT_ADDR | PTE_P | PTE_RW).to_le_bytes());
    guest::write(ram, PML4_ADDR, &pml4, "boot PML4")?;

    let mut pdpt = vec![0u8; 4096];
    for i in 0..4u64 {
        let pd = PD_ADDR + i * 4096;
        pdpt[i as usize * 8..][..8].copy_from_slice(&(pd | PTE_P | PTE_RW).to_le_bytes());
        let pd_bytes: Vec<u8> = (0..512u64)
            .flat_map(|j| (((i * 512 + j) << 21) | PTE_P | PTE_RW | PTE_PS).to_le_bytes())
            .collect();
        guest::write(ram, pd, &pd_bytes, "boot page directory")?;
    }
    guest::write(ram, PDPT_ADDR, &pdpt, "boot PDPT")?;
    Ok(PML4_ADDR)
}

/// State shared by both entries: flags, TR, LDT, IDT, APIC base, a stack.
fn common(gdt: DescriptorTable, entry: u64) -> VcpuState {
    let mut state = VcpuState {
        rip: entry,
        rflags: 0x2, // IF clear: interrupts off
        tr: tss(),
        ldt: ldt(),
        gdt,
        idt: DescriptorTable { base: 0, limit: 0 },
        apic_base: VcpuState::reset().apic_base,
        ..VcpuState::default()
    };
    state.gpr[reg::RSP] = BOOT_STACK_TOP;
    state
}

/// 64-bit long mode at `entry`, paging on with the identity map, CS = `__BOOT_CS` (0x10),
/// data = `__BOOT_DS` (0x18), RSI = `rsi`.
pub(super) fn long_mode(ram: &GuestRam, entry: u64, rsi: u64) -> Result<VcpuState, BootError> {
    let gdt = write_gdt(ram)?;
    let cr3 = write_identity_map(ram)?;
    let data = Segment::flat(DATA_SEL, 0x3, false);
    let mut state = VcpuState {
        cs: Segment::flat(CODE64_SEL, 0xb, true),
        ds: data,
        es: data,
        fs: data,
        gs: data,
        ss: data,
        cr0: CR0_PE | CR0_ET | CR0_NE | CR0_PG,
        cr3,
        cr4: CR4_PAE,
        efer: EFER_LME | EFER_LMA,
        ..common(gdt, entry)
    };
    state.gpr[reg::RSI] = rsi;
    Ok(state)
}

/// 32-bit protected mode at `entry`, paging off, flat CS (0x08) and data (0x18).
pub(super) fn protected_mode(ram: &GuestRam, entry: u64) -> Result<VcpuState, BootError> {
    let gdt = write_gdt(ram)?;
    let data = Segment::flat(DATA_SEL, 0x3, false);
    Ok(VcpuState {
        cs: Segment::flat(CODE32_SEL, 0xb, false),
        ds: data,
        es: data,
        fs: data,
        gs: data,
        ss: data,
        cr0: CR0_PE | CR0_ET | CR0_NE,
        ..common(gdt, entry)
    })
}

#[cfg(test)]
mod tests {
    use vm_memory::{Bytes, GuestAddress};

    use super::*;
    use crate::machine::memory::create_ram;

    #[test]
    fn descriptors_match_the_classic_values() {
        assert_eq!(
            descriptor(&Segment::flat(0x10, 0xb, true)),
            0x00af_9b00_0000_ffff
        );
        assert_eq!(
            descriptor(&Segment::flat(0x08, 0xb, false)),
            0x00cf_9b00_0000_ffff
        );
        assert_eq!(
            descriptor(&Segment::flat(0x18, 0x3, false)),
            0x00cf_9300_0000_ffff
        );
        assert_eq!(descriptor(&tss()), 0x0000_8b00_0000_0067);
    }

    #[test]
    fn long_mode_state_is_consistent() {
        let ram = create_ram(16 << 20).unwrap();
        let s = long_mode(&ram, 0x100200, 0x7000).unwrap();
        assert_eq!(s.code_bitness(), 64);
        assert_eq!(s.mode_name(), "long mode (64-bit)");
        assert_eq!(s.cs.selector, 0x10);
        assert_eq!(s.ds.selector, 0x18);
        assert_eq!(s.gpr[reg::RSI], 0x7000);
        assert_eq!(s.rflags & (1 << 9), 0);
        // GDT entries in RAM match the caches.
        let gdt_cs: u64 = ram
            .read_obj(GuestAddress(s.gdt.base + u64::from(s.cs.selector)))
            .unwrap();
        assert_eq!(gdt_cs, descriptor(&s.cs));
        let gdt_ds: u64 = ram
            .read_obj(GuestAddress(s.gdt.base + u64::from(s.ds.selector)))
            .unwrap();
        assert_eq!(gdt_ds, descriptor(&s.ds));
        // The identity map: walk 0xFEE00000 (3 GiB + 1006 MiB).
        let va: u64 = 0xfee0_0123;
        let pml4e: u64 = ram.read_obj(GuestAddress(s.cr3)).unwrap();
        let pdpte: u64 = ram
            .read_obj(GuestAddress((pml4e & !0xfff) + ((va >> 30) & 511) * 8))
            .unwrap();
        let pde: u64 = ram
            .read_obj(GuestAddress((pdpte & !0xfff) + ((va >> 21) & 511) * 8))
            .unwrap();
        assert_eq!(pde & PTE_PS, PTE_PS);
        assert_eq!((pde & !0x1f_ffff) | (va & 0x1f_ffff), va);
    }

    #[test]
    fn protected_mode_state_is_consistent() {
        let ram = create_ram(16 << 20).unwrap();
        let s = protected_mode(&ram, 0x100000).unwrap();
        assert_eq!(s.code_bitness(), 32);
        assert_eq!(s.cr0 & CR0_PG, 0);
        assert_eq!(s.efer, 0);
        assert_eq!(s.cs.base, 0);
        assert_eq!(s.cs.limit, 0xffff_ffff);
        let gdt_cs: u64 = ram
            .read_obj(GuestAddress(s.gdt.base + u64::from(s.cs.selector)))
            .unwrap();
        assert_eq!(gdt_cs, descriptor(&s.cs));
    }
}

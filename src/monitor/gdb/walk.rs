//! Guest-virtual to guest-physical translation for the debugger: a read-only walk of the
//! guest's page tables as a vCPU's [`VcpuState`] describes them (no paging, 32-bit, PAE,
//! 4-level long mode), over guest RAM. It works the same under KVM and the software CPU, sets
//! no accessed/dirty bits and ignores protection: a debugger may look at any mapped page.

use vm_memory::{Bytes, GuestAddress};

use crate::accel::{GuestRam, VcpuState};

const CR0_PG: u64 = 1 << 31;
const CR4_PSE: u64 = 1 << 4;
const CR4_PAE: u64 = 1 << 5;
const CR4_LA57: u64 = 1 << 12;
const EFER_LMA: u64 = 1 << 10;
const PTE_P: u64 = 1;
const PTE_PS: u64 = 1 << 7;
/// Physical-address bits of a 64-bit entry (bits 12..51).
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Why an address cannot be translated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WalkError {
    /// A table entry on the way is not present.
    #[error("{addr:#x} is not mapped")]
    NotMapped {
        /// The virtual address.
        addr: u64,
    },
    /// A page table lies outside guest RAM.
    #[error("page table entry at {table:#x} is outside RAM")]
    TableOutsideRam {
        /// Physical address of the entry.
        table: u64,
    },
    /// 5-level paging is not walked.
    #[error("5-level paging is not supported by the debugger's page walk")]
    La57,
}

/// Translate virtual (linear) address `addr` for a vCPU in state `s`.
pub fn translate(ram: &GuestRam, s: &VcpuState, addr: u64) -> Result<u64, WalkError> {
    if s.cr0 & CR0_PG == 0 {
        return Ok(if s.efer & EFER_LMA != 0 {
            addr
        } else {
            addr & 0xffff_ffff
        });
    }
    if s.efer & EFER_LMA != 0 {
        if s.cr4 & CR4_LA57 != 0 {
            return Err(WalkError::La57);
        }
        return walk64(ram, s.cr3 & ADDR_MASK, addr, &[39, 30, 21, 12]);
    }
    let addr = addr & 0xffff_ffff;
    if s.cr4 & CR4_PAE != 0 {
        let pdpte = entry64(ram, (s.cr3 & 0xffff_ffe0) + ((addr >> 30) & 3) * 8)?;
        if pdpte & PTE_P == 0 {
            return Err(WalkError::NotMapped { addr });
        }
        return walk64(ram, pdpte & ADDR_MASK, addr, &[21, 12]);
    }
    // 32-bit paging: 4-byte entries, 4 MiB pages with CR4.PSE.
    let pde = entry32(ram, (s.cr3 & 0xffff_f000) + ((addr >> 22) & 0x3ff) * 4)?;
    if pde & PTE_P == 0 {
        return Err(WalkError::NotMapped { addr });
    }
    if pde & PTE_PS != 0 && s.cr4 & CR4_PSE != 0 {
        // Bits 13..20 of a 4 MiB PDE are physical bits 32..39.
        let high = ((pde >> 13) & 0xff) << 32;
        return Ok(high | (pde & 0xffc0_0000) | (addr & 0x3f_ffff));
    }
    let pte = entry32(ram, (pde & 0xffff_f000) + ((addr >> 12) & 0x3ff) * 4)?;
    if pte & PTE_P == 0 {
        return Err(WalkError::NotMapped { addr });
    }
    Ok((pte & 0xffff_f000) | (addr & 0xfff))
}

/// Walk 8-byte-entry tables from `table`, one level per shift in `shifts` (the last is 12).
fn walk64(ram: &GuestRam, mut table: u64, addr: u64, shifts: &[u32]) -> Result<u64, WalkError> {
    for (level, &shift) in shifts.iter().enumerate() {
        let e = entry64(ram, table + ((addr >> shift) & 0x1ff) * 8)?;
        if e & PTE_P == 0 {
            return Err(WalkError::NotMapped { addr });
        }
        let last = level + 1 == shifts.len();
        // A large page: PS in a PDPTE (1 GiB) or a PDE (2 MiB); a PML4E has no PS bit.
        if last || (shift < 39 && e & PTE_PS != 0) {
            let page = (1u64 << shift) - 1;
            return Ok((e & ADDR_MASK & !page) | (addr & page));
        }
        table = e & ADDR_MASK;
    }
    Err(WalkError::NotMapped { addr })
}

fn entry64(ram: &GuestRam, at: u64) -> Result<u64, WalkError> {
    ram.read_obj::<u64>(GuestAddress(at))
        .map_err(|_| WalkError::TableOutsideRam { table: at })
}

fn entry32(ram: &GuestRam, at: u64) -> Result<u64, WalkError> {
    ram.read_obj::<u32>(GuestAddress(at))
        .map(u64::from)
        .map_err(|_| WalkError::TableOutsideRam { table: at })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ram() -> GuestRam {
        GuestRam::from_ranges(&[(GuestAddress(0), 1 << 22)]).unwrap()
    }

    #[test]
    fn no_paging_is_identity() {
        let s = VcpuState::reset();
        assert_eq!(translate(&ram(), &s, 0x1_0000_1234), Ok(0x1234));
    }

    #[test]
    fn long_mode_4k_and_2m_pages() {
        let r = ram();
        // PML4 at 0x1000 → PDPT at 0x2000 → PD at 0x3000; PD[0] = 2 MiB page at 0x200000,
        // PD[1] → PT at 0x4000, PT[5] = 0x5000.
        r.write_obj(0x2003u64, GuestAddress(0x1000)).unwrap();
        r.write_obj(0x3003u64, GuestAddress(0x2000)).unwrap();
        r.write_obj(0x20_0083u64, GuestAddress(0x3000)).unwrap();
        r.write_obj(0x4003u64, GuestAddress(0x3008)).unwrap();
        r.write_obj(0x5003u64, GuestAddress(0x4000 + 5 * 8))
            .unwrap();
        let s = VcpuState {
            cr0: CR0_PG | 1,
            cr3: 0x1000,
            cr4: CR4_PAE,
            efer: EFER_LMA | (1 << 8),
            ..VcpuState::default()
        };
        assert_eq!(translate(&r, &s, 0x1234), Ok(0x20_1234));
        assert_eq!(translate(&r, &s, 0x20_5678), Ok(0x5678));
        assert_eq!(
            translate(&r, &s, 0x40_0000),
            Err(WalkError::NotMapped { addr: 0x40_0000 })
        );
    }

    #[test]
    fn legacy_32bit_paging_with_4m_pages() {
        let r = ram();
        r.write_obj(0x0040_0083u32, GuestAddress(0x1000 + 4))
            .unwrap(); // 4 MiB page
        r.write_obj(0x2003u32, GuestAddress(0x1000)).unwrap();
        r.write_obj(0x7003u32, GuestAddress(0x2000 + 3 * 4))
            .unwrap();
        let s = VcpuState {
            cr0: CR0_PG | 1,
            cr3: 0x1000,
            cr4: CR4_PSE,
            ..VcpuState::default()
        };
        assert_eq!(translate(&r, &s, 0x3abc), Ok(0x7abc));
        assert_eq!(translate(&r, &s, 0x0041_2345), Ok(0x0041_2345));
    }
}

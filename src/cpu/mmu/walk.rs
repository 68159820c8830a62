//! The page walk: linear → physical in every paging mode (none, 32-bit with 4 MiB pages under
//! CR4.PSE, PAE, 4-level long mode), with the permission checks, accessed/dirty updates and the
//! exact #PF error code. Page-table entries are read from guest RAM; a table outside RAM reads
//! as not present.

use vm_memory::{Bytes, GuestAddress};

use super::tlb::Access;
use crate::cpu::fault::{exc_code, vec, Res};
use crate::cpu::state::{cr0, cr4, efer};
use crate::cpu::Cpu;

/// Physical address width we advertise (CPUID 0x80000008).
pub const PHYS_BITS: u32 = 40;

const P: u64 = 1 << 0;
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2;
const A: u64 = 1 << 5;
const D: u64 = 1 << 6;
const PS: u64 = 1 << 7;
const G: u64 = 1 << 8;
const XD: u64 = 1 << 63;
const ADDR64: u64 = ((1u64 << PHYS_BITS) - 1) & !0xfff;
const HIGH_RSVD: u64 = ((1u64 << 52) - 1) & !((1u64 << PHYS_BITS) - 1);

/// The result of a successful walk.
#[derive(Debug, Clone, Copy)]
pub struct Walk {
    /// Guest-physical address of the 4 KiB frame holding the linear address.
    pub phys: u64,
    /// The mapping is global.
    pub global: bool,
}

/// #PF error-code bits.
mod pfec {
    pub const PRESENT: u32 = 1;
    pub const WRITE: u32 = 2;
    pub const USER: u32 = 4;
    pub const RSVD: u32 = 8;
    pub const FETCH: u32 = 16;
}

impl Cpu {
    fn pte_read(&self, addr: u64, wide: bool) -> u64 {
        if wide {
            self.ram.read_obj::<u64>(GuestAddress(addr)).unwrap_or(0)
        } else {
            u64::from(self.ram.read_obj::<u32>(GuestAddress(addr)).unwrap_or(0))
        }
    }

    fn pte_set(&mut self, addr: u64, wide: bool, old: u64, bits: u64) {
        if old & bits == bits {
            return;
        }
        let new = old | bits;
        let _ = if wide {
            self.ram.write_obj::<u64>(new, GuestAddress(addr))
        } else {
            self.ram.write_obj::<u32>(new as u32, GuestAddress(addr))
        };
        // A/D updates only touch the low byte; a page table that also holds translated code
        // would be odd, but keep the cache coherent anyway.
        self.note_phys_write(addr & !0xfff);
    }

    /// Translate `lin` for an access of kind `acc` at privilege `user`, or raise #PF (CR2 set).
    pub(crate) fn translate(&mut self, lin: u64, acc: Access, user: bool) -> Res<Walk> {
        let s = &self.state;
        if s.cr0 & cr0::PG == 0 {
            return Ok(Walk {
                phys: lin & 0xffff_ffff & !0xfff,
                global: false,
            });
        }
        let write = acc == Access::Write;
        let fetch = acc == Access::Exec;
        let nxe = s.efer & efer::NXE != 0;
        let wp = s.cr0 & cr0::WP != 0;
        let pge = s.cr4 & cr4::PGE != 0;
        let long = s.efer & efer::LMA != 0;
        let pae = s.cr4 & cr4::PAE != 0;
        let cr3 = s.cr3;
        let mut code = 0u32;
        if write {
            code |= pfec::WRITE;
        }
        if user {
            code |= pfec::USER;
        }
        if fetch && nxe && (pae || long) {
            code |= pfec::FETCH;
        }
        let fault = |cpu: &mut Cpu, extra: u32| {
            cpu.state.cr2 = lin;
            Err(exc_code(vec::PF, code | extra))
        };
        let xd_rsvd = if nxe { 0 } else { XD };

        // Entries visited: (address, value, wide) so A bits can be set once checks pass.
        let mut path: [(u64, u64); 4] = [(0, 0); 4];
        let mut depth = 0;
        let mut rw_all = true;
        let mut us_all = true;
        let mut nx_any = false;
        let (frame, leaf, wide);

        if long || pae {
            wide = true;
            let (mut table, mut level) = if long {
                (cr3 & ADDR64, 4)
            } else {
                let pdpte_addr = (cr3 & 0xffff_ffe0) + ((lin >> 30) & 3) * 8;
                let pdpte = self.pte_read(pdpte_addr, true);
                if pdpte & P == 0 {
                    return fault(self, 0);
                }
                if pdpte & (HIGH_RSVD | 0x1e6 | XD) != 0 {
                    return fault(self, pfec::PRESENT | pfec::RSVD);
                }
                (pdpte & ADDR64, 2)
            };
            loop {
                let shift = 12 + 9 * (level - 1);
                let addr = table + ((lin >> shift) & 0x1ff) * 8;
                let e = self.pte_read(addr, true);
                if e & P == 0 {
                    return fault(self, 0);
                }
                let mut rsvd = e & (HIGH_RSVD | xd_rsvd);
                if level == 4 || (level == 3 && e & PS != 0) {
                    rsvd |= e & PS;
                }
                if level == 2 && e & PS != 0 {
                    rsvd |= e & 0x1f_e000;
                }
                if rsvd != 0 {
                    return fault(self, pfec::PRESENT | pfec::RSVD);
                }
                path[depth] = (addr, e);
                depth += 1;
                rw_all &= e & RW != 0;
                us_all &= e & US != 0;
                nx_any |= nxe && e & XD != 0;
                if level == 1 {
                    frame = e & ADDR64;
                    leaf = e;
                    break;
                }
                if level == 2 && e & PS != 0 {
                    frame = (e & ADDR64 & !0x1f_ffff) | (lin & 0x1f_f000);
                    leaf = e;
                    break;
                }
                table = e & ADDR64;
                level -= 1;
            }
        } else {
            wide = false;
            let pde_addr = (cr3 & 0xffff_f000) + ((lin >> 22) & 0x3ff) * 4;
            let pde = self.pte_read(pde_addr, false);
            if pde & P == 0 {
                return fault(self, 0);
            }
            path[0] = (pde_addr, pde);
            depth = 1;
            rw_all &= pde & RW != 0;
            us_all &= pde & US != 0;
            if pde & PS != 0 && s_pse(self) {
                frame = (pde & 0xffc0_0000) | (lin & 0x3f_f000);
                leaf = pde;
            } else {
                let pte_addr = (pde & 0xffff_f000) + ((lin >> 12) & 0x3ff) * 4;
                let pte = self.pte_read(pte_addr, false);
                if pte & P == 0 {
                    return fault(self, 0);
                }
                path[1] = (pte_addr, pte);
                depth = 2;
                rw_all &= pte & RW != 0;
                us_all &= pte & US != 0;
                frame = pte & 0xffff_f000;
                leaf = pte;
            }
        }

        let denied = (user && !us_all) || (write && !rw_all && (user || wp)) || (fetch && nx_any);
        if denied {
            return fault(self, pfec::PRESENT);
        }
        for &(addr, e) in &path[..depth - 1] {
            self.pte_set(addr, wide, e, A);
        }
        let (addr, e) = path[depth - 1];
        self.pte_set(addr, wide, e, if write { A | D } else { A });
        Ok(Walk {
            phys: frame,
            global: pge && leaf & G != 0,
        })
    }
}

fn s_pse(cpu: &Cpu) -> bool {
    cpu.state.cr4 & cr4::PSE != 0
}

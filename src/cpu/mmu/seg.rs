//! Segmentation: segment:offset → linear with the limit and type checks of real, protected and
//! compatibility mode (#GP(0), or #SS(0) for SS), flat addressing with canonical checks in
//! 64-bit mode (FS/GS keep their base).

use crate::cpu::fault::{exc_code, gp, ss, vec, Res};
use crate::cpu::flags::AC;
use crate::cpu::state::{cr0, sreg};
use crate::cpu::Cpu;

/// Is `a` canonical for 48-bit linear addresses?
#[inline]
pub fn canonical(a: u64) -> bool {
    ((a as i64) << 16 >> 16) as u64 == a
}

impl Cpu {
    #[inline]
    fn seg_fault(seg: usize) -> super::super::fault::Fault {
        if seg == sreg::SS {
            ss(0)
        } else {
            gp(0)
        }
    }

    /// The linear address of `seg:off` for an access of `size` bytes (`write` for stores).
    #[inline]
    pub(crate) fn linear(&self, seg: usize, off: u64, size: usize, write: bool) -> Res<u64> {
        let st = &self.state;
        let s = &st.seg[seg];
        if st.mode64() {
            let lin = if seg >= sreg::FS {
                s.base.wrapping_add(off)
            } else {
                off
            };
            if !canonical(lin) {
                return Err(Self::seg_fault(seg));
            }
            return Ok(lin);
        }
        if st.protected() && !st.v86() {
            if s.unusable {
                return Err(Self::seg_fault(seg));
            }
            let code = s.type_ & 0x8 != 0;
            let ok = if write {
                !code && s.type_ & 0x2 != 0
            } else {
                !code || s.type_ & 0x2 != 0
            };
            if !ok {
                return Err(Self::seg_fault(seg));
            }
        }
        let last = off.wrapping_add(size.max(1) as u64 - 1);
        let expand_down = s.type_ & 0xc == 0x4;
        if expand_down {
            let upper: u64 = if s.db { 0xffff_ffff } else { 0xffff };
            if off <= u64::from(s.limit) || last > upper || last < off {
                return Err(Self::seg_fault(seg));
            }
        } else if last > u64::from(s.limit) || last < off {
            return Err(Self::seg_fault(seg));
        }
        Ok(s.base.wrapping_add(off) & 0xffff_ffff)
    }

    /// Alignment check (#AC(0)): a misaligned data access at CPL 3 with CR0.AM and
    /// EFLAGS.AC both set. Only called for CPL 3 accesses.
    #[inline]
    fn check_alignment(&self, lin: u64, size: usize) -> Res<()> {
        if size > 1
            && lin & (size as u64 - 1) != 0
            && self.state.cr0 & cr0::AM != 0
            && self.state.flags.sys(AC)
        {
            return Err(exc_code(vec::AC, 0));
        }
        Ok(())
    }

    /// Data read of `size` bytes at `seg:off` with the current privilege.
    #[inline]
    pub(crate) fn read_seg(&mut self, seg: usize, off: u64, size: usize) -> Res<u64> {
        let lin = self.linear(seg, off, size, false)?;
        let user = self.state.cpl() == 3;
        if user {
            self.check_alignment(lin, size)?;
        }
        self.read_lin(lin, size, user)
    }

    /// Data write of `size` bytes at `seg:off` with the current privilege.
    #[inline]
    pub(crate) fn write_seg(&mut self, seg: usize, off: u64, size: usize, v: u64) -> Res<()> {
        let lin = self.linear(seg, off, size, true)?;
        let user = self.state.cpl() == 3;
        if user {
            self.check_alignment(lin, size)?;
        }
        self.write_lin(lin, size, v, user)
    }

    /// An implicit supervisor read (descriptor tables, TSS, IDT) at linear `lin`.
    pub(crate) fn read_sys(&mut self, lin: u64, size: usize) -> Res<u64> {
        let lin = if self.state.long_mode() {
            lin
        } else {
            lin & 0xffff_ffff
        };
        self.read_lin(lin, size, false)
    }

    /// An implicit supervisor write (descriptor accessed/busy bits, TSS back link).
    pub(crate) fn write_sys(&mut self, lin: u64, size: usize, v: u64) -> Res<()> {
        let lin = if self.state.long_mode() {
            lin
        } else {
            lin & 0xffff_ffff
        };
        self.write_lin(lin, size, v, false)
    }
}

#[cfg(test)]
mod tests {
    use super::canonical;

    #[test]
    fn canonical_addresses() {
        assert!(canonical(0x7fff_ffff_ffff));
        assert!(canonical(0xffff_8000_0000_0000));
        assert!(!canonical(0x8000_0000_0000));
    }
}

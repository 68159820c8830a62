//! Segment descriptors: reading them from the GDT/LDT, turning them into segment caches, and
//! loading data/stack segment registers with the protected-mode checks.

use crate::accel::Segment;

use super::fault::{gp, np, ss, Res};
use super::state::sreg;
use super::Cpu;

/// Decode the low 8 bytes of a code/data (or system) descriptor into a segment cache.
pub fn segment_from_desc(selector: u16, d: u64) -> Segment {
    let limit_raw = (d & 0xffff) as u32 | (((d >> 48) & 0xf) as u32) << 16;
    let g = (d >> 55) & 1 != 0;
    let limit = if g {
        (limit_raw << 12) | 0xfff
    } else {
        limit_raw
    };
    Segment {
        selector,
        base: ((d >> 16) & 0xff_ffff) | ((d >> 56) & 0xff) << 24,
        limit,
        type_: ((d >> 40) & 0xf) as u8,
        s: (d >> 44) & 1 != 0,
        dpl: ((d >> 45) & 3) as u8,
        present: (d >> 47) & 1 != 0,
        avl: (d >> 52) & 1 != 0,
        l: (d >> 53) & 1 != 0,
        db: (d >> 54) & 1 != 0,
        g,
        unusable: false,
    }
}

/// An unusable (null) segment with the given selector.
pub fn null_segment(selector: u16) -> Segment {
    Segment {
        selector,
        unusable: true,
        ..Segment::default()
    }
}

impl Cpu {
    /// Linear address of the descriptor for `sel`, after the table-limit check (#GP(sel)).
    pub(crate) fn desc_addr(&self, sel: u16, size: u64) -> Res<u64> {
        let index = u64::from(sel & !7);
        let (base, limit) = if sel & 4 != 0 {
            let l = &self.state.ldtr;
            if l.unusable || l.selector & !3 == 0 {
                return Err(gp(u32::from(sel & !3)));
            }
            (l.base, u64::from(l.limit))
        } else {
            (self.state.gdtr.base, u64::from(self.state.gdtr.limit))
        };
        if index + size - 1 > limit {
            return Err(gp(u32::from(sel & !3)));
        }
        Ok(base.wrapping_add(index))
    }

    /// The 8-byte descriptor for `sel` (which must not be null).
    pub(crate) fn read_desc(&mut self, sel: u16) -> Res<u64> {
        let a = self.desc_addr(sel, 8)?;
        self.read_sys(a, 8)
    }

    /// The upper 8 bytes of a 16-byte system descriptor (long mode).
    pub(crate) fn read_desc_high(&mut self, sel: u16) -> Res<u64> {
        let a = self.desc_addr(sel, 16)?;
        self.read_sys(a.wrapping_add(8), 8)
    }

    /// Set the accessed bit of the descriptor for `sel` if clear.
    pub(crate) fn set_accessed(&mut self, sel: u16, d: u64) -> Res<()> {
        if d & (1 << 40) == 0 {
            let a = self.desc_addr(sel, 8)?;
            self.write_sys(a.wrapping_add(5), 1, (d >> 40) | 1)?;
        }
        Ok(())
    }

    /// Load a data or stack segment register (MOV, POP, LDS...) with the mode's checks.
    pub(crate) fn load_sreg(&mut self, seg: usize, sel: u16) -> Res<()> {
        let st = &self.state;
        if !st.protected() || st.v86() {
            let s = &mut self.state.seg[seg];
            s.selector = sel;
            s.base = u64::from(sel) << 4;
            if st_v86(self) {
                let s = &mut self.state.seg[seg];
                *s = Segment::real(sel, if seg == sreg::CS { 0xb } else { 0x3 });
                s.dpl = 3;
            }
            return Ok(());
        }
        let cpl = st.cpl();
        let rpl = (sel & 3) as u8;
        let err = u32::from(sel & !3);
        if sel & !3 == 0 {
            if seg == sreg::SS && !(st.mode64() && cpl < 3 && rpl == cpl) {
                return Err(gp(0));
            }
            let mut n = null_segment(sel);
            if seg == sreg::SS {
                n.dpl = cpl;
                n.db = true;
            }
            self.state.seg[seg] = n;
            return Ok(());
        }
        let d = self.read_desc(sel)?;
        let s = segment_from_desc(sel, d);
        let code = s.type_ & 8 != 0;
        let readable = s.type_ & 2 != 0;
        if seg == sreg::SS {
            if rpl != cpl || s.dpl != cpl || !s.s || code || !readable {
                return Err(gp(err));
            }
            if !s.present {
                return Err(ss(err));
            }
        } else {
            let conforming_code = code && s.type_ & 4 != 0;
            if !s.s || (code && !readable) || (!conforming_code && s.dpl < cpl.max(rpl)) {
                return Err(gp(err));
            }
            if !s.present {
                return Err(np(err));
            }
        }
        self.set_accessed(sel, d)?;
        let mut s = s;
        s.type_ |= 1;
        self.state.seg[seg] = s;
        Ok(())
    }
}

fn st_v86(cpu: &Cpu) -> bool {
    cpu.state.v86()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_code_descriptor() {
        let s = segment_from_desc(8, 0x00af_9b00_0000_ffff);
        assert!(s.l && s.g && s.present && s.s);
        assert_eq!(s.type_, 0xb);
        assert_eq!(s.limit, 0xffff_ffff);
        let d = segment_from_desc(0x10, 0x00cf_9300_0000_ffff);
        assert!(d.db && !d.l);
        assert_eq!(d.base, 0);
    }
}

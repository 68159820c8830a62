//! Interrupt and exception delivery through the IVT (real mode), the IDT with 8-byte gates
//! (protected mode: interrupt and trap gates, 16- and 32-bit; task gates raise #GP) and the IDT
//! with 16-byte gates (long mode: IST, stack switch through the TSS RSP0-2, SS:RSP always
//! pushed). Registers change only once every push succeeded, so a fault during delivery leaves
//! the interrupted state intact for the double-fault logic.

use super::descriptor::{null_segment, segment_from_desc};
use super::exception::Kind;
use super::fault::{gp, np, ts, Res};
use super::flags::{AC, IF, NT, RF, TF, VM};
use super::state::sreg;
use super::Cpu;
use crate::accel::Segment;

impl Cpu {
    /// Deliver `vector` with the return address `ret_rip`.
    pub(crate) fn deliver(
        &mut self,
        vector: u8,
        code: Option<u32>,
        kind: Kind,
        ret_rip: u64,
    ) -> Res<()> {
        self.stop_block = true;
        if self.trace.mask.int {
            self.trace_event(vector, code, kind, ret_rip);
        }
        if !self.state.protected() {
            return self.deliver_real(vector, ret_rip);
        }
        let ext = u32::from(kind != Kind::Software);
        let idx_err = (u32::from(vector) << 3) | 2 | ext;
        if self.state.v86() {
            // Virtual-8086 monitors are not supported yet.
            return Err(gp(idx_err));
        }
        if self.state.long_mode() {
            self.deliver_long(vector, code, kind, ret_rip, idx_err)
        } else {
            self.deliver_prot(vector, code, kind, ret_rip, idx_err)
        }
    }

    fn deliver_real(&mut self, vector: u8, ret_rip: u64) -> Res<()> {
        let off = u64::from(vector) * 4;
        if off + 3 > u64::from(self.state.idtr.limit) {
            return Err(gp(0));
        }
        let base = self.state.idtr.base;
        let ip = self.read_sys(base.wrapping_add(off), 2)?;
        let cs = self.read_sys(base.wrapping_add(off + 2), 2)? as u16;
        let flags = self.state.flags.get();
        let old_cs = u64::from(self.state.seg[sreg::CS].selector);
        let ss_base = self.state.seg[sreg::SS].base;
        let mut sp = self.state.gpr[4];
        for v in [flags, old_cs, ret_rip] {
            sp = sp.wrapping_sub(2) & 0xffff;
            self.write_sys(ss_base.wrapping_add(sp), 2, v & 0xffff)?;
        }
        self.state.gpr[4] = (self.state.gpr[4] & !0xffff) | sp;
        let c = &mut self.state.seg[sreg::CS];
        c.selector = cs;
        c.base = u64::from(cs) << 4;
        self.state.rip = ip;
        self.state.flags.set_sys(IF, false);
        self.state.flags.set_sys(TF, false);
        self.state.flags.set_sys(AC, false);
        Ok(())
    }

    /// Read and check the target code segment of a gate; returns (segment, new CPL).
    fn gate_target(&mut self, sel: u16, ext: u32, long: bool) -> Res<(Segment, u8)> {
        if sel & !3 == 0 {
            return Err(gp(ext));
        }
        let err = u32::from(sel & !3) | ext;
        let d = self.read_desc(sel)?;
        let s = segment_from_desc(sel, d);
        let cpl = self.state.cpl();
        if !s.s || s.type_ & 8 == 0 || s.dpl > cpl || (long && (!s.l || s.db)) {
            return Err(gp(err));
        }
        if !s.present {
            return Err(np(err));
        }
        let new_cpl = if s.type_ & 4 != 0 { cpl } else { s.dpl };
        Ok((s, new_cpl))
    }

    fn deliver_long(
        &mut self,
        vector: u8,
        code: Option<u32>,
        kind: Kind,
        ret_rip: u64,
        idx_err: u32,
    ) -> Res<()> {
        let off = u64::from(vector) * 16;
        if off + 15 > u64::from(self.state.idtr.limit) {
            return Err(gp(idx_err));
        }
        let base = self.state.idtr.base;
        let lo = self.read_sys(base.wrapping_add(off), 8)?;
        let hi = self.read_sys(base.wrapping_add(off + 8), 8)?;
        let typ = (lo >> 40) & 0xf;
        let dpl = ((lo >> 45) & 3) as u8;
        let cpl = self.state.cpl();
        if typ != 0xe && typ != 0xf {
            return Err(gp(idx_err));
        }
        if kind == Kind::Software && dpl < cpl {
            return Err(gp(idx_err));
        }
        if (lo >> 47) & 1 == 0 {
            return Err(np(idx_err));
        }
        let sel = ((lo >> 16) & 0xffff) as u16;
        let target = (lo & 0xffff) | ((lo >> 48) & 0xffff) << 16 | (hi & 0xffff_ffff) << 32;
        let ist = (lo >> 32) & 7;
        let ext = idx_err & 1;
        let (cs, new_cpl) = self.gate_target(sel, ext, true)?;
        let old_rsp = self.state.gpr[4];
        let mut rsp = if ist != 0 {
            self.tss_read(0x24 + 8 * (ist - 1), 8)?
        } else if new_cpl < cpl {
            self.tss_read(4 + 8 * u64::from(new_cpl), 8)?
        } else {
            old_rsp
        };
        rsp &= !0xf;
        let flags = self.state.flags.get();
        let mut frame = [
            u64::from(self.state.seg[sreg::SS].selector),
            old_rsp,
            flags,
            u64::from(self.state.seg[sreg::CS].selector),
            ret_rip,
            0,
        ];
        let n = if let Some(c) = code {
            frame[5] = u64::from(c);
            6
        } else {
            5
        };
        let user = new_cpl == 3;
        for v in &frame[..n] {
            rsp = rsp.wrapping_sub(8);
            self.write_lin(rsp, 8, *v, user)?;
        }
        let mut cs = cs;
        cs.selector = (sel & !3) | u16::from(new_cpl);
        cs.type_ |= 1;
        if new_cpl != cpl {
            let mut ss = null_segment(u16::from(new_cpl));
            ss.dpl = new_cpl;
            self.state.seg[sreg::SS] = ss;
        }
        self.state.seg[sreg::CS] = cs;
        self.state.gpr[4] = rsp;
        self.state.rip = target;
        self.finish_gate_flags(typ & 1 == 0);
        Ok(())
    }

    fn finish_gate_flags(&mut self, interrupt_gate: bool) {
        let f = &mut self.state.flags;
        f.set_sys(TF, false);
        f.set_sys(NT, false);
        f.set_sys(RF, false);
        f.set_sys(VM, false);
        if interrupt_gate {
            f.set_sys(IF, false);
        }
    }

    /// Read `size` bytes at `off` in the current TSS (#TS if past its limit).
    pub(crate) fn tss_read(&mut self, off: u64, size: usize) -> Res<u64> {
        let tr = self.state.tr;
        if off + size as u64 - 1 > u64::from(tr.limit) {
            return Err(ts(u32::from(tr.selector & !3)));
        }
        self.read_sys(tr.base.wrapping_add(off), size)
    }

    fn deliver_prot(
        &mut self,
        vector: u8,
        code: Option<u32>,
        kind: Kind,
        ret_rip: u64,
        idx_err: u32,
    ) -> Res<()> {
        let off = u64::from(vector) * 8;
        if off + 7 > u64::from(self.state.idtr.limit) {
            return Err(gp(idx_err));
        }
        let lo = self.read_sys(self.state.idtr.base.wrapping_add(off), 8)?;
        let typ = (lo >> 40) & 0x1f;
        let dpl = ((lo >> 45) & 3) as u8;
        let cpl = self.state.cpl();
        // 0x06/0x07: 16-bit interrupt/trap gate; 0x0e/0x0f: 32-bit. Task gates (0x05) are not
        // supported and raise #GP like a bad gate type.
        if !matches!(typ, 0x06 | 0x07 | 0x0e | 0x0f) {
            return Err(gp(idx_err));
        }
        if kind == Kind::Software && dpl < cpl {
            return Err(gp(idx_err));
        }
        if (lo >> 47) & 1 == 0 {
            return Err(np(idx_err));
        }
        let gate32 = typ & 8 != 0;
        let sel = ((lo >> 16) & 0xffff) as u16;
        let mut target = (lo & 0xffff) | ((lo >> 48) & 0xffff) << 16;
        if !gate32 {
            target &= 0xffff;
        }
        let ext = idx_err & 1;
        let (cs, new_cpl) = self.gate_target(sel, ext, false)?;
        let size: usize = if gate32 { 4 } else { 2 };
        let flags = self.state.flags.get();
        let old_ss = self.state.seg[sreg::SS];
        let old_esp = self.state.gpr[4];
        let (new_ss, mut esp) = if new_cpl < cpl {
            let tss32 = self.state.tr.type_ & 8 != 0;
            let (esp, ss_sel) = if tss32 {
                let o = 4 + 8 * u64::from(new_cpl);
                (self.tss_read(o, 4)?, self.tss_read(o + 4, 2)? as u16)
            } else {
                let o = 2 + 4 * u64::from(new_cpl);
                (self.tss_read(o, 2)?, self.tss_read(o + 2, 2)? as u16)
            };
            let err = u32::from(ss_sel & !3) | ext;
            if ss_sel & !3 == 0 {
                return Err(ts(err));
            }
            let d = self.read_desc(ss_sel).map_err(|_| ts(err))?;
            let s = segment_from_desc(ss_sel, d);
            if (ss_sel & 3) as u8 != new_cpl || s.dpl != new_cpl || !s.s || s.type_ & 0xa != 2 {
                return Err(ts(err));
            }
            if !s.present {
                return Err(super::fault::ss(err));
            }
            (s, esp)
        } else {
            (old_ss, old_esp)
        };
        let mut frame: Vec<u64> = Vec::with_capacity(6);
        if new_cpl < cpl {
            frame.push(u64::from(old_ss.selector));
            frame.push(old_esp);
        }
        frame.push(flags);
        frame.push(u64::from(self.state.seg[sreg::CS].selector));
        frame.push(ret_rip);
        if let Some(c) = code {
            frame.push(u64::from(c));
        }
        let smask: u64 = if new_ss.db { 0xffff_ffff } else { 0xffff };
        for v in &frame {
            esp = esp.wrapping_sub(size as u64) & smask;
            self.write_sys(new_ss.base.wrapping_add(esp), size, *v)?;
        }
        let mut cs = cs;
        cs.selector = (sel & !3) | u16::from(new_cpl);
        cs.type_ |= 1;
        self.state.seg[sreg::SS] = new_ss;
        self.state.seg[sreg::CS] = cs;
        self.state.gpr[4] = if new_ss.db {
            esp
        } else {
            (self.state.gpr[4] & !0xffff) | esp
        };
        self.state.rip = target;
        self.finish_gate_flags(typ & 1 == 0);
        Ok(())
    }
}

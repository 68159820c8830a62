//! System instructions: control/debug registers, descriptor-table registers, MSRs, TSC, HLT,
//! CLI/STI, flag bit instructions, port I/O with IOPL and the TSS I/O bitmap, segment loads,
//! LAR/LSL/VERR/VERW, cache no-ops, and the #NM/#UD answer to unimplemented x87/SSE forms.

use iced_x86::{Instruction, Mnemonic, OpKind, Register};

use super::{ea, mem_seg, op_size, read_op, seg_index, write_op};
use crate::accel::ExitReason;
use crate::cpu::descriptor::{null_segment, segment_from_desc};
use crate::cpu::fault::{exc, gp, ud, vec, Fault, Res};
use crate::cpu::flags::{AF, ARITH, CF, DF, IF, PF, SF, ZF};
use crate::cpu::state::{cr0, cr4, efer, sreg};
use crate::cpu::Cpu;

fn need_cpl0(cpu: &Cpu) -> Res<()> {
    if cpu.state.cpl() != 0 {
        Err(gp(0))
    } else {
        Ok(())
    }
}

/// NOP, PAUSE, hint NOPs, cache and prefetch no-ops (WBINVD/INVD need CPL 0).
pub fn nop(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    if matches!(i.mnemonic(), Mnemonic::Wbinvd | Mnemonic::Invd) {
        need_cpl0(cpu)?;
    }
    Ok(())
}

/// Instructions that are valid encodings but not implemented: #UD, counted.
pub fn unimplemented(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    cpu.unimplemented += 1;
    cpu.last_unimplemented = Some(i.mnemonic());
    Err(ud())
}

/// x87 instructions without semantics in `exec/x87`: #NM when CR0.EM or CR0.TS, otherwise #UD.
pub fn x87(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    if cpu.state.cr0 & (cr0::EM | cr0::TS) != 0 {
        return Err(exc(vec::NM));
    }
    unimplemented(cpu, i)
}

/// SSE/MMX instructions: #UD under CR0.EM, #NM under CR0.TS, otherwise #UD (not implemented).
pub fn sse(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    if cpu.state.cr0 & cr0::EM == 0 && cpu.state.cr0 & cr0::TS != 0 {
        return Err(exc(vec::NM));
    }
    unimplemented(cpu, i)
}

/// UD0/UD1/UD2.
pub fn ud2(_cpu: &mut Cpu, _i: &Instruction) -> Res<()> {
    Err(ud())
}

/// HLT.
pub fn hlt(cpu: &mut Cpu, _i: &Instruction) -> Res<()> {
    need_cpl0(cpu)?;
    cpu.state.rip = cpu.next_rip;
    Err(Fault::Halt)
}

fn if_allowed(cpu: &Cpu) -> Res<()> {
    if cpu.state.protected() && cpu.state.cpl() > cpu.state.iopl() {
        Err(gp(0))
    } else {
        Ok(())
    }
}

/// CLI.
pub fn cli(cpu: &mut Cpu, _i: &Instruction) -> Res<()> {
    if_allowed(cpu)?;
    cpu.state.flags.set_sys(IF, false);
    Ok(())
}

/// STI (interrupts stay inhibited for one more instruction when IF was clear).
pub fn sti(cpu: &mut Cpu, _i: &Instruction) -> Res<()> {
    if_allowed(cpu)?;
    if !cpu.state.flags.sys(IF) {
        cpu.state.flags.set_sys(IF, true);
        cpu.shadow = true;
        cpu.stop_block = true;
    }
    Ok(())
}

/// CLC, STC, CMC, CLD, STD.
pub fn flag_op(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let f = &mut cpu.state.flags;
    match i.mnemonic() {
        Mnemonic::Clc => f.set_flag(CF, false),
        Mnemonic::Stc => f.set_flag(CF, true),
        Mnemonic::Cmc => {
            let c = f.cf();
            f.set_flag(CF, !c);
        }
        Mnemonic::Cld => f.set_sys(DF, false),
        _ => f.set_sys(DF, true),
    }
    Ok(())
}

/// LAHF.
pub fn lahf(cpu: &mut Cpu, _i: &Instruction) -> Res<()> {
    let v = cpu.state.flags.get() & 0xff;
    cpu.set_reg(Register::AH, v);
    Ok(())
}

/// SAHF.
pub fn sahf(cpu: &mut Cpu, _i: &Instruction) -> Res<()> {
    let ah = cpu.reg(Register::AH);
    cpu.state
        .flags
        .set_arith(CF | PF | AF | ZF | SF, ah & ARITH);
    Ok(())
}

impl Cpu {
    /// #GP(0) unless port I/O to `port..port+size` is allowed (IOPL, then the TSS bitmap).
    pub(crate) fn io_allowed(&mut self, port: u16, size: usize) -> Res<()> {
        if !self.state.protected() || (!self.state.v86() && self.state.cpl() <= self.state.iopl()) {
            return Ok(());
        }
        let tr = self.state.tr;
        if tr.unusable || (tr.type_ & 0x7) != 0x1 && (tr.type_ & 0x7) != 0x3 || tr.type_ & 8 == 0 {
            return Err(gp(0));
        }
        if tr.limit < 0x67 {
            return Err(gp(0));
        }
        let base = self.read_sys(tr.base.wrapping_add(0x66), 2)?;
        let off = base + u64::from(port / 8);
        if off + 1 > u64::from(tr.limit) {
            return Err(gp(0));
        }
        let bits = self.read_sys(tr.base.wrapping_add(off), 2)?;
        let mask = ((1u64 << size) - 1) << (port % 8);
        if bits & mask != 0 {
            return Err(gp(0));
        }
        Ok(())
    }

    /// Read `size` bytes from `port` through the `IoHandler` (counted).
    pub(crate) fn port_in(&mut self, port: u16, size: usize) -> u64 {
        let mut buf = [0u8; 4];
        self.io.pio_read(self.id, port, &mut buf[..size]);
        self.stats.count(self.id, ExitReason::PioRead);
        u64::from(u32::from_le_bytes(buf))
    }

    /// Write `size` bytes to `port` (counted).
    pub(crate) fn port_out(&mut self, port: u16, size: usize, v: u64) {
        let bytes = (v as u32).to_le_bytes();
        self.io.pio_write(self.id, port, &bytes[..size]);
        self.stats.count(self.id, ExitReason::PioWrite);
    }
}

/// IN.
pub fn in_(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let size = op_size(i, 0);
    let port = read_op(cpu, i, 1)? as u16;
    cpu.io_allowed(port, size)?;
    let v = cpu.port_in(port, size);
    cpu.set_reg(i.op0_register(), v);
    Ok(())
}

/// OUT.
pub fn out(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let size = op_size(i, 1);
    let port = read_op(cpu, i, 0)? as u16;
    cpu.io_allowed(port, size)?;
    let v = cpu.reg(i.op1_register());
    cpu.port_out(port, size, v);
    Ok(())
}

/// MOV to or from a segment register.
pub fn mov_sreg(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    if i.op0_kind() == OpKind::Register && i.op0_register().is_segment_register() {
        let seg = seg_index(i.op0_register());
        if seg == sreg::CS {
            return Err(ud());
        }
        let v = read_op(cpu, i, 1)? as u16;
        cpu.load_sreg(seg, v)?;
        if seg == sreg::SS {
            cpu.shadow = true;
        }
        cpu.stop_block = true;
        Ok(())
    } else {
        let v = u64::from(cpu.state.seg[seg_index(i.op1_register())].selector);
        write_op(cpu, i, 0, v)
    }
}

/// LDS/LES/LFS/LGS/LSS.
pub fn load_far(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let size = op_size(i, 0);
    let a = ea(cpu, i);
    let ms = mem_seg(i);
    let off = cpu.read_seg(ms, a, size)?;
    let sel = cpu.read_seg(ms, a.wrapping_add(size as u64), 2)? as u16;
    let seg = match i.mnemonic() {
        Mnemonic::Lds => sreg::DS,
        Mnemonic::Les => sreg::ES,
        Mnemonic::Lfs => sreg::FS,
        Mnemonic::Lgs => sreg::GS,
        _ => sreg::SS,
    };
    cpu.load_sreg(seg, sel)?;
    cpu.set_reg(i.op0_register(), off);
    if seg == sreg::SS {
        cpu.shadow = true;
        cpu.stop_block = true;
    }
    Ok(())
}

/// MOV to or from CR0/CR2/CR3/CR4/CR8.
pub fn mov_cr(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    need_cpl0(cpu)?;
    let to_cr = i.op0_register().number() < 16 && is_cr(i.op0_register());
    if !to_cr {
        let n = i.op1_register().number();
        let s = &cpu.state;
        let v = match n {
            0 => s.cr0,
            2 => s.cr2,
            3 => s.cr3,
            4 => s.cr4,
            8 => s.cr8,
            _ => return Err(ud()),
        };
        cpu.set_reg(i.op0_register(), v);
        return Ok(());
    }
    let n = i.op0_register().number();
    let v = cpu.reg(i.op1_register());
    cpu.stop_block = true;
    match n {
        0 => write_cr0(cpu, v),
        2 => {
            cpu.state.cr2 = v;
            Ok(())
        }
        3 => {
            let mask = if cpu.state.long_mode() {
                (1u64 << crate::cpu::mmu::walk::PHYS_BITS) - 1
            } else {
                0xffff_ffff
            };
            cpu.state.cr3 = v & mask;
            cpu.tlb.flush_non_global();
            Ok(())
        }
        4 => write_cr4(cpu, v),
        8 => {
            if v > 15 {
                return Err(gp(0));
            }
            cpu.state.cr8 = v;
            Ok(())
        }
        _ => Err(ud()),
    }
}

fn is_cr(r: Register) -> bool {
    (Register::CR0 as usize..=Register::CR15 as usize).contains(&(r as usize))
}

/// Write CR0 with its consistency checks; activates or leaves long mode.
pub(crate) fn write_cr0(cpu: &mut Cpu, v: u64) -> Res<()> {
    let s = &cpu.state;
    if v >> 32 != 0 {
        return Err(gp(0));
    }
    let v = v | cr0::ET;
    if (v & cr0::PG != 0 && v & cr0::PE == 0) || (v & cr0::NW != 0 && v & cr0::CD == 0) {
        return Err(gp(0));
    }
    let mut new_efer = s.efer;
    let enabling_pg = v & cr0::PG != 0 && s.cr0 & cr0::PG == 0;
    let disabling_pg = v & cr0::PG == 0 && s.cr0 & cr0::PG != 0;
    if enabling_pg && s.efer & efer::LME != 0 {
        if s.cr4 & cr4::PAE == 0 || s.seg[sreg::CS].l {
            return Err(gp(0));
        }
        new_efer |= efer::LMA;
    }
    if disabling_pg && s.long_mode() {
        if s.mode64() {
            return Err(gp(0));
        }
        new_efer &= !efer::LMA;
    }
    let changed = s.cr0 ^ v;
    cpu.state.cr0 = v;
    cpu.state.efer = new_efer;
    if changed & (cr0::PG | cr0::WP | cr0::PE) != 0 {
        cpu.tlb.flush_all();
    }
    Ok(())
}

fn write_cr4(cpu: &mut Cpu, v: u64) -> Res<()> {
    if v & !cr4::VALID != 0 {
        return Err(gp(0));
    }
    if cpu.state.long_mode() && v & cr4::PAE == 0 {
        return Err(gp(0));
    }
    let changed = cpu.state.cr4 ^ v;
    cpu.state.cr4 = v;
    if changed & (cr4::PAE | cr4::PGE | cr4::PSE) != 0 {
        cpu.tlb.flush_all();
    }
    Ok(())
}

/// MOV to or from DR0-DR7 (stored; breakpoints are not armed).
pub fn mov_dr(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    need_cpl0(cpu)?;
    let is_dr =
        |r: Register| (Register::DR0 as usize..=Register::DR15 as usize).contains(&(r as usize));
    if is_dr(i.op0_register()) {
        let n = i.op0_register().number();
        if n > 7 {
            return Err(ud());
        }
        let n = if n == 4 || n == 5 { n + 2 } else { n };
        cpu.state.dr[n] = cpu.reg(i.op1_register());
    } else {
        let n = i.op1_register().number();
        if n > 7 {
            return Err(ud());
        }
        let n = if n == 4 || n == 5 { n + 2 } else { n };
        cpu.set_reg(i.op0_register(), cpu.state.dr[n]);
    }
    Ok(())
}

/// CLTS.
pub fn clts(cpu: &mut Cpu, _i: &Instruction) -> Res<()> {
    need_cpl0(cpu)?;
    cpu.state.cr0 &= !cr0::TS;
    Ok(())
}

/// LMSW (cannot clear PE).
pub fn lmsw(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    need_cpl0(cpu)?;
    let v = read_op(cpu, i, 0)? & 0xf;
    let cur = cpu.state.cr0;
    let new = (cur & !0xe) | (v & 0xe) | ((cur | v) & 1);
    cpu.stop_block = true;
    write_cr0(cpu, new)
}

/// SMSW.
pub fn smsw(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let v = cpu.state.cr0;
    if i.op0_kind() == OpKind::Memory {
        write_op(cpu, i, 0, v & 0xffff)
    } else {
        cpu.set_reg(i.op0_register(), v);
        Ok(())
    }
}

/// LGDT / LIDT.
pub fn lgdt_lidt(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    need_cpl0(cpu)?;
    let a = ea(cpu, i);
    let seg = mem_seg(i);
    let limit = cpu.read_seg(seg, a, 2)? as u16;
    let base = if cpu.state.mode64() {
        cpu.read_seg(seg, a.wrapping_add(2), 8)?
    } else {
        let b = cpu.read_seg(seg, a.wrapping_add(2), 4)?;
        if i.code() == iced_x86::Code::Lgdt_m1632_16 || i.code() == iced_x86::Code::Lidt_m1632_16 {
            b & 0xff_ffff
        } else {
            b
        }
    };
    let t = crate::accel::DescriptorTable { base, limit };
    if i.mnemonic() == Mnemonic::Lgdt {
        cpu.state.gdtr = t;
    } else {
        cpu.state.idtr = t;
    }
    Ok(())
}

/// SGDT / SIDT.
pub fn sgdt_sidt(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let t = if i.mnemonic() == Mnemonic::Sgdt {
        cpu.state.gdtr
    } else {
        cpu.state.idtr
    };
    let a = ea(cpu, i);
    let seg = mem_seg(i);
    let n = if cpu.state.mode64() { 8 } else { 4 };
    cpu.write_seg(seg, a.wrapping_add(2), n, t.base)?;
    cpu.write_seg(seg, a, 2, u64::from(t.limit))
}

/// SLDT / STR.
pub fn sldt_str(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    if !cpu.state.protected() || cpu.state.v86() {
        return Err(ud());
    }
    let sel = if i.mnemonic() == Mnemonic::Sldt {
        cpu.state.ldtr.selector
    } else {
        cpu.state.tr.selector
    };
    write_op(cpu, i, 0, u64::from(sel))
}

/// LLDT.
pub fn lldt(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    if !cpu.state.protected() || cpu.state.v86() {
        return Err(ud());
    }
    need_cpl0(cpu)?;
    let sel = read_op(cpu, i, 0)? as u16;
    if sel & !3 == 0 {
        cpu.state.ldtr = null_segment(sel);
        return Ok(());
    }
    let err = u32::from(sel & !3);
    if sel & 4 != 0 {
        return Err(gp(err));
    }
    let d = cpu.read_desc(sel)?;
    let mut s = segment_from_desc(sel, d);
    if s.s || s.type_ != 2 {
        return Err(gp(err));
    }
    if !s.present {
        return Err(crate::cpu::fault::np(err));
    }
    if cpu.state.long_mode() {
        s.base |= (cpu.read_desc_high(sel)? & 0xffff_ffff) << 32;
    }
    cpu.state.ldtr = s;
    Ok(())
}

/// LTR (marks the TSS busy).
pub fn ltr(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    if !cpu.state.protected() || cpu.state.v86() {
        return Err(ud());
    }
    need_cpl0(cpu)?;
    let sel = read_op(cpu, i, 0)? as u16;
    let err = u32::from(sel & !3);
    if sel & !3 == 0 || sel & 4 != 0 {
        return Err(gp(err));
    }
    let d = cpu.read_desc(sel)?;
    let mut s = segment_from_desc(sel, d);
    let ok_type = if cpu.state.long_mode() {
        s.type_ == 9
    } else {
        s.type_ == 9 || s.type_ == 1
    };
    if s.s || !ok_type {
        return Err(gp(err));
    }
    if !s.present {
        return Err(crate::cpu::fault::np(err));
    }
    if cpu.state.long_mode() {
        s.base |= (cpu.read_desc_high(sel)? & 0xffff_ffff) << 32;
    }
    let a = cpu.desc_addr(sel, 8)?;
    cpu.write_sys(a.wrapping_add(5), 1, (d >> 40) | 2)?;
    s.type_ |= 2;
    cpu.state.tr = s;
    Ok(())
}

/// INVLPG.
pub fn invlpg(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    need_cpl0(cpu)?;
    let a = ea(cpu, i);
    let s = &cpu.state.seg[mem_seg(i)];
    let lin = if cpu.state.mode64() {
        if mem_seg(i) >= sreg::FS {
            s.base.wrapping_add(a)
        } else {
            a
        }
    } else {
        s.base.wrapping_add(a) & 0xffff_ffff
    };
    cpu.tlb.flush_page(lin);
    Ok(())
}

/// RDTSC / RDTSCP.
pub fn rdtsc(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    if cpu.state.cr4 & cr4::TSD != 0 && cpu.state.cpl() != 0 {
        return Err(gp(0));
    }
    let t = cpu.tsc();
    cpu.state.gpr[0] = t & 0xffff_ffff;
    cpu.state.gpr[2] = t >> 32;
    if i.mnemonic() == Mnemonic::Rdtscp {
        cpu.state.gpr[1] = cpu.state.msr.tsc_aux & 0xffff_ffff;
    }
    Ok(())
}

/// LAR / LSL.
pub fn lar_lsl(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    if !cpu.state.protected() || cpu.state.v86() {
        return Err(ud());
    }
    let sel = read_op(cpu, i, 1)? as u16;
    let lsl = i.mnemonic() == Mnemonic::Lsl;
    let found = visible_desc(cpu, sel, |typ, long| {
        let sys_ok: &[u8] = match (lsl, long) {
            (false, false) => &[1, 2, 3, 4, 5, 9, 0xb, 0xc],
            (false, true) => &[2, 9, 0xb, 0xc],
            (true, false) => &[1, 2, 3, 9, 0xb],
            (true, true) => &[2, 9, 0xb],
        };
        sys_ok.contains(&typ)
    })?;
    match found {
        Some(d) => {
            let v = if lsl {
                u64::from(segment_from_desc(sel, d).limit)
            } else {
                (d >> 32) & 0x00f0_ff00
            };
            cpu.set_reg(i.op0_register(), v);
            cpu.state.flags.set_flag(ZF, true);
        }
        None => cpu.state.flags.set_flag(ZF, false),
    }
    Ok(())
}

/// The descriptor for `sel` if it exists and the privilege rules of LAR/LSL/VERR/VERW let the
/// current code see it; `sys_ok` says which system types qualify.
fn visible_desc(cpu: &mut Cpu, sel: u16, sys_ok: impl Fn(u8, bool) -> bool) -> Res<Option<u64>> {
    if sel & !3 == 0 || cpu.desc_addr(sel, 8).is_err() {
        return Ok(None);
    }
    let d = cpu.read_desc(sel)?;
    let s = segment_from_desc(sel, d);
    let conforming = s.s && s.type_ & 0xc == 0xc;
    if !s.s && !sys_ok(s.type_, cpu.state.long_mode()) {
        return Ok(None);
    }
    let cpl = cpu.state.cpl();
    if !conforming && (s.dpl < cpl || s.dpl < (sel & 3) as u8) {
        return Ok(None);
    }
    Ok(Some(d))
}

/// VERR / VERW.
pub fn verr_verw(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    if !cpu.state.protected() || cpu.state.v86() {
        return Err(ud());
    }
    let sel = read_op(cpu, i, 0)? as u16;
    let write = i.mnemonic() == Mnemonic::Verw;
    let ok = match visible_desc(cpu, sel, |_, _| false)? {
        Some(d) => {
            let s = segment_from_desc(sel, d);
            let code = s.type_ & 8 != 0;
            if write {
                !code && s.type_ & 2 != 0
            } else {
                !code || s.type_ & 2 != 0
            }
        }
        None => false,
    };
    cpu.state.flags.set_flag(ZF, ok);
    Ok(())
}

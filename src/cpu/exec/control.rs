//! Control transfer: JMP/Jcc/CALL/RET near, LOOP/LOOPE/LOOPNE/JCXZ, far JMP/CALL/RET (real,
//! protected and long mode, same-privilege call gates), INT n/INT3/INTO/INT1, IRET/IRETD/IRETQ.
//! Branch targets are decoded by iced-x86 as absolute RIPs (blocks are keyed by RIP).

use iced_x86::{Code, Instruction, Mnemonic, OpKind};

use super::alu::cc;
use super::stack::write_flags;
use super::{ea, mem_seg, op_size, read_op};
use crate::accel::Segment;
use crate::cpu::descriptor::segment_from_desc;
use crate::cpu::exception::Kind;
use crate::cpu::fault::{gp, np, ss, vec, Res};
use crate::cpu::flags::{IOPL, NT, VM};
use crate::cpu::mmu::seg::canonical;
use crate::cpu::state::sreg;
use crate::cpu::Cpu;

pub(crate) fn set_target(cpu: &mut Cpu, t: u64) -> Res<()> {
    if cpu.state.mode64() {
        if !canonical(t) {
            return Err(gp(0));
        }
    } else if t > u64::from(cpu.state.seg[sreg::CS].limit) {
        return Err(gp(0));
    }
    cpu.next_rip = t;
    Ok(())
}

/// JMP near (relative or indirect) and JMP far.
pub fn jmp(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    match i.op0_kind() {
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
            set_target(cpu, i.near_branch_target())
        }
        OpKind::FarBranch16 | OpKind::FarBranch32 => {
            let off = if i.op0_kind() == OpKind::FarBranch16 {
                u64::from(i.far_branch16())
            } else {
                u64::from(i.far_branch32())
            };
            far_jump(cpu, i.far_branch_selector(), off, false, 0)
        }
        _ if i.is_jmp_far_indirect() => {
            let (sel, off) = read_far_ptr(cpu, i)?;
            far_jump(cpu, sel, off, false, 0)
        }
        _ => {
            let t = read_op(cpu, i, 0)?;
            set_target(cpu, t)
        }
    }
}

/// Jcc.
pub fn jcc(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    if cpu.state.flags.cond(cc(i)) {
        set_target(cpu, i.near_branch_target())
    } else {
        Ok(())
    }
}

/// The near operand size of CALL/RET from the instruction's stack effect.
fn near_size(i: &Instruction) -> usize {
    match i.code() {
        Code::Retnw | Code::Retnw_imm16 | Code::Call_rel16 | Code::Call_rm16 => 2,
        Code::Retnd | Code::Retnd_imm16 | Code::Call_rel32_32 | Code::Call_rm32 => 4,
        _ => 8,
    }
}

/// CALL near and far.
pub fn call(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    match i.op0_kind() {
        OpKind::FarBranch16 | OpKind::FarBranch32 => {
            let (off, size) = if i.op0_kind() == OpKind::FarBranch16 {
                (u64::from(i.far_branch16()), 2)
            } else {
                (u64::from(i.far_branch32()), 4)
            };
            far_jump(cpu, i.far_branch_selector(), off, true, size)
        }
        _ if i.is_call_far_indirect() => {
            let size = i.memory_size().size() - 2;
            let (sel, off) = read_far_ptr(cpu, i)?;
            far_jump(cpu, sel, off, true, size)
        }
        _ => {
            let size = near_size(i);
            let t = if i.op0_kind() == OpKind::Memory || i.op0_kind() == OpKind::Register {
                read_op(cpu, i, 0)?
            } else {
                i.near_branch_target()
            };
            let ret = cpu.next_rip;
            let old_sp = cpu.state.gpr[4];
            cpu.push(ret, size)?;
            if let Err(f) = set_target(cpu, t) {
                cpu.state.gpr[4] = old_sp;
                return Err(f);
            }
            Ok(())
        }
    }
}

/// RET near (with optional imm16).
pub fn ret(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let size = near_size(i);
    let t = cpu.peek(0, size)?;
    set_target(cpu, t)?;
    let extra = if i.op_count() > 0 {
        u64::from(i.immediate16())
    } else {
        0
    };
    let sp = cpu.state.gpr[4].wrapping_add(size as u64 + extra);
    cpu.set_sp(sp);
    Ok(())
}

/// LOOP, LOOPE, LOOPNE, JCXZ/JECXZ/JRCXZ.
pub fn loop_family(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let asz = match i.code() {
        Code::Loop_rel8_16_CX
        | Code::Loop_rel8_32_CX
        | Code::Loope_rel8_16_CX
        | Code::Loope_rel8_32_CX
        | Code::Loopne_rel8_16_CX
        | Code::Loopne_rel8_32_CX
        | Code::Jcxz_rel8_16
        | Code::Jcxz_rel8_32 => 2,
        Code::Loop_rel8_16_ECX
        | Code::Loop_rel8_32_ECX
        | Code::Loop_rel8_64_ECX
        | Code::Loope_rel8_16_ECX
        | Code::Loope_rel8_32_ECX
        | Code::Loope_rel8_64_ECX
        | Code::Loopne_rel8_16_ECX
        | Code::Loopne_rel8_32_ECX
        | Code::Loopne_rel8_64_ECX
        | Code::Jecxz_rel8_16
        | Code::Jecxz_rel8_32
        | Code::Jecxz_rel8_64 => 4,
        _ => 8,
    };
    let m = super::size_mask(asz);
    let c = cpu.state.gpr[1] & m;
    let take = match i.mnemonic() {
        Mnemonic::Jcxz | Mnemonic::Jecxz | Mnemonic::Jrcxz => c == 0,
        mn => {
            let n = c.wrapping_sub(1) & m;
            let ok = match mn {
                Mnemonic::Loope => cpu.state.flags.zf(),
                Mnemonic::Loopne => !cpu.state.flags.zf(),
                _ => true,
            };
            let t = n != 0 && ok;
            if t {
                set_target(cpu, i.near_branch_target())?;
            }
            cpu.set_gpr_sized(1, asz, n);
            return Ok(());
        }
    };
    if take {
        set_target(cpu, i.near_branch_target())?;
    }
    Ok(())
}

fn read_far_ptr(cpu: &mut Cpu, i: &Instruction) -> Res<(u16, u64)> {
    let size = i.memory_size().size() - 2;
    let a = ea(cpu, i);
    let seg = mem_seg(i);
    let off = cpu.read_seg(seg, a, size)?;
    let sel = cpu.read_seg(seg, a.wrapping_add(size as u64), 2)? as u16;
    Ok((sel, off))
}

/// A code segment cache for a far transfer to `sel` at privilege `cpl`.
fn check_code(cpu: &mut Cpu, sel: u16, d: u64) -> Res<Segment> {
    let s = segment_from_desc(sel, d);
    let cpl = cpu.state.cpl();
    let err = u32::from(sel & !3);
    if !s.s || s.type_ & 8 == 0 {
        return Err(gp(err));
    }
    let conforming = s.type_ & 4 != 0;
    if (conforming && s.dpl > cpl) || (!conforming && (s.dpl != cpl || (sel & 3) as u8 > cpl)) {
        return Err(gp(err));
    }
    if !s.present {
        return Err(np(err));
    }
    let mut s = s;
    s.selector = (sel & !3) | u16::from(cpl);
    s.type_ |= 1;
    Ok(s)
}

/// Far JMP or CALL (`push_size` != 0 for CALL) to `sel:off`.
fn far_jump(cpu: &mut Cpu, sel: u16, off: u64, is_call: bool, push_size: usize) -> Res<()> {
    let old_cs = u64::from(cpu.state.seg[sreg::CS].selector);
    let ret = cpu.next_rip;
    if !cpu.state.protected() || cpu.state.v86() {
        if is_call {
            let old_sp = cpu.state.gpr[4];
            cpu.push(old_cs, push_size)?;
            if let Err(f) = cpu.push(ret, push_size) {
                cpu.state.gpr[4] = old_sp;
                return Err(f);
            }
        }
        let c = &mut cpu.state.seg[sreg::CS];
        c.selector = sel;
        c.base = u64::from(sel) << 4;
        cpu.next_rip = off;
        cpu.stop_block = true;
        return Ok(());
    }
    if sel & !3 == 0 {
        return Err(gp(0));
    }
    let d = cpu.read_desc(sel)?;
    let (cs, target, size) = if (d >> 44) & 1 == 1 {
        (check_code(cpu, sel, d)?, off, push_size)
    } else {
        // A call gate (same privilege only).
        let typ = (d >> 40) & 0xf;
        let dpl = ((d >> 45) & 3) as u8;
        let cpl = cpu.state.cpl();
        let err = u32::from(sel & !3);
        if typ != 0xc && typ != 0x4 {
            return Err(gp(err));
        }
        if dpl < cpl || dpl < (sel & 3) as u8 {
            return Err(gp(err));
        }
        if (d >> 47) & 1 == 0 {
            return Err(np(err));
        }
        let tsel = ((d >> 16) & 0xffff) as u16;
        let mut toff = (d & 0xffff) | ((d >> 48) & 0xffff) << 16;
        let long = cpu.state.long_mode();
        if long {
            toff |= (cpu.read_desc_high(sel)? & 0xffff_ffff) << 32;
        } else if typ == 0x4 {
            toff &= 0xffff;
        }
        if tsel & !3 == 0 {
            return Err(gp(0));
        }
        let td = cpu.read_desc(tsel)?;
        let ts = segment_from_desc(tsel, td);
        let size = if long {
            8
        } else if typ == 0xc {
            4
        } else {
            2
        };
        if ts.s && ts.type_ & 0xc == 0x8 && ts.dpl < cpl {
            if !is_call {
                return Err(gp(u32::from(tsel & !3)));
            }
            if !ts.present {
                return Err(np(u32::from(tsel & !3)));
            }
            let params = if long { 0 } else { (d >> 32) & 0x1f };
            return call_gate_inner(cpu, ts, toff, size, params, old_cs, ret);
        }
        let cs = check_code(cpu, tsel, td)?;
        (cs, toff, size)
    };
    if is_call {
        let old_sp = cpu.state.gpr[4];
        cpu.push(old_cs, size)?;
        if let Err(f) = cpu.push(ret, size) {
            cpu.state.gpr[4] = old_sp;
            return Err(f);
        }
    }
    let in64 = cpu.state.long_mode() && cs.l;
    let target = if in64 { target } else { target & 0xffff_ffff };
    if !in64 && target > u64::from(cs.limit) {
        return Err(gp(0));
    }
    cpu.state.seg[sreg::CS] = cs;
    cpu.next_rip = target;
    cpu.stop_block = true;
    Ok(())
}

/// CALL through a call gate to a more privileged non-conforming code segment: switch to the
/// stack the TSS gives for the new CPL, copy `params` stack parameters (legacy gates), push the
/// caller's SS:ESP and CS:EIP there.
fn call_gate_inner(
    cpu: &mut Cpu,
    mut cs: Segment,
    target: u64,
    size: usize,
    params: u64,
    old_cs: u64,
    ret: u64,
) -> Res<()> {
    let new_cpl = cs.dpl;
    let long = cpu.state.long_mode();
    let old_ss = cpu.state.seg[sreg::SS];
    let old_sp = cpu.state.gpr[4];
    let (new_ss, mut sp) = if long {
        let rsp = cpu.tss_read(4 + 8 * u64::from(new_cpl), 8)?;
        let mut n = crate::cpu::descriptor::null_segment(u16::from(new_cpl));
        n.dpl = new_cpl;
        (n, rsp)
    } else {
        let (esp, ss_sel) = if cpu.state.tr.type_ & 8 != 0 {
            let o = 4 + 8 * u64::from(new_cpl);
            (cpu.tss_read(o, 4)?, cpu.tss_read(o + 4, 2)? as u16)
        } else {
            let o = 2 + 4 * u64::from(new_cpl);
            (cpu.tss_read(o, 2)?, cpu.tss_read(o + 2, 2)? as u16)
        };
        let err = u32::from(ss_sel & !3);
        if ss_sel & !3 == 0 {
            return Err(crate::cpu::fault::ts(err));
        }
        let d = cpu.read_desc(ss_sel)?;
        let s = segment_from_desc(ss_sel, d);
        if (ss_sel & 3) as u8 != new_cpl || s.dpl != new_cpl || !s.s || s.type_ & 0xa != 2 {
            return Err(crate::cpu::fault::ts(err));
        }
        if !s.present {
            return Err(ss(err));
        }
        (s, esp)
    };
    let mut frame = vec![u64::from(old_ss.selector), old_sp];
    for k in (0..params).rev() {
        let off = old_sp.wrapping_add(k * size as u64);
        let off = if old_ss.db {
            off & 0xffff_ffff
        } else {
            off & 0xffff
        };
        frame.push(cpu.read_seg(sreg::SS, off, size)?);
    }
    frame.push(old_cs);
    frame.push(ret);
    let mask: u64 = if long {
        u64::MAX
    } else if new_ss.db {
        0xffff_ffff
    } else {
        0xffff
    };
    for v in frame {
        sp = sp.wrapping_sub(size as u64) & mask;
        let lin = if long {
            sp
        } else {
            new_ss.base.wrapping_add(sp)
        };
        cpu.write_sys(lin, size, v)?;
    }
    cs.selector = (cs.selector & !3) | u16::from(new_cpl);
    cs.type_ |= 1;
    let in64 = long && cs.l;
    cpu.state.seg[sreg::CS] = cs;
    cpu.state.seg[sreg::SS] = new_ss;
    cpu.state.gpr[4] = if long || new_ss.db {
        sp
    } else {
        (cpu.state.gpr[4] & !0xffff) | sp
    };
    cpu.next_rip = if in64 { target } else { target & 0xffff_ffff };
    cpu.stop_block = true;
    Ok(())
}

/// RETF (with optional imm16).
pub fn retf(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let size = match i.code() {
        Code::Retfw | Code::Retfw_imm16 => 2,
        Code::Retfd | Code::Retfd_imm16 => 4,
        _ => 8,
    };
    let extra = if i.op_count() > 0 {
        u64::from(i.immediate16())
    } else {
        0
    };
    let off = cpu.peek(0, size)?;
    let sel = cpu.peek(size as u64, size)? as u16;
    if !cpu.state.protected() || cpu.state.v86() {
        let c = &mut cpu.state.seg[sreg::CS];
        c.selector = sel;
        c.base = u64::from(sel) << 4;
        cpu.next_rip = off & super::size_mask(size);
        let sp = cpu.state.gpr[4].wrapping_add(2 * size as u64 + extra);
        cpu.set_sp(sp);
        cpu.stop_block = true;
        return Ok(());
    }
    let rpl = (sel & 3) as u8;
    let cpl = cpu.state.cpl();
    let cs = return_code_segment(cpu, sel, cpl)?;
    if rpl > cpl {
        let base = 2 * size as u64 + extra;
        let new_sp = cpu.peek(base, size)?;
        let ss_sel = cpu.peek(base + size as u64, size)? as u16;
        let new_ss = outer_ss(cpu, ss_sel, rpl)?;
        cpu.state.seg[sreg::CS] = cs;
        cpu.state.seg[sreg::SS] = new_ss;
        cpu.set_sp(new_sp.wrapping_add(extra));
        null_outer_data(cpu, rpl);
    } else {
        cpu.state.seg[sreg::CS] = cs;
        let sp = cpu.state.gpr[4].wrapping_add(2 * size as u64 + extra);
        cpu.set_sp(sp);
    }
    cpu.next_rip = off;
    cpu.stop_block = true;
    Ok(())
}

/// Check and build the SS loaded when returning to outer privilege `rpl`.
fn outer_ss(cpu: &mut Cpu, ss_sel: u16, rpl: u8) -> Res<Segment> {
    if ss_sel & !3 == 0 {
        if cpu.state.long_mode() && rpl < 3 {
            let mut n = crate::cpu::descriptor::null_segment(ss_sel);
            n.dpl = rpl;
            return Ok(n);
        }
        return Err(gp(0));
    }
    let err = u32::from(ss_sel & !3);
    let d = cpu.read_desc(ss_sel)?;
    let mut s = segment_from_desc(ss_sel, d);
    if (ss_sel & 3) as u8 != rpl || s.dpl != rpl || !s.s || s.type_ & 0xa != 2 {
        return Err(gp(err));
    }
    if !s.present {
        return Err(ss(err));
    }
    s.type_ |= 1;
    Ok(s)
}

/// After a return to outer privilege, data segments the new CPL may not use become null.
fn null_outer_data(cpu: &mut Cpu, cpl: u8) {
    for seg in [sreg::ES, sreg::DS, sreg::FS, sreg::GS] {
        let s = &cpu.state.seg[seg];
        let conforming_code = s.type_ & 0xc == 0xc;
        if !s.unusable && !conforming_code && s.dpl < cpl {
            let base = s.base;
            cpu.state.seg[seg] = crate::cpu::descriptor::null_segment(0);
            if cpu.state.mode64() && seg >= sreg::FS {
                cpu.state.seg[seg].base = base;
            }
        }
    }
}

/// INT n.
pub fn int(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    if cpu.state.v86() && cpu.state.iopl() < 3 {
        return Err(gp(0));
    }
    soft_int(cpu, i.immediate8(), Kind::Software)
}

/// INT3.
pub fn int3(cpu: &mut Cpu, _i: &Instruction) -> Res<()> {
    soft_int(cpu, vec::BP, Kind::Software)
}

/// INT1 (ICEBP): a debug trap delivered like a hardware event.
pub fn int1(cpu: &mut Cpu, _i: &Instruction) -> Res<()> {
    soft_int(cpu, vec::DB, Kind::External)
}

/// INTO.
pub fn into(cpu: &mut Cpu, _i: &Instruction) -> Res<()> {
    if cpu.state.flags.of() {
        soft_int(cpu, vec::OF, Kind::Software)
    } else {
        Ok(())
    }
}

fn soft_int(cpu: &mut Cpu, v: u8, kind: Kind) -> Res<()> {
    let ret = cpu.next_rip;
    cpu.deliver(v, None, kind, ret)?;
    cpu.next_rip = cpu.state.rip;
    Ok(())
}

/// IRET / IRETD / IRETQ.
pub fn iret(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let size = match i.code() {
        Code::Iretw => 2,
        Code::Iretd => 4,
        _ => 8,
    };
    cpu.stop_block = true;
    cpu.nmi_blocked = false;
    if !cpu.state.protected() {
        let ip = cpu.peek(0, size)?;
        let cs = cpu.peek(size as u64, size)? as u16;
        let fl = cpu.peek(2 * size as u64, size)?;
        let sp = cpu.state.gpr[4].wrapping_add(3 * size as u64);
        cpu.set_sp(sp);
        let c = &mut cpu.state.seg[sreg::CS];
        c.selector = cs;
        c.base = u64::from(cs) << 4;
        cpu.next_rip = ip & super::size_mask(size);
        write_flags(cpu, fl, size, 0);
        return Ok(());
    }
    if cpu.state.v86() || cpu.state.flags.sys(NT) {
        // Virtual-8086 IRET and task returns are not supported.
        return Err(gp(0));
    }
    let ip = cpu.peek(0, size)?;
    let sel = cpu.peek(size as u64, size)? as u16;
    let fl = cpu.peek(2 * size as u64, size)?;
    let cpl = cpu.state.cpl();
    if fl & VM != 0 && cpl == 0 && !cpu.state.long_mode() {
        return Err(gp(0));
    }
    let rpl = (sel & 3) as u8;
    let cs = return_code_segment(cpu, sel, cpl)?;
    let pops_stack = rpl > cpl || (cpu.state.mode64() && size == 8) || cpu.state.mode64();
    let (new_sp, new_ss) = if pops_stack {
        let sp = cpu.peek(3 * size as u64, size)?;
        let ss_sel = cpu.peek(4 * size as u64, size)? as u16;
        (Some(sp), Some(outer_ss(cpu, ss_sel, rpl)?))
    } else {
        (None, None)
    };
    let to64 = cpu.state.long_mode() && cs.l;
    let target = if to64 { ip } else { ip & 0xffff_ffff };
    if to64 && !canonical(target) {
        return Err(gp(0));
    }
    let old_iopl_cpl = cpl;
    if !pops_stack {
        let sp = cpu.state.gpr[4].wrapping_add(3 * size as u64);
        cpu.set_sp(sp);
    }
    // Flags are written with the old CPL's privileges.
    write_flags(cpu, fl, size, 0);
    let _ = (IOPL, old_iopl_cpl);
    cpu.state.seg[sreg::CS] = cs;
    if let (Some(sp), Some(ss_seg)) = (new_sp, new_ss) {
        cpu.state.seg[sreg::SS] = ss_seg;
        // The new stack size applies to the popped pointer.
        cpu.state.gpr[4] = if cpu.state.mode64() || ss_seg.db || ss_seg.unusable {
            sp
        } else {
            (cpu.state.gpr[4] & !0xffff) | (sp & 0xffff)
        };
    }
    if rpl > cpl {
        null_outer_data(cpu, rpl);
    }
    cpu.next_rip = target;
    let _ = op_size;
    Ok(())
}

/// The code segment a far return (RETF, IRET) goes back to, checked as the SDM's return rules
/// say: not null, RPL not above the current privilege, a present code segment whose DPL matches
/// (non-conforming) or does not exceed (conforming) the RPL. Marked accessed.
fn return_code_segment(cpu: &mut Cpu, sel: u16, cpl: u8) -> Res<Segment> {
    let rpl = (sel & 3) as u8;
    let err = u32::from(sel & !3);
    if sel & !3 == 0 || rpl < cpl {
        return Err(gp(err));
    }
    let d = cpu.read_desc(sel)?;
    let mut cs = segment_from_desc(sel, d);
    if !cs.s || cs.type_ & 8 == 0 {
        return Err(gp(err));
    }
    if (cs.type_ & 4 == 0 && cs.dpl != rpl) || (cs.type_ & 4 != 0 && cs.dpl > rpl) {
        return Err(gp(err));
    }
    if !cs.present {
        return Err(np(err));
    }
    cs.type_ |= 1;
    Ok(cs)
}

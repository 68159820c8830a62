//! Integer ALU and data movement: ADD/ADC/SUB/SBB/AND/OR/XOR/CMP/TEST, INC/DEC/NEG/NOT,
//! MOV/MOVZX/MOVSX/MOVSXD/LEA/XCHG/CMPXCHG/CMPXCHG8B/XADD/BSWAP, CBW/CWDE/CDQE/CWD/CDQ/CQO,
//! CMOVcc/SETcc. Arithmetic flags go through the lazy-flags record.

use iced_x86::{Instruction, OpKind, Register};

use super::{ea, mem_seg, op_size, read_op, sext, size_mask, write_op};
use crate::cpu::fault::Res;
use crate::cpu::flags::{FlagOp, ZF};
use crate::cpu::Cpu;

pub(crate) const ADD: u8 = 0;
pub(crate) const ADC: u8 = 1;
pub(crate) const SUB: u8 = 2;
pub(crate) const SBB: u8 = 3;
pub(crate) const AND: u8 = 4;
pub(crate) const OR: u8 = 5;
pub(crate) const XOR: u8 = 6;
pub(crate) const CMP: u8 = 7;
pub(crate) const TEST: u8 = 8;

#[inline(always)]
fn compute<const OP: u8>(cpu: &Cpu, a: u64, b: u64) -> (u64, FlagOp) {
    compute_cf::<OP>(cpu.state.flags.cf(), a, b)
}

/// `compute` with the carry flag given (pure, for locked read-modify-writes).
#[inline(always)]
pub(crate) fn compute_cf<const OP: u8>(cf: bool, a: u64, b: u64) -> (u64, FlagOp) {
    match OP {
        ADD => (a.wrapping_add(b), FlagOp::Add),
        ADC => (a.wrapping_add(b).wrapping_add(u64::from(cf)), FlagOp::Add),
        SUB | CMP => (a.wrapping_sub(b), FlagOp::Sub),
        SBB => (a.wrapping_sub(b).wrapping_sub(u64::from(cf)), FlagOp::Sub),
        AND | TEST => (a & b, FlagOp::Logic),
        OR => (a | b, FlagOp::Logic),
        _ => (a ^ b, FlagOp::Logic),
    }
}

#[inline(always)]
fn arith<const OP: u8>(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let size = op_size(i, 0);
    let m = size_mask(size);
    if OP != CMP && OP != TEST && i.has_lock_prefix() && i.op0_kind() == OpKind::Memory {
        let b = read_op(cpu, i, 1)? & m;
        let cf = cpu.state.flags.cf();
        let a = locked_rmw(cpu, i, size, |a| compute_cf::<OP>(cf, a, b).0)?;
        let (r, op) = compute_cf::<OP>(cf, a, b);
        cpu.state.flags.set_lazy(op, size as u32 * 8, a, b, r & m);
        return Ok(());
    }
    let a = read_op(cpu, i, 0)?;
    let b = read_op(cpu, i, 1)? & m;
    let (r, op) = compute::<OP>(cpu, a, b);
    if OP != CMP && OP != TEST {
        write_op(cpu, i, 0, r & m)?;
    }
    cpu.state.flags.set_lazy(op, size as u32 * 8, a, b, r & m);
    Ok(())
}

/// The register-destination form (source a register or an immediate), chosen at decode time.
#[inline(always)]
fn arith_reg<const OP: u8>(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let r0 = i.op0_register();
    let size = r0.size();
    let m = size_mask(size);
    let a = cpu.reg(r0);
    let b = if i.op1_kind() == OpKind::Register {
        cpu.reg(i.op1_register())
    } else {
        i.immediate(1)
    } & m;
    let (r, op) = compute::<OP>(cpu, a, b);
    if OP != CMP && OP != TEST {
        cpu.set_reg(r0, r & m);
    }
    cpu.state.flags.set_lazy(op, size as u32 * 8, a, b, r & m);
    Ok(())
}

/// The handler for an ALU mnemonic: the register form when both operands allow it.
pub fn arith_handler(
    m: iced_x86::Mnemonic,
    i: &Instruction,
) -> Option<crate::cpu::decode::Handler> {
    use iced_x86::Mnemonic as M;
    let reg_form = is_gpr(i, 0)
        && (is_gpr(i, 1) || !matches!(i.op1_kind(), OpKind::Register | OpKind::Memory));
    let h: crate::cpu::decode::Handler = match (m, reg_form) {
        (M::Add, true) => arith_reg::<ADD>,
        (M::Adc, true) => arith_reg::<ADC>,
        (M::Sub, true) => arith_reg::<SUB>,
        (M::Sbb, true) => arith_reg::<SBB>,
        (M::And, true) => arith_reg::<AND>,
        (M::Or, true) => arith_reg::<OR>,
        (M::Xor, true) => arith_reg::<XOR>,
        (M::Cmp, true) => arith_reg::<CMP>,
        (M::Test, true) => arith_reg::<TEST>,
        (M::Add, false) => add,
        (M::Adc, false) => adc,
        (M::Sub, false) => sub,
        (M::Sbb, false) => sbb,
        (M::And, false) => and,
        (M::Or, false) => or,
        (M::Xor, false) => xor,
        (M::Cmp, false) => cmp,
        (M::Test, false) => test,
        _ => return None,
    };
    Some(h)
}

/// ADD.
pub fn add(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    arith::<ADD>(cpu, i)
}
/// ADC.
pub fn adc(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    arith::<ADC>(cpu, i)
}
/// SUB.
pub fn sub(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    arith::<SUB>(cpu, i)
}
/// SBB.
pub fn sbb(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    arith::<SBB>(cpu, i)
}
/// AND.
pub fn and(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    arith::<AND>(cpu, i)
}
/// OR.
pub fn or(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    arith::<OR>(cpu, i)
}
/// XOR.
pub fn xor(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    arith::<XOR>(cpu, i)
}
/// CMP.
pub fn cmp(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    arith::<CMP>(cpu, i)
}
/// TEST.
pub fn test(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    arith::<TEST>(cpu, i)
}

/// INC.
pub fn inc(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let size = op_size(i, 0);
    let a = unary(cpu, i, size, |a| a.wrapping_add(1))?;
    let r = a.wrapping_add(1) & size_mask(size);
    cpu.state
        .flags
        .set_lazy(FlagOp::Inc, size as u32 * 8, a, 1, r);
    Ok(())
}

/// DEC.
pub fn dec(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let size = op_size(i, 0);
    let a = unary(cpu, i, size, |a| a.wrapping_sub(1))?;
    let r = a.wrapping_sub(1) & size_mask(size);
    cpu.state
        .flags
        .set_lazy(FlagOp::Dec, size as u32 * 8, a, 1, r);
    Ok(())
}

/// NEG.
pub fn neg(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let size = op_size(i, 0);
    let a = unary(cpu, i, size, |a| 0u64.wrapping_sub(a))?;
    let r = 0u64.wrapping_sub(a) & size_mask(size);
    cpu.state
        .flags
        .set_lazy(FlagOp::Sub, size as u32 * 8, 0, a, r);
    Ok(())
}

/// NOT.
pub fn not(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    unary(cpu, i, op_size(i, 0), |a| !a).map(|_| ())
}

/// Replace operand 0 with `f(old)` (atomically when it is memory under LOCK); returns old.
#[inline(always)]
fn unary(cpu: &mut Cpu, i: &Instruction, size: usize, f: impl Fn(u64) -> u64) -> Res<u64> {
    if i.has_lock_prefix() && i.op0_kind() == OpKind::Memory {
        return locked_rmw(cpu, i, size, f);
    }
    let a = read_op(cpu, i, 0)?;
    write_op(cpu, i, 0, f(a) & size_mask(size))?;
    Ok(a)
}

/// The memory operand's read-modify-write as one atomic access (LOCK, XCHG); returns old.
fn locked_rmw(cpu: &mut Cpu, i: &Instruction, size: usize, f: impl Fn(u64) -> u64) -> Res<u64> {
    let a = ea(cpu, i);
    cpu.rmw_seg(mem_seg(i), a, size, f)
}

/// MOV between general registers, memory and immediates.
pub fn mov(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let v = read_op(cpu, i, 1)?;
    write_op(cpu, i, 0, v & size_mask(op_size(i, 0)))
}

/// MOVZX.
pub fn movzx(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let v = read_op(cpu, i, 1)?;
    write_op(cpu, i, 0, v)
}

/// MOVSX / MOVSXD.
pub fn movsx(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let v = sext(read_op(cpu, i, 1)?, op_size(i, 1));
    write_op(cpu, i, 0, v & size_mask(op_size(i, 0)))
}

/// LEA.
pub fn lea(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let a = ea(cpu, i);
    cpu.set_reg(i.op0_register(), a);
    Ok(())
}

/// XCHG.
pub fn xchg(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    // With memory, XCHG is locked whether or not it has the prefix.
    for (mem, reg) in [(0, 1), (1, 0)] {
        if i.op_kind(mem) == OpKind::Memory {
            let v = read_op(cpu, i, reg)?;
            let old = locked_rmw(cpu, i, op_size(i, 0), |_| v)?;
            return write_op(cpu, i, reg, old);
        }
    }
    let a = read_op(cpu, i, 0)?;
    let b = read_op(cpu, i, 1)?;
    if i.op0_kind() == OpKind::Memory {
        write_op(cpu, i, 0, b)?;
        write_op(cpu, i, 1, a)
    } else {
        write_op(cpu, i, 1, a)?;
        write_op(cpu, i, 0, b)
    }
}

/// CMPXCHG.
pub fn cmpxchg(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let size = op_size(i, 0);
    let m = size_mask(size);
    let acc = cpu.state.gpr[0] & m;
    if i.has_lock_prefix() && i.op0_kind() == OpKind::Memory {
        let src = read_op(cpu, i, 1)?;
        let dest = locked_rmw(cpu, i, size, |d| if d == acc { src } else { d })?;
        if acc != dest {
            cpu.set_gpr_sized(0, size, dest);
        }
        let r = acc.wrapping_sub(dest) & m;
        cpu.state
            .flags
            .set_lazy(FlagOp::Sub, size as u32 * 8, acc, dest, r);
        return Ok(());
    }
    let dest = read_op(cpu, i, 0)?;
    let src = read_op(cpu, i, 1)?;
    let r = acc.wrapping_sub(dest) & m;
    if acc == dest {
        write_op(cpu, i, 0, src)?;
    } else {
        write_op(cpu, i, 0, dest)?;
        cpu.set_gpr_sized(0, size, dest);
    }
    cpu.state
        .flags
        .set_lazy(FlagOp::Sub, size as u32 * 8, acc, dest, r);
    Ok(())
}

/// CMPXCHG8B (CMPXCHG16B is not advertised and raises #UD).
pub fn cmpxchg8b(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    if i.memory_size().size() != 8 {
        return Err(crate::cpu::fault::ud());
    }
    let a = ea(cpu, i);
    let seg = mem_seg(i);
    let cur = cpu.read_seg(seg, a, 8)?;
    let g = &cpu.state.gpr;
    let expect = (g[2] & 0xffff_ffff) << 32 | (g[0] & 0xffff_ffff);
    if cur == expect {
        let new = (g[1] & 0xffff_ffff) << 32 | (g[3] & 0xffff_ffff);
        cpu.write_seg(seg, a, 8, new)?;
        cpu.state.flags.set_flag(ZF, true);
    } else {
        cpu.write_seg(seg, a, 8, cur)?;
        cpu.state.gpr[0] = cur & 0xffff_ffff;
        cpu.state.gpr[2] = cur >> 32;
        cpu.state.flags.set_flag(ZF, false);
    }
    Ok(())
}

/// CMPXCHG16B: compare RDX:RAX with the 16-byte operand, store RCX:RBX or load it back. The
/// operand must be 16-byte aligned (#GP(0)), so both halves sit in one page and the first
/// write cannot succeed where the second would fault.
pub fn cmpxchg16b(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let a = ea(cpu, i);
    let seg = mem_seg(i);
    let lin = cpu.state.seg[seg].base.wrapping_add(a);
    if lin & 0xf != 0 {
        return Err(crate::cpu::fault::gp(0));
    }
    let lo = cpu.read_seg(seg, a, 8)?;
    let hi = cpu.read_seg(seg, a.wrapping_add(8), 8)?;
    let g = &cpu.state.gpr;
    if lo == g[0] && hi == g[2] {
        let (new_lo, new_hi) = (g[3], g[1]);
        cpu.write_seg(seg, a, 8, new_lo)?;
        cpu.write_seg(seg, a.wrapping_add(8), 8, new_hi)?;
        cpu.state.flags.set_flag(ZF, true);
    } else {
        // The processor writes the old value back (the locked cycle always writes).
        cpu.write_seg(seg, a, 8, lo)?;
        cpu.write_seg(seg, a.wrapping_add(8), 8, hi)?;
        cpu.state.gpr[0] = lo;
        cpu.state.gpr[2] = hi;
        cpu.state.flags.set_flag(ZF, false);
    }
    Ok(())
}

/// XADD.
pub fn xadd(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let size = op_size(i, 0);
    if i.has_lock_prefix() && i.op0_kind() == OpKind::Memory {
        let b = read_op(cpu, i, 1)?;
        let a = locked_rmw(cpu, i, size, |a| a.wrapping_add(b))?;
        write_op(cpu, i, 1, a)?;
        let r = a.wrapping_add(b) & size_mask(size);
        cpu.state
            .flags
            .set_lazy(FlagOp::Add, size as u32 * 8, a, b, r);
        return Ok(());
    }
    let a = read_op(cpu, i, 0)?;
    let b = read_op(cpu, i, 1)?;
    let r = a.wrapping_add(b) & size_mask(size);
    if i.op0_kind() == OpKind::Memory {
        write_op(cpu, i, 0, r)?;
        write_op(cpu, i, 1, a)?;
    } else {
        write_op(cpu, i, 1, a)?;
        write_op(cpu, i, 0, r)?;
    }
    cpu.state
        .flags
        .set_lazy(FlagOp::Add, size as u32 * 8, a, b, r);
    Ok(())
}

/// BSWAP.
pub fn bswap(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let r = i.op0_register();
    let v = cpu.reg(r);
    let out = match r.size() {
        8 => v.swap_bytes(),
        4 => u64::from((v as u32).swap_bytes()),
        _ => 0, // 16-bit BSWAP is undefined; real CPUs zero the register.
    };
    cpu.set_reg(r, out);
    Ok(())
}

/// CBW / CWDE / CDQE: sign-extend the low half of the accumulator.
pub fn cbw_family(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let size = i.op0_register().size().max(2);
    let size = match i.mnemonic() {
        iced_x86::Mnemonic::Cbw => 2,
        iced_x86::Mnemonic::Cwde => 4,
        iced_x86::Mnemonic::Cdqe => 8,
        _ => size,
    };
    let v = sext(cpu.state.gpr[0], size / 2);
    cpu.set_gpr_sized(0, size, v);
    Ok(())
}

/// CWD / CDQ / CQO: sign of the accumulator into the data register.
pub fn cwd_family(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let size = match i.mnemonic() {
        iced_x86::Mnemonic::Cwd => 2,
        iced_x86::Mnemonic::Cdq => 4,
        _ => 8,
    };
    let neg = (cpu.state.gpr[0] >> (size * 8 - 1)) & 1 != 0;
    cpu.set_gpr_sized(2, size, if neg { u64::MAX } else { 0 });
    Ok(())
}

/// The x86 condition number (0..15) of a Jcc/SETcc/CMOVcc.
#[inline]
pub fn cc(i: &Instruction) -> u8 {
    (i.condition_code() as u8).wrapping_sub(1)
}

/// CMOVcc (the 32-bit form zero-extends even when the condition is false).
pub fn cmovcc(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let src = read_op(cpu, i, 1)?;
    let v = if cpu.state.flags.cond(cc(i)) {
        src
    } else {
        cpu.reg(i.op0_register())
    };
    cpu.set_reg(i.op0_register(), v);
    Ok(())
}

/// SETcc.
pub fn setcc(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let v = u64::from(cpu.state.flags.cond(cc(i)));
    write_op(cpu, i, 0, v)
}

/// Register-to-register MOV fast path (both operands general registers).
pub fn mov_rr(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let v = cpu.reg(i.op1_register());
    cpu.set_reg(i.op0_register(), v);
    Ok(())
}

/// Is this a plain register operand of a general register?
pub fn is_gpr(i: &Instruction, n: u32) -> bool {
    i.op_kind(n) == OpKind::Register && {
        let r = i.op_register(n) as usize;
        (Register::AL as usize..=Register::R15 as usize).contains(&r)
    }
}

/// XLAT: AL = [seg:(E/R)BX + AL].
pub fn xlat(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let a = ea(cpu, i);
    let v = cpu.read_seg(mem_seg(i), a, 1)?;
    cpu.set_gpr_sized(0, 1, v);
    Ok(())
}

/// SALC (undocumented): AL = CF ? 0xFF : 0.
pub fn salc(cpu: &mut Cpu, _i: &Instruction) -> Res<()> {
    let v = if cpu.state.flags.cf() { 0xff } else { 0 };
    cpu.set_gpr_sized(0, 1, v);
    Ok(())
}

/// BOUND: #BR unless lower <= index <= upper (signed).
pub fn bound(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let size = op_size(i, 0);
    let idx = sext(cpu.reg(i.op0_register()), size) as i64;
    let a = ea(cpu, i);
    let seg = mem_seg(i);
    let lo = sext(cpu.read_seg(seg, a, size)?, size) as i64;
    let hi = sext(cpu.read_seg(seg, a.wrapping_add(size as u64), size)?, size) as i64;
    if idx < lo || idx > hi {
        return Err(crate::cpu::fault::exc(crate::cpu::fault::vec::BR));
    }
    Ok(())
}

/// ARPL: raise the destination selector's RPL to the source's, ZF says whether it changed.
pub fn arpl(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    if !cpu.state.protected() || cpu.state.v86() {
        return Err(crate::cpu::fault::ud());
    }
    let d = read_op(cpu, i, 0)?;
    let s = cpu.reg(i.op1_register());
    if d & 3 < s & 3 {
        write_op(cpu, i, 0, (d & !3) | (s & 3))?;
        cpu.state.flags.set_flag(ZF, true);
    } else {
        cpu.state.flags.set_flag(ZF, false);
    }
    Ok(())
}

/// MOV register, immediate fast path.
pub fn mov_ri(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    cpu.set_reg(i.op0_register(), i.immediate(1));
    Ok(())
}

/// INC/DEC on a register, fast path.
pub fn incdec_reg(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let r0 = i.op0_register();
    let size = r0.size();
    let a = cpu.reg(r0);
    let inc = i.mnemonic() == iced_x86::Mnemonic::Inc;
    let r = if inc {
        a.wrapping_add(1)
    } else {
        a.wrapping_sub(1)
    } & size_mask(size);
    cpu.set_reg(r0, r);
    let op = if inc { FlagOp::Inc } else { FlagOp::Dec };
    cpu.state.flags.set_lazy(op, size as u32 * 8, a, 1, r);
    Ok(())
}

//! SSE/SSE2 data movement: full-register moves (aligned and unaligned), scalar moves, MOVD/
//! MOVQ between XMM and general registers or memory, half-register moves, sign-mask
//! extraction, non-temporal stores (plain stores here: there is no cache to bypass), and
//! LDMXCSR/STMXCSR.

use iced_x86::{Instruction, OpKind};

use super::{check, is_xmm, mask, set_xmm, src128, src_scalar, write_m128, xmm};
use crate::cpu::exec::{ea, mem_seg, read_op, write_op};
use crate::cpu::fault::{gp, Res};
use crate::cpu::Cpu;

/// MXCSR bits LDMXCSR/FXRSTOR accept (the MXCSR_MASK FXSAVE should report): bits 16..31 are
/// reserved and #GP(0); DAZ (bit 6) is supported.
pub const MXCSR_MASK: u32 = 0xffff;

fn mov128(cpu: &mut Cpu, i: &Instruction, align: bool) -> Res<()> {
    check(cpu)?;
    if is_xmm(i, 0) {
        let v = src128(cpu, i, 1, align)?;
        set_xmm(cpu, i, 0, v);
        Ok(())
    } else {
        let v = xmm(cpu, i, 1);
        write_m128(cpu, i, v, align)
    }
}

/// MOVAPS/MOVAPD/MOVDQA/MOVNTPS/MOVNTPD/MOVNTDQ: 128-bit move, memory 16-byte aligned.
pub fn mov_aligned(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    mov128(cpu, i, true)
}

/// MOVUPS/MOVUPD/MOVDQU: 128-bit move, any alignment.
pub fn mov_unaligned(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    mov128(cpu, i, false)
}

fn mov_scalar(cpu: &mut Cpu, i: &Instruction, size: usize) -> Res<()> {
    check(cpu)?;
    let m = u128::from(mask(size));
    match (is_xmm(i, 0), is_xmm(i, 1)) {
        (true, true) => {
            let v = (xmm(cpu, i, 0) & !m) | (xmm(cpu, i, 1) & m);
            set_xmm(cpu, i, 0, v);
        }
        (true, false) => {
            // A load zeroes the rest of the register.
            let v = src_scalar(cpu, i, 1, size)?;
            set_xmm(cpu, i, 0, u128::from(v));
        }
        _ => {
            let v = xmm(cpu, i, 1) as u64 & mask(size);
            let a = ea(cpu, i);
            cpu.write_seg(mem_seg(i), a, size, v)?;
        }
    }
    Ok(())
}

/// MOVSS: low dword (register form merges, load zero-extends).
pub fn movss(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    mov_scalar(cpu, i, 4)
}

/// MOVSD (the SSE2 form): low qword.
pub fn movsd(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    mov_scalar(cpu, i, 8)
}

/// MOVD/MOVQ: XMM ← r/m32, r/m64 or xmm/m64 (zero-extended to 128 bits), or r/m ← XMM low bits.
pub fn movd_movq(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    check(cpu)?;
    let other = if is_xmm(i, 0) { 1 } else { 0 };
    let size = if is_xmm(i, other) {
        8
    } else {
        super::super::op_size(i, other)
    };
    if is_xmm(i, 0) {
        let v = src_scalar(cpu, i, 1, size)? & mask(size);
        set_xmm(cpu, i, 0, u128::from(v));
    } else {
        let v = xmm(cpu, i, 1) as u64 & mask(size);
        if i.op0_kind() == OpKind::Memory {
            let a = ea(cpu, i);
            cpu.write_seg(mem_seg(i), a, size, v)?;
        } else {
            write_op(cpu, i, 0, v)?;
        }
    }
    Ok(())
}

fn mov_half(cpu: &mut Cpu, i: &Instruction, high: bool) -> Res<()> {
    check(cpu)?;
    let sh = if high { 64 } else { 0 };
    if is_xmm(i, 0) {
        let v = src_scalar(cpu, i, 1, 8)?;
        let d = xmm(cpu, i, 0) & !(u128::from(u64::MAX) << sh);
        set_xmm(cpu, i, 0, d | (u128::from(v) << sh));
        Ok(())
    } else {
        let v = (xmm(cpu, i, 1) >> sh) as u64;
        let a = ea(cpu, i);
        cpu.write_seg(mem_seg(i), a, 8, v)
    }
}

/// MOVHPS/MOVHPD: the high qword from/to m64.
pub fn movhp(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    mov_half(cpu, i, true)
}

/// MOVLPS/MOVLPD: the low qword from/to m64.
pub fn movlp(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    mov_half(cpu, i, false)
}

/// MOVHLPS: low qword of the destination ← high qword of the source.
pub fn movhlps(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    check(cpu)?;
    let d = xmm(cpu, i, 0) & !u128::from(u64::MAX);
    set_xmm(cpu, i, 0, d | (xmm(cpu, i, 1) >> 64));
    Ok(())
}

/// MOVLHPS: high qword of the destination ← low qword of the source.
pub fn movlhps(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    check(cpu)?;
    let d = xmm(cpu, i, 0) & u128::from(u64::MAX);
    set_xmm(cpu, i, 0, d | (xmm(cpu, i, 1) << 64));
    Ok(())
}

fn sign_mask(v: u128, bits: u32) -> u64 {
    (0..128 / bits).fold(0u64, |m, k| {
        m | ((((v >> (bits * k + bits - 1)) & 1) as u64) << k)
    })
}

/// MOVMSKPS: the four dword sign bits into a general register.
pub fn movmskps(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    check(cpu)?;
    let m = sign_mask(xmm(cpu, i, 1), 32);
    write_op(cpu, i, 0, m)
}

/// MOVMSKPD: the two qword sign bits.
pub fn movmskpd(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    check(cpu)?;
    let m = sign_mask(xmm(cpu, i, 1), 64);
    write_op(cpu, i, 0, m)
}

/// PMOVMSKB: the sixteen byte sign bits.
pub fn pmovmskb(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    check(cpu)?;
    let m = sign_mask(xmm(cpu, i, 1), 8);
    write_op(cpu, i, 0, m)
}

/// MOVNTI: a general-register store (no SSE state involved).
pub fn movnti(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let v = read_op(cpu, i, 1)?;
    write_op(cpu, i, 0, v)
}

/// MASKMOVDQU: store the bytes of the first operand whose mask byte (second operand) has its
/// top bit set, at DS:rDI (segment overridable). All 16 bytes are checked first.
pub fn maskmovdqu(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    check(cpu)?;
    let data = xmm(cpu, i, 1);
    let m = xmm(cpu, i, 2);
    let off = match i.op0_kind() {
        OpKind::MemorySegRDI => cpu.state.gpr[7],
        OpKind::MemorySegEDI => cpu.state.gpr[7] & 0xffff_ffff,
        _ => cpu.state.gpr[7] & 0xffff,
    };
    let seg = super::super::seg_index(i.memory_segment());
    if m & 0x8080_8080_8080_8080_8080_8080_8080_8080 == 0 {
        return Ok(());
    }
    let lin = cpu.linear(seg, off, 16, true)?;
    let user = cpu.state.cpl() == 3;
    cpu.probe_write(lin, user)?;
    cpu.probe_write(super::lin_plus(cpu, lin, 15), user)?;
    for k in 0..16u32 {
        if (m >> (8 * k + 7)) & 1 != 0 {
            let b = (data >> (8 * k)) as u64 & 0xff;
            cpu.write_lin(super::lin_plus(cpu, lin, u64::from(k)), 1, b, user)?;
        }
    }
    Ok(())
}

/// LDMXCSR m32: #GP(0) on reserved bits.
pub fn ldmxcsr(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    check(cpu)?;
    let a = ea(cpu, i);
    let v = cpu.read_seg(mem_seg(i), a, 4)? as u32;
    if v & !MXCSR_MASK != 0 {
        return Err(gp(0));
    }
    cpu.state.fpu.mxcsr = v;
    Ok(())
}

/// STMXCSR m32.
pub fn stmxcsr(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    check(cpu)?;
    let a = ea(cpu, i);
    let v = u64::from(cpu.state.fpu.mxcsr);
    cpu.write_seg(mem_seg(i), a, 4, v)
}

//! SSE and SSE2 on the XMM registers: the operand plumbing every SSE family shares.
//!
//! Inputs enter through [`src128`] (an XMM register or an m128, 16-byte aligned for the legacy
//! forms that demand it, else #GP(0)), [`src_scalar`] (the low 32/64 bits of an XMM register or
//! an m32/m64) and [`xmm`]; results leave through [`set_xmm`] and [`write_m128`], which checks
//! both halves of a store before writing either, so a fault leaves memory as it was. Every
//! handler first calls [`check`]: #UD when CR0.EM is set or CR4.OSFXSR clear, #NM when CR0.TS
//! is set. The lane helpers (`map_*`, `lanes`) view a 128-bit value as bytes, words, dwords or
//! qwords, lane 0 in the low bits as in the register.
//!
//! The families: `mov` (data movement, MXCSR), `int` (SSE2 integer arithmetic), `shuf` (shifts,
//! shuffles, unpacks, packs), `fp` (IEEE arithmetic under MXCSR), `arith` (the FP
//! instructions), `cvt` (conversions).

pub mod arith;
pub mod cvt;
pub mod fp;
pub mod int;
pub mod mov;
pub mod shuf;

use iced_x86::{Instruction, OpKind, Register};

use super::{ea, mem_seg, read_op};
use crate::cpu::fault::{exc, gp, ud, vec, Res};
use crate::cpu::state::{cr0, cr4};
use crate::cpu::Cpu;

/// #XM, the SIMD floating-point exception vector.
pub const XM: u8 = 19;

/// SSE state usable? #UD (CR0.EM, no CR4.OSFXSR) before #NM (CR0.TS).
#[inline]
pub fn check(cpu: &Cpu) -> Res<()> {
    if cpu.state.cr0 & cr0::EM != 0 || cpu.state.cr4 & cr4::OSFXSR == 0 {
        return Err(ud());
    }
    if cpu.state.cr0 & cr0::TS != 0 {
        return Err(exc(vec::NM));
    }
    Ok(())
}

/// Is operand `n` an XMM register?
#[inline]
pub fn is_xmm(i: &Instruction, n: u32) -> bool {
    i.op_kind(n) == OpKind::Register && i.op_register(n).is_xmm()
}

/// XMM index of a register (iced numbers XMM0..XMM31 consecutively).
#[inline]
fn xmm_index(r: Register) -> usize {
    (r as usize).wrapping_sub(Register::XMM0 as usize) & 15
}

/// XMM register operand `n`.
#[inline]
pub fn xmm(cpu: &Cpu, i: &Instruction, n: u32) -> u128 {
    cpu.state.fpu.xmm[xmm_index(i.op_register(n))]
}

/// Write XMM register operand `n`.
#[inline]
pub fn set_xmm(cpu: &mut Cpu, i: &Instruction, n: u32, v: u128) {
    cpu.state.fpu.xmm[xmm_index(i.op_register(n))] = v;
}

/// Linear address of the 16-byte memory operand (limit checked on all 16 bytes), #GP(0) when
/// `align` and it is not 16-byte aligned.
fn lin128(cpu: &Cpu, i: &Instruction, write: bool, align: bool) -> Res<u64> {
    let off = ea(cpu, i);
    let lin = cpu.linear(mem_seg(i), off, 16, write)?;
    if align && lin & 15 != 0 {
        return Err(gp(0));
    }
    Ok(lin)
}

/// The linear address 8 bytes past `lin`, wrapped as the mode wraps linear addresses.
fn lin_plus(cpu: &Cpu, lin: u64, k: u64) -> u64 {
    let a = lin.wrapping_add(k);
    if cpu.state.long_mode() {
        a
    } else {
        a & 0xffff_ffff
    }
}

/// Read the m128 operand.
pub fn read_m128(cpu: &mut Cpu, i: &Instruction, align: bool) -> Res<u128> {
    let lin = lin128(cpu, i, false, align)?;
    let user = cpu.state.cpl() == 3;
    let lo = cpu.read_lin(lin, 8, user)?;
    let hi = cpu.read_lin(lin_plus(cpu, lin, 8), 8, user)?;
    Ok(u128::from(lo) | (u128::from(hi) << 64))
}

/// Write the m128 operand; both halves are checked before either is written.
pub fn write_m128(cpu: &mut Cpu, i: &Instruction, v: u128, align: bool) -> Res<()> {
    let lin = lin128(cpu, i, true, align)?;
    let user = cpu.state.cpl() == 3;
    let hi = lin_plus(cpu, lin, 8);
    cpu.probe_write(lin, user)?;
    cpu.probe_write(lin_plus(cpu, lin, 15), user)?;
    cpu.write_lin(lin, 8, v as u64, user)?;
    cpu.write_lin(hi, 8, (v >> 64) as u64, user)
}

/// Operand `n` as 128 bits: an XMM register or the m128 operand.
#[inline]
pub fn src128(cpu: &mut Cpu, i: &Instruction, n: u32, align: bool) -> Res<u128> {
    if i.op_kind(n) == OpKind::Register {
        Ok(xmm(cpu, i, n))
    } else {
        read_m128(cpu, i, align)
    }
}

/// Operand `n` as a scalar of `size` bytes: the low bits of an XMM register, a general
/// register, or the memory operand (no alignment rule), zero-extended.
#[inline]
pub fn src_scalar(cpu: &mut Cpu, i: &Instruction, n: u32, size: usize) -> Res<u64> {
    if is_xmm(i, n) {
        return Ok(xmm(cpu, i, n) as u64 & mask(size));
    }
    if i.op_kind(n) == OpKind::Memory {
        let a = ea(cpu, i);
        return cpu.read_seg(mem_seg(i), a, size);
    }
    read_op(cpu, i, n)
}

/// All-ones mask of `size` bytes (1..=8).
#[inline]
pub fn mask(size: usize) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (size * 8)) - 1
    }
}

/// Lane `k` of `bits`-wide lanes.
#[inline]
pub fn lane(v: u128, bits: u32, k: u32) -> u64 {
    let m = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    (v >> (bits * k)) as u64 & m
}

/// `v` with lane `k` of `bits`-wide lanes replaced by `x`.
#[inline]
pub fn with_lane(v: u128, bits: u32, k: u32, x: u64) -> u128 {
    let m: u128 = if bits == 64 {
        u128::from(u64::MAX)
    } else {
        (1u128 << bits) - 1
    };
    (v & !(m << (bits * k))) | ((u128::from(x) & m) << (bits * k))
}

/// Combine `a` and `b` lane by lane with `f` (lanes of `bits` bits, zero-extended into u64).
#[inline]
pub fn map2(a: u128, b: u128, bits: u32, f: impl Fn(u64, u64) -> u64) -> u128 {
    (0..128 / bits).fold(0u128, |r, k| {
        with_lane(r, bits, k, f(lane(a, bits, k), lane(b, bits, k)))
    })
}

/// Map `a` lane by lane with `f`.
#[inline]
pub fn map1(a: u128, bits: u32, f: impl Fn(u64) -> u64) -> u128 {
    (0..128 / bits).fold(0u128, |r, k| with_lane(r, bits, k, f(lane(a, bits, k))))
}

/// Sign-extend a `bits`-wide value to i64.
#[inline]
pub fn sx(v: u64, bits: u32) -> i64 {
    let sh = 64 - bits;
    ((v << sh) as i64) >> sh
}

#[cfg(test)]
mod fp_tests;
#[cfg(all(test, target_arch = "x86_64"))]
mod host_oracle;
#[cfg(test)]
mod tests;

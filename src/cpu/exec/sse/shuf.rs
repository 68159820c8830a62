//! SSE/SSE2 lane rearrangement: shifts by an immediate or an xmm/m128 count, whole-register
//! byte shifts, shuffles, unpacks (the integer PUNPCK* and the UNPCK*PS/PD forms, which are the
//! same operations), saturating packs, and word extract/insert.

use iced_x86::{Instruction, OpKind};

use super::{check, lane, map1, set_xmm, src128, sx, with_lane, xmm};
use crate::cpu::exec::{read_op, write_op};
use crate::cpu::fault::Res;
use crate::cpu::Cpu;

#[derive(Clone, Copy)]
enum Shift {
    Left,
    Right,
    Arith,
}

fn shift(cpu: &mut Cpu, i: &Instruction, bits: u32, kind: Shift) -> Res<()> {
    check(cpu)?;
    let count = if i.op1_kind() == OpKind::Register || i.op1_kind() == OpKind::Memory {
        src128(cpu, i, 1, true)? as u64
    } else {
        u64::from(i.immediate8())
    };
    let a = xmm(cpu, i, 0);
    let r = map1(a, bits, |x| {
        let big = count >= u64::from(bits);
        match kind {
            Shift::Left if big => 0,
            Shift::Right if big => 0,
            Shift::Left => x << count,
            Shift::Right => x >> count,
            Shift::Arith => (sx(x, bits) >> count.min(u64::from(bits) - 1)) as u64,
        }
    });
    set_xmm(cpu, i, 0, r);
    Ok(())
}

macro_rules! shifts {
    ($($(#[$doc:meta])* $name:ident, $bits:expr, $kind:expr;)*) => {$(
        $(#[$doc])*
        pub fn $name(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
            shift(cpu, i, $bits, $kind)
        }
    )*};
}

shifts! {
    /// PSLLW.
    psllw, 16, Shift::Left;
    /// PSLLD.
    pslld, 32, Shift::Left;
    /// PSLLQ.
    psllq, 64, Shift::Left;
    /// PSRLW.
    psrlw, 16, Shift::Right;
    /// PSRLD.
    psrld, 32, Shift::Right;
    /// PSRLQ.
    psrlq, 64, Shift::Right;
    /// PSRAW.
    psraw, 16, Shift::Arith;
    /// PSRAD.
    psrad, 32, Shift::Arith;
}

/// PSLLDQ: shift the register left by imm8 bytes (zero past 15).
pub fn pslldq(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    check(cpu)?;
    let n = u32::from(i.immediate8());
    let a = xmm(cpu, i, 0);
    set_xmm(cpu, i, 0, if n > 15 { 0 } else { a << (8 * n) });
    Ok(())
}

/// PSRLDQ: shift the register right by imm8 bytes.
pub fn psrldq(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    check(cpu)?;
    let n = u32::from(i.immediate8());
    let a = xmm(cpu, i, 0);
    set_xmm(cpu, i, 0, if n > 15 { 0 } else { a >> (8 * n) });
    Ok(())
}

/// Source (operand 1) and imm8 of the three-operand shuffles.
fn src_imm(cpu: &mut Cpu, i: &Instruction) -> Res<(u128, u32)> {
    check(cpu)?;
    let b = src128(cpu, i, 1, true)?;
    Ok((b, u32::from(i.immediate8())))
}

/// PSHUFD: dword k ← source dword imm[2k+1:2k].
pub fn pshufd(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let (b, imm) = src_imm(cpu, i)?;
    let r = (0..4).fold(0, |r, k| {
        with_lane(r, 32, k, lane(b, 32, (imm >> (2 * k)) & 3))
    });
    set_xmm(cpu, i, 0, r);
    Ok(())
}

fn pshufw_half(b: u128, imm: u32, base: u32) -> u128 {
    (0..4).fold(b, |r, k| {
        with_lane(r, 16, base + k, lane(b, 16, base + ((imm >> (2 * k)) & 3)))
    })
}

/// PSHUFLW: shuffle the low four words, copy the high qword.
pub fn pshuflw(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let (b, imm) = src_imm(cpu, i)?;
    set_xmm(cpu, i, 0, pshufw_half(b, imm, 0));
    Ok(())
}

/// PSHUFHW: shuffle the high four words, copy the low qword.
pub fn pshufhw(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let (b, imm) = src_imm(cpu, i)?;
    set_xmm(cpu, i, 0, pshufw_half(b, imm, 4));
    Ok(())
}

/// SHUFPS: two dwords chosen from the destination, two from the source.
pub fn shufps(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let (b, imm) = src_imm(cpu, i)?;
    let a = xmm(cpu, i, 0);
    let pick = |v: u128, k: u32| lane(v, 32, (imm >> (2 * k)) & 3);
    let r = with_lane(0, 32, 0, pick(a, 0));
    let r = with_lane(r, 32, 1, pick(a, 1));
    let r = with_lane(r, 32, 2, pick(b, 2));
    set_xmm(cpu, i, 0, with_lane(r, 32, 3, pick(b, 3)));
    Ok(())
}

/// SHUFPD: one qword from the destination, one from the source.
pub fn shufpd(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let (b, imm) = src_imm(cpu, i)?;
    let a = xmm(cpu, i, 0);
    let r = with_lane(0, 64, 0, lane(a, 64, imm & 1));
    set_xmm(cpu, i, 0, with_lane(r, 64, 1, lane(b, 64, (imm >> 1) & 1)));
    Ok(())
}

fn unpack(cpu: &mut Cpu, i: &Instruction, bits: u32, high: bool) -> Res<()> {
    check(cpu)?;
    let b = src128(cpu, i, 1, true)?;
    let a = xmm(cpu, i, 0);
    let n = 64 / bits;
    let base = if high { n } else { 0 };
    let r = (0..n).fold(0u128, |r, k| {
        let r = with_lane(r, bits, 2 * k, lane(a, bits, base + k));
        with_lane(r, bits, 2 * k + 1, lane(b, bits, base + k))
    });
    set_xmm(cpu, i, 0, r);
    Ok(())
}

macro_rules! unpacks {
    ($($(#[$doc:meta])* $name:ident, $bits:expr, $high:expr;)*) => {$(
        $(#[$doc])*
        pub fn $name(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
            unpack(cpu, i, $bits, $high)
        }
    )*};
}

unpacks! {
    /// PUNPCKLBW.
    punpcklbw, 8, false;
    /// PUNPCKHBW.
    punpckhbw, 8, true;
    /// PUNPCKLWD.
    punpcklwd, 16, false;
    /// PUNPCKHWD.
    punpckhwd, 16, true;
    /// PUNPCKLDQ and UNPCKLPS.
    punpckldq, 32, false;
    /// PUNPCKHDQ and UNPCKHPS.
    punpckhdq, 32, true;
    /// PUNPCKLQDQ and UNPCKLPD.
    punpcklqdq, 64, false;
    /// PUNPCKHQDQ and UNPCKHPD.
    punpckhqdq, 64, true;
}

fn pack(cpu: &mut Cpu, i: &Instruction, bits: u32, sat: impl Fn(i64) -> u64) -> Res<()> {
    check(cpu)?;
    let b = src128(cpu, i, 1, true)?;
    let a = xmm(cpu, i, 0);
    let half = bits / 2;
    let n = 128 / bits;
    let r = (0..n).fold(0u128, |r, k| {
        let r = with_lane(r, half, k, sat(sx(lane(a, bits, k), bits)));
        with_lane(r, half, n + k, sat(sx(lane(b, bits, k), bits)))
    });
    set_xmm(cpu, i, 0, r);
    Ok(())
}

/// PACKSSWB: signed words to signed bytes with saturation.
pub fn packsswb(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    pack(cpu, i, 16, |v| v.clamp(-128, 127) as u64)
}

/// PACKSSDW: signed dwords to signed words with saturation.
pub fn packssdw(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    pack(cpu, i, 32, |v| v.clamp(-32768, 32767) as u64)
}

/// PACKUSWB: signed words to unsigned bytes with saturation.
pub fn packuswb(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    pack(cpu, i, 16, |v| v.clamp(0, 255) as u64)
}

/// PEXTRW: word imm8&7 of the XMM source, zero-extended, to a general register (or m16).
pub fn pextrw(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    check(cpu)?;
    let w = lane(xmm(cpu, i, 1), 16, u32::from(i.immediate8()) & 7);
    write_op(cpu, i, 0, w)
}

/// PINSRW: word imm8&7 of the destination ← low word of r32/m16.
pub fn pinsrw(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    check(cpu)?;
    let v = read_op(cpu, i, 1)? & 0xffff;
    let a = xmm(cpu, i, 0);
    set_xmm(
        cpu,
        i,
        0,
        with_lane(a, 16, u32::from(i.immediate8()) & 7, v),
    );
    Ok(())
}

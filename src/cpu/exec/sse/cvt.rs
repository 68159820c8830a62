//! SSE/SSE2 conversions: integer ↔ single/double (scalar from/to general registers, packed
//! dwords), single ↔ double, with MXCSR rounding (or truncation for the CVTT* forms).
//!
//! An invalid float → integer conversion (NaN, or out of range after rounding) gives the
//! "integer indefinite" (only the sign bit set) and raises IE; an inexact one raises PE.
//! Float → float conversions handle NaNs by hand (quieted, payload kept from its top bits).

use iced_x86::Instruction;
use rustc_apfloat::ieee::{Double, Single};
use rustc_apfloat::{Float, FloatConvert, Round, Status};

use super::fp::{self, is_nan, is_snan, to_f, Ctx, Fmt, F32, F64};
use super::{check, is_xmm, lane, set_xmm, src128, src_scalar, with_lane, xmm};
use crate::cpu::exec::{op_size, read_op, sext, write_op};
use crate::cpu::fault::Res;
use crate::cpu::Cpu;

/// Float → signed integer of `width` bits (32 or 64).
fn to_int<T: Fmt>(ctx: &mut Ctx, v: u64, width: usize, trunc: bool) -> u64 {
    let indefinite = 1u64 << (width - 1);
    if is_nan::<T>(v) {
        ctx.invalid();
        return indefinite;
    }
    let v = ctx.input_daz::<T>(v);
    let round = if trunc {
        Round::TowardZero
    } else {
        ctx.round()
    };
    let mut exact = false;
    let r = to_f::<T>(v).to_i128_r(width, round, &mut exact);
    if r.status.contains(Status::INVALID_OP) {
        ctx.invalid();
        return indefinite;
    }
    if r.status.contains(Status::INEXACT) {
        ctx.inexact();
    }
    (r.value as u64) & super::mask(width / 8)
}

/// Signed integer → float.
fn from_int<T: Fmt>(ctx: &mut Ctx, v: i64) -> u64 {
    let round = ctx.round();
    let r = T::F::from_i128_r(i128::from(v), round);
    ctx.result::<T>(r)
}

/// Single → double (exact; NaNs by hand).
fn s2d(ctx: &mut Ctx, v: u64) -> u64 {
    if is_nan::<F32>(v) {
        if is_snan::<F32>(v) {
            ctx.invalid();
        }
        return ((v & F32::SIGN) << 32) | F64::EXP | F64::QUIET | ((v & F32::FRAC) << 29);
    }
    let v = ctx.input::<F32>(v);
    let mut loses = false;
    let r: rustc_apfloat::StatusAnd<Double> =
        FloatConvert::convert_r(to_f::<F32>(v), Round::NearestTiesToEven, &mut loses);
    ctx.result::<F64>(r)
}

/// Double → single (rounded by MXCSR; NaNs by hand).
pub(super) fn d2s(ctx: &mut Ctx, v: u64) -> u64 {
    if is_nan::<F64>(v) {
        if is_snan::<F64>(v) {
            ctx.invalid();
        }
        return ((v & F64::SIGN) >> 32) | F32::EXP | F32::QUIET | ((v & F64::FRAC) >> 29);
    }
    let v = ctx.input::<F64>(v);
    let mut loses = false;
    let round = ctx.round();
    let r: rustc_apfloat::StatusAnd<Single> =
        FloatConvert::convert_r(to_f::<F64>(v), round, &mut loses);
    let r = fp::fix_overflow::<F32>(r, || {
        FloatConvert::convert_r(to_f::<F64>(v).scalbn(-1), round, &mut loses)
    });
    let r = fp::fix_tiny::<F32>(r, || {
        FloatConvert::convert_r(to_f::<F64>(v).scalbn(1), round, &mut loses)
    });
    ctx.result::<F32>(r)
}

/// CVTSI2SS/CVTSI2SD: r/m32 or r/m64 → lane 0.
fn cvtsi2<T: Fmt>(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    check(cpu)?;
    let size = op_size(i, 1);
    let v = sext(read_op(cpu, i, 1)?, size) as i64;
    let mut ctx = Ctx::new(cpu);
    let r = from_int::<T>(&mut ctx, v);
    ctx.commit(cpu)?;
    let a = xmm(cpu, i, 0);
    set_xmm(cpu, i, 0, with_lane(a, T::BITS, 0, r));
    Ok(())
}

/// CVTSI2SS.
pub fn cvtsi2ss(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    cvtsi2::<F32>(cpu, i)
}

/// CVTSI2SD.
pub fn cvtsi2sd(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    cvtsi2::<F64>(cpu, i)
}

/// CVT(T)SS2SI/CVT(T)SD2SI: lane 0 (xmm/m32/m64) → r32/r64.
fn cvt2si<T: Fmt>(cpu: &mut Cpu, i: &Instruction, trunc: bool) -> Res<()> {
    check(cpu)?;
    let width = op_size(i, 0) * 8;
    let v = src_scalar(cpu, i, 1, T::BITS as usize / 8)?;
    let mut ctx = Ctx::new(cpu);
    let r = to_int::<T>(&mut ctx, v, width, trunc);
    ctx.commit(cpu)?;
    write_op(cpu, i, 0, r)
}

/// CVTSS2SI.
pub fn cvtss2si(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    cvt2si::<F32>(cpu, i, false)
}

/// CVTTSS2SI.
pub fn cvttss2si(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    cvt2si::<F32>(cpu, i, true)
}

/// CVTSD2SI.
pub fn cvtsd2si(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    cvt2si::<F64>(cpu, i, false)
}

/// CVTTSD2SI.
pub fn cvttsd2si(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    cvt2si::<F64>(cpu, i, true)
}

/// The low 64 bits of operand 1 (xmm or m64) or all 128 (xmm or aligned m128).
fn src(cpu: &mut Cpu, i: &Instruction, half: bool) -> Res<u128> {
    if half && !is_xmm(i, 1) {
        Ok(u128::from(src_scalar(cpu, i, 1, 8)?))
    } else {
        src128(cpu, i, 1, true)
    }
}

/// Convert `n` lanes of `from_bits` in `b` to lanes of `to_bits` (the rest of the result
/// zero), committing MXCSR before the write.
fn packed(
    cpu: &mut Cpu,
    i: &Instruction,
    half: bool,
    (from_bits, to_bits, n): (u32, u32, u32),
    f: impl Fn(&mut Ctx, u64) -> u64,
) -> Res<()> {
    check(cpu)?;
    let b = src(cpu, i, half)?;
    let mut ctx = Ctx::new(cpu);
    let r = (0..n).fold(0u128, |r, k| {
        with_lane(r, to_bits, k, f(&mut ctx, lane(b, from_bits, k)))
    });
    ctx.commit(cpu)?;
    set_xmm(cpu, i, 0, r);
    Ok(())
}

/// CVTSS2SD: lane 0 single → double (xmm/m32).
pub fn cvtss2sd(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    check(cpu)?;
    let v = src_scalar(cpu, i, 1, 4)?;
    let mut ctx = Ctx::new(cpu);
    let r = s2d(&mut ctx, v);
    ctx.commit(cpu)?;
    let a = xmm(cpu, i, 0);
    set_xmm(cpu, i, 0, with_lane(a, 64, 0, r));
    Ok(())
}

/// CVTSD2SS: lane 0 double → single (xmm/m64).
pub fn cvtsd2ss(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    check(cpu)?;
    let v = src_scalar(cpu, i, 1, 8)?;
    let mut ctx = Ctx::new(cpu);
    let r = d2s(&mut ctx, v);
    ctx.commit(cpu)?;
    let a = xmm(cpu, i, 0);
    set_xmm(cpu, i, 0, with_lane(a, 32, 0, r));
    Ok(())
}

/// CVTPS2PD: two singles (xmm/m64) → two doubles.
pub fn cvtps2pd(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    packed(cpu, i, true, (32, 64, 2), s2d)
}

/// CVTPD2PS: two doubles → two singles in the low qword, high qword zeroed.
pub fn cvtpd2ps(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    packed(cpu, i, false, (64, 32, 2), d2s)
}

/// CVTDQ2PS: four dwords → four singles.
pub fn cvtdq2ps(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    packed(cpu, i, false, (32, 32, 4), |c, v| {
        from_int::<F32>(c, i64::from(v as u32 as i32))
    })
}

/// CVTDQ2PD: two dwords (xmm/m64) → two doubles (exact).
pub fn cvtdq2pd(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    packed(cpu, i, true, (32, 64, 2), |c, v| {
        from_int::<F64>(c, i64::from(v as u32 as i32))
    })
}

/// CVTPS2DQ.
pub fn cvtps2dq(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    packed(cpu, i, false, (32, 32, 4), |c, v| {
        to_int::<F32>(c, v, 32, false)
    })
}

/// CVTTPS2DQ.
pub fn cvttps2dq(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    packed(cpu, i, false, (32, 32, 4), |c, v| {
        to_int::<F32>(c, v, 32, true)
    })
}

/// CVTPD2DQ: two doubles → two dwords, high qword zeroed.
pub fn cvtpd2dq(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    packed(cpu, i, false, (64, 32, 2), |c, v| {
        to_int::<F64>(c, v, 32, false)
    })
}

/// CVTTPD2DQ.
pub fn cvttpd2dq(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    packed(cpu, i, false, (64, 32, 2), |c, v| {
        to_int::<F64>(c, v, 32, true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx {
        Ctx {
            mxcsr: 0x1f80,
            pre: 0,
            post: 0,
        }
    }

    #[test]
    fn float_to_int_rules() {
        let mut c = ctx();
        assert_eq!(to_int::<F32>(&mut c, 2.5f32.to_bits().into(), 32, false), 2);
        assert_eq!(c.post, super::super::fp::mx::PE);
        let mut c = ctx();
        assert_eq!(
            to_int::<F32>(&mut c, (-2.5f32).to_bits().into(), 32, true),
            0xffff_fffe
        );
        let mut c = ctx();
        assert_eq!(
            to_int::<F64>(&mut c, 3e9f64.to_bits(), 32, false),
            0x8000_0000
        );
        assert_eq!(c.pre, super::super::fp::mx::IE);
        let mut c = ctx();
        assert_eq!(
            to_int::<F64>(&mut c, 3e9f64.to_bits(), 64, false),
            3_000_000_000
        );
        let mut c = ctx();
        assert_eq!(to_int::<F64>(&mut c, u64::MAX, 64, false), 1 << 63);
    }

    #[test]
    fn float_to_float_nans() {
        let mut c = ctx();
        assert_eq!(s2d(&mut c, 0xff80_0001), 0xfff8_0000_2000_0000);
        assert_eq!(c.pre, super::super::fp::mx::IE);
        let mut c = ctx();
        assert_eq!(d2s(&mut c, 1.5f64.to_bits()), u64::from(1.5f32.to_bits()));
        let mut c = ctx();
        assert_eq!(d2s(&mut c, 1e300f64.to_bits()), 0x7f80_0000);
        assert!(c.post & super::super::fp::mx::OE != 0);
    }
}

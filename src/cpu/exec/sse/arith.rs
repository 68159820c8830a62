//! SSE/SSE2 floating-point instructions: ADD/SUB/MUL/DIV/MIN/MAX/SQRT and CMPcc in the PS, PD,
//! SS and SD forms, COMISS/COMISD/UCOMISS/UCOMISD, and the RCP/RSQRT approximations.
//!
//! Packed forms take an xmm/m128 source (16-byte aligned); scalar forms an xmm/m32/m64 source
//! and change only lane 0. The lanes go through `fp` with one [`Ctx`]; the destination is
//! written only if [`Ctx::commit`] raised nothing.
//!
//! RCPPS/RCPSS/RSQRTPS/RSQRTSS: the hardware gives a table-based approximation with relative
//! error ≤ 1.5·2⁻¹² whose exact bits differ between CPU generations. Here it is the correctly
//! rounded result truncated to 12 significant bits (error < 2⁻¹¹ relative, usually < 2⁻¹²),
//! denormal inputs treated as zero and tiny results flushed to zero, as the hardware does; MXCSR
//! is neither read nor changed. The difftest excludes them.

use iced_x86::Instruction;

use super::fp::{self, is_nan, is_snan, Ctx, Fmt, F32, F64};
use super::{check, lane, set_xmm, src128, src_scalar, with_lane, xmm};
use crate::cpu::fault::Res;
use crate::cpu::flags::{AF, CF, OF, PF, SF, ZF};
use crate::cpu::Cpu;

/// Run `f` on lane pairs: all lanes (`scalar == false`) or lane 0 only.
fn lanes<T: Fmt>(
    cpu: &mut Cpu,
    i: &Instruction,
    scalar: bool,
    f: impl Fn(&mut Ctx, u64, u64) -> u64,
) -> Res<()> {
    check(cpu)?;
    let bits = T::BITS;
    let b = if scalar {
        u128::from(src_scalar(cpu, i, 1, bits as usize / 8)?)
    } else {
        src128(cpu, i, 1, true)?
    };
    let a = xmm(cpu, i, 0);
    let n = if scalar { 1 } else { 128 / bits };
    let mut ctx = Ctx::new(cpu);
    let r = (0..n).fold(a, |r, k| {
        with_lane(r, bits, k, f(&mut ctx, lane(a, bits, k), lane(b, bits, k)))
    });
    ctx.commit(cpu)?;
    set_xmm(cpu, i, 0, r);
    Ok(())
}

macro_rules! fp_ops {
    ($($(#[$doc:meta])* $name:ident, $t:ty, $scalar:expr, |$c:ident, $a:ident, $b:ident| $e:expr;)*) => {$(
        $(#[$doc])*
        pub fn $name(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
            lanes::<$t>(cpu, i, $scalar, |$c, $a, $b| $e)
        }
    )*};
}

fp_ops! {
    /// ADDPS.
    addps, F32, false, |c, a, b| fp::arith::<F32>(c, a, b, fp::Op::Add);
    /// ADDSS.
    addss, F32, true, |c, a, b| fp::arith::<F32>(c, a, b, fp::Op::Add);
    /// ADDPD.
    addpd, F64, false, |c, a, b| fp::arith::<F64>(c, a, b, fp::Op::Add);
    /// ADDSD.
    addsd, F64, true, |c, a, b| fp::arith::<F64>(c, a, b, fp::Op::Add);
    /// SUBPS.
    subps, F32, false, |c, a, b| fp::arith::<F32>(c, a, b, fp::Op::Sub);
    /// SUBSS.
    subss, F32, true, |c, a, b| fp::arith::<F32>(c, a, b, fp::Op::Sub);
    /// SUBPD.
    subpd, F64, false, |c, a, b| fp::arith::<F64>(c, a, b, fp::Op::Sub);
    /// SUBSD.
    subsd, F64, true, |c, a, b| fp::arith::<F64>(c, a, b, fp::Op::Sub);
    /// MULPS.
    mulps, F32, false, |c, a, b| fp::arith::<F32>(c, a, b, fp::Op::Mul);
    /// MULSS.
    mulss, F32, true, |c, a, b| fp::arith::<F32>(c, a, b, fp::Op::Mul);
    /// MULPD.
    mulpd, F64, false, |c, a, b| fp::arith::<F64>(c, a, b, fp::Op::Mul);
    /// MULSD.
    mulsd, F64, true, |c, a, b| fp::arith::<F64>(c, a, b, fp::Op::Mul);
    /// DIVPS.
    divps, F32, false, |c, a, b| fp::arith::<F32>(c, a, b, fp::Op::Div);
    /// DIVSS.
    divss, F32, true, |c, a, b| fp::arith::<F32>(c, a, b, fp::Op::Div);
    /// DIVPD.
    divpd, F64, false, |c, a, b| fp::arith::<F64>(c, a, b, fp::Op::Div);
    /// DIVSD.
    divsd, F64, true, |c, a, b| fp::arith::<F64>(c, a, b, fp::Op::Div);
    /// MINPS.
    minps, F32, false, |c, a, b| fp::minmax::<F32>(c, a, b, false);
    /// MINSS.
    minss, F32, true, |c, a, b| fp::minmax::<F32>(c, a, b, false);
    /// MINPD.
    minpd, F64, false, |c, a, b| fp::minmax::<F64>(c, a, b, false);
    /// MINSD.
    minsd, F64, true, |c, a, b| fp::minmax::<F64>(c, a, b, false);
    /// MAXPS.
    maxps, F32, false, |c, a, b| fp::minmax::<F32>(c, a, b, true);
    /// MAXSS.
    maxss, F32, true, |c, a, b| fp::minmax::<F32>(c, a, b, true);
    /// MAXPD.
    maxpd, F64, false, |c, a, b| fp::minmax::<F64>(c, a, b, true);
    /// MAXSD.
    maxsd, F64, true, |c, a, b| fp::minmax::<F64>(c, a, b, true);
    /// SQRTPS.
    sqrtps, F32, false, |c, _a, b| fp::sqrt::<F32>(c, b);
    /// SQRTSS.
    sqrtss, F32, true, |c, _a, b| fp::sqrt::<F32>(c, b);
    /// SQRTPD.
    sqrtpd, F64, false, |c, _a, b| fp::sqrt::<F64>(c, b);
    /// SQRTSD.
    sqrtsd, F64, true, |c, _a, b| fp::sqrt::<F64>(c, b);
}

/// CMPPS/CMPSS/CMPPD/CMPSD with predicate imm8 (0..7).
fn cmpcc<T: Fmt>(cpu: &mut Cpu, i: &Instruction, scalar: bool) -> Res<()> {
    let pred = u32::from(i.immediate8());
    lanes::<T>(cpu, i, scalar, |c, a, b| fp::cmp_pred::<T>(c, a, b, pred))
}

/// CMPPS.
pub fn cmpps(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    cmpcc::<F32>(cpu, i, false)
}

/// CMPSS.
pub fn cmpss(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    cmpcc::<F32>(cpu, i, true)
}

/// CMPPD.
pub fn cmppd(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    cmpcc::<F64>(cpu, i, false)
}

/// CMPSD (the SSE2 compare).
pub fn cmpsd(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    cmpcc::<F64>(cpu, i, true)
}

/// COMIS*/UCOMIS*: ZF, PF, CF from the comparison (all set when unordered), OF/SF/AF clear.
fn comi<T: Fmt>(cpu: &mut Cpu, i: &Instruction, quiet_ok: bool) -> Res<()> {
    check(cpu)?;
    let b = src_scalar(cpu, i, 1, T::BITS as usize / 8)?;
    let a = lane(xmm(cpu, i, 0), T::BITS, 0);
    let mut ctx = Ctx::new(cpu);
    let flags = if is_nan::<T>(a) || is_nan::<T>(b) {
        if !quiet_ok || is_snan::<T>(a) || is_snan::<T>(b) {
            ctx.invalid();
        }
        ZF | PF | CF
    } else {
        let a = ctx.input::<T>(a);
        let b = ctx.input::<T>(b);
        match fp::cmp::<T>(a, b) {
            Some(std::cmp::Ordering::Less) => CF,
            Some(std::cmp::Ordering::Equal) => ZF,
            _ => 0,
        }
    };
    ctx.commit(cpu)?;
    cpu.state
        .flags
        .set_arith(ZF | PF | CF | OF | SF | AF, flags);
    Ok(())
}

/// COMISS: IE on any NaN.
pub fn comiss(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    comi::<F32>(cpu, i, false)
}

/// COMISD.
pub fn comisd(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    comi::<F64>(cpu, i, false)
}

/// UCOMISS: IE only on an SNaN.
pub fn ucomiss(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    comi::<F32>(cpu, i, true)
}

/// UCOMISD.
pub fn ucomisd(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    comi::<F64>(cpu, i, true)
}

/// Approximate 1/x (`rsqrt == false`) or 1/sqrt(x) of single `x` (see the module docs).
fn approx(x: u64, rsqrt: bool) -> u64 {
    let x = x as u32;
    let sign = x & 0x8000_0000;
    if is_nan::<F32>(u64::from(x)) {
        return u64::from(x | 0x0040_0000);
    }
    if x & 0x7f80_0000 == 0 {
        // Zero or denormal (treated as zero): signed infinity.
        return u64::from(sign | 0x7f80_0000);
    }
    if rsqrt && sign != 0 {
        return F32::DEFAULT_NAN;
    }
    let v = f64::from(f32::from_bits(x));
    let r = if rsqrt { 1.0 / v.sqrt() } else { 1.0 / v };
    let r = r as f32;
    let bits = r.to_bits();
    if bits & 0x7f80_0000 == 0 {
        return u64::from(bits & 0x8000_0000);
    }
    u64::from(bits & !0x7ff)
}

fn approx_op(cpu: &mut Cpu, i: &Instruction, scalar: bool, rsqrt: bool) -> Res<()> {
    check(cpu)?;
    let b = if scalar {
        u128::from(src_scalar(cpu, i, 1, 4)?)
    } else {
        src128(cpu, i, 1, true)?
    };
    let a = xmm(cpu, i, 0);
    let n = if scalar { 1 } else { 4 };
    let r = (0..n).fold(a, |r, k| with_lane(r, 32, k, approx(lane(b, 32, k), rsqrt)));
    set_xmm(cpu, i, 0, r);
    Ok(())
}

/// RCPPS.
pub fn rcpps(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    approx_op(cpu, i, false, false)
}

/// RCPSS.
pub fn rcpss(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    approx_op(cpu, i, true, false)
}

/// RSQRTPS.
pub fn rsqrtps(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    approx_op(cpu, i, false, true)
}

/// RSQRTSS.
pub fn rsqrtss(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    approx_op(cpu, i, true, true)
}

//! IEEE single/double arithmetic under MXCSR, on raw lane bits.
//!
//! The rounding itself is `rustc_apfloat`'s (exact IEEE with the four rounding directions);
//! this module adds x86's rules around it: NaN operands never reach apfloat (the first source's
//! NaN wins, an SNaN is quieted and raises IE), invalid operations give the default QNaN
//! (sign set), DAZ turns denormal inputs into signed zeros (otherwise they raise DE), FTZ turns
//! tiny results into signed zeros (with UE and PE) when underflow is masked, and UE is only
//! raised for a masked underflow if the result is also inexact.
//!
//! A [`Ctx`] collects the flags of every lane; [`Ctx::commit`] merges them into MXCSR and
//! decides #XM: an unmasked pre-computation exception (IE, DE, ZE) reports only those flags;
//! otherwise an unmasked post-computation one (OE, UE, PE) also faults. In both cases the
//! caller leaves the destination unchanged.
//!
//! Two places where apfloat's IEEE reading differs from x86's are patched by redoing the
//! operation on scaled inputs: overflow under a rounding that clamps to the largest finite
//! value ([`fix_overflow`]) and tininess after rounding ([`fix_tiny`]). `host_oracle` checks
//! both against the host CPU.

use rustc_apfloat::ieee::{Double, Single};
use rustc_apfloat::{Float, Round, Status, StatusAnd};

use super::XM;
use crate::cpu::fault::{exc, ud, Res};
use crate::cpu::state::cr4;
use crate::cpu::Cpu;

/// MXCSR bits.
pub mod mx {
    /// Invalid operation flag.
    pub const IE: u32 = 1 << 0;
    /// Denormal operand flag.
    pub const DE: u32 = 1 << 1;
    /// Divide-by-zero flag.
    pub const ZE: u32 = 1 << 2;
    /// Overflow flag.
    pub const OE: u32 = 1 << 3;
    /// Underflow flag.
    pub const UE: u32 = 1 << 4;
    /// Precision (inexact) flag.
    pub const PE: u32 = 1 << 5;
    /// Denormals are zeros.
    pub const DAZ: u32 = 1 << 6;
    /// The exception masks start here (IM at bit 7 … PM at bit 12).
    pub const MASK_SHIFT: u32 = 7;
    /// Flush to zero.
    pub const FZ: u32 = 1 << 15;
}

/// A binary format (single or double) as seen through its bits.
pub trait Fmt {
    /// The apfloat type.
    type F: Float;
    /// Width in bits.
    const BITS: u32;
    /// Sign bit.
    const SIGN: u64;
    /// Exponent field.
    const EXP: u64;
    /// Fraction field.
    const FRAC: u64;
    /// The quiet bit of a NaN.
    const QUIET: u64;
    /// The default NaN ("QNaN floating-point indefinite").
    const DEFAULT_NAN: u64;
    /// Correctly rounded (to nearest) square root of a non-NaN, non-negative value by the host.
    fn host_sqrt(bits: u64) -> u64;
}

/// IEEE single.
pub struct F32;
/// IEEE double.
pub struct F64;

impl Fmt for F32 {
    type F = Single;
    const BITS: u32 = 32;
    const SIGN: u64 = 0x8000_0000;
    const EXP: u64 = 0x7f80_0000;
    const FRAC: u64 = 0x007f_ffff;
    const QUIET: u64 = 0x0040_0000;
    const DEFAULT_NAN: u64 = 0xffc0_0000;
    fn host_sqrt(bits: u64) -> u64 {
        u64::from(f32::from_bits(bits as u32).sqrt().to_bits())
    }
}

impl Fmt for F64 {
    type F = Double;
    const BITS: u32 = 64;
    const SIGN: u64 = 1 << 63;
    const EXP: u64 = 0x7ff0_0000_0000_0000;
    const FRAC: u64 = 0x000f_ffff_ffff_ffff;
    const QUIET: u64 = 1 << 51;
    const DEFAULT_NAN: u64 = 0xfff8_0000_0000_0000;
    fn host_sqrt(bits: u64) -> u64 {
        f64::from_bits(bits).sqrt().to_bits()
    }
}

/// NaN?
#[inline]
pub fn is_nan<T: Fmt>(v: u64) -> bool {
    v & T::EXP == T::EXP && v & T::FRAC != 0
}

/// Signaling NaN?
#[inline]
pub fn is_snan<T: Fmt>(v: u64) -> bool {
    is_nan::<T>(v) && v & T::QUIET == 0
}

/// Denormal (non-zero, zero exponent)?
#[inline]
pub fn is_denormal<T: Fmt>(v: u64) -> bool {
    v & T::EXP == 0 && v & T::FRAC != 0
}

/// The apfloat value of `v`.
#[inline]
pub fn to_f<T: Fmt>(v: u64) -> T::F {
    T::F::from_bits(u128::from(v))
}

/// The bits of `f`.
#[inline]
pub fn from_f<T: Fmt>(f: T::F) -> u64 {
    f.to_bits() as u64
}

/// Per-instruction flag collector (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    /// MXCSR at the start of the instruction.
    pub mxcsr: u32,
    /// IE/DE/ZE seen.
    pub pre: u32,
    /// OE/UE/PE seen.
    pub post: u32,
}

impl Ctx {
    /// A collector for the CPU's current MXCSR.
    pub fn new(cpu: &Cpu) -> Self {
        Ctx {
            mxcsr: cpu.state.fpu.mxcsr,
            pre: 0,
            post: 0,
        }
    }

    /// The MXCSR rounding direction.
    pub fn round(&self) -> Round {
        match (self.mxcsr >> 13) & 3 {
            0 => Round::NearestTiesToEven,
            1 => Round::TowardNegative,
            2 => Round::TowardPositive,
            _ => Round::TowardZero,
        }
    }

    fn masked(&self, flag: u32) -> bool {
        (self.mxcsr >> mx::MASK_SHIFT) & flag != 0
    }

    /// A source operand after DAZ (denormal → signed zero) or with DE noted.
    pub fn input<T: Fmt>(&mut self, v: u64) -> u64 {
        if is_denormal::<T>(v) {
            if self.mxcsr & mx::DAZ != 0 {
                return v & T::SIGN;
            }
            self.pre |= mx::DE;
        }
        v
    }

    /// Only DAZ, no DE (conversions to integer, which never report DE).
    pub fn input_daz<T: Fmt>(&self, v: u64) -> u64 {
        if self.mxcsr & mx::DAZ != 0 && is_denormal::<T>(v) {
            v & T::SIGN
        } else {
            v
        }
    }

    /// NaN operands of a two-operand operation: `Some(result)` if either is a NaN (the first
    /// source's NaN wins, quieted; an SNaN anywhere raises IE).
    pub fn nan2<T: Fmt>(&mut self, a: u64, b: u64) -> Option<u64> {
        if !is_nan::<T>(a) && !is_nan::<T>(b) {
            return None;
        }
        if is_snan::<T>(a) || is_snan::<T>(b) {
            self.pre |= mx::IE;
        }
        Some(if is_nan::<T>(a) { a } else { b } | T::QUIET)
    }

    /// Note invalid operation.
    pub fn invalid(&mut self) {
        self.pre |= mx::IE;
    }

    /// Turn an apfloat result and status into the x86 result, recording flags.
    pub fn result<T: Fmt>(&mut self, r: StatusAnd<T::F>) -> u64 {
        let StatusAnd { status, value } = r;
        if status.contains(Status::INVALID_OP) {
            self.pre |= mx::IE;
            return T::DEFAULT_NAN;
        }
        if status.contains(Status::DIV_BY_ZERO) {
            self.pre |= mx::ZE;
        }
        let bits = from_f::<T>(value);
        let inexact = status.contains(Status::INEXACT);
        let tiny = status.contains(Status::UNDERFLOW) || is_denormal::<T>(bits);
        if tiny {
            if !self.masked(mx::UE) {
                self.post |= mx::UE | if inexact { mx::PE } else { 0 };
                return bits;
            }
            if self.mxcsr & mx::FZ != 0 {
                self.post |= mx::UE | mx::PE;
                return bits & T::SIGN;
            }
            if inexact {
                self.post |= mx::UE;
            }
        }
        if status.contains(Status::OVERFLOW) {
            self.post |= mx::OE;
        }
        if inexact {
            self.post |= mx::PE;
        }
        bits
    }

    /// Note an inexact result (conversions).
    pub fn inexact(&mut self) {
        self.post |= mx::PE;
    }

    /// Merge the flags into MXCSR; #XM (or #UD without CR4.OSXMMEXCPT) if an unmasked
    /// exception was seen, in which case the caller must not write its result.
    pub fn commit(&self, cpu: &mut Cpu) -> Res<()> {
        let unmasked = !(self.mxcsr >> mx::MASK_SHIFT) & 0x3f;
        let flags = if self.pre & unmasked != 0 {
            self.pre
        } else {
            self.pre | self.post
        };
        cpu.state.fpu.mxcsr |= flags;
        if flags & unmasked == 0 {
            return Ok(());
        }
        if cpu.state.cr4 & cr4::OSXMMEXCPT != 0 {
            Err(exc(XM))
        } else {
            Err(ud())
        }
    }
}

/// The four basic operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Addition.
    Add,
    /// Subtraction.
    Sub,
    /// Multiplication.
    Mul,
    /// Division.
    Div,
}

impl Op {
    fn apply<F: Float>(self, a: F, b: F, r: Round) -> StatusAnd<F> {
        match self {
            Op::Add => a.add_r(b, r),
            Op::Sub => a.sub_r(b, r),
            Op::Mul => a.mul_r(b, r),
            Op::Div => a.div_r(b, r),
        }
    }

    /// The same operation with the exact result scaled by 2^`e` (exact for |e| = 1 near the
    /// range edges this is used at).
    fn apply_scaled<F: Float>(self, a: F, b: F, r: Round, e: i32) -> StatusAnd<F> {
        match self {
            Op::Add | Op::Sub => self.apply(a.scalbn(e), b.scalbn(e), r),
            // Doubling the smaller factor of a tiny product cannot overflow.
            Op::Mul if e > 0 && b.abs() < a.abs() => self.apply(a, b.scalbn(e), r),
            Op::Mul | Op::Div => self.apply(a.scalbn(e), b, r),
        }
    }
}

/// apfloat decides tininess after rounding to the denormal precision, x86 after rounding to
/// the full precision with an unbounded exponent: a result that rounds up to exactly ±MIN_NORMAL
/// is tiny for x86 when the full-precision rounding stays below it. Redo the operation on
/// doubled inputs (`twice`): tiny iff that result is still below 2·MIN_NORMAL; then report
/// UNDERFLOW so FTZ and UE behave as the hardware's.
pub fn fix_tiny<T: Fmt>(
    r: StatusAnd<T::F>,
    twice: impl FnOnce() -> StatusAnd<T::F>,
) -> StatusAnd<T::F> {
    let min_normal = T::FRAC + 1;
    let bits = from_f::<T>(r.value);
    if bits & !T::SIGN != min_normal
        || !r.status.contains(Status::INEXACT)
        || r.status.contains(Status::UNDERFLOW)
    {
        return r;
    }
    if from_f::<T>(twice().value) & T::EXP == min_normal {
        StatusAnd {
            status: r.status | Status::UNDERFLOW,
            value: r.value,
        }
    } else {
        r
    }
}

/// apfloat reports an overflow only when the result becomes infinite; x86 also when a rounding
/// toward zero clamps it to the largest finite value. So for an inexact ±MAX result, redo the
/// operation on halved inputs (`half`): the exact result overflowed (after rounding with an
/// unbounded exponent) iff the halved one rounds into the top binade.
pub fn fix_overflow<T: Fmt>(
    r: StatusAnd<T::F>,
    half: impl FnOnce() -> StatusAnd<T::F>,
) -> StatusAnd<T::F> {
    let bits = from_f::<T>(r.value);
    let max = T::EXP - 1;
    if bits & !T::SIGN != max
        || !r.status.contains(Status::INEXACT)
        || r.status.contains(Status::OVERFLOW)
    {
        return r;
    }
    let top = T::EXP - (T::FRAC + 1);
    if from_f::<T>(half().value) & T::EXP == top {
        StatusAnd {
            status: r.status | Status::OVERFLOW,
            value: r.value,
        }
    } else {
        r
    }
}

/// `a op b` for ADD/SUB/MUL/DIV with x86's NaN, DAZ/DE and result rules.
pub fn arith<T: Fmt>(ctx: &mut Ctx, a: u64, b: u64, op: Op) -> u64 {
    if let Some(n) = ctx.nan2::<T>(a, b) {
        return n;
    }
    // Per element, IE and ZE outrank DE (a denormal divided by zero raises ZE only).
    let denormal = ctx.mxcsr & mx::DAZ == 0 && (is_denormal::<T>(a) || is_denormal::<T>(b));
    let a = to_f::<T>(ctx.input_daz::<T>(a));
    let b = to_f::<T>(ctx.input_daz::<T>(b));
    let round = ctx.round();
    let r = op.apply(a, b, round);
    if denormal
        && !r
            .status
            .intersects(Status::INVALID_OP | Status::DIV_BY_ZERO)
    {
        ctx.pre |= mx::DE;
    }
    let r = fix_overflow::<T>(r, || op.apply_scaled(a, b, round, -1));
    let r = fix_tiny::<T>(r, || op.apply_scaled(a, b, round, 1));
    ctx.result::<T>(r)
}

/// Square root, correctly rounded in every MXCSR direction: the host's round-to-nearest root
/// `r` is exact or off by less than half an ulp, and the sign of the exactly computed residual
/// `a - r*r` (one fused multiply-add) says on which side the true root lies, so a directed
/// mode moves `r` one ulp when needed.
pub fn sqrt<T: Fmt>(ctx: &mut Ctx, a: u64) -> u64 {
    if is_nan::<T>(a) {
        if is_snan::<T>(a) {
            ctx.invalid();
        }
        return a | T::QUIET;
    }
    // Invalid (a negative operand) outranks denormal: -denormal raises IE only.
    let a = ctx.input_daz::<T>(a);
    if a & !T::SIGN == 0 {
        return a;
    }
    if a & T::SIGN != 0 {
        ctx.invalid();
        return T::DEFAULT_NAN;
    }
    let a = ctx.input::<T>(a);
    if a == T::EXP {
        return a;
    }
    let r = T::host_sqrt(a);
    let rf = to_f::<T>(r);
    let res = (-rf).mul_add_r(rf, to_f::<T>(a), Round::NearestTiesToEven);
    let exact = res.value.is_zero() && !res.status.contains(Status::INEXACT);
    if exact {
        return r;
    }
    // Residual > 0: r is below the true root.
    let below = !res.value.is_negative();
    let r = match (ctx.round(), below) {
        (Round::TowardPositive, true) => from_f::<T>(rf.next_up().value),
        (Round::TowardNegative | Round::TowardZero, false) => from_f::<T>(rf.next_down().value),
        _ => r,
    };
    ctx.inexact();
    r
}

/// Comparison of two non-NaN values after DAZ.
pub fn cmp<T: Fmt>(a: u64, b: u64) -> Option<std::cmp::Ordering> {
    to_f::<T>(a).partial_cmp(&to_f::<T>(b))
}

/// MIN (`max == false`) or MAX: the second operand on NaN (either, IE) or equality.
pub fn minmax<T: Fmt>(ctx: &mut Ctx, a: u64, b: u64, max: bool) -> u64 {
    if is_nan::<T>(a) || is_nan::<T>(b) {
        ctx.invalid();
        // The second operand as is (an SNaN stays signaling), but DAZ still applies.
        return ctx.input_daz::<T>(b);
    }
    let a = ctx.input::<T>(a);
    let b = ctx.input::<T>(b);
    let want = if max {
        std::cmp::Ordering::Greater
    } else {
        std::cmp::Ordering::Less
    };
    if cmp::<T>(a, b) == Some(want) {
        a
    } else {
        b
    }
}

/// CMPcc predicate 0..7 (EQ LT LE UNORD NEQ NLT NLE ORD): all ones or zero. LT/LE/NLT/NLE
/// raise IE on any NaN, the others only on an SNaN.
pub fn cmp_pred<T: Fmt>(ctx: &mut Ctx, a: u64, b: u64, pred: u32) -> u64 {
    let ones = if T::BITS == 32 { 0xffff_ffff } else { u64::MAX };
    let nan = is_nan::<T>(a) || is_nan::<T>(b);
    if nan {
        let signals = matches!(pred & 7, 1 | 2 | 5 | 6);
        if signals || is_snan::<T>(a) || is_snan::<T>(b) {
            ctx.invalid();
        }
        return if matches!(pred & 7, 3..=6) { ones } else { 0 };
    }
    let a = ctx.input::<T>(a);
    let b = ctx.input::<T>(b);
    use std::cmp::Ordering::*;
    let o = cmp::<T>(a, b);
    let t = match pred & 7 {
        0 => o == Some(Equal),
        1 => o == Some(Less),
        2 => matches!(o, Some(Less | Equal)),
        3 => false,
        4 => o != Some(Equal),
        5 => o != Some(Less),
        6 => !matches!(o, Some(Less | Equal)),
        _ => true,
    };
    if t {
        ones
    } else {
        0
    }
}

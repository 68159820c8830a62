//! x87 transcendental instructions: FSIN, FCOS, FSINCOS, FPTAN, FPATAN, F2XM1, FYL2X, FYL2XP1.
//!
//! This file is the dispatcher: stack faults, NaN and unsupported operands, the special
//! operands (±0, ±∞, out-of-range arguments) with the results the SDM tables give and the
//! host CPU confirms, then the numerics for finite operands: [`reduce`] (π₆₆ argument
//! reduction for the trigonometric ones), [`kernel`] (quad-precision series), [`round`] (one
//! rounding to 64 bits under FCW.RC, PC ignored). Data enters as ST(0)/ST(1) and leaves as the
//! new stack, FSW flags and C1 (= rounded up in magnitude); C2 is set for FSIN/FCOS/FSINCOS/
//! FPTAN operands of magnitude 2^63 and above (left unreduced), clear otherwise.
//!
//! Accuracy: results are the exact function of the operand (after π₆₆ reduction) correctly
//! rounded; C1 for FSINCOS is the sine's. The host CPU (AMD EPYC here) is not correctly
//! rounded: its internal result is within about 0.05 ulp, so 0.4-3% of random results differ
//! from ours by one ulp, and C1 alone on a similar share. FPTAN differs more (9%): when
//! tan r - r is below its internal precision (|r| < 2^-33, also near multiples of π/2) the
//! host's value lands a hair above or below r depending on the significand's bits, which
//! matters under directed rounding. `difftest::transcend` measures all this case by case.
//! Host quirks copied: F2XM1 of +1 answers as if its internal value were just below 1, F2XM1
//! of -1 and FYL2X of a power of two report PE though exact, F2XM1 of |x| > 1 returns x.

mod kernel;
mod reduce;
mod round;

use iced_x86::{Instruction, Mnemonic as M};
use rustc_apfloat::ieee::Quad;
use rustc_apfloat::{Float, Status};

use self::round::{round, Tail};
use super::arith::{nan_result, Outcome};
use super::special::unpack;
use super::*;

/// +1.0.
const ONE: F80 = F80 {
    mant: 1 << 63,
    sign_exp: 0x3fff,
};

fn inf(neg: bool) -> F80 {
    f80(neg, 0x7fff, 1 << 63)
}

fn zero(neg: bool) -> F80 {
    f80(neg, 0, 0)
}

fn exact(v: F80) -> Outcome {
    Outcome::plain(v, 0)
}

fn invalid() -> Outcome {
    Outcome::plain(INDEFINITE, sw::IE)
}

/// A quad constant rounded to 64 bits, negated when `neg`.
fn constant(fcw: u16, bits: u128, neg: bool) -> Outcome {
    let v = Quad::from_bits(bits);
    let v = if neg { -v } else { v };
    round(fcw, Status::OK.and(v), Tail::TowardZero, 0)
}

/// Value(s) an instruction writes: one result, or FSINCOS's (sine, cosine).
enum Results {
    One(Outcome),
    Two(Outcome, Outcome),
}

/// FSIN, FCOS, FSINCOS, FPTAN of a finite operand below 2^63.
fn trig(m: M, fcw: u16, x: F80, de: u16) -> Results {
    if is_zero(x) {
        return match m {
            M::Fcos => Results::One(exact(ONE)),
            M::Fsincos => Results::Two(exact(x), exact(ONE)),
            _ => Results::One(exact(x)),
        };
    }
    let (r, k) = reduce::reduce(x);
    let rounded = |v: Quad, tail| round(fcw, Status::OK.and(v), tail, de);
    match m {
        M::Fptan => Results::One(rounded(kernel::tan(r, k), Tail::AwayFromZero)),
        _ => {
            let (s, c) = kernel::sin_cos(r, k);
            let (s, c) = (rounded(s, Tail::TowardZero), rounded(c, Tail::TowardZero));
            match m {
                M::Fsin => Results::One(s),
                M::Fcos => Results::One(c),
                _ => Results::Two(s, c),
            }
        }
    }
}

/// F2XM1 of a non-NaN operand.
fn f2xm1(fcw: u16, x: F80, de: u16) -> Outcome {
    if is_zero(x) || (is_inf(x) && !neg_of(x)) {
        return exact(x);
    }
    if is_inf(x) {
        return exact(f80(true, 0x3fff, 1 << 63));
    }
    let (m, e) = unpack(x);
    if e > -63 || (e == -63 && m != 1 << 63) {
        // |x| > 1 is outside the domain (undefined in the SDM); the host returns x with PE.
        return Outcome::plain(x, sw::PE | de);
    }
    if e == -63 {
        // 2^1 - 1 = 1 and 2^-1 - 1 = -1/2 are exact, but the host answers as if its internal
        // value for +1 were a hair below 1 (RN and RU give 1 with C1, RD and RZ the largest
        // value below 1) and reports PE for -1/2 in every mode.
        let (v, tail) = if neg_of(x) {
            (-Quad::from_u128(1).value.scalbn(-1), Tail::Exact)
        } else {
            (Quad::from_u128(1).value, Tail::TowardZero)
        };
        return round(fcw, Status::OK.and(v), tail, de);
    }
    round(
        fcw,
        Status::OK.and(kernel::exp2m1(to_quad(x))),
        Tail::TowardZero,
        de,
    )
}

/// `y · l` rounded: the product's status (overflow) carried to the rounding.
fn times(fcw: u16, y: F80, l: Quad, tail: Tail, de: u16) -> Outcome {
    round(fcw, to_quad(y) * l, tail, de)
}

/// FYL2X: ST(1) · log₂ ST(0), `x` = ST(0), `y` = ST(1), neither a NaN.
fn fyl2x(fcw: u16, x: F80, y: F80, de: u16) -> Outcome {
    let below_one = exp_of(x) < 0x3fff;
    if neg_of(x) && !is_zero(x) {
        return invalid();
    }
    if is_zero(x) {
        // log₂ 0 = -∞.
        return match () {
            _ if is_zero(y) => invalid(),
            _ if is_inf(y) => exact(inf(!neg_of(y))),
            _ => Outcome::plain(inf(!neg_of(y)), sw::ZE),
        };
    }
    if is_inf(x) {
        return if is_zero(y) {
            invalid()
        } else {
            exact(inf(neg_of(y)))
        };
    }
    let (m, e) = unpack(x);
    if m == 1 << 63 && e == -63 {
        // log₂ 1 = 0.
        return if is_inf(y) {
            invalid()
        } else {
            Outcome::plain(zero(neg_of(y)), de)
        };
    }
    if is_inf(y) {
        return exact(inf(neg_of(y) != below_one));
    }
    if is_zero(y) {
        return Outcome::plain(zero(neg_of(y) != below_one), de);
    }
    if m == 1 << 63 {
        // A power of two: log₂ x = e + 63 exactly; y·(e+63) fits in quad.
        let l = Quad::from_i128((e + 63).into()).value;
        return times(fcw, y, l, Tail::Exact, de);
    }
    times(fcw, y, kernel::log2(m, e), Tail::TowardZero, de)
}

/// FYL2XP1: ST(1) · log₂(ST(0) + 1), `x` = ST(0), `y` = ST(1), neither a NaN.
fn fyl2xp1(fcw: u16, x: F80, y: F80, de: u16) -> Outcome {
    let nx = neg_of(x);
    if is_zero(x) {
        return if is_inf(y) {
            invalid()
        } else {
            Outcome::plain(zero(nx != neg_of(y)), de)
        };
    }
    if is_inf(x) {
        return if nx || is_zero(y) {
            invalid()
        } else {
            exact(inf(neg_of(y)))
        };
    }
    let (m, e) = unpack(x);
    // x < -1 (log of a negative number) or x = -1 (log₂ 0); outside FYL2XP1's domain
    // |x| < 1 - √½ anyway, where the SDM leaves the result undefined.
    if nx && (e > -63 || (e == -63 && m != 1 << 63)) {
        return invalid();
    }
    if nx && e == -63 {
        return match () {
            _ if is_zero(y) => invalid(),
            _ if is_inf(y) => exact(inf(!neg_of(y))),
            _ => Outcome::plain(inf(!neg_of(y)), sw::ZE),
        };
    }
    if is_inf(y) {
        return exact(inf(neg_of(y) != nx));
    }
    if is_zero(y) {
        return Outcome::plain(zero(neg_of(y) != nx), de);
    }
    times(fcw, y, kernel::log2_1p(to_quad(x)), Tail::TowardZero, de)
}

/// FPATAN: the angle of (ST(0), ST(1)) = atan2(y, x), neither a NaN.
fn fpatan(fcw: u16, x: F80, y: F80, de: u16) -> Outcome {
    let (nx, ny) = (neg_of(x), neg_of(y));
    if is_zero(y) {
        return if nx {
            constant(fcw, kernel::PI, ny)
        } else {
            Outcome::plain(zero(ny), de)
        };
    }
    if is_inf(y) {
        let c = match () {
            _ if !is_inf(x) => kernel::PI_2,
            _ if nx => kernel::PI3_4,
            _ => kernel::PI_4,
        };
        return constant(fcw, c, ny);
    }
    if is_zero(x) {
        return constant(fcw, kernel::PI_2, ny);
    }
    if is_inf(x) {
        return if nx {
            constant(fcw, kernel::PI, ny)
        } else {
            exact(zero(ny))
        };
    }
    let mut a = kernel::atan2(to_quad(y), to_quad(x));
    if a.is_zero() {
        // y/x underflowed in quad: the angle is nonzero but below every F80.
        a = Quad::SMALLEST.copy_sign(to_quad(y));
    }
    round(fcw, Status::OK.and(a), Tail::TowardZero, de)
}

/// The transcendental family.
pub fn transcend(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    data(cpu, i, |cpu, i| {
        let m = i.mnemonic();
        let two = matches!(m, M::Fpatan | M::Fyl2x | M::Fyl2xp1);
        let pushes = matches!(m, M::Fptan | M::Fsincos);
        let f = &mut cpu.state.fpu;
        if f.empty(0) || (two && f.empty(1)) {
            if !f.underflow() {
                if two {
                    f.st_set(1, INDEFINITE);
                    f.pop();
                } else {
                    f.st_set(0, INDEFINITE);
                    if pushes {
                        f.push(INDEFINITE);
                    }
                }
            }
            return Ok(());
        }
        if pushes && f.push_would_overflow() {
            if !f.overflow() {
                f.st_set(0, INDEFINITE);
                f.push(INDEFINITE);
            }
            return Ok(());
        }
        let a = f.st_get(0);
        let b = if two { f.st_get(1) } else { a };
        if is_unsupported(a) || is_unsupported(b) || is_nan(a) || is_nan(b) {
            let ie = is_unsupported(a) || is_unsupported(b) || is_snan(a) || is_snan(b);
            let v = if is_nan(a) || is_nan(b) {
                nan_result(a, b)
            } else {
                INDEFINITE
            };
            if f.signal(if ie { sw::IE } else { 0 }) {
                return Ok(());
            }
            if two {
                f.st_set(1, v);
                f.pop();
            } else {
                f.st_set(0, v);
                if pushes {
                    f.push(v);
                }
            }
            return Ok(());
        }
        let de = if is_denormal(a) || is_denormal(b) {
            sw::DE
        } else {
            0
        };
        let trigonometric = matches!(m, M::Fsin | M::Fcos | M::Fsincos | M::Fptan);
        if trigonometric && exp_of(a) >= 0x3fff + 63 && !is_inf(a) {
            // Out of range: C2 = 1, operand unchanged.
            f.set_cc((f.fsw & (sw::C0 | sw::C3)) | sw::C2);
            return Ok(());
        }
        let fcw = f.fcw;
        let results = match m {
            _ if trigonometric && is_inf(a) => Results::One(invalid()),
            M::Fsin | M::Fcos | M::Fsincos | M::Fptan => trig(m, fcw, a, de),
            M::F2xm1 => Results::One(f2xm1(fcw, a, de)),
            M::Fyl2x => Results::One(fyl2x(fcw, a, b, de)),
            M::Fyl2xp1 => Results::One(fyl2xp1(fcw, a, b, de)),
            _ => Results::One(fpatan(fcw, a, b, de)),
        };
        let (first, second) = match results {
            Results::One(o) => (o, None),
            Results::Two(s, c) => (s, Some(c)),
        };
        // A denormal operand is reported whatever path produced the result (the host does,
        // e.g. FPATAN of (-∞, denormal) gives π with DE).
        let mut exc = first.exc | second.map_or(0, |c| c.exc) | de;
        // Invalid operation and zero divide rank above the denormal operand.
        if exc & (sw::IE | sw::ZE) != 0 {
            exc &= !sw::DE;
        }
        f.set_c1(false);
        if f.signal(exc) {
            return Ok(());
        }
        let up = first.up;
        f.set_cc((f.fsw & (sw::C0 | sw::C3)) | if up { sw::C1 } else { 0 });
        match m {
            M::Fsincos => {
                let v = if exc & sw::IE != 0 {
                    INDEFINITE
                } else {
                    second.map_or(INDEFINITE, |c| c.value)
                };
                f.st_set(0, first.value);
                f.push(v);
            }
            M::Fptan => {
                f.st_set(0, first.value);
                f.push(if exc & sw::IE != 0 { INDEFINITE } else { ONE });
            }
            M::Fpatan | M::Fyl2x | M::Fyl2xp1 => {
                f.st_set(1, first.value);
                f.pop();
            }
            _ => f.st_set(0, first.value),
        }
        Ok(())
    })
}

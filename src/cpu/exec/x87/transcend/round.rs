//! Rounding a quad approximation of a transcendental result to the x87's 64-bit significand.
//!
//! Data enters as a quad value (with the status of its last operation, for overflow) and
//! leaves as an [`Outcome`]: the F80 rounded once under FCW.RC, the exception bits and C1.
//! Transcendental results ignore FCW.PC (the SDM lists only the basic arithmetic and FSQRT
//! under precision control; the host agrees: FSIN under PC=24 returns 64 significant bits).
//! Their exact values are irrational except in the few special cases the dispatcher handles,
//! so a quad value that happens to be representable in 64 bits stands for a true value a hair
//! to one side ([`Tail`]): it is nudged one quad ulp that way before rounding, which gives the
//! right direction for tiny arguments (sin x just below x, tan x just above) and reports PE.

use rustc_apfloat::ieee::Quad;
use rustc_apfloat::{Float, FloatConvert, Round, StatusAnd};

use super::super::arith::{finish, round_quad, Outcome};
use super::super::{exp_of, round_mode, sw, X80};

/// Where the exact value lies relative to a quad approximation that is itself representable.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Tail {
    /// Slightly smaller in magnitude (sin x, cos x, atan x for tiny x).
    TowardZero,
    /// Slightly larger in magnitude (tan x for tiny x).
    AwayFromZero,
    /// The value is exact; PE is still reported (the host does, e.g. FYL2X of 8 gives 3
    /// with PE).
    Exact,
}

/// Round `q` under FCW.RC to 64 bits; `de` adds the denormal-operand flag.
pub fn round(fcw: u16, q: StatusAnd<Quad>, tail: Tail, de: u16) -> Outcome {
    let mut v = q.value;
    if v.is_finite() && !v.is_zero() && tail != Tail::Exact {
        let mut lost = false;
        let _: StatusAnd<X80> = v.convert(&mut lost);
        if !lost {
            v = if (tail == Tail::TowardZero) != v.is_negative() {
                v.next_down().value
            } else {
                v.next_up().value
            };
        }
    }
    // FCW with PC = 64 bits: round_quad then converts straight to the 80-bit format.
    let fcw64 = fcw | 0x300;
    let r = round_quad(fcw64, q.status.and(v), round_mode(fcw));
    let mut o = finish(r, de, || {
        round_quad(fcw64, q.status.and(v), Round::TowardZero).value
    });
    if v.is_finite() && !v.is_zero() {
        o.exc |= sw::PE;
        // Tiny and (reported) inexact is an underflow, even for an exact FYL2X product.
        if exp_of(o.value) == 0 {
            o.exc |= sw::UE;
        }
    }
    o
}

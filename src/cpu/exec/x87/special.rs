//! x87 operations on one value's parts: FSQRT, FRNDINT, FSCALE, FXTRACT, FPREM/FPREM1.
//!
//! Like the arithmetic in `arith`, each result is exact then rounded once under FCW; square
//! root and the remainders are computed on integer significands (apfloat has neither).

use iced_x86::Instruction;
use rustc_apfloat::ieee::Quad;
use rustc_apfloat::{Float, FloatConvert, Round, Status, StatusAnd};

use super::arith::{finish, round_quad, screen2, st0_or_underflow, Outcome};
use super::*;

/// Split a finite nonzero value into an integer significand with its top bit set and the
/// exponent of its least significant bit.
pub fn unpack(v: F80) -> (u64, i32) {
    let e = i32::from(exp_of(v).max(1)) - 16383 - 63;
    let sh = v.mant.leading_zeros() as i32;
    (v.mant << sh, e - sh)
}

/// Square root of a positive finite nonzero value, correctly rounded under FCW.
fn sqrt_pos(fcw: u16, v: F80, rm: Round) -> StatusAnd<X80> {
    let (m, e) = unpack(v);
    // value = m * 2^e = M * 2^(e - s) with M = m << s; (e - s) even, root of M has 66+ bits.
    let s: i32 = if (e - 68) % 2 == 0 { 68 } else { 69 };
    let total = 64 + s;
    let pairs = (total + 1) / 2;
    let bit = |k: i32| -> u128 {
        if k >= s && k < total {
            u128::from((m >> (k - s)) & 1)
        } else {
            0
        }
    };
    let (mut rem, mut root) = (0u128, 0u128);
    for p in (0..pairs).rev() {
        rem = (rem << 2) | (bit(2 * p + 1) << 1) | bit(2 * p);
        let trial = (root << 2) | 1;
        if rem >= trial {
            rem -= trial;
            root = (root << 1) | 1;
        } else {
            root <<= 1;
        }
    }
    let sticky = u128::from(rem != 0);
    let q = Quad::from_u128((root << 1) | sticky).value;
    let q = q.scalbn((e - s) / 2 - 1);
    round_quad(fcw, Status::OK.and(q), rm)
}

/// FSQRT.
pub fn fsqrt(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    data(cpu, i, |cpu, _| {
        let f = &mut cpu.state.fpu;
        let Some(v) = st0_or_underflow(f) else {
            return Ok(());
        };
        let o = sqrt_outcome(f.fcw, v);
        f.set_c1(o.up);
        if !f.signal(o.exc) {
            f.st_set(0, o.value);
        }
        Ok(())
    })
}

/// The FSQRT result for `v` under `fcw`.
pub fn sqrt_outcome(fcw: u16, v: F80) -> Outcome {
    if is_unsupported(v) {
        return Outcome::plain(INDEFINITE, sw::IE);
    }
    if is_nan(v) {
        return Outcome::plain(quiet(v), if is_snan(v) { sw::IE } else { 0 });
    }
    if is_zero(v) || (is_inf(v) && !neg_of(v)) {
        return Outcome::plain(v, 0);
    }
    if neg_of(v) {
        return Outcome::plain(INDEFINITE, sw::IE);
    }
    let de = if is_denormal(v) { sw::DE } else { 0 };
    if de & !fcw != 0 {
        return Outcome::plain(v, de);
    }
    let r = sqrt_pos(fcw, v, round_mode(fcw));
    finish(r, de, || sqrt_pos(fcw, v, Round::TowardZero).value)
}

/// FRNDINT.
pub fn frndint(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    data(cpu, i, |cpu, _| {
        let f = &mut cpu.state.fpu;
        let Some(v) = st0_or_underflow(f) else {
            return Ok(());
        };
        let o = match screen2(v, v) {
            Err(o) => o,
            Ok(de) if de & !f.fcw != 0 => Outcome::plain(v, de),
            Ok(de) => {
                let r = to_x80(v).round_to_integral(round_mode(f.fcw));
                finish(r, de, || {
                    to_x80(v).round_to_integral(Round::TowardZero).value
                })
            }
        };
        f.set_c1(o.up);
        if !f.signal(o.exc) {
            f.st_set(0, o.value);
        }
        Ok(())
    })
}

/// Both ST(0) and ST(1), or None after the stack-underflow response (ST(0) ← indefinite).
fn st0_st1(f: &mut FpuState) -> Option<(F80, F80)> {
    if f.empty(0) || f.empty(1) {
        if !f.underflow() {
            f.st_set(0, INDEFINITE);
        }
        return None;
    }
    Some((f.st_get(0), f.st_get(1)))
}

/// FSCALE: ST(0) × 2^trunc(ST(1)).
pub fn fscale(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    data(cpu, i, |cpu, _| {
        let f = &mut cpu.state.fpu;
        let Some((a, b)) = st0_st1(f) else {
            return Ok(());
        };
        let o = scale_outcome(f.fcw, a, b);
        f.set_c1(o.up);
        if !f.signal(o.exc) {
            f.st_set(0, o.value);
        }
        Ok(())
    })
}

/// The FSCALE result.
pub fn scale_outcome(fcw: u16, a: F80, b: F80) -> Outcome {
    let de = match screen2(a, b) {
        Ok(de) => de,
        Err(o) => return o,
    };
    if de & !fcw != 0 {
        return Outcome::plain(a, de);
    }
    if is_inf(b) {
        let invalid = (is_zero(a) && !neg_of(b)) || (is_inf(a) && neg_of(b));
        if invalid {
            return Outcome::plain(INDEFINITE, sw::IE | de);
        }
        let v = if is_zero(a) || is_inf(a) {
            a
        } else if neg_of(b) {
            f80(neg_of(a), 0, 0)
        } else {
            f80(neg_of(a), 0x7fff, 1 << 63)
        };
        return Outcome::plain(v, de);
    }
    if is_zero(a) || is_inf(a) {
        return Outcome::plain(a, de);
    }
    let n = {
        let t = to_x80(b).round_to_integral(Round::TowardZero).value;
        if exp_of(b) > 16383 + 20 {
            if neg_of(b) {
                -100_000
            } else {
                100_000
            }
        } else {
            let mut exact = false;
            t.to_i128_r(32, Round::TowardZero, &mut exact).value as i32
        }
    };
    let x = to_x80(a);
    let rm = round_mode(fcw);
    let r = x.scalbn_r(n, rm);
    let value = from_x80(r);
    let back = r.scalbn(-n);
    let mut exc = de;
    if r.is_infinite() || (r.is_finite() && exp_of(value) == 0x7ffe && n > 0 && !back.bitwise_eq(x))
    {
        exc |= sw::OE | sw::PE;
    } else if !back.bitwise_eq(x) {
        exc |= sw::PE;
        if exp_of(value) == 0 {
            exc |= sw::UE;
        }
    }
    let up = exc & sw::PE != 0 && from_x80(x.scalbn_r(n, Round::TowardZero)) != value;
    Outcome { value, exc, up }
}

/// FXTRACT: ST(0) ← exponent, then push the significand.
pub fn fxtract(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    data(cpu, i, |cpu, _| {
        let f = &mut cpu.state.fpu;
        if f.empty(0) {
            if !f.underflow() {
                f.st_set(0, INDEFINITE);
                f.push(INDEFINITE);
            }
            return Ok(());
        }
        if f.push_would_overflow() {
            if !f.overflow() {
                f.st_set(0, INDEFINITE);
                f.push(INDEFINITE);
            }
            return Ok(());
        }
        let v = f.st_get(0);
        let (e, s, exc) = if is_unsupported(v) {
            (INDEFINITE, INDEFINITE, sw::IE)
        } else if is_nan(v) {
            let ie = if is_snan(v) { sw::IE } else { 0 };
            (quiet(v), quiet(v), ie)
        } else if is_zero(v) {
            (f80(true, 0x7fff, 1 << 63), v, sw::ZE)
        } else if is_inf(v) {
            (f80(false, 0x7fff, 1 << 63), v, 0)
        } else {
            let (m, lsb) = unpack(v);
            let unbiased = lsb + 63;
            let ev = from_x80(X80::from_i128(i128::from(unbiased)).value);
            let de = if is_denormal(v) { sw::DE } else { 0 };
            (ev, f80(neg_of(v), 0x3fff, m), de)
        };
        f.set_c1(false);
        if f.signal(exc) {
            return Ok(());
        }
        f.st_set(0, e);
        f.push(s);
        Ok(())
    })
}

/// FPREM and FPREM1: partial remainder; C0/C3/C1 = quotient bits 2/1/0, C2 = incomplete.
pub fn fprem(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    data(cpu, i, |cpu, i| {
        let f = &mut cpu.state.fpu;
        let Some((a, b)) = st0_st1(f) else {
            // As on the host CPU: C2 (incomplete) is cleared by a masked underflow too.
            if f.fcw & sw::IE != 0 {
                f.set_cc(f.fsw & (sw::C0 | sw::C3));
            }
            return Ok(());
        };
        let nearest = i.mnemonic() == M::Fprem1;
        let (o, cc) = prem_outcome(f.fcw, a, b, nearest);
        if f.signal(o.exc) {
            return Ok(());
        }
        match cc {
            Some(cc) => f.set_cc(cc),
            // NaN or invalid operands: the host CPU clears C2 and C1, keeps C0 and C3.
            None => f.set_cc(f.fsw & (sw::C0 | sw::C3)),
        }
        f.st_set(0, o.value);
        Ok(())
    })
}

/// The FPREM/FPREM1 result and condition codes (None: codes undefined, left alone).
pub fn prem_outcome(fcw: u16, a: F80, b: F80, nearest: bool) -> (Outcome, Option<u16>) {
    let de = match screen2(a, b) {
        Ok(de) => de,
        Err(o) => return (o, None),
    };
    if is_inf(a) || is_zero(b) {
        return (Outcome::plain(INDEFINITE, sw::IE | de), None);
    }
    if de & !fcw != 0 {
        return (Outcome::plain(a, de), None);
    }
    if is_inf(b) || is_zero(a) {
        return (Outcome::plain(a, de), Some(0));
    }
    let (ma, ea) = unpack(a);
    let (mb, mut eb) = unpack(b);
    let d = ea - eb;
    let mut partial = false;
    if d >= 64 {
        let n = 32 + d % 32;
        eb += d - n;
        partial = true;
    }
    let d = ea - eb;
    let (q, rem_neg, rem, base) = if d < -1 || (d == -1 && !nearest) {
        (0u128, false, u128::from(ma), ea)
    } else {
        let base = ea.min(eb);
        let am = u128::from(ma) << (ea - base);
        let bm = u128::from(mb) << (eb - base);
        let (mut q, mut r) = (am / bm, am % bm);
        let mut neg = false;
        if nearest && !partial && (2 * r > bm || (2 * r == bm && q & 1 == 1)) {
            q += 1;
            r = bm - r;
            neg = true;
        }
        (q, neg, r, base)
    };
    let mag = Quad::from_u128(rem).value.scalbn(base);
    let mut lost = false;
    let v: X80 = mag.convert_r(Round::NearestTiesToEven, &mut lost).value;
    let mut value = from_x80(v);
    let sign = neg_of(a) != rem_neg;
    value.sign_exp = (value.sign_exp & 0x7fff) | (u16::from(sign) << 15);
    let mut cc = 0;
    if partial {
        cc |= sw::C2;
    } else {
        if q & 4 != 0 {
            cc |= sw::C0;
        }
        if q & 2 != 0 {
            cc |= sw::C3;
        }
        if q & 1 != 0 {
            cc |= sw::C1;
        }
    }
    let ue = if exp_of(value) == 0 && !is_zero(value) && fcw & sw::UE == 0 {
        sw::UE
    } else {
        0
    };
    (Outcome::plain(value, de | ue), Some(cc))
}

#[cfg(test)]
mod tests {
    use super::super::arith::nan_result;
    use super::super::arith::tests::{back, x};
    use super::*;

    #[test]
    fn sqrt_is_exact_and_rounded() {
        let o = sqrt_outcome(0x037f, x(16.0));
        assert_eq!((back(o.value), o.exc), (4.0, 0));
        let o = sqrt_outcome(0x037f, x(2.0));
        assert_eq!(o.value, f80(false, 0x3fff, 0xb504_f333_f9de_6484));
        assert_eq!(o.exc, sw::PE);
        let o = sqrt_outcome(0x027f, x(2.0));
        assert_eq!(back(o.value), 2f64.sqrt());
        assert_eq!(sqrt_outcome(0x037f, x(-1.0)).value, INDEFINITE);
    }

    #[test]
    fn remainders() {
        let (o, cc) = prem_outcome(0x037f, x(10.0), x(3.0), false);
        assert_eq!(back(o.value), 1.0);
        assert_eq!(cc, Some(sw::C3 | sw::C1)); // q = 3
        let (o, cc) = prem_outcome(0x037f, x(11.0), x(3.0), true);
        assert_eq!(back(o.value), -1.0);
        assert_eq!(cc, Some(sw::C0)); // q = 4
        let (o, cc) = prem_outcome(0x037f, x(1e300), x(3.0), false);
        assert_eq!(cc, Some(sw::C2));
        assert!(back(o.value) < 1e300);
    }

    #[test]
    fn scale_and_nan_choice() {
        let o = scale_outcome(0x037f, x(3.0), x(4.7));
        assert_eq!(back(o.value), 48.0);
        let o = scale_outcome(0x037f, x(3.0), x(-2.0));
        assert_eq!(back(o.value), 0.75);
        let q = f80(false, 0x7fff, 0xc000_0000_0000_0001);
        let s = f80(false, 0x7fff, 0x8000_0000_0000_0002);
        assert_eq!(nan_result(q, s), q);
        assert_eq!(nan_result(s, x(1.0)), quiet(s));
    }
}

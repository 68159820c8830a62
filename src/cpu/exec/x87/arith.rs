//! x87 arithmetic: FADD/FSUB/FSUBR/FMUL/FDIV/FDIVR (ST, m32/m64 real, m16/m32 integer, the
//! popping forms), FSQRT, FRNDINT, FSCALE, FXTRACT, FPREM/FPREM1, FCHS, FABS.
//!
//! Every operation is computed exactly then rounded once: with FCW.PC = 64 bits directly in the
//! 80-bit format, with PC = 24/53 bits in IEEE quad and then narrowed (quad's 113 bits are more
//! than twice 53 + 2, so the intermediate rounding cannot change the final one). Square root and
//! the remainders are computed on integers here (apfloat has neither).

use iced_x86::{Instruction, Mnemonic as M};
use rustc_apfloat::ieee::{IeeeFloat, Quad, Semantics};
use rustc_apfloat::{Float, FloatConvert, Round, Status, StatusAnd};

use super::load_store::load_operand;
use super::*;

/// 24-bit significand, x87 exponent range (FCW.PC = 00).
pub struct Pc24S;
impl Semantics for Pc24S {
    const BITS: usize = 39;
    const EXP_BITS: usize = 15;
}
/// 53-bit significand, x87 exponent range (FCW.PC = 10).
pub struct Pc53S;
impl Semantics for Pc53S {
    const BITS: usize = 68;
    const EXP_BITS: usize = 15;
}

/// The four basic operations.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Op {
    /// a + b
    Add,
    /// a - b
    Sub,
    /// a * b
    Mul,
    /// a / b
    Div,
}

fn apply<T: Float>(op: Op, a: T, b: T, rm: Round) -> StatusAnd<T> {
    match op {
        Op::Add => a.add_r(b, rm),
        Op::Sub => a.sub_r(b, rm),
        Op::Mul => a.mul_r(b, rm),
        Op::Div => a.div_r(b, rm),
    }
}

fn narrow<S: Semantics>(q: StatusAnd<Quad>, rm: Round) -> StatusAnd<X80>
where
    Quad: FloatConvert<IeeeFloat<S>>,
    IeeeFloat<S>: FloatConvert<X80>,
{
    let mut lost = false;
    let t = q.value.convert_r(rm, &mut lost);
    let x = t.value.convert(&mut lost).value;
    (q.status | t.status).and(x)
}

/// Round an exact quad value to the precision FCW.PC selects.
pub fn round_quad(fcw: u16, q: StatusAnd<Quad>, rm: Round) -> StatusAnd<X80> {
    match (fcw >> 8) & 3 {
        0 => narrow::<Pc24S>(q, rm),
        2 => narrow::<Pc53S>(q, rm),
        _ => {
            let mut lost = false;
            let t: StatusAnd<X80> = q.value.convert_r(rm, &mut lost);
            (q.status | t.status).and(t.value)
        }
    }
}

fn compute_rm(fcw: u16, op: Op, a: F80, b: F80, rm: Round) -> StatusAnd<X80> {
    if (fcw >> 8) & 3 == 3 || (fcw >> 8) & 3 == 1 {
        apply(op, to_x80(a), to_x80(b), rm)
    } else {
        round_quad(fcw, apply(op, to_quad(a), to_quad(b), rm), rm)
    }
}

/// The NaN an operation on `a` and `b` (at least one a NaN) returns, quieted.
pub fn nan_result(a: F80, b: F80) -> F80 {
    let pick = match (is_nan(a), is_nan(b)) {
        (true, false) => a,
        (false, true) => b,
        _ if is_snan(a) != is_snan(b) => {
            if is_snan(a) {
                b
            } else {
                a
            }
        }
        _ if a.mant << 1 != b.mant << 1 => {
            if a.mant << 1 > b.mant << 1 {
                a
            } else {
                b
            }
        }
        _ if a.sign_exp <= b.sign_exp => a,
        _ => b,
    };
    quiet(pick)
}

/// Result of an arithmetic core: the value, exception bits and whether it was rounded up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The (masked-response) result.
    pub value: F80,
    /// FSW exception bits raised.
    pub exc: u16,
    /// C1: the result was rounded away from zero.
    pub up: bool,
}

impl Outcome {
    fn plain(value: F80, exc: u16) -> Self {
        Outcome {
            value,
            exc,
            up: false,
        }
    }
}

/// Checks shared by two-operand operations: unsupported encodings, NaNs, denormals. Returns
/// the outcome when it is already decided, plus DE bits to add otherwise.
pub fn screen2(a: F80, b: F80) -> Result<u16, Outcome> {
    if is_unsupported(a) || is_unsupported(b) {
        return Err(Outcome::plain(INDEFINITE, sw::IE));
    }
    if is_nan(a) || is_nan(b) {
        let ie = if is_snan(a) || is_snan(b) { sw::IE } else { 0 };
        return Err(Outcome::plain(nan_result(a, b), ie));
    }
    Ok(if is_denormal(a) || is_denormal(b) {
        sw::DE
    } else {
        0
    })
}

/// Finish an apfloat result: invalid → indefinite, flags, C1 by comparing with truncation.
fn finish(r: StatusAnd<X80>, de: u16, truncated: impl FnOnce() -> X80) -> Outcome {
    if r.status.contains(Status::INVALID_OP) {
        return Outcome::plain(INDEFINITE, sw::IE | de);
    }
    let value = from_x80(r.value);
    let up = r.status.contains(Status::INEXACT) && from_x80(truncated()) != value;
    Outcome {
        value,
        exc: status_bits(r.status) | de,
        up,
    }
}

/// `a op b` under FCW (rounding and precision control), with x87's NaN and denormal rules.
/// `src_de` adds DE for a denormal memory operand in its own format.
pub fn compute(fcw: u16, op: Op, a: F80, b: F80, src_de: bool) -> Outcome {
    let de = match screen2(a, b) {
        Ok(de) => de | if src_de { sw::DE } else { 0 },
        Err(o) => return o,
    };
    let rm = round_mode(fcw);
    let mut r = compute_rm(fcw, op, a, b, rm);
    // Invalid operation and zero divide rank above the denormal operand: DE is not reported.
    let de = if r
        .status
        .intersects(Status::INVALID_OP | Status::DIV_BY_ZERO)
    {
        0
    } else {
        de
    };
    if de & !fcw & sw::DE != 0 {
        return Outcome::plain(a, de);
    }
    // apfloat reports a directed rounding to the largest finite value as merely inexact; x87
    // (IEEE) calls it an overflow. Rounding to nearest tells whether the exact value is that big.
    if r.status == Status::INEXACT
        && exp_of(from_x80(r.value)) == 0x7ffe
        && compute_rm(fcw, op, a, b, Round::NearestTiesToEven)
            .value
            .is_infinite()
    {
        r.status |= Status::OVERFLOW;
    }
    finish(r, de, || compute_rm(fcw, op, a, b, Round::TowardZero).value)
}

/// FADD/FSUB/FSUBR/FMUL/FDIV/FDIVR in all their forms.
pub fn arith(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    data(cpu, i, arith_body)
}

fn arith_body(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let m = i.mnemonic();
    let (op, rev) = match m {
        M::Fadd | M::Faddp | M::Fiadd => (Op::Add, false),
        M::Fsub | M::Fsubp | M::Fisub => (Op::Sub, false),
        M::Fsubr | M::Fsubrp | M::Fisubr => (Op::Sub, true),
        M::Fmul | M::Fmulp | M::Fimul => (Op::Mul, false),
        M::Fdiv | M::Fdivp | M::Fidiv => (Op::Div, false),
        _ => (Op::Div, true),
    };
    let pop = matches!(
        m,
        M::Faddp | M::Fsubp | M::Fsubrp | M::Fmulp | M::Fdivp | M::Fdivrp
    );
    let (dst, src, src_de) = if (0..i.op_count()).any(|n| is_mem(i, n)) {
        let (v, de) = load_operand(cpu, i)?;
        (0, Some(v), de)
    } else if i.op_count() >= 2 {
        (st_reg(i.op0_register()), None, false)
    } else {
        (1, None, false)
    };
    let f = &mut cpu.state.fpu;
    let src_i = if i.op_count() >= 2 && src.is_none() {
        st_reg(i.op1_register())
    } else {
        0
    };
    if f.empty(dst) || (src.is_none() && f.empty(src_i)) {
        if f.underflow() {
            return Ok(());
        }
        f.st_set(dst, INDEFINITE);
        if pop {
            f.pop();
        }
        return Ok(());
    }
    let a = f.st_get(dst);
    let b = src.unwrap_or_else(|| f.st_get(src_i));
    let (x, y) = if rev { (b, a) } else { (a, b) };
    let o = compute(f.fcw, op, x, y, src_de);
    f.set_c1(o.up);
    if f.signal(o.exc) {
        return Ok(());
    }
    f.st_set(dst, o.value);
    if pop {
        f.pop();
    }
    Ok(())
}

/// Read ST(0) for a one-operand instruction; None (after a masked or unmasked underflow
/// response) when it is empty. With a masked underflow ST(0) becomes the indefinite.
fn st0_or_underflow(f: &mut FpuState) -> Option<F80> {
    if f.empty(0) {
        if !f.underflow() {
            f.st_set(0, INDEFINITE);
        }
        return None;
    }
    Some(f.st_get(0))
}

/// FCHS and FABS.
pub fn fchs_fabs(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    data(cpu, i, |cpu, i| {
        let f = &mut cpu.state.fpu;
        let Some(v) = st0_or_underflow(f) else {
            return Ok(());
        };
        let se = if i.mnemonic() == M::Fchs {
            v.sign_exp ^ 0x8000
        } else {
            v.sign_exp & 0x7fff
        };
        f.set_c1(false);
        f.st_set(0, F80 { sign_exp: se, ..v });
        Ok(())
    })
}

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
    use super::*;

    fn x(v: f64) -> F80 {
        let mut lost = false;
        let d = rustc_apfloat::ieee::Double::from_bits(u128::from(v.to_bits()));
        from_x80(d.convert(&mut lost).value)
    }

    fn back(v: F80) -> f64 {
        let mut lost = false;
        let d: rustc_apfloat::ieee::Double = to_x80(v).convert(&mut lost).value;
        f64::from_bits(d.to_bits() as u64)
    }

    #[test]
    fn basic_ops_and_flags() {
        let o = compute(0x037f, Op::Add, x(1.5), x(2.25), false);
        assert_eq!((back(o.value), o.exc), (3.75, 0));
        let o = compute(0x037f, Op::Div, x(1.0), x(3.0), false);
        assert_eq!(o.value, f80(false, 0x3ffd, 0xaaaa_aaaa_aaaa_aaab));
        assert_eq!(o.exc, sw::PE);
        assert!(o.up);
        let o = compute(0x037f, Op::Div, x(1.0), x(0.0), false);
        assert_eq!((is_inf(o.value), o.exc), (true, sw::ZE));
        let o = compute(0x037f, Op::Sub, x(f64::INFINITY), x(f64::INFINITY), false);
        assert_eq!((o.value, o.exc), (INDEFINITE, sw::IE));
    }

    #[test]
    fn precision_control_rounds_significand() {
        // PC = 53 bits: 1/3 as a double.
        let o = compute(0x027f, Op::Div, x(1.0), x(3.0), false);
        assert_eq!(back(o.value), 1.0 / 3.0);
        assert_eq!(o.value.mant & 0x7ff, 0);
        // PC = 24 bits, round toward zero.
        let o = compute(0x0c7f, Op::Div, x(1.0), x(3.0), false);
        assert_eq!(o.value.mant, 0xaaaa_aa00_0000_0000);
        assert!(!o.up);
    }

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

//! x87 arithmetic: FADD/FSUB/FSUBR/FMUL/FDIV/FDIVR (ST, m32/m64 real, m16/m32 integer, the
//! popping forms), FCHS, FABS; the operations on one value's parts are in `special`.
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
    pub(super) fn plain(value: F80, exc: u16) -> Self {
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
pub(super) fn finish(r: StatusAnd<X80>, de: u16, truncated: impl FnOnce() -> X80) -> Outcome {
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
pub(super) fn st0_or_underflow(f: &mut FpuState) -> Option<F80> {
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// `v` as an 80-bit value.
    pub(crate) fn x(v: f64) -> F80 {
        let mut lost = false;
        let d = rustc_apfloat::ieee::Double::from_bits(u128::from(v.to_bits()));
        from_x80(d.convert(&mut lost).value)
    }

    /// `v` rounded to an f64.
    pub(crate) fn back(v: F80) -> f64 {
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
}

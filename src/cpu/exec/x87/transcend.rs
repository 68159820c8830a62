//! x87 transcendental instructions: FSIN, FCOS, FSINCOS, FPTAN, FPATAN, F2XM1, FYL2X, FYL2XP1.
//!
//! These convert their operands to `f64`, use the host's math library and widen the result
//! back: results carry at most 53 significant bits and are **not** bit-exact with a real x87
//! (which computes with a 66-bit π and more internal precision). PE is always reported for a
//! finite nonzero result. They are left out of the differential test for this reason.

use iced_x86::{Instruction, Mnemonic as M};
use rustc_apfloat::ieee::Double;
use rustc_apfloat::{Float, FloatConvert};

use super::arith::nan_result;
use super::load_store::int_f80;
use super::*;

fn to_f64(v: F80) -> f64 {
    let mut lost = false;
    let d: Double = to_x80(v).convert(&mut lost).value;
    f64::from_bits(d.to_bits() as u64)
}

fn from_f64(v: f64) -> F80 {
    if v.is_nan() {
        return INDEFINITE;
    }
    let mut lost = false;
    from_x80(
        Double::from_bits(u128::from(v.to_bits()))
            .convert(&mut lost)
            .value,
    )
}

/// Result bits for a computed value: PE unless it is exact-looking (zero, infinite).
fn result(v: f64) -> (F80, u16) {
    if v.is_nan() {
        (INDEFINITE, sw::IE)
    } else if v == 0.0 || v.is_infinite() {
        (from_f64(v), 0)
    } else {
        (from_f64(v), sw::PE)
    }
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
        let (x, y) = (to_f64(a), to_f64(b));
        if matches!(m, M::Fsin | M::Fcos | M::Fsincos | M::Fptan) {
            if exp_of(a) >= 0x3fff + 63 && !is_inf(a) {
                // Out of range: C2 = 1, operand unchanged.
                f.set_cc((f.fsw & (sw::C0 | sw::C3)) | sw::C2);
                return Ok(());
            }
            if is_inf(a) {
                if !f.signal(sw::IE) {
                    f.st_set(0, INDEFINITE);
                    if pushes {
                        f.push(INDEFINITE);
                    }
                }
                return Ok(());
            }
        }
        let (r0, e0) = match m {
            M::Fsin => result(x.sin()),
            M::Fcos => result(x.cos()),
            M::Fsincos => result(x.sin()),
            M::Fptan => result(x.tan()),
            M::F2xm1 => result(x.exp2() - 1.0),
            M::Fpatan => result(y.atan2(x)),
            M::Fyl2x => {
                if x < 0.0 {
                    (INDEFINITE, sw::IE)
                } else if x == 0.0 && y != 0.0 && !y.is_infinite() {
                    (from_f64(-y.signum() * f64::INFINITY), sw::ZE)
                } else {
                    result(y * x.log2())
                }
            }
            _ => result(y * x.ln_1p() / std::f64::consts::LN_2),
        };
        let e0 = e0 | de;
        f.set_c1(false);
        if f.signal(e0) {
            return Ok(());
        }
        f.set_cc(f.fsw & (sw::C0 | sw::C3));
        match m {
            M::Fsincos => {
                let (c, _) = result(x.cos());
                f.st_set(0, r0);
                f.push(c);
            }
            M::Fptan => {
                f.st_set(0, r0);
                f.push(int_f80(1));
            }
            M::Fpatan | M::Fyl2x | M::Fyl2xp1 => {
                f.st_set(1, r0);
                f.pop();
            }
            _ => f.st_set(0, r0),
        }
        Ok(())
    })
}

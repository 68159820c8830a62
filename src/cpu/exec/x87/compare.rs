//! x87 comparisons: FCOM/FCOMP/FCOMPP, FUCOM/FUCOMP/FUCOMPP, FICOM/FICOMP (condition codes
//! C3/C2/C0), FCOMI/FCOMIP/FUCOMI/FUCOMIP (ZF/PF/CF in EFLAGS), FTST and FXAM.
//!
//! The ordered forms (FCOM, FICOM, FCOMI, FTST) raise IE for any NaN; the unordered ones
//! (FUCOM*) only for signaling NaNs. An unmasked IE or DE leaves the codes and the stack alone.

use std::cmp::Ordering;

use iced_x86::{Instruction, Mnemonic as M};

use super::load_store::load_operand;
use super::*;
use crate::cpu::flags::{AF, CF, OF, PF, SF, ZF};

/// Comparison result as C3/C2/C0 bits, and exception bits.
pub fn compare(a: F80, b: F80, quiet_nans: bool, src_de: bool) -> (u16, u16) {
    const UNORD: u16 = sw::C3 | sw::C2 | sw::C0;
    if is_unsupported(a) || is_unsupported(b) {
        return (UNORD, sw::IE);
    }
    if is_nan(a) || is_nan(b) {
        let ie = !quiet_nans || is_snan(a) || is_snan(b);
        return (UNORD, if ie { sw::IE } else { 0 });
    }
    let de = if is_denormal(a) || is_denormal(b) || src_de {
        sw::DE
    } else {
        0
    };
    let cc = match to_x80(a).partial_cmp(&to_x80(b)) {
        Some(Ordering::Greater) => 0,
        Some(Ordering::Less) => sw::C0,
        Some(Ordering::Equal) => sw::C3,
        None => UNORD,
    };
    (cc, de)
}

/// FCOM, FCOMP, FCOMPP, FUCOM, FUCOMP, FUCOMPP, FICOM, FICOMP.
pub fn fcom(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    data(cpu, i, |cpu, i| {
        let m = i.mnemonic();
        let pops = match m {
            M::Fcompp | M::Fucompp => 2,
            M::Fcomp | M::Fucomp | M::Ficomp => 1,
            _ => 0,
        };
        let quiet_nans = matches!(m, M::Fucom | M::Fucomp | M::Fucompp);
        let mem = (0..i.op_count()).any(|n| is_mem(i, n));
        let (src, src_de) = if mem {
            let (v, de) = load_operand(cpu, i)?;
            (Some(v), de)
        } else {
            (None, false)
        };
        let f = &mut cpu.state.fpu;
        let k = if i.op_count() >= 2 {
            st_reg(i.op1_register())
        } else {
            1
        };
        if f.empty(0) || (src.is_none() && f.empty(k)) {
            if f.underflow() {
                return Ok(());
            }
            f.set_cc(sw::C3 | sw::C2 | sw::C0);
        } else {
            let b = src.unwrap_or_else(|| f.st_get(k));
            let (cc, exc) = compare(f.st_get(0), b, quiet_nans, src_de);
            if f.signal(exc) {
                return Ok(());
            }
            f.set_cc(cc);
        }
        for _ in 0..pops {
            f.pop();
        }
        Ok(())
    })
}

/// FCOMI, FCOMIP, FUCOMI, FUCOMIP: the result in ZF/PF/CF (OF, SF, AF cleared).
pub fn fcomi(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    data(cpu, i, |cpu, i| {
        let m = i.mnemonic();
        let pop = matches!(m, M::Fcomip | M::Fucomip);
        let quiet_nans = matches!(m, M::Fucomi | M::Fucomip);
        let f = &mut cpu.state.fpu;
        let k = st_reg(i.op1_register());
        let cc = if f.empty(0) || f.empty(k) {
            if f.underflow() {
                return Ok(());
            }
            sw::C3 | sw::C2 | sw::C0
        } else {
            // C1 is left alone here (the host CPU does).
            let (cc, exc) = compare(f.st_get(0), f.st_get(k), quiet_nans, false);
            if f.signal(exc) {
                return Ok(());
            }
            cc
        };
        if pop {
            f.pop();
        }
        let mut v = 0;
        if cc & sw::C3 != 0 {
            v |= ZF;
        }
        if cc & sw::C2 != 0 {
            v |= PF;
        }
        if cc & sw::C0 != 0 {
            v |= CF;
        }
        cpu.state.flags.set_arith(CF | PF | AF | ZF | SF | OF, v);
        Ok(())
    })
}

/// FTST: compare ST(0) with +0.0.
pub fn ftst(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    data(cpu, i, |cpu, _| {
        let f = &mut cpu.state.fpu;
        if f.empty(0) {
            if !f.underflow() {
                f.set_cc(sw::C3 | sw::C2 | sw::C0);
            }
            return Ok(());
        }
        let (cc, exc) = compare(f.st_get(0), f80(false, 0, 0), false, false);
        if !f.signal(exc) {
            f.set_cc(cc);
        }
        Ok(())
    })
}

/// The FXAM class of `v` (C3/C2/C0) with C1 = its sign.
pub fn classify(v: F80, empty: bool) -> u16 {
    let class = if empty {
        sw::C3 | sw::C0
    } else if is_unsupported(v) {
        0
    } else if is_nan(v) {
        sw::C0
    } else if is_inf(v) {
        sw::C2 | sw::C0
    } else if is_zero(v) {
        sw::C3
    } else if is_denormal(v) {
        sw::C3 | sw::C2
    } else {
        sw::C2
    };
    class | if neg_of(v) { sw::C1 } else { 0 }
}

/// FXAM.
pub fn fxam(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    data(cpu, i, |cpu, _| {
        let f = &mut cpu.state.fpu;
        let cc = classify(f.st_get(0), f.empty(0));
        f.set_cc(cc);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::super::load_store::int_f80;
    use super::*;

    #[test]
    fn compare_codes() {
        let (one, two) = (int_f80(1), int_f80(2));
        assert_eq!(compare(two, one, false, false), (0, 0));
        assert_eq!(compare(one, two, false, false), (sw::C0, 0));
        assert_eq!(compare(one, one, false, false), (sw::C3, 0));
        let z = f80(true, 0, 0);
        assert_eq!(compare(z, f80(false, 0, 0), false, false).0, sw::C3);
        let u = sw::C3 | sw::C2 | sw::C0;
        assert_eq!(compare(INDEFINITE, one, false, false), (u, sw::IE));
        assert_eq!(compare(INDEFINITE, one, true, false), (u, 0));
    }

    #[test]
    fn fxam_classes() {
        assert_eq!(classify(int_f80(-3), false), sw::C2 | sw::C1);
        assert_eq!(classify(F80::default(), true), sw::C3 | sw::C0);
        assert_eq!(classify(INDEFINITE, false), sw::C0 | sw::C1);
        assert_eq!(classify(f80(false, 0, 1), false), sw::C3 | sw::C2);
    }
}

//! x87 data movement: FLD/FST/FSTP (m32/m64/m80/ST(i)), FILD/FIST/FISTP/FISTTP (m16/m32/m64),
//! FBLD/FBSTP (m80 packed BCD), the constants (FLD1, FLDZ, FLDPI, FLDL2E, FLDL2T, FLDLG2,
//! FLDLN2, rounded per FCW.RC), FXCH and FCMOVcc.
//!
//! Stores compute their result and exception bits first, write memory (which may fault, leaving
//! the FPU untouched), and only then update FSW and pop.

use iced_x86::{Instruction, MemorySize, Mnemonic as M};
use rustc_apfloat::ieee::{Double, Single};
use rustc_apfloat::{Float, FloatConvert, Round, Status};

use super::*;

/// Widen an IEEE single/double (bits, fraction width `frac`, exponent width `ew`) to F80.
/// NaNs keep their payload and their signaling-ness; the flag says the input was denormal.
fn widen<T: Float + FloatConvert<X80>>(bits: u64, frac: u32, ew: u32) -> (F80, bool) {
    let emax = (1u64 << ew) - 1;
    let e = (bits >> frac) & emax;
    let fr = bits & ((1u64 << frac) - 1);
    let neg = bits >> (frac + ew) != 0;
    if e == emax && fr != 0 {
        return (f80(neg, 0x7fff, (1 << 63) | (fr << (63 - frac))), false);
    }
    let mut lost = false;
    let v: X80 = T::from_bits(u128::from(bits)).convert(&mut lost).value;
    (from_x80(v), e == 0 && fr != 0)
}

/// The memory operand of a load or arithmetic instruction as an F80, and whether it was a
/// denormal in its own format.
pub fn load_operand(cpu: &mut Cpu, i: &Instruction) -> Res<(F80, bool)> {
    Ok(match i.memory_size() {
        MemorySize::Float32 => widen::<Single>(read_mem(cpu, i, 0, 4)?, 23, 8),
        MemorySize::Float64 => widen::<Double>(read_mem(cpu, i, 0, 8)?, 52, 11),
        MemorySize::Float80 => (read_m80(cpu, i, 0)?, false),
        MemorySize::Int16 => (int_f80(i128::from(read_mem(cpu, i, 0, 2)? as i16)), false),
        MemorySize::Int32 => (int_f80(i128::from(read_mem(cpu, i, 0, 4)? as i32)), false),
        _ => (int_f80(i128::from(read_mem(cpu, i, 0, 8)? as i64)), false),
    })
}

/// An integer as an (exact) F80.
pub fn int_f80(v: i128) -> F80 {
    from_x80(X80::from_i128(v).value)
}

/// Push `v` with the stack-overflow check (masked: the indefinite is pushed instead).
fn push_checked(f: &mut FpuState, v: F80, exc: u16) {
    if f.push_would_overflow() {
        if !f.overflow() {
            f.push(INDEFINITE);
        }
        return;
    }
    f.set_c1(false);
    if !f.signal(exc) {
        f.push(v);
    }
}

/// FLD m32/m64/m80/ST(i).
pub fn fld(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    data(cpu, i, |cpu, i| {
        if is_mem(i, 0) {
            let (v, de) = load_operand(cpu, i)?;
            let wide = i.memory_size() == MemorySize::Float80;
            let (v, mut exc) = if !wide && is_snan(v) {
                (quiet(v), sw::IE)
            } else {
                (v, 0)
            };
            if de {
                exc |= sw::DE;
            }
            push_checked(&mut cpu.state.fpu, v, exc);
            return Ok(());
        }
        let f = &mut cpu.state.fpu;
        let src = st_reg(i.op0_register());
        if f.empty(src) {
            // An empty source is reported as underflow (C1 = 0) even when ST(7) is full too.
            if !f.underflow() {
                f.push(INDEFINITE);
            }
            return Ok(());
        }
        let v = f.st_get(src);
        push_checked(f, v, 0);
        Ok(())
    })
}

/// FILD m16/m32/m64.
pub fn fild(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    data(cpu, i, |cpu, i| {
        let (v, _) = load_operand(cpu, i)?;
        push_checked(&mut cpu.state.fpu, v, 0);
        Ok(())
    })
}

/// Narrow an F80 to a single or double (bits), with exception bits and the rounded-up flag.
fn narrow_to<T: Float>(v: F80, fcw: u16, frac: u32, ew: u32) -> (u64, u16, bool)
where
    X80: FloatConvert<T>,
{
    let sign = u64::from(neg_of(v)) << (frac + ew);
    let emax = (1u64 << ew) - 1;
    if is_unsupported(v) {
        return (sign_indef(frac, ew), sw::IE, false);
    }
    if is_nan(v) {
        let payload = (v.mant << 1) >> (64 - frac);
        let bits = sign | (emax << frac) | payload | (1 << (frac - 1));
        return (bits, if is_snan(v) { sw::IE } else { 0 }, false);
    }
    let mut lost = false;
    let mut r = to_x80(v).convert_r(round_mode(fcw), &mut lost);
    let bits = r.value.to_bits() as u64;
    // A directed rounding down to the largest finite value is an overflow too (apfloat only
    // says inexact): the exponent is at least the format's 2^(emax+1).
    let emax_unbiased = (1i32 << (ew - 1)) - 1;
    let e = i32::from(exp_of(v)) - 16383;
    if r.status == Status::INEXACT && r.value.is_finite() && e > emax_unbiased {
        r.status |= Status::OVERFLOW;
    }
    let up = r.status.contains(Status::INEXACT) && {
        let t: T = to_x80(v).convert_r(Round::TowardZero, &mut lost).value;
        t.to_bits() as u64 != bits
    };
    (bits, status_bits(r.status), up)
}

fn sign_indef(frac: u32, ew: u32) -> u64 {
    let emax = (1u64 << ew) - 1;
    (1 << (frac + ew)) | (emax << frac) | (1 << (frac - 1))
}

/// FST/FSTP m32/m64/m80/ST(i).
pub fn fst(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    data(cpu, i, |cpu, i| {
        let pop = i.mnemonic() == M::Fstp;
        let fcw = cpu.state.fpu.fcw;
        let empty = cpu.state.fpu.empty(0);
        let v = cpu.state.fpu.st_get(0);
        if !is_mem(i, 0) {
            let f = &mut cpu.state.fpu;
            let dst = st_reg(i.op0_register());
            let v = if empty {
                if f.underflow() {
                    return Ok(());
                }
                INDEFINITE
            } else {
                f.set_c1(false);
                v
            };
            f.st_set(dst, v);
            if pop {
                f.pop();
            }
            return Ok(());
        }
        let size = i.memory_size();
        let (bits, exc, up) = if empty {
            let b = match size {
                MemorySize::Float32 => sign_indef(23, 8),
                MemorySize::Float64 => sign_indef(52, 11),
                _ => 0,
            };
            (b, sw::IE | sw::SF, false)
        } else {
            match size {
                MemorySize::Float32 => narrow_to::<Single>(v, fcw, 23, 8),
                MemorySize::Float64 => narrow_to::<Double>(v, fcw, 52, 11),
                _ => (0, 0, false),
            }
        };
        let blocked = exc & (sw::IE | sw::OE | sw::UE) & !fcw != 0;
        if !blocked {
            match size {
                MemorySize::Float32 => write_mem(cpu, i, 0, 4, bits)?,
                MemorySize::Float64 => write_mem(cpu, i, 0, 8, bits)?,
                _ => write_m80(cpu, i, 0, if empty { INDEFINITE } else { v })?,
            }
        }
        let f = &mut cpu.state.fpu;
        f.set_c1(up);
        if f.signal(exc) || blocked {
            return Ok(());
        }
        if pop {
            f.pop();
        }
        Ok(())
    })
}

/// Round `v` to an integer of `bits` bits: value, exception bits, rounded up.
pub fn to_int(v: F80, bits: usize, rm: Round) -> (i128, u16, bool) {
    let indef = -(1i128 << (bits - 1));
    if is_unsupported(v) || is_nan(v) || is_inf(v) {
        return (indef, sw::IE, false);
    }
    let de = if is_denormal(v) { sw::DE } else { 0 };
    let mut exact = false;
    let r = to_x80(v).to_i128_r(bits, rm, &mut exact);
    if r.status.contains(Status::INVALID_OP) {
        return (indef, sw::IE | de, false);
    }
    let t = to_x80(v)
        .to_i128_r(bits, Round::TowardZero, &mut exact)
        .value;
    let pe = if r.status.contains(Status::INEXACT) {
        sw::PE
    } else {
        0
    };
    (r.value, pe | de, pe != 0 && t != r.value)
}

/// FIST/FISTP/FISTTP m16/m32/m64.
pub fn fist(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    data(cpu, i, |cpu, i| {
        let m = i.mnemonic();
        let pop = m != M::Fist;
        let size = i.memory_size().size();
        let f = &cpu.state.fpu;
        let rm = if m == M::Fisttp {
            Round::TowardZero
        } else {
            round_mode(f.fcw)
        };
        let (val, exc, up) = if f.empty(0) {
            (-(1i128 << (size * 8 - 1)), sw::IE | sw::SF, false)
        } else {
            to_int(f.st_get(0), size * 8, rm)
        };
        // DE is not reported by integer stores.
        let exc = exc & !sw::DE;
        let blocked = exc & sw::IE & !f.fcw != 0;
        if !blocked {
            write_mem(cpu, i, 0, size, val as u64)?;
        }
        let f = &mut cpu.state.fpu;
        f.set_c1(up);
        if f.signal(exc) {
            return Ok(());
        }
        if pop {
            f.pop();
        }
        Ok(())
    })
}

/// FBLD m80 packed BCD.
pub fn fbld(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    data(cpu, i, |cpu, i| {
        let raw = read_m80(cpu, i, 0)?;
        let mut v: i128 = 0;
        for k in (0..9).rev() {
            let byte = if k < 8 {
                (raw.mant >> (8 * k)) as u8
            } else {
                raw.sign_exp as u8
            };
            v = v * 100 + i128::from(byte >> 4) * 10 + i128::from(byte & 0xf);
        }
        let neg = raw.sign_exp & 0x8000 != 0;
        let mut x = int_f80(v);
        if neg {
            x.sign_exp |= 0x8000;
        }
        push_checked(&mut cpu.state.fpu, x, 0);
        Ok(())
    })
}

/// FBSTP m80 packed BCD.
pub fn fbstp(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    data(cpu, i, |cpu, i| {
        let f = &cpu.state.fpu;
        let (out, exc, up) = if f.empty(0) {
            (INDEFINITE, sw::IE | sw::SF, false)
        } else {
            let v = f.st_get(0);
            let (n, exc, up) = to_int(v, 64, round_mode(f.fcw));
            if exc & sw::IE != 0 || n.unsigned_abs() >= 1_000_000_000_000_000_000 {
                (INDEFINITE, (exc & sw::DE) | sw::IE, false)
            } else {
                let mut mag = n.unsigned_abs();
                let (mut mant, mut hi) = (0u64, 0u16);
                for k in 0..9 {
                    let lo = (mag % 10) as u8;
                    mag /= 10;
                    let hi_d = (mag % 10) as u8;
                    mag /= 10;
                    let b = (hi_d << 4) | lo;
                    if k < 8 {
                        mant |= u64::from(b) << (8 * k);
                    } else {
                        hi = u16::from(b);
                    }
                }
                if neg_of(v) {
                    hi |= 0x8000;
                }
                (F80 { mant, sign_exp: hi }, exc & !sw::DE, up)
            }
        };
        let blocked = exc & sw::IE & !f.fcw != 0;
        if !blocked {
            write_m80(cpu, i, 0, out)?;
        }
        let f = &mut cpu.state.fpu;
        f.set_c1(up);
        if f.signal(exc) {
            return Ok(());
        }
        f.pop();
        Ok(())
    })
}

/// A constant's exponent, 64-bit significand truncated, and whether the bits below it are
/// above one half (so round-to-nearest rounds up).
fn constant(m: M) -> (u16, u64, bool) {
    match m {
        M::Fld1 => (0x3fff, 1 << 63, false),
        M::Fldz => (0, 0, false),
        M::Fldpi => (0x4000, 0xc90f_daa2_2168_c234, true),
        M::Fldl2e => (0x3fff, 0xb8aa_3b29_5c17_f0bb, true),
        M::Fldl2t => (0x4000, 0xd49a_784b_cd1b_8afe, false),
        M::Fldlg2 => (0x3ffd, 0x9a20_9a84_fbcf_f798, true),
        _ => (0x3ffe, 0xb172_17f7_d1cf_79ab, true),
    }
}

/// FLD1, FLDZ, FLDPI, FLDL2E, FLDL2T, FLDLG2, FLDLN2.
pub fn fldc(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    data(cpu, i, |cpu, i| {
        let f = &mut cpu.state.fpu;
        let (e, mant, above_half) = constant(i.mnemonic());
        let inexact = !matches!(i.mnemonic(), M::Fld1 | M::Fldz);
        let up = inexact
            && match round_mode(f.fcw) {
                Round::TowardPositive => true,
                Round::NearestTiesToEven => above_half,
                _ => false,
            };
        push_checked(f, f80(false, e, mant + u64::from(up)), 0);
        Ok(())
    })
}

/// FXCH ST(i) (ST(1) without operand).
pub fn fxch(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    data(cpu, i, |cpu, i| {
        let f = &mut cpu.state.fpu;
        let k = if i.op_count() >= 2 {
            st_reg(i.op1_register())
        } else {
            1
        };
        if f.empty(0) || f.empty(k) {
            if f.underflow() {
                return Ok(());
            }
            for r in [0, k] {
                if f.empty(r) {
                    f.st_set(r, INDEFINITE);
                }
            }
        } else {
            f.set_c1(false);
        }
        let (a, b) = (f.st_get(0), f.st_get(k));
        f.st_set(0, b);
        f.st_set(k, a);
        Ok(())
    })
}

/// FCMOVB/E/BE/U and their negations: ST(0) ← ST(i) if the EFLAGS condition holds.
pub fn fcmov(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    data(cpu, i, |cpu, i| {
        let fl = &cpu.state.flags;
        let cond = match i.mnemonic() {
            M::Fcmovb => fl.cf(),
            M::Fcmove => fl.zf(),
            M::Fcmovbe => fl.cf() || fl.zf(),
            M::Fcmovu => fl.pf(),
            M::Fcmovnb => !fl.cf(),
            M::Fcmovne => !fl.zf(),
            M::Fcmovnbe => !(fl.cf() || fl.zf()),
            _ => !fl.pf(),
        };
        let f = &mut cpu.state.fpu;
        let k = st_reg(i.op1_register());
        if f.empty(0) || f.empty(k) {
            if !f.underflow() {
                f.st_set(0, INDEFINITE);
            }
            return Ok(());
        }
        // C1 is left alone (the host CPU does; only an underflow clears it).
        if cond {
            let v = f.st_get(k);
            f.st_set(0, v);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widen_and_narrow() {
        let (v, de) = widen::<Single>(0x3fc0_0000, 23, 8);
        assert_eq!((v, de), (f80(false, 0x3fff, 0xc000_0000_0000_0000), false));
        let (v, de) = widen::<Single>(1, 23, 8);
        assert!(de);
        assert_eq!(exp_of(v), 0x3fff - 149);
        let (s, _) = widen::<Single>(0x7f80_0001, 23, 8);
        assert!(is_snan(s));
        let (b, exc, _) = narrow_to::<Single>(s, 0x037f, 23, 8);
        assert_eq!((b, exc), (0x7fc0_0001, sw::IE));
        let (b, exc, up) = narrow_to::<Double>(int_f80(3), 0x037f, 52, 11);
        assert_eq!((b, exc, up), (3f64.to_bits(), 0, false));
        assert_eq!(sign_indef(52, 11), 0xfff8_0000_0000_0000);
    }

    #[test]
    fn integer_rounding() {
        let half = f80(false, 0x3fff, 0xc000_0000_0000_0000); // 1.5
        assert_eq!(
            to_int(half, 16, Round::NearestTiesToEven),
            (2, sw::PE, true)
        );
        assert_eq!(to_int(half, 16, Round::TowardZero), (1, sw::PE, false));
        assert_eq!(to_int(int_f80(40000), 16, Round::TowardZero).1, sw::IE);
        assert_eq!(to_int(INDEFINITE, 32, Round::TowardZero).0, -(1 << 31));
    }
}

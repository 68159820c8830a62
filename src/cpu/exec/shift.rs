//! Shifts and rotates: SHL/SAL/SHR/SAR/ROL/ROR/RCL/RCR/SHLD/SHRD. Counts are masked to 5 bits
//! (6 for 64-bit operands); a masked count of 0 changes nothing, flags included. Flags that the
//! SDM leaves undefined are set the way recent Intel parts do where cheap (OF from the last
//! step) and AF is cleared.

use iced_x86::Instruction;

use super::{op_size, read_op, sext, size_mask, write_op};
use crate::cpu::fault::Res;
use crate::cpu::flags::{Flags, AF, ARITH, CF, OF};
use crate::cpu::Cpu;

/// Which shift or rotate.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// SHL/SAL.
    Shl,
    /// SHR.
    Shr,
    /// SAR.
    Sar,
    /// ROL.
    Rol,
    /// ROR.
    Ror,
    /// RCL.
    Rcl,
    /// RCR.
    Rcr,
}

/// The masked count of operand `n` (1 when absent).
pub(crate) fn count(cpu: &mut Cpu, i: &Instruction, n: u32, size: usize) -> Res<u32> {
    let c = if n < i.op_count() {
        read_op(cpu, i, n)?
    } else {
        1
    };
    Ok((c & if size == 8 { 0x3f } else { 0x1f }) as u32)
}

#[inline(always)]
fn shift(cpu: &mut Cpu, i: &Instruction, k: Kind) -> Res<()> {
    let size = op_size(i, 0);
    let bits = size as u32 * 8;
    let m = size_mask(size);
    let c = count(cpu, i, 1, size)?;
    if c == 0 {
        return zero_count(cpu, i, size);
    }
    let a = read_op(cpu, i, 0)? & m;
    let (r, cf, of, arith) = compute(k, a, c, size, cpu.state.flags.cf());
    write_op(cpu, i, 0, r)?;
    set_flags(cpu, bits, r, cf, of, arith);
    Ok(())
}

/// `k` applied to `a` (already masked to `size` bytes) with a non-zero masked count `c`:
/// the result, CF, OF, and whether SF/ZF/PF are set from the result (shifts) or kept
/// (rotates). `cf_in` is the carry before the instruction (RCL/RCR).
#[inline(always)]
pub(crate) fn compute(
    k: Kind,
    a: u64,
    c: u32,
    size: usize,
    cf_in: bool,
) -> (u64, bool, bool, bool) {
    let bits = size as u32 * 8;
    let m = size_mask(size);
    let msb = |v: u64| (v >> (bits - 1)) & 1 != 0;
    match k {
        Kind::Shl => {
            let w = u128::from(a) << c;
            let r = (w as u64) & m;
            let cf = (w >> bits) & 1 != 0;
            (r, cf, msb(r) != cf, true)
        }
        Kind::Shr => {
            let cf = c <= 64 && (a >> (c - 1)) & 1 != 0;
            let r = if c >= 64 { 0 } else { a >> c };
            (r, cf, msb(a), true)
        }
        Kind::Sar => {
            let s = sext(a, size) as i64;
            let cf = (s >> (c - 1).min(63)) & 1 != 0;
            ((s >> c.min(63)) as u64 & m, cf, false, true)
        }
        Kind::Rol => {
            let e = c % bits;
            let r = if e == 0 {
                a
            } else {
                ((a << e) | (a >> (bits - e))) & m
            };
            let cf = r & 1 != 0;
            (r, cf, msb(r) != cf, false)
        }
        Kind::Ror => {
            let e = c % bits;
            let r = if e == 0 {
                a
            } else {
                ((a >> e) | (a << (bits - e))) & m
            };
            let cf = msb(r);
            (r, cf, msb(r) != ((r >> (bits - 2)) & 1 != 0), false)
        }
        Kind::Rcl => {
            let e = c % (bits + 1);
            let w = u128::from(a) | u128::from(cf_in) << bits;
            let full = (1u128 << (bits + 1)) - 1;
            let rot = if e == 0 {
                w
            } else {
                ((w << e) | (w >> (bits + 1 - e))) & full
            };
            let r = (rot as u64) & m;
            let cf = (rot >> bits) & 1 != 0;
            (r, cf, msb(r) != cf, false)
        }
        Kind::Rcr => {
            let e = c % (bits + 1);
            let w = u128::from(a) | u128::from(cf_in) << bits;
            let full = (1u128 << (bits + 1)) - 1;
            let rot = if e == 0 {
                w
            } else {
                ((w >> e) | (w << (bits + 1 - e))) & full
            };
            let r = (rot as u64) & m;
            let cf = (rot >> bits) & 1 != 0;
            (r, cf, msb(r) != ((r >> (bits - 2)) & 1 != 0), false)
        }
    }
}

/// The flags after a shift or rotate (see [`compute`]).
#[inline(always)]
pub(crate) fn set_flags(cpu: &mut Cpu, bits: u32, r: u64, cf: bool, of: bool, arith: bool) {
    let fl = (u64::from(cf) * CF) | (u64::from(of) * OF);
    if arith {
        cpu.state
            .flags
            .set_arith(ARITH, fl | Flags::szp(bits, r) & !AF);
    } else {
        cpu.state.flags.set_arith(CF | OF, fl);
    }
}

/// SHL / SAL.
pub fn shl(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    shift(cpu, i, Kind::Shl)
}
/// SHR.
pub fn shr(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    shift(cpu, i, Kind::Shr)
}
/// SAR.
pub fn sar(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    shift(cpu, i, Kind::Sar)
}
/// ROL.
pub fn rol(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    shift(cpu, i, Kind::Rol)
}
/// ROR.
pub fn ror(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    shift(cpu, i, Kind::Ror)
}
/// RCL.
pub fn rcl(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    shift(cpu, i, Kind::Rcl)
}
/// RCR.
pub fn rcr(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    shift(cpu, i, Kind::Rcr)
}

fn double(cpu: &mut Cpu, i: &Instruction, left: bool) -> Res<()> {
    let size = op_size(i, 0);
    let bits = size as u32 * 8;
    let m = size_mask(size);
    let c = count(cpu, i, 2, size)?;
    if c == 0 {
        return zero_count(cpu, i, size);
    }
    let d = read_op(cpu, i, 0)? & m;
    let s = read_op(cpu, i, 1)? & m;
    let (r, cf) = if left {
        let w = (u128::from(d) << bits | u128::from(s)) << c;
        let cf = c <= bits && (d >> (bits - c)) & 1 != 0;
        (((w >> bits) as u64) & m, cf)
    } else {
        let w = u128::from(s) << bits | u128::from(d);
        let cf = (w >> (c - 1)) & 1 != 0;
        (((w >> c) as u64) & m, cf)
    };
    write_op(cpu, i, 0, r)?;
    let of = ((r ^ d) >> (bits - 1)) & 1 != 0;
    let fl = (u64::from(cf) * CF) | (u64::from(of) * OF) | Flags::szp(bits, r);
    cpu.state.flags.set_arith(ARITH, fl);
    Ok(())
}

/// SHLD.
pub fn shld(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    double(cpu, i, true)
}
/// SHRD.
pub fn shrd(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    double(cpu, i, false)
}

/// A zero count changes nothing, except that a 32-bit register destination is still
/// zero-extended into its 64-bit register, as on hardware.
fn zero_count(cpu: &mut Cpu, i: &Instruction, size: usize) -> Res<()> {
    if size == 4 && i.op0_kind() == iced_x86::OpKind::Register {
        let r = i.op0_register();
        let v = cpu.reg(r);
        cpu.set_reg(r, v);
    }
    Ok(())
}

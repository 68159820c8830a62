//! MUL, IMUL (one, two and three operands), DIV and IDIV with #DE on a zero divisor or a
//! quotient that does not fit. MUL/IMUL set CF = OF = "the high half matters"; SF/ZF/PF follow
//! the low half of the result (undefined per the SDM) and AF is cleared.

use iced_x86::Instruction;

use super::{op_size, read_op, sext, size_mask};
use crate::cpu::fault::{de, Res};
use crate::cpu::flags::{Flags, AF, ARITH, CF, OF};
use crate::cpu::Cpu;

pub(crate) fn mul_flags(cpu: &mut Cpu, bits: u32, lo: u64, overflow: bool) {
    let f = if overflow { CF | OF } else { 0 } | (Flags::szp(bits, lo) & !AF);
    cpu.state.flags.set_arith(ARITH, f);
}

/// Accumulator pair for a size: (low, high) halves of the double-width value.
fn acc_pair(cpu: &Cpu, size: usize) -> u128 {
    let g = &cpu.state.gpr;
    let m = size_mask(size);
    match size {
        1 => u128::from(g[0] & 0xffff),
        _ => u128::from(g[2] & m) << (size * 8) | u128::from(g[0] & m),
    }
}

fn store_pair(cpu: &mut Cpu, size: usize, lo: u64, hi: u64) {
    if size == 1 {
        cpu.set_gpr_sized(0, 2, (hi & 0xff) << 8 | (lo & 0xff));
    } else {
        cpu.set_gpr_sized(0, size, lo);
        cpu.set_gpr_sized(2, size, hi);
    }
}

/// MUL.
pub fn mul(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let size = op_size(i, 0);
    let m = size_mask(size);
    let s = read_op(cpu, i, 0)? & m;
    let a = cpu.state.gpr[0] & m;
    let p = u128::from(a) * u128::from(s);
    let bits = size as u32 * 8;
    let lo = (p as u64) & m;
    let hi = ((p >> bits) as u64) & m;
    store_pair(cpu, size, lo, hi);
    mul_flags(cpu, bits, lo, hi != 0);
    Ok(())
}

/// IMUL in its three forms.
/// The signed product of the low `size` bytes of `a` and `b`: the full product, its low
/// `size` bytes, and whether those lose information (IMUL's CF/OF).
#[inline(always)]
pub(crate) fn signed_product(a: u64, b: u64, size: usize) -> (i128, u64, bool) {
    let p = i128::from(sext(a, size) as i64) * i128::from(sext(b, size) as i64);
    let lo = (p as u64) & size_mask(size);
    (p, lo, i128::from(sext(lo, size) as i64) != p)
}

pub fn imul(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let size = op_size(i, 0);
    let m = size_mask(size);
    let bits = size as u32 * 8;
    let (a, b) = match i.op_count() {
        1 => (cpu.state.gpr[0], read_op(cpu, i, 0)?),
        2 => (read_op(cpu, i, 0)?, read_op(cpu, i, 1)?),
        _ => (read_op(cpu, i, 1)?, read_op(cpu, i, 2)?),
    };
    let (p, lo, overflow) = signed_product(a, b, size);
    if i.op_count() == 1 {
        let hi = ((p >> bits) as u64) & m;
        store_pair(cpu, size, lo, hi);
    } else {
        cpu.set_reg(i.op0_register(), lo);
    }
    mul_flags(cpu, bits, lo, overflow);
    Ok(())
}

/// DIV.
pub fn div(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let size = op_size(i, 0);
    let m = size_mask(size);
    let d = u128::from(read_op(cpu, i, 0)? & m);
    if d == 0 {
        return Err(de());
    }
    let n = acc_pair(cpu, size);
    let q = n / d;
    if q > u128::from(m) {
        return Err(de());
    }
    store_pair(cpu, size, q as u64, (n % d) as u64);
    Ok(())
}

/// IDIV.
pub fn idiv(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let size = op_size(i, 0);
    let bits = size as u32 * 8;
    let d = i128::from(sext(read_op(cpu, i, 0)?, size) as i64);
    if d == 0 {
        return Err(de());
    }
    let raw = acc_pair(cpu, size);
    let sh = 128 - 2 * bits;
    let n = ((raw << sh) as i128) >> sh;
    let Some(q) = n.checked_div(d) else {
        return Err(de());
    };
    let r = n - q * d;
    let max = (1i128 << (bits - 1)) - 1;
    let min = -(1i128 << (bits - 1));
    if q > max || q < min {
        return Err(de());
    }
    store_pair(cpu, size, q as u64, r as u64);
    Ok(())
}

//! Blocks of x87 transcendental instructions (FSIN...FYL2XP1) on random operands, for measuring
//! the software CPU against the host CPU.
//!
//! Data enters as a PRNG and leaves as a [`TranscendBlock`]: the assembled [`Block`] plus the
//! operand bytes to place in the data page. Each block holds [`CASES`] independent cases; case
//! `c` is FNINIT, FLDCW of a random control word (all exceptions masked, random RC and PC),
//! FLD m80 of ST(1) and ST(0) from the case's operand slot, the instruction, then FNSTSW and
//! two FSTP m80 into the case's result slot ([`result_slot`]: FSW at +0, ST(0) at +2, ST(1)
//! at +12; popping an empty register stores the indefinite on both sides alike). Operands come
//! from ranges where the instruction is defined and interesting (the brief of issue 3): FSIN/
//! FCOS/FSINCOS/FPTAN |x| < 2^20, small, near multiples of π/2 and up to 2^63; F2XM1 in
//! [-1, 1]; FYL2X x > 0; FYL2XP1 |x| < 1 - √½; FPATAN any; plus ±0, ±∞, denormals and NaNs.

use iced_x86::{Code, IcedError, Instruction, MemoryOperand, Register};

use super::gen::{Block, Rng};

/// Independent cases per block.
pub const CASES: usize = 16;

/// The instructions measured, in report order.
pub const OPS: [Code; 8] = [
    Code::Fsin,
    Code::Fcos,
    Code::Fsincos,
    Code::Fptan,
    Code::F2xm1,
    Code::Fyl2x,
    Code::Fyl2xp1,
    Code::Fpatan,
];

/// Data-page offset of case `c`'s operands: control word at +0, ST(1) at +2, ST(0) at +12.
pub fn operand_slot(c: usize) -> u64 {
    (c as u64) * 32
}

/// Data-page offset of case `c`'s results: FSW at +0, ST(0) at +2, ST(1) at +12.
pub fn result_slot(c: usize) -> u64 {
    2048 + (c as u64) * 32
}

/// A generated block: code plus the operand bytes (`(offset, bytes)`) the data page needs, and
/// which instruction each case runs (an index into [`OPS`]).
pub struct TranscendBlock {
    /// The code.
    pub block: Block,
    /// Bytes to write into the start data page.
    pub operands: Vec<(u64, Vec<u8>)>,
    /// The instruction of each case.
    pub ops: Vec<usize>,
}

fn mem(disp: u64) -> MemoryOperand {
    MemoryOperand::with_base_displ(Register::R15, disp as i64)
}

/// An 80-bit value as bytes.
fn bytes80(sign_exp: u16, mant: u64) -> [u8; 10] {
    let mut b = [0u8; 10];
    b[..8].copy_from_slice(&mant.to_le_bytes());
    b[8..].copy_from_slice(&sign_exp.to_le_bytes());
    b
}

/// A random normal value with unbiased exponent in `lo..=hi` and a random sign when `signed`.
fn normal(rng: &mut Rng, lo: i32, hi: i32, signed: bool) -> (u16, u64) {
    let e = lo + rng.below((hi - lo + 1) as u64) as i32;
    let s = if signed && rng.below(2) == 1 {
        0x8000
    } else {
        0
    };
    (s | (e + 16383) as u16, rng.next_u64() | 1 << 63)
}

/// A special operand: ±0, ±∞, a denormal, a QNaN, the smallest normal.
fn special(rng: &mut Rng) -> (u16, u64) {
    let s = if rng.below(2) == 1 { 0x8000 } else { 0 };
    match rng.below(5) {
        0 => (s, 0),
        1 => (s | 0x7fff, 1 << 63),
        2 => (s, rng.next_u64() >> (1 + rng.below(63))),
        3 => (s | 0x7fff, 0xc000_0000_0000_0000 | rng.next_u64() >> 2),
        _ => (s | 1, 1 << 63),
    }
}

/// k·π/2 plus a small offset: where reduction matters most.
fn near_half_pi(rng: &mut Rng) -> (u16, u64) {
    // π/2 as a 64-bit significand with exponent 0, times k (< 2^16), then nudged.
    let k = 1 + rng.below(1 << 16) as u128;
    let prod = 0xC90F_DAA2_2168_C235u128 * k; // · 2^-63
    let sh = 128 - prod.leading_zeros() - 64;
    let mant = (prod >> sh) as u64;
    let nudge = rng.below(1 << 12) as i64 - (1 << 11);
    let mant = mant.wrapping_add(nudge as u64) | 1 << 63;
    let e = sh as i32;
    let s = if rng.below(2) == 1 { 0x8000 } else { 0 };
    (s | (e + 16383) as u16, mant)
}

/// (ST(0), ST(1)) for instruction `op` (an index into [`OPS`]).
fn operands(rng: &mut Rng, op: usize) -> ((u16, u64), (u16, u64)) {
    let y = normal(rng, -20, 20, true);
    if rng.below(16) == 0 {
        let x = special(rng);
        let y = if rng.below(2) == 0 { special(rng) } else { y };
        return (x, y);
    }
    let x = match (OPS[op], rng.below(10)) {
        (Code::Fsin | Code::Fcos | Code::Fsincos | Code::Fptan, k) => match k {
            0..=4 => normal(rng, -20, 19, true),
            5..=6 => near_half_pi(rng),
            7 => normal(rng, -80, -21, true),
            _ => normal(rng, 20, 62, true),
        },
        (Code::F2xm1, 0) => ([0x3fff, 0xbfff][rng.below(2) as usize], 1 << 63),
        (Code::F2xm1, _) => normal(rng, -70, -1, true),
        (Code::Fyl2x, 0..=1) => {
            // Near 1, where log₂ x is small.
            let e = [0x3ffe, 0x3fff][rng.below(2) as usize];
            let m = if e == 0x3fff {
                (1 << 63) | rng.next_u64() >> (1 + rng.below(62))
            } else {
                !(rng.next_u64() >> (1 + rng.below(62)))
            };
            (e, m)
        }
        (Code::Fyl2x, 2) => (normal(rng, -100, 100, false).0, 1 << 63),
        (Code::Fyl2x, _) => normal(rng, -100, 100, false),
        (Code::Fyl2xp1, _) => {
            // |x| < 0.29 < 1 - √½.
            let (se, m) = normal(rng, -70, -3, true);
            if se & 0x7fff == 16383 - 2 {
                (se, m & 0x94ff_ffff_ffff_ffff)
            } else {
                (se, m)
            }
        }
        _ => normal(rng, -30, 30, true),
    };
    (x, y)
}

/// A control word: exceptions masked, random precision and rounding control.
fn control_word(rng: &mut Rng) -> u16 {
    let pc = [0u16, 2, 3, 3][rng.below(4) as usize];
    0x7f | (pc << 8) | ((rng.below(4) as u16) << 10)
}

/// A block of [`CASES`] cases, each a random instruction of `ops` (indices into [`OPS`]).
pub fn transcend_block(
    rng: &mut Rng,
    ops: &[usize],
    addr: u64,
) -> Result<TranscendBlock, IcedError> {
    let mut v = Vec::new();
    let mut operands_out = Vec::new();
    let mut chosen = Vec::new();
    for c in 0..CASES {
        let op = ops[rng.below(ops.len() as u64) as usize];
        let (x, y) = operands(rng, op);
        let (o, r) = (operand_slot(c), result_slot(c));
        let mut bytes = control_word(rng).to_le_bytes().to_vec();
        bytes.extend(bytes80(y.0, y.1));
        bytes.extend(bytes80(x.0, x.1));
        operands_out.push((o, bytes));
        chosen.push(op);
        v.extend([
            Instruction::with(Code::Fninit),
            Instruction::with1(Code::Fldcw_m2byte, mem(o))?,
            Instruction::with1(Code::Fld_m80fp, mem(o + 2))?,
            Instruction::with1(Code::Fld_m80fp, mem(o + 12))?,
            Instruction::with(OPS[op]),
            Instruction::with1(Code::Fnstsw_m2byte, mem(r))?,
            Instruction::with1(Code::Fstp_m80fp, mem(r + 2))?,
            Instruction::with1(Code::Fstp_m80fp, mem(r + 12))?,
        ]);
    }
    v.push(Instruction::with(Code::Fninit));
    Ok(TranscendBlock {
        block: Block::assemble(v, addr)?,
        operands: operands_out,
        ops: chosen,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_deterministic_and_use_every_instruction() {
        let all: Vec<usize> = (0..OPS.len()).collect();
        let a = transcend_block(&mut Rng::new(3), &all, 0x1000).unwrap();
        let b = transcend_block(&mut Rng::new(3), &all, 0x1000).unwrap();
        assert_eq!(a.block.bytes, b.block.bytes);
        assert_eq!(a.operands, b.operands);
        let mut seen = [false; OPS.len()];
        for seed in 0..20 {
            let t = transcend_block(&mut Rng::new(seed), &all, 0x1000).unwrap();
            for (c, &op) in t.ops.iter().enumerate() {
                seen[op] = true;
                assert_eq!(t.block.instrs[8 * c + 4].code(), OPS[op]);
            }
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn near_half_pi_is_close_to_a_multiple() {
        let mut rng = Rng::new(9);
        for _ in 0..100 {
            let (se, m) = near_half_pi(&mut rng);
            let x = m as f64 * 2f64.powi(i32::from(se & 0x7fff) - 16383 - 63);
            let k = (x / std::f64::consts::FRAC_PI_2).round();
            assert!(
                (x - k * std::f64::consts::FRAC_PI_2).abs() < 1e-6 * k.max(1.0),
                "{x}"
            );
        }
    }
}

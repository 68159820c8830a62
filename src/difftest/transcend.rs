//! The transcendental campaign: blocks of [`gen_transcend`] cases run on the host CPU and on
//! the software CPU, compared case by case.
//!
//! The host's FSIN...FYL2XP1 are not correctly rounded (their internal result is within
//! about 0.05 ulp), ours are, so a share of results legitimately differ by one ulp, and C1
//! (rounded up) with them. Data enters as a seed and a block count; it leaves as
//! [`Stats`] per instruction (exact, one-ulp and C1-only differences), or the first case that
//! differs by more — a wrong special case, flag, stack effect or a value off by more than one
//! ulp — as a [`Mismatch`] naming the seed, block and case.

use iced_x86::{Formatter, IntelFormatter};

use super::gen::{Rng, DATA_SIZE};
use super::gen_transcend::{operand_slot, result_slot, transcend_block, CASES, OPS};
use super::harness::{Harness, Start, CODE};
use super::{block_seed, DiffError, Mismatch};
use crate::cpu::exec::x87::sw;

/// Counts for one instruction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Cases run.
    pub cases: usize,
    /// Cases where a result value differs by one ulp (C1 may differ too).
    pub ulp: usize,
    /// Cases where only C1 differs.
    pub c1: usize,
    /// Cases that differ beyond that: a value off by more than one ulp, other flags, the
    /// stack.
    pub worse: usize,
}

/// What a campaign found: statistics per instruction of [`OPS`] and the first block with a
/// difference beyond the tolerance.
#[derive(Debug)]
pub struct Report {
    /// Per instruction, in [`OPS`] order.
    pub stats: [Stats; OPS.len()],
    /// The first block with a case beyond the tolerance (or other state differing).
    pub first: Option<Box<Mismatch>>,
}

/// An 80-bit value's position among the values of its sign: consecutive values differ by 1.
fn ordinal(b: &[u8]) -> (bool, u128) {
    let mant = u64::from_le_bytes(b[..8].try_into().unwrap_or_default());
    let se = u16::from_le_bytes([b[8], b[9]]);
    let exp = u128::from(se & 0x7fff);
    (
        se & 0x8000 != 0,
        (exp << 63) | u128::from(mant & !(1 << 63)),
    )
}

/// Same value, or neighbours: finite, same sign, one apart.
fn within_one_ulp(a: &[u8], b: &[u8]) -> bool {
    let (sa, oa) = ordinal(a);
    let (sb, ob) = ordinal(b);
    let finite = |o: u128| o >> 63 != 0x7fff;
    a == b || (sa == sb && finite(oa) && finite(ob) && oa.abs_diff(ob) == 1)
}

/// How one case compares: `None` for a difference beyond the tolerance.
enum Verdict {
    Same,
    Ulp,
    C1,
}

fn verdict(k: &[u8], t: &[u8]) -> Option<Verdict> {
    let fsw = |d: &[u8]| u16::from_le_bytes([d[0], d[1]]);
    let (vk, vt) = (&k[2..22], &t[2..22]);
    if (fsw(k) ^ fsw(t)) & !sw::C1 != 0 {
        return None;
    }
    if !within_one_ulp(&vk[..10], &vt[..10]) || !within_one_ulp(&vk[10..], &vt[10..]) {
        return None;
    }
    Some(match () {
        _ if vk != vt => Verdict::Ulp,
        _ if fsw(k) != fsw(t) => Verdict::C1,
        _ => Verdict::Same,
    })
}

/// Run `blocks` blocks of cases drawn from `ops` (indices into [`OPS`]): per-instruction
/// statistics and the first block beyond the tolerance. Errors are harness and assembler
/// failures only.
pub fn run_transcend_campaign(
    harness: &mut Harness,
    seed: u64,
    blocks: usize,
    ops: &[usize],
) -> Result<Report, DiffError> {
    let mut stats = [Stats::default(); OPS.len()];
    let mut first = None;
    for index in 0..blocks {
        let mut rng = Rng::new(block_seed(seed, index));
        let tb = transcend_block(&mut rng, ops, CODE).map_err(|e| DiffError::Generate {
            seed,
            block: index,
            what: e.to_string(),
        })?;
        let mut start = Start::random(&mut rng);
        for (off, bytes) in &tb.operands {
            let off = *off as usize;
            start.data[off..off + bytes.len()].copy_from_slice(bytes);
        }
        let (diffs, k, t) =
            harness
                .run(&tb.block, &start)
                .map_err(|source| DiffError::Harness {
                    seed,
                    block: index,
                    source,
                })?;
        let mut bad: Vec<String> = Vec::new();
        let region = result_slot(0) as usize..result_slot(CASES) as usize;
        let outside = |d: &[u8]| {
            let mut v = d[..DATA_SIZE as usize].to_vec();
            v[region.clone()].fill(0);
            v
        };
        if k.gpr != t.gpr || k.rip != t.rip || outside(&k.data) != outside(&t.data) {
            bad.extend(diffs.iter().cloned());
        }
        for (c, &op) in tb.ops.iter().enumerate() {
            let r = result_slot(c) as usize;
            let (ck, ct) = (&k.data[r..r + 22], &t.data[r..r + 22]);
            let s = &mut stats[op];
            s.cases += 1;
            match verdict(ck, ct) {
                Some(Verdict::Same) => {}
                Some(Verdict::Ulp) => s.ulp += 1,
                Some(Verdict::C1) => s.c1 += 1,
                None => {
                    s.worse += 1;
                    let o = operand_slot(c) as usize;
                    let mut name = String::new();
                    IntelFormatter::new().format(&tb.block.instrs[8 * c + 4], &mut name);
                    bad.push(format!(
                        "case {c} {name}: fcw+ST(1)+ST(0) {:02x?}\n    kvm fsw+ST(0)+ST(1) {ck:02x?}\n    tcg fsw+ST(0)+ST(1) {ct:02x?}",
                        &start.data[o..o + 22]
                    ));
                }
            }
        }
        if !bad.is_empty() && first.is_none() {
            first = Some(Box::new(Mismatch {
                seed,
                block: index,
                disassembly: tb.block.disassembly(),
                diffs: bad,
                culprit: None,
            }));
        }
    }
    Ok(Report { stats, first })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_across_an_exponent_step_are_one_ulp_apart() {
        let v = |se: u16, m: u64| {
            let mut b = m.to_le_bytes().to_vec();
            b.extend(se.to_le_bytes());
            b
        };
        assert!(within_one_ulp(&v(0x3ffe, u64::MAX), &v(0x3fff, 1 << 63)));
        assert!(within_one_ulp(&v(0, (1 << 63) - 1), &v(1, 1 << 63)));
        assert!(!within_one_ulp(&v(0x3fff, 1 << 63), &v(0xbfff, 1 << 63)));
        assert!(!within_one_ulp(
            &v(0x3fff, 1 << 63),
            &v(0x3fff, (1 << 63) + 2)
        ));
    }
}

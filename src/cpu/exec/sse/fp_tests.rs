//! Unit tests of the FP core (`fp`): rounding modes, NaN rules, FTZ/DAZ, overflow and
//! tininess, SQRT in the directed modes, compare predicates.

use super::fp::*;

fn ctx(mxcsr: u32) -> Ctx {
    Ctx {
        mxcsr,
        pre: 0,
        post: 0,
    }
}

#[test]
fn add_rounding_modes() {
    let one = 1f32.to_bits() as u64;
    let tiny = 1e-10f32.to_bits() as u64;
    let mut c = ctx(0x1f80);
    assert_eq!(arith::<F32>(&mut c, one, tiny, Op::Add), one);
    assert_eq!(c.post, mx::PE);
    let mut c = ctx(0x1f80 | (2 << 13));
    assert_eq!(arith::<F32>(&mut c, one, tiny, Op::Add), one + 1);
    let m1 = (-1f32).to_bits() as u64;
    let mut c = ctx(0x1f80 | (1 << 13));
    assert_eq!(arith::<F32>(&mut c, m1, tiny, Op::Add), m1, "toward -inf");
    let mut c = ctx(0x1f80 | (3 << 13));
    assert_eq!(
        arith::<F32>(&mut c, m1, tiny, Op::Add),
        0xbf7f_ffff,
        "toward zero"
    );
    // x - x is +0, except -0 when rounding toward -inf.
    let mut c = ctx(0x1f80 | (1 << 13));
    assert_eq!(arith::<F32>(&mut c, one, one, Op::Sub), F32::SIGN);
}

#[test]
fn nan_rules() {
    let q = 0x7fc0_0001u64;
    let s = 0x7f80_0002u64;
    let one = 1f32.to_bits() as u64;
    let mut c = ctx(0x1f80);
    assert_eq!(arith::<F32>(&mut c, one, s, Op::Add), 0x7fc0_0002);
    assert_eq!(c.pre, mx::IE);
    let mut c = ctx(0x1f80);
    assert_eq!(arith::<F32>(&mut c, q, s, Op::Mul), q);
    let inf = 0x7f80_0000u64;
    let mut c = ctx(0x1f80);
    assert_eq!(arith::<F32>(&mut c, inf, inf, Op::Sub), 0xffc0_0000);
    assert_eq!(c.pre, mx::IE);
    let mut c = ctx(0x1f80);
    assert_eq!(minmax::<F32>(&mut c, q, one, false), one);
    assert_eq!(c.pre, mx::IE);
}

#[test]
fn overflow_clamped_to_max_still_raises_oe() {
    let big = f64::MAX.to_bits();
    let mut c = ctx(0x1f80 | (3 << 13));
    assert_eq!(arith::<F64>(&mut c, big, big, Op::Add), big);
    assert_eq!(c.post, mx::OE | mx::PE);
    // Rounding up to MAX from below is no overflow.
    let below = f32::MAX.to_bits() as u64 - 1;
    let tiny = 1f32.to_bits() as u64;
    let mut c = ctx(0x1f80 | (2 << 13));
    assert_eq!(arith::<F32>(&mut c, below, tiny, Op::Add), below + 1);
    assert_eq!(c.post, mx::PE);
}

#[test]
fn tininess_after_rounding_like_x86() {
    // (1 - 2^-24) * MIN_NORMAL rounds to MIN_NORMAL, but is tiny with an unbounded exponent.
    let a = 0x3f7f_ffffu64;
    let min = 0x0080_0000u64;
    let mut c = ctx(0x1f80);
    assert_eq!(arith::<F32>(&mut c, a, min, Op::Mul), min);
    assert_eq!(c.post, mx::UE | mx::PE);
    let mut c = ctx(0x1f80 | mx::FZ);
    assert_eq!(arith::<F32>(&mut c, a, min, Op::Mul), 0);
    assert_eq!(c.post, mx::UE | mx::PE);
    // 1.5 * MIN_NORMAL / 1.5 is exact: no underflow.
    let mut c = ctx(0x1f80);
    let x = arith::<F32>(&mut c, 0x3fc0_0000, min, Op::Mul);
    assert_eq!(arith::<F32>(&mut c, x, 0x3fc0_0000, Op::Div), min);
    assert_eq!(c.post, 0);
}

#[test]
fn div_by_zero_and_ftz_daz() {
    let one = 1f64.to_bits();
    let mut c = ctx(0x1f80);
    assert_eq!(arith::<F64>(&mut c, one, 0, Op::Div), 0x7ff0_0000_0000_0000);
    assert_eq!(c.pre, mx::ZE);
    let min = f64::MIN_POSITIVE.to_bits();
    let half = 0.5f64.to_bits();
    let mut c = ctx(0x1f80);
    assert_eq!(arith::<F64>(&mut c, min, half, Op::Mul), min >> 1);
    assert_eq!(c.post, 0, "exact tiny result, masked: no UE");
    let mut c = ctx(0x1f80 | mx::FZ);
    assert_eq!(arith::<F64>(&mut c, min, half, Op::Mul), 0);
    assert_eq!(c.post, mx::UE | mx::PE);
    let mut c = ctx(0x1f80 | mx::DAZ);
    assert_eq!(arith::<F64>(&mut c, 1, one, Op::Mul), 0);
    assert_eq!(c.pre, 0);
    let mut c = ctx(0x1f80);
    assert_eq!(arith::<F64>(&mut c, 1, one, Op::Mul), 1);
    assert_eq!(c.pre, mx::DE);
}

#[test]
fn sqrt_directed() {
    let two = 2f64.to_bits();
    let rn = 2f64.sqrt().to_bits();
    let mut c = ctx(0x1f80);
    assert_eq!(sqrt::<F64>(&mut c, two), rn);
    assert_eq!(c.post, mx::PE);
    // sqrt(2) = 1.41421356237309504880..., RN rounds down (rn < true root).
    let mut up = ctx(0x1f80 | (2 << 13));
    let mut dn = ctx(0x1f80 | (1 << 13));
    let u = sqrt::<F64>(&mut up, two);
    let d = sqrt::<F64>(&mut dn, two);
    assert_eq!(u - d, 1);
    assert!(u == rn || d == rn);
    let mut c = ctx(0x1f80);
    assert_eq!(sqrt::<F64>(&mut c, 4f64.to_bits()), 2f64.to_bits());
    assert_eq!(c.post, 0);
    let mut c = ctx(0x1f80);
    assert_eq!(sqrt::<F32>(&mut c, 0xbf80_0000), 0xffc0_0000);
    assert_eq!(c.pre, mx::IE);
}

#[test]
fn compare_predicates() {
    let one = 1f32.to_bits() as u64;
    let two = 2f32.to_bits() as u64;
    let q = 0x7fc0_0000u64;
    let mut c = ctx(0x1f80);
    assert_eq!(cmp_pred::<F32>(&mut c, one, two, 1), 0xffff_ffff);
    assert_eq!(cmp_pred::<F32>(&mut c, one, two, 6), 0);
    assert_eq!(c.pre, 0);
    assert_eq!(cmp_pred::<F32>(&mut c, one, q, 0), 0);
    assert_eq!(c.pre, 0);
    assert_eq!(cmp_pred::<F32>(&mut c, one, q, 4), 0xffff_ffff);
    assert_eq!(cmp_pred::<F32>(&mut c, one, q, 5), 0xffff_ffff);
    assert_eq!(c.pre, mx::IE);
}

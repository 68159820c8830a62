//! The transcendental functions in IEEE quad (113-bit significand), for arguments already
//! reduced to where their series converge fast: sine and cosine on |r| ≤ π/4, 2^x - 1 on
//! |x| ≤ 1, log₂ of a significand and of 1 + x for small x, atan2 of any finite pair.
//!
//! Method: Taylor series (atanh series for the logarithms, a table of atan(j/8) plus the
//! addition formula for the arctangent) evaluated with Horner's rule, every operation rounded
//! to nearest in quad. The series are cut where the next term is below 2^-115 relative, so a
//! result is within a few quad ulps (≈2^-110 relative) of the exact value: rounding it once
//! to the x87's 64 bits gives the correctly rounded result except when the exact value lies
//! within ≈2^-46 ulp of a rounding boundary. Data enters and leaves as `Quad`.

use std::sync::OnceLock;

use rustc_apfloat::ieee::Quad;
use rustc_apfloat::Float;

/// A quad constant from its bits.
fn q(bits: u128) -> Quad {
    Quad::from_bits(bits)
}

/// π, π/2, π/4, 3π/4, ln 2 and log₂ e rounded to quad (computed with mpmath at 400 bits).
pub const PI: u128 = 0x4000_921f_b544_42d1_8469_898c_c517_01b8;
/// π/2.
pub const PI_2: u128 = 0x3fff_921f_b544_42d1_8469_898c_c517_01b8;
/// π/4.
pub const PI_4: u128 = 0x3ffe_921f_b544_42d1_8469_898c_c517_01b8;
/// 3π/4.
pub const PI3_4: u128 = 0x4000_2d97_c7f3_321d_234f_2729_93d1_414a;
const LN2: u128 = 0x3ffe_62e4_2fef_a39e_f357_93c7_6730_07e6;
const LOG2E: u128 = 0x3fff_7154_7652_b82f_e177_7d0f_fda0_d23a;

/// atan(j/8) for j = 1..=8, rounded to quad (mpmath, 400 bits).
const ATAN_J8: [u128; 8] = [
    0x3ffb_fd5b_a9aa_c2f6_dc65_912f_313e_7d11,
    0x3ffc_f5b7_5f92_c80d_d62a_db8f_3deb_ef44,
    0x3ffd_6f61_941e_4def_08e7_1546_4245_b9fd,
    0x3ffd_dac6_7056_1bb4_f68a_dfc8_8bd9_7875,
    0x3ffe_1e00_babd_efeb_3f36_b906_bc2c_cb88,
    0x3ffe_4978_fa32_69ee_1248_3350_fe54_8afb,
    0x3ffe_700a_7c57_8463_3ce7_965b_4aa4_2149,
    PI_4,
];

fn int(n: u128) -> Quad {
    Quad::from_u128(n).value
}

fn add(a: Quad, b: Quad) -> Quad {
    (a + b).value
}

fn sub(a: Quad, b: Quad) -> Quad {
    (a - b).value
}

fn mul(a: Quad, b: Quad) -> Quad {
    (a * b).value
}

fn div(a: Quad, b: Quad) -> Quad {
    (a / b).value
}

/// Σ c[i]·z^i by Horner's rule.
fn horner(c: &[Quad], z: Quad) -> Quad {
    c.iter().rev().fold(int(0), |acc, &ci| add(mul(acc, z), ci))
}

/// Coefficients 1/n! for n = 0..=33 (33! < 2^128, so each is one rounding of an exact
/// quotient).
fn inv_fact() -> &'static [Quad; 34] {
    static T: OnceLock<[Quad; 34]> = OnceLock::new();
    T.get_or_init(|| {
        let mut t = [int(1); 34];
        let mut f: u128 = 1;
        for (n, c) in t.iter_mut().enumerate().skip(1) {
            f *= n as u128;
            *c = div(int(1), int(f));
        }
        t
    })
}

/// Series coefficients with alternating signs: `(-1)^i / n!` for n = start, start+2, ...
fn alternating(start: usize) -> Vec<Quad> {
    let f = inv_fact();
    (0..16)
        .map(|i| {
            let c = f[start + 2 * i];
            if i % 2 == 1 {
                -c
            } else {
                c
            }
        })
        .collect()
}

/// sin r for |r| ≤ π/4: r·Σ(-1)^i r^(2i)/(2i+1)!, terms through r^31 (π/4)^32/33! < 2^-120.
pub fn sin(r: Quad) -> Quad {
    static C: OnceLock<Vec<Quad>> = OnceLock::new();
    let c = C.get_or_init(|| alternating(1));
    mul(r, horner(c, mul(r, r)))
}

/// cos r for |r| ≤ π/4: Σ(-1)^i r^(2i)/(2i)!, terms through r^30.
pub fn cos(r: Quad) -> Quad {
    static C: OnceLock<Vec<Quad>> = OnceLock::new();
    let c = C.get_or_init(|| alternating(0));
    horner(c, mul(r, r))
}

/// Quadrant `k` of a reduced argument: (sin x, cos x) from (sin r, cos r).
pub fn sin_cos(r: Quad, k: u8) -> (Quad, Quad) {
    let (s, c) = (sin(r), cos(r));
    match k & 3 {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    }
}

/// tan x from the reduced argument: sin r / cos r, or -cos r / sin r in odd quadrants.
pub fn tan(r: Quad, k: u8) -> Quad {
    let (s, c) = (sin(r), cos(r));
    if k & 1 == 0 {
        div(s, c)
    } else {
        -div(c, s)
    }
}

/// 2^x - 1 for |x| ≤ 1: e^y - 1 with y = x·ln 2 as y·Σ y^n/(n+1)!, terms through y^31
/// (ln 2^32/33! < 2^-128): no cancellation for small x.
pub fn exp2m1(x: Quad) -> Quad {
    let y = mul(x, q(LN2));
    let f = inv_fact();
    mul(y, horner(&f[1..], y))
}

/// 2·atanh(s) / ln 2 = log₂((1 + s)/(1 - s)) for |s| ≤ 0.172: 2 log₂e · s · Σ s^(2n)/(2n+1),
/// 24 terms (0.172^48/49 < 2^-125).
fn log2_atanh(s: Quad) -> Quad {
    static C: OnceLock<Vec<Quad>> = OnceLock::new();
    let c = C.get_or_init(|| (0..24).map(|n| div(int(1), int(2 * n + 1))).collect());
    let two_log2e = add(q(LOG2E), q(LOG2E));
    mul(mul(s, horner(c, mul(s, s))), two_log2e)
}

/// log₂(m·2^e) for a 64-bit significand `m` with its top bit set: e + 63 + log₂ f with
/// f = m/2^63 moved into [√½, √2) and log₂ f = 2 atanh((f-1)/(f+1))/ln 2.
pub fn log2(m: u64, e: i32) -> Quad {
    // f = m / 2^63 in [1, 2); above √2 (0xB504F333F9DE6484...·2^-63) use f/2.
    let (f, e) = if m > 0xB504_F333_F9DE_6484 {
        (int(u128::from(m)).scalbn(-64), e + 64)
    } else {
        (int(u128::from(m)).scalbn(-63), e + 63)
    };
    let one = int(1);
    let lf = log2_atanh(div(sub(f, one), add(f, one)));
    add(Quad::from_i128(e.into()).value, lf)
}

/// log₂(1 + x) for -1 < x, accurate near 0: 2 atanh(x/(2+x))/ln 2 (|x/(2+x)| ≤ 0.172 when
/// |x| ≤ 1 - √½, FYL2XP1's range; wider x converge slower and lose accuracy).
pub fn log2_1p(x: Quad) -> Quad {
    log2_atanh(div(x, add(int(2), x)))
}

/// atan t for 0 ≤ t ≤ 1: atan(j/8) + atan u, u = (t - j/8)/(1 + t·j/8) with j nearest 8t
/// (|u| ≤ 1/16), atan u = u·Σ(-1)^n u^(2n)/(2n+1), 16 terms (16^-32/33 < 2^-133).
fn atan01(t: Quad) -> Quad {
    static C: OnceLock<Vec<Quad>> = OnceLock::new();
    let c = C.get_or_init(|| {
        (0..16)
            .map(|n| {
                let v = div(int(1), int(2 * n + 1));
                if n % 2 == 1 {
                    -v
                } else {
                    v
                }
            })
            .collect()
    });
    let j = mul(t, int(8))
        .round_to_integral(rustc_apfloat::Round::NearestTiesToEven)
        .value;
    let j_int = j.to_u128(8).value as usize;
    let cj = j.scalbn(-3);
    let u = div(sub(t, cj), add(int(1), mul(t, cj)));
    let base = if j_int == 0 {
        int(0)
    } else {
        q(ATAN_J8[j_int - 1])
    };
    add(base, mul(u, horner(c, mul(u, u))))
}

/// atan2(y, x) for finite nonzero `x` and `y`: the angle of (x, y) in (-π, π].
pub fn atan2(y: Quad, x: Quad) -> Quad {
    let (ay, ax) = (y.abs(), x.abs());
    let a = if ay <= ax {
        atan01(div(ay, ax))
    } else {
        sub(q(PI_2), atan01(div(ax, ay)))
    };
    let a = if x.is_negative() { sub(q(PI), a) } else { a };
    if y.is_negative() {
        -a
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// |a - b| ≤ 2^-100·|b|: far tighter than the 2^-64 the results are rounded to.
    fn close(a: Quad, b: Quad) -> bool {
        let tol = b.abs().scalbn(-100);
        sub(a, b).abs() <= tol
    }

    #[test]
    fn atan_table_agrees_with_sine_and_cosine() {
        for j in 1..=6u128 {
            let a = q(ATAN_J8[j as usize - 1]);
            let t = div(sin(a), cos(a));
            assert!(close(t, div(int(j), int(8))), "tan(atan({j}/8))");
        }
    }

    #[test]
    fn pythagoras_and_known_values() {
        let r = div(int(7), int(10));
        let (s, c) = (sin(r), cos(r));
        assert!(close(add(mul(s, s), mul(c, c)), int(1)));
        // log₂ 3 from a 64-bit significand 0xC000...·2^-62.
        let l3 = log2(0xC000_0000_0000_0000, -62);
        assert!(
            close(exp2m1(sub(l3, int(1))), div(int(1), int(2))),
            "2^(log₂3 - 1) - 1"
        );
        assert!(close(
            log2_1p(div(int(1), int(4))),
            log2(0xA000_0000_0000_0000, -63)
        ));
        let quarter = atan2(int(1), int(1));
        assert!(close(quarter, q(PI_4)));
        assert!(close(atan2(int(1), -int(1)), q(PI3_4)));
    }
}

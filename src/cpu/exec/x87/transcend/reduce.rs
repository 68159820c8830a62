//! Argument reduction for FSIN, FCOS, FSINCOS and FPTAN: `x = k·(π₆₆/2) + r` with the nearest
//! integer `k` and `|r| ≤ π₆₆/4`, where π₆₆ is π rounded to 66 significant bits.
//!
//! x87 hardware reduces with this 66-bit π, not the true one (SDM Vol. 1, "Transcendental
//! Instruction Accuracy"); the host here (AMD EPYC) does the same: FSIN of FLDPI's value returns
//! exactly -2^-64 (= π₆₆ - π₆₄), where the true sine is -5.0165e-20. Data enters as a finite
//! nonzero `F80` below 2^63 in magnitude and leaves as the exact remainder `r` (at most 66
//! significant bits, so exact in IEEE quad) and `k mod 4`. The reduction is integer long
//! division (at most 128 steps), so it is exact for the whole range.

use rustc_apfloat::ieee::Quad;
use rustc_apfloat::Float;

use super::super::special::unpack;
use super::super::{neg_of, to_quad, F80};

/// π₆₆ as an integer: π = `PI66 · 2^-64` to 66 bits (the 67th and 68th bits of π are 0, so
/// rounding and truncation agree). `PI66 · 2^-65` is π₆₆/2.
pub const PI66: u128 = 0x000C_90FD_AA22_168C_234C >> 2;

/// |x| below this needs no reduction (the nearest multiple of π/2 is 0): 0.75 < π/4.
fn small(x: F80) -> bool {
    let (m, e) = unpack(x);
    // m·2^e < 0.75 ⇔ m < 0.75·2^-e; m has 64 bits, so e ≤ -65 always qualifies.
    e <= -65 || (e == -64 && m < 0xC000_0000_0000_0000)
}

/// The reduced argument and the quadrant `k mod 4` (of the signed quotient).
pub fn reduce(x: F80) -> (Quad, u8) {
    if small(x) {
        return (to_quad(x), 0);
    }
    let (m, e) = unpack(x);
    // |x| / (π₆₆/2) = m·2^(e+65) / PI66; here |x| ≥ 0.75 so e ≥ -64 and s ≥ 1; |x| < 2^63
    // so e ≤ -1 and s ≤ 64.
    let s = (e + 65) as u32;
    let (mut rem, mut q) = (0u128, 0u8);
    for i in (0..64 + s).rev() {
        let bit = if i >= s { (m >> (i - s)) & 1 } else { 0 };
        rem = (rem << 1) | u128::from(bit);
        q <<= 1;
        if rem >= PI66 {
            rem -= PI66;
            q |= 1;
        }
    }
    // Nearest quotient: PI66 is odd, so there is no tie.
    let (mag, neg_r) = if 2 * rem > PI66 {
        q = q.wrapping_add(1);
        (PI66 - rem, true)
    } else {
        (rem, false)
    };
    let mut r = Quad::from_u128(mag).value.scalbn(-65);
    let mut k = q & 3;
    if neg_r != neg_of(x) {
        r = -r;
    }
    if neg_of(x) {
        k = (4 - k) & 3;
    }
    (r, k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::exec::x87::f80;

    #[test]
    fn fldpi_reduces_to_pi64_minus_pi66() {
        // FLDPI = 0xC90FDAA22168C235·2^-62 = π₆₆ + 2^-64 (π₆₆ ends in ...C234 and 0b11 after):
        // two multiples of π₆₆/2 plus 2^-64, so FSIN gives -sin(2^-64).
        let (r, k) = reduce(f80(false, 0x4000, 0xC90F_DAA2_2168_C235));
        assert_eq!(k, 2);
        assert_eq!(r.to_bits(), Quad::from_u128(1).value.scalbn(-64).to_bits());
        let (r, k) = reduce(f80(true, 0x4000, 0xC90F_DAA2_2168_C235));
        assert_eq!(k, 2);
        assert_eq!(
            r.to_bits(),
            (-Quad::from_u128(1).value.scalbn(-64)).to_bits()
        );
    }

    #[test]
    fn small_arguments_are_unchanged() {
        let x = f80(true, 0x3ffe, 0xC000_0000_0000_0000); // -0.75: nearest multiple is 0
        let (r, k) = reduce(x);
        assert_eq!((r.to_bits(), k), (to_quad(x).to_bits(), 0));
        let (r, k) = reduce(f80(true, 0x3fff, 1 << 63)); // -1 = -π₆₆/2 + (π₆₆/2 - 1)
        let want = Quad::from_u128(PI66 - (1 << 65)).value.scalbn(-65);
        assert_eq!((r.to_bits(), k), (want.to_bits(), 3));
    }
}

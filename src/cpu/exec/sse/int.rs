//! SSE2 integer arithmetic on XMM registers: wrapping and saturating add/subtract, logic
//! (also the bitwise AND/ANDN/OR/XOR PS/PD, which are the same operation), compares, multiplies,
//! averages, min/max and the sum of absolute differences. Each instruction reads the
//! destination and an xmm/m128 source (m128 16-byte aligned) and writes the destination.

use iced_x86::Instruction;

use super::{check, map2, set_xmm, src128, sx, xmm};
use crate::cpu::fault::Res;
use crate::cpu::Cpu;

/// dst ← f(dst, src) over the whole 128 bits.
#[inline]
fn bin(cpu: &mut Cpu, i: &Instruction, f: impl Fn(u128, u128) -> u128) -> Res<()> {
    check(cpu)?;
    let b = src128(cpu, i, 1, true)?;
    let a = xmm(cpu, i, 0);
    set_xmm(cpu, i, 0, f(a, b));
    Ok(())
}

/// Defines lane-wise handlers: `name, lane bits, |a, b| expr` (lanes zero-extended to u64).
macro_rules! lanewise {
    ($($(#[$doc:meta])* $name:ident, $bits:expr, |$a:ident, $b:ident| $e:expr;)*) => {$(
        $(#[$doc])*
        pub fn $name(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
            bin(cpu, i, |x, y| map2(x, y, $bits, |$a, $b| $e))
        }
    )*};
}

fn sat_s(v: i64, bits: u32) -> u64 {
    let max = (1i64 << (bits - 1)) - 1;
    v.clamp(-max - 1, max) as u64
}

fn sat_u(v: i64, bits: u32) -> u64 {
    v.clamp(0, (1i64 << bits) - 1) as u64
}

fn all_ones(c: bool) -> u64 {
    if c {
        u64::MAX
    } else {
        0
    }
}

lanewise! {
    /// PADDB.
    paddb, 8, |a, b| a.wrapping_add(b);
    /// PADDW.
    paddw, 16, |a, b| a.wrapping_add(b);
    /// PADDD.
    paddd, 32, |a, b| a.wrapping_add(b);
    /// PADDQ.
    paddq, 64, |a, b| a.wrapping_add(b);
    /// PSUBB.
    psubb, 8, |a, b| a.wrapping_sub(b);
    /// PSUBW.
    psubw, 16, |a, b| a.wrapping_sub(b);
    /// PSUBD.
    psubd, 32, |a, b| a.wrapping_sub(b);
    /// PSUBQ.
    psubq, 64, |a, b| a.wrapping_sub(b);
    /// PADDSB.
    paddsb, 8, |a, b| sat_s(sx(a, 8) + sx(b, 8), 8);
    /// PADDSW.
    paddsw, 16, |a, b| sat_s(sx(a, 16) + sx(b, 16), 16);
    /// PSUBSB.
    psubsb, 8, |a, b| sat_s(sx(a, 8) - sx(b, 8), 8);
    /// PSUBSW.
    psubsw, 16, |a, b| sat_s(sx(a, 16) - sx(b, 16), 16);
    /// PADDUSB.
    paddusb, 8, |a, b| sat_u(a as i64 + b as i64, 8);
    /// PADDUSW.
    paddusw, 16, |a, b| sat_u(a as i64 + b as i64, 16);
    /// PSUBUSB.
    psubusb, 8, |a, b| sat_u(a as i64 - b as i64, 8);
    /// PSUBUSW.
    psubusw, 16, |a, b| sat_u(a as i64 - b as i64, 16);
    /// PCMPEQB.
    pcmpeqb, 8, |a, b| all_ones(a == b);
    /// PCMPEQW.
    pcmpeqw, 16, |a, b| all_ones(a == b);
    /// PCMPEQD.
    pcmpeqd, 32, |a, b| all_ones(a == b);
    /// PCMPGTB (signed).
    pcmpgtb, 8, |a, b| all_ones(sx(a, 8) > sx(b, 8));
    /// PCMPGTW (signed).
    pcmpgtw, 16, |a, b| all_ones(sx(a, 16) > sx(b, 16));
    /// PCMPGTD (signed).
    pcmpgtd, 32, |a, b| all_ones(sx(a, 32) > sx(b, 32));
    /// PMULLW: low 16 bits of the product.
    pmullw, 16, |a, b| a.wrapping_mul(b);
    /// PMULHW: high 16 bits of the signed product.
    pmulhw, 16, |a, b| ((sx(a, 16) * sx(b, 16)) >> 16) as u64;
    /// PMULHUW: high 16 bits of the unsigned product.
    pmulhuw, 16, |a, b| (a * b) >> 16;
    /// PAVGB: rounded unsigned average.
    pavgb, 8, |a, b| (a + b + 1) >> 1;
    /// PAVGW: rounded unsigned average.
    pavgw, 16, |a, b| (a + b + 1) >> 1;
    /// PMINUB.
    pminub, 8, |a, b| a.min(b);
    /// PMAXUB.
    pmaxub, 8, |a, b| a.max(b);
    /// PMINSW.
    pminsw, 16, |a, b| if sx(a, 16) <= sx(b, 16) { a } else { b };
    /// PMAXSW.
    pmaxsw, 16, |a, b| if sx(a, 16) >= sx(b, 16) { a } else { b };
}

/// PAND, ANDPS, ANDPD.
pub fn pand(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    bin(cpu, i, |a, b| a & b)
}

/// PANDN, ANDNPS, ANDNPD: dst ← !dst & src.
pub fn pandn(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    bin(cpu, i, |a, b| !a & b)
}

/// POR, ORPS, ORPD.
pub fn por(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    bin(cpu, i, |a, b| a | b)
}

/// PXOR, XORPS, XORPD.
pub fn pxor(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    bin(cpu, i, |a, b| a ^ b)
}

/// PMULUDQ: the low dwords of each qword multiplied to 64 bits.
pub fn pmuludq(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    bin(cpu, i, |x, y| {
        map2(x, y, 64, |a, b| (a & 0xffff_ffff) * (b & 0xffff_ffff))
    })
}

/// PMADDWD: signed word products, adjacent pairs summed to dwords.
pub fn pmaddwd(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    bin(cpu, i, |x, y| {
        map2(x, y, 32, |a, b| {
            let lo = sx(a & 0xffff, 16) * sx(b & 0xffff, 16);
            let hi = sx(a >> 16, 16) * sx(b >> 16, 16);
            // Only 0x8000*0x8000 twice overflows; it wraps to 0x80000000 like the hardware.
            (lo.wrapping_add(hi) as u64) & 0xffff_ffff
        })
    })
}

/// PSADBW: per qword, the sum of the eight absolute byte differences.
pub fn psadbw(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    bin(cpu, i, |x, y| {
        map2(x, y, 64, |a, b| {
            (0..8).fold(0u64, |s, k| {
                let p = (a >> (8 * k)) & 0xff;
                let q = (b >> (8 * k)) & 0xff;
                s + p.abs_diff(q)
            })
        })
    })
}

//! The host CPU as an oracle for `fp`: scalar ADD/SUB/MUL/DIV/SQRT and CVTSD2SS on inputs
//! near the edges of the ranges (overflow, tininess, denormals), under random rounding modes,
//! FTZ and DAZ, compared bit for bit with the MXCSR flags. Runs at once, without /dev/kvm.

use std::arch::asm;

use super::fp::{self, Ctx, Op, F32, F64};
use crate::difftest::gen::Rng;

/// One host SSE operation: `code` selects it; returns the result bits and MXCSR after it.
fn host(code: u32, mxcsr: u32, a: u64, b: u64) -> (u64, u32) {
    let mut x: u64 = a;
    let mut out: u32 = 0;
    // SAFETY: only XMM0/XMM1 (declared clobbered) and MXCSR are touched; MXCSR is saved and
    // restored around the operation, the two stack slots are locals of this function, and all
    // exceptions are masked in every `mxcsr` the tests pass, so the operation cannot fault.
    unsafe {
        let mut saved: u32 = 0;
        let mut m = mxcsr;
        asm!("stmxcsr [{s}]", "ldmxcsr [{m}]", s = in(reg) &mut saved, m = in(reg) &mut m);
        match code {
            0 => asm!("movq xmm0, {x}", "movq xmm1, {y}", "addss xmm0, xmm1", "movq {x}, xmm0",
                x = inout(reg) x, y = in(reg) b, out("xmm0") _, out("xmm1") _),
            1 => asm!("movq xmm0, {x}", "movq xmm1, {y}", "mulss xmm0, xmm1", "movq {x}, xmm0",
                x = inout(reg) x, y = in(reg) b, out("xmm0") _, out("xmm1") _),
            2 => asm!("movq xmm0, {x}", "movq xmm1, {y}", "divss xmm0, xmm1", "movq {x}, xmm0",
                x = inout(reg) x, y = in(reg) b, out("xmm0") _, out("xmm1") _),
            3 => asm!("movq xmm0, {x}", "movq xmm1, {y}", "addsd xmm0, xmm1", "movq {x}, xmm0",
                x = inout(reg) x, y = in(reg) b, out("xmm0") _, out("xmm1") _),
            4 => asm!("movq xmm0, {x}", "movq xmm1, {y}", "mulsd xmm0, xmm1", "movq {x}, xmm0",
                x = inout(reg) x, y = in(reg) b, out("xmm0") _, out("xmm1") _),
            5 => asm!("movq xmm0, {x}", "movq xmm1, {y}", "divsd xmm0, xmm1", "movq {x}, xmm0",
                x = inout(reg) x, y = in(reg) b, out("xmm0") _, out("xmm1") _),
            6 => asm!("movq xmm1, {y}", "sqrtsd xmm0, xmm1", "movq {x}, xmm0",
                x = inout(reg) x, y = in(reg) b, out("xmm0") _, out("xmm1") _),
            _ => asm!("movq xmm1, {y}", "cvtsd2ss xmm0, xmm1", "movq {x}, xmm0",
                x = inout(reg) x, y = in(reg) b, out("xmm0") _, out("xmm1") _),
        }
        asm!("stmxcsr [{o}]", "ldmxcsr [{s}]", o = in(reg) &mut out, s = in(reg) &mut saved);
    }
    let width = if code < 3 || code == 7 {
        0xffff_ffff
    } else {
        u64::MAX
    };
    (x & width, out)
}

fn ours(code: u32, mxcsr: u32, a: u64, b: u64) -> (u64, u32) {
    let mut c = Ctx {
        mxcsr,
        pre: 0,
        post: 0,
    };
    let ops = [Op::Add, Op::Mul, Op::Div];
    let r = match code {
        0..=2 => fp::arith::<F32>(&mut c, a, b, ops[code as usize]),
        3..=5 => fp::arith::<F64>(&mut c, a, b, ops[code as usize - 3]),
        6 => fp::sqrt::<F64>(&mut c, b),
        _ => super::cvt::d2s(&mut c, b),
    };
    (r, mxcsr | c.pre | c.post)
}

/// A value near a range edge of the format (`single`), or a random one.
fn edge(rng: &mut Rng, single: bool) -> u64 {
    let (min, max, one, sign, abs) = if single {
        (
            0x0080_0000u64,
            0x7f7f_ffffu64,
            0x3f80_0000u64,
            0x8000_0000u64,
            0x7fff_ffffu64,
        )
    } else {
        (
            0x0010_0000_0000_0000,
            0x7fef_ffff_ffff_ffff,
            0x3ff0_0000_0000_0000,
            1 << 63,
            u64::MAX >> 1,
        )
    };
    let sign = if rng.below(2) == 0 { 0 } else { sign };
    let d = rng.below(4);
    sign | match rng.below(6) {
        0 => min.wrapping_sub(d),
        1 => min + d,
        2 => max - d,
        3 => one + d,
        4 => one - 1 - d,
        _ => rng.next_u64() & abs,
    }
}

/// A double near a single-precision edge (for CVTSD2SS).
fn edge_d2s(rng: &mut Rng) -> u64 {
    let f = f32::from_bits(edge(rng, true) as u32);
    f64::from(f).to_bits() ^ (rng.next_u64() & ((1 << 30) - 1))
}

#[test]
fn fp_matches_the_host_cpu_at_the_edges() {
    let mut rng = Rng::new(0x55e);
    for n in 0..200_000 {
        let code = rng.below(8) as u32;
        let single = code < 3;
        let a = edge(&mut rng, single);
        let b = if code == 7 {
            edge_d2s(&mut rng)
        } else {
            edge(&mut rng, single)
        };
        let mxcsr = 0x1f80 | ((rng.next_u64() as u32) & 0xe040);
        let h = host(code, mxcsr, a, b);
        let o = ours(code, mxcsr, a, b);
        assert_eq!(
            o, h,
            "#{n} op {code} mxcsr {mxcsr:#x} a {a:#x} b {b:#x}: ours (result, mxcsr) vs host"
        );
    }
}

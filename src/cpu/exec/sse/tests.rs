//! SSE/SSE2 tests: single instructions assembled with iced-x86, decoded through the handler
//! table and run directly on a long-mode test CPU (so a fault is seen as the returned `Fault`),
//! plus a small program through the run loop.

use iced_x86::code_asm::*;
use iced_x86::{Decoder, DecoderOptions};

use super::fp::mx;
use crate::cpu::decode::table::handler_for;
use crate::cpu::fault::{exc, gp, ud, vec, Fault};
use crate::cpu::state::{cr0, cr4};
use crate::cpu::tests::{asm, Guest, CODE};
use crate::cpu::CpuExit;

const DATA: u64 = 0x3_0000;

fn guest() -> Guest {
    let mut g = Guest::new();
    g.set_long(&[0xf4]);
    g.cpu.state.cr4 |= cr4::OSFXSR | cr4::OSXMMEXCPT;
    g
}

/// Run the single instruction `f` assembles; its result (state changes stay in `g`).
fn one(
    g: &mut Guest,
    f: impl FnOnce(&mut CodeAssembler) -> Result<(), iced_x86::IcedError>,
) -> Result<(), Fault> {
    let code = asm(64, f);
    let mut d = Decoder::with_ip(64, &code, CODE, DecoderOptions::NONE);
    let i = d.decode();
    let (h, _) = handler_for(&i);
    h(&mut g.cpu, &i)
}

fn x(g: &Guest, n: usize) -> u128 {
    g.cpu.state.fpu.xmm[n]
}

fn setx(g: &mut Guest, n: usize, v: u128) {
    g.cpu.state.fpu.xmm[n] = v;
}

fn ps(v: [f32; 4]) -> u128 {
    v.iter()
        .enumerate()
        .fold(0, |r, (k, f)| r | (u128::from(f.to_bits()) << (32 * k)))
}

fn pd(v: [f64; 2]) -> u128 {
    u128::from(v[0].to_bits()) | (u128::from(v[1].to_bits()) << 64)
}

#[test]
fn availability_faults() {
    let mut g = guest();
    g.cpu.state.cr4 &= !cr4::OSFXSR;
    assert_eq!(one(&mut g, |a| a.addps(xmm0, xmm1)), Err(ud()));
    g.cpu.state.cr4 |= cr4::OSFXSR;
    g.cpu.state.cr0 |= cr0::TS;
    assert_eq!(one(&mut g, |a| a.paddb(xmm0, xmm1)), Err(exc(vec::NM)));
    g.cpu.state.cr0 |= cr0::EM;
    assert_eq!(one(&mut g, |a| a.paddb(xmm0, xmm1)), Err(ud()));
}

#[test]
fn moves_and_alignment() {
    let mut g = guest();
    let v = 0x0011_2233_4455_6677_8899_aabb_ccdd_eeffu128;
    setx(&mut g, 1, v);
    g.cpu.state.gpr[0] = DATA + 1;
    one(&mut g, |a| a.movdqu(xmmword_ptr(rax), xmm1)).unwrap();
    assert_eq!(g.read_u64(DATA + 1), v as u64);
    assert_eq!(g.read_u64(DATA + 9), (v >> 64) as u64);
    one(&mut g, |a| a.movdqu(xmm2, xmmword_ptr(rax))).unwrap();
    assert_eq!(x(&g, 2), v);
    assert_eq!(
        one(&mut g, |a| a.movaps(xmm3, xmmword_ptr(rax))),
        Err(gp(0))
    );
    assert_eq!(one(&mut g, |a| a.paddb(xmm3, xmmword_ptr(rax))), Err(gp(0)));
    assert_eq!(x(&g, 3), 0);
    // Scalar moves: register form merges, load zero-extends.
    setx(&mut g, 4, u128::MAX);
    one(&mut g, |a| a.movss(xmm4, xmm1)).unwrap();
    assert_eq!(x(&g, 4), (u128::MAX << 32) | 0xccdd_eeff);
    one(&mut g, |a| a.movsd_2(xmm4, qword_ptr(rax))).unwrap();
    assert_eq!(x(&g, 4), v & u128::from(u64::MAX));
    // The SSE2 MOVSD store (not the string MOVSD).
    one(&mut g, |a| a.movsd_2(qword_ptr(rax + 0x40), xmm1)).unwrap();
    assert_eq!(g.read_u64(DATA + 0x41), v as u64);
    g.cpu.state.gpr[3] = 0xdead_beef_1234_5678;
    one(&mut g, |a| a.movq(xmm5, rbx)).unwrap();
    assert_eq!(x(&g, 5), 0xdead_beef_1234_5678);
    one(&mut g, |a| a.movd(xmm5, ebx)).unwrap();
    assert_eq!(x(&g, 5), 0x1234_5678);
    one(&mut g, |a| a.movd(ecx, xmm1)).unwrap();
    assert_eq!(g.gpr(1), 0xccdd_eeff);
    one(&mut g, |a| a.movq(xmm6, xmm1)).unwrap();
    assert_eq!(x(&g, 6), v & u128::from(u64::MAX));
    one(&mut g, |a| a.movhlps(xmm6, xmm1)).unwrap();
    assert_eq!(x(&g, 6), v >> 64);
    one(&mut g, |a| a.pmovmskb(edx, xmm1)).unwrap();
    assert_eq!(g.gpr(2), 0xff, "sign bits of the bytes");
}

#[test]
fn mxcsr_load_store() {
    let mut g = guest();
    g.write_u64(DATA, 0x1_0000);
    g.cpu.state.gpr[0] = DATA;
    assert_eq!(one(&mut g, |a| a.ldmxcsr(dword_ptr(rax))), Err(gp(0)));
    g.write_u64(DATA, 0x7fc0);
    one(&mut g, |a| a.ldmxcsr(dword_ptr(rax))).unwrap();
    assert_eq!(g.cpu.state.fpu.mxcsr, 0x7fc0);
    one(&mut g, |a| a.stmxcsr(dword_ptr(rax + 8))).unwrap();
    assert_eq!(g.read_u64(DATA + 8), 0x7fc0);
}

#[test]
fn integer_ops() {
    let mut g = guest();
    setx(&mut g, 0, 0x7f80_0001_ffff_0000_0102_0304_0506_0708);
    setx(&mut g, 1, 0x0180_ffff_0001_8000_0101_0101_0101_0101);
    one(&mut g, |a| a.movdqa(xmm2, xmm0)).unwrap();
    one(&mut g, |a| a.paddsb(xmm2, xmm1)).unwrap();
    assert_eq!(x(&g, 2) >> 120, 0x7f, "saturated");
    one(&mut g, |a| a.movdqa(xmm2, xmm0)).unwrap();
    one(&mut g, |a| a.paddusw(xmm2, xmm1)).unwrap();
    assert_eq!((x(&g, 2) >> 64) as u64 & 0xffff_ffff, 0xffff_8000);
    one(&mut g, |a| a.movdqa(xmm2, xmm0)).unwrap();
    one(&mut g, |a| a.pcmpgtw(xmm2, xmm1)).unwrap();
    assert_eq!((x(&g, 2) >> 64) as u64, 0xffff_ffff_0000_ffff);
    setx(&mut g, 3, 0x8000_7fff_0002_0003);
    setx(&mut g, 4, 0x8000_7fff_0004_0005);
    one(&mut g, |a| a.pmaddwd(xmm3, xmm4)).unwrap();
    assert_eq!(x(&g, 3) as u64, (0x7fff_0001 << 32) | 23);
    setx(&mut g, 5, 0x0000_0000_0000_0000_0102_0304_0506_0708);
    setx(&mut g, 6, 0x0000_0000_0000_0000_0807_0605_0403_0201);
    one(&mut g, |a| a.psadbw(xmm5, xmm6)).unwrap();
    assert_eq!(x(&g, 5), 32);
}

#[test]
fn shifts_shuffles_packs() {
    let mut g = guest();
    setx(&mut g, 0, 0x8000_0001_0000_0002_0000_0003_8000_0004);
    one(&mut g, |a| a.psrad(xmm0, 4)).unwrap();
    assert_eq!(x(&g, 0), 0xf800_0000_0000_0000_0000_0000_f800_0000);
    setx(&mut g, 1, 70);
    setx(&mut g, 2, u128::MAX);
    one(&mut g, |a| a.psllq(xmm2, xmm1)).unwrap();
    assert_eq!(x(&g, 2), 0);
    setx(&mut g, 2, 0x1234);
    one(&mut g, |a| a.pslldq(xmm2, 15)).unwrap();
    assert_eq!(x(&g, 2), 0x34 << 120);
    setx(&mut g, 3, 0x3333_3333_2222_2222_1111_1111_0000_0000);
    one(&mut g, |a| a.pshufd(xmm4, xmm3, 0x1b)).unwrap();
    assert_eq!(x(&g, 4), 0x0000_0000_1111_1111_2222_2222_3333_3333);
    setx(&mut g, 5, 0x0000_0000_0000_0000_0807_0605_0403_0201);
    setx(&mut g, 6, 0x0000_0000_0000_0000_1817_1615_1413_1211);
    one(&mut g, |a| a.punpcklbw(xmm5, xmm6)).unwrap();
    assert_eq!(x(&g, 5), 0x1808_1707_1606_1505_1404_1303_1202_1101);
    setx(&mut g, 7, 0x0000_0000_0000_0000_0000_0000_0100_ff80);
    one(&mut g, |a| a.packsswb(xmm7, xmm7)).unwrap();
    assert_eq!(x(&g, 7) as u32, 0x7f80);
    setx(&mut g, 7, 0x0000_0000_0000_0000_0000_0000_0100_ff80);
    one(&mut g, |a| a.packuswb(xmm7, xmm7)).unwrap();
    assert_eq!(x(&g, 7) as u32, 0xff00);
    setx(&mut g, 8, 0xaaaa_bbbb_cccc_dddd_eeee_ffff_0000_1111);
    one(&mut g, |a| a.pextrw(eax, xmm8, 6)).unwrap();
    assert_eq!(g.gpr(0), 0xbbbb);
    g.cpu.state.gpr[1] = 0x5555;
    one(&mut g, |a| a.pinsrw(xmm8, ecx, 0)).unwrap();
    assert_eq!(x(&g, 8) as u16, 0x5555);
    setx(&mut g, 9, ps([1.0, 2.0, 3.0, 4.0]));
    setx(&mut g, 10, ps([5.0, 6.0, 7.0, 8.0]));
    one(&mut g, |a| a.shufps(xmm9, xmm10, 0b00_01_10_11)).unwrap();
    assert_eq!(x(&g, 9), ps([4.0, 3.0, 6.0, 5.0]));
}

#[test]
fn fp_arith_and_flags() {
    let mut g = guest();
    setx(&mut g, 0, ps([1.0, 2.0, -3.0, 0.5]));
    setx(&mut g, 1, ps([2.0, 0.5, 3.0, 0.25]));
    one(&mut g, |a| a.addps(xmm0, xmm1)).unwrap();
    assert_eq!(x(&g, 0), ps([3.0, 2.5, 0.0, 0.75]));
    assert_eq!(g.cpu.state.fpu.mxcsr, 0x1f80);
    setx(&mut g, 2, pd([1.0, 9.0]));
    one(&mut g, |a| a.sqrtpd(xmm2, xmm2)).unwrap();
    assert_eq!(x(&g, 2), pd([1.0, 3.0]));
    setx(&mut g, 3, pd([1.0, 1.0]));
    setx(&mut g, 4, pd([3.0, 0.0]));
    one(&mut g, |a| a.divsd(xmm3, xmm4)).unwrap();
    assert_eq!(x(&g, 3), pd([1.0 / 3.0, 1.0]));
    assert_eq!(g.cpu.state.fpu.mxcsr, 0x1f80 | mx::PE);
    // Unmasked divide by zero: #XM, destination unchanged, ZE set.
    g.cpu.state.fpu.mxcsr = 0x1f80 & !(mx::ZE << 7);
    let before = x(&g, 3);
    one(&mut g, |a| a.movhlps(xmm5, xmm4)).unwrap();
    assert_eq!(one(&mut g, |a| a.divsd(xmm3, xmm5)), Err(exc(super::XM)));
    assert_eq!(x(&g, 3), before);
    assert_eq!(g.cpu.state.fpu.mxcsr & 0x3f, mx::ZE);
    g.cpu.state.cr4 &= !cr4::OSXMMEXCPT;
    assert_eq!(one(&mut g, |a| a.divsd(xmm3, xmm5)), Err(ud()));
    // Round toward +inf.
    g.cpu.state.fpu.mxcsr = 0x1f80 | (2 << 13);
    setx(&mut g, 6, ps([1.0, 0.0, 0.0, 0.0]));
    setx(&mut g, 7, ps([1e-10, 0.0, 0.0, 0.0]));
    one(&mut g, |a| a.addss(xmm6, xmm7)).unwrap();
    assert_eq!(x(&g, 6) as u32, 0x3f80_0001);
}

#[test]
fn compares_and_comis() {
    let mut g = guest();
    setx(&mut g, 0, ps([1.0, 2.0, f32::NAN, 4.0]));
    setx(&mut g, 1, ps([2.0, 2.0, 1.0, 3.0]));
    one(&mut g, |a| a.movaps(xmm2, xmm0)).unwrap();
    one(&mut g, |a| a.cmpps(xmm2, xmm1, 2)).unwrap();
    assert_eq!(x(&g, 2), 0x0000_0000_0000_0000_ffff_ffff_ffff_ffff);
    assert_eq!(g.cpu.state.fpu.mxcsr & mx::IE, mx::IE, "LE signals on QNaN");
    g.cpu.state.fpu.mxcsr = 0x1f80;
    one(&mut g, |a| a.ucomiss(xmm0, xmm1)).unwrap();
    assert_eq!(g.cpu.state.flags.get() & 0x8c5, 0x01, "1 < 2: CF only");
    one(&mut g, |a| a.pshufd(xmm3, xmm0, 0xaa)).unwrap();
    one(&mut g, |a| a.ucomiss(xmm3, xmm1)).unwrap();
    assert_eq!(g.cpu.state.flags.get() & 0x8c5, 0x45, "unordered: ZF PF CF");
    assert_eq!(g.cpu.state.fpu.mxcsr, 0x1f80, "UCOMISS is quiet on QNaN");
    one(&mut g, |a| a.comiss(xmm3, xmm1)).unwrap();
    assert_eq!(g.cpu.state.fpu.mxcsr, 0x1f80 | mx::IE);
}

#[test]
fn conversions() {
    let mut g = guest();
    g.cpu.state.gpr[0] = (-7i64) as u64;
    one(&mut g, |a| a.cvtsi2sd(xmm0, rax)).unwrap();
    assert_eq!(x(&g, 0) as u64, (-7f64).to_bits());
    setx(&mut g, 1, ps([2.5, -1.5, 3e9, f32::NAN]));
    one(&mut g, |a| a.cvtps2dq(xmm2, xmm1)).unwrap();
    assert_eq!(x(&g, 2), 0x8000_0000_8000_0000_ffff_fffe_0000_0002);
    one(&mut g, |a| a.cvttss2si(rcx, xmm1)).unwrap();
    assert_eq!(g.gpr(1), 2);
    one(&mut g, |a| a.cvtps2pd(xmm3, xmm1)).unwrap();
    assert_eq!(x(&g, 3), pd([2.5, -1.5]));
    one(&mut g, |a| a.cvtpd2ps(xmm4, xmm3)).unwrap();
    assert_eq!(x(&g, 4), ps([2.5, -1.5, 0.0, 0.0]));
}

#[test]
fn program_through_run_loop() {
    let mut g = guest();
    let code = asm(64, |a| {
        a.mov(eax, 0x3f80_0000u32)?;
        a.movd(xmm0, eax)?;
        a.pshufd(xmm0, xmm0, 0)?;
        a.addps(xmm0, xmm0)?;
        a.movmskps(ecx, xmm0)?;
        a.cvttss2si(edx, xmm0)?;
        a.hlt()
    });
    g.write(CODE, &code);
    g.cpu.state.rip = CODE;
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(x(&g, 0), ps([2.0; 4]));
    assert_eq!(g.gpr(1), 0);
    assert_eq!(g.gpr(2), 2);
}

#[test]
fn page_crossing_store_is_all_or_nothing() {
    let mut g = guest();
    // Unmap the second 2 MiB page; a 16-byte store starting 8 bytes before it must fault
    // without writing the first half.
    g.write_u64(crate::cpu::tests::PT + 0x2000 + 8, 0);
    g.write_u64(0x1f_fff8, 0x1111);
    setx(&mut g, 1, u128::MAX);
    g.cpu.state.gpr[0] = 0x1f_fff8;
    let r = one(&mut g, |a| a.movdqu(xmmword_ptr(rax), xmm1));
    assert!(
        matches!(r, Err(Fault::Exception(e)) if e.vector() == vec::PF),
        "{r:?}"
    );
    assert_eq!(g.read_u64(0x1f_fff8), 0x1111);
}

#[test]
fn protected_mode_32bit() {
    let mut g = Guest::new();
    let code = asm(32, |a| {
        a.movdqu(xmm0, xmmword_ptr(0x3_0000))?;
        a.paddd(xmm0, xmm0)?;
        a.movups(xmmword_ptr(0x3_0010), xmm0)?;
        a.hlt()
    });
    g.set_flat32(&code);
    g.cpu.state.cr4 |= cr4::OSFXSR;
    g.write_u64(DATA, 0x0000_0002_0000_0001);
    g.write_u64(DATA + 8, 0x8000_0000_ffff_ffff);
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(g.read_u64(DATA + 0x10), 0x0000_0004_0000_0002);
    assert_eq!(g.read_u64(DATA + 0x18), 0x0000_0000_ffff_fffe);
}

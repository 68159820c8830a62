//! ALU, shift, multiply and bit instructions checked against the host CPU: the same instruction
//! runs natively (inline asm) and in the guest on a table of edge-case operands and incoming
//! flags; results and every defined flag must agree.

use iced_x86::code_asm::*;
use iced_x86::IcedError;

use super::*;
use crate::cpu::flags::{AF, ARITH, CF, OF, PF, SF, ZF};

type HostFn = fn(u64, u64, u64, u64) -> (u64, u64);
type GuestFn = fn(&mut CodeAssembler) -> Result<(), IcedError>;

/// Which flags the SDM leaves undefined for a case (besides count rules handled below).
#[derive(Clone, Copy)]
enum Undef {
    None,
    Af,
    Shift,
    Rotate,
    Mul,
    Bit,
    /// BSF/BSR: only ZF is defined (CF differs between Intel and AMD).
    Scan,
}

macro_rules! host {
    ($insn:literal) => {{
        fn f(a: u64, b: u64, c: u64, fl: u64) -> (u64, u64) {
            let (mut a, mut fl) = (a, fl);
            // SAFETY: register-only arithmetic on the host; the two pushes are balanced by
            // the two pops, and only arithmetic flags (never DF/TF/IF) are loaded.
            unsafe {
                core::arch::asm!(
                    "push {fl}", "popfq", $insn, "pushfq", "pop {fl}",
                    fl = inout(reg) fl,
                    inout("rax") a,
                    in("rdx") b,
                    in("rcx") c,
                );
            }
            (a, fl)
        }
        f as HostFn
    }};
}

macro_rules! case {
    ($insn:literal, $u:expr, $bits:expr, |$a:ident| $g:expr) => {
        (
            $insn,
            host!($insn),
            (|$a: &mut CodeAssembler| $g) as GuestFn,
            $u,
            $bits,
        )
    };
}

fn values() -> Vec<u64> {
    let mut v = vec![
        0,
        1,
        2,
        0x7f,
        0x80,
        0xff,
        0x100,
        0x7fff,
        0x8000,
        0xffff,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_ffff,
        0x1_0000_0000,
        0x7fff_ffff_ffff_ffff,
        0x8000_0000_0000_0000,
        u64::MAX,
    ];
    let mut x = 0x1234_5678_9abc_def1u64;
    for _ in 0..6 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x);
    }
    v
}

const COUNTS: [u64; 14] = [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63];

fn check(cases: &[(&str, HostFn, GuestFn, Undef, u32)], shifts: bool) {
    let mut g = Guest::new();
    let data = 0x3000u64;
    for &(name, host, guest, undef, bits) in cases {
        let code = asm(64, |a| {
            a.mov(rax, qword_ptr(data))?;
            a.mov(rdx, qword_ptr(data + 8))?;
            a.mov(rcx, qword_ptr(data + 16))?;
            a.push(qword_ptr(data + 24))?;
            a.popfq()?;
            guest(a)?;
            a.pushfq()?;
            a.pop(rbx)?;
            a.hlt()
        });
        g.set_long(&code);
        let base = g.cpu.state.clone();
        let vals = values();
        let seconds: Vec<u64> = if shifts {
            COUNTS.to_vec()
        } else {
            vals.clone()
        };
        for &a in &vals {
            for &b in &seconds {
                for cf_in in [0u64, CF | ZF | AF] {
                    let fl_in = 2 | cf_in;
                    let (c, bv) = if shifts {
                        (b, 0x5555_aaaa_0f0f_f0f0)
                    } else {
                        (0, b)
                    };
                    let (hr, hf) = host(a, bv, c, fl_in);
                    g.write_u64(data, a);
                    g.write_u64(data + 8, bv);
                    g.write_u64(data + 16, c);
                    g.write_u64(data + 24, fl_in);
                    g.cpu.set_state(base.clone());
                    assert_eq!(g.run(), CpuExit::Halt, "{name}");
                    let (gr, gf) = (g.gpr(0), g.gpr(3));
                    let masked = c & if bits == 64 { 63 } else { 31 };
                    let mut mask = ARITH;
                    match undef {
                        Undef::None => {}
                        Undef::Af => mask &= !AF,
                        Undef::Shift => {
                            mask &= !AF;
                            if masked != 1 {
                                mask &= !OF;
                            }
                            if masked > u64::from(bits) {
                                mask &= !CF;
                            }
                        }
                        Undef::Rotate => {
                            if masked != 1 {
                                mask &= !OF;
                            }
                        }
                        Undef::Mul => mask &= CF | OF,
                        Undef::Bit => mask = CF,
                        Undef::Scan => mask = ZF,
                    }
                    if masked == 0 && shifts {
                        mask = ARITH;
                    }
                    assert_eq!(
                        gr, hr,
                        "{name}: result for a={a:#x} b={bv:#x} c={c} flags_in={fl_in:#x}"
                    );
                    assert_eq!(
                        gf & mask,
                        hf & mask,
                        "{name}: flags for a={a:#x} b={bv:#x} c={c} flags_in={fl_in:#x} \
                         (guest {gf:#x}, host {hf:#x})"
                    );
                }
            }
        }
    }
    let _ = (PF, SF);
}

#[test]
fn binary_ops_match_host() {
    let cases = [
        case!("add al, dl", Undef::None, 8, |a| a.add(al, dl)),
        case!("add ax, dx", Undef::None, 16, |a| a.add(ax, dx)),
        case!("add eax, edx", Undef::None, 32, |a| a.add(eax, edx)),
        case!("add rax, rdx", Undef::None, 64, |a| a.add(rax, rdx)),
        case!("adc al, dl", Undef::None, 8, |a| a.adc(al, dl)),
        case!("adc eax, edx", Undef::None, 32, |a| a.adc(eax, edx)),
        case!("adc rax, rdx", Undef::None, 64, |a| a.adc(rax, rdx)),
        case!("sub al, dl", Undef::None, 8, |a| a.sub(al, dl)),
        case!("sub ax, dx", Undef::None, 16, |a| a.sub(ax, dx)),
        case!("sub rax, rdx", Undef::None, 64, |a| a.sub(rax, rdx)),
        case!("sbb al, dl", Undef::None, 8, |a| a.sbb(al, dl)),
        case!("sbb ax, dx", Undef::None, 16, |a| a.sbb(ax, dx)),
        case!("sbb rax, rdx", Undef::None, 64, |a| a.sbb(rax, rdx)),
        case!("cmp eax, edx", Undef::None, 32, |a| a.cmp(eax, edx)),
        case!("and eax, edx", Undef::Af, 32, |a| a.and(eax, edx)),
        case!("or ax, dx", Undef::Af, 16, |a| a.or(ax, dx)),
        case!("xor rax, rdx", Undef::Af, 64, |a| a.xor(rax, rdx)),
        case!("test al, dl", Undef::Af, 8, |a| a.test(al, dl)),
        case!("inc al", Undef::None, 8, |a| a.inc(al)),
        case!("inc rax", Undef::None, 64, |a| a.inc(rax)),
        case!("dec ax", Undef::None, 16, |a| a.dec(ax)),
        case!("dec eax", Undef::None, 32, |a| a.dec(eax)),
        case!("neg al", Undef::None, 8, |a| a.neg(al)),
        case!("neg rax", Undef::None, 64, |a| a.neg(rax)),
        case!("not eax", Undef::None, 32, |a| a.not(eax)),
        case!("imul rax, rdx", Undef::Mul, 64, |a| a.imul_2(rax, rdx)),
        case!("imul ax, dx", Undef::Mul, 16, |a| a.imul_2(ax, dx)),
        case!("mul dl", Undef::Mul, 8, |a| a.mul(dl)),
        case!("bt eax, edx", Undef::Bit, 32, |a| a.bt(eax, edx)),
        case!("btc rax, rdx", Undef::Bit, 64, |a| a.btc(rax, rdx)),
        case!("cmovl eax, edx", Undef::None, 32, |a| a.cmovl(eax, edx)),
        case!("setbe al", Undef::None, 8, |a| a.setbe(al)),
        case!("xadd eax, edx", Undef::None, 32, |a| a.xadd(eax, edx)),
        case!("movsx rax, dl", Undef::None, 64, |a| a.movsx(rax, dl)),
        case!("bswap eax", Undef::None, 32, |a| a.bswap(eax)),
        case!("popcnt rax, rdx", Undef::None, 64, |a| a.popcnt(rax, rdx)),
        case!("bsr rax, rdx", Undef::Scan, 64, |a| a.bsr(rax, rdx)),
    ];
    check(&cases, false);
}

#[test]
fn shifts_and_rotates_match_host() {
    let cases = [
        case!("shl al, cl", Undef::Shift, 8, |a| a.shl(al, cl)),
        case!("shl ax, cl", Undef::Shift, 16, |a| a.shl(ax, cl)),
        case!("shl eax, cl", Undef::Shift, 32, |a| a.shl(eax, cl)),
        case!("shl rax, cl", Undef::Shift, 64, |a| a.shl(rax, cl)),
        case!("shr al, cl", Undef::Shift, 8, |a| a.shr(al, cl)),
        case!("shr eax, cl", Undef::Shift, 32, |a| a.shr(eax, cl)),
        case!("shr rax, cl", Undef::Shift, 64, |a| a.shr(rax, cl)),
        case!("sar al, cl", Undef::Shift, 8, |a| a.sar(al, cl)),
        case!("sar ax, cl", Undef::Shift, 16, |a| a.sar(ax, cl)),
        case!("sar rax, cl", Undef::Shift, 64, |a| a.sar(rax, cl)),
        case!("rol al, cl", Undef::Rotate, 8, |a| a.rol(al, cl)),
        case!("rol eax, cl", Undef::Rotate, 32, |a| a.rol(eax, cl)),
        case!("ror ax, cl", Undef::Rotate, 16, |a| a.ror(ax, cl)),
        case!("ror rax, cl", Undef::Rotate, 64, |a| a.ror(rax, cl)),
        case!("rcl al, cl", Undef::Rotate, 8, |a| a.rcl(al, cl)),
        case!("rcl eax, cl", Undef::Rotate, 32, |a| a.rcl(eax, cl)),
        case!("rcr ax, cl", Undef::Rotate, 16, |a| a.rcr(ax, cl)),
        case!("rcr rax, cl", Undef::Rotate, 64, |a| a.rcr(rax, cl)),
        case!("shld eax, edx, cl", Undef::Shift, 32, |a| a
            .shld(eax, edx, cl)),
        case!("shrd rax, rdx, cl", Undef::Shift, 64, |a| a
            .shrd(rax, rdx, cl)),
    ];
    check(&cases, true);
}

//! x87 transcendental instructions on the software CPU against results recorded from the host
//! CPU (AMD EPYC, natively at CPL 3): the π₆₆ reduction, special operands, flags, C1/C2, the
//! stack effects and a few ordinary values where the host's result is the correctly rounded
//! one. Each case runs FNINIT, FLDCW, FLD ST(1), FLD ST(0), the instruction, FNSTSW, then two
//! FSTP m80 (the second of an empty register stores the indefinite, as on the host).

use iced_x86::code_asm::*;

use super::*;

const DATA: u64 = 0x3_0000;

#[derive(Clone, Copy, Debug)]
enum Op {
    Fsin,
    Fcos,
    Fsincos,
    Fptan,
    F2xm1,
    Fyl2x,
    Fyl2xp1,
    Fpatan,
}

type F = (u16, u64);

/// (instruction, FCW, ST(0), ST(1), first FSTP, second FSTP, FSW after the instruction).
/// Recorded on the host with a C program doing the same sequence.
#[rustfmt::skip]
const CASES: &[(Op, u16, F, F, F, F, u16)] = &[
        (Op::Fsin, 0x37f, (0x4000, 0xc90fdaa22168c235), (0x0, 0x0), (0xbfbf, 0x8000000000000000), (0x0000, 0x0), 0x3220),
        (Op::Fsin, 0xf7f, (0x3f00, 0x8000000000000000), (0x0, 0x0), (0x3eff, 0xffffffffffffffff), (0x0000, 0x0), 0x3020),
        (Op::Fcos, 0x37f, (0x3f00, 0x8000000000000000), (0x0, 0x0), (0x3fff, 0x8000000000000000), (0x0000, 0x0), 0x3220),
        (Op::Fptan, 0x37f, (0x0000, 0x0), (0x0, 0x0), (0x3fff, 0x8000000000000000), (0x0000, 0x0), 0x2800),
        (Op::Fsin, 0x37f, (0x403e, 0x8000000000000000), (0x0, 0x0), (0x403e, 0x8000000000000000), (0x0000, 0x0), 0x3400),
        (Op::Fsin, 0x37f, (0x7fff, 0x8000000000000000), (0x0, 0x0), (0xffff, 0xc000000000000000), (0x0000, 0x0), 0x3001),
        (Op::F2xm1, 0x37f, (0x3fff, 0x8000000000000000), (0x0, 0x0), (0x3fff, 0x8000000000000000), (0x0000, 0x0), 0x3220),
        (Op::F2xm1, 0x37f, (0x0000, 0x1), (0x0, 0x0), (0x0000, 0x1), (0x0000, 0x0), 0x3232),
        (Op::F2xm1, 0x37f, (0xffff, 0x8000000000000000), (0x0, 0x0), (0xbfff, 0x8000000000000000), (0x0000, 0x0), 0x3000),
        (Op::Fyl2x, 0x37f, (0x4002, 0x8000000000000000), (0x3fff, 0x8000000000000000), (0x4000, 0xc000000000000000), (0xffff, 0xc000000000000000), 0x3820),
        (Op::Fyl2x, 0x37f, (0x0000, 0x0), (0x3fff, 0x8000000000000000), (0xffff, 0x8000000000000000), (0xffff, 0xc000000000000000), 0x3804),
        (Op::Fyl2x, 0x37f, (0xbfff, 0x8000000000000000), (0x3fff, 0x8000000000000000), (0xffff, 0xc000000000000000), (0xffff, 0xc000000000000000), 0x3801),
        (Op::Fyl2xp1, 0x37f, (0x3ffe, 0x8000000000000000), (0x3fff, 0x8000000000000000), (0x3ffe, 0x95c01a39fbd687a0), (0xffff, 0xc000000000000000), 0x3a20),
        (Op::Fpatan, 0x37f, (0x8000, 0x0), (0x0000, 0x0), (0x4000, 0xc90fdaa22168c235), (0xffff, 0xc000000000000000), 0x3a20),
        (Op::Fpatan, 0x37f, (0x7fff, 0x8000000000000000), (0x7fff, 0x8000000000000000), (0x3ffe, 0xc90fdaa22168c235), (0xffff, 0xc000000000000000), 0x3a20),
        (Op::Fpatan, 0x37f, (0x7fff, 0x8000000000000000), (0x0000, 0x1), (0x0000, 0x0), (0xffff, 0xc000000000000000), 0x3802),
        (Op::Fsincos, 0x37f, (0x3f00, 0x8000000000000000), (0x0, 0x0), (0x3fff, 0x8000000000000000), (0x3f00, 0x8000000000000000), 0x2a20),
        (Op::Fsin, 0x37f, (0x3fff, 0x8000000000000000), (0x0, 0x0), (0x3ffe, 0xd76aa47848677021), (0x0000, 0x0), 0x3220),
        (Op::Fcos, 0xb7f, (0x400f, 0xc350000000000000), (0x0, 0x0), (0xbffe, 0xffd61c20d9ed3a05), (0x0000, 0x0), 0x3020),
        (Op::Fptan, 0x77f, (0x3ffd, 0x9999999999999999), (0x0, 0x0), (0x3fff, 0x8000000000000000), (0x3ffd, 0x9e61522714ccbdca), 0x2820),
        (Op::F2xm1, 0xf7f, (0x3ffd, 0x9999999999999999), (0x0, 0x0), (0x3ffc, 0xecb11effe0ca386e), (0x0000, 0x0), 0x3020),
        (Op::Fyl2x, 0x37f, (0x4002, 0xa000000000000000), (0xbfff, 0xc000000000000000), (0xc001, 0x9f73da38d9d4a83f), (0xffff, 0xc000000000000000), 0x3a20),
        (Op::Fyl2xp1, 0xb7f, (0xbffc, 0x8888888888888888), (0x4001, 0xa000000000000000), (0xbfff, 0x8420e96961fbd4f5), (0xffff, 0xc000000000000000), 0x3820),
        (Op::Fpatan, 0x37f, (0xc001, 0xe000000000000000), (0x4000, 0xc000000000000000), (0x4000, 0xaf261b65008c5160), (0xffff, 0xc000000000000000), 0x3a20),
        (Op::Fsin, 0x37f, (0x4033, 0xd6bf94d5e57a42bc), (0x0, 0x0), (0xbffe, 0xf49d5ea63d069b64), (0x0000, 0x0), 0x3020),
        (Op::F2xm1, 0xf7f, (0x3fff, 0x8000000000000000), (0x0, 0x0), (0x3ffe, 0xffffffffffffffff), (0x0000, 0x0), 0x3020),
        (Op::F2xm1, 0x77f, (0xbfff, 0x8000000000000000), (0x0, 0x0), (0xbffe, 0x8000000000000000), (0x0000, 0x0), 0x3020),
        (Op::Fyl2x, 0xf7f, (0x4040, 0x8000000000000000), (0xbfff, 0x8000000000000000), (0xc005, 0x8200000000000000), (0xffff, 0xc000000000000000), 0x3820),
];

fn run_case(op: Op, fcw: u16, x: F, y: F) -> (F, F, u16) {
    let mut g = Guest::new();
    g.write_u64(DATA, u64::from(fcw));
    g.write_u64(DATA + 16, y.1);
    g.write_u64(DATA + 24, u64::from(y.0));
    g.write_u64(DATA + 32, x.1);
    g.write_u64(DATA + 40, u64::from(x.0));
    let code = asm(64, |a| {
        a.mov(rbx, DATA)?;
        a.fninit()?;
        a.fldcw(word_ptr(rbx))?;
        a.fld(tword_ptr(rbx + 16))?;
        a.fld(tword_ptr(rbx + 32))?;
        match op {
            Op::Fsin => a.fsin()?,
            Op::Fcos => a.fcos()?,
            Op::Fsincos => a.fsincos()?,
            Op::Fptan => a.fptan()?,
            Op::F2xm1 => a.f2xm1()?,
            Op::Fyl2x => a.fyl2x()?,
            Op::Fyl2xp1 => a.fyl2xp1()?,
            Op::Fpatan => a.fpatan()?,
        }
        a.fnstsw(word_ptr(rbx + 64))?;
        a.fstp(tword_ptr(rbx + 80))?;
        a.fstp(tword_ptr(rbx + 96))?;
        a.hlt()
    });
    g.set_long(&code);
    assert_eq!(g.run(), CpuExit::Halt);
    let f = |at: u64| (g.read_u64(at + 8) as u16, g.read_u64(at));
    (f(DATA + 80), f(DATA + 96), g.read_u64(DATA + 64) as u16)
}

#[test]
fn transcendentals_match_results_recorded_on_the_host() {
    let mut bad = Vec::new();
    for &(op, fcw, x, y, r0, r1, fsw) in CASES {
        let got = run_case(op, fcw, x, y);
        if got != (r0, r1, fsw) {
            bad.push(format!(
                "{op:?} fcw {fcw:#x} x {x:x?} y {y:x?}: got {got:x?}, host {:x?}",
                (r0, r1, fsw)
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// FSIN of FLDPI's value shows the reduction constant: with the true π the result would be
/// -5.0165e-20; with π rounded to 66 bits it is exactly -2^-64.
#[test]
fn fsin_of_fldpi_reveals_the_66_bit_pi() {
    let (r, _, fsw) = run_case(Op::Fsin, 0x37f, (0x4000, 0xc90f_daa2_2168_c235), (0, 0));
    assert_eq!(r, (0xbfbf, 1 << 63));
    assert_eq!(
        fsw & 0x4700,
        0x0200,
        "C1 (rounded up in magnitude), C2 clear"
    );
}

/// Stack faults, FSW and results recorded on the host: FSIN of an empty register, FPATAN
/// with one value, FPTAN and FSINCOS on a full stack (C1 = 1, both slots the indefinite).
#[test]
fn stack_faults_match_the_host() {
    type Prog = fn(&mut CodeAssembler) -> Result<(), iced_x86::IcedError>;
    let full = |a: &mut CodeAssembler| -> Result<(), iced_x86::IcedError> {
        for _ in 0..7 {
            a.fld1()?;
        }
        a.fldpi()
    };
    let cases: [(&str, Prog, u16, bool); 4] = [
        ("fsin empty", |a| a.fsin(), 0x0041, false),
        (
            "fpatan one value",
            |a| {
                a.fld1()?;
                a.fpatan()
            },
            0x0041,
            false,
        ),
        ("fptan full", |a| a.fptan(), 0x3a41, true),
        ("fsincos full", |a| a.fsincos(), 0x3a41, true),
    ];
    for (name, body, fsw, fill) in cases {
        let mut g = Guest::new();
        let code = asm(64, |a| {
            a.mov(rbx, DATA)?;
            a.fninit()?;
            if fill {
                full(a)?;
            }
            body(a)?;
            a.fnstsw(word_ptr(rbx))?;
            a.fstp(tword_ptr(rbx + 16))?;
            a.fstp(tword_ptr(rbx + 32))?;
            a.hlt()
        });
        g.set_long(&code);
        assert_eq!(g.run(), CpuExit::Halt);
        assert_eq!(g.read_u64(DATA) as u16, fsw, "{name}: FSW");
        assert_eq!(
            (g.read_u64(DATA + 24) as u16, g.read_u64(DATA + 16)),
            (0xffff, 0xc000_0000_0000_0000),
            "{name}: ST(0) is the indefinite"
        );
        if fill {
            assert_eq!(g.read_u64(DATA + 40) as u16, 0xffff, "{name}: ST(1)");
        }
    }
}

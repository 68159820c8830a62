//! Random x87 blocks for the differential checker.
//!
//! Data enters as a PRNG; it leaves as a [`Block`] like the integer generator's: FNINIT, an
//! FLDCW of a random (all-exceptions-masked) control word, then random x87 forms reading and
//! writing `[r15 + disp]` in the data page (loads, arithmetic, FXCH, compares, FCOMI into
//! EFLAGS, FIST/FSTP back to the page, FNSTSW AX...), and at the end an FXSAVE of the whole
//! x87 state into the last 512 bytes of the data page, so stack, tags, status and control
//! words are compared with the page. The pointer fields of that image (FOP, FIP/FCS, FDP/FDS)
//! are zeroed after the FXSAVE: the host CPU may deprecate them, and they say nothing about
//! arithmetic. MXCSR_MASK is zeroed too (host-specific). FBLD (undefined on invalid BCD
//! digits, which random data is full of) is not generated, nor are the transcendental
//! instructions: ours are correctly rounded, the host's (AMD EPYC) are not, and no instruction
//! of the family is bit-exact against it. Share of random operands whose result differs by
//! one ulp, or only in C1 (32000 cases of `gen_transcend`, default seed): FSIN 0.40% + 0.17%,
//! FCOS 0.51% + 0.15%, FSINCOS 0.98% + 0.10%, FPTAN 9.0% + 3.4%, F2XM1 2.6% + 0.5%, FYL2X
//! 1.7% + 0.5%, FYL2XP1 2.8% + 1.0%, FPATAN 2.0% + 0.3%. They are measured case by case, with
//! a one-ulp tolerance and everything else exact, by `difftest::transcend`.

use iced_x86::{Code, IcedError, Instruction, MemoryOperand, Register};

use super::gen::{Block, Rng, DATA_SIZE};

/// Offset in the data page of the FXSAVE image (16-byte aligned, 512 bytes).
pub const FXSAVE_OFF: u64 = DATA_SIZE - 512;

/// Instructions before the first one worth blaming in a mismatch (FNINIT, 8 FLDZ, FNINIT).
pub const PROLOGUE_LEN: usize = 10;

/// How a form takes its operands.
#[derive(Clone, Copy)]
enum Ops {
    None,
    Mem,
    StI,
    St0StI,
    StISt0,
    Ax,
}

const FORMS: &[(Code, Ops)] = &[
    (Code::Fld_m32fp, Ops::Mem),
    (Code::Fld_m64fp, Ops::Mem),
    (Code::Fld_m80fp, Ops::Mem),
    (Code::Fld_sti, Ops::StI),
    (Code::Fild_m16int, Ops::Mem),
    (Code::Fild_m32int, Ops::Mem),
    (Code::Fild_m64int, Ops::Mem),
    (Code::Fld1, Ops::None),
    (Code::Fldz, Ops::None),
    (Code::Fldpi, Ops::None),
    (Code::Fldl2e, Ops::None),
    (Code::Fldl2t, Ops::None),
    (Code::Fldlg2, Ops::None),
    (Code::Fldln2, Ops::None),
    (Code::Fst_m32fp, Ops::Mem),
    (Code::Fst_m64fp, Ops::Mem),
    (Code::Fstp_m32fp, Ops::Mem),
    (Code::Fstp_m64fp, Ops::Mem),
    (Code::Fstp_m80fp, Ops::Mem),
    (Code::Fst_sti, Ops::StI),
    (Code::Fstp_sti, Ops::StI),
    (Code::Fist_m16int, Ops::Mem),
    (Code::Fist_m32int, Ops::Mem),
    (Code::Fistp_m16int, Ops::Mem),
    (Code::Fistp_m32int, Ops::Mem),
    (Code::Fistp_m64int, Ops::Mem),
    (Code::Fisttp_m16int, Ops::Mem),
    (Code::Fisttp_m32int, Ops::Mem),
    (Code::Fisttp_m64int, Ops::Mem),
    (Code::Fbstp_m80bcd, Ops::Mem),
    (Code::Fadd_m32fp, Ops::Mem),
    (Code::Fadd_m64fp, Ops::Mem),
    (Code::Fadd_st0_sti, Ops::St0StI),
    (Code::Fadd_sti_st0, Ops::StISt0),
    (Code::Faddp_sti_st0, Ops::StISt0),
    (Code::Fiadd_m16int, Ops::Mem),
    (Code::Fiadd_m32int, Ops::Mem),
    (Code::Fsub_m32fp, Ops::Mem),
    (Code::Fsub_m64fp, Ops::Mem),
    (Code::Fsub_st0_sti, Ops::St0StI),
    (Code::Fsub_sti_st0, Ops::StISt0),
    (Code::Fsubp_sti_st0, Ops::StISt0),
    (Code::Fisub_m32int, Ops::Mem),
    (Code::Fsubr_m64fp, Ops::Mem),
    (Code::Fsubr_st0_sti, Ops::St0StI),
    (Code::Fsubr_sti_st0, Ops::StISt0),
    (Code::Fsubrp_sti_st0, Ops::StISt0),
    (Code::Fisubr_m16int, Ops::Mem),
    (Code::Fmul_m32fp, Ops::Mem),
    (Code::Fmul_m64fp, Ops::Mem),
    (Code::Fmul_st0_sti, Ops::St0StI),
    (Code::Fmul_sti_st0, Ops::StISt0),
    (Code::Fmulp_sti_st0, Ops::StISt0),
    (Code::Fimul_m32int, Ops::Mem),
    (Code::Fdiv_m32fp, Ops::Mem),
    (Code::Fdiv_m64fp, Ops::Mem),
    (Code::Fdiv_st0_sti, Ops::St0StI),
    (Code::Fdiv_sti_st0, Ops::StISt0),
    (Code::Fdivp_sti_st0, Ops::StISt0),
    (Code::Fidiv_m16int, Ops::Mem),
    (Code::Fdivr_m64fp, Ops::Mem),
    (Code::Fdivr_st0_sti, Ops::St0StI),
    (Code::Fdivr_sti_st0, Ops::StISt0),
    (Code::Fdivrp_sti_st0, Ops::StISt0),
    (Code::Fidivr_m32int, Ops::Mem),
    (Code::Fchs, Ops::None),
    (Code::Fabs, Ops::None),
    (Code::Fsqrt, Ops::None),
    (Code::Frndint, Ops::None),
    (Code::Fscale, Ops::None),
    (Code::Fxtract, Ops::None),
    (Code::Fprem, Ops::None),
    (Code::Fprem1, Ops::None),
    (Code::Fxch_st0_sti, Ops::St0StI),
    (Code::Fcom_m32fp, Ops::Mem),
    (Code::Fcom_m64fp, Ops::Mem),
    (Code::Fcom_st0_sti, Ops::St0StI),
    (Code::Fcomp_m64fp, Ops::Mem),
    (Code::Fcomp_st0_sti, Ops::St0StI),
    (Code::Fcompp, Ops::None),
    (Code::Fucom_st0_sti, Ops::St0StI),
    (Code::Fucomp_st0_sti, Ops::St0StI),
    (Code::Fucompp, Ops::None),
    (Code::Ficom_m16int, Ops::Mem),
    (Code::Ficomp_m32int, Ops::Mem),
    (Code::Fcomi_st0_sti, Ops::St0StI),
    (Code::Fcomip_st0_sti, Ops::St0StI),
    (Code::Fucomi_st0_sti, Ops::St0StI),
    (Code::Fucomip_st0_sti, Ops::St0StI),
    (Code::Ftst, Ops::None),
    (Code::Fxam, Ops::None),
    (Code::Fcmovb_st0_sti, Ops::St0StI),
    (Code::Fcmove_st0_sti, Ops::St0StI),
    (Code::Fcmovbe_st0_sti, Ops::St0StI),
    (Code::Fcmovu_st0_sti, Ops::St0StI),
    (Code::Fcmovnb_st0_sti, Ops::St0StI),
    (Code::Fcmovne_st0_sti, Ops::St0StI),
    (Code::Fcmovnbe_st0_sti, Ops::St0StI),
    (Code::Fcmovnu_st0_sti, Ops::St0StI),
    (Code::Fincstp, Ops::None),
    (Code::Fdecstp, Ops::None),
    (Code::Ffree_sti, Ops::StI),
    (Code::Fnclex, Ops::None),
    (Code::Fnstsw_AX, Ops::Ax),
];

fn mem(disp: u64) -> MemoryOperand {
    MemoryOperand::with_base_displ(Register::R15, disp as i64)
}

fn st(i: u64) -> Register {
    Register::ST0 + i as u32
}

/// A control word with every exception masked and random precision and rounding control.
fn control_word(rng: &mut Rng) -> u64 {
    let pc = [0u64, 2, 3, 3][rng.below(4) as usize];
    0x7f | (pc << 8) | (rng.below(4) << 10)
}

/// One random x87 instruction.
fn random_insn(rng: &mut Rng) -> Result<Instruction, IcedError> {
    let (code, ops) = FORMS[rng.below(FORMS.len() as u64) as usize];
    let i = rng.range(1, 7);
    match ops {
        Ops::None => Ok(Instruction::with(code)),
        Ops::Mem => Instruction::with1(code, mem(rng.below(FXSAVE_OFF - 16))),
        Ops::StI => Instruction::with1(code, st(i)),
        Ops::St0StI => Instruction::with2(code, Register::ST0, st(i)),
        Ops::StISt0 => Instruction::with2(code, st(i), Register::ST0),
        Ops::Ax => Instruction::with1(code, Register::AX),
    }
}

/// The end of every x87 block: FNSTSW AX, FXSAVE into the data page, the pointer fields and
/// MXCSR_MASK of the image zeroed.
pub fn epilogue() -> Result<Vec<Instruction>, IcedError> {
    let mut v = vec![
        Instruction::with1(Code::Fnstsw_AX, Register::AX)?,
        Instruction::with1(Code::Fxsave_m512byte, mem(FXSAVE_OFF))?,
    ];
    for (off, code) in [
        (6, Code::Mov_rm16_imm16),
        (8, Code::Mov_rm64_imm32),
        (16, Code::Mov_rm64_imm32),
        (28, Code::Mov_rm32_imm32),
    ] {
        v.push(Instruction::with2(code, mem(FXSAVE_OFF + off), 0u32)?);
    }
    Ok(v)
}

/// A block of FNINIT (registers cleared), FLDCW, three loads, `n` random x87 instructions, FNSTSW AX and the
/// FXSAVE of the state (pointer fields zeroed), assembled at `addr`.
pub fn x87_block(rng: &mut Rng, n: usize, addr: u64) -> Result<Block, IcedError> {
    let cw_off = FXSAVE_OFF - 16;
    // Eight FLDZ between two FNINITs: every physical register holds +0, so the FXSAVE image
    // of empty registers does not depend on what earlier blocks left there.
    let mut v = vec![Instruction::with(Code::Fninit)];
    v.extend(std::iter::repeat_n(Instruction::with(Code::Fldz), 8));
    v.extend([
        Instruction::with(Code::Fninit),
        Instruction::with2(Code::Mov_rm16_imm16, mem(cw_off), control_word(rng) as u32)?,
        Instruction::with1(Code::Fldcw_m2byte, mem(cw_off))?,
    ]);
    let loads = [Code::Fild_m32int, Code::Fld_m64fp, Code::Fild_m16int];
    for code in loads {
        v.push(Instruction::with1(code, mem(8 * rng.below(cw_off / 8)))?);
    }
    for _ in 0..n {
        v.push(random_insn(rng)?);
    }
    v.extend(epilogue()?);
    Block::assemble(v, addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_deterministic_and_decode_to_our_handlers() {
        let a = x87_block(&mut Rng::new(5), 40, 0x1000).unwrap();
        let b = x87_block(&mut Rng::new(5), 40, 0x1000).unwrap();
        assert_eq!(a.bytes, b.bytes);
        for ins in &a.instrs {
            let m = ins.mnemonic();
            let plain = matches!(
                m,
                iced_x86::Mnemonic::Mov | iced_x86::Mnemonic::Fxsave | iced_x86::Mnemonic::Hlt
            );
            assert!(
                plain || crate::cpu::exec::x87::handler(m).is_some(),
                "{:?} has no x87 semantics",
                ins.code()
            );
        }
    }
}

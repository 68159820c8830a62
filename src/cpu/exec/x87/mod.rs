//! The x87 FPU: the register stack in `cpu.state.fpu` ([`FpuState`]) driven by the decoded
//! x87 instructions. Data enters from guest memory (m16/m32/m64 integers, m32/m64/m80 reals,
//! m80 BCD, environment and save images) and from the stack registers; it leaves through the
//! same memory formats, FSTSW AX and, for FCOMI/FUCOMI, EFLAGS.
//!
//! Arithmetic is exact: values are converted bit for bit between [`F80`] and
//! `rustc_apfloat`'s `X87DoubleExtended`, operations round with FCW.RC, and FCW.PC (24/53-bit
//! significands) is honoured by computing in IEEE quad (113 bits, the same exponent range as
//! the 80-bit format, wide enough that the second rounding is harmless) and rounding once to a
//! 24- or 53-bit semantics with x87's exponent range. The transcendental instructions
//! (`transcend.rs` and `transcend/`) compute in quad precision after an exact reduction by
//! the x87's 66-bit π and round once: correctly rounded, which the host CPU is not quite (it
//! differs by one ulp on 0.5-12% of random operands, see `difftest::transcend`).
//!
//! Exceptions follow the masked/unmasked model: a masked exception sets its FSW flag and the
//! instruction produces the default result (QNaN indefinite, ±∞, a denormal...); an unmasked
//! IE/DE/ZE leaves destination and stack unchanged; any unmasked exception sets FSW.ES and
//! FSW.B, and the next *waiting* x87 instruction raises #MF (vector 16). We model no FERR#
//! line, so #MF is delivered whatever CR0.NE says. Unmasked OE/UE store the masked result
//! (no exponent re-biasing). #NM is raised when CR0.EM or CR0.TS is set.
//!
//! Files: `arith.rs` (add/sub/mul/div, sqrt, rounding, scale, remainder), `load_store.rs`
//! (loads, stores, integer and BCD conversions, constants, FXCH, FCMOVcc), `compare.rs`
//! (FCOM family, FTST, FXAM), `control.rs` (control/status words, environment, FSAVE/FRSTOR,
//! FWAIT), `special.rs` (FSQRT, FRNDINT, FSCALE, FXTRACT, FPREM), `transcend.rs` (FSIN...FYL2XP1,
//! numerics in `transcend/`). FXSAVE/FXRSTOR live in `exec/fxsave.rs`.

pub mod arith;
pub mod compare;
pub mod control;
pub mod load_store;
pub mod special;
pub mod transcend;

use iced_x86::{Instruction, Mnemonic as M, OpKind, Register};
use rustc_apfloat::ieee::{Quad, X87DoubleExtended};
use rustc_apfloat::{Float, Round, Status};

use super::{ea, mem_seg};
use crate::cpu::decode::Handler;
use crate::cpu::fault::{exc, vec, Res};
use crate::cpu::fpu_state::{tag, FpuState, F80};
use crate::cpu::state::{cr0, sreg};
use crate::cpu::Cpu;

/// The 80-bit extended format of apfloat.
pub type X80 = X87DoubleExtended;

/// FSW bits.
pub mod sw {
    /// Invalid operation.
    pub const IE: u16 = 1 << 0;
    /// Denormal operand.
    pub const DE: u16 = 1 << 1;
    /// Zero divide.
    pub const ZE: u16 = 1 << 2;
    /// Overflow.
    pub const OE: u16 = 1 << 3;
    /// Underflow.
    pub const UE: u16 = 1 << 4;
    /// Precision (inexact).
    pub const PE: u16 = 1 << 5;
    /// Stack fault (with IE).
    pub const SF: u16 = 1 << 6;
    /// Error summary.
    pub const ES: u16 = 1 << 7;
    /// Condition code 0.
    pub const C0: u16 = 1 << 8;
    /// Condition code 1.
    pub const C1: u16 = 1 << 9;
    /// Condition code 2.
    pub const C2: u16 = 1 << 10;
    /// Condition code 3.
    pub const C3: u16 = 1 << 14;
    /// Busy (mirrors ES).
    pub const B: u16 = 1 << 15;
    /// The six exception flags.
    pub const EXC: u16 = 0x3f;
    /// All four condition codes.
    pub const CC: u16 = C0 | C1 | C2 | C3;
}

/// The QNaN "real indefinite", the masked response to an invalid operation.
pub const INDEFINITE: F80 = F80 {
    mant: 0xc000_0000_0000_0000,
    sign_exp: 0xffff,
};

/// An F80 as an apfloat value (bit for bit).
pub fn to_x80(f: F80) -> X80 {
    X80::from_bits(u128::from(f.mant) | (u128::from(f.sign_exp) << 64))
}

/// An apfloat value as an F80 (bit for bit).
pub fn from_x80(x: X80) -> F80 {
    let b = x.to_bits();
    F80 {
        mant: b as u64,
        sign_exp: (b >> 64) as u16,
    }
}

/// Biased exponent.
pub fn exp_of(f: F80) -> u16 {
    f.sign_exp & 0x7fff
}

/// Sign bit.
pub fn neg_of(f: F80) -> bool {
    f.sign_exp & 0x8000 != 0
}

/// Any NaN (including pseudo-NaNs).
pub fn is_nan(f: F80) -> bool {
    exp_of(f) == 0x7fff && f.mant << 1 != 0
}

/// A signaling NaN (quiet bit 62 clear).
pub fn is_snan(f: F80) -> bool {
    is_nan(f) && f.mant & (1 << 62) == 0
}

/// Encodings the 387 and later reject (pseudo-NaN/∞, unnormals): invalid operands.
pub fn is_unsupported(f: F80) -> bool {
    let e = exp_of(f);
    e != 0 && f.mant >> 63 == 0
}

/// A denormal (or pseudo-denormal) operand.
pub fn is_denormal(f: F80) -> bool {
    exp_of(f) == 0 && f.mant != 0
}

/// ±0.
pub fn is_zero(f: F80) -> bool {
    exp_of(f) == 0 && f.mant == 0
}

/// ±∞.
pub fn is_inf(f: F80) -> bool {
    exp_of(f) == 0x7fff && f.mant == 1 << 63
}

/// The NaN quieted (bit 62 set).
pub fn quiet(f: F80) -> F80 {
    F80 {
        mant: f.mant | (1 << 62),
        ..f
    }
}

/// The tag a register holding `f` gets.
pub fn tag_for(f: F80) -> u16 {
    match exp_of(f) {
        0 if f.mant == 0 => tag::ZERO,
        0 | 0x7fff => tag::SPECIAL,
        _ if f.mant >> 63 == 0 => tag::SPECIAL,
        _ => tag::VALID,
    }
}

/// Signed F80 from sign, biased exponent and significand.
pub fn f80(neg: bool, exp: u16, mant: u64) -> F80 {
    F80 {
        mant,
        sign_exp: (u16::from(neg) << 15) | (exp & 0x7fff),
    }
}

/// Rounding mode from FCW.RC.
pub fn round_mode(fcw: u16) -> Round {
    match (fcw >> 10) & 3 {
        0 => Round::NearestTiesToEven,
        1 => Round::TowardNegative,
        2 => Round::TowardPositive,
        _ => Round::TowardZero,
    }
}

/// apfloat status → FSW exception bits.
pub fn status_bits(s: Status) -> u16 {
    let mut b = 0;
    if s.contains(Status::INVALID_OP) {
        b |= sw::IE;
    }
    if s.contains(Status::DIV_BY_ZERO) {
        b |= sw::ZE;
    }
    if s.contains(Status::OVERFLOW) {
        b |= sw::OE;
    }
    if s.contains(Status::UNDERFLOW) {
        b |= sw::UE;
    }
    if s.contains(Status::INEXACT) {
        b |= sw::PE;
    }
    b
}

/// An F80 widened exactly to IEEE quad.
pub fn to_quad(f: F80) -> Quad {
    let mut lost = false;
    rustc_apfloat::FloatConvert::convert(to_x80(f), &mut lost).value
}

/// Stack and status helpers on the register file.
impl FpuState {
    /// Tag of physical register `p`.
    pub fn tag_of(&self, p: usize) -> u16 {
        (self.ftw >> (2 * (p & 7))) & 3
    }

    /// Set the tag of physical register `p`.
    pub fn set_tag(&mut self, p: usize, t: u16) {
        let sh = 2 * (p & 7);
        self.ftw = (self.ftw & !(3 << sh)) | ((t & 3) << sh);
    }

    /// Is ST(`i`) empty?
    pub fn empty(&self, i: usize) -> bool {
        self.tag_of(self.phys(i)) == tag::EMPTY
    }

    /// ST(`i`).
    pub fn st_get(&self, i: usize) -> F80 {
        self.st[self.phys(i)]
    }

    /// Write ST(`i`) and tag it from its value.
    pub fn st_set(&mut self, i: usize, v: F80) {
        let p = self.phys(i);
        self.st[p] = v;
        self.set_tag(p, tag_for(v));
    }

    /// Set TOP.
    pub fn set_top(&mut self, t: usize) {
        self.fsw = (self.fsw & !(7 << 11)) | (((t & 7) as u16) << 11);
    }

    /// Push `v` (TOP decrements; the caller checked for overflow).
    pub fn push(&mut self, v: F80) {
        let t = self.top().wrapping_sub(1) & 7;
        self.set_top(t);
        self.st_set(0, v);
    }

    /// Pop ST(0) (its tag becomes empty).
    pub fn pop(&mut self) {
        let p = self.phys(0);
        self.set_tag(p, tag::EMPTY);
        self.set_top(self.top() + 1);
    }

    /// Set C0..C3 (C1 included) from a mask of `sw::C*` bits.
    pub fn set_cc(&mut self, cc: u16) {
        self.fsw = (self.fsw & !sw::CC) | (cc & sw::CC);
    }

    /// Set or clear C1 alone.
    pub fn set_c1(&mut self, on: bool) {
        self.fsw = (self.fsw & !sw::C1) | if on { sw::C1 } else { 0 };
    }

    /// Record exception flags `bits` (with SF), update ES/B. Returns true when an unmasked
    /// IE, DE or ZE is among them: the instruction must then leave its destination alone.
    pub fn signal(&mut self, bits: u16) -> bool {
        self.fsw |= bits & (sw::EXC | sw::SF);
        self.update_es();
        bits & (sw::IE | sw::DE | sw::ZE) & !self.fcw != 0
    }

    /// Recompute ES and B from the flags and the masks.
    pub fn update_es(&mut self) {
        if self.fsw & sw::EXC & !self.fcw & 0x3f != 0 {
            self.fsw |= sw::ES | sw::B;
        } else {
            self.fsw &= !(sw::ES | sw::B);
        }
    }

    /// Stack underflow (reading an empty register): IE+SF, C1 = 0. True when unmasked.
    pub fn underflow(&mut self) -> bool {
        self.set_c1(false);
        self.signal(sw::IE | sw::SF)
    }

    /// Stack overflow (pushing onto a full register): IE+SF, C1 = 1. True when unmasked.
    pub fn overflow(&mut self) -> bool {
        self.set_c1(true);
        self.signal(sw::IE | sw::SF)
    }

    /// Is ST(7), the next push target, occupied?
    pub fn push_would_overflow(&self) -> bool {
        !self.empty(7)
    }
}

/// Which checks an instruction gets on entry.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Waiting data instruction: #NM, pending #MF, FIP/FOP/FDP recorded.
    Data,
    /// Waiting control instruction (FLDCW, FLDENV, FRSTOR...): #NM and #MF, nothing recorded.
    Control,
    /// Non-waiting control instruction (FNINIT, FNSTSW...): #NM only.
    NoWait,
}

/// Entry checks: #NM when CR0.EM or CR0.TS; #MF for a pending unmasked exception.
pub fn enter(cpu: &Cpu, kind: Entry) -> Res<()> {
    if cpu.state.cr0 & (cr0::EM | cr0::TS) != 0 {
        return Err(exc(vec::NM));
    }
    if kind != Entry::NoWait && cpu.state.fpu.fsw & sw::ES != 0 {
        return Err(exc(vec::MF));
    }
    Ok(())
}

/// Record FIP/FCS/FOP and, for a memory operand, FDP/FDS (data instructions only).
pub fn record(cpu: &mut Cpu, i: &Instruction) {
    let rip = cpu.state.rip;
    let cs = &cpu.state.seg[sreg::CS];
    let lin = if cpu.state.mode64() {
        rip
    } else {
        cs.base.wrapping_add(rip) & 0xffff_ffff
    };
    let cs_sel = cs.selector;
    let mut bytes = [0u8; 15];
    let len = i.len().min(15);
    let fop = if cpu.fetch_bytes(lin, &mut bytes[..len]).is_ok() {
        opcode_bits(&bytes[..len])
    } else {
        0
    };
    let has_mem = (0..i.op_count()).any(|n| i.op_kind(n) == OpKind::Memory);
    let (fdp, fds) = if has_mem {
        (ea(cpu, i), cpu.state.seg[mem_seg(i)].selector)
    } else {
        (cpu.state.fpu.fdp, cpu.state.fpu.fds)
    };
    let f = &mut cpu.state.fpu;
    f.fip = rip;
    f.fcs = cs_sel;
    f.fop = fop;
    f.fdp = fdp;
    f.fds = fds;
}

/// FOP: the low 3 bits of the D8..DF opcode byte and the ModRM byte after it.
fn opcode_bits(bytes: &[u8]) -> u16 {
    let pos = bytes.iter().position(|b| (0xd8..=0xdf).contains(b));
    match pos {
        Some(p) if p + 1 < bytes.len() => (u16::from(bytes[p] & 7) << 8) | u16::from(bytes[p + 1]),
        _ => 0,
    }
}

/// Index of an ST(i) register operand.
pub fn st_reg(r: Register) -> usize {
    (r as usize).wrapping_sub(Register::ST0 as usize) & 7
}

/// Is operand `n` a memory operand?
pub fn is_mem(i: &Instruction, n: u32) -> bool {
    i.op_kind(n) == OpKind::Memory
}

/// Read `size` (≤ 8) bytes of the memory operand.
pub fn read_mem(cpu: &mut Cpu, i: &Instruction, off: u64, size: usize) -> Res<u64> {
    let a = ea(cpu, i).wrapping_add(off);
    cpu.read_seg(mem_seg(i), mask_addr(cpu, i, a), size)
}

/// Write `size` (≤ 8) bytes of the memory operand.
pub fn write_mem(cpu: &mut Cpu, i: &Instruction, off: u64, size: usize, v: u64) -> Res<()> {
    let a = ea(cpu, i).wrapping_add(off);
    cpu.write_seg(mem_seg(i), mask_addr(cpu, i, a), size, v)
}

/// Wrap an operand offset to the address size of the instruction.
fn mask_addr(cpu: &Cpu, i: &Instruction, a: u64) -> u64 {
    let size = match i.memory_base() {
        Register::None => i.memory_index().size(),
        b => b.size(),
    };
    match size {
        2 => a & 0xffff,
        4 => a & 0xffff_ffff,
        8 => a,
        _ if cpu.state.bitness() == 64 => a,
        _ if i.memory_displ_size() == 2 => a & 0xffff,
        _ => a & 0xffff_ffff,
    }
}

/// Make sure a write of `len` bytes at the memory operand cannot fault (all pages touched),
/// so multi-part stores are all-or-nothing.
pub fn probe_mem(cpu: &mut Cpu, i: &Instruction, len: u64) -> Res<()> {
    let mut off = 0;
    while off < len {
        let n = (len - off).min(8) as usize;
        let v = read_mem(cpu, i, off, n)?;
        write_mem(cpu, i, off, n, v)?;
        off += n as u64;
    }
    Ok(())
}

/// Read an 80-bit value at offset `off` of the memory operand.
pub fn read_m80(cpu: &mut Cpu, i: &Instruction, off: u64) -> Res<F80> {
    let mant = read_mem(cpu, i, off, 8)?;
    let se = read_mem(cpu, i, off + 8, 2)? as u16;
    Ok(F80 { mant, sign_exp: se })
}

/// Write an 80-bit value at offset `off` of the memory operand.
pub fn write_m80(cpu: &mut Cpu, i: &Instruction, off: u64, v: F80) -> Res<()> {
    // Rewriting the old top bytes proves them writable without changing them, so a fault
    // on either part leaves memory as it was.
    let old = read_mem(cpu, i, off + 8, 2)?;
    write_mem(cpu, i, off + 8, 2, old)?;
    write_mem(cpu, i, off, 8, v.mant)?;
    write_mem(cpu, i, off + 8, 2, u64::from(v.sign_exp))
}

/// Run a data instruction: entry checks, the body, then FIP/FOP/FDP.
pub fn data(
    cpu: &mut Cpu,
    i: &Instruction,
    body: fn(&mut Cpu, &Instruction) -> Res<()>,
) -> Res<()> {
    enter(cpu, Entry::Data)?;
    body(cpu, i)?;
    record(cpu, i);
    Ok(())
}

/// The semantics of an x87 mnemonic, if implemented.
pub fn handler(m: M) -> Option<Handler> {
    use self::{arith as a, compare as c, control as k, load_store as l, transcend as t};
    let h: Handler = match m {
        M::Fld => l::fld,
        M::Fst | M::Fstp => l::fst,
        M::Fild => l::fild,
        M::Fist | M::Fistp | M::Fisttp => l::fist,
        M::Fbld => l::fbld,
        M::Fbstp => l::fbstp,
        M::Fld1 | M::Fldz | M::Fldpi | M::Fldl2e | M::Fldl2t | M::Fldlg2 | M::Fldln2 => l::fldc,
        M::Fxch => l::fxch,
        M::Fcmovb
        | M::Fcmove
        | M::Fcmovbe
        | M::Fcmovu
        | M::Fcmovnb
        | M::Fcmovne
        | M::Fcmovnbe
        | M::Fcmovnu => l::fcmov,
        M::Fadd
        | M::Faddp
        | M::Fiadd
        | M::Fsub
        | M::Fsubp
        | M::Fisub
        | M::Fsubr
        | M::Fsubrp
        | M::Fisubr
        | M::Fmul
        | M::Fmulp
        | M::Fimul
        | M::Fdiv
        | M::Fdivp
        | M::Fidiv
        | M::Fdivr
        | M::Fdivrp
        | M::Fidivr => a::arith,
        M::Fchs | M::Fabs => a::fchs_fabs,
        M::Fsqrt => special::fsqrt,
        M::Frndint => special::frndint,
        M::Fscale => special::fscale,
        M::Fxtract => special::fxtract,
        M::Fprem | M::Fprem1 => special::fprem,
        M::Fcom | M::Fcomp | M::Fcompp | M::Fucom | M::Fucomp | M::Fucompp => c::fcom,
        M::Ficom | M::Ficomp => c::fcom,
        M::Fcomi | M::Fcomip | M::Fucomi | M::Fucomip => c::fcomi,
        M::Ftst => c::ftst,
        M::Fxam => c::fxam,
        M::Finit | M::Fninit => k::finit,
        M::Fclex | M::Fnclex => k::fclex,
        M::Fldcw => k::fldcw,
        M::Fstcw | M::Fnstcw => k::fstcw,
        M::Fstsw | M::Fnstsw => k::fstsw,
        M::Fstenv | M::Fnstenv => k::fstenv,
        M::Fldenv => k::fldenv,
        M::Fsave | M::Fnsave => k::fsave,
        M::Frstor => k::frstor,
        M::Ffree | M::Ffreep => k::ffree,
        M::Fincstp | M::Fdecstp => k::fincdec,
        // The 8087/287 FENI/FDISI/FSETPM are no-ops from the 387 on.
        M::Fnop | M::Fneni | M::Fndisi | M::Fnsetpm | M::Feni | M::Fdisi | M::Fsetpm => k::fnop,
        M::Wait => k::fwait,
        M::Fsin
        | M::Fcos
        | M::Fsincos
        | M::Fptan
        | M::Fpatan
        | M::F2xm1
        | M::Fyl2x
        | M::Fyl2xp1 => t::transcend,
        _ => return None,
    };
    Some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_roundtrips_bits() {
        for f in [
            INDEFINITE,
            f80(false, 0x3fff, 1 << 63),
            f80(true, 0, 1),
            f80(false, 0x7fff, 1 << 63),
        ] {
            assert_eq!(from_x80(to_x80(f)), f);
        }
    }

    #[test]
    fn tags_and_classes() {
        assert_eq!(tag_for(f80(false, 0, 0)), tag::ZERO);
        assert_eq!(tag_for(f80(false, 0x3fff, 1 << 63)), tag::VALID);
        assert_eq!(tag_for(f80(false, 0, 5)), tag::SPECIAL);
        assert_eq!(tag_for(INDEFINITE), tag::SPECIAL);
        assert!(is_snan(f80(false, 0x7fff, (1 << 63) | 1)));
        assert!(!is_snan(INDEFINITE));
        assert!(is_unsupported(f80(false, 0x3fff, 1)));
    }

    #[test]
    fn push_pop_and_signal() {
        let mut f = FpuState {
            fcw: 0x037f,
            ..FpuState::default()
        };
        f.push(f80(false, 0x3fff, 1 << 63));
        assert_eq!(f.top(), 7);
        assert_eq!(f.tag_of(7), tag::VALID);
        assert!(!f.empty(0) && f.empty(1));
        f.pop();
        assert_eq!((f.top(), f.ftw), (0, 0xffff));
        assert!(!f.signal(sw::IE));
        assert_eq!(f.fsw & sw::ES, 0);
        f.fcw &= !1;
        assert!(f.signal(sw::IE));
        assert_ne!(f.fsw & (sw::ES | sw::B), 0);
    }

    #[test]
    fn fop_from_bytes() {
        assert_eq!(opcode_bits(&[0x66, 0xdd, 0x45, 0x08]), 0x545);
        assert_eq!(opcode_bits(&[0xd9, 0xe8]), 0x1e8);
    }
}

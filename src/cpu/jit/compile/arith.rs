//! Register arithmetic as host instructions: the ALU group, INC/DEC, SHL/SHR/SAR by an
//! immediate, IMUL, LEA, and the flags they leave, recorded exactly as the interpreter would
//! (lazily for the ALU group and INC/DEC, eagerly for shifts and IMUL).

use super::{flags, gpr, Src, Translator};
use crate::cpu::exec::fast;
use crate::cpu::flags::{layout, FlagOp, ARITH, PF, SF, ZF};
use crate::cpu::jit::asm::{Alu, Shift, R, W};
use crate::cpu::jit::helpers;

impl Translator {
    /// Record the lazy flags of an operation: kind, width, operands in RAX and RCX (`b` as a
    /// constant when `None`), result in RDX.
    pub(super) fn record(&mut self, kind: FlagOp, w: W, b: Option<u64>) {
        self.a.store_imm8(flags(layout::OP), kind as u8);
        self.a
            .store_imm32(flags(layout::SIZE), if w == W::Q { 64 } else { 32 });
        self.a.store(W::Q, flags(layout::A), R::Rax);
        match b {
            Some(v) => self.a.store_imm64(flags(layout::B), v, R::Rcx),
            None => self.a.store(W::Q, flags(layout::B), R::Rcx),
        }
        self.a.store(W::Q, flags(layout::R), R::Rdx);
        self.known = Some((kind, w));
    }

    pub(super) fn alu(&mut self, op: Alu, kind: FlagOp, writes: bool, w: W, r0: u8, src: Src) {
        self.a.load(w, R::Rax, gpr(r0));
        self.load_src(w, src);
        self.alu_values(op, kind, writes.then_some(r0), w);
    }

    /// RCX = `src`.
    pub(super) fn load_src(&mut self, w: W, src: Src) {
        match src {
            Src::Reg(r1) => self.a.load(w, R::Rcx, gpr(r1)),
            Src::Imm(v) => self.a.mov_imm(R::Rcx, v),
        }
    }

    /// RDX = RAX op RCX, written to `dst` if any, flags recorded.
    pub(super) fn alu_values(&mut self, op: Alu, kind: FlagOp, dst: Option<u8>, w: W) {
        self.a.mov_rr(W::Q, R::Rdx, R::Rax);
        self.a.alu_rr(op, w, R::Rdx, R::Rcx);
        if let Some(r0) = dst {
            self.a.store(W::Q, gpr(r0), R::Rdx);
        }
        self.record(kind, w, None);
    }

    /// SHL/SHR/SAR of a register by a non-zero immediate count, flags as `exec::shift`
    /// computes them: CF the last bit out; OF the result's sign XOR CF (SHL), the operand's
    /// sign (SHR) or clear (SAR), whatever the count; SF, ZF, PF of the result; AF clear.
    pub(super) fn shift(&mut self, kind: Shift, w: W, r0: u8, c: u8) {
        let sign = if w == W::Q { 63 } else { 31 };
        self.a.load(w, R::Rax, gpr(r0));
        self.a.mov_rr(W::Q, R::Rdx, R::Rax);
        self.a.shift(kind, w, R::Rdx, c);
        self.a.setcc(2, R::Rcx);
        self.a.movzx8(R::Rcx);
        let of_from = match kind {
            Shift::Shl => Some(R::Rdx),
            Shift::Shr => Some(R::Rax),
            Shift::Sar => None,
        };
        if let Some(src) = of_from {
            self.a.mov_rr(w, R::Rsi, src);
            self.a.shift(Shift::Shr, w, R::Rsi, sign);
            if kind == Shift::Shl {
                self.a.alu_rr(Alu::Xor, W::D, R::Rsi, R::Rcx);
            }
            self.a.shift(Shift::Shl, W::D, R::Rsi, 11);
            self.a.alu_rr(Alu::Or, W::D, R::Rcx, R::Rsi);
        }
        self.eager_flags(w, r0);
    }

    /// Write the result in RDX to `r0` and make the flags eager: CF and OF come in RCX
    /// (bits 0 and 11), SF, ZF and PF are those of the result, AF is clear.
    pub(super) fn eager_flags(&mut self, w: W, r0: u8) {
        self.a.test_rr(w, R::Rdx, R::Rdx);
        self.a.pushf();
        self.a.pop(R::Rsi);
        self.a.alu_ri(Alu::And, W::D, R::Rsi, (SF | ZF | PF) as i32);
        self.a.alu_rr(Alu::Or, W::D, R::Rcx, R::Rsi);
        self.a.store(W::Q, gpr(r0), R::Rdx);
        self.a.load(W::Q, R::Rsi, flags(layout::BITS));
        self.a.alu_ri(Alu::And, W::Q, R::Rsi, !(ARITH as i32));
        self.a.alu_rr(Alu::Or, W::Q, R::Rsi, R::Rcx);
        self.a.store(W::Q, flags(layout::BITS), R::Rsi);
        self.a.store_imm8(flags(layout::OP), FlagOp::None as u8);
        self.known = Some((FlagOp::None, w));
    }

    pub(super) fn incdec(&mut self, w: W, r0: u8, dec: bool) {
        // INC/DEC keep CF: make it current in the flag bits first, as `set_lazy` does.
        self.fold_cf();
        self.a.load(w, R::Rax, gpr(r0));
        self.a.mov_rr(W::Q, R::Rdx, R::Rax);
        self.a.incdec(w, R::Rdx, dec);
        self.a.store(W::Q, gpr(r0), R::Rdx);
        self.record(if dec { FlagOp::Dec } else { FlagOp::Inc }, w, Some(1));
    }

    /// Write the current CF into the flag bits.
    pub(super) fn fold_cf(&mut self) {
        match self.known {
            // CF already lives in the bits.
            Some((FlagOp::None | FlagOp::Inc | FlagOp::Dec, _)) => {}
            Some((FlagOp::Logic, _)) => self.a.alu_mi8(Alu::And, W::Q, flags(layout::BITS), -2),
            Some((kind @ (FlagOp::Add | FlagOp::Sub), w)) => {
                self.replay(kind, w);
                self.a.setcc(2, R::Rcx);
                self.a.movzx8(R::Rcx);
                self.a.alu_mi8(Alu::And, W::Q, flags(layout::BITS), -2);
                self.a.alu_mr(Alu::Or, W::Q, flags(layout::BITS), R::Rcx);
            }
            None => self.call_helper(helpers::fold_cf as *const () as usize, None),
        }
    }

    /// Set the host flags as the recorded ADD or SUB/CMP set the guest's (inline producers
    /// never carry in, so running the operation again on its operands reproduces them).
    pub(super) fn replay(&mut self, kind: FlagOp, w: W) {
        self.a.load(w, R::Rax, flags(layout::A));
        let op = if kind == FlagOp::Add {
            Alu::Add
        } else {
            Alu::Cmp
        };
        self.a.alu_rm(op, w, R::Rax, flags(layout::B));
    }

    pub(super) fn lea(&mut self, w: W, r0: u8, m: &fast::Mem) {
        self.ea(m);
        if w == W::D {
            self.a.mov_rr(W::D, R::Rax, R::Rax);
        }
        self.a.store(W::Q, gpr(r0), R::Rax);
    }
}

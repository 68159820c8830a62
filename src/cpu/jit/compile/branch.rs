//! How a translated block ends: Jcc (conditions from host flags when the flags' producer
//! was emitted inline), CALL rel32 and RET, and the exit itself, which loops back to the top,
//! chains into the next block's translation through the jump cache, or returns to the run
//! loop.

use std::mem::offset_of;

use super::memory::HOST;
use super::{field, flags, gpr, rip_field, state, Translator};
use crate::accel::code_watch::layout as watch_layout;
use crate::cpu::decode::GEN_OFFSET;
use crate::cpu::flags::{layout, FlagOp, ARITH};
use crate::cpu::jit::asm::{Alu, Label, M, R, W};
use crate::cpu::jit::{helpers, Jit, JumpEntry, LoopCtx, JUMP_BITS, JUMP_ENTRY_SHIFT, JUMP_HASH};
use crate::cpu::mmu::seg::canonical;
use crate::cpu::mmu::tlb::{layout as tlb_layout, Access, TLB_SIZE};
use crate::cpu::state::CpuState;
use crate::cpu::Cpu;

impl Translator {
    /// CALL rel32 in 64-bit mode: push the return address, then on as a jump.
    pub(super) fn call(&mut self, target: u64, k: u32, start: u64, end: u64, last_index: u32) {
        let slow = self.a.label();
        self.push_slot(slow);
        self.a.store_imm64(HOST, end, R::Rcx);
        self.a.store(W::Q, gpr(4), R::Rax);
        self.slow_path(slow, k, start, end);
        self.goto(target, last_index);
    }

    /// RET / RET imm16 in 64-bit mode (`pop` bytes off the stack): the return address is
    /// checked canonical (the call-out raises the #GP), then on as an indirect jump.
    pub(super) fn ret(&mut self, pop: i32, k: u32, start: u64, end: u64, last_index: u32) {
        let slow = self.a.label();
        self.pop_top(slow);
        self.a.mov_rr(W::Q, R::Rdx, R::Rcx);
        self.a.shl(R::Rdx, 16);
        self.a.sar(R::Rdx, 16);
        self.a.alu_rr(Alu::Cmp, W::Q, R::Rdx, R::Rcx);
        self.a.jcc(5, slow);
        self.a.alu_ri(Alu::Add, W::Q, R::Rax, pop);
        self.a.store(W::Q, gpr(4), R::Rax);
        self.a.store(W::Q, rip_field(), R::Rcx);
        self.slow_path(slow, k, start, end);
        self.goto_dynamic(last_index);
    }

    /// Set the host flags so that the returned condition code holds exactly when guest
    /// condition `cc` does (without a branch: for CMOVcc and SETcc).
    fn host_condition(&mut self, cc: u8) -> u8 {
        let carry = matches!(cc >> 1, 1 | 3);
        match self.known {
            Some((kind @ (FlagOp::Add | FlagOp::Sub), w)) => self.replay(kind, w),
            Some((FlagOp::Logic, w)) => {
                self.a.load(w, R::Rax, flags(layout::R));
                self.a.test_rr(w, R::Rax, R::Rax);
            }
            Some((kind @ (FlagOp::Inc | FlagOp::Dec), w)) if !carry => {
                self.a.load(w, R::Rax, flags(layout::A));
                self.a.incdec(w, R::Rax, kind == FlagOp::Dec);
            }
            Some((FlagOp::None, _)) => self.bits_to_host_flags(),
            _ => {
                self.call_helper(helpers::cond as *const () as usize, Some(u64::from(cc)));
                self.a.test_rr(W::D, R::Rax, R::Rax);
                return 5;
            }
        }
        cc
    }

    /// CMOVcc between 32- or 64-bit registers (the 32-bit form zero-extends the destination
    /// either way, as the hardware does).
    pub(super) fn cmov(&mut self, cc: u8, w: W, r0: u8, r1: u8) {
        let host = self.host_condition(cc);
        self.a.load(w, R::Rax, gpr(r0));
        self.a.load(w, R::Rcx, gpr(r1));
        self.a.cmov(host, w, R::Rax, R::Rcx);
        self.a.store(W::Q, gpr(r0), R::Rax);
    }

    /// SETcc of a byte register (AL..R15B, never AH..BH).
    pub(super) fn setcc(&mut self, cc: u8, r0: u8) {
        let host = self.host_condition(cc);
        self.a.setcc(host, R::Rax);
        self.a.store8(gpr(r0), R::Rax);
    }

    pub(super) fn jcc(&mut self, cc: u8, target: u64, end: u64, last_index: u32) {
        let taken = self.a.label();
        if self.known.is_some() {
            let host = self.host_condition(cc);
            self.a.jcc(host, taken);
        } else {
            // Flags from a call-out: materialised ones are tested in host flags, lazy ones by
            // the interpreter's rules.
            let lazy = self.a.label();
            let fall = self.a.label();
            self.a.cmp_m8(flags(layout::OP), FlagOp::None as u8);
            self.a.jcc(5, lazy);
            self.jcc_on_bits(cc, taken);
            self.a.jmp(fall);
            self.a.bind(lazy);
            self.call_helper(helpers::cond as *const () as usize, Some(u64::from(cc)));
            self.a.test_rr(W::D, R::Rax, R::Rax);
            self.a.jcc(5, taken);
            self.a.bind(fall);
        }
        self.goto(end, last_index);
        self.a.bind(taken);
        self.goto(target, last_index);
    }

    /// Jump to `taken` if condition `cc` holds on the materialised flag bits: their
    /// arithmetic flags (and only those: TF, AC or DF in the host's RFLAGS would trap or
    /// break the calling convention) go through POPFQ into the host's.
    fn jcc_on_bits(&mut self, cc: u8, taken: Label) {
        self.bits_to_host_flags();
        self.a.jcc(cc, taken);
    }

    /// The materialised arithmetic flags into the host's RFLAGS.
    fn bits_to_host_flags(&mut self) {
        self.a.load(W::Q, R::Rax, flags(layout::BITS));
        self.a.alu_ri(Alu::And, W::D, R::Rax, ARITH as i32);
        self.a.push(R::Rax);
        self.a.popf();
    }

    /// End the block with a jump to `target`. If nothing needs the run loop (budget left,
    /// no kick, no new code epoch or watched frame) it goes on in translated code: back to
    /// the top when `target` is the block's own start, else into the target's translation
    /// when the jump cache has it (found by RIP, checked against the physical address the
    /// instruction TLB gives for `target` and the link generation). Otherwise RIP is stored
    /// and the block returns DONE.
    ///
    /// Only inline branches, CALLs and fall-throughs end here (and near branches through
    /// [`Translator::goto_dynamic`]): no instruction of this block changed the mode, the CPL,
    /// IF or the interrupt shadow (those all end their blocks, as call-outs that return to the
    /// run loop), so the run loop would find the same mode facts and no interrupt to take.
    pub(super) fn goto(&mut self, target: u64, last_index: u32) {
        self.a.store_imm64(rip_field(), target, R::Rax);
        if canonical(target) {
            let out = self.a.label();
            let n = self.n as i32;
            let ctx = |off: usize| field(offset_of!(Cpu, jit_ctx) + off);
            let budget = ctx(offset_of!(LoopCtx, budget));
            self.attention(budget, out);
            if target == self.start {
                self.a.alu_ri(Alu::Cmp, W::Q, R::Rax, n);
                self.a.jcc(2, out);
                self.count_pass(budget);
                self.a.jmp(self.top);
            } else {
                self.chain(budget, out);
            }
            self.a.bind(out);
        }
        self.finish_block(last_index);
    }

    /// End the block after a near branch whose target is only known at run time (in the
    /// stored RIP): as [`Translator::goto`], with the instruction TLB and the jump cache
    /// indexed at run time.
    pub(super) fn goto_dynamic(&mut self, last_index: u32) {
        let out = self.a.label();
        let budget = field(offset_of!(Cpu, jit_ctx) + offset_of!(LoopCtx, budget));
        self.attention(budget, out);
        self.chain(budget, out);
        self.a.bind(out);
        self.finish_block(last_index);
    }

    /// Jump into the translation of the block at the stored RIP if the jump cache has it
    /// (found by RIP, checked against the physical address the instruction TLB gives for it
    /// and the link generation) and the budget left in RAX (see
    /// [`Translator::attention`]) covers it; else go to `out`.
    fn chain(&mut self, budget: M, out: Label) {
        let ctx = |off: usize| field(offset_of!(Cpu, jit_ctx) + off);
        let mem = |base: R, off: usize| M {
            base,
            disp: off as i32,
        };
        // RCX = target; RDX = its instruction TLB entry.
        self.a.load(W::Q, R::Rcx, rip_field());
        self.a.mov_rr(W::Q, R::Rdx, R::Rcx);
        self.a.shr(R::Rdx, 12);
        self.a.alu_ri(Alu::And, W::D, R::Rdx, TLB_SIZE as i32 - 1);
        self.a.shl(R::Rdx, tlb_layout::SHIFT as u8);
        let tlb = offset_of!(Cpu, tlb) + tlb_layout::set(Access::Exec as usize);
        self.a.alu_rm(Alu::Add, W::Q, R::Rdx, field(tlb));
        self.a.mov_rr(W::Q, R::Rsi, R::Rcx);
        self.a.alu_ri(Alu::And, W::Q, R::Rsi, -4096);
        self.a
            .alu_rm(Alu::Or, W::Q, R::Rsi, ctx(offset_of!(LoopCtx, tlb_tag)));
        self.a
            .alu_rm(Alu::Cmp, W::Q, R::Rsi, mem(R::Rdx, tlb_layout::TAG));
        self.a.jcc(5, out);
        // RSI = the target's physical address.
        self.a.load(W::Q, R::Rsi, mem(R::Rdx, tlb_layout::PHYS));
        self.a.mov_rr(W::D, R::Rdx, R::Rcx);
        self.a.alu_ri(Alu::And, W::D, R::Rdx, 0xfff);
        self.a.alu_rr(Alu::Or, W::Q, R::Rsi, R::Rdx);
        // RDX = its jump-cache entry.
        self.a.mov_imm(R::Rdx, JUMP_HASH);
        self.a.imul(R::Rdx, R::Rcx);
        self.a.shr(R::Rdx, (64 - JUMP_BITS) as u8);
        self.a.shl(R::Rdx, JUMP_ENTRY_SHIFT as u8);
        let jumps = offset_of!(Cpu, jit) + offset_of!(Jit, jumps);
        self.a.alu_rm(Alu::Add, W::Q, R::Rdx, field(jumps));
        self.a.alu_rm(
            Alu::Cmp,
            W::Q,
            R::Rsi,
            mem(R::Rdx, offset_of!(JumpEntry, phys)),
        );
        self.a.jcc(5, out);
        self.a.alu_rm(
            Alu::Cmp,
            W::Q,
            R::Rcx,
            mem(R::Rdx, offset_of!(JumpEntry, rip)),
        );
        self.a.jcc(5, out);
        self.a
            .load(W::Q, R::Rcx, field(offset_of!(Cpu, blocks) + GEN_OFFSET));
        self.a.alu_rm(
            Alu::Cmp,
            W::Q,
            R::Rcx,
            mem(R::Rdx, offset_of!(JumpEntry, gen)),
        );
        self.a.jcc(5, out);
        self.a.alu_rm(
            Alu::Cmp,
            W::Q,
            R::Rax,
            mem(R::Rdx, offset_of!(JumpEntry, len)),
        );
        self.a.jcc(2, out);
        self.count_pass(budget);
        self.a.jmp_m(mem(R::Rdx, offset_of!(JumpEntry, top)));
    }

    /// The checks before going on in translated code: leaves in RAX the budget left once
    /// this block is counted, or jumps to `out` when the run loop must look (no budget, a
    /// kick, a new code epoch or a newly watched frame). Clobbers RCX and RDX.
    pub(super) fn attention(&mut self, budget: M, out: Label) {
        let ctx = |off: usize| field(offset_of!(Cpu, jit_ctx) + off);
        self.a.load(W::Q, R::Rax, budget);
        self.a.alu_ri(Alu::Sub, W::Q, R::Rax, self.n as i32);
        self.a.jcc(2, out);
        self.a.load(W::Q, R::Rdx, ctx(offset_of!(LoopCtx, kick)));
        self.a.cmp_m8(
            M {
                base: R::Rdx,
                disp: 0,
            },
            0,
        );
        self.a.jcc(5, out);
        // Another vCPU or a device wrote code, or started watching a frame we may hold
        // writable: the run loop must look (see `decode::current_block`).
        self.a.load(W::Q, R::Rdx, ctx(offset_of!(LoopCtx, watch)));
        for (counter, seen) in [
            (watch_layout::EPOCH, ctx(offset_of!(LoopCtx, epoch))),
            (watch_layout::MARKS, field(offset_of!(Cpu, seen_marks))),
        ] {
            self.a.load(
                W::Q,
                R::Rcx,
                M {
                    base: R::Rdx,
                    disp: counter as i32,
                },
            );
            self.a.alu_rm(Alu::Cmp, W::Q, R::Rcx, seen);
            self.a.jcc(5, out);
        }
    }

    /// This block retired in full and another pass or block follows: the budget left (in
    /// RAX) is stored, and an instruction-counting TSC moves on.
    pub(super) fn count_pass(&mut self, budget: M) {
        self.a.store(W::Q, budget, R::Rax);
        if self.tsc_counts {
            self.a.alu_mi8(
                Alu::Add,
                W::Q,
                state(offset_of!(CpuState, tsc)),
                self.n as i8,
            );
        }
    }
}

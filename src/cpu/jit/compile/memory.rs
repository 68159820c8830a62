//! Guest memory from translated code: the effective address, the inline lookup of the
//! software TLB (a hit is a host pointer; a miss, MMIO, a page-crossing or non-canonical
//! address, or a mode where the short path does not apply takes the instruction's call-out),
//! and the loads, stores, PUSH/POP and memory-operand ALU forms built on it.

use std::mem::offset_of;

use iced_x86::{Instruction, Mnemonic as Mn, OpKind};

use super::{field, flat_mem, gpr, reg, Src, Translator};
use crate::cpu::decode::DecodedInsn;
use crate::cpu::exec::fast;
use crate::cpu::flags::FlagOp;
use crate::cpu::jit::asm::{Alu, Ext, Label, M, R, W};
use crate::cpu::jit::LoopCtx;
use crate::cpu::mmu::tlb::{layout as tlb_layout, Access, TLB_SIZE};
use crate::cpu::Cpu;

/// Where [`Translator::tlb_lookup`] leaves the host address of the access.
pub(super) const HOST: M = M {
    base: R::Rdx,
    disp: 0,
};

impl Translator {
    /// `op r, [m]`, and CMP/TEST `[m], r/imm` (no memory write): the operand loaded through
    /// the inline TLB lookup, the call-out on a miss. Either way the flags record is the
    /// same (the fast forms record these exactly like the register forms).
    pub(super) fn alu_mem(
        &mut self,
        i: &Instruction,
        k: u32,
        start: u64,
        end: u64,
        (op, kind, writes): (Alu, FlagOp, bool),
        load_src: bool,
    ) -> bool {
        let Some(m) = flat_mem(i) else {
            return false;
        };
        let slow = self.a.label();
        if load_src {
            let Some((r0, w)) = reg(i, 0) else {
                return false;
            };
            self.tlb_lookup(&m, w, Access::Read, slow);
            self.a.load(w, R::Rcx, HOST);
            self.a.load(w, R::Rax, gpr(r0));
            self.alu_values(op, kind, writes.then_some(r0), w);
        } else {
            if writes {
                return false;
            }
            let (w, src) = if let Some((r1, w)) = reg(i, 1) {
                (w, Src::Reg(r1))
            } else if fast::is_imm(i, 1) {
                let w = match i.memory_size().size() {
                    8 => W::Q,
                    4 => W::D,
                    _ => return false,
                };
                let mask = if w == W::Q { u64::MAX } else { 0xffff_ffff };
                (w, Src::Imm(i.immediate(1) & mask))
            } else {
                return false;
            };
            self.tlb_lookup(&m, w, Access::Read, slow);
            self.a.load(w, R::Rax, HOST);
            self.load_src(w, src);
            self.alu_values(op, kind, None, w);
        }
        self.slow_path(slow, k, start, end);
        true
    }

    /// MOVZX/MOVSX/MOVSXD into a 32- or 64-bit register from a register or memory.
    pub(super) fn extend(
        &mut self,
        i: &Instruction,
        k: u32,
        start: u64,
        end: u64,
        from_mem: bool,
    ) -> bool {
        let Some((r0, w)) = reg(i, 0) else {
            return false;
        };
        let from = match crate::cpu::exec::op_size(i, 1) {
            1 => Ext::B,
            2 => Ext::W,
            4 => Ext::D,
            _ => return false,
        };
        let signed = i.mnemonic() != Mn::Movzx;
        // MOVSXD into a 32-bit register is a plain move; leave the odd form to its semantics.
        if from == Ext::D && (!signed || w == W::D) {
            return false;
        }
        let slow = self.a.label();
        if from_mem {
            let Some(m) = flat_mem(i) else {
                return false;
            };
            let size = match from {
                Ext::B => 1,
                Ext::W => 2,
                Ext::D => 4,
            };
            self.tlb_lookup_sized(&m, size, Access::Read, slow);
            self.a.extend_m(from, signed, w, R::Rax, HOST);
        } else {
            if i.op_kind(1) != OpKind::Register {
                return false;
            }
            let Some(r1) = fast::gpr(i.op_register(1)) else {
                return false;
            };
            self.a.load(W::Q, R::Rax, gpr(r1));
            self.a.extend_r(from, signed, w, R::Rax, R::Rax);
        }
        self.a.store(W::Q, gpr(r0), R::Rax);
        if from_mem {
            self.slow_path(slow, k, start, end);
        }
        true
    }

    /// RAX = RSP - 8 and RDX = the host address of that stack slot, or on to `slow`: the
    /// first half of a 64-bit push (the caller stores, then sets RSP to RAX).
    pub(super) fn push_slot(&mut self, slow: Label) {
        self.a.load(W::Q, R::Rax, gpr(4));
        self.a.alu_ri(Alu::Sub, W::Q, R::Rax, 8);
        self.tlb_lookup_lin(8, Access::Write, slow);
    }

    /// RAX = RSP and RCX = the qword on top of the stack, or on to `slow`: the first half of a
    /// 64-bit pop (the caller moves RSP on).
    pub(super) fn pop_top(&mut self, slow: Label) {
        self.a.load(W::Q, R::Rax, gpr(4));
        self.tlb_lookup_lin(8, Access::Read, slow);
        self.a.load(W::Q, R::Rcx, HOST);
    }

    /// PUSH r64 in 64-bit mode.
    pub(super) fn push(&mut self, r: u8, k: u32, start: u64, end: u64) {
        let slow = self.a.label();
        self.push_slot(slow);
        self.a.load(W::Q, R::Rcx, gpr(r));
        self.a.store(W::Q, HOST, R::Rcx);
        self.a.store(W::Q, gpr(4), R::Rax);
        self.slow_path(slow, k, start, end);
    }

    /// POP r64 in 64-bit mode (POP RSP leaves the popped value).
    pub(super) fn pop(&mut self, r: u8, k: u32, start: u64, end: u64) {
        let slow = self.a.label();
        self.pop_top(slow);
        self.a.alu_ri(Alu::Add, W::Q, R::Rax, 8);
        self.a.store(W::Q, gpr(4), R::Rax);
        self.a.store(W::Q, gpr(r), R::Rcx);
        self.slow_path(slow, k, start, end);
    }

    /// MOV between a 32/64-bit register or immediate and memory: the TLB looked up inline,
    /// the instruction's call-out when that misses (or the address is unusual).
    pub(super) fn mov_mem(
        &mut self,
        d: &DecodedInsn,
        k: u32,
        start: u64,
        end: u64,
        load: bool,
    ) -> bool {
        let i = &d.insn;
        let Some(m) = flat_mem(i) else {
            return false;
        };
        let slow = self.a.label();
        if load {
            let Some((r0, w)) = reg(i, 0) else {
                return false;
            };
            self.tlb_lookup(&m, w, Access::Read, slow);
            self.a.load(w, R::Rcx, HOST);
            self.a.store(W::Q, gpr(r0), R::Rcx);
        } else if let Some((r1, w)) = reg(i, 1) {
            self.tlb_lookup(&m, w, Access::Write, slow);
            self.a.load(w, R::Rcx, gpr(r1));
            self.a.store(w, HOST, R::Rcx);
        } else if fast::is_imm(i, 1) {
            let v = i.immediate(1);
            match i.memory_size().size() {
                8 => {
                    self.tlb_lookup(&m, W::Q, Access::Write, slow);
                    self.a.store_imm64(HOST, v, R::Rcx);
                }
                4 => {
                    self.tlb_lookup(&m, W::D, Access::Write, slow);
                    self.a.store_imm32(HOST, v as u32);
                }
                _ => return false,
            }
        } else {
            return false;
        }
        self.slow_path(slow, k, start, end);
        true
    }

    /// Leave in RDX the host address of the `w`-sized access at `m`, or jump to `slow` (not
    /// canonical, crossing a page, TLB miss, MMIO, or a mode where the short path does not
    /// apply: `LoopCtx::tlb_tag` is then 0). RAX keeps the linear address.
    pub(super) fn tlb_lookup(&mut self, m: &fast::Mem, w: W, acc: Access, slow: Label) {
        self.tlb_lookup_sized(m, if w == W::Q { 8 } else { 4 }, acc, slow);
    }

    /// [`Translator::tlb_lookup`] of a `size`-byte access.
    pub(super) fn tlb_lookup_sized(&mut self, m: &fast::Mem, size: i32, acc: Access, slow: Label) {
        self.ea(m);
        self.tlb_lookup_lin(size, acc, slow);
    }

    /// [`Translator::tlb_lookup`] of a `size`-byte access at the linear address in RAX.
    pub(super) fn tlb_lookup_lin(&mut self, size: i32, acc: Access, slow: Label) {
        // Canonical: bits 63..47 all equal.
        self.a.mov_rr(W::Q, R::Rcx, R::Rax);
        self.a.shl(R::Rcx, 16);
        self.a.sar(R::Rcx, 16);
        self.a.alu_rr(Alu::Cmp, W::Q, R::Rcx, R::Rax);
        self.a.jcc(5, slow);
        // Inside one page.
        self.a.mov_rr(W::D, R::Rcx, R::Rax);
        self.a.alu_ri(Alu::And, W::D, R::Rcx, 0xfff);
        self.a.alu_ri(Alu::Cmp, W::D, R::Rcx, 0x1000 - size);
        self.a.jcc(7, slow);
        // The entry: sets[acc][(lin >> 12) % TLB_SIZE].
        self.a.mov_rr(W::Q, R::Rdx, R::Rax);
        self.a.shr(R::Rdx, 12);
        self.a.alu_ri(Alu::And, W::D, R::Rdx, TLB_SIZE as i32 - 1);
        self.a.shl(R::Rdx, tlb_layout::SHIFT as u8);
        let set = offset_of!(Cpu, tlb) + tlb_layout::set(acc as usize);
        self.a.alu_rm(Alu::Add, W::Q, R::Rdx, field(set));
        let entry = |off: usize| M {
            base: R::Rdx,
            disp: off as i32,
        };
        self.a.mov_rr(W::Q, R::Rcx, R::Rax);
        self.a.alu_ri(Alu::And, W::Q, R::Rcx, -4096);
        self.a.alu_rm(
            Alu::Or,
            W::Q,
            R::Rcx,
            field(offset_of!(Cpu, jit_ctx) + offset_of!(LoopCtx, tlb_tag)),
        );
        self.a
            .alu_rm(Alu::Cmp, W::Q, R::Rcx, entry(tlb_layout::TAG));
        self.a.jcc(5, slow);
        self.a.cmp_m8(entry(tlb_layout::MMIO), 0);
        self.a.jcc(5, slow);
        self.a.load(W::Q, R::Rdx, entry(tlb_layout::ADDEND));
        self.a.alu_rr(Alu::Add, W::Q, R::Rdx, R::Rax);
    }

    /// RAX = the effective address of `m`.
    pub(super) fn ea(&mut self, m: &fast::Mem) {
        self.a.mov_imm(R::Rax, m.disp);
        if m.base != fast::NONE {
            self.a.alu_rm(Alu::Add, W::Q, R::Rax, gpr(m.base));
        }
        if m.index != fast::NONE {
            self.a.load(W::Q, R::Rcx, gpr(m.index));
            if m.shift != 0 {
                self.a.shl(R::Rcx, m.shift);
            }
            self.a.alu_rr(Alu::Add, W::Q, R::Rax, R::Rcx);
        }
        if m.mask != u64::MAX {
            self.a.mov_imm(R::Rcx, m.mask);
            self.a.alu_rr(Alu::And, W::Q, R::Rax, R::Rcx);
        }
    }
}

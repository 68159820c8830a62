//! Translation of one decoded block into host code.
//!
//! A decoded block ([`DecodedInsn`]s, each with its semantics pointer) comes in; a
//! position-independent function following [`super::arena::Entry`] comes out. Guest state
//! stays in the `Cpu` in memory (RBX holds its address throughout), so at every instruction
//! boundary the state is exactly the interpreter's and any instruction can be left to the
//! interpreter's semantics:
//!
//! - register-to-register MOV, ADD/SUB/AND/OR/XOR/CMP/TEST, INC/DEC and LEA at 32 and 64 bits
//!   in 64-bit code are emitted inline: host loads, one host ALU instruction, stores, and the
//!   lazy-flags record written exactly as [`crate::cpu::flags::Flags::set_lazy`] would;
//! - a final Jcc or JMP rel in 64-bit code is emitted inline; when the instruction that set
//!   the flags was emitted inline in the same block, the condition is evaluated by running that
//!   instruction's host twin again on the recorded operands (same flags, by construction);
//! - every other instruction is a call-out: RIP and next RIP are stored, and
//!   [`super::helpers::callout`] runs the instruction's semantics pointer as the interpreter
//!   would. A fault or an early block end leaves through an exit that returns the index of the
//!   instruction.
//!
//! The function returns the index of the last instruction it dealt with, plus a status in the
//! high half ([`DONE`], [`FAULT`], [`STOP`]), and has stored RIP before returning.

use std::mem::offset_of;

use iced_x86::{Instruction, Mnemonic as Mn, OpKind};

use super::asm::{Alu, Asm, Ext, Label, Shift, M, R, W};
use super::{helpers, jump_index, Jit, JumpEntry, LoopCtx, JUMP_BITS, JUMP_ENTRY_SHIFT, JUMP_HASH};
use crate::accel::code_watch::layout as watch_layout;
use crate::cpu::decode::DecodedInsn;
use crate::cpu::decode::GEN_OFFSET;
use crate::cpu::exec::{alu, fast};
use crate::cpu::flags::{layout, FlagOp, ARITH, PF, SF, ZF};
use crate::cpu::mmu::seg::canonical;
use crate::cpu::mmu::tlb::{layout as tlb_layout, Access, TLB_SIZE};
use crate::cpu::state::{sreg, CpuState};
use crate::cpu::Cpu;

/// Bytes of the prologue every translation starts with (`push rbx; mov rbx, rdi`): a block
/// chained to from another enters after it, with RBX already the Cpu.
pub const PROLOGUE: usize = 4;

/// Status: the block ran to its end.
pub const DONE: u64 = 0;
/// Status: the instruction at the returned index faulted (the fault is in `Cpu::jit_fault`).
pub const FAULT: u64 = 1;
/// Status: the instruction at the returned index retired and ended the block early.
pub const STOP: u64 = 2;

fn field(off: usize) -> M {
    M {
        base: R::Rbx,
        disp: off as i32,
    }
}

fn state(off: usize) -> M {
    field(offset_of!(Cpu, state) + off)
}

fn gpr(r: u8) -> M {
    state(offset_of!(CpuState, gpr) + 8 * usize::from(r & 15))
}

fn flags(f: usize) -> M {
    state(offset_of!(CpuState, flags) + f)
}

fn rip_field() -> M {
    state(offset_of!(CpuState, rip))
}

fn next_rip() -> M {
    field(offset_of!(Cpu, next_rip))
}

/// The flags producer last emitted inline: its lazy record in memory is current, and its
/// kind and width are known here.
type Known = Option<(FlagOp, W)>;

struct Translator {
    a: Asm,
    known: Known,
    /// RIP of the block's first instruction: a branch back here loops inside the code.
    start: u64,
    /// Where a loop goes round to (after the prologue).
    top: Label,
    /// Instructions in the block.
    n: u32,
    /// Each extra pass of a loop adds its length to the TSC (an instruction-counting TSC).
    tsc_counts: bool,
    /// Early exits: label and instruction index (status in EAX when jumped to).
    exits: Vec<(Label, u32)>,
    /// Out-of-line call-outs of inline memory accesses whose TLB lookup missed.
    slow: Vec<Slow>,
    epilogue: Label,
}

/// The host code for `insns`, a block decoded at `rip` in `bits`-bit code; `None` if it could
/// not be assembled. `tsc_counts`: the TSC counts retired instructions.
pub fn translate(
    insns: &[DecodedInsn],
    rip: u64,
    ip_mask: u64,
    bits: u32,
    tsc_counts: bool,
) -> Option<Vec<u8>> {
    let mut a = Asm::new();
    let epilogue = a.label();
    let top = a.label();
    let n = insns.len();
    let last_index = n.checked_sub(1)? as u32;
    let mut t = Translator {
        a,
        known: None,
        start: rip & ip_mask,
        top,
        n: n as u32,
        tsc_counts,
        exits: Vec::new(),
        slow: Vec::new(),
        epilogue,
    };
    // Prologue: RBX is callee-saved and holds the Cpu; the push also aligns RSP for calls.
    t.a.push(R::Rbx);
    t.a.mov_rr(W::Q, R::Rbx, R::Rdi);
    debug_assert_eq!(t.a.pos(), PROLOGUE);
    t.a.bind(t.top);
    let mut pc = rip & ip_mask;
    let mut ended = false;
    for (k, d) in insns.iter().enumerate() {
        let start = pc;
        let end = pc.wrapping_add(d.insn.len() as u64) & ip_mask;
        pc = end;
        let last = k + 1 == n;
        if bits == 64 && t.inline(d, k as u32, start, end, last, last_index) {
            ended = last && d.insn.flow_control() != iced_x86::FlowControl::Next;
            continue;
        }
        t.callout(d, k as u32, start, end);
        if last && bits == 64 && near_branch(&d.insn) {
            // RIP is where the branch went, and nothing else changed that the run loop
            // would look at: go on to the target if it is translated.
            t.goto_dynamic(last_index);
        }
        ended = last;
    }
    if bits == 64 && !ended {
        // The block ended after an inline instruction that falls through.
        t.goto(pc, last_index);
    } else {
        t.a.mov_imm(R::Rax, DONE << 32 | u64::from(last_index));
    }
    t.a.bind(t.epilogue);
    t.a.pop(R::Rbx);
    t.a.ret();
    for s in std::mem::take(&mut t.slow) {
        t.a.bind(s.label);
        t.callout(&insns[s.k as usize], s.k, s.start, s.end);
        t.a.jmp(s.resume);
    }
    for (l, k) in std::mem::take(&mut t.exits) {
        t.a.bind(l);
        t.a.shl(R::Rax, 32);
        t.a.mov_imm(R::Rcx, u64::from(k));
        t.a.alu_rr(Alu::Or, W::Q, R::Rax, R::Rcx);
        t.a.jmp(t.epilogue);
    }
    t.a.finish()
}

/// The ALU operation of an inline-able mnemonic, with the lazy-flags kind it records and
/// whether the result is written back.
fn alu_of(m: Mn) -> Option<(Alu, FlagOp, bool)> {
    Some(match m {
        Mn::Add => (Alu::Add, FlagOp::Add, true),
        Mn::Sub => (Alu::Sub, FlagOp::Sub, true),
        Mn::Cmp => (Alu::Sub, FlagOp::Sub, false),
        Mn::And => (Alu::And, FlagOp::Logic, true),
        Mn::Test => (Alu::And, FlagOp::Logic, false),
        Mn::Or => (Alu::Or, FlagOp::Logic, true),
        Mn::Xor => (Alu::Xor, FlagOp::Logic, true),
        _ => return None,
    })
}

/// A 32- or 64-bit general register operand (never AH..BH, which `fast::gpr` refuses).
fn reg(i: &Instruction, n: u32) -> Option<(u8, W)> {
    if i.op_kind(n) != OpKind::Register {
        return None;
    }
    let r = i.op_register(n);
    let w = match r.size() {
        8 => W::Q,
        4 => W::D,
        _ => return None,
    };
    Some((fast::gpr(r)?, w))
}

impl Translator {
    /// Emit `i` inline if it is one of the inline forms; false leaves it to a call-out.
    fn inline(
        &mut self,
        d: &DecodedInsn,
        k: u32,
        start: u64,
        end: u64,
        last: bool,
        last_index: u32,
    ) -> bool {
        let i = &d.insn;
        if i.has_lock_prefix() {
            return false;
        }
        let m = i.mnemonic();
        let mem0 = i.op_kind(0) == OpKind::Memory;
        let mem1 = i.op_count() > 1 && i.op_kind(1) == OpKind::Memory;
        if m == Mn::Mov && (mem0 || mem1) {
            return self.mov_mem(d, k, start, end, mem1);
        }
        if let Some((op, kind, writes)) = alu_of(m) {
            if mem0 || mem1 {
                return self.alu_mem(i, k, start, end, (op, kind, writes), mem1);
            }
            let Some((r0, w)) = reg(i, 0) else {
                return false;
            };
            let src = if let Some((r1, w1)) = reg(i, 1) {
                if w1 != w {
                    return false;
                }
                Src::Reg(r1)
            } else if fast::is_imm(i, 1) {
                let mask = if w == W::Q { u64::MAX } else { 0xffff_ffff };
                Src::Imm(i.immediate(1) & mask)
            } else {
                return false;
            };
            self.alu(op, kind, writes, w, r0, src);
            return true;
        }
        match m {
            Mn::Movzx | Mn::Movsx | Mn::Movsxd => self.extend(i, k, start, end, mem1),
            Mn::Shl | Mn::Sal | Mn::Shr | Mn::Sar if fast::is_imm(i, 1) => {
                let Some((r0, w)) = reg(i, 0) else {
                    return false;
                };
                let c = (i.immediate(1) & if w == W::Q { 0x3f } else { 0x1f }) as u8;
                // A zero count leaves the flags alone: its semantics keep that rule.
                if c == 0 {
                    return false;
                }
                let kind = match m {
                    Mn::Shr => Shift::Shr,
                    Mn::Sar => Shift::Sar,
                    _ => Shift::Shl,
                };
                self.shift(kind, w, r0, c);
                true
            }
            Mn::Imul if i.op_count() >= 2 => {
                let (Some((r0, w)), Some((r1, w1))) = (reg(i, 0), reg(i, 1)) else {
                    return false;
                };
                if w1 != w {
                    return false;
                }
                let mask = if w == W::Q { u64::MAX } else { 0xffff_ffff };
                if i.op_count() == 3 {
                    self.a.load(w, R::Rax, gpr(r1));
                    self.a.mov_imm(R::Rcx, i.immediate(2) & mask);
                } else {
                    self.a.load(w, R::Rax, gpr(r0));
                    self.a.load(w, R::Rcx, gpr(r1));
                }
                self.a.mov_rr(W::Q, R::Rdx, R::Rax);
                self.a.imul_w(w, R::Rdx, R::Rcx);
                // CF = OF = the product overflowed; SF, ZF and PF of the result; AF clear.
                self.a.setcc(2, R::Rcx);
                self.a.movzx8(R::Rcx);
                self.a.mov_rr(W::D, R::Rsi, R::Rcx);
                self.a.shift(Shift::Shl, W::D, R::Rsi, 11);
                self.a.alu_rr(Alu::Or, W::D, R::Rcx, R::Rsi);
                self.eager_flags(w, r0);
                true
            }
            Mn::Call
                if last
                    && i.code() == iced_x86::Code::Call_rel32_64
                    && canonical(i.near_branch_target()) =>
            {
                self.call(i.near_branch_target(), k, start, end, last_index);
                true
            }
            Mn::Ret
                if last
                    && matches!(
                        i.code(),
                        iced_x86::Code::Retnq | iced_x86::Code::Retnq_imm16
                    ) =>
            {
                let pop = 8 + if i.op_count() > 0 {
                    i32::from(i.immediate16())
                } else {
                    0
                };
                self.ret(pop, k, start, end, last_index);
                true
            }
            Mn::Push | Mn::Pop
                if i.op_count() == 1 && i.stack_pointer_increment().unsigned_abs() == 8 =>
            {
                let Some((r, W::Q)) = reg(i, 0) else {
                    return false;
                };
                if m == Mn::Push {
                    self.push(r, k, start, end);
                } else {
                    self.pop(r, k, start, end);
                }
                true
            }
            Mn::Mov => {
                let Some((r0, w)) = reg(i, 0) else {
                    return false;
                };
                if let Some((r1, w1)) = reg(i, 1) {
                    if w1 != w {
                        return false;
                    }
                    self.a.load(w, R::Rax, gpr(r1));
                    self.a.store(W::Q, gpr(r0), R::Rax);
                } else if fast::is_imm(i, 1) {
                    let mask = if w == W::Q { u64::MAX } else { 0xffff_ffff };
                    self.a.store_imm64(gpr(r0), i.immediate(1) & mask, R::Rax);
                } else {
                    return false;
                }
                true
            }
            Mn::Inc | Mn::Dec => {
                let Some((r0, w)) = reg(i, 0) else {
                    return false;
                };
                self.incdec(w, r0, m == Mn::Dec);
                true
            }
            Mn::Lea => {
                let Some((r0, w)) = reg(i, 0) else {
                    return false;
                };
                let Some(mem) = fast::mem(i, 64) else {
                    return false;
                };
                self.lea(w, r0, &mem);
                true
            }
            // A non-canonical target faults on the branch: its semantics raise that.
            _ if last
                && i.is_jcc_short_or_near()
                && i.op0_kind() == OpKind::NearBranch64
                && canonical(i.near_branch_target()) =>
            {
                self.jcc(alu::cc(i), i.near_branch_target(), end, last_index);
                true
            }
            Mn::Jmp
                if last
                    && i.op0_kind() == OpKind::NearBranch64
                    && canonical(i.near_branch_target()) =>
            {
                self.goto(i.near_branch_target(), last_index);
                true
            }
            _ => false,
        }
    }

    /// Leave with DONE for a block whose RIP is stored.
    fn finish_block(&mut self, last_index: u32) {
        self.a.mov_imm(R::Rax, DONE << 32 | u64::from(last_index));
        self.a.jmp(self.epilogue);
    }

    /// Record the lazy flags of an operation: kind, width, operands in RAX and RCX (`b` as a
    /// constant when `None`), result in RDX.
    fn record(&mut self, kind: FlagOp, w: W, b: Option<u64>) {
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

    fn alu(&mut self, op: Alu, kind: FlagOp, writes: bool, w: W, r0: u8, src: Src) {
        self.a.load(w, R::Rax, gpr(r0));
        self.load_src(w, src);
        self.alu_values(op, kind, writes.then_some(r0), w);
    }

    /// RCX = `src`.
    fn load_src(&mut self, w: W, src: Src) {
        match src {
            Src::Reg(r1) => self.a.load(w, R::Rcx, gpr(r1)),
            Src::Imm(v) => self.a.mov_imm(R::Rcx, v),
        }
    }

    /// RDX = RAX op RCX, written to `dst` if any, flags recorded.
    fn alu_values(&mut self, op: Alu, kind: FlagOp, dst: Option<u8>, w: W) {
        self.a.mov_rr(W::Q, R::Rdx, R::Rax);
        self.a.alu_rr(op, w, R::Rdx, R::Rcx);
        if let Some(r0) = dst {
            self.a.store(W::Q, gpr(r0), R::Rdx);
        }
        self.record(kind, w, None);
    }

    /// `op r, [m]`, and CMP/TEST `[m], r/imm` (no memory write): the operand loaded through
    /// the inline TLB lookup, the call-out on a miss. Either way the flags record is the
    /// same (the fast forms record these exactly like the register forms).
    fn alu_mem(
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
        let host = M {
            base: R::Rdx,
            disp: 0,
        };
        let slow = self.a.label();
        if load_src {
            let Some((r0, w)) = reg(i, 0) else {
                return false;
            };
            self.tlb_lookup(&m, w, Access::Read, slow);
            self.a.load(w, R::Rcx, host);
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
            self.a.load(w, R::Rax, host);
            self.load_src(w, src);
            self.alu_values(op, kind, None, w);
        }
        self.slow_path(slow, k, start, end);
        true
    }

    /// MOVZX/MOVSX/MOVSXD into a 32- or 64-bit register from a register or memory.
    fn extend(&mut self, i: &Instruction, k: u32, start: u64, end: u64, from_mem: bool) -> bool {
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
            let host = M {
                base: R::Rdx,
                disp: 0,
            };
            self.a.extend_m(from, signed, w, R::Rax, host);
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

    /// CALL rel32 in 64-bit mode: push the return address, then on as a jump.
    fn call(&mut self, target: u64, k: u32, start: u64, end: u64, last_index: u32) {
        let slow = self.a.label();
        self.a.load(W::Q, R::Rax, gpr(4));
        self.a.alu_ri(Alu::Sub, W::Q, R::Rax, 8);
        self.tlb_lookup_lin(8, Access::Write, slow);
        let host = M {
            base: R::Rdx,
            disp: 0,
        };
        self.a.store_imm64(host, end, R::Rcx);
        self.a.store(W::Q, gpr(4), R::Rax);
        self.slow_path(slow, k, start, end);
        self.goto(target, last_index);
    }

    /// RET / RET imm16 in 64-bit mode (`pop` bytes off the stack): the return address is
    /// checked canonical (the call-out raises the #GP), then on as an indirect jump.
    fn ret(&mut self, pop: i32, k: u32, start: u64, end: u64, last_index: u32) {
        let slow = self.a.label();
        self.a.load(W::Q, R::Rax, gpr(4));
        self.tlb_lookup_lin(8, Access::Read, slow);
        self.a.load(
            W::Q,
            R::Rcx,
            M {
                base: R::Rdx,
                disp: 0,
            },
        );
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

    /// SHL/SHR/SAR of a register by a non-zero immediate count, flags as `exec::shift`
    /// computes them: CF the last bit out; OF the result's sign XOR CF (SHL), the operand's
    /// sign (SHR) or clear (SAR), whatever the count; SF, ZF, PF of the result; AF clear.
    fn shift(&mut self, kind: Shift, w: W, r0: u8, c: u8) {
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
    fn eager_flags(&mut self, w: W, r0: u8) {
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

    /// PUSH r64 in 64-bit mode.
    fn push(&mut self, r: u8, k: u32, start: u64, end: u64) {
        let slow = self.a.label();
        self.a.load(W::Q, R::Rax, gpr(4));
        self.a.alu_ri(Alu::Sub, W::Q, R::Rax, 8);
        self.tlb_lookup_lin(8, Access::Write, slow);
        self.a.load(W::Q, R::Rcx, gpr(r));
        self.a.store(
            W::Q,
            M {
                base: R::Rdx,
                disp: 0,
            },
            R::Rcx,
        );
        self.a.store(W::Q, gpr(4), R::Rax);
        self.slow_path(slow, k, start, end);
    }

    /// POP r64 in 64-bit mode (POP RSP leaves the popped value).
    fn pop(&mut self, r: u8, k: u32, start: u64, end: u64) {
        let slow = self.a.label();
        self.a.load(W::Q, R::Rax, gpr(4));
        self.tlb_lookup_lin(8, Access::Read, slow);
        self.a.load(
            W::Q,
            R::Rcx,
            M {
                base: R::Rdx,
                disp: 0,
            },
        );
        self.a.alu_ri(Alu::Add, W::Q, R::Rax, 8);
        self.a.store(W::Q, gpr(4), R::Rax);
        self.a.store(W::Q, gpr(r), R::Rcx);
        self.slow_path(slow, k, start, end);
    }

    /// The fast path just emitted is complete: `slow` runs instruction `k` by its call-out
    /// instead and comes back here.
    fn slow_path(&mut self, slow: Label, k: u32, start: u64, end: u64) {
        let resume = self.a.label();
        self.a.bind(resume);
        self.slow.push(Slow {
            label: slow,
            resume,
            k,
            start,
            end,
        });
    }

    fn incdec(&mut self, w: W, r0: u8, dec: bool) {
        // INC/DEC keep CF: make it current in the flag bits first, as `set_lazy` does.
        self.fold_cf();
        self.a.load(w, R::Rax, gpr(r0));
        self.a.mov_rr(W::Q, R::Rdx, R::Rax);
        self.a.incdec(w, R::Rdx, dec);
        self.a.store(W::Q, gpr(r0), R::Rdx);
        self.record(if dec { FlagOp::Dec } else { FlagOp::Inc }, w, Some(1));
    }

    /// Write the current CF into the flag bits.
    fn fold_cf(&mut self) {
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
    fn replay(&mut self, kind: FlagOp, w: W) {
        self.a.load(w, R::Rax, flags(layout::A));
        let op = if kind == FlagOp::Add {
            Alu::Add
        } else {
            Alu::Cmp
        };
        self.a.alu_rm(op, w, R::Rax, flags(layout::B));
    }

    fn jcc(&mut self, cc: u8, target: u64, end: u64, last_index: u32) {
        let taken = self.a.label();
        let carry = matches!(cc >> 1, 1 | 3);
        match self.known {
            Some((kind @ (FlagOp::Add | FlagOp::Sub), w)) => {
                self.replay(kind, w);
                self.a.jcc(cc, taken);
            }
            Some((FlagOp::Logic, w)) => {
                self.a.load(w, R::Rax, flags(layout::R));
                self.a.test_rr(w, R::Rax, R::Rax);
                self.a.jcc(cc, taken);
            }
            Some((kind @ (FlagOp::Inc | FlagOp::Dec), w)) if !carry => {
                self.a.load(w, R::Rax, flags(layout::A));
                self.a.incdec(w, R::Rax, kind == FlagOp::Dec);
                self.a.jcc(cc, taken);
            }
            _ => {
                self.call_helper(helpers::cond as *const () as usize, Some(u64::from(cc)));
                self.a.test_rr(W::D, R::Rax, R::Rax);
                self.a.jcc(5, taken);
            }
        }
        self.goto(end, last_index);
        self.a.bind(taken);
        self.goto(target, last_index);
    }

    /// End the block with a jump to `target`: back to the top if that is the block's own
    /// start and the run loop would run it again at once, else out to the run loop.
    /// End the block with a jump to `target`. If nothing needs the run loop (budget left,
    /// no kick, no new code epoch or watched frame) it goes on in translated code: back to
    /// the top when `target` is the block's own start, else into the target's translation
    /// when the jump cache has it (found by RIP, checked against the physical address the
    /// instruction TLB gives for `target` and the link generation). Otherwise RIP is stored
    /// and the block returns DONE.
    ///
    /// Only inline branches and fall-throughs end here: no instruction of this block changed
    /// the mode, the CPL, IF or the interrupt shadow (those all end blocks as call-outs), so
    /// the run loop would find the same mode facts and no interrupt to take.
    fn goto(&mut self, target: u64, last_index: u32) {
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
                // The target's frame, from the instruction TLB entry of its page.
                let tlb = offset_of!(Cpu, tlb) + tlb_layout::set(Access::Exec as usize);
                self.a.load(W::Q, R::Rdx, field(tlb));
                let e = |off: usize| M {
                    base: R::Rdx,
                    disp: ((((target >> 12) as usize & (TLB_SIZE - 1)) << tlb_layout::SHIFT) + off)
                        as i32,
                };
                self.a.mov_imm(R::Rcx, target & !0xfff);
                self.a
                    .alu_rm(Alu::Or, W::Q, R::Rcx, ctx(offset_of!(LoopCtx, tlb_tag)));
                self.a.alu_rm(Alu::Cmp, W::Q, R::Rcx, e(tlb_layout::TAG));
                self.a.jcc(5, out);
                self.a.load(W::Q, R::Rcx, e(tlb_layout::PHYS));
                self.a
                    .alu_ri(Alu::Or, W::Q, R::Rcx, (target & 0xfff) as i32);
                // The jump-cache entry for `target`.
                let jumps = offset_of!(Cpu, jit) + offset_of!(Jit, jumps);
                self.a.load(W::Q, R::Rdx, field(jumps));
                let j = |off: usize| M {
                    base: R::Rdx,
                    disp: (jump_index(target) * std::mem::size_of::<JumpEntry>() + off) as i32,
                };
                self.a
                    .alu_rm(Alu::Cmp, W::Q, R::Rcx, j(offset_of!(JumpEntry, phys)));
                self.a.jcc(5, out);
                self.a.mov_imm(R::Rcx, target);
                self.a
                    .alu_rm(Alu::Cmp, W::Q, R::Rcx, j(offset_of!(JumpEntry, rip)));
                self.a.jcc(5, out);
                self.a
                    .load(W::Q, R::Rcx, field(offset_of!(Cpu, blocks) + GEN_OFFSET));
                self.a
                    .alu_rm(Alu::Cmp, W::Q, R::Rcx, j(offset_of!(JumpEntry, gen)));
                self.a.jcc(5, out);
                self.a
                    .alu_rm(Alu::Cmp, W::Q, R::Rax, j(offset_of!(JumpEntry, len)));
                self.a.jcc(2, out);
                self.count_pass(budget);
                self.a.jmp_m(j(offset_of!(JumpEntry, top)));
            }
            self.a.bind(out);
        }
        self.finish_block(last_index);
    }

    /// End the block after a near branch whose target is only known at run time (in the
    /// stored RIP): as [`Translator::goto`], with the instruction TLB and the jump cache
    /// indexed at run time.
    fn goto_dynamic(&mut self, last_index: u32) {
        let out = self.a.label();
        let ctx = |off: usize| field(offset_of!(Cpu, jit_ctx) + off);
        let budget = ctx(offset_of!(LoopCtx, budget));
        self.attention(budget, out);
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
        self.a.bind(out);
        self.finish_block(last_index);
    }

    /// The checks before going on in translated code: leaves in RAX the budget left once
    /// this block is counted, or jumps to `out` when the run loop must look (no budget, a
    /// kick, a new code epoch or a newly watched frame). Clobbers RCX and RDX.
    fn attention(&mut self, budget: M, out: Label) {
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
    fn count_pass(&mut self, budget: M) {
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

    /// MOV between a 32/64-bit register or immediate and memory: the TLB looked up inline,
    /// the instruction's call-out when that misses (or the address is unusual).
    fn mov_mem(&mut self, d: &DecodedInsn, k: u32, start: u64, end: u64, load: bool) -> bool {
        let i = &d.insn;
        let Some(m) = flat_mem(i) else {
            return false;
        };
        let host = M {
            base: R::Rdx,
            disp: 0,
        };
        let slow = self.a.label();
        if load {
            let Some((r0, w)) = reg(i, 0) else {
                return false;
            };
            self.tlb_lookup(&m, w, Access::Read, slow);
            self.a.load(w, R::Rcx, host);
            self.a.store(W::Q, gpr(r0), R::Rcx);
        } else if let Some((r1, w)) = reg(i, 1) {
            self.tlb_lookup(&m, w, Access::Write, slow);
            self.a.load(w, R::Rcx, gpr(r1));
            self.a.store(w, host, R::Rcx);
        } else if fast::is_imm(i, 1) {
            let v = i.immediate(1);
            match i.memory_size().size() {
                8 => {
                    self.tlb_lookup(&m, W::Q, Access::Write, slow);
                    self.a.store_imm64(host, v, R::Rcx);
                }
                4 => {
                    self.tlb_lookup(&m, W::D, Access::Write, slow);
                    self.a.store_imm32(host, v as u32);
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
    fn tlb_lookup(&mut self, m: &fast::Mem, w: W, acc: Access, slow: Label) {
        self.tlb_lookup_sized(m, if w == W::Q { 8 } else { 4 }, acc, slow);
    }

    /// [`Translator::tlb_lookup`] of a `size`-byte access.
    fn tlb_lookup_sized(&mut self, m: &fast::Mem, size: i32, acc: Access, slow: Label) {
        self.ea(m);
        self.tlb_lookup_lin(size, acc, slow);
    }

    /// [`Translator::tlb_lookup`] of a `size`-byte access at the linear address in RAX.
    fn tlb_lookup_lin(&mut self, size: i32, acc: Access, slow: Label) {
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
    fn ea(&mut self, m: &fast::Mem) {
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

    fn lea(&mut self, w: W, r0: u8, m: &fast::Mem) {
        self.ea(m);
        if w == W::D {
            self.a.mov_rr(W::D, R::Rax, R::Rax);
        }
        self.a.store(W::Q, gpr(r0), R::Rax);
    }

    /// `helper(cpu[, arg])`.
    fn call_helper(&mut self, helper: usize, arg: Option<u64>) {
        self.a.mov_rr(W::Q, R::Rdi, R::Rbx);
        if let Some(v) = arg {
            self.a.mov_imm(R::Rsi, v);
        }
        self.a.mov_imm(R::Rax, helper as u64);
        self.a.call(R::Rax);
    }

    /// Run instruction `k` through its semantics pointer, as the interpreter loop does.
    fn callout(&mut self, d: &DecodedInsn, k: u32, start: u64, end: u64) {
        self.a.store_imm64(rip_field(), start, R::Rax);
        self.a.store_imm64(next_rip(), end, R::Rax);
        self.call_helper(
            helpers::callout as *const () as usize,
            Some(d as *const DecodedInsn as u64),
        );
        let exit = self.a.label();
        self.a.test_rr(W::D, R::Rax, R::Rax);
        self.a.jcc(5, exit);
        self.exits.push((exit, k));
        if d.insn.rflags_modified() != 0 {
            self.known = None;
        }
    }
}

/// A slow path still to emit: the call-out of instruction `k` (from `start` to `end`), then
/// back to `resume`.
struct Slow {
    label: Label,
    resume: Label,
    k: u32,
    start: u64,
    end: u64,
}

/// A near JMP/CALL/RET/Jcc/LOOP (not far, not an interrupt): after it, only RIP (and the
/// stack) changed of what the run loop looks at between blocks.
fn near_branch(i: &Instruction) -> bool {
    use iced_x86::FlowControl as F;
    match i.flow_control() {
        F::UnconditionalBranch | F::IndirectBranch => !i.is_jmp_far() && !i.is_jmp_far_indirect(),
        F::Call | F::IndirectCall => !i.is_call_far() && !i.is_call_far_indirect(),
        F::ConditionalBranch => true,
        F::Return => i.mnemonic() == Mn::Ret,
        _ => false,
    }
}

/// The memory operand of `i` if its segment is flat in 64-bit mode (not FS or GS).
fn flat_mem(i: &Instruction) -> Option<fast::Mem> {
    let m = fast::mem(i, 64)?;
    (usize::from(m.seg) < sreg::FS).then_some(m)
}

#[derive(Clone, Copy)]
enum Src {
    Reg(u8),
    Imm(u64),
}

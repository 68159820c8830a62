//! Translation of one decoded block into host code.
//!
//! A decoded block ([`DecodedInsn`]s, each with its semantics pointer) comes in; a
//! position-independent function following [`super::arena::Entry`] comes out. Guest state
//! stays in the `Cpu` in memory (RBX holds its address throughout), so at every instruction
//! boundary the state is exactly the interpreter's and any instruction can be left to the
//! interpreter's semantics:
//!
//! - in 64-bit code, the commonest integer forms are emitted inline: MOV, the ALU group,
//!   INC/DEC, LEA, shifts by an immediate, IMUL, MOVZX/MOVSX, CMOVcc and SETcc on 32- and
//!   64-bit registers (the flags recorded exactly as the interpreter records them), and loads,
//!   stores, PUSH/POP, CALL and RET through an inline TLB lookup whose misses take the
//!   instruction's call-out;
//! - a final Jcc, JMP rel, CALL rel32 or RET in 64-bit code is emitted inline; when the
//!   instruction that set the flags was emitted inline in the same block, the condition is
//!   evaluated by running that instruction's host twin again on the recorded operands (same
//!   flags, by construction);
//! - every other instruction is a call-out: RIP and next RIP are stored, and
//!   [`super::helpers::callout`] runs the instruction's semantics pointer as the interpreter
//!   would. A fault or an early block end leaves through an exit that returns the index of the
//!   instruction.
//!
//! The function returns the index of the last instruction it dealt with, plus a status in the
//! high half ([`DONE`], [`FAULT`], [`STOP`]), and has stored RIP before returning.
//!
//! This file drives a translation and chooses each instruction's form; the emitters live by
//! family: `arith` (register ALU, INC/DEC, shifts, IMUL, LEA, the flags record), `memory`
//! (the inline TLB lookup and the loads, stores, PUSH/POP it serves) and `branch` (Jcc,
//! CALL/RET, and leaving a block: looping, chaining, returning).

mod arith;
mod branch;
mod memory;

use std::mem::offset_of;

use iced_x86::{Instruction, Mnemonic as Mn, OpKind};

use super::asm::{Alu, Asm, Label, Shift, M, R, W};
use super::helpers;
use crate::cpu::decode::DecodedInsn;
use crate::cpu::exec::{alu, fast};
use crate::cpu::flags::FlagOp;
use crate::cpu::mmu::seg::canonical;
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
            _ if fast::is_cmovcc(m) => {
                let (Some((r0, w)), Some((r1, w1))) = (reg(i, 0), reg(i, 1)) else {
                    return false;
                };
                if w1 != w {
                    return false;
                }
                self.cmov(alu::cc(i), w, r0, r1);
                true
            }
            _ if fast::is_setcc(m) => {
                if i.op_kind(0) != OpKind::Register || i.op0_register().size() != 1 {
                    return false;
                }
                let Some(r0) = fast::gpr(i.op0_register()) else {
                    return false;
                };
                self.setcc(alu::cc(i), r0);
                true
            }
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

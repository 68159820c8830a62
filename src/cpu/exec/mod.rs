//! Instruction semantics, one file per family. This module holds the operand plumbing every
//! family shares: registers by iced-x86 `Register`, effective addresses, operand read/write,
//! the stack.
//!
//! A semantics function receives the CPU and the decoded instruction, reads all its inputs
//! (faulting ones first), then writes memory, then registers and flags, so a fault leaves the
//! state as before the instruction.

pub mod alu;
pub mod bcd;
pub mod bit;
pub mod control;
pub mod cpuid;
pub mod fast;
pub mod fxsave;
pub mod msr;
pub mod muldiv;
pub mod shift;
pub mod sse;
pub mod stack;
pub mod string;
pub mod system;
pub mod x87;

use iced_x86::{Instruction, OpKind, Register};

use super::fault::Res;
use super::state::sreg;
use super::Cpu;

/// Segment index ([`sreg`]) of an iced-x86 segment register (DS for anything else).
#[inline]
pub fn seg_index(r: Register) -> usize {
    let n = r as usize;
    if (Register::ES as usize..=Register::GS as usize).contains(&n) {
        n - Register::ES as usize
    } else {
        sreg::DS
    }
}

impl Cpu {
    /// Read a general, segment or instruction-pointer register.
    #[inline]
    pub(crate) fn reg(&self, r: Register) -> u64 {
        let n = r as usize;
        let g = &self.state.gpr;
        match n {
            1..=4 => g[n - 1] & 0xff,
            5..=8 => (g[n - 5] >> 8) & 0xff,
            9..=20 => g[n - 5] & 0xff,
            21..=36 => g[n - 21] & 0xffff,
            37..=52 => g[n - 37] & 0xffff_ffff,
            53..=68 => g[n - 53],
            69 | 70 => self.state.rip,
            71..=76 => u64::from(self.state.seg[n - 71].selector),
            _ => 0,
        }
    }

    /// Write a general register with x86's merge rules (8/16-bit merge, 32-bit zero-extends).
    #[inline]
    pub(crate) fn set_reg(&mut self, r: Register, v: u64) {
        let n = r as usize;
        let g = &mut self.state.gpr;
        match n {
            1..=4 => g[n - 1] = (g[n - 1] & !0xff) | (v & 0xff),
            5..=8 => g[n - 5] = (g[n - 5] & !0xff00) | ((v & 0xff) << 8),
            9..=20 => g[n - 5] = (g[n - 5] & !0xff) | (v & 0xff),
            21..=36 => g[n - 21] = (g[n - 21] & !0xffff) | (v & 0xffff),
            37..=52 => g[n - 37] = v & 0xffff_ffff,
            53..=68 => g[n - 53] = v,
            _ => {}
        }
    }

    /// Write GPR `idx` with an operand of `size` bytes (merge rules as [`Cpu::set_reg`]).
    #[inline]
    pub(crate) fn set_gpr_sized(&mut self, idx: usize, size: usize, v: u64) {
        let g = &mut self.state.gpr[idx];
        *g = match size {
            1 => (*g & !0xff) | (v & 0xff),
            2 => (*g & !0xffff) | (v & 0xffff),
            4 => v & 0xffff_ffff,
            _ => v,
        };
    }

    /// Push `size` bytes on the stack (SS:SP/ESP/RSP per the stack size).
    pub(crate) fn push(&mut self, v: u64, size: usize) -> Res<()> {
        let sp = self.state.gpr[4];
        let new = match self.state.stack_bits() {
            64 => sp.wrapping_sub(size as u64),
            32 => sp.wrapping_sub(size as u64) & 0xffff_ffff,
            _ => sp.wrapping_sub(size as u64) & 0xffff,
        };
        self.write_seg(sreg::SS, new, size, v)?;
        self.set_sp(new);
        Ok(())
    }

    /// Read `size` bytes at stack offset `off` from the top (no RSP change).
    pub(crate) fn peek(&mut self, off: u64, size: usize) -> Res<u64> {
        let sp = self.state.gpr[4].wrapping_add(off);
        let a = match self.state.stack_bits() {
            64 => sp,
            32 => sp & 0xffff_ffff,
            _ => sp & 0xffff,
        };
        self.read_seg(sreg::SS, a, size)
    }

    /// Pop `size` bytes.
    pub(crate) fn pop(&mut self, size: usize) -> Res<u64> {
        let v = self.peek(0, size)?;
        let sp = self.state.gpr[4].wrapping_add(size as u64);
        self.set_sp(sp);
        Ok(v)
    }

    /// Set the stack pointer honouring the stack size.
    pub(crate) fn set_sp(&mut self, v: u64) {
        let bits = self.state.stack_bits();
        let sp = &mut self.state.gpr[4];
        *sp = match bits {
            64 => v,
            32 => v & 0xffff_ffff,
            _ => (*sp & !0xffff) | (v & 0xffff),
        };
    }
}

/// Effective address (offset within the segment) of the memory operand, wrapped to the
/// address size.
#[inline]
pub fn ea(cpu: &Cpu, i: &Instruction) -> u64 {
    let base = i.memory_base();
    let index = i.memory_index();
    if base == Register::RIP {
        return i.memory_displacement64();
    }
    if base == Register::EIP {
        return i.memory_displacement64() & 0xffff_ffff;
    }
    let mut a = i.memory_displacement64();
    if base != Register::None {
        a = a.wrapping_add(cpu.reg(base));
    }
    if index != Register::None {
        a = a.wrapping_add(cpu.reg(index) << i.memory_index_scale().trailing_zeros());
    }
    match address_size(i, || cpu.state.bitness()) {
        2 => a & 0xffff,
        4 => a & 0xffff_ffff,
        _ => a,
    }
}

/// Address size in bytes of `i`'s memory operand (not RIP-relative): its index or base
/// register's size, else (an absolute address) what the code size `bits` and the
/// displacement imply; `bits` is asked only in that last case.
#[inline]
pub fn address_size(i: &Instruction, bits: impl FnOnce() -> u32) -> usize {
    if i.memory_index() != Register::None {
        i.memory_index().size()
    } else if i.memory_base() != Register::None {
        i.memory_base().size()
    } else if bits() == 64 {
        8
    } else if i.memory_displ_size() == 2 {
        2
    } else {
        4
    }
}

/// The segment of the memory operand.
#[inline]
pub fn mem_seg(i: &Instruction) -> usize {
    seg_index(i.memory_segment())
}

/// Size in bytes of operand `n`.
#[inline]
pub fn op_size(i: &Instruction, n: u32) -> usize {
    match i.op_kind(n) {
        OpKind::Register => i.op_register(n).size(),
        OpKind::Memory => i.memory_size().size(),
        OpKind::Immediate8 | OpKind::Immediate8_2nd => 1,
        OpKind::Immediate16 | OpKind::Immediate8to16 => 2,
        OpKind::Immediate32 | OpKind::Immediate8to32 => 4,
        _ => 8,
    }
}

/// Read operand `n` (register, memory or immediate), zero-extended.
#[inline]
pub fn read_op(cpu: &mut Cpu, i: &Instruction, n: u32) -> Res<u64> {
    match i.op_kind(n) {
        OpKind::Register => Ok(cpu.reg(i.op_register(n))),
        OpKind::Memory => {
            let a = ea(cpu, i);
            cpu.read_seg(mem_seg(i), a, i.memory_size().size())
        }
        _ => Ok(i.immediate(n)),
    }
}

/// Write operand `n` (register or memory) of `size` bytes.
#[inline]
pub fn write_op(cpu: &mut Cpu, i: &Instruction, n: u32, v: u64) -> Res<()> {
    match i.op_kind(n) {
        OpKind::Register => {
            cpu.set_reg(i.op_register(n), v);
            Ok(())
        }
        _ => {
            let a = ea(cpu, i);
            cpu.write_seg(mem_seg(i), a, i.memory_size().size(), v)
        }
    }
}

/// Operand-size mask for `size` bytes.
#[inline]
pub fn size_mask(size: usize) -> u64 {
    super::flags::mask(size as u32 * 8)
}

/// Sign-extend the low `size` bytes of `v`.
#[inline]
pub fn sext(v: u64, size: usize) -> u64 {
    if size == 0 || size >= 8 {
        return v;
    }
    let sh = 64 - size as u32 * 8;
    (((v << sh) as i64) >> sh) as u64
}

//! Stack instructions: PUSH/POP (register, memory, immediate, segment), PUSHA/POPA,
//! PUSHF/POPF (with the IOPL/IF privilege rules), ENTER/LEAVE.

use iced_x86::{Instruction, OpKind};

use super::{ea, mem_seg, read_op, seg_index};
use crate::cpu::fault::{gp, Res};
use crate::cpu::flags::{AC, ID, IF, IOPL, NT, RF, VIF, VIP, VM, WRITABLE};
use crate::cpu::state::sreg;
use crate::cpu::Cpu;

fn push_size(i: &Instruction) -> usize {
    (-i.stack_pointer_increment()) as usize
}

/// PUSH.
pub fn push(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let v = read_op(cpu, i, 0)?;
    cpu.push(v, push_size(i))
}

/// POP (to a register, memory or a segment register).
pub fn pop(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let size = i.stack_pointer_increment() as usize;
    let v = cpu.peek(0, size)?;
    let old_sp = cpu.state.gpr[4];
    match i.op0_kind() {
        OpKind::Register if i.op0_register().is_segment_register() => {
            let seg = seg_index(i.op0_register());
            cpu.load_sreg(seg, v as u16)?;
            cpu.set_sp(old_sp.wrapping_add(size as u64));
            if seg == sreg::SS {
                cpu.shadow = true;
                cpu.stop_block = true;
            }
        }
        OpKind::Register => {
            cpu.set_sp(old_sp.wrapping_add(size as u64));
            cpu.set_reg(i.op0_register(), v);
        }
        _ => {
            // The address is computed with the incremented stack pointer.
            cpu.set_sp(old_sp.wrapping_add(size as u64));
            let a = ea(cpu, i);
            if let Err(f) = cpu.write_seg(mem_seg(i), a, size, v) {
                cpu.state.gpr[4] = old_sp;
                return Err(f);
            }
        }
    }
    Ok(())
}

/// PUSHA / PUSHAD.
pub fn pusha(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let size = push_size(i) / 8;
    let sp = cpu.state.gpr[4];
    let old = cpu.state.gpr;
    for (k, r) in [0usize, 1, 2, 3, 4, 5, 6, 7].into_iter().enumerate() {
        let v = if r == 4 { sp } else { old[r] };
        let off = ((k as u64 + 1) * size as u64).wrapping_neg();
        let a = match cpu.state.stack_bits() {
            32 => sp.wrapping_add(off) & 0xffff_ffff,
            _ => sp.wrapping_add(off) & 0xffff,
        };
        cpu.write_seg(sreg::SS, a, size, v)?;
    }
    cpu.set_sp(sp.wrapping_sub(8 * size as u64));
    Ok(())
}

/// POPA / POPAD (the SP slot is skipped).
pub fn popa(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let size = i.stack_pointer_increment() as usize / 8;
    let mut vals = [0u64; 8];
    for (k, v) in vals.iter_mut().enumerate() {
        *v = cpu.peek((k * size) as u64, size)?;
    }
    for (k, r) in [7usize, 6, 5, 4, 3, 2, 1, 0].into_iter().enumerate() {
        if r != 4 {
            cpu.set_gpr_sized(r, size, vals[k]);
        }
    }
    let sp = cpu.state.gpr[4].wrapping_add(8 * size as u64);
    cpu.set_sp(sp);
    Ok(())
}

/// PUSHF / PUSHFD / PUSHFQ (VM and RF read as 0).
pub fn pushf(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    if cpu.state.v86() && cpu.state.iopl() < 3 {
        return Err(gp(0));
    }
    let v = cpu.state.flags.get() & !(VM | RF);
    cpu.push(v, push_size(i))
}

/// Apply a new flags image with the privilege rules of POPF/IRET: IOPL changes only at CPL 0,
/// IF only when CPL <= IOPL; VM, RF, VIF, VIP are not changed by POPF.
pub(crate) fn write_flags(cpu: &mut Cpu, new: u64, size: usize, extra_mask: u64) {
    let cur = cpu.state.flags.get();
    let cpl = cpu.state.cpl();
    let mut mask = WRITABLE & !(VM | RF | VIF | VIP) | extra_mask;
    if cpu.state.protected() {
        if cpl > 0 {
            mask &= !IOPL;
        }
        if u64::from(cpl) > (cur & IOPL) >> 12 {
            mask &= !IF;
        }
    }
    mask &= match size {
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    };
    let _ = (AC, ID, NT);
    let v = (cur & !mask) | (new & mask);
    cpu.state.flags.set(v);
    if (cur ^ v) & IF != 0 {
        // An interrupt may now be deliverable: end the block so it is checked.
        cpu.stop_block = true;
    }
}

/// POPF / POPFD / POPFQ.
pub fn popf(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    if cpu.state.v86() && cpu.state.iopl() < 3 {
        return Err(gp(0));
    }
    let size = i.stack_pointer_increment() as usize;
    let v = cpu.pop(size)?;
    write_flags(cpu, v, size, 0);
    Ok(())
}

/// ENTER imm16, imm8.
pub fn enter(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let size = match i.code() {
        iced_x86::Code::Enterw_imm16_imm8 => 2,
        iced_x86::Code::Enterd_imm16_imm8 => 4,
        _ => 8,
    };
    let alloc = u64::from(i.immediate16());
    let level = u64::from(i.immediate8_2nd() & 31);
    let old_sp = cpu.state.gpr[4];
    let old_bp = cpu.state.gpr[5];
    let bits = cpu.state.stack_bits();
    let res = (|| {
        cpu.push(old_bp, size)?;
        let frame = cpu.state.gpr[4];
        let mut bp = old_bp;
        if level > 0 {
            for _ in 1..level {
                bp = bp.wrapping_sub(size as u64);
                let a = match bits {
                    64 => bp,
                    32 => bp & 0xffff_ffff,
                    _ => bp & 0xffff,
                };
                let v = cpu.read_seg(sreg::SS, a, size)?;
                cpu.push(v, size)?;
            }
            cpu.push(frame, size)?;
        }
        let sp = cpu.state.gpr[4].wrapping_sub(alloc);
        // Touch the lowest byte of the new frame so a bad stack faults here.
        let probe = match bits {
            64 => sp,
            32 => sp & 0xffff_ffff,
            _ => sp & 0xffff,
        };
        cpu.probe_write_seg(sreg::SS, probe, 1)?;
        cpu.set_gpr_sized(5, size, frame);
        cpu.set_sp(sp);
        Ok(())
    })();
    if res.is_err() {
        cpu.state.gpr[4] = old_sp;
        cpu.state.gpr[5] = old_bp;
    }
    res
}

/// LEAVE.
pub fn leave(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let size = match i.code() {
        iced_x86::Code::Leavew => 2,
        iced_x86::Code::Leaved => 4,
        _ => 8,
    };
    let old_sp = cpu.state.gpr[4];
    cpu.set_sp(cpu.state.gpr[5]);
    match cpu.pop(size) {
        Ok(v) => {
            cpu.set_gpr_sized(5, size, v);
            Ok(())
        }
        Err(f) => {
            cpu.state.gpr[4] = old_sp;
            Err(f)
        }
    }
}

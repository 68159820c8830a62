//! Bit instructions: BT/BTS/BTR/BTC (register and memory forms, with the signed bit offset of
//! the register form reaching outside the addressed operand), BSF/BSR (TZCNT/LZCNT execute as
//! BSF/BSR, as on CPUs without BMI1/ABM, which is what CPUID says), POPCNT (advertised).

use iced_x86::{Instruction, Mnemonic, OpKind};

use super::{ea, mem_seg, op_size, read_op, sext, size_mask, write_op};
use crate::cpu::fault::Res;
use crate::cpu::flags::{ARITH, CF, ZF};
use crate::cpu::Cpu;

/// BT, BTS, BTR, BTC.
pub fn bt_family(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let size = op_size(i, 0);
    let bits = size as u64 * 8;
    let off = read_op(cpu, i, 1)?;
    let mn = i.mnemonic();
    let mem = i.op0_kind() == OpKind::Memory;
    let addr = if mem && i.op1_kind() == OpKind::Register {
        let soff = sext(off, size) as i64;
        let disp = (soff >> bits.trailing_zeros()) * size as i64;
        let a = ea(cpu, i).wrapping_add(disp as u64);
        Some(match cpu.state.bitness() {
            64 => a,
            _ => a & 0xffff_ffff,
        })
    } else {
        None
    };
    let bit = off & (bits - 1);
    let apply = move |val: u64| match mn {
        Mnemonic::Bts => val | 1 << bit,
        Mnemonic::Btr => val & !(1 << bit),
        Mnemonic::Btc => val ^ 1 << bit,
        _ => val,
    };
    if mem && mn != Mnemonic::Bt && i.has_lock_prefix() {
        let a = addr.unwrap_or_else(|| ea(cpu, i));
        let old = cpu.rmw_seg(mem_seg(i), a, size, apply)?;
        cpu.state.flags.set_flag(CF, (old >> bit) & 1 != 0);
        return Ok(());
    }
    let val = match addr {
        Some(a) => cpu.read_seg(mem_seg(i), a, size)?,
        None => read_op(cpu, i, 0)?,
    };
    let cf = (val >> bit) & 1 != 0;
    let new = apply(val);
    if mn != Mnemonic::Bt {
        match addr {
            Some(a) => cpu.write_seg(mem_seg(i), a, size, new)?,
            None => write_op(cpu, i, 0, new)?,
        }
    }
    cpu.state.flags.set_flag(CF, cf);
    Ok(())
}

/// BSF / TZCNT (as BSF).
pub fn bsf(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let v = read_op(cpu, i, 1)? & size_mask(op_size(i, 1));
    if v == 0 {
        cpu.state.flags.set_flag(ZF, true);
    } else {
        cpu.set_reg(i.op0_register(), u64::from(v.trailing_zeros()));
        cpu.state.flags.set_flag(ZF, false);
    }
    Ok(())
}

/// BSR / LZCNT (as BSR).
pub fn bsr(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let v = read_op(cpu, i, 1)? & size_mask(op_size(i, 1));
    if v == 0 {
        cpu.state.flags.set_flag(ZF, true);
    } else {
        cpu.set_reg(i.op0_register(), u64::from(63 - v.leading_zeros()));
        cpu.state.flags.set_flag(ZF, false);
    }
    Ok(())
}

/// POPCNT.
pub fn popcnt(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let v = read_op(cpu, i, 1)? & size_mask(op_size(i, 1));
    cpu.set_reg(i.op0_register(), u64::from(v.count_ones()));
    cpu.state
        .flags
        .set_arith(ARITH, if v == 0 { ZF } else { 0 });
    Ok(())
}

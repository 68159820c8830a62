//! Decimal adjust: DAA/DAS/AAA/AAS/AAM/AAD. iced-x86 does not decode them in 64-bit mode, so
//! they raise #UD there through the invalid-instruction path.

use iced_x86::Instruction;

use crate::cpu::fault::{de, Res};
use crate::cpu::flags::{Flags, AF, ARITH, CF, OF, PF, SF, ZF};
use crate::cpu::Cpu;

fn al(cpu: &Cpu) -> u8 {
    cpu.state.gpr[0] as u8
}

fn set_al(cpu: &mut Cpu, v: u8) {
    cpu.set_gpr_sized(0, 1, u64::from(v));
}

/// DAA.
pub fn daa(cpu: &mut Cpu, _i: &Instruction) -> Res<()> {
    let old = al(cpu);
    let (cf, af) = (cpu.state.flags.cf(), cpu.state.flags.af());
    let mut a = old;
    let mut ncf = false;
    let mut naf = false;
    if old & 0xf > 9 || af {
        a = a.wrapping_add(6);
        ncf = cf || old > 0xf9;
        naf = true;
    }
    if old > 0x99 || cf {
        a = a.wrapping_add(0x60);
        ncf = true;
    }
    set_al(cpu, a);
    let f = Flags::szp(8, u64::from(a)) | (u64::from(ncf) * CF) | (u64::from(naf) * AF);
    cpu.state.flags.set_arith(ARITH, f);
    Ok(())
}

/// DAS.
pub fn das(cpu: &mut Cpu, _i: &Instruction) -> Res<()> {
    let old = al(cpu);
    let (cf, af) = (cpu.state.flags.cf(), cpu.state.flags.af());
    let mut a = old;
    let mut ncf = false;
    let mut naf = false;
    if old & 0xf > 9 || af {
        a = a.wrapping_sub(6);
        ncf = cf || old < 6;
        naf = true;
    }
    if old > 0x99 || cf {
        a = a.wrapping_sub(0x60);
        ncf = true;
    }
    set_al(cpu, a);
    let f = Flags::szp(8, u64::from(a)) | (u64::from(ncf) * CF) | (u64::from(naf) * AF);
    cpu.state.flags.set_arith(ARITH, f);
    Ok(())
}

fn ascii_adjust(cpu: &mut Cpu, add: bool) {
    let ax = cpu.state.gpr[0] as u16;
    let adjust = (ax & 0xf) > 9 || cpu.state.flags.af();
    let ax = if adjust {
        if add {
            ax.wrapping_add(0x106)
        } else {
            let al = (ax as u8).wrapping_sub(6);
            let ah = ((ax >> 8) as u8).wrapping_sub(1);
            u16::from(ah) << 8 | u16::from(al)
        }
    } else {
        ax
    };
    cpu.set_gpr_sized(0, 2, u64::from(ax & 0xff0f));
    let f = if adjust { AF | CF } else { 0 };
    cpu.state.flags.set_arith(ARITH & !(OF | SF | ZF | PF), f);
}

/// AAA.
pub fn aaa(cpu: &mut Cpu, _i: &Instruction) -> Res<()> {
    ascii_adjust(cpu, true);
    Ok(())
}

/// AAS.
pub fn aas(cpu: &mut Cpu, _i: &Instruction) -> Res<()> {
    ascii_adjust(cpu, false);
    Ok(())
}

/// AAM imm8 (#DE on a zero base).
pub fn aam(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let base = i.immediate8();
    if base == 0 {
        return Err(de());
    }
    let a = al(cpu);
    let (q, r) = (a / base, a % base);
    cpu.set_gpr_sized(0, 2, u64::from(q) << 8 | u64::from(r));
    cpu.state
        .flags
        .set_arith(ARITH, Flags::szp(8, u64::from(r)));
    Ok(())
}

/// AAD imm8.
pub fn aad(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let ax = cpu.state.gpr[0];
    let r = ((ax & 0xff) + ((ax >> 8) & 0xff) * u64::from(i.immediate8())) & 0xff;
    cpu.set_gpr_sized(0, 2, r);
    cpu.state.flags.set_arith(ARITH, Flags::szp(8, r));
    Ok(())
}

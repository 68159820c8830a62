//! FXSAVE/FXRSTOR (and the REX.W forms FXSAVE64/FXRSTOR64): the 512-byte x87 + SSE image.
//!
//! Data enters from / leaves to `cpu.state.fpu` and a 16-byte-aligned 512-byte guest buffer:
//!
//! | offset | contents |
//! | --- | --- |
//! | 0 | FCW, FSW, abridged tag byte, 0, FOP |
//! | 8 | FIP (32 bits + FCS, or 64 bits with REX.W) |
//! | 16 | FDP (32 bits + FDS, or 64 bits with REX.W) |
//! | 24 | MXCSR, MXCSR_MASK |
//! | 32 | ST(0)..ST(7), 16 bytes each (80-bit value, 6 zero bytes) |
//! | 160 | XMM0..XMM7 (XMM0..XMM15 in 64-bit mode) |
//!
//! MXCSR and the XMM registers are saved and restored only when CR4.OSFXSR = 1. MXCSR_MASK is
//! 0xFFFF (SSE2 level with DAZ): FXRSTOR of an MXCSR with bits outside it raises #GP(0), as
//! does an operand that is not 16-byte aligned. Bytes 288/416..511 are left alone. FXSAVE
//! does not check for pending x87 exceptions; #NM when CR0.EM or CR0.TS.

use iced_x86::{Instruction, Mnemonic as M};

use super::x87::control::retag;
use super::x87::{read_mem, write_mem};
use super::{ea, mem_seg};
use crate::cpu::fault::{exc, gp, vec, Res};
use crate::cpu::fpu_state::tag;
use crate::cpu::state::{cr0, cr4};
use crate::cpu::Cpu;

/// MXCSR bits FXRSTOR (and LDMXCSR) accept.
pub const MXCSR_MASK: u32 = 0xffff;

fn check(cpu: &Cpu, i: &Instruction) -> Res<()> {
    if cpu.state.cr0 & (cr0::EM | cr0::TS) != 0 {
        return Err(exc(vec::NM));
    }
    let lin = cpu.linear(mem_seg(i), ea(cpu, i), 512, false)?;
    if lin & 15 != 0 {
        return Err(gp(0));
    }
    Ok(())
}

fn xmm_count(cpu: &Cpu) -> usize {
    if cpu.state.mode64() {
        16
    } else {
        8
    }
}

/// FXSAVE/FXSAVE64.
pub fn fxsave(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    check(cpu, i)?;
    let wide = i.mnemonic() == M::Fxsave64;
    let sse = cpu.state.cr4 & cr4::OSFXSR != 0;
    let f = cpu.state.fpu.clone();
    let mut words: Vec<(u64, usize, u64)> = vec![
        (0, 2, u64::from(f.fcw)),
        (2, 2, u64::from(f.fsw)),
        (4, 2, u64::from(f.abridged_tag())),
        (6, 2, u64::from(f.fop & 0x7ff)),
    ];
    if wide {
        words.push((8, 8, f.fip));
        words.push((16, 8, f.fdp));
    } else {
        words.push((8, 4, f.fip & 0xffff_ffff));
        words.push((12, 4, u64::from(f.fcs)));
        words.push((16, 4, f.fdp & 0xffff_ffff));
        words.push((20, 4, u64::from(f.fds)));
    }
    if sse {
        words.push((24, 4, u64::from(f.mxcsr)));
        words.push((28, 4, u64::from(MXCSR_MASK)));
    }
    for k in 0..8 {
        let v = f.st[f.phys(k)];
        let off = 32 + 16 * k as u64;
        words.push((off, 8, v.mant));
        words.push((off + 8, 8, u64::from(v.sign_exp)));
    }
    if sse {
        for (k, x) in f.xmm.iter().take(xmm_count(cpu)).enumerate() {
            let off = 160 + 16 * k as u64;
            words.push((off, 8, *x as u64));
            words.push((off + 8, 8, (*x >> 64) as u64));
        }
    }
    // Probe every byte we will write first, so a fault leaves memory untouched.
    for &(off, size, _) in &words {
        read_mem(cpu, i, off, size)?;
    }
    for (off, size, v) in words {
        write_mem(cpu, i, off, size, v)?;
    }
    Ok(())
}

/// FXRSTOR/FXRSTOR64.
pub fn fxrstor(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    check(cpu, i)?;
    let wide = i.mnemonic() == M::Fxrstor64;
    let sse = cpu.state.cr4 & cr4::OSFXSR != 0;
    let mut f = cpu.state.fpu.clone();
    f.fcw = read_mem(cpu, i, 0, 2)? as u16;
    f.fsw = read_mem(cpu, i, 2, 2)? as u16;
    let abridged = read_mem(cpu, i, 4, 1)? as u8;
    f.fop = read_mem(cpu, i, 6, 2)? as u16 & 0x7ff;
    if wide {
        f.fip = read_mem(cpu, i, 8, 8)?;
        f.fdp = read_mem(cpu, i, 16, 8)?;
    } else {
        f.fip = read_mem(cpu, i, 8, 4)?;
        f.fcs = read_mem(cpu, i, 12, 2)? as u16;
        f.fdp = read_mem(cpu, i, 16, 4)?;
        f.fds = read_mem(cpu, i, 20, 2)? as u16;
    }
    if sse {
        let mxcsr = read_mem(cpu, i, 24, 4)? as u32;
        if mxcsr & !MXCSR_MASK != 0 {
            return Err(gp(0));
        }
        f.mxcsr = mxcsr;
    }
    for k in 0..8 {
        let off = 32 + 16 * k as u64;
        let p = f.phys(k);
        f.st[p].mant = read_mem(cpu, i, off, 8)?;
        f.st[p].sign_exp = read_mem(cpu, i, off + 8, 2)? as u16;
    }
    f.ftw = 0;
    for p in 0..8 {
        f.set_tag(
            p,
            if abridged & (1 << p) != 0 {
                0
            } else {
                tag::EMPTY
            },
        );
    }
    retag(&mut f);
    if sse {
        for k in 0..xmm_count(cpu) {
            let off = 160 + 16 * k as u64;
            let lo = read_mem(cpu, i, off, 8)?;
            let hi = read_mem(cpu, i, off + 8, 8)?;
            f.xmm[k] = u128::from(lo) | (u128::from(hi) << 64);
        }
    }
    cpu.state.fpu = f;
    Ok(())
}

//! x87 control instructions: FINIT/FNINIT, FCLEX/FNCLEX, FLDCW, FSTCW/FNSTCW, FSTSW/FNSTSW
//! (m16 and AX), FSTENV/FNSTENV, FLDENV, FSAVE/FNSAVE, FRSTOR (16- and 32-bit layouts, real
//! and protected mode), FFREE, FINCSTP/FDECSTP, FNOP and FWAIT.
//!
//! The environment image (14 or 28 bytes) is the control, status and full tag words plus the
//! last instruction and data pointers; in real and virtual-8086 mode the pointers are stored as
//! 20/32-bit linear addresses split around FOP. Reserved upper halves of the 32-bit layout are
//! written as 0xFFFF, as Intel processors do.

use iced_x86::{Instruction, MemorySize, Mnemonic as M, Register};

use super::*;
use crate::cpu::fpu_state::FCW_RESET;

fn entry_for(i: &Instruction) -> Entry {
    match i.mnemonic() {
        M::Fninit | M::Fnclex | M::Fnstcw | M::Fnstsw | M::Fnstenv | M::Fnsave => Entry::NoWait,
        _ => Entry::Control,
    }
}

/// The FNINIT state change.
pub fn init(f: &mut FpuState) {
    f.fcw = FCW_RESET;
    f.fsw = 0;
    f.ftw = 0xffff;
    f.fip = 0;
    f.fcs = 0;
    f.fdp = 0;
    f.fds = 0;
    f.fop = 0;
}

/// FINIT/FNINIT.
pub fn finit(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    enter(cpu, entry_for(i))?;
    init(&mut cpu.state.fpu);
    Ok(())
}

/// FCLEX/FNCLEX: clear the exception flags, SF, ES and B.
pub fn fclex(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    enter(cpu, entry_for(i))?;
    cpu.state.fpu.fsw &= !(sw::EXC | sw::SF | sw::ES | sw::B);
    Ok(())
}

/// FLDCW m16.
pub fn fldcw(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    enter(cpu, Entry::Control)?;
    let v = read_mem(cpu, i, 0, 2)? as u16;
    let f = &mut cpu.state.fpu;
    f.fcw = v | 0x40;
    f.update_es();
    Ok(())
}

/// FSTCW/FNSTCW m16.
pub fn fstcw(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    enter(cpu, entry_for(i))?;
    let v = cpu.state.fpu.fcw;
    write_mem(cpu, i, 0, 2, u64::from(v))
}

/// FSTSW/FNSTSW m16 or AX.
pub fn fstsw(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    enter(cpu, entry_for(i))?;
    let v = u64::from(cpu.state.fpu.fsw);
    if is_mem(i, 0) {
        write_mem(cpu, i, 0, 2, v)
    } else {
        cpu.set_reg(Register::AX, v);
        Ok(())
    }
}

/// Layout of an environment image.
#[derive(Clone, Copy)]
struct Layout {
    wide: bool,
    protected: bool,
}

fn layout(cpu: &Cpu, i: &Instruction) -> Layout {
    Layout {
        wide: matches!(
            i.memory_size(),
            MemorySize::FpuEnv28 | MemorySize::FpuState108
        ),
        protected: cpu.state.protected() && !cpu.state.v86(),
    }
}

/// The environment words (offset, size, value) for `f` in layout `l`.
fn env_words(f: &FpuState, l: Layout) -> Vec<(u64, usize, u64)> {
    let (w, step) = if l.wide { (4, 4u64) } else { (2, 2u64) };
    let hi = if l.wide { 0xffff_0000u64 } else { 0 };
    let mut v = vec![
        (0, w, hi | u64::from(f.fcw)),
        (step, w, hi | u64::from(f.fsw)),
        (2 * step, w, hi | u64::from(f.ftw)),
    ];
    let fop = u64::from(f.fop & 0x7ff);
    if l.protected {
        let (ip, dp) = (f.fip & 0xffff_ffff, f.fdp & 0xffff_ffff);
        if l.wide {
            v.push((12, 4, ip));
            v.push((16, 4, u64::from(f.fcs) | (fop << 16)));
            v.push((20, 4, dp));
            v.push((24, 4, hi | u64::from(f.fds)));
        } else {
            v.push((6, 2, ip & 0xffff));
            v.push((8, 2, u64::from(f.fcs)));
            v.push((10, 2, dp & 0xffff));
            v.push((12, 2, u64::from(f.fds)));
        }
    } else {
        let ip = (u64::from(f.fcs) << 4).wrapping_add(f.fip) & 0xffff_ffff;
        let dp = (u64::from(f.fds) << 4).wrapping_add(f.fdp) & 0xffff_ffff;
        if l.wide {
            v.push((12, 4, hi | (ip & 0xffff)));
            v.push((16, 4, ((ip >> 16) << 12) | fop));
            v.push((20, 4, hi | (dp & 0xffff)));
            v.push((24, 4, (dp >> 16) << 12));
        } else {
            v.push((6, 2, ip & 0xffff));
            v.push((8, 2, (((ip >> 16) & 0xf) << 12) | fop));
            v.push((10, 2, dp & 0xffff));
            v.push((12, 2, ((dp >> 16) & 0xf) << 12));
        }
    }
    v
}

fn env_len(l: Layout) -> u64 {
    if l.wide {
        28
    } else {
        14
    }
}

fn store_env(cpu: &mut Cpu, i: &Instruction, l: Layout) -> Res<()> {
    for (off, size, val) in env_words(&cpu.state.fpu, l) {
        write_mem(cpu, i, off, size, val)?;
    }
    Ok(())
}

/// Read an environment image: (fcw, fsw, ftw, fip, fcs, fop, fdp, fds).
fn load_env(cpu: &mut Cpu, i: &Instruction, l: Layout) -> Res<FpuState> {
    let (w, step) = if l.wide { (4, 4u64) } else { (2, 2u64) };
    let mut f = cpu.state.fpu.clone();
    f.fcw = read_mem(cpu, i, 0, w)? as u16 | 0x40;
    f.fsw = read_mem(cpu, i, step, w)? as u16;
    f.ftw = read_mem(cpu, i, 2 * step, w)? as u16;
    let at = |k: u64| 3 * step + k * step;
    let a = read_mem(cpu, i, at(0), w)?;
    let b = read_mem(cpu, i, at(1), w)?;
    let c = read_mem(cpu, i, at(2), w)?;
    let d = read_mem(cpu, i, at(3), w)?;
    if l.protected {
        f.fip = a;
        f.fcs = b as u16;
        f.fop = if l.wide {
            ((b >> 16) & 0x7ff) as u16
        } else {
            0
        };
        f.fdp = c;
        f.fds = d as u16;
    } else {
        let (hi_sh, hi_mask) = if l.wide { (12, 0xffff) } else { (12, 0xf) };
        f.fip = (a & 0xffff) | (((b >> hi_sh) & hi_mask) << 16);
        f.fop = (b & 0x7ff) as u16;
        f.fdp = (c & 0xffff) | (((d >> hi_sh) & hi_mask) << 16);
        f.fcs = 0;
        f.fds = 0;
    }
    Ok(f)
}

/// Non-empty tags recomputed from the register contents (FLDENV/FRSTOR/FXRSTOR).
pub fn retag(f: &mut FpuState) {
    for p in 0..8 {
        if f.tag_of(p) != tag::EMPTY {
            let t = tag_for(f.st[p]);
            f.set_tag(p, t);
        }
    }
}

/// FSTENV/FNSTENV: store the environment, then mask all exceptions.
pub fn fstenv(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    enter(cpu, entry_for(i))?;
    let l = layout(cpu, i);
    probe_mem(cpu, i, env_len(l))?;
    store_env(cpu, i, l)?;
    cpu.state.fpu.fcw |= 0x3f;
    cpu.state.fpu.update_es();
    Ok(())
}

/// FLDENV.
pub fn fldenv(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    enter(cpu, Entry::Control)?;
    let l = layout(cpu, i);
    let mut f = load_env(cpu, i, l)?;
    retag(&mut f);
    f.update_es();
    cpu.state.fpu = f;
    Ok(())
}

/// FSAVE/FNSAVE: environment plus ST(0)..ST(7), then FNINIT.
pub fn fsave(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    enter(cpu, entry_for(i))?;
    let l = layout(cpu, i);
    let base = env_len(l);
    probe_mem(cpu, i, base + 80)?;
    store_env(cpu, i, l)?;
    for k in 0..8 {
        let v = cpu.state.fpu.st_get(k);
        write_m80(cpu, i, base + 10 * k as u64, v)?;
    }
    init(&mut cpu.state.fpu);
    Ok(())
}

/// FRSTOR.
pub fn frstor(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    enter(cpu, Entry::Control)?;
    let l = layout(cpu, i);
    let base = env_len(l);
    let mut f = load_env(cpu, i, l)?;
    for k in 0..8 {
        let v = read_m80(cpu, i, base + 10 * k as u64)?;
        let p = f.phys(k);
        f.st[p] = v;
    }
    retag(&mut f);
    f.update_es();
    cpu.state.fpu = f;
    Ok(())
}

/// FFREE/FFREEP ST(i): tag it empty.
pub fn ffree(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    data(cpu, i, |cpu, i| {
        let f = &mut cpu.state.fpu;
        let p = f.phys(st_reg(i.op0_register()));
        f.set_tag(p, tag::EMPTY);
        // C0..C3 are undefined; the host CPU clears C1.
        f.set_c1(false);
        if i.mnemonic() == M::Ffreep {
            f.pop();
        }
        Ok(())
    })
}

/// FINCSTP/FDECSTP: rotate TOP without touching tags.
pub fn fincdec(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    data(cpu, i, |cpu, i| {
        let f = &mut cpu.state.fpu;
        let t = if i.mnemonic() == M::Fincstp {
            f.top() + 1
        } else {
            f.top() + 7
        };
        f.set_top(t);
        f.set_c1(false);
        Ok(())
    })
}

/// FNOP.
pub fn fnop(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    data(cpu, i, |_, _| Ok(()))
}

/// FWAIT: #NM when CR0.TS and CR0.MP, #MF for a pending unmasked x87 exception.
pub fn fwait(cpu: &mut Cpu, _i: &Instruction) -> Res<()> {
    if cpu.state.cr0 & (cr0::TS | cr0::MP) == cr0::TS | cr0::MP {
        return Err(exc(vec::NM));
    }
    if cpu.state.fpu.fsw & sw::ES != 0 {
        return Err(exc(vec::MF));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_layouts() {
        let f = FpuState {
            fcw: 0x037f,
            fsw: 0x3800,
            ftw: 0x3fff,
            fip: 0x1234,
            fcs: 0x8,
            fop: 0x1e8,
            fdp: 0x5678,
            fds: 0x10,
            ..FpuState::default()
        };
        let prot = env_words(
            &f,
            Layout {
                wide: true,
                protected: true,
            },
        );
        assert_eq!(prot[0], (0, 4, 0xffff_037f));
        assert_eq!(prot[4], (16, 4, 0x01e8_0008));
        let real = env_words(
            &f,
            Layout {
                wide: false,
                protected: false,
            },
        );
        // IP linear = 0x8 * 16 + 0x1234 = 0x12b4.
        assert_eq!(real[3], (6, 2, 0x12b4));
        assert_eq!(real[4], (8, 2, 0x1e8));
    }
}

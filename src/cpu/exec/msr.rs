//! MSR access and the fast system-call instructions: RDMSR/WRMSR, SYSCALL/SYSRET,
//! SYSENTER/SYSEXIT, SWAPGS. Unknown MSRs raise #GP(0).

use iced_x86::{Code, Instruction};

use crate::accel::Segment;
use crate::cpu::fault::{gp, ud, Res};
use crate::cpu::flags::{IF, RF, VM};
use crate::cpu::mmu::seg::canonical;
use crate::cpu::state::{apic_base, efer, msr, sreg};
use crate::cpu::Cpu;

impl Cpu {
    /// Read MSR `n`, or `None` if it does not exist.
    pub fn read_msr(&self, n: u32) -> Option<u64> {
        let s = &self.state;
        let m = &s.msr;
        Some(match n {
            msr::TSC => self.tsc(),
            msr::APIC_BASE => m.apic_base,
            msr::SYSENTER_CS => m.sysenter_cs,
            msr::SYSENTER_ESP => m.sysenter_esp,
            msr::SYSENTER_EIP => m.sysenter_eip,
            msr::MISC_ENABLE => m.misc_enable,
            msr::PAT => m.pat,
            msr::EFER => s.efer,
            msr::STAR => m.star,
            msr::LSTAR => m.lstar,
            msr::CSTAR => m.cstar,
            msr::FMASK => m.fmask,
            msr::FS_BASE => s.seg[sreg::FS].base,
            msr::GS_BASE => s.seg[sreg::GS].base,
            msr::KERNEL_GS_BASE => m.kernel_gs_base,
            msr::TSC_AUX => m.tsc_aux,
            // No microcode: the signature reads 0 (Linux writes 0, runs CPUID, reads it back).
            msr::BIOS_SIGN_ID => 0,
            // Platform 0 (Linux's microcode loader reads it on every family-6 Intel CPU, as
            // we present ourselves, and warns when it faults).
            msr::PLATFORM_ID => 0,
            _ => return None,
        })
    }

    /// Write MSR `n`; `false` if it does not exist or `v` is invalid for it.
    pub fn write_msr(&mut self, n: u32, v: u64) -> bool {
        let addr_ok = canonical(v);
        if n == msr::TSC {
            self.set_tsc(v);
            return true;
        }
        let s = &mut self.state;
        match n {
            msr::APIC_BASE => {
                // Base (kept, not moved: the APIC stays at 0xFEE00000), global enable (bit 11);
                // BSP (bit 8) is read only; x2APIC (bit 10) is not offered, reserved bits #GP.
                let valid = apic_base::BASE_MASK | apic_base::ENABLE | apic_base::BSP;
                if v & !valid != 0 {
                    return false;
                }
                s.msr.apic_base = (v & !apic_base::BSP) | (s.msr.apic_base & apic_base::BSP);
            }
            msr::SYSENTER_CS => s.msr.sysenter_cs = v & 0xffff,
            msr::SYSENTER_ESP if addr_ok => s.msr.sysenter_esp = v,
            msr::SYSENTER_EIP if addr_ok => s.msr.sysenter_eip = v,
            msr::MISC_ENABLE => s.msr.misc_enable = v,
            msr::PAT => s.msr.pat = v,
            msr::EFER => {
                if v & !efer::VALID != 0 {
                    return false;
                }
                let paging = s.cr0 & crate::cpu::state::cr0::PG != 0;
                if paging && (v ^ s.efer) & efer::LME != 0 {
                    return false;
                }
                let nx_changed = (v ^ s.efer) & efer::NXE != 0;
                s.efer = (v & !efer::LMA) | (s.efer & efer::LMA);
                if nx_changed {
                    self.tlb.flush_all();
                }
            }
            msr::STAR => s.msr.star = v,
            msr::LSTAR if addr_ok => s.msr.lstar = v,
            msr::CSTAR if addr_ok => s.msr.cstar = v,
            msr::FMASK => s.msr.fmask = v & 0xffff_ffff,
            msr::FS_BASE if addr_ok => s.seg[sreg::FS].base = v,
            msr::GS_BASE if addr_ok => s.seg[sreg::GS].base = v,
            msr::KERNEL_GS_BASE if addr_ok => s.msr.kernel_gs_base = v,
            msr::TSC_AUX => s.msr.tsc_aux = v & 0xffff_ffff,
            msr::BIOS_SIGN_ID => {}
            _ => return false,
        }
        true
    }
}

fn need_cpl0(cpu: &Cpu) -> Res<()> {
    if cpu.state.cpl() != 0 {
        Err(gp(0))
    } else {
        Ok(())
    }
}

/// RDMSR.
pub fn rdmsr(cpu: &mut Cpu, _i: &Instruction) -> Res<()> {
    need_cpl0(cpu)?;
    let v = cpu.read_msr(cpu.state.gpr[1] as u32).ok_or(gp(0))?;
    cpu.state.gpr[0] = v & 0xffff_ffff;
    cpu.state.gpr[2] = v >> 32;
    Ok(())
}

/// WRMSR.
pub fn wrmsr(cpu: &mut Cpu, _i: &Instruction) -> Res<()> {
    need_cpl0(cpu)?;
    let g = &cpu.state.gpr;
    let v = (g[2] & 0xffff_ffff) << 32 | (g[0] & 0xffff_ffff);
    if !cpu.write_msr(g[1] as u32, v) {
        return Err(gp(0));
    }
    cpu.stop_block = true;
    Ok(())
}

/// A flat code or stack segment as SYSCALL/SYSENTER load them.
fn flat(selector: u16, code: bool, long: bool, dpl: u8) -> Segment {
    let mut s = Segment::flat(selector, if code { 0xb } else { 0x3 }, long && code);
    s.dpl = dpl;
    if !code {
        s.db = true;
    }
    s
}

/// SYSCALL (64-bit mode only, as on Intel).
pub fn syscall(cpu: &mut Cpu, _i: &Instruction) -> Res<()> {
    if cpu.state.efer & efer::SCE == 0 || !cpu.state.mode64() {
        return Err(ud());
    }
    let sel = ((cpu.state.msr.star >> 32) & 0xfffc) as u16;
    cpu.state.gpr[1] = cpu.next_rip;
    cpu.state.gpr[11] = cpu.state.flags.get() & !RF;
    let fl = cpu.state.flags.get() & !(cpu.state.msr.fmask | RF);
    cpu.state.flags.set(fl);
    cpu.state.seg[sreg::CS] = flat(sel, true, true, 0);
    cpu.state.seg[sreg::SS] = flat(sel.wrapping_add(8), false, true, 0);
    cpu.next_rip = cpu.state.msr.lstar;
    cpu.stop_block = true;
    Ok(())
}

/// SYSRET (to 64-bit with REX.W, else to compatibility mode).
pub fn sysret(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    if cpu.state.efer & efer::SCE == 0 || !cpu.state.mode64() {
        return Err(ud());
    }
    need_cpl0(cpu)?;
    let base = ((cpu.state.msr.star >> 48) & 0xffff) as u16;
    let to64 = i.code() == Code::Sysretq;
    let rcx = cpu.state.gpr[1];
    if to64 && !canonical(rcx) {
        return Err(gp(0));
    }
    let (cs_sel, target) = if to64 {
        (base.wrapping_add(16), rcx)
    } else {
        (base, rcx & 0xffff_ffff)
    };
    let fl = (cpu.state.gpr[11] & 0x3c_7fd7) | 2;
    cpu.state.flags.set(fl & !(RF | VM));
    cpu.state.seg[sreg::CS] = flat(cs_sel | 3, true, to64, 3);
    cpu.state.seg[sreg::SS] = flat(base.wrapping_add(8) | 3, false, false, 3);
    cpu.next_rip = target;
    cpu.stop_block = true;
    Ok(())
}

/// SYSENTER.
pub fn sysenter(cpu: &mut Cpu, _i: &Instruction) -> Res<()> {
    if !cpu.state.protected() {
        return Err(gp(0));
    }
    let cs = (cpu.state.msr.sysenter_cs & 0xfffc) as u16;
    if cs == 0 {
        return Err(gp(0));
    }
    let long = cpu.state.long_mode();
    cpu.state.flags.set_sys(VM, false);
    cpu.state.flags.set_sys(IF, false);
    cpu.state.flags.set_sys(RF, false);
    cpu.state.seg[sreg::CS] = flat(cs, true, long, 0);
    cpu.state.seg[sreg::SS] = flat(cs.wrapping_add(8), false, false, 0);
    let (sp, ip) = (cpu.state.msr.sysenter_esp, cpu.state.msr.sysenter_eip);
    cpu.state.gpr[4] = if long { sp } else { sp & 0xffff_ffff };
    cpu.next_rip = if long { ip } else { ip & 0xffff_ffff };
    cpu.stop_block = true;
    Ok(())
}

/// SYSEXIT (to 64-bit with REX.W).
pub fn sysexit(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    if !cpu.state.protected() || cpu.state.v86() {
        return Err(gp(0));
    }
    need_cpl0(cpu)?;
    let base = (cpu.state.msr.sysenter_cs & 0xfffc) as u16;
    if base == 0 {
        return Err(gp(0));
    }
    let to64 = i.code() == Code::Sysexitq;
    let (cs, ss) = if to64 {
        (base.wrapping_add(32), base.wrapping_add(40))
    } else {
        (base.wrapping_add(16), base.wrapping_add(24))
    };
    let (sp, ip) = (cpu.state.gpr[1], cpu.state.gpr[2]);
    if to64 && (!canonical(sp) || !canonical(ip)) {
        return Err(gp(0));
    }
    cpu.state.seg[sreg::CS] = flat(cs | 3, true, to64, 3);
    cpu.state.seg[sreg::SS] = flat(ss | 3, false, false, 3);
    cpu.state.gpr[4] = if to64 { sp } else { sp & 0xffff_ffff };
    cpu.next_rip = if to64 { ip } else { ip & 0xffff_ffff };
    cpu.stop_block = true;
    Ok(())
}

/// SWAPGS.
pub fn swapgs(cpu: &mut Cpu, _i: &Instruction) -> Res<()> {
    if !cpu.state.mode64() {
        return Err(ud());
    }
    need_cpl0(cpu)?;
    std::mem::swap(
        &mut cpu.state.msr.kernel_gs_base,
        &mut cpu.state.seg[sreg::GS].base,
    );
    Ok(())
}

//! `CpuState`: the architectural state of the software CPU.
//!
//! It enters from a [`VcpuState`] (boot, reset, snapshot restore) through
//! [`CpuState::from_vcpu_state`] and leaves through [`CpuState::to_vcpu_state`]. The instruction
//! semantics read and write it directly. Flags are lazy (see [`super::flags`]); segment registers
//! carry their hidden descriptor caches as [`Segment`]s.

use crate::accel::{DescriptorTable, Segment, VcpuState};

use super::flags::{Flags, VM};
use super::fpu_state::FpuState;

/// Segment register indexes into [`CpuState::seg`], in instruction-encoding order.
pub mod sreg {
    /// ES.
    pub const ES: usize = 0;
    /// CS.
    pub const CS: usize = 1;
    /// SS.
    pub const SS: usize = 2;
    /// DS.
    pub const DS: usize = 3;
    /// FS.
    pub const FS: usize = 4;
    /// GS.
    pub const GS: usize = 5;
}

/// CR0 bits.
pub mod cr0 {
    /// Protection enable.
    pub const PE: u64 = 1 << 0;
    /// Monitor coprocessor.
    pub const MP: u64 = 1 << 1;
    /// x87 emulation.
    pub const EM: u64 = 1 << 2;
    /// Task switched.
    pub const TS: u64 = 1 << 3;
    /// Extension type (always 1).
    pub const ET: u64 = 1 << 4;
    /// Numeric error.
    pub const NE: u64 = 1 << 5;
    /// Supervisor write protect.
    pub const WP: u64 = 1 << 16;
    /// Alignment mask.
    pub const AM: u64 = 1 << 18;
    /// Not write-through.
    pub const NW: u64 = 1 << 29;
    /// Cache disable.
    pub const CD: u64 = 1 << 30;
    /// Paging.
    pub const PG: u64 = 1 << 31;
}

/// CR4 bits we honour.
pub mod cr4 {
    /// Time-stamp disable (RDTSC privileged).
    pub const TSD: u64 = 1 << 2;
    /// Page size extensions (4 MiB pages in 32-bit paging).
    pub const PSE: u64 = 1 << 4;
    /// Physical address extension.
    pub const PAE: u64 = 1 << 5;
    /// Page global enable.
    pub const PGE: u64 = 1 << 7;
    /// OS supports FXSAVE.
    pub const OSFXSR: u64 = 1 << 9;
    /// OS handles #XM (unmasked SIMD FP exceptions raise #XM instead of #UD).
    pub const OSXMMEXCPT: u64 = 1 << 10;
    /// Bits a guest may set (what CPUID advertises).
    pub const VALID: u64 = (1 << 0)
        | (1 << 1)
        | TSD
        | (1 << 3)
        | PSE
        | PAE
        | (1 << 6)
        | PGE
        | (1 << 8)
        | OSFXSR
        | OSXMMEXCPT;
}

/// IA32_APIC_BASE bits.
pub mod apic_base {
    /// This is the bootstrap processor (read only).
    pub const BSP: u64 = 1 << 8;
    /// The local APIC is globally enabled.
    pub const ENABLE: u64 = 1 << 11;
    /// The APIC page's physical address (bits 39:12 with 40 physical address bits).
    pub const BASE_MASK: u64 = ((1 << crate::cpu::mmu::walk::PHYS_BITS) - 1) & !0xfff;
    /// The value after RESET on an application processor (the BSP adds [`BSP`]).
    pub const RESET_AP: u64 = 0xfee0_0000 | ENABLE;
}

/// EFER bits.
pub mod efer {
    /// SYSCALL enable.
    pub const SCE: u64 = 1 << 0;
    /// Long mode enable.
    pub const LME: u64 = 1 << 8;
    /// Long mode active.
    pub const LMA: u64 = 1 << 10;
    /// No-execute enable.
    pub const NXE: u64 = 1 << 11;
    /// Bits a guest may set.
    pub const VALID: u64 = SCE | LME | LMA | NXE;
}

/// MSR numbers the CPU implements.
pub mod msr {
    /// Time-stamp counter.
    pub const TSC: u32 = 0x10;
    /// APIC base.
    pub const APIC_BASE: u32 = 0x1b;
    /// Platform ID (IA32_PLATFORM_ID): which microcode a family-6 Intel part takes.
    pub const PLATFORM_ID: u32 = 0x17;
    /// Microcode update signature (IA32_BIOS_SIGN_ID).
    pub const BIOS_SIGN_ID: u32 = 0x8b;
    /// SYSENTER CS.
    pub const SYSENTER_CS: u32 = 0x174;
    /// SYSENTER ESP.
    pub const SYSENTER_ESP: u32 = 0x175;
    /// SYSENTER EIP.
    pub const SYSENTER_EIP: u32 = 0x176;
    /// Misc enable.
    pub const MISC_ENABLE: u32 = 0x1a0;
    /// Page attribute table.
    pub const PAT: u32 = 0x277;
    /// Extended feature enables.
    pub const EFER: u32 = 0xc000_0080;
    /// SYSCALL target (legacy) and segment bases.
    pub const STAR: u32 = 0xc000_0081;
    /// SYSCALL target in 64-bit mode.
    pub const LSTAR: u32 = 0xc000_0082;
    /// SYSCALL target in compatibility mode.
    pub const CSTAR: u32 = 0xc000_0083;
    /// SYSCALL RFLAGS mask.
    pub const FMASK: u32 = 0xc000_0084;
    /// FS base.
    pub const FS_BASE: u32 = 0xc000_0100;
    /// GS base.
    pub const GS_BASE: u32 = 0xc000_0101;
    /// SWAPGS source.
    pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
    /// RDTSCP auxiliary value.
    pub const TSC_AUX: u32 = 0xc000_0103;
}

/// The model-specific registers that are not elsewhere in [`CpuState`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Msrs {
    /// IA32_STAR.
    pub star: u64,
    /// IA32_LSTAR.
    pub lstar: u64,
    /// IA32_CSTAR.
    pub cstar: u64,
    /// IA32_FMASK.
    pub fmask: u64,
    /// IA32_KERNEL_GS_BASE.
    pub kernel_gs_base: u64,
    /// IA32_SYSENTER_CS.
    pub sysenter_cs: u64,
    /// IA32_SYSENTER_ESP.
    pub sysenter_esp: u64,
    /// IA32_SYSENTER_EIP.
    pub sysenter_eip: u64,
    /// IA32_APIC_BASE.
    pub apic_base: u64,
    /// IA32_PAT.
    pub pat: u64,
    /// IA32_MISC_ENABLE.
    pub misc_enable: u64,
    /// IA32_TSC_AUX.
    pub tsc_aux: u64,
}

/// The architectural state of one software vCPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuState {
    /// RAX..R15 in encoding order.
    pub gpr: [u64; 16],
    /// Instruction pointer (offset in CS).
    pub rip: u64,
    /// RFLAGS, arithmetic part lazy.
    pub flags: Flags,
    /// ES, CS, SS, DS, FS, GS (see [`sreg`]).
    pub seg: [Segment; 6],
    /// LDTR.
    pub ldtr: Segment,
    /// Task register.
    pub tr: Segment,
    /// GDTR.
    pub gdtr: DescriptorTable,
    /// IDTR.
    pub idtr: DescriptorTable,
    /// CR0.
    pub cr0: u64,
    /// CR2.
    pub cr2: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// CR8 (TPR).
    pub cr8: u64,
    /// IA32_EFER.
    pub efer: u64,
    /// DR0..DR7 (DR4/DR5 alias DR6/DR7).
    pub dr: [u64; 8],
    /// Other MSRs.
    pub msr: Msrs,
    /// Time-stamp counter (advanced by retired instructions).
    pub tsc: u64,
    /// x87 and SSE registers.
    pub fpu: FpuState,
}

impl Default for CpuState {
    fn default() -> Self {
        CpuState::from_vcpu_state(&VcpuState::reset())
    }
}

impl CpuState {
    /// Load from the accelerator-neutral register state.
    pub fn from_vcpu_state(v: &VcpuState) -> Self {
        let mut flags = Flags::default();
        flags.set(v.rflags);
        CpuState {
            gpr: v.gpr,
            rip: v.rip,
            flags,
            seg: [v.es, v.cs, v.ss, v.ds, v.fs, v.gs],
            ldtr: v.ldt,
            tr: v.tr,
            gdtr: v.gdt,
            idtr: v.idt,
            cr0: v.cr0 | super::state::cr0::ET,
            cr2: v.cr2,
            cr3: v.cr3,
            cr4: v.cr4,
            cr8: v.cr8,
            efer: v.efer,
            dr: [0, 0, 0, 0, 0xffff_0ff0, 0x400, 0xffff_0ff0, 0x400],
            msr: Msrs {
                apic_base: v.apic_base,
                pat: 0x0007_0406_0007_0406,
                misc_enable: 1,
                ..Msrs::default()
            },
            tsc: 0,
            fpu: FpuState::default(),
        }
    }

    /// Store into the accelerator-neutral register state; MSRs outside it stay in `self`.
    pub fn to_vcpu_state(&self) -> VcpuState {
        VcpuState {
            gpr: self.gpr,
            rip: self.rip,
            rflags: self.flags.get(),
            cs: self.seg[sreg::CS],
            ds: self.seg[sreg::DS],
            es: self.seg[sreg::ES],
            fs: self.seg[sreg::FS],
            gs: self.seg[sreg::GS],
            ss: self.seg[sreg::SS],
            tr: self.tr,
            ldt: self.ldtr,
            gdt: self.gdtr,
            idt: self.idtr,
            cr0: self.cr0,
            cr2: self.cr2,
            cr3: self.cr3,
            cr4: self.cr4,
            cr8: self.cr8,
            efer: self.efer,
            apic_base: self.msr.apic_base,
        }
    }

    /// Protected mode enabled.
    #[inline]
    pub fn protected(&self) -> bool {
        self.cr0 & cr0::PE != 0
    }

    /// Virtual-8086 mode.
    #[inline]
    pub fn v86(&self) -> bool {
        self.protected() && self.flags.sys(VM)
    }

    /// Long mode active (64-bit or compatibility).
    #[inline]
    pub fn long_mode(&self) -> bool {
        self.efer & efer::LMA != 0
    }

    /// 64-bit mode (long mode with CS.L).
    #[inline]
    pub fn mode64(&self) -> bool {
        self.long_mode() && self.seg[sreg::CS].l
    }

    /// Current privilege level.
    #[inline]
    pub fn cpl(&self) -> u8 {
        if !self.protected() {
            0
        } else if self.v86() {
            3
        } else {
            self.seg[sreg::CS].selector as u8 & 3
        }
    }

    /// Code size in bits (16, 32, 64) for decoding.
    #[inline]
    pub fn bitness(&self) -> u32 {
        if self.mode64() {
            64
        } else if self.protected() && !self.v86() && self.seg[sreg::CS].db {
            32
        } else {
            16
        }
    }

    /// Stack address size in bits (from SS.B, 64 in 64-bit mode).
    #[inline]
    pub fn stack_bits(&self) -> u32 {
        if self.mode64() {
            64
        } else if self.protected() && self.seg[sreg::SS].db {
            32
        } else {
            16
        }
    }

    /// IOPL from RFLAGS.
    #[inline]
    pub fn iopl(&self) -> u8 {
        ((self.flags.get() >> 12) & 3) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vcpu_state_round_trip() {
        let mut v = VcpuState::reset();
        v.gpr = std::array::from_fn(|i| i as u64 * 0x1111);
        v.rip = 0x1234;
        v.rflags = 0x2 | 0x200 | 0x1 | 0x40;
        v.cr0 = 0x8000_0011;
        v.cr3 = 0x5000;
        v.cr4 = 0x20;
        v.efer = 0x500;
        v.cs = Segment::flat(8, 0xb, true);
        v.ss = Segment::flat(0x10, 0x3, false);
        v.gdt = DescriptorTable {
            base: 0x1000,
            limit: 0x27,
        };
        let s = CpuState::from_vcpu_state(&v);
        assert_eq!(s.to_vcpu_state(), v);
        assert!(s.mode64());
        assert_eq!(s.bitness(), 64);
        let r = CpuState::default();
        assert_eq!(r.to_vcpu_state(), VcpuState::reset());
        assert_eq!(r.bitness(), 16);
    }
}

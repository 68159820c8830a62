//! One KVM vCPU: its setup (CPUID, MSRs, FPU, LAPIC wiring), the `KVM_RUN` loop, and the crash
//! report when KVM gives up on the guest.
//!
//! With the in-kernel irqchip, KVM delivers interrupts and wakes HLT by itself. Without it
//! (`kernel-irqchip=off`), the vCPU carries a [`UserspaceIrq`] that injects the machine's APIC
//! interrupts before each entry, and a HLT comes back to the machine as [`VcpuExit::Halt`].

use std::sync::Arc;

use kvm_bindings::{kvm_fpu, kvm_msr_entry, kvm_run, CpuId, Msrs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress};

use super::debug;
use super::exit::{self, Next};
use super::kick::{self, KvmKicker};
use super::regs;
use super::setup_err;
use super::userspace_irq::{self, UserspaceIrq};
use crate::accel::{
    AccelError, CrashReport, DebugConfig, ExitReason, FpuRegs, InterruptSource, Kicker, Vcpu,
    VcpuContext, VcpuExit, VcpuState,
};

/// MSRs given a defined value at creation, as a BIOS would leave them.
const BOOT_MSRS: &[(u32, u64)] = &[
    (0x174, 0),             // IA32_SYSENTER_CS
    (0x175, 0),             // IA32_SYSENTER_ESP
    (0x176, 0),             // IA32_SYSENTER_EIP
    (0xc000_0081, 0),       // STAR
    (0xc000_0082, 0),       // LSTAR
    (0xc000_0083, 0),       // CSTAR
    (0xc000_0084, 0),       // SFMASK
    (0xc000_0102, 0),       // KERNEL_GS_BASE
    (0x10, 0),              // IA32_TSC: all vCPUs start in sync
    (0x1a0, 1),             // IA32_MISC_ENABLE: fast strings
    (0x2ff, (1 << 11) | 6), // MTRRdefType: MTRRs on, default write-back
];

/// LAPIC register offsets and LVT delivery modes for the virtual-wire setup.
const APIC_LVT_LINT0: usize = 0x350;
const APIC_LVT_LINT1: usize = 0x360;
const APIC_MODE_EXTINT: u32 = 0x700;
const APIC_MODE_NMI: u32 = 0x400;

/// `kvm_run.internal.suberror` names.
fn internal_suberror(code: u32) -> &'static str {
    match code {
        1 => "emulation failure",
        2 => "simultaneous exceptions",
        3 => "event delivery failed",
        4 => "unexpected exit reason",
        _ => "unknown suberror",
    }
}

/// A vCPU backed by a KVM vCPU fd.
pub struct KvmVcpu {
    id: usize,
    fd: VcpuFd,
    ctx: VcpuContext,
    kicker: Arc<KvmKicker>,
    bound: bool,
    /// The machine's local APIC for this vCPU, without an in-kernel irqchip.
    irq: Option<UserspaceIrq>,
}

impl KvmVcpu {
    /// Configure a freshly created vCPU fd. `interrupts` is the vCPU's input from the machine's
    /// userspace interrupt controllers when the VM has no in-kernel irqchip (None: KVM's).
    pub fn new(
        id: usize,
        fd: VcpuFd,
        ctx: VcpuContext,
        cpuid: &CpuId,
        interrupts: Option<Arc<dyn InterruptSource>>,
    ) -> Result<Self, AccelError> {
        kick::install_handler().map_err(|source| AccelError::Setup {
            what: "kick signal handler".into(),
            source,
        })?;
        fd.set_cpuid2(cpuid).map_err(setup_err("KVM_SET_CPUID2"))?;
        let entries: Vec<kvm_msr_entry> = BOOT_MSRS
            .iter()
            .map(|&(index, data)| kvm_msr_entry {
                index,
                data,
                ..Default::default()
            })
            .collect();
        let msrs = Msrs::from_entries(&entries)
            .map_err(|e| AccelError::Other(format!("MSR list: {e:?}")))?;
        fd.set_msrs(&msrs).map_err(setup_err("KVM_SET_MSRS"))?;
        let fpu = kvm_fpu {
            fcw: 0x37f,
            mxcsr: 0x1f80,
            ..Default::default()
        };
        fd.set_fpu(&fpu).map_err(setup_err("KVM_SET_FPU"))?;
        if interrupts.is_some() {
            // No in-kernel APIC to reset the APIC base MSR (the machine's APIC sits at the
            // address it names; the guest reads it to find the APIC).
            let mut sregs = fd.get_sregs().map_err(setup_err("KVM_GET_SREGS"))?;
            sregs.apic_base = userspace_irq::reset_apic_base(id);
            fd.set_sregs(&sregs).map_err(setup_err("KVM_SET_SREGS"))?;
        } else {
            // Virtual wire: the PIC's INTR reaches the CPU through LINT0, NMIs through LINT1.
            let mut lapic = fd.get_lapic().map_err(setup_err("KVM_GET_LAPIC"))?;
            set_lapic_reg(&mut lapic.regs, APIC_LVT_LINT0, APIC_MODE_EXTINT);
            set_lapic_reg(&mut lapic.regs, APIC_LVT_LINT1, APIC_MODE_NMI);
            fd.set_lapic(&lapic).map_err(setup_err("KVM_SET_LAPIC"))?;
        }
        Ok(KvmVcpu {
            id,
            fd,
            ctx,
            kicker: Arc::new(KvmKicker::default()),
            bound: false,
            irq: interrupts.map(|source| UserspaceIrq::new(id, source)),
        })
    }

    /// A report of where the guest stopped, with the instruction at RIP.
    fn crash(&mut self, reason: String) -> AccelError {
        AccelError::Guest(Box::new(self.report(&reason)))
    }

    /// Up to 15 bytes at CS:RIP, through KVM's own page walk when paging is on.
    fn code_bytes(&self, s: &VcpuState) -> Vec<u8> {
        let linear = s.cs.base.wrapping_add(s.rip);
        let phys = if s.cr0 & (1 << 31) != 0 {
            match self.fd.translate_gva(linear) {
                Ok(t) if t.valid != 0 => t.physical_address,
                _ => return Vec::new(),
            }
        } else {
            linear & 0xffff_ffff
        };
        let mut out = Vec::with_capacity(15);
        for i in 0..15u64 {
            // Stop at the page end: the next page may map elsewhere.
            if i > 0 && (phys + i) & 0xfff == 0 {
                break;
            }
            match self.ctx.ram.read_obj::<u8>(GuestAddress(phys + i)) {
                Ok(b) => out.push(b),
                Err(_) => break,
            }
        }
        out
    }
}

fn set_lapic_reg(regs: &mut [std::os::raw::c_char], offset: usize, mode: u32) {
    let mut v = [0u8; 4];
    for (i, b) in v.iter_mut().enumerate() {
        *b = regs[offset + i] as u8;
    }
    let value = (u32::from_le_bytes(v) & !0x700) | mode;
    for (i, b) in value.to_le_bytes().iter().enumerate() {
        regs[offset + i] = *b as std::os::raw::c_char;
    }
}

impl Vcpu for KvmVcpu {
    fn id(&self) -> usize {
        self.id
    }

    fn run(&mut self) -> Result<VcpuExit, AccelError> {
        if !self.bound {
            let run: &mut kvm_run = self.fd.get_kvm_run();
            kick::bind_thread(&mut run.immediate_exit);
            self.kicker.set_thread();
            self.bound = true;
        }
        loop {
            // Clear before checking the flag: a kick after this point is seen either by the
            // check or by KVM_RUN through immediate_exit.
            self.fd.set_kvm_immediate_exit(0);
            if self.kicker.take() {
                return Ok(VcpuExit::Interrupted);
            }
            if let Some(irq) = &mut self.irq {
                if !irq.before_entry(self.id, &mut self.fd)? {
                    // Halted or waiting for STARTUP: the machine sleeps until a wake-up.
                    return Ok(VcpuExit::Halt);
                }
            }
            let run_ptr: *const kvm_run = self.fd.get_kvm_run();
            let result = self.fd.run();
            if let Some(irq) = &mut self.irq {
                irq.exited();
            }
            let next = match result {
                Ok(e) => {
                    // SAFETY: `run_ptr` points at the vCPU's kvm_run mapping, alive as long as
                    // `self.fd`; KVM_RUN has returned, so the kernel is not writing it, and the
                    // `io` union member is the one KVM filled for an I/O exit (for other exits
                    // the value is not used).
                    let io_size = unsafe { (*run_ptr).__bindgen_anon_1.io.size } as usize;
                    exit::handle(e, io_size, self.id, &*self.ctx.io, &self.ctx.stats)
                }
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    self.ctx.stats.count(self.id, ExitReason::Interrupted);
                    Next::Return(VcpuExit::Interrupted)
                }
                Err(e) => return Err(self.crash(format!("KVM_RUN failed: {e}"))),
            };
            match next {
                Next::Resume => {}
                // Without the in-kernel APIC, look at ours first: an interrupt already pending
                // ends the HLT at once; otherwise the next pass returns Halt without entering.
                Next::Return(VcpuExit::Halt) => match &mut self.irq {
                    Some(irq) => irq.halt(),
                    None => return Ok(VcpuExit::Halt),
                },
                Next::Return(exit) => return Ok(exit),
                Next::Fatal(mut reason) => {
                    if reason == "KVM internal error" {
                        // SAFETY: as above; the `internal` member is valid for this exit.
                        let sub = unsafe { (*run_ptr).__bindgen_anon_1.internal.suberror };
                        reason = format!("KVM internal error ({})", internal_suberror(sub));
                    }
                    return Err(self.crash(reason));
                }
            }
        }
    }

    fn state(&mut self) -> Result<VcpuState, AccelError> {
        let r = self.fd.get_regs().map_err(setup_err("KVM_GET_REGS"))?;
        let s = self.fd.get_sregs().map_err(setup_err("KVM_GET_SREGS"))?;
        Ok(regs::state_from_kvm(&r, &s))
    }

    fn set_state(&mut self, state: &VcpuState) -> Result<(), AccelError> {
        let base = self.fd.get_sregs().map_err(setup_err("KVM_GET_SREGS"))?;
        self.fd
            .set_sregs(&regs::sregs_to_kvm(state, &base))
            .map_err(setup_err("KVM_SET_SREGS"))?;
        self.fd
            .set_regs(&regs::regs_to_kvm(state))
            .map_err(setup_err("KVM_SET_REGS"))?;
        if let Some(irq) = &mut self.irq {
            irq.state_was_set();
        }
        Ok(())
    }

    fn kicker(&self) -> Arc<dyn Kicker> {
        self.kicker.clone()
    }

    fn set_debug(&mut self, config: &DebugConfig) -> Result<(), AccelError> {
        self.fd
            .set_guest_debug(&debug::guest_debug(config))
            .map_err(setup_err("KVM_SET_GUEST_DEBUG"))
    }

    fn fpu(&mut self) -> Result<FpuRegs, AccelError> {
        let f = self.fd.get_fpu().map_err(setup_err("KVM_GET_FPU"))?;
        Ok(debug::fpu_from_kvm(&f))
    }

    fn set_fpu(&mut self, fpu: &FpuRegs) -> Result<(), AccelError> {
        self.fd
            .set_fpu(&debug::fpu_to_kvm(fpu))
            .map_err(setup_err("KVM_SET_FPU"))
    }

    fn report(&mut self, reason: &str) -> CrashReport {
        let state = self.state().ok();
        let bytes = state
            .as_ref()
            .map(|s| self.code_bytes(s))
            .unwrap_or_default();
        CrashReport {
            reason: reason.to_string(),
            vcpu: self.id,
            state,
            bytes,
        }
    }
}

impl Drop for KvmVcpu {
    fn drop(&mut self) {
        if self.bound {
            kick::unbind_thread();
        }
    }
}

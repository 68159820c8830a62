//! Interrupt delivery to a KVM vCPU whose interrupt controllers are the machine's userspace ones
//! (`-machine kernel-irqchip=off`): without an in-kernel local APIC, KVM neither accepts an
//! interrupt by itself nor wakes a halted vCPU, so this module does what the APIC's wiring to
//! the CPU core would.
//!
//! Data enters from the vCPU's [`InterruptSource`] (its local APIC on the machine's APIC bus,
//! which falls through to the 8259 for ExtINT) and from `kvm_run` after every exit
//! (`ready_for_interrupt_injection`, `if_flag`). It leaves, before each `KVM_RUN`, as a
//! `KVM_INTERRUPT` with one vector (the INTA cycle happens here, in userspace), a `KVM_NMI`, a
//! register reset for INIT and STARTUP, and `kvm_run.request_interrupt_window`, which makes KVM
//! exit (`KVM_EXIT_IRQ_WINDOW_OPEN`) as soon as the guest can take the interrupt it is not ready
//! for yet. What to do is decided by [`decide`], a pure function tested without `/dev/kvm`.

use std::sync::Arc;

use kvm_bindings::{kvm_fpu, kvm_interrupt, kvm_run, KVMIO};
use kvm_ioctls::VcpuFd;
use vmm_sys_util::ioctl::ioctl_with_ref;
use vmm_sys_util::ioctl_iow_nr;

use super::{regs, setup_err};
use crate::accel::{AccelError, CpuSignal, InterruptSource, Segment, VcpuState};

// `KVM_INTERRUPT`: queue an external interrupt vector (only without an in-kernel irqchip).
// kvm-ioctls 0.25 has no wrapper for it.
ioctl_iow_nr!(KVM_INTERRUPT, KVMIO, 0x86, kvm_interrupt);

/// `IA32_APIC_BASE` after RESET: the APIC at 0xFEE00000, globally enabled (bit 11).
const APIC_BASE_RESET: u64 = 0xfee0_0800;
/// `IA32_APIC_BASE` bit 8: this is the bootstrap processor.
const APIC_BASE_BSP: u64 = 1 << 8;

/// The `IA32_APIC_BASE` value vCPU `id` starts with. KVM keeps the MSR for a vCPU without an
/// in-kernel APIC but does not reset it, so the machine must.
pub fn reset_apic_base(id: usize) -> u64 {
    APIC_BASE_RESET | if id == 0 { APIC_BASE_BSP } else { 0 }
}

/// What to do before the next `KVM_RUN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Acknowledge the interrupt and inject its vector, then enter the guest.
    Inject,
    /// Enter the guest; with `window`, ask KVM to exit once it can take an interrupt.
    Enter {
        /// Set `request_interrupt_window`.
        window: bool,
    },
    /// The vCPU is halted and nothing it accepts is pending: stay out of the guest.
    StayHalted,
}

/// Decide the next entry: `pending` is INTR from the local APIC, `accepts` whether the guest
/// can take it now (`ready_for_interrupt_injection` and `if_flag` from the last exit),
/// `halted` whether the guest's last instruction was a HLT no interrupt has ended yet.
pub fn decide(pending: bool, accepts: bool, halted: bool) -> Entry {
    match (pending, accepts, halted) {
        (true, true, _) => Entry::Inject,
        // HLT with IF = 0 (or nothing pending) is left only by an NMI, INIT or a debugger.
        (_, _, true) => Entry::StayHalted,
        (pending, _, false) => Entry::Enter { window: pending },
    }
}

/// The userspace side of one vCPU's interrupt input.
pub struct UserspaceIrq {
    source: Arc<dyn InterruptSource>,
    /// The guest executed HLT and no interrupt has ended it yet: `KVM_RUN` would resume after
    /// the HLT, so the vCPU stays out of the guest until something wakes it.
    halted: bool,
    /// Wait-for-SIPI: an application processor from RESET, and after an INIT. Nothing runs
    /// until a STARTUP message arrives.
    waiting_for_sipi: bool,
    /// The registers were replaced since the last exit, so `kvm_run`'s `if_flag` and
    /// `ready_for_interrupt_injection` describe the old ones: no injection before the next
    /// exit (KVM delivers an injected vector even with IF = 0).
    flags_stale: bool,
}

impl UserspaceIrq {
    /// The input of vCPU `id`; application processors start waiting for STARTUP.
    pub fn new(id: usize, source: Arc<dyn InterruptSource>) -> Self {
        UserspaceIrq {
            source,
            halted: false,
            waiting_for_sipi: id != 0,
            flags_stale: true,
        }
    }

    /// `KVM_RUN` returned: `kvm_run` describes the current registers again.
    pub fn exited(&mut self) {
        self.flags_stale = false;
    }

    /// The guest executed HLT (a `KVM_EXIT_HLT`).
    pub fn halt(&mut self) {
        self.halted = true;
    }

    /// The registers were set from outside (boot entry, debugger, snapshot): run from them.
    pub fn state_was_set(&mut self) {
        self.halted = false;
        self.waiting_for_sipi = false;
        self.flags_stale = true;
    }

    /// Act on pending INIT / STARTUP / NMI messages and INTR before `KVM_RUN`. Returns false
    /// when the vCPU must not enter the guest now (halted, or waiting for STARTUP); the caller
    /// then reports a halt and the machine waits for a wake-up.
    pub fn before_entry(&mut self, id: usize, fd: &mut VcpuFd) -> Result<bool, AccelError> {
        while let Some(signal) = self.source.take_signal() {
            match signal {
                CpuSignal::Init if id == 0 => {
                    // As the software CPU: restarting the boot CPU would restart the firmware.
                    log::debug!("INIT to the boot CPU ignored");
                }
                CpuSignal::Init => {
                    reset_registers(fd, None)?;
                    self.waiting_for_sipi = true;
                    self.halted = false;
                    self.flags_stale = true;
                }
                CpuSignal::Startup(vector) if self.waiting_for_sipi => {
                    reset_registers(fd, Some(vector))?;
                    self.waiting_for_sipi = false;
                    self.halted = false;
                    self.flags_stale = true;
                }
                // A STARTUP to a CPU that is not waiting for one is ignored, as on hardware.
                CpuSignal::Startup(_) => {}
                CpuSignal::Nmi if self.waiting_for_sipi => {}
                CpuSignal::Nmi => {
                    fd.nmi().map_err(setup_err("KVM_NMI"))?;
                    self.halted = false;
                }
            }
        }
        if self.waiting_for_sipi {
            return Ok(false);
        }
        let run: &mut kvm_run = fd.get_kvm_run();
        let accepts =
            !self.flags_stale && run.ready_for_interrupt_injection != 0 && run.if_flag != 0;
        let mut pending = self.source.pending();
        match decide(pending, accepts, self.halted) {
            Entry::StayHalted => return Ok(false),
            Entry::Inject => {
                let vector = self.source.acknowledge();
                inject(fd, vector)?;
                self.halted = false;
                // One vector per entry: KVM holds it until the guest takes it. Another one
                // waits for the next window.
                pending = self.source.pending();
            }
            Entry::Enter { .. } => {}
        }
        fd.get_kvm_run().request_interrupt_window = u8::from(pending);
        Ok(true)
    }
}

/// `KVM_INTERRUPT`: queue `vector` for delivery at the next entry.
fn inject(fd: &VcpuFd, vector: u8) -> Result<(), AccelError> {
    let irq = kvm_interrupt {
        irq: u32::from(vector),
    };
    // SAFETY: KVM_INTERRUPT reads one `kvm_interrupt` through the pointer, which points at
    // `irq`, alive for the call; `fd` is an open vCPU fd.
    let ret = unsafe { ioctl_with_ref(fd, KVM_INTERRUPT(), &irq) };
    if ret < 0 {
        return Err(AccelError::Setup {
            what: format!("KVM_INTERRUPT vector {vector:#x}"),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// INIT (`startup` None) or STARTUP with its vector: the registers take their RESET values
/// (the APIC base MSR stays), and STARTUP leaves the CPU in real mode at `vector:0000`.
fn reset_registers(fd: &VcpuFd, startup: Option<u8>) -> Result<(), AccelError> {
    let mut base = fd.get_sregs().map_err(setup_err("KVM_GET_SREGS"))?;
    let mut s = VcpuState::reset();
    s.apic_base = base.apic_base;
    if let Some(vector) = startup {
        s.cs = Segment::real(u16::from(vector) << 8, 0xb);
        s.rip = 0;
    }
    // An interrupt KVM still held for the old context does not survive the reset.
    base.interrupt_bitmap = [0; 4];
    fd.set_sregs(&regs::sregs_to_kvm(&s, &base))
        .map_err(setup_err("KVM_SET_SREGS"))?;
    fd.set_regs(&regs::regs_to_kvm(&s))
        .map_err(setup_err("KVM_SET_REGS"))?;
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    fd.set_fpu(&fpu).map_err(setup_err("KVM_SET_FPU"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injects_only_when_the_guest_accepts() {
        assert_eq!(decide(true, true, false), Entry::Inject);
        assert_eq!(decide(true, false, false), Entry::Enter { window: true });
        assert_eq!(decide(false, true, false), Entry::Enter { window: false });
    }

    #[test]
    fn a_halted_cpu_wakes_only_for_an_interrupt_it_takes() {
        assert_eq!(decide(true, true, true), Entry::Inject);
        assert_eq!(decide(false, true, true), Entry::StayHalted);
        // HLT with IF = 0: the pending interrupt does not end it.
        assert_eq!(decide(true, false, true), Entry::StayHalted);
    }

    #[test]
    fn only_the_boot_cpu_has_the_bsp_flag() {
        assert_eq!(reset_apic_base(0), 0xfee0_0900);
        assert_eq!(reset_apic_base(1), 0xfee0_0800);
    }
}

//! The accelerator seam: the one language the machine, the KVM backend and the software CPU speak.
//!
//! Data enters an accelerator as guest memory (a shared [`GuestMemoryMmap`]), an initial
//! [`VcpuState`] per vCPU and an [`IoHandler`] that serves port I/O and MMIO. It leaves as a
//! [`VcpuExit`] from [`Vcpu::run`] (only what the machine must decide: I/O is served inside `run`),
//! counters in [`ExitStats`], and an [`AccelError`] carrying a [`CrashReport`] when the guest or the
//! accelerator cannot go on.
//!
//! Every layer may import this module; it imports nothing from `cpu/`, `devices/` or `machine/`.

pub(crate) mod code_watch;
mod debug;
pub mod kvm;
mod report;
mod state;
mod stats;
pub mod tcg;

use std::sync::Arc;

pub use code_watch::CodeWatch;
pub use debug::{DebugConfig, FpuRegs, MAX_HW_BREAKPOINTS};
pub use report::CrashReport;
pub use state::{reg, DescriptorTable, Segment, VcpuState};
pub use stats::{ExitObserver, ExitReason, ExitStats};
use vm_memory::{GuestMemoryBackend as _, GuestMemoryMmap};

/// Guest RAM as both accelerators see it: one `vm-memory` mapping shared by every vCPU thread.
pub type GuestRam = GuestMemoryMmap<()>;

/// Serves the guest's port I/O and MMIO. The machine implements it once over its buses; the KVM
/// backend calls it on `KVM_EXIT_IO`/`KVM_EXIT_MMIO`, the software CPU in the middle of the
/// instruction that touched the port or page.
pub trait IoHandler: Send + Sync {
    /// An `IN` of `data.len()` bytes (1, 2 or 4) from `port`.
    fn pio_read(&self, vcpu: usize, port: u16, data: &mut [u8]);
    /// An `OUT` of `data.len()` bytes to `port`.
    fn pio_write(&self, vcpu: usize, port: u16, data: &[u8]);
    /// A read of `data.len()` bytes at guest-physical `addr` that is not RAM.
    fn mmio_read(&self, vcpu: usize, addr: u64, data: &mut [u8]);
    /// A write of `data.len()` bytes at guest-physical `addr` that is not RAM.
    fn mmio_write(&self, vcpu: usize, addr: u64, data: &[u8]);
}

/// Raises and lowers interrupt lines (GSIs). Under KVM the lines end in the in-kernel irqchip;
/// under the software CPU (and KVM with `kernel-irqchip=off`) in our PIC/IOAPIC.
pub trait IrqChip: Send + Sync {
    /// Drive line `gsi` to `level` (edge-triggered ISA lines are pulsed: high then low).
    fn set_irq(&self, gsi: u32, level: bool);
}

/// The INTR/INTA pair of an 8259-style interrupt controller, as a CPU without a local APIC (or
/// with LINT0 in ExtINT mode) sees it. The machine implements it over its local APICs (and the
/// PIC behind them); the software CPU asks it at instruction-block boundaries, a KVM vCPU without
/// the in-kernel irqchip before each `KVM_RUN`.
pub trait InterruptSource: Send + Sync {
    /// Whether INTR is asserted.
    fn pending(&self) -> bool;
    /// The interrupt-acknowledge cycle: the vector to deliver (a spurious vector if the request
    /// went away).
    fn acknowledge(&self) -> u8;
    /// The next non-vectored message for this CPU (INIT, STARTUP, NMI), taken once. Sources
    /// without a local APIC have none.
    fn take_signal(&self) -> Option<CpuSignal> {
        None
    }
}

/// A message a local APIC hands its CPU outside the INTR/INTA path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuSignal {
    /// INIT: the CPU resets; an application processor then waits for STARTUP.
    Init,
    /// STARTUP (SIPI) with this vector: a waiting AP starts in real mode at `vector * 0x1000`.
    Startup(u8),
    /// A non-maskable interrupt.
    Nmi,
}

/// The machine's time for a software CPU's TSC: nanoseconds since the machine's clock origin
/// (the TSC then runs at 1 GHz). Monotonic.
pub type TimeSource = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Why [`Vcpu::run`] returned: only what the machine must decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VcpuExit {
    /// The vCPU executed HLT and nothing can wake it inside the accelerator: the machine waits
    /// for an interrupt (or a kick) and calls `run` again.
    Halt,
    /// The vCPU was kicked out of `run` (machine stop, pause, a request to serve).
    Interrupted,
    /// A debug event (breakpoint, single step) for the gdbstub.
    Debug,
    /// The CPU shut down (triple fault). A PC resets; with `-no-reboot` the machine exits.
    Shutdown,
    /// The vCPU asked for a machine reset.
    Reset,
}

/// Errors an accelerator reports. The guest-side ones carry a [`CrashReport`].
#[derive(Debug, thiserror::Error)]
pub enum AccelError {
    /// The accelerator cannot be opened or set up.
    #[error("{what}: {source}")]
    Setup {
        /// What was being set up.
        what: String,
        /// The OS error behind it.
        source: std::io::Error,
    },
    /// The guest hit something the accelerator cannot run; the report says where.
    #[error("{0}")]
    Guest(Box<CrashReport>),
    /// Anything else the accelerator cannot continue from.
    #[error("{0}")]
    Other(String),
}

/// Lets another thread force a vCPU out of [`Vcpu::run`] promptly.
pub trait Kicker: Send + Sync {
    /// Make the vCPU return [`VcpuExit::Interrupted`] as soon as it can (or at its next entry).
    fn kick(&self);
}

/// One virtual CPU. It lives on its own thread; the machine's run loop drives it.
pub trait Vcpu: Send {
    /// The vCPU index (0 is the bootstrap processor).
    fn id(&self) -> usize;
    /// Run guest code until something the machine must decide.
    fn run(&mut self) -> Result<VcpuExit, AccelError>;
    /// The architectural register state.
    fn state(&mut self) -> Result<VcpuState, AccelError>;
    /// Replace the architectural register state (boot entry, reset, snapshot restore).
    fn set_state(&mut self, state: &VcpuState) -> Result<(), AccelError>;
    /// A handle other threads use to kick this vCPU.
    fn kicker(&self) -> Arc<dyn Kicker>;
    /// A report of where this vCPU is now (registers and, where the accelerator can read them,
    /// the instruction bytes at RIP), for a stop with `reason`.
    fn report(&mut self, reason: &str) -> CrashReport {
        CrashReport {
            reason: reason.to_string(),
            vcpu: self.id(),
            state: self.state().ok(),
            bytes: Vec::new(),
        }
    }
    /// Arm (or, with an inactive config, disarm) breakpoints and single-stepping: `run()`
    /// then returns [`VcpuExit::Debug`] at a breakpoint or after one instruction.
    fn set_debug(&mut self, config: &DebugConfig) -> Result<(), AccelError> {
        let _ = config;
        Err(AccelError::Other("this vCPU cannot be debugged".into()))
    }
    /// The x87/SSE registers (for the debugger).
    fn fpu(&mut self) -> Result<FpuRegs, AccelError> {
        Err(AccelError::Other(
            "this vCPU does not expose its FPU".into(),
        ))
    }
    /// Replace the x87/SSE registers (for the debugger).
    fn set_fpu(&mut self, fpu: &FpuRegs) -> Result<(), AccelError> {
        let _ = fpu;
        Err(AccelError::Other(
            "this vCPU does not expose its FPU".into(),
        ))
    }
}

/// Everything a vCPU needs from the machine when it is created.
#[derive(Clone)]
pub struct VcpuContext {
    /// Guest RAM.
    pub ram: Arc<GuestRam>,
    /// Port I/O and MMIO.
    pub io: Arc<dyn IoHandler>,
    /// The shared exit counters.
    pub stats: Arc<ExitStats>,
    /// Number of vCPUs in the machine (CPUID topology, APIC IDs).
    pub cpu_count: usize,
    /// Which guest frames hold translated code (the software CPU's; KVM ignores it).
    pub code: Arc<CodeWatch>,
}

impl VcpuContext {
    /// A context for `cpu_count` vCPUs with a code watch of their own (tests, tools: no
    /// device writes guest RAM behind their back).
    pub fn new(
        ram: Arc<GuestRam>,
        io: Arc<dyn IoHandler>,
        stats: Arc<ExitStats>,
        cpu_count: usize,
    ) -> Self {
        let code = Arc::new(CodeWatch::new(ram.last_addr().0, cpu_count));
        VcpuContext {
            ram,
            io,
            stats,
            cpu_count,
            code,
        }
    }
}

/// A way to run vCPUs: KVM or the software CPU.
pub trait Accelerator: Send + Sync {
    /// Short name as spelled on the command line (`kvm`, `tcg`).
    fn name(&self) -> &'static str;
    /// Make guest RAM visible to the accelerator (KVM registers the regions).
    fn map_ram(&self, ram: &Arc<GuestRam>) -> Result<(), AccelError>;
    /// The interrupt controller devices raise their lines on.
    fn irq_chip(&self) -> Arc<dyn IrqChip>;
    /// Connect vCPU `id`'s interrupt input to the machine's userspace interrupt controllers
    /// (its local APIC, which falls through to the 8259 for ExtINT), before `create_vcpu(id)`.
    /// An accelerator whose interrupt controllers are its own (KVM's in-kernel irqchip)
    /// refuses.
    fn set_interrupt_source(
        &self,
        id: usize,
        source: Arc<dyn InterruptSource>,
    ) -> Result<(), AccelError>;
    /// Create vCPU `id`, ready for [`Vcpu::set_state`].
    fn create_vcpu(&self, id: usize, ctx: VcpuContext) -> Result<Box<dyn Vcpu>, AccelError>;
}

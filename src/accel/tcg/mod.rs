//! The software-CPU accelerator: drives `crate::cpu` behind the `Accelerator`/`Vcpu` seam.
//!
//! [`Tcg`] keeps the guest RAM it was given and hands each [`TcgVcpu`] a [`Cpu`] over it.
//! `run()` executes guest code until HLT (→ `Halt`), a kick (→ `Interrupted`), a triple fault
//! (→ `Shutdown`) or a fatal condition (→ `AccelError::Guest` with the instruction bytes).
//! Interrupts reach each CPU through the [`InterruptSource`] the machine gives it
//! ([`Tcg::set_interrupt_source_for`]: its local APIC, which falls through to the 8259 for
//! ExtINT): vectors at slice boundaries through the INTA cycle, and INIT / STARTUP / NMI as
//! [`CpuSignal`]s. An application processor waits for INIT and STARTUP before it runs (it
//! reports `Halt` until then). The TSC follows the machine's clock when one is given
//! ([`Tcg::set_time_source`]), else it counts retired instructions. Under `-icount`
//! ([`Tcg::set_icount`], `icount.rs`) each `run()` retires at most the budget the machine's
//! deterministic loop grants, then returns. Interrupt lines raised on
//! [`TcgIrqChip`] (the accelerator's own `irq_chip`, unused by the PC machine, which brings its
//! PIC and IOAPIC) are only recorded.

mod icount;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub use icount::IcountBudget;

use super::{
    AccelError, Accelerator, CpuSignal, CrashReport, DebugConfig, ExitReason, FpuRegs, GuestRam,
    InterruptSource, IrqChip, Kicker, Segment, TimeSource, Vcpu, VcpuContext, VcpuExit, VcpuState,
};
use crate::cpu::fpu_state::{FpuState, F80};
use crate::cpu::state::{apic_base, CpuState};
use crate::cpu::trace::{TraceMask, TraceSink};
use crate::cpu::{Cpu, CpuExit};

/// The software-CPU accelerator.
#[derive(Default)]
pub struct Tcg {
    ram: Mutex<Option<Arc<GuestRam>>>,
    irq: Arc<TcgIrqChip>,
    /// Each vCPU's interrupt input, by vCPU index.
    interrupts: Mutex<Vec<Option<Arc<dyn InterruptSource>>>>,
    /// The machine's clock for the TSC.
    time: Mutex<Option<TimeSource>>,
    /// `-d in_asm,int,cpu`: what every vCPU traces, and where.
    trace: Mutex<Option<(TraceMask, Arc<dyn TraceSink>)>>,
    /// `-icount`: the instruction budget the machine's loop grants each `run()`.
    icount: Mutex<Option<Arc<IcountBudget>>>,
    /// `-accel tcg,jit=off`: vCPUs only interpret.
    interpret_only: AtomicBool,
}

impl Tcg {
    /// A new accelerator with no RAM mapped yet.
    pub fn new() -> Self {
        Tcg::default()
    }

    /// Translate hot blocks to host code in the vCPUs created from now on (the default), or
    /// only interpret.
    pub fn set_jit(&self, on: bool) {
        self.interpret_only.store(!on, Ordering::Relaxed);
    }

    /// Connect the machine's interrupt controller to vCPU 0 (before `create_vcpu`). Without
    /// one, vCPUs see no external interrupts.
    pub fn set_interrupt_source(&self, source: Arc<dyn InterruptSource>) {
        self.set_interrupt_source_for(0, source);
    }

    /// Connect vCPU `id`'s interrupt input (its local APIC) before `create_vcpu(id)`.
    pub fn set_interrupt_source_for(&self, id: usize, source: Arc<dyn InterruptSource>) {
        if let Ok(mut v) = self.interrupts.lock() {
            if v.len() <= id {
                v.resize(id + 1, None);
            }
            v[id] = Some(source);
        }
    }

    /// Drive the TSC of vCPUs created from now on from `time` (the machine's clock).
    pub fn set_time_source(&self, time: TimeSource) {
        if let Ok(mut slot) = self.time.lock() {
            *slot = Some(time);
        }
    }

    /// Put every vCPU created from now on in `-icount` mode: each `run()` retires at most
    /// `budget`'s instructions (see [`IcountBudget`]) and the shared instruction counters are
    /// exact at every block boundary, so an instruction-count clock can read them.
    pub fn set_icount(&self, budget: Arc<IcountBudget>) {
        if let Ok(mut slot) = self.icount.lock() {
            *slot = Some(budget);
        }
    }

    /// Make every vCPU created from now on trace what `mask` asks for into `sink`.
    pub fn set_trace(&self, mask: TraceMask, sink: Arc<dyn TraceSink>) {
        if let Ok(mut slot) = self.trace.lock() {
            *slot = Some((mask, sink));
        }
    }

    /// The interrupt-line recorder (concrete type, for the machine and tests).
    pub fn irq_recorder(&self) -> Arc<TcgIrqChip> {
        self.irq.clone()
    }
}

/// Records interrupt-line levels until the software interrupt controllers exist.
#[derive(Debug, Default)]
pub struct TcgIrqChip {
    lines: Mutex<Vec<(u32, bool)>>,
}

impl TcgIrqChip {
    /// Every `set_irq` call so far, in order, as (gsi, level).
    pub fn history(&self) -> Vec<(u32, bool)> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Lines whose last recorded level is high.
    pub fn pending(&self) -> Vec<u32> {
        let hist = self.history();
        let mut high: Vec<u32> = Vec::new();
        for (gsi, level) in hist {
            high.retain(|&g| g != gsi);
            if level {
                high.push(gsi);
            }
        }
        high
    }
}

impl IrqChip for TcgIrqChip {
    fn set_irq(&self, gsi: u32, level: bool) {
        if let Ok(mut l) = self.lines.lock() {
            // Keep the record bounded: only the latest transitions matter to a future PIC.
            if l.len() >= 4096 {
                l.drain(..2048);
            }
            l.push((gsi, level));
        }
    }
}

impl Accelerator for Tcg {
    fn name(&self) -> &'static str {
        "tcg"
    }

    fn map_ram(&self, ram: &Arc<GuestRam>) -> Result<(), AccelError> {
        let mut slot = self
            .ram
            .lock()
            .map_err(|_| AccelError::Other("tcg RAM lock poisoned".into()))?;
        *slot = Some(ram.clone());
        Ok(())
    }

    fn irq_chip(&self) -> Arc<dyn IrqChip> {
        self.irq.clone()
    }

    fn set_interrupt_source(
        &self,
        id: usize,
        source: Arc<dyn InterruptSource>,
    ) -> Result<(), AccelError> {
        self.set_interrupt_source_for(id, source);
        Ok(())
    }

    fn create_vcpu(&self, id: usize, ctx: VcpuContext) -> Result<Box<dyn Vcpu>, AccelError> {
        let mut vcpu = TcgVcpu::new(id, ctx);
        vcpu.cpu.jit.enabled = !self.interpret_only.load(Ordering::Relaxed);
        vcpu.interrupts = self
            .interrupts
            .lock()
            .ok()
            .and_then(|v| v.get(id).cloned().flatten());
        if let Some(t) = self.time.lock().ok().and_then(|t| t.clone()) {
            vcpu.cpu.set_time_source(t);
        }
        if let Some((mask, sink)) = self.trace.lock().ok().and_then(|s| s.clone()) {
            vcpu.cpu.set_trace(mask, Some(sink));
        }
        if let Some(budget) = self.icount.lock().ok().and_then(|b| b.clone()) {
            vcpu.cpu.set_exact_instruction_count(true);
            vcpu.icount = Some(budget);
        }
        Ok(Box::new(vcpu))
    }
}

/// Kicks a [`TcgVcpu`] out of `run()` at its next block boundary.
struct TcgKicker(Arc<AtomicBool>);

impl Kicker for TcgKicker {
    fn kick(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// One software vCPU.
pub struct TcgVcpu {
    cpu: Cpu,
    kick: Arc<AtomicBool>,
    stats: Arc<super::ExitStats>,
    interrupts: Option<Arc<dyn InterruptSource>>,
    /// In the wait-for-SIPI state: application processors from RESET, and any CPU after INIT.
    /// Such a CPU runs nothing until a STARTUP message arrives.
    waiting_for_sipi: bool,
    /// What the debugger asked for (breakpoints live in the CPU itself).
    debug: DebugConfig,
    /// `-icount`: each `run()` retires at most this budget (see [`IcountBudget`]).
    icount: Option<Arc<IcountBudget>>,
}

/// With an interrupt controller attached, the CPU runs in slices of this many instructions, so
/// an INTR that is raised while IF = 0 is taken soon after the guest sets IF again.
const INTERRUPT_SLICE: u64 = 200_000;

/// RFLAGS.IF.
const RFLAGS_IF: u64 = 1 << 9;

impl TcgVcpu {
    /// A vCPU in the RESET state over the context's RAM and I/O.
    pub fn new(id: usize, ctx: VcpuContext) -> Self {
        let mut cpu = Cpu::new(id, ctx.ram, ctx.io, ctx.stats.clone());
        cpu.cpu_count = ctx.cpu_count;
        cpu.set_code_watch(ctx.code.clone());
        cpu.state.msr.apic_base = apic_base::RESET_AP | if id == 0 { apic_base::BSP } else { 0 };
        TcgVcpu {
            cpu,
            kick: Arc::new(AtomicBool::new(false)),
            stats: ctx.stats,
            interrupts: None,
            waiting_for_sipi: id != 0,
            debug: DebugConfig::default(),
            icount: None,
        }
    }

    /// Inject external interrupt `vector`: delivered when RFLAGS.IF = 1 and no STI/MOV SS
    /// shadow is active; wakes the CPU from HLT then. Call between `run()`s (the vCPU thread
    /// owns the CPU); to interrupt a running vCPU, kick it first.
    pub fn raise_external(&mut self, vector: u8) {
        self.cpu.raise_external(vector);
    }

    fn interrupts_enabled(&self) -> bool {
        self.cpu.state.flags.get() & RFLAGS_IF != 0
    }

    /// INTA: when INTR is up, the CPU accepts interrupts and none is latched yet, take the
    /// vector from the controller and latch it into the CPU.
    fn take_external_interrupt(&mut self, source: &dyn InterruptSource) {
        if self.cpu.pending_external().is_none() && source.pending() {
            if self.interrupts_enabled() {
                let vector = source.acknowledge();
                self.cpu.raise_external(vector);
            } else {
                // Come back as soon as the guest sets IF, not at the end of the slice.
                self.cpu.request_interrupt_window();
            }
        }
    }

    /// Act on the local APIC's INIT / STARTUP / NMI messages; true if any arrived.
    fn take_signals(&mut self, source: &dyn InterruptSource) -> bool {
        let mut any = false;
        while let Some(sig) = source.take_signal() {
            any = true;
            match sig {
                CpuSignal::Init => self.init(),
                CpuSignal::Startup(vector) if self.waiting_for_sipi => self.startup(vector),
                // A STARTUP to a CPU that is not waiting for one is ignored, as on hardware.
                CpuSignal::Startup(_) => {}
                CpuSignal::Nmi => self.cpu.raise_nmi(),
            }
        }
        any
    }

    /// INIT: the registers take their RESET values (the APIC base MSR and TSC stay) and the
    /// CPU waits for STARTUP. The boot CPU's INIT is not modelled (it would restart the
    /// firmware) and is ignored.
    fn init(&mut self) {
        if self.cpu.id() == 0 {
            log::debug!("INIT to the boot CPU ignored");
            return;
        }
        let mut s = CpuState::from_vcpu_state(&VcpuState::reset());
        s.msr.apic_base = self.cpu.state.msr.apic_base;
        s.tsc = self.cpu.state.tsc;
        self.cpu.set_state(s);
        self.cpu.discard_pending_events();
        self.waiting_for_sipi = true;
    }

    /// STARTUP: leave wait-for-SIPI in real mode at `vector:0000` (physical `vector * 0x1000`).
    fn startup(&mut self, vector: u8) {
        let mut v = VcpuState::reset();
        v.cs = Segment::real(u16::from(vector) << 8, 0xb);
        v.rip = 0;
        let mut s = CpuState::from_vcpu_state(&v);
        s.msr.apic_base = self.cpu.state.msr.apic_base;
        s.tsc = self.cpu.state.tsc;
        self.cpu.set_state(s);
        self.waiting_for_sipi = false;
    }

    /// The CPU itself (tests, debugger, MSR access).
    pub fn cpu(&mut self) -> &mut Cpu {
        &mut self.cpu
    }

    fn crash(&mut self, reason: String) -> AccelError {
        AccelError::Guest(Box::new(self.report(&reason)))
    }

    /// Single step: one instruction (or one event delivery), then `Debug`. A halted CPU with
    /// nothing to wake it stays halted (`Halt`), so the step completes after the interrupt.
    fn step(&mut self) -> Result<VcpuExit, AccelError> {
        let id = self.cpu.id();
        if self.kick.swap(false, Ordering::Relaxed) {
            self.stats.count(id, ExitReason::Interrupted);
            return Ok(VcpuExit::Interrupted);
        }
        if let Some(source) = self.interrupts.clone() {
            self.take_external_interrupt(&*source);
        }
        let before = self.stats.instructions(id);
        let exit = loop {
            match self.cpu.run_limited(&self.kick, 1) {
                // IF came back with an interrupt waiting: take it, then make the step.
                CpuExit::InterruptWindow => {
                    if let Some(source) = self.interrupts.clone() {
                        self.take_external_interrupt(&*source);
                    }
                }
                other => break other,
            }
        };
        let retired = self.stats.instructions(id) - before;
        match exit {
            CpuExit::Halt if retired == 0 => Ok(VcpuExit::Halt),
            CpuExit::Shutdown => {
                self.stats.count(id, ExitReason::Shutdown);
                Ok(VcpuExit::Shutdown)
            }
            CpuExit::Fatal(why) => {
                self.stats.count(id, ExitReason::InternalError);
                Err(self.crash(why))
            }
            _ => {
                self.stats.count(id, ExitReason::Debug);
                Ok(VcpuExit::Debug)
            }
        }
    }

    /// Turn the CPU's exit into the vCPU's, counting it.
    fn finish(&mut self, exit: CpuExit) -> Result<VcpuExit, AccelError> {
        let id = self.cpu.id();
        match exit {
            CpuExit::Halt => Ok(VcpuExit::Halt),
            CpuExit::Interrupted | CpuExit::InterruptWindow => {
                self.stats.count(id, ExitReason::Interrupted);
                Ok(VcpuExit::Interrupted)
            }
            CpuExit::Shutdown => {
                self.stats.count(id, ExitReason::Shutdown);
                Ok(VcpuExit::Shutdown)
            }
            CpuExit::Fatal(why) => {
                self.stats.count(id, ExitReason::InternalError);
                Err(self.crash(why))
            }
            CpuExit::Debug => {
                self.stats.count(id, ExitReason::Debug);
                Ok(VcpuExit::Debug)
            }
        }
    }
}

/// An x87 register as 10 little-endian bytes (gdb's i387_ext).
fn f80_bytes(r: F80) -> [u8; 10] {
    let mut b = [0u8; 10];
    b[..8].copy_from_slice(&r.mant.to_le_bytes());
    b[8..].copy_from_slice(&r.sign_exp.to_le_bytes());
    b
}

fn f80_from(b: &[u8; 10]) -> F80 {
    let mut m = [0u8; 8];
    m.copy_from_slice(&b[..8]);
    F80 {
        mant: u64::from_le_bytes(m),
        sign_exp: u16::from_le_bytes([b[8], b[9]]),
    }
}

/// The CPU's FPU state as the debugger sees it (ST(i) in stack order).
fn fpu_regs(f: &FpuState) -> FpuRegs {
    let mut st = [[0u8; 10]; 8];
    for (i, slot) in st.iter_mut().enumerate() {
        *slot = f80_bytes(f.st[f.phys(i)]);
    }
    FpuRegs {
        st,
        fcw: f.fcw,
        fsw: f.fsw,
        ftw: f.ftw,
        fcs: f.fcs,
        fip: f.fip,
        fds: f.fds,
        fdp: f.fdp,
        fop: f.fop,
        xmm: f.xmm,
        mxcsr: f.mxcsr,
    }
}

/// Write the debugger's view back into the CPU's FPU state.
fn store_fpu_regs(f: &mut FpuState, r: &FpuRegs) {
    f.fcw = r.fcw;
    f.fsw = r.fsw;
    f.ftw = r.ftw;
    for (i, bytes) in r.st.iter().enumerate() {
        let phys = f.phys(i);
        f.st[phys] = f80_from(bytes);
    }
    f.fcs = r.fcs;
    f.fip = r.fip;
    f.fds = r.fds;
    f.fdp = r.fdp;
    f.fop = r.fop & 0x7ff;
    f.xmm = r.xmm;
    f.mxcsr = r.mxcsr;
}

impl Vcpu for TcgVcpu {
    fn id(&self) -> usize {
        self.cpu.id()
    }

    fn run(&mut self) -> Result<VcpuExit, AccelError> {
        let id = self.cpu.id();
        if self.debug.single_step && !self.waiting_for_sipi {
            return self.step();
        }
        if let (Some(budget), Some(source)) = (&self.icount, self.interrupts.clone()) {
            let budget = budget.get();
            return self.run_icount(&*source, budget);
        }
        let exit = loop {
            let Some(source) = self.interrupts.clone() else {
                if self.waiting_for_sipi {
                    self.kick.store(false, Ordering::Relaxed);
                    return Ok(VcpuExit::Halt);
                }
                break self.cpu.run(&self.kick);
            };
            self.take_signals(&*source);
            if self.waiting_for_sipi {
                // Nothing runs until STARTUP; the machine wakes this thread when it comes.
                self.kick.store(false, Ordering::Relaxed);
                return Ok(VcpuExit::Halt);
            }
            self.take_external_interrupt(&*source);
            let before = self.stats.instructions(id);
            let exit = self.cpu.run_limited(&self.kick, INTERRUPT_SLICE);
            let sliced = self.stats.instructions(id) - before >= INTERRUPT_SLICE;
            match exit {
                // The slice ran out (not a kick): look at the APIC and go on.
                CpuExit::Interrupted if sliced => continue,
                CpuExit::InterruptWindow => continue,
                // HLT while an interrupt the CPU accepts is already there: deliver it instead
                // of sleeping.
                CpuExit::Halt if source.pending() && self.interrupts_enabled() => continue,
                CpuExit::Halt if self.take_signals(&*source) => continue,
                other => break other,
            }
        };
        self.finish(exit)
    }

    fn set_debug(&mut self, config: &DebugConfig) -> Result<(), AccelError> {
        self.cpu.breakpoints = config
            .sw_breakpoints
            .iter()
            .chain(&config.hw_breakpoints)
            .copied()
            .collect();
        self.debug = config.clone();
        // The debugger may have written guest memory (code included) while it held the CPU.
        self.cpu.invalidate_code();
        Ok(())
    }

    fn fpu(&mut self) -> Result<FpuRegs, AccelError> {
        Ok(fpu_regs(&self.cpu.state.fpu))
    }

    fn set_fpu(&mut self, fpu: &FpuRegs) -> Result<(), AccelError> {
        store_fpu_regs(&mut self.cpu.state.fpu, fpu);
        Ok(())
    }

    fn state(&mut self) -> Result<VcpuState, AccelError> {
        Ok(self.cpu.state.to_vcpu_state())
    }

    fn set_state(&mut self, state: &VcpuState) -> Result<(), AccelError> {
        let mut s = CpuState::from_vcpu_state(state);
        // MSRs that VcpuState does not carry survive a set_state.
        s.msr = crate::cpu::state::Msrs {
            apic_base: state.apic_base,
            ..self.cpu.state.msr
        };
        s.tsc = self.cpu.state.tsc;
        self.cpu.set_state(s);
        // A state given explicitly (boot entry, snapshot, test) is one to run from.
        self.waiting_for_sipi = false;
        Ok(())
    }

    fn kicker(&self) -> Arc<dyn Kicker> {
        Arc::new(TcgKicker(self.kick.clone()))
    }

    fn report(&mut self, reason: &str) -> CrashReport {
        CrashReport {
            reason: reason.to_string(),
            vcpu: self.cpu.id(),
            state: Some(self.cpu.state.to_vcpu_state()),
            bytes: self.cpu.code_bytes_at_rip(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use vm_memory::{Bytes, GuestAddress};

    use super::*;
    use crate::accel::{IoHandler, Segment};

    #[derive(Default)]
    struct Ports(Mutex<Vec<(u16, u8)>>);

    impl IoHandler for Ports {
        fn pio_read(&self, _: usize, _: u16, data: &mut [u8]) {
            data.fill(0);
        }
        fn pio_write(&self, _: usize, port: u16, data: &[u8]) {
            self.0.lock().unwrap().push((port, data[0]));
        }
        fn mmio_read(&self, _: usize, _: u64, data: &mut [u8]) {
            data.fill(0xff);
        }
        fn mmio_write(&self, _: usize, _: u64, _: &[u8]) {}
    }

    fn vcpu(code: &[u8]) -> (TcgVcpu, Arc<Ports>, Arc<super::super::ExitStats>) {
        let ram = Arc::new(GuestRam::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap());
        ram.write_slice(code, GuestAddress(0x7c00)).unwrap();
        let io = Arc::new(Ports::default());
        let stats = Arc::new(super::super::ExitStats::new(1));
        let tcg = Tcg::new();
        tcg.map_ram(&ram).unwrap();
        let ctx = VcpuContext::new(ram, io.clone(), stats.clone(), 1);
        let mut v = TcgVcpu::new(0, ctx);
        let mut s = VcpuState::reset();
        s.cs = Segment::real(0, 0xb);
        s.rip = 0x7c00;
        s.gpr[4] = 0x7000;
        v.set_state(&s).unwrap();
        (v, io, stats)
    }

    #[test]
    fn runs_to_halt_and_counts() {
        // mov al, 'K'; out 0xe9, al; hlt
        let (mut v, io, stats) = vcpu(&[0xb0, b'K', 0xe6, 0xe9, 0xf4]);
        assert_eq!(v.run().unwrap(), VcpuExit::Halt);
        assert_eq!(*io.0.lock().unwrap(), vec![(0xe9, b'K')]);
        assert_eq!(stats.get(0, ExitReason::PioWrite), 1);
        assert_eq!(stats.get(0, ExitReason::Halt), 1);
        assert_eq!(stats.instructions(0), 3);
        let s = v.state().unwrap();
        assert_eq!(s.rip, 0x7c05);
        assert_eq!(s.gpr[0] & 0xff, u64::from(b'K'));
    }

    #[test]
    fn kick_and_shutdown() {
        // jmp $
        let (mut v, _, stats) = vcpu(&[0xeb, 0xfe]);
        v.kicker().kick();
        assert_eq!(v.run().unwrap(), VcpuExit::Interrupted);
        assert_eq!(stats.get(0, ExitReason::Interrupted), 1);
        // ud2 with an IVT that points at ud2 forever would loop; instead make the IVT
        // unusable: IDTR limit 0 → #UD delivery faults → #DF → triple fault.
        let (mut v, _, stats) = vcpu(&[0x0f, 0x0b]);
        let mut s = v.state().unwrap();
        s.idt.limit = 0;
        v.set_state(&s).unwrap();
        assert_eq!(v.run().unwrap(), VcpuExit::Shutdown);
        assert_eq!(stats.get(0, ExitReason::Shutdown), 1);
    }

    #[test]
    fn state_round_trip_and_irq_recorder() {
        let (mut v, _, _) = vcpu(&[0xf4]);
        let mut s = VcpuState::reset();
        s.gpr[3] = 0xdead;
        s.cr3 = 0x1000;
        v.set_state(&s).unwrap();
        assert_eq!(v.state().unwrap(), s);
        let tcg = Tcg::new();
        tcg.irq_chip().set_irq(4, true);
        tcg.irq_chip().set_irq(3, true);
        tcg.irq_chip().set_irq(4, false);
        assert_eq!(tcg.irq_recorder().pending(), vec![3]);
        assert_eq!(tcg.name(), "tcg");
    }

    /// Hands out scripted signals; no vectored interrupts.
    #[derive(Default)]
    struct Signals(Mutex<Vec<CpuSignal>>);

    impl InterruptSource for Signals {
        fn pending(&self) -> bool {
            false
        }
        fn acknowledge(&self) -> u8 {
            0xff
        }
        fn take_signal(&self) -> Option<CpuSignal> {
            let mut q = self.0.lock().unwrap();
            (!q.is_empty()).then(|| q.remove(0))
        }
    }

    #[test]
    fn application_processor_waits_for_init_and_startup() {
        let ram = Arc::new(GuestRam::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap());
        // At 0x7000: mov al, 'A'; out 0xe9, al; hlt
        ram.write_slice(&[0xb0, b'A', 0xe6, 0xe9, 0xf4], GuestAddress(0x7000))
            .unwrap();
        let io = Arc::new(Ports::default());
        let signals = Arc::new(Signals::default());
        let tcg = Tcg::new();
        tcg.map_ram(&ram).unwrap();
        tcg.set_interrupt_source_for(1, signals.clone());
        let ctx = VcpuContext::new(
            ram,
            io.clone(),
            Arc::new(super::super::ExitStats::new(2)),
            2,
        );
        let mut ap = tcg.create_vcpu(1, ctx).unwrap();
        assert_eq!(ap.run().unwrap(), VcpuExit::Halt, "parked until STARTUP");
        assert!(io.0.lock().unwrap().is_empty());
        // INIT, STARTUP 7 (start at 0x7000), and a second STARTUP that finds it running and
        // is ignored, as the SDM's INIT-SIPI-SIPI sequence would.
        signals.0.lock().unwrap().extend([
            CpuSignal::Init,
            CpuSignal::Startup(7),
            CpuSignal::Startup(9),
        ]);
        assert_eq!(ap.run().unwrap(), VcpuExit::Halt);
        assert_eq!(*io.0.lock().unwrap(), vec![(0xe9, b'A')]);
        let s = ap.state().unwrap();
        assert_eq!((s.cs.selector, s.cs.base, s.rip), (0x700, 0x7000, 5));
        assert_eq!(s.apic_base, 0xfee0_0800, "enabled, not the BSP");
    }

    #[test]
    fn external_interrupt_through_ivt() {
        // sti; hlt; hlt   with IVT[0x20] → 0000:0x7d00: mov bl, 0x77; iret
        let (mut v, _, _) = vcpu(&[0xfb, 0xf4, 0xf4]);
        // Write the handler and vector through the CPU's own view of RAM.
        let cpu = v.cpu();
        cpu.ram.write_obj(0x7d00u16, GuestAddress(0x80)).unwrap();
        cpu.ram.write_obj(0u16, GuestAddress(0x82)).unwrap();
        cpu.ram
            .write_slice(&[0xb3, 0x77, 0xcf], GuestAddress(0x7d00))
            .unwrap();
        cpu.invalidate_code();
        assert_eq!(v.run().unwrap(), VcpuExit::Halt);
        v.raise_external(0x20);
        assert_eq!(v.run().unwrap(), VcpuExit::Halt);
        let s = v.state().unwrap();
        assert_eq!(s.gpr[3] & 0xff, 0x77);
        assert_eq!(
            s.rip, 0x7c03,
            "returned after the first HLT, halted on the second"
        );
    }

    #[test]
    fn breakpoint_stops_before_the_instruction_and_step_runs_one() {
        // mov al, 1; mov bl, 2; mov cl, 3; hlt
        let (mut v, _, stats) = vcpu(&[0xb0, 1, 0xb3, 2, 0xb1, 3, 0xf4]);
        let cfg = DebugConfig {
            sw_breakpoints: vec![0x7c02],
            ..DebugConfig::default()
        };
        v.set_debug(&cfg).unwrap();
        assert_eq!(v.run().unwrap(), VcpuExit::Debug);
        let s = v.state().unwrap();
        assert_eq!(s.rip, 0x7c02, "stopped at the breakpoint, before it ran");
        assert_eq!((s.gpr[0] & 0xff, s.gpr[3] & 0xff), (1, 0));
        // Step over it (gdb removes the breakpoint first).
        v.set_debug(&DebugConfig {
            single_step: true,
            ..DebugConfig::default()
        })
        .unwrap();
        assert_eq!(v.run().unwrap(), VcpuExit::Debug);
        let s = v.state().unwrap();
        assert_eq!((s.rip, s.gpr[3] & 0xff), (0x7c04, 2));
        assert_eq!(stats.get(0, ExitReason::Debug), 2);
        v.set_debug(&DebugConfig::default()).unwrap();
        assert_eq!(v.run().unwrap(), VcpuExit::Halt);
        assert_eq!(v.state().unwrap().gpr[1] & 0xff, 3);
    }

    #[test]
    fn fpu_registers_in_stack_order() {
        let (mut v, _, _) = vcpu(&[0xf4]);
        let f = &mut v.cpu().state.fpu;
        f.fsw = 5 << 11; // TOP = 5
        f.st[5] = F80 {
            mant: 1 << 63,
            sign_exp: 0x3fff,
        };
        f.xmm[2] = 42;
        let r = v.fpu().unwrap();
        assert_eq!(r.st[0], [0, 0, 0, 0, 0, 0, 0, 0x80, 0xff, 0x3f]);
        assert_eq!(r.xmm[2], 42);
        let mut r2 = r;
        r2.st[1] = [1; 10];
        v.set_fpu(&r2).unwrap();
        assert_eq!(v.fpu().unwrap(), r2);
        assert_eq!(v.cpu().state.fpu.st[6].mant, 0x0101_0101_0101_0101);
    }
}

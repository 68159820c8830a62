//! The software-CPU accelerator: drives `crate::cpu` behind the `Accelerator`/`Vcpu` seam.
//!
//! [`Tcg`] keeps the guest RAM it was given and hands each [`TcgVcpu`] a [`Cpu`] over it.
//! `run()` executes guest code until HLT (→ `Halt`), a kick (→ `Interrupted`), a triple fault
//! (→ `Shutdown`) or a fatal condition (→ `AccelError::Guest` with the instruction bytes).
//! Interrupt lines raised on [`TcgIrqChip`] are only recorded for now (the PIC/IOAPIC/LAPIC
//! come later); external vectors reach a CPU through [`TcgVcpu::raise_external`], which calls
//! [`Cpu::raise_external`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::{
    AccelError, Accelerator, CrashReport, ExitReason, GuestRam, InterruptSource, IrqChip, Kicker,
    Vcpu, VcpuContext, VcpuExit, VcpuState,
};
use crate::cpu::state::CpuState;
use crate::cpu::trace::{TraceMask, TraceSink};
use crate::cpu::{Cpu, CpuExit};

/// The software-CPU accelerator.
#[derive(Default)]
pub struct Tcg {
    ram: Mutex<Option<Arc<GuestRam>>>,
    irq: Arc<TcgIrqChip>,
    /// The machine's interrupt controller: its INTR goes to vCPU 0 (virtual wire).
    interrupts: Mutex<Option<Arc<dyn InterruptSource>>>,
    /// `-d in_asm,int,cpu`: what every vCPU traces, and where.
    trace: Mutex<Option<(TraceMask, Arc<dyn TraceSink>)>>,
}

impl Tcg {
    /// A new accelerator with no RAM mapped yet.
    pub fn new() -> Self {
        Tcg::default()
    }

    /// Connect the machine's interrupt controller to vCPU 0 (before `create_vcpu`). Without
    /// one, vCPUs see no external interrupts.
    pub fn set_interrupt_source(&self, source: Arc<dyn InterruptSource>) {
        if let Ok(mut slot) = self.interrupts.lock() {
            *slot = Some(source);
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

    fn create_vcpu(&self, id: usize, ctx: VcpuContext) -> Result<Box<dyn Vcpu>, AccelError> {
        let mut vcpu = TcgVcpu::new(id, ctx);
        if id == 0 {
            vcpu.interrupts = self.interrupts.lock().ok().and_then(|s| s.clone());
        }
        if let Some((mask, sink)) = self.trace.lock().ok().and_then(|s| s.clone()) {
            vcpu.cpu.set_trace(mask, Some(sink));
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
    /// Application processors wait for INIT/SIPI before they run; until the local APIC exists
    /// nothing sends them, so they stay parked (halted) instead of executing from the reset
    /// vector into whatever memory holds.
    waiting_for_sipi: bool,
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
        TcgVcpu {
            cpu,
            kick: Arc::new(AtomicBool::new(false)),
            stats: ctx.stats,
            interrupts: None,
            waiting_for_sipi: id != 0,
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
        if self.cpu.pending_external().is_none() && self.interrupts_enabled() && source.pending() {
            let vector = source.acknowledge();
            self.cpu.raise_external(vector);
        }
    }

    /// The CPU itself (tests, debugger, MSR access).
    pub fn cpu(&mut self) -> &mut Cpu {
        &mut self.cpu
    }

    fn crash(&mut self, reason: String) -> AccelError {
        AccelError::Guest(Box::new(self.report(&reason)))
    }
}

impl Vcpu for TcgVcpu {
    fn id(&self) -> usize {
        self.cpu.id()
    }

    fn run(&mut self) -> Result<VcpuExit, AccelError> {
        let id = self.cpu.id();
        if self.waiting_for_sipi {
            self.kick.store(false, Ordering::Relaxed);
            return Ok(VcpuExit::Halt);
        }
        let exit = loop {
            let Some(source) = self.interrupts.clone() else {
                break self.cpu.run(&self.kick);
            };
            self.take_external_interrupt(&*source);
            let before = self.stats.instructions(id);
            let exit = self.cpu.run_limited(&self.kick, INTERRUPT_SLICE);
            let sliced = self.stats.instructions(id) - before >= INTERRUPT_SLICE;
            match exit {
                // The slice ran out (not a kick): look at INTR and go on.
                CpuExit::Interrupted if sliced => continue,
                // HLT with IF = 1 while INTR is already up: deliver instead of sleeping.
                CpuExit::Halt if source.pending() && self.interrupts_enabled() => continue,
                other => break other,
            }
        };
        match exit {
            CpuExit::Halt => Ok(VcpuExit::Halt),
            CpuExit::Interrupted => {
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
        }
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
        let ctx = VcpuContext {
            ram,
            io: io.clone(),
            stats: stats.clone(),
            cpu_count: 1,
        };
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
}

//! The software vCPU under `-icount`: runs exactly the number of instructions the machine's
//! deterministic loop grants it, then returns, so timers are delivered at fixed instruction
//! counts instead of whenever a host thread wakes up.
//!
//! The machine hands every vCPU the same [`IcountBudget`] (through [`super::Tcg::set_icount`]);
//! before each `run()` it stores how many instructions may retire until the next timer
//! deadline. [`TcgVcpu::run_icount`] runs at most that many (taking interrupts, the interrupt
//! window and INIT/STARTUP as the free-running path does) and comes back with `Interrupted`
//! when the budget is spent or a kick arrived, or `Halt` when the CPU sleeps. It never waits
//! and never loops past its budget: deciding what happens next (poll the timers, run the next
//! vCPU, warp the clock when all sleep) is the machine's job.

use std::sync::atomic::{AtomicU64, Ordering};

use super::TcgVcpu;
use crate::accel::{AccelError, ExitReason, InterruptSource, VcpuExit};
use crate::cpu::CpuExit;

/// The instruction budget of the next `run()` of each vCPU, set by the machine's icount loop.
#[derive(Debug, Default)]
pub struct IcountBudget(AtomicU64);

impl IcountBudget {
    /// A budget of 0 (the loop sets it before every `run()`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Let the next `run()` retire at most `instructions` (0 is treated as 1: a run always
    /// makes progress).
    pub fn set(&self, instructions: u64) {
        self.0.store(instructions, Ordering::SeqCst);
    }

    /// The budget for the next run.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst).max(1)
    }
}

impl TcgVcpu {
    /// One `run()` under `-icount`: at most `budget` instructions; see the module doc.
    pub(super) fn run_icount(
        &mut self,
        source: &dyn InterruptSource,
        budget: u64,
    ) -> Result<VcpuExit, AccelError> {
        let id = self.cpu.id();
        let start = self.stats.instructions(id);
        // A kick that came before this run asked for a look the start of the run is about to
        // take anyway; dropping it keeps a kick from another thread (an interrupt already
        // handled, a wake-up) from cutting this budget short at a host-timed instruction.
        // Kicks during the run still end it at the next block boundary.
        self.kick.store(false, Ordering::Relaxed);
        let exit = loop {
            self.take_signals(source);
            if self.waiting_for_sipi {
                return Ok(VcpuExit::Halt);
            }
            self.take_external_interrupt(source);
            let used = self.stats.instructions(id) - start;
            if used >= budget {
                return Ok(VcpuExit::Interrupted);
            }
            match self.cpu.run_limited(&self.kick, budget - used) {
                CpuExit::Interrupted => {
                    let spent = self.stats.instructions(id) - start >= budget;
                    if !spent {
                        // A kick, not the end of the budget.
                        self.stats.count(id, ExitReason::Interrupted);
                    }
                    return Ok(VcpuExit::Interrupted);
                }
                CpuExit::InterruptWindow => continue,
                // HLT while an interrupt the CPU accepts is already there: deliver it.
                CpuExit::Halt if source.pending() && self.interrupts_enabled() => continue,
                CpuExit::Halt if self.take_signals(source) => continue,
                other => break other,
            }
        };
        self.finish(exit)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use vm_memory::{Bytes, GuestAddress};

    use super::*;
    use crate::accel::tcg::Tcg;
    use crate::accel::{
        Accelerator, CpuSignal, ExitStats, GuestRam, IoHandler, Segment, Vcpu, VcpuContext,
        VcpuState,
    };

    struct NoIo;
    impl IoHandler for NoIo {
        fn pio_read(&self, _: usize, _: u16, data: &mut [u8]) {
            data.fill(0);
        }
        fn pio_write(&self, _: usize, _: u16, _: &[u8]) {}
        fn mmio_read(&self, _: usize, _: u64, data: &mut [u8]) {
            data.fill(0xff);
        }
        fn mmio_write(&self, _: usize, _: u64, _: &[u8]) {}
    }

    /// One interrupt line: `pending` until acknowledged, vector 0x20.
    #[derive(Default)]
    struct Line(Mutex<bool>);
    impl InterruptSource for Line {
        fn pending(&self) -> bool {
            *self.0.lock().unwrap()
        }
        fn acknowledge(&self) -> u8 {
            *self.0.lock().unwrap() = false;
            0x20
        }
        fn take_signal(&self) -> Option<CpuSignal> {
            None
        }
    }

    fn vcpu(code: &[u8]) -> (Box<dyn Vcpu>, Arc<IcountBudget>, Arc<ExitStats>, Arc<Line>) {
        let ram = Arc::new(GuestRam::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap());
        ram.write_slice(code, GuestAddress(0x7c00)).unwrap();
        // IVT[0x20] → 0000:7d00: inc bx; iret
        ram.write_obj(0x7d00u16, GuestAddress(0x80)).unwrap();
        ram.write_obj(0u16, GuestAddress(0x82)).unwrap();
        ram.write_slice(&[0x43, 0xcf], GuestAddress(0x7d00))
            .unwrap();
        let stats = Arc::new(ExitStats::new(1));
        let budget = Arc::new(IcountBudget::new());
        let line = Arc::new(Line::default());
        let tcg = Tcg::new();
        tcg.map_ram(&ram).unwrap();
        tcg.set_interrupt_source(line.clone());
        tcg.set_icount(budget.clone());
        let ctx = VcpuContext::new(ram, Arc::new(NoIo), stats.clone(), 1);
        let mut v = tcg.create_vcpu(0, ctx).unwrap();
        let mut s = VcpuState::reset();
        s.cs = Segment::real(0, 0xb);
        s.rip = 0x7c00;
        s.gpr[4] = 0x7000;
        v.set_state(&s).unwrap();
        (v, budget, stats, line)
    }

    #[test]
    fn runs_exactly_the_budget_and_counts_exactly() {
        // 1: inc ax; jmp 1b  (two instructions per block)
        let (mut v, budget, stats, _) = vcpu(&[0x40, 0xeb, 0xfd]);
        budget.set(7);
        assert_eq!(v.run().unwrap(), VcpuExit::Interrupted);
        assert_eq!(stats.instructions(0), 7, "the budget ends mid-block");
        assert_eq!(v.state().unwrap().gpr[0], 4);
        budget.set(1000);
        assert_eq!(v.run().unwrap(), VcpuExit::Interrupted);
        assert_eq!(stats.instructions(0), 1007);
        assert_eq!(
            stats.get(0, ExitReason::Interrupted),
            0,
            "a spent budget is not a kick"
        );
    }

    #[test]
    fn halt_returns_and_an_interrupt_wakes_within_the_budget() {
        // sti; 1: hlt; jmp 1b
        let (mut v, budget, stats, line) = vcpu(&[0xfb, 0xf4, 0xeb, 0xfd]);
        budget.set(100);
        assert_eq!(v.run().unwrap(), VcpuExit::Halt);
        assert_eq!(stats.instructions(0), 2);
        assert_eq!(v.run().unwrap(), VcpuExit::Halt, "still asleep");
        assert_eq!(stats.instructions(0), 2);
        *line.0.lock().unwrap() = true;
        // Wakes: inc bx; iret; jmp; hlt.
        assert_eq!(v.run().unwrap(), VcpuExit::Halt);
        assert_eq!(stats.instructions(0), 6);
        assert_eq!(v.state().unwrap().gpr[3], 1);
    }
}

//! `-icount shift=N`: the deterministic machine loop. Every vCPU runs on one host thread, in
//! turn (QEMU's round-robin icount model), and time is the instruction count.
//!
//! Data flow: [`clock`] builds the machine's [`IcountClock`] over the vCPUs' retired-instruction
//! counters (`ExitStats`, exact at every block boundary in this mode); devices read it as their
//! `Clock`, the software CPU as its TSC. [`run_vcpus`] then loops: deliver the timers that are
//! due ([`TimerPoll`]), grant the next vCPU an instruction budget that ends at the next timer
//! deadline (at most [`QUANTUM`]), run it, and so on round the vCPUs. When a whole round retires
//! nothing (every vCPU halted), the clock warps to the next deadline instead of waiting for
//! host time (QEMU's `sleep=off`), so idle guests run fast, and the same guest with the same
//! input repeats bit for bit: no host thread decides when a timer fires.

use std::sync::Arc;

use super::control::Control;
use super::timers::TimerPoll;
use super::vcpu_loop::{handle_exit, HALT_POLL};
use crate::accel::tcg::IcountBudget;
use crate::accel::{ExitStats, Vcpu, VcpuExit};
use crate::devices::clock::{Clock, IcountClock};
use crate::monitor::gdb::DebugHub;

/// The most instructions one vCPU runs before the loop looks at the timers and the other vCPUs
/// again: bounds how late a reprogrammed PIT is noticed and how long another vCPU waits.
pub const QUANTUM: u64 = 20_000;

/// The machine's instruction-count clock: 2^`shift` ns per instruction retired on any vCPU.
pub fn clock(shift: u32, stats: Arc<ExitStats>) -> Arc<IcountClock> {
    Arc::new(IcountClock::new(
        shift,
        Box::new(move || (0..stats.vcpus()).map(|v| stats.instructions(v)).sum()),
    ))
}

/// The budget for the next vCPU run: up to the next deadline, between 1 and [`QUANTUM`].
pub fn grant(clock: &IcountClock, next_deadline: Option<u64>) -> u64 {
    next_deadline
        .map_or(QUANTUM, |d| clock.instructions_until(d))
        .clamp(1, QUANTUM)
}

/// What the loop needs besides the vCPUs.
pub struct IcountLoop {
    /// The machine's stop and wake-up block.
    pub control: Arc<Control>,
    /// The gdbstub's hub, if any (one vCPU only: see the CLI's checks).
    pub debug: Option<Arc<DebugHub>>,
    /// The timers to deliver between runs.
    pub timers: TimerPoll,
    /// The instruction-count clock.
    pub clock: Arc<IcountClock>,
    /// Where the loop writes each run's budget (shared with every vCPU).
    pub budget: Arc<IcountBudget>,
}

/// Run every vCPU, in turn, on the calling thread until the machine stops.
pub fn run_vcpus(mut vcpus: Vec<Box<dyn Vcpu>>, l: &IcountLoop) {
    for vcpu in &vcpus {
        l.control.gate().set_thread_id(vcpu.id());
    }
    while !l.control.stopping() {
        // Read before the round, so a wake-up during it ends the idle wait below at once.
        let gen = l.control.wake_generation();
        let mut idle = true;
        for vcpu in vcpus.iter_mut() {
            // The monitor's stop parks the thread here. With -smp > 1 the other vCPUs share
            // this thread and cannot reach their own boundary meanwhile: `stop` then waits
            // out its timeout (a known limit of the round-robin model).
            l.control.vcpu_boundary(vcpu.id(), &mut **vcpu);
            if let Some(hub) = &l.debug {
                hub.gate(vcpu.id(), &mut **vcpu, &|| l.control.stopping());
            }
            if l.control.stopping() {
                return;
            }
            let next = l.timers.poll();
            l.budget.set(grant(&l.clock, next));
            let before = l.clock.now_ns();
            let exit = vcpu.run();
            match exit {
                Ok(VcpuExit::Halt) if l.clock.now_ns() == before => {}
                other => {
                    idle = false;
                    handle_exit(other, &mut **vcpu, &l.control, l.debug.as_ref());
                }
            }
        }
        if idle && !l.control.stopping() {
            match l.timers.poll() {
                Some(deadline) => l.clock.warp_to(deadline),
                // Nothing will ever fire: only the outside (console input, the user) can wake
                // the guest now.
                None => l.control.wait_halted_since(gen, HALT_POLL),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[test]
    fn grants_end_at_the_deadline_within_one_quantum() {
        let n = Arc::new(AtomicU64::new(1000));
        let m = n.clone();
        let c = IcountClock::new(3, Box::new(move || m.load(Ordering::SeqCst)));
        // now = 8000 ns
        assert_eq!(grant(&c, None), QUANTUM);
        assert_eq!(grant(&c, Some(8000)), 1, "a due deadline still grants one");
        assert_eq!(grant(&c, Some(8001)), 1);
        assert_eq!(grant(&c, Some(8000 + 8 * 500)), 500);
        assert_eq!(grant(&c, Some(u64::MAX)), QUANTUM);
    }

    #[test]
    fn clock_sums_every_vcpu() {
        let stats = Arc::new(ExitStats::new(2));
        let c = clock(2, stats.clone());
        stats.add_instructions(0, 10);
        stats.add_instructions(1, 5);
        assert_eq!(c.now_ns(), 60);
    }
}

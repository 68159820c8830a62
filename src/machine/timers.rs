//! Timer delivery for the machine's userspace interrupt controllers (the software CPU's, and
//! KVM's with `kernel-irqchip=off`): turns the PIT's channel-0 edges and the local
//! APIC timers' expiries into interrupts.
//!
//! Neither device runs on its own (their counters are computed from the machine's clock), so
//! [`TimerPoll::poll`] asks both what expired since the last look, raises those interrupts (IRQ 0
//! on the interrupt chip: the 8259 and IOAPIC input 2; the APIC bus latches and wakes for its
//! timers), and returns when the next event is due. Who calls it depends on the clock: with host
//! time, the thread [`spawn`] starts sleeps until that deadline (at most [`MAX_SLEEP`]: the PIT
//! does not say when the guest reprograms it; an APIC timer write wakes the thread at once
//! through `TimerWake`); under `-icount` the vCPU loop itself polls between instruction
//! budgets (`icount.rs`), so timers fire at fixed instruction counts.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::apic_bus::ApicBus;
use super::control::Control;
use super::{lock, MachineError};
use crate::accel::IrqChip;
use crate::devices::clock::Clock;
use crate::devices::pit::{Pit, PIT_IRQ};

/// The longest the thread sleeps without looking again.
const MAX_SLEEP: Duration = Duration::from_millis(5);

/// The PIT and the APIC timers, and where their interrupts go.
#[derive(Clone)]
pub struct TimerPoll {
    pit: Arc<Mutex<Pit>>,
    chip: Arc<dyn IrqChip>,
    apics: Arc<ApicBus>,
}

impl TimerPoll {
    /// Poll `pit` (IRQ 0 raised on `chip`) and the local APICs on `apics`.
    pub fn new(pit: Arc<Mutex<Pit>>, chip: Arc<dyn IrqChip>, apics: Arc<ApicBus>) -> Self {
        Self { pit, chip, apics }
    }

    /// Deliver every timer event due by now; returns the earliest next deadline (clock ns).
    pub fn poll(&self) -> Option<u64> {
        let (edges, pit_next) = {
            let mut p = lock(&self.pit);
            (p.poll_irq0(), p.next_irq0_deadline_ns())
        };
        if edges > 0 {
            self.chip.set_irq(u32::from(PIT_IRQ), true);
            self.chip.set_irq(u32::from(PIT_IRQ), false);
        }
        let apic_next = self.apics.poll_timers();
        match (pit_next, apic_next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Start the host-time timer thread; it ends when `control` stops.
pub fn spawn(
    control: Arc<Control>,
    timers: TimerPoll,
    clock: Arc<dyn Clock>,
) -> Result<JoinHandle<()>, MachineError> {
    let wake = timers.apics.timer_wake();
    std::thread::Builder::new()
        .name("timers".into())
        .spawn(move || {
            while !control.stopping() {
                let gen = wake.generation();
                let next = timers.poll();
                let now = clock.now_ns();
                let sleep = next
                    .map(|t| Duration::from_nanos(t.saturating_sub(now)))
                    .unwrap_or(MAX_SLEEP)
                    .min(MAX_SLEEP);
                if !sleep.is_zero() {
                    wake.wait(gen, sleep);
                }
            }
        })
        .map_err(MachineError::Thread)
}

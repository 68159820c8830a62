//! The software-CPU machine's timer thread: turns the PIT's channel-0 edges and the local APIC
//! timers' expiries into interrupts at the right time, whether the vCPUs run or all halt.
//!
//! Neither device runs on its own (their counters are computed from the machine's clock), so
//! this thread asks both when their next event is due, sleeps until the earliest (at most
//! [`MAX_SLEEP`]: the PIT does not say when the guest reprograms it; an APIC timer write wakes
//! the thread at once through [`TimerWake`]), then pulses IRQ 0 on the interrupt chip (the 8259
//! and IOAPIC input 2) and lets the APIC bus latch and wake. A deterministic clock would drive
//! the same two polls from the instruction count instead of this thread.

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

/// Start the timer thread; it ends when `control` stops.
pub fn spawn(
    control: Arc<Control>,
    pit: Arc<Mutex<Pit>>,
    chip: Arc<dyn IrqChip>,
    apics: Arc<ApicBus>,
    clock: Arc<dyn Clock>,
) -> Result<JoinHandle<()>, MachineError> {
    let wake = apics.timer_wake();
    std::thread::Builder::new()
        .name("timers".into())
        .spawn(move || {
            while !control.stopping() {
                let gen = wake.generation();
                let (edges, pit_next) = {
                    let mut p = lock(&pit);
                    (p.poll_irq0(), p.next_irq0_deadline_ns())
                };
                if edges > 0 {
                    chip.set_irq(u32::from(PIT_IRQ), true);
                    chip.set_irq(u32::from(PIT_IRQ), false);
                }
                let apic_next = apics.poll_timers();
                let next = match (pit_next, apic_next) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
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

//! The interrupt controllers and timer the software CPU needs from the machine: the 8259 PIC
//! pair, the 8254 PIT and port 0x61, wired as on a PC without (or before) the APICs.
//!
//! Devices raise ISA lines through [`LegacyIrqChip`] (the `IrqChip` they get under tcg); the
//! PIC's INTR reaches vCPU 0 through [`PicInterrupts`] (the accelerator's `InterruptSource`)
//! and a kick; the PIT has no thread of its own inside the device, so [`spawn_pit_ticker`]
//! sleeps until the PIT's next IRQ 0 edge and pulses the line. Under KVM none of this exists:
//! the in-kernel irqchip and PIT serve the same ports.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::control::Control;
use super::{lock, MachineError};
use crate::accel::{InterruptSource, IrqChip};
use crate::devices::clock::{Clock, HostClock};
use crate::devices::pic::{self, Pic8259Pair};
use crate::devices::pit::{Pit, PitChannel2Handle, PIT_BASE, PIT_IRQ, PIT_LEN};
use crate::devices::port61::{Port61, PORT61_BASE, PORT61_LEN};
use crate::devices::{Bus, BusError};

/// The longest the PIT ticker sleeps without looking again (the guest may reprogram it).
const TICKER_MAX_SLEEP: Duration = Duration::from_millis(5);

/// ISA interrupt lines into the PIC pair.
pub struct LegacyIrqChip {
    pic: Arc<Mutex<Pic8259Pair>>,
}

impl IrqChip for LegacyIrqChip {
    fn set_irq(&self, gsi: u32, level: bool) {
        if let Ok(irq) = u8::try_from(gsi) {
            lock(&self.pic).set_irq(irq, level);
        }
    }
}

/// The PIC's INTR/INTA as the software CPU sees them.
pub struct PicInterrupts {
    pic: Arc<Mutex<Pic8259Pair>>,
}

impl InterruptSource for PicInterrupts {
    fn pending(&self) -> bool {
        lock(&self.pic).has_interrupt()
    }

    fn acknowledge(&self) -> u8 {
        lock(&self.pic).acknowledge()
    }
}

/// The legacy interrupt hardware of one power cycle.
pub struct LegacyIrq {
    pic: Arc<Mutex<Pic8259Pair>>,
    pit: Arc<Mutex<Pit>>,
    clock: Arc<dyn Clock>,
}

impl LegacyIrq {
    /// PIC, PIT and port 0x61 on `pio`; a rising INTR kicks the vCPUs of `control`.
    pub fn build(pio: &mut Bus, control: &Arc<Control>) -> Result<Self, BusError> {
        let wake = control.clone();
        let pic = Arc::new(Mutex::new(Pic8259Pair::new(Arc::new(move |level| {
            if level {
                wake.kick_all();
            }
        }))));
        for (port, base, len) in pic::bus_ports(&pic) {
            pio.insert(Arc::new(Mutex::new(port)), u64::from(base), len)?;
        }
        let clock: Arc<dyn Clock> = Arc::new(HostClock::new());
        let pit = Arc::new(Mutex::new(Pit::new(clock.clone())));
        pio.insert(pit.clone(), u64::from(PIT_BASE), PIT_LEN)?;
        let port61 = Port61::new(Arc::new(PitChannel2Handle(pit.clone())));
        pio.insert(
            Arc::new(Mutex::new(port61)),
            u64::from(PORT61_BASE),
            PORT61_LEN,
        )?;
        Ok(LegacyIrq { pic, pit, clock })
    }

    /// The `IrqChip` devices raise their lines on.
    pub fn chip(&self) -> Arc<dyn IrqChip> {
        Arc::new(LegacyIrqChip {
            pic: self.pic.clone(),
        })
    }

    /// INTR/INTA for vCPU 0.
    pub fn interrupt_source(&self) -> Arc<dyn InterruptSource> {
        Arc::new(PicInterrupts {
            pic: self.pic.clone(),
        })
    }

    /// Start the thread that turns the PIT's channel-0 edges into IRQ 0 until `control` stops.
    pub fn spawn_pit_ticker(&self, control: Arc<Control>) -> Result<JoinHandle<()>, MachineError> {
        let (pit, pic, clock) = (self.pit.clone(), self.pic.clone(), self.clock.clone());
        std::thread::Builder::new()
            .name("pit".into())
            .spawn(move || {
                while !control.stopping() {
                    let (edges, next) = {
                        let mut p = lock(&pit);
                        (p.poll_irq0(), p.next_irq0_deadline_ns())
                    };
                    if edges > 0 {
                        let mut pic = lock(&pic);
                        pic.set_irq(PIT_IRQ, true);
                        pic.set_irq(PIT_IRQ, false);
                    }
                    let now = clock.now_ns();
                    let sleep = next
                        .map(|t| Duration::from_nanos(t.saturating_sub(now)))
                        .unwrap_or(TICKER_MAX_SLEEP)
                        .min(TICKER_MAX_SLEEP);
                    control.sleep(sleep);
                }
            })
            .map_err(MachineError::Thread)
    }
}

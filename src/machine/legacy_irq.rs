//! The 8259 PIC pair, the 8254 PIT and port 0x61 the software CPU (and KVM with
//! `kernel-irqchip=off`) needs from the machine, on the port bus as on a PC.
//!
//! [`LegacyIrq::build`] puts them on the port bus; the machine then hands the PIC to the APIC
//! bus (`apic_bus.rs`: ISA lines reach it and the IOAPIC; its INTR reaches the boot CPU through
//! LINT0) and the PIT to the timer thread (`timers.rs`). A rising INTR kicks the vCPUs, so a
//! halted CPU wakes. Under KVM with its in-kernel irqchip none of this exists: KVM's PIC and PIT
//! serve the same ports.

use std::sync::{Arc, Mutex};

use super::control::Control;
use crate::devices::clock::Clock;
use crate::devices::pic::{self, Pic8259Pair};
use crate::devices::pit::{Pit, PitChannel2Handle, PIT_BASE, PIT_LEN};
use crate::devices::port61::{Port61, PORT61_BASE, PORT61_LEN};
use crate::devices::{Bus, BusError};

/// The legacy interrupt hardware of one power cycle.
pub struct LegacyIrq {
    /// The 8259 pair.
    pub pic: Arc<Mutex<Pic8259Pair>>,
    /// The 8254.
    pub pit: Arc<Mutex<Pit>>,
}

impl LegacyIrq {
    /// PIC, PIT (timed by `clock`) and port 0x61 on `pio`; a rising INTR kicks the vCPUs of
    /// `control`.
    pub fn build(
        pio: &mut Bus,
        control: &Arc<Control>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, BusError> {
        let wake = control.clone();
        let pic = Arc::new(Mutex::new(Pic8259Pair::new(Arc::new(move |level| {
            if level {
                wake.kick_all();
            }
        }))));
        for (port, base, len) in pic::bus_ports(&pic) {
            pio.insert(Arc::new(Mutex::new(port)), u64::from(base), len)?;
        }
        let pit = Arc::new(Mutex::new(Pit::new(clock)));
        pio.insert(pit.clone(), u64::from(PIT_BASE), PIT_LEN)?;
        let port61 = Port61::new(Arc::new(PitChannel2Handle(pit.clone())));
        pio.insert(
            Arc::new(Mutex::new(port61)),
            u64::from(PORT61_BASE),
            PORT61_LEN,
        )?;
        Ok(LegacyIrq { pic, pit })
    }
}

//! The device model, shared by both accelerators.
//!
//! A device is a small state machine behind [`BusDevice`]: the machine registers it on a [`Bus`]
//! (port I/O or MMIO) at a range and calls `read`/`write` with the offset inside that range.
//! Devices raise interrupts through an [`IrqLine`] and ask for machine-wide events (exit with a
//! status, reset, power-off) through [`SystemEvents`]; they never know which accelerator runs
//! the guest, and import nothing from `accel/kvm`, `cpu/` or `machine/`.

pub mod acpi_pm;
pub mod bus;
pub mod clock;
pub mod cmos;
pub mod debug_exit;
pub mod debugcon;
pub mod fw_cfg;
pub mod i8042;
pub mod ioapic;
pub mod lapic;
pub mod lapic_timer;
#[cfg(test)]
mod layout_tests;
pub mod pc_testdev;
pub mod pci_bar;
pub mod pci_host;
pub mod pci_testdev;
pub mod pic;
pub mod pit;
pub mod port61;
pub mod port80;
pub mod rom;
pub mod serial;
pub mod virtio;

pub use bus::{Bus, BusError};

/// A device on a bus. Offsets are relative to the start of the range it was registered at.
pub trait BusDevice: Send {
    /// A read of `data.len()` bytes at `offset`. Unimplemented registers read as all ones, like an
    /// undriven ISA/PCI bus.
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let _ = offset;
        data.fill(0xff);
    }
    /// A write of `data.len()` bytes at `offset`. Unimplemented registers ignore writes.
    fn write(&mut self, offset: u64, data: &[u8]) {
        let _ = (offset, data);
    }
}

/// Machine-wide events a device can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemEvent {
    /// End the emulator with this process exit status (isa-debug-exit).
    Exit(i32),
    /// Reset the machine (i8042 pulse, port 0xCF9, ACPI reset register).
    Reset,
    /// Power the machine off (ACPI S5): exit status 0.
    PowerOff,
}

/// Where devices send [`SystemEvent`]s; the machine implements it.
pub trait SystemEvents: Send + Sync {
    /// Ask for `event`; the machine stops or resets its vCPUs promptly.
    fn request(&self, event: SystemEvent);
}

/// One interrupt input of the machine's interrupt controller, as a device sees it.
pub trait IrqLine: Send + Sync {
    /// Drive the line to `level`.
    fn set_level(&self, level: bool);
    /// An edge: raise then lower (ISA edge-triggered devices).
    fn pulse(&self) {
        self.set_level(true);
        self.set_level(false);
    }
}

/// A line that goes nowhere, for devices whose interrupt is not wired.
pub struct NoIrq;

impl IrqLine for NoIrq {
    fn set_level(&self, _level: bool) {}
}

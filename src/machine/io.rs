//! The machine's one [`IoHandler`]: port I/O and MMIO routed to the buses the devices sit on.
//!
//! The local APIC page is the one MMIO range whose device depends on who asks: with the
//! machine's APIC bus attached (software CPU, or KVM with `kernel-irqchip=off`, where the page
//! arrives as `KVM_EXIT_MMIO` on the accessing vCPU's thread), an access there goes to the
//! accessing vCPU's own APIC.

use std::sync::Arc;

use super::apic_bus::ApicBus;
use crate::accel::IoHandler;
use crate::devices::lapic::{LAPIC_BASE, LAPIC_LEN};
use crate::devices::Bus;

/// Both buses of the machine.
pub struct MachineIo {
    /// Port I/O bus (addresses are port numbers).
    pub pio: Bus,
    /// MMIO bus (guest-physical addresses outside RAM).
    pub mmio: Bus,
    /// The per-vCPU local APICs at 0xFEE00000 (None under KVM's in-kernel irqchip).
    pub lapics: Option<Arc<ApicBus>>,
}

impl MachineIo {
    /// The local APICs, if `[addr, addr + len)` lies in the APIC page; with the offset.
    fn lapic_at(&self, addr: u64, len: usize) -> Option<(&ApicBus, u64)> {
        let bus = self.lapics.as_deref()?;
        let off = addr.checked_sub(LAPIC_BASE)?;
        (off.checked_add(len as u64)? <= LAPIC_LEN).then_some((bus, off))
    }
}

impl IoHandler for MachineIo {
    fn pio_read(&self, _vcpu: usize, port: u16, data: &mut [u8]) {
        if !self.pio.read(u64::from(port), data) {
            log::trace!("unassigned port read {port:#x}");
        }
    }

    fn pio_write(&self, _vcpu: usize, port: u16, data: &[u8]) {
        if !self.pio.write(u64::from(port), data) {
            log::trace!("unassigned port write {port:#x} {data:02x?}");
        }
    }

    fn mmio_read(&self, vcpu: usize, addr: u64, data: &mut [u8]) {
        if let Some((lapics, off)) = self.lapic_at(addr, data.len()) {
            return lapics.mmio_read(vcpu, off, data);
        }
        if !self.mmio.read(addr, data) {
            log::debug!("unassigned MMIO read {addr:#x}");
        }
    }

    fn mmio_write(&self, vcpu: usize, addr: u64, data: &[u8]) {
        if let Some((lapics, off)) = self.lapic_at(addr, data.len()) {
            return lapics.mmio_write(vcpu, off, data);
        }
        if !self.mmio.write(addr, data) {
            log::debug!("unassigned MMIO write {addr:#x} {data:02x?}");
        }
    }
}

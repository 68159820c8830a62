//! The machine's one [`IoHandler`]: port I/O and MMIO routed to the buses the devices sit on.

use crate::accel::IoHandler;
use crate::devices::Bus;

/// Both buses of the machine.
pub struct MachineIo {
    /// Port I/O bus (addresses are port numbers).
    pub pio: Bus,
    /// MMIO bus (guest-physical addresses outside RAM).
    pub mmio: Bus,
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

    fn mmio_read(&self, _vcpu: usize, addr: u64, data: &mut [u8]) {
        if !self.mmio.read(addr, data) {
            log::debug!("unassigned MMIO read {addr:#x}");
        }
    }

    fn mmio_write(&self, _vcpu: usize, addr: u64, data: &[u8]) {
        if !self.mmio.write(addr, data) {
            log::debug!("unassigned MMIO write {addr:#x} {data:02x?}");
        }
    }
}

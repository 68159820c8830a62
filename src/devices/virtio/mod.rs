//! virtio 1.x devices on the modern virtio-pci transport.
//!
//! A device type (only [`blk`] so far) implements [`VirtioDevice`]: its feature bits, its
//! queues' maximum sizes, its configuration space, and what to do when the driver notifies a
//! queue. [`pci::VirtioPci`] wraps it into a PCI function (vendor 0x1af4, device 0x1040 + type,
//! revision 1) with one memory BAR holding the common configuration ([`common`]), the ISR, the
//! device configuration and the notification area, and INTx# on an [`IrqLine`](super::IrqLine).
//!
//! Data enters as guest MMIO (register accesses in the BAR) and as descriptor chains in guest
//! RAM, which the `virtio-queue` crate walks; it leaves as guest RAM writes (data, used ring),
//! interrupts, and whatever the device type does on the host (block I/O). Every guest address a
//! device touches goes through `vm-memory`'s checked accessors: a wild descriptor fails that one
//! request, never the host.

pub mod blk;
pub mod common;
pub mod pci;
#[cfg(test)]
mod tests;

pub use virtio_queue::{Queue, QueueOwnedT, QueueT};

use crate::accel::GuestRam;

/// Feature bit: the device follows virtio 1.0+ (mandatory on the modern transport).
pub const F_VERSION_1: u64 = 1 << 32;
/// Feature bit: descriptors may point at indirect descriptor tables.
pub const F_RING_INDIRECT_DESC: u64 = 1 << 28;
/// Feature bit: used/avail event indexes suppress notifications and interrupts.
pub const F_RING_EVENT_IDX: u64 = 1 << 29;

/// Device status: the guest found the device.
pub const STATUS_ACKNOWLEDGE: u8 = 1;
/// Device status: the guest has a driver for it.
pub const STATUS_DRIVER: u8 = 2;
/// Device status: the driver is ready; queues may be used.
pub const STATUS_DRIVER_OK: u8 = 4;
/// Device status: feature negotiation is complete (the device clears it to refuse the set).
pub const STATUS_FEATURES_OK: u8 = 8;
/// Device status: the device hit an error it cannot recover from until reset.
pub const STATUS_DEVICE_NEEDS_RESET: u8 = 0x40;
/// Device status: the driver gave up on the device.
pub const STATUS_FAILED: u8 = 0x80;

/// ISR bit: a queue has new used buffers.
pub const ISR_QUEUE: u8 = 1;
/// ISR bit: the device configuration (or status) changed.
pub const ISR_CONFIG: u8 = 2;

/// A queue the device cannot use any more (its rings are outside RAM, its indexes are
/// nonsense): the transport marks the device as needing a reset.
#[derive(Debug, thiserror::Error)]
#[error("virtqueue {queue}: {what}")]
pub struct QueueFault {
    /// The queue's index.
    pub queue: usize,
    /// What went wrong.
    pub what: String,
}

/// One virtio device type, behind the transport.
pub trait VirtioDevice: Send {
    /// The virtio device type (2 = block); the PCI device ID is 0x1040 plus it.
    fn device_type(&self) -> u16;
    /// The PCI class code (class, subclass, prog-if as 0xCCSSPP).
    fn pci_class(&self) -> u32;
    /// Every feature bit the device offers, [`F_VERSION_1`] included.
    fn features(&self) -> u64;
    /// The maximum size of each of its queues (powers of two); the length is the queue count.
    fn queue_max_sizes(&self) -> Vec<u16>;
    /// Read the device-specific configuration at `offset`; bytes past its end read as zero.
    fn config_read(&self, offset: u64, data: &mut [u8]);
    /// Write the device-specific configuration (most fields are read-only).
    fn config_write(&mut self, offset: u64, data: &[u8]) {
        let _ = (offset, data);
    }
    /// The driver set DRIVER_OK with these negotiated features.
    fn activate(&mut self, features: u64) {
        let _ = features;
    }
    /// The driver notified queue `index`: serve what it made available. Returns whether the
    /// driver should get an interrupt (used buffers added and not suppressed).
    fn process_queue(
        &mut self,
        index: usize,
        queue: &mut Queue,
        mem: &GuestRam,
    ) -> Result<bool, QueueFault>;
    /// The driver reset the device (status 0): forget negotiated state.
    fn reset(&mut self) {}
}

/// Copy the bytes of a little-endian configuration image at `offset` into `data`; bytes
/// outside the image read as zero.
pub fn read_config_image(image: &[u8], offset: u64, data: &mut [u8]) {
    for (i, d) in data.iter_mut().enumerate() {
        *d = usize::try_from(offset)
            .ok()
            .and_then(|o| o.checked_add(i))
            .and_then(|at| image.get(at))
            .copied()
            .unwrap_or(0);
    }
}

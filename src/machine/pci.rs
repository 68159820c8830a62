//! The machine's PCI functions: which slot each gets, where its BARs go, and which GSI its INTx#
//! pin is routed to. The machine plays the firmware here: it places every BAR in the PCI hole
//! and writes the routed IRQ into each function's interrupt line register before the guest runs,
//! and the DSDT's `_PRT` (`machine::acpi`) describes the same routing, so a stock Linux needs
//! no `pci=` parameters.
//!
//! INTx routing, as on the PIIX (pin A = 0 .. pin D = 3):
//!
//! ```text
//! PIRQ = (slot + pin) mod 4          PIRQ A, B, C, D  →  GSI 10, 11, 10, 11
//! ```
//!
//! so slot 1 INTA# is GSI 11, slot 2 INTA# GSI 10, slot 3 INTA# GSI 11, ... Lines 10 and 11 are
//! free ISA IRQs on this machine (serial 4, keyboard 1/12, RTC 8, SCI 9), and being below 16
//! they reach both the 8259s (the software CPU's PIC) and the IOAPIC (KVM's in-kernel irqchip
//! routes GSIs 0-15 to both). PCI interrupts are level-triggered and shared.
//!
//! Data enters as the opened disks and their configs; it leaves as functions on the PCI host
//! and one [`PciMmioWindow`] on the MMIO bus covering the hole `[MMIO_HOLE_START, IOAPIC_ADDR)`.

use std::sync::{Arc, Mutex};

use super::config::DriveConfig;
use super::drive::SharedDisk;
use super::io::MachineIo;
use super::memory::{IOAPIC_ADDR, MMIO_HOLE_START};
use super::pc::{bus_err, line};
use super::{lock, MachineError};
use crate::accel::{CodeWatch, GuestRam, IrqChip};
use crate::devices::pci_bar::{BarAllocator, PciMmioWindow};
use crate::devices::pci_host::{PciHost, SharedPciDevice};
use crate::devices::virtio::blk::VirtioBlk;
use crate::devices::virtio::pci::VirtioPci;

/// GSI of each PIRQ line A..D.
pub const PIRQ_GSI: [u32; 4] = [10, 11, 10, 11];

/// The GSI that INTx# pin `pin` (0 = INTA# .. 3 = INTD#) of PCI slot `slot` is routed to.
pub fn intx_gsi(slot: u8, pin: u8) -> u32 {
    PIRQ_GSI[usize::from((slot & 0x1f) + (pin & 3)) % 4]
}

fn pci_err(e: impl std::fmt::Display) -> MachineError {
    MachineError::Failed(format!("PCI layout: {e}"))
}

/// Plug one virtio-blk function per disk into `pci` (lowest free slots, in order), place
/// their BARs and serve the PCI hole on `io`'s MMIO bus.
pub fn add_disks(
    io: &mut MachineIo,
    pci: &Arc<Mutex<PciHost>>,
    chip: &Arc<dyn IrqChip>,
    ram: &Arc<GuestRam>,
    code: &Arc<CodeWatch>,
    disks: &[SharedDisk],
    configs: &[DriveConfig],
) -> Result<(), MachineError> {
    let mut alloc = BarAllocator::new(MMIO_HOLE_START, IOAPIC_ADDR);
    let mut functions: Vec<SharedPciDevice> = Vec::new();
    for (i, (disk, cfg)) in disks.iter().zip(configs).enumerate() {
        let mut host = lock(pci);
        let slot = host.free_slot().map_err(pci_err)?;
        let gsi = intx_gsi(slot, 0);
        let id = format!("kemu-disk{i}");
        let blk = VirtioBlk::new(Box::new(disk.clone()), cfg.read_only, cfg.cache, &id)
            .announcing_dma_to(code.clone());
        let mut dev = VirtioPci::new(Box::new(blk), line(chip, gsi), gsi as u8, ram.clone())
            .map_err(pci_err)?;
        let bar = dev.place(&mut alloc).map_err(pci_err)?;
        log::info!(
            "virtio-blk {} at 00:{slot:02x}.0, BAR0 {bar:#x}, GSI {gsi}",
            cfg.path.display()
        );
        let dev = Arc::new(Mutex::new(dev));
        host.add_device(slot, 0, dev.clone()).map_err(pci_err)?;
        functions.push(dev);
    }
    if functions.is_empty() {
        // No window to serve; pci-testdev's fixed BARs sit on the bus by themselves.
        return Ok(());
    }
    let window = PciMmioWindow::new(MMIO_HOLE_START, functions).shared();
    io.mmio
        .insert(window, MMIO_HOLE_START, IOAPIC_ADDR - MMIO_HOLE_START)
        .map_err(bus_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_table_rotates_pins_by_slot() {
        assert_eq!(intx_gsi(0, 0), 10);
        assert_eq!(intx_gsi(1, 0), 11);
        assert_eq!(intx_gsi(2, 0), 10);
        assert_eq!(intx_gsi(1, 1), 10);
        assert_eq!(intx_gsi(31, 3), 10);
    }
}

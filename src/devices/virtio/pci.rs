//! The modern virtio-pci transport (virtio 1.0 §4.1): a PCI function whose one memory BAR holds
//! every virtio structure, found through vendor capabilities in configuration space.
//!
//! BAR 0 (32-bit memory, [`BAR_SIZE`] bytes):
//!
//! | offset           | structure                | capability type |
//! |------------------|--------------------------|-----------------|
//! | [`COMMON_OFFSET`] | common configuration     | 1 (COMMON_CFG)  |
//! | [`ISR_OFFSET`]    | ISR status (read clears) | 3 (ISR_CFG)     |
//! | [`DEVICE_OFFSET`] | device configuration     | 4 (DEVICE_CFG)  |
//! | [`NOTIFY_OFFSET`] | queue N's doorbell at N × [`NOTIFY_MULTIPLIER`] | 2 (NOTIFY_CFG) |
//!
//! A fifth capability (PCI_CFG, type 5) is the window the spec requires for drivers that cannot
//! map the BAR: its `bar`/`offset`/`length` select a register and its data dword accesses it.
//!
//! Data enters as configuration-space accesses (from the PCI host) and BAR accesses (from the
//! MMIO window). A doorbell write serves the queue at once, on the writing vCPU's thread
//! (requests complete before the guest's notify instruction does); interrupts leave as INTx#
//! (pin A) on the [`IrqLine`] the machine routed, held high while the ISR is non-zero and
//! lowered when the driver reads it. There is no MSI-X: vector registers read 0xffff.

use std::sync::Arc;

use super::common::{CommonConfig, CommonState, Effect, COMMON_CFG_LEN};
use super::{QueueFault, VirtioDevice, ISR_CONFIG, ISR_QUEUE};
use crate::accel::GuestRam;
use crate::devices::pci_bar::{BarAllocator, PciBarError, COMMAND_BUS_MASTER, COMMAND_MEMORY};
use crate::devices::pci_host::{ConfigSpace, PciDevice, SUBSYSTEM_ID, SUBSYSTEM_VENDOR_ID};
use crate::devices::IrqLine;

/// The virtio PCI vendor ID (Red Hat / Qumranet).
pub const VIRTIO_VENDOR: u16 = 0x1af4;
/// Modern virtio device IDs are this plus the device type.
pub const VIRTIO_DEVICE_BASE: u16 = 0x1040;
/// Modern devices have revision 1 or more.
pub const VIRTIO_REVISION: u8 = 1;
/// Subsystem ID (QEMU's; any value >= 0x40 marks a modern-only device).
pub const VIRTIO_SUBSYSTEM: u16 = 0x1100;

/// Size of BAR 0.
pub const BAR_SIZE: u64 = 0x4000;
/// Offset of the common configuration in BAR 0.
pub const COMMON_OFFSET: u64 = 0x0000;
/// Offset of the ISR byte in BAR 0.
pub const ISR_OFFSET: u64 = 0x1000;
/// Offset of the device configuration in BAR 0.
pub const DEVICE_OFFSET: u64 = 0x2000;
/// Size of the device configuration window.
pub const DEVICE_LEN: u64 = 0x1000;
/// Offset of the notification area in BAR 0.
pub const NOTIFY_OFFSET: u64 = 0x3000;
/// Bytes between two queues' doorbells.
pub const NOTIFY_MULTIPLIER: u32 = 4;

/// PCI capability ID of vendor-specific capabilities (virtio's).
const CAP_VENDOR: u8 = 0x09;
const CFG_COMMON: u8 = 1;
const CFG_NOTIFY: u8 = 2;
const CFG_ISR: u8 = 3;
const CFG_DEVICE: u8 = 4;
const CFG_PCI: u8 = 5;

/// The guest-visible transport state, for snapshots (the device type keeps its own; a block
/// device has none beyond its disk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtioPciState {
    /// Configuration space (BARs, command, capabilities' writable bytes).
    pub config: ConfigSpace,
    /// Common configuration and queues.
    pub common: CommonState,
    /// ISR bits not yet read.
    pub isr: u8,
}

/// A virtio device on the modern PCI transport.
pub struct VirtioPci {
    cfg: ConfigSpace,
    /// The configuration space as the firmware (the machine) left it, for a machine reset.
    placed: ConfigSpace,
    device: Box<dyn VirtioDevice>,
    common: CommonConfig,
    isr: u8,
    irq: Arc<dyn IrqLine>,
    irq_level: bool,
    mem: Arc<GuestRam>,
    /// Offset of the PCI_CFG capability.
    pci_cfg_cap: usize,
}

impl VirtioPci {
    /// Wrap `device`; its interrupt is `irq`, routed as IRQ `irq_number` (written into the
    /// interrupt line register), and its queues live in `mem`.
    pub fn new(
        device: Box<dyn VirtioDevice>,
        irq: Arc<dyn IrqLine>,
        irq_number: u8,
        mem: Arc<GuestRam>,
    ) -> Result<Self, PciBarError> {
        let mut cfg = ConfigSpace::new(
            VIRTIO_VENDOR,
            VIRTIO_DEVICE_BASE + device.device_type(),
            device.pci_class(),
            VIRTIO_REVISION,
        );
        cfg.set_u16(SUBSYSTEM_VENDOR_ID, VIRTIO_VENDOR);
        cfg.set_u16(SUBSYSTEM_ID, VIRTIO_SUBSYSTEM);
        cfg.add_mem_bar(0, BAR_SIZE, false)?;
        cfg.set_interrupt(1, irq_number);
        let queues = device.queue_max_sizes();
        let notify_len = (queues.len() as u64 * u64::from(NOTIFY_MULTIPLIER)).max(4);
        cfg.add_capability(&virtio_cap(CFG_COMMON, COMMON_OFFSET, COMMON_CFG_LEN), &[])?;
        let mut notify = virtio_cap(CFG_NOTIFY, NOTIFY_OFFSET, notify_len);
        notify.extend_from_slice(&NOTIFY_MULTIPLIER.to_le_bytes());
        notify[2] = notify.len() as u8;
        cfg.add_capability(&notify, &[])?;
        cfg.add_capability(&virtio_cap(CFG_ISR, ISR_OFFSET, 1), &[])?;
        cfg.add_capability(&virtio_cap(CFG_DEVICE, DEVICE_OFFSET, DEVICE_LEN), &[])?;
        // PCI_CFG: bar (byte 4), offset (8..12), length (12..16) and data (16..20) writable.
        let mut pci = virtio_cap(CFG_PCI, 0, 0);
        pci.extend_from_slice(&[0; 4]);
        pci[2] = pci.len() as u8;
        let mut wm = vec![0u8; pci.len()];
        wm[4] = 0xff;
        wm[8..].fill(0xff);
        let pci_cfg_cap = cfg.add_capability(&pci, &wm)?;
        let common = CommonConfig::new(device.features(), &queues);
        Ok(Self {
            placed: cfg.clone(),
            cfg,
            device,
            common,
            isr: 0,
            irq,
            irq_level: false,
            mem,
            pci_cfg_cap,
        })
    }

    /// Do what firmware does: place BAR 0 from `alloc`, enable memory decoding and bus
    /// mastering. Returns the BAR's address.
    pub fn place(&mut self, alloc: &mut BarAllocator) -> Result<u64, PciBarError> {
        let addr = alloc.alloc(BAR_SIZE)?;
        self.cfg.set_mem_bar_address(0, addr);
        self.cfg.set_command(COMMAND_MEMORY | COMMAND_BUS_MASTER);
        self.placed = self.cfg.clone();
        Ok(addr)
    }

    /// The transport's state, for a snapshot.
    pub fn state(&self) -> VirtioPciState {
        VirtioPciState {
            config: self.cfg.clone(),
            common: self.common.state(),
            isr: self.isr,
        }
    }

    /// Restore a snapshot of the same device type; INTx is driven to match the restored ISR.
    pub fn restore(&mut self, state: &VirtioPciState) -> Result<(), QueueFault> {
        if state.config.bytes.len() != self.cfg.bytes.len()
            || state.config.wmask.len() != self.cfg.wmask.len()
        {
            return Err(QueueFault {
                queue: 0,
                what: "snapshot configuration space has the wrong size".into(),
            });
        }
        self.common.restore(&state.common)?;
        self.cfg = state.config.clone();
        self.isr = state.isr;
        self.irq_level = !self.irq_level_wanted();
        self.update_irq();
        Ok(())
    }

    fn irq_level_wanted(&self) -> bool {
        self.isr != 0 && !self.cfg.intx_disabled()
    }

    /// The configuration space (for tests and `info pci`).
    pub fn config(&self) -> &ConfigSpace {
        &self.cfg
    }

    fn update_irq(&mut self) {
        let level = self.irq_level_wanted();
        self.cfg.set_interrupt_status(self.isr != 0);
        if level != self.irq_level {
            self.irq_level = level;
            self.irq.set_level(level);
        }
    }

    fn reset_device(&mut self) {
        self.device.reset();
        self.isr = 0;
        self.update_irq();
    }

    /// A read at `offset` inside BAR 0.
    pub fn bar_read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let Some(off) = within(offset, data.len(), COMMON_OFFSET, COMMON_CFG_LEN) {
            self.common.read(off, data);
        } else if within(offset, data.len(), ISR_OFFSET, 4).is_some() {
            if offset == ISR_OFFSET {
                data[0] = self.isr;
                self.isr = 0;
                self.update_irq();
            }
        } else if let Some(off) = within(offset, data.len(), DEVICE_OFFSET, DEVICE_LEN) {
            self.device.config_read(off, data);
        }
    }

    /// A write at `offset` inside BAR 0.
    pub fn bar_write(&mut self, offset: u64, data: &[u8]) {
        if let Some(off) = within(offset, data.len(), COMMON_OFFSET, COMMON_CFG_LEN) {
            match self
                .common
                .write(off, data, self.device.as_mut(), &self.mem)
            {
                Effect::None => {}
                Effect::Reset => self.reset_device(),
                Effect::NeedsReset => self.signal(ISR_CONFIG),
            }
        } else if let Some(off) = within(offset, data.len(), DEVICE_OFFSET, DEVICE_LEN) {
            self.device.config_write(off, data);
        } else if let Some(off) = within(offset, data.len(), NOTIFY_OFFSET, 0x1000) {
            self.notify((off / u64::from(NOTIFY_MULTIPLIER)) as usize);
        }
    }

    fn signal(&mut self, bits: u8) {
        self.isr |= bits;
        self.update_irq();
    }

    /// The driver rang queue `index`'s doorbell.
    fn notify(&mut self, index: usize) {
        let Some(queue) = self.common.live_queue(index) else {
            return;
        };
        match self.device.process_queue(index, queue, &self.mem) {
            Ok(true) => self.signal(ISR_QUEUE),
            Ok(false) => {}
            Err(e) => {
                log::warn!("virtio: {e}; the device needs a reset");
                self.common.set_needs_reset();
                self.signal(ISR_CONFIG);
            }
        }
    }

    /// A PCI_CFG data access: the capability's bar/offset/length pick the BAR register.
    fn pci_cfg_window(&self) -> Option<(u64, usize)> {
        let c = &self.cfg.bytes[self.pci_cfg_cap..];
        let bar = c[4];
        let off = u32::from_le_bytes([c[8], c[9], c[10], c[11]]);
        let len = u32::from_le_bytes([c[12], c[13], c[14], c[15]]) as usize;
        (bar == 0 && matches!(len, 1 | 2 | 4)).then_some((u64::from(off), len))
    }

    fn is_pci_cfg_data(&self, offset: u16, len: usize) -> bool {
        let data = self.pci_cfg_cap + 16;
        usize::from(offset) >= data && usize::from(offset) + len <= data + 4
    }
}

/// The offset inside `[base, base + len)` of an access of `size` bytes at `offset`, if it fits.
fn within(offset: u64, size: usize, base: u64, len: u64) -> Option<u64> {
    let off = offset.checked_sub(base)?;
    (off.checked_add(size as u64)? <= len).then_some(off)
}

/// A virtio_pci_cap for BAR 0: `[id, next, len, type, bar, id, pad, pad, offset, length]`.
fn virtio_cap(cfg_type: u8, offset: u64, len: u64) -> Vec<u8> {
    let mut c = vec![CAP_VENDOR, 0, 16, cfg_type, 0, 0, 0, 0];
    c.extend_from_slice(&(offset as u32).to_le_bytes());
    c.extend_from_slice(&(len as u32).to_le_bytes());
    c
}

impl PciDevice for VirtioPci {
    fn config_read(&mut self, offset: u16, data: &mut [u8]) {
        if self.is_pci_cfg_data(offset, data.len()) {
            data.fill(0);
            if let Some((off, len)) = self.pci_cfg_window() {
                let mut tmp = [0u8; 4];
                self.bar_read(off, &mut tmp[..len]);
                let at = usize::from(offset) - (self.pci_cfg_cap + 16);
                for (i, d) in data.iter_mut().enumerate() {
                    *d = tmp.get(at + i).copied().unwrap_or(0);
                }
            }
            return;
        }
        self.cfg.read(offset, data);
    }

    fn config_write(&mut self, offset: u16, data: &[u8]) {
        self.cfg.write(offset, data);
        if self.is_pci_cfg_data(offset, data.len()) {
            if let Some((off, len)) = self.pci_cfg_window() {
                let at = self.pci_cfg_cap + 16;
                let bytes = self.cfg.bytes[at..at + len].to_vec();
                self.bar_write(off, &bytes);
            }
        }
        self.update_irq();
    }

    fn reset(&mut self) {
        self.cfg = self.placed.clone();
        self.common.reset();
        self.reset_device();
    }

    fn mmio_read(&mut self, addr: u64, data: &mut [u8]) -> bool {
        match self.cfg.decode_mem_bar(0, BAR_SIZE, addr) {
            Some(off) => {
                self.bar_read(off, data);
                true
            }
            None => false,
        }
    }

    fn mmio_write(&mut self, addr: u64, data: &[u8]) -> bool {
        match self.cfg.decode_mem_bar(0, BAR_SIZE, addr) {
            Some(off) => {
                self.bar_write(off, data);
                true
            }
            None => false,
        }
    }
}

//! The virtio-pci common configuration structure: feature negotiation, device status and queue
//! setup, independent of where the structure is mapped.
//!
//! Data enters as register reads and writes at offsets inside the 0x38-byte structure (virtio
//! 1.0 §4.1.4.3); it leaves as register values, as the [`Queue`]s it configures (which the
//! transport hands to the device on a notification) and as an [`Effect`] telling the transport
//! to reset the device or to signal an error.
//!
//! | offset | field                    | width |
//! |--------|--------------------------|-------|
//! | 0x00   | device_feature_select    | 4     |
//! | 0x04   | device_feature (RO)      | 4     |
//! | 0x08   | driver_feature_select    | 4     |
//! | 0x0c   | driver_feature           | 4     |
//! | 0x10   | msix_config              | 2     |
//! | 0x12   | num_queues (RO)          | 2     |
//! | 0x14   | device_status            | 1     |
//! | 0x15   | config_generation (RO)   | 1     |
//! | 0x16   | queue_select             | 2     |
//! | 0x18   | queue_size               | 2     |
//! | 0x1a   | queue_msix_vector        | 2     |
//! | 0x1c   | queue_enable             | 2     |
//! | 0x1e   | queue_notify_off (RO)    | 2     |
//! | 0x20   | queue_desc               | 8     |
//! | 0x28   | queue_driver (avail)     | 8     |
//! | 0x30   | queue_device (used)      | 8     |

use vm_memory::GuestMemoryBackend;

use super::{
    Queue, QueueFault, QueueT, VirtioDevice, F_RING_EVENT_IDX, F_VERSION_1,
    STATUS_DEVICE_NEEDS_RESET, STATUS_DRIVER_OK, STATUS_FEATURES_OK,
};
use crate::accel::GuestRam;

/// Size of the common configuration structure.
pub const COMMON_CFG_LEN: u64 = 0x38;
/// MSI-X vector value meaning "none" (we have no MSI-X: every vector write reads back this).
pub const NO_VECTOR: u16 = 0xffff;

/// What the transport must do after a register write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Nothing beyond the register change.
    None,
    /// The driver wrote status 0: reset the device, clear the ISR, lower INTx.
    Reset,
    /// The driver set up something unusable: the device now needs a reset (config interrupt).
    NeedsReset,
}

/// The guest-visible state of [`CommonConfig`], for snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommonState {
    /// device_feature_select.
    pub device_feature_select: u32,
    /// driver_feature_select.
    pub driver_feature_select: u32,
    /// The features the driver wrote (both halves).
    pub driver_features: u64,
    /// device_status.
    pub status: u8,
    /// queue_select.
    pub queue_select: u16,
    /// Each queue's configuration and ring positions.
    pub queues: Vec<virtio_queue::QueueState>,
}

/// The common configuration registers and the queues they describe.
pub struct CommonConfig {
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    status: u8,
    queue_select: u16,
    queues: Vec<Queue>,
    offered: u64,
}

impl CommonConfig {
    /// Registers for a device offering `offered` features with queues of these maximum sizes.
    /// A size the `virtio-queue` crate refuses (not a power of two) becomes 256.
    pub fn new(offered: u64, max_sizes: &[u16]) -> Self {
        let queues = max_sizes
            .iter()
            .map(|&m| Queue::new(m).or_else(|_| Queue::new(256)))
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_default();
        Self {
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            status: 0,
            queue_select: 0,
            queues,
            offered,
        }
    }

    /// Back to the state after power-on (the driver wrote status 0).
    pub fn reset(&mut self) {
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.driver_features = 0;
        self.status = 0;
        self.queue_select = 0;
        for q in &mut self.queues {
            q.reset();
        }
    }

    /// The registers and queues, for a snapshot.
    pub fn state(&self) -> CommonState {
        CommonState {
            device_feature_select: self.device_feature_select,
            driver_feature_select: self.driver_feature_select,
            driver_features: self.driver_features,
            status: self.status,
            queue_select: self.queue_select,
            queues: self.queues.iter().map(Queue::state).collect(),
        }
    }

    /// Restore a snapshot taken by [`CommonConfig::state`] of the same device type. A state
    /// whose queues the crate rejects (or with another queue count) is refused as a whole.
    pub fn restore(&mut self, state: &CommonState) -> Result<(), QueueFault> {
        if state.queues.len() != self.queues.len() {
            return Err(QueueFault {
                queue: state.queues.len(),
                what: format!(
                    "snapshot has {} queues, device has {}",
                    state.queues.len(),
                    self.queues.len()
                ),
            });
        }
        let queues = state
            .queues
            .iter()
            .enumerate()
            .map(|(i, q)| {
                Queue::try_from(*q).map_err(|e| QueueFault {
                    queue: i,
                    what: format!("snapshot state refused: {e}"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.device_feature_select = state.device_feature_select;
        self.driver_feature_select = state.driver_feature_select;
        self.driver_features = state.driver_features;
        self.status = state.status;
        self.queue_select = state.queue_select;
        self.queues = queues;
        Ok(())
    }

    /// The device status register.
    pub fn status(&self) -> u8 {
        self.status
    }

    /// Mark the device as needing a reset (it stops serving queues until then).
    pub fn set_needs_reset(&mut self) {
        self.status |= STATUS_DEVICE_NEEDS_RESET;
    }

    /// The features both sides agreed on.
    pub fn negotiated(&self) -> u64 {
        self.driver_features & self.offered
    }

    /// Number of queues.
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// Queue `index` if the driver may use it now (DRIVER_OK, no error, queue enabled).
    pub fn live_queue(&mut self, index: usize) -> Option<&mut Queue> {
        let ok =
            self.status & STATUS_DRIVER_OK != 0 && self.status & STATUS_DEVICE_NEEDS_RESET == 0;
        self.queues.get_mut(index).filter(|q| ok && q.ready())
    }

    fn selected(&self) -> Option<&Queue> {
        self.queues.get(usize::from(self.queue_select))
    }

    /// The structure as bytes (little endian), for reads of any width.
    fn image(&self) -> [u8; COMMON_CFG_LEN as usize] {
        let mut b = [0u8; COMMON_CFG_LEN as usize];
        let mut put = |at: usize, v: &[u8]| b[at..at + v.len()].copy_from_slice(v);
        put(0x00, &self.device_feature_select.to_le_bytes());
        let dev_features = match self.device_feature_select {
            0 => self.offered as u32,
            1 => (self.offered >> 32) as u32,
            _ => 0,
        };
        put(0x04, &dev_features.to_le_bytes());
        put(0x08, &self.driver_feature_select.to_le_bytes());
        let drv_features = match self.driver_feature_select {
            0 => self.driver_features as u32,
            1 => (self.driver_features >> 32) as u32,
            _ => 0,
        };
        put(0x0c, &drv_features.to_le_bytes());
        put(0x10, &NO_VECTOR.to_le_bytes());
        put(0x12, &(self.queues.len() as u16).to_le_bytes());
        put(0x14, &[self.status, 0]);
        put(0x16, &self.queue_select.to_le_bytes());
        if let Some(q) = self.selected() {
            put(0x18, &q.size().to_le_bytes());
            put(0x1a, &NO_VECTOR.to_le_bytes());
            put(0x1c, &u16::from(q.ready()).to_le_bytes());
            put(0x1e, &self.queue_select.to_le_bytes());
            put(0x20, &q.desc_table().to_le_bytes());
            put(0x28, &q.avail_ring().to_le_bytes());
            put(0x30, &q.used_ring().to_le_bytes());
        }
        b
    }

    /// A read of `data.len()` bytes at `offset`.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        super::read_config_image(&self.image(), offset, data);
    }

    /// A write of `data` at `offset`. `device` hears about DRIVER_OK; `mem` checks the rings of
    /// a queue being enabled.
    pub fn write(
        &mut self,
        offset: u64,
        data: &[u8],
        device: &mut dyn VirtioDevice,
        mem: &GuestRam,
    ) -> Effect {
        let mut v = [0u8; 8];
        v[..data.len().min(8)].copy_from_slice(&data[..data.len().min(8)]);
        let v32 = u32::from_le_bytes([v[0], v[1], v[2], v[3]]);
        let v16 = u16::from_le_bytes([v[0], v[1]]);
        match (offset, data.len()) {
            (0x00, 4) => self.device_feature_select = v32,
            (0x08, 4) => self.driver_feature_select = v32,
            (0x0c, 4) => self.write_driver_features(v32),
            (0x10, 2) | (0x1a, 2) => {} // no MSI-X: vectors stay NO_VECTOR
            (0x14, 1) => return self.write_status(v[0], device),
            (0x16, 2) => self.queue_select = v16,
            (0x18, 2) => {
                if let Some(q) = self.configurable_queue() {
                    if q.try_set_size(v16).is_err() {
                        log::debug!("virtio: queue size {v16} refused");
                    }
                }
            }
            (0x1c, 2) => return self.enable_queue(v16, mem),
            (0x20..=0x37, 4) | (0x20 | 0x28 | 0x30, 8) => self.write_queue_address(offset, data),
            _ => log::debug!("virtio common cfg: ignored write {offset:#x} {data:02x?}"),
        }
        Effect::None
    }

    fn write_driver_features(&mut self, v: u32) {
        // Features are fixed once FEATURES_OK is set.
        if self.status & STATUS_FEATURES_OK != 0 {
            return;
        }
        match self.driver_feature_select {
            0 => self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(v),
            1 => {
                self.driver_features = (self.driver_features & 0xffff_ffff) | (u64::from(v) << 32);
            }
            _ => {}
        }
    }

    fn write_status(&mut self, v: u8, device: &mut dyn VirtioDevice) -> Effect {
        if v == 0 {
            self.reset();
            return Effect::Reset;
        }
        let old = self.status;
        let mut new = v | (old & STATUS_DEVICE_NEEDS_RESET);
        if new & STATUS_FEATURES_OK != 0 && old & STATUS_FEATURES_OK == 0 {
            let unknown = self.driver_features & !self.offered;
            if unknown != 0 || self.driver_features & F_VERSION_1 == 0 {
                log::debug!(
                    "virtio: refusing features {:#x} (offered {:#x}, VERSION_1 required)",
                    self.driver_features,
                    self.offered
                );
                new &= !STATUS_FEATURES_OK;
            }
        }
        self.status = new;
        if new & STATUS_DRIVER_OK != 0 && old & STATUS_DRIVER_OK == 0 {
            let event_idx = self.negotiated() & F_RING_EVENT_IDX != 0;
            for q in &mut self.queues {
                q.set_event_idx(event_idx);
            }
            device.activate(self.negotiated());
        }
        Effect::None
    }

    /// The selected queue, if it may still be configured (not enabled yet).
    fn configurable_queue(&mut self) -> Option<&mut Queue> {
        self.queues
            .get_mut(usize::from(self.queue_select))
            .filter(|q| !q.ready())
    }

    fn enable_queue(&mut self, v: u16, mem: &GuestRam) -> Effect {
        if v != 1 {
            return Effect::None; // only 1 is defined; disabling needs a reset
        }
        let event_idx = self.negotiated() & F_RING_EVENT_IDX != 0;
        let Some(q) = self.configurable_queue() else {
            return Effect::None;
        };
        q.set_event_idx(event_idx);
        q.set_ready(true);
        if !q.is_valid(mem) || !rings_in_ram(q, mem) {
            log::warn!("virtio: queue enabled with rings outside guest RAM; device needs reset");
            q.set_ready(false);
            self.set_needs_reset();
            return Effect::NeedsReset;
        }
        Effect::None
    }

    fn write_queue_address(&mut self, offset: u64, data: &[u8]) {
        let Some(q) = self.configurable_queue() else {
            return;
        };
        let field = offset & !7;
        let high_half = offset & 4 != 0;
        let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let (low, high) = match (data.len(), high_half) {
            (8, _) => (Some(word(&data[..4])), Some(word(&data[4..]))),
            (_, false) => (Some(word(data)), None),
            (_, true) => (None, Some(word(data))),
        };
        match field {
            0x20 => q.set_desc_table_address(low, high),
            0x28 => q.set_avail_ring_address(low, high),
            0x30 => q.set_used_ring_address(low, high),
            _ => {}
        }
    }
}

/// The crate's `is_valid` checks the rings' extents; also refuse a ring that straddles the end
/// of a RAM region (the crate reads ring entries one by one, so that would fail later).
fn rings_in_ram(q: &Queue, mem: &GuestRam) -> bool {
    let n = u64::from(q.size());
    let ranges = [
        (q.desc_table(), 16 * n),
        (q.avail_ring(), 6 + 2 * n),
        (q.used_ring(), 6 + 8 * n),
    ];
    ranges.iter().all(|&(addr, len)| {
        GuestMemoryBackend::check_range(mem, vm_memory::GuestAddress(addr), len as usize)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dummy {
        activated: Option<u64>,
    }

    impl VirtioDevice for Dummy {
        fn device_type(&self) -> u16 {
            2
        }
        fn pci_class(&self) -> u32 {
            0
        }
        fn features(&self) -> u64 {
            F_VERSION_1 | 1
        }
        fn queue_max_sizes(&self) -> Vec<u16> {
            vec![16]
        }
        fn config_read(&self, _offset: u64, data: &mut [u8]) {
            data.fill(0);
        }
        fn activate(&mut self, features: u64) {
            self.activated = Some(features);
        }
        fn process_queue(
            &mut self,
            _index: usize,
            _queue: &mut Queue,
            _mem: &GuestRam,
        ) -> Result<bool, QueueFault> {
            Ok(false)
        }
    }

    fn ram() -> GuestRam {
        GuestRam::from_ranges(&[(vm_memory::GuestAddress(0), 0x10000)]).unwrap()
    }

    fn r32(c: &CommonConfig, off: u64) -> u32 {
        let mut d = [0u8; 4];
        c.read(off, &mut d);
        u32::from_le_bytes(d)
    }

    #[test]
    fn negotiation_requires_version_1_and_known_bits() {
        let mem = ram();
        let mut d = Dummy { activated: None };
        let mut c = CommonConfig::new(d.features(), &d.queue_max_sizes());
        c.write(0, &1u32.to_le_bytes(), &mut d, &mem);
        assert_eq!(r32(&c, 4), 1);
        c.write(0, &0u32.to_le_bytes(), &mut d, &mem);
        assert_eq!(r32(&c, 4), 1);
        // Without VERSION_1 FEATURES_OK does not stick.
        c.write(0x0c, &1u32.to_le_bytes(), &mut d, &mem);
        c.write(0x14, &[1 | 2 | STATUS_FEATURES_OK], &mut d, &mem);
        assert_eq!(c.status() & STATUS_FEATURES_OK, 0);
        assert_eq!(c.write(0x14, &[0], &mut d, &mem), Effect::Reset);
        // An unoffered bit is refused too.
        c.write(0x08, &1u32.to_le_bytes(), &mut d, &mem);
        c.write(0x0c, &1u32.to_le_bytes(), &mut d, &mem);
        c.write(0x08, &0u32.to_le_bytes(), &mut d, &mem);
        c.write(0x0c, &3u32.to_le_bytes(), &mut d, &mem);
        c.write(0x14, &[1 | 2 | STATUS_FEATURES_OK], &mut d, &mem);
        assert_eq!(c.status() & STATUS_FEATURES_OK, 0);
        c.reset();
        c.write(0x08, &1u32.to_le_bytes(), &mut d, &mem);
        c.write(0x0c, &1u32.to_le_bytes(), &mut d, &mem);
        c.write(0x08, &0u32.to_le_bytes(), &mut d, &mem);
        c.write(0x0c, &1u32.to_le_bytes(), &mut d, &mem);
        c.write(0x14, &[1 | 2 | STATUS_FEATURES_OK], &mut d, &mem);
        assert_ne!(c.status() & STATUS_FEATURES_OK, 0);
        c.write(
            0x14,
            &[1 | 2 | STATUS_FEATURES_OK | STATUS_DRIVER_OK],
            &mut d,
            &mem,
        );
        assert_eq!(d.activated, Some(F_VERSION_1 | 1));
    }

    #[test]
    fn queue_setup_and_wild_rings() {
        let mem = ram();
        let mut d = Dummy { activated: None };
        let mut c = CommonConfig::new(d.features(), &d.queue_max_sizes());
        assert_eq!(r32(&c, 0x12) & 0xffff, 1);
        assert_eq!(r32(&c, 0x18) & 0xffff, 16);
        c.write(0x18, &8u16.to_le_bytes(), &mut d, &mem);
        c.write(0x18, &7u16.to_le_bytes(), &mut d, &mem);
        assert_eq!(r32(&c, 0x18) & 0xffff, 8);
        c.write(0x20, &0x1000u32.to_le_bytes(), &mut d, &mem);
        c.write(0x24, &0u32.to_le_bytes(), &mut d, &mem);
        c.write(0x28, &0x2000u64.to_le_bytes(), &mut d, &mem);
        c.write(0x30, &0x3000u32.to_le_bytes(), &mut d, &mem);
        assert_eq!(r32(&c, 0x20), 0x1000);
        assert_eq!(r32(&c, 0x28), 0x2000);
        assert_eq!(
            c.write(0x1c, &1u16.to_le_bytes(), &mut d, &mem),
            Effect::None
        );
        assert_eq!(r32(&c, 0x1c) & 0xffff, 1);
        // An enabled queue cannot be reconfigured.
        c.write(0x20, &0x5000u32.to_le_bytes(), &mut d, &mem);
        assert_eq!(r32(&c, 0x20), 0x1000);
        // A queue whose used ring lies outside RAM is refused.
        c.reset();
        c.write(0x20, &0x1000u32.to_le_bytes(), &mut d, &mem);
        c.write(0x28, &0x2000u32.to_le_bytes(), &mut d, &mem);
        c.write(0x30, &0xfff0u32.to_le_bytes(), &mut d, &mem);
        assert_eq!(
            c.write(0x1c, &1u16.to_le_bytes(), &mut d, &mem),
            Effect::NeedsReset
        );
        assert_ne!(c.status() & STATUS_DEVICE_NEEDS_RESET, 0);
        assert!(c.live_queue(0).is_none());
    }
}

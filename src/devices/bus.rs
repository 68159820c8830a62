//! An address bus: non-overlapping ranges, each owned by one device.
//!
//! The machine builds one bus for port I/O and one for MMIO, then the accelerators' I/O calls
//! arrive here as `(address, data)`; the bus finds the range and hands the device the offset.
//! An access that hits no device reads as all ones and its writes are dropped, like a real bus.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::BusDevice;

/// Errors building a bus.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// The new range overlaps one already registered.
    #[error("bus range {base:#x}+{len:#x} overlaps an existing device")]
    Overlap {
        /// Start of the rejected range.
        base: u64,
        /// Its length.
        len: u64,
    },
    /// A zero-length range.
    #[error("bus range at {0:#x} has zero length")]
    Empty(u64),
}

/// A shared handle to a device on a bus.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

#[derive(Clone)]
struct Range {
    len: u64,
    device: SharedDevice,
}

/// Ranges of addresses mapped to devices.
#[derive(Clone, Default)]
pub struct Bus {
    ranges: BTreeMap<u64, Range>,
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Register `device` at `[base, base + len)`.
    pub fn insert(&mut self, device: SharedDevice, base: u64, len: u64) -> Result<(), BusError> {
        if len == 0 {
            return Err(BusError::Empty(base));
        }
        let end = base
            .checked_add(len - 1)
            .ok_or(BusError::Overlap { base, len })?;
        if let Some((&b, r)) = self.ranges.range(..=end).next_back() {
            if b + (r.len - 1) >= base {
                return Err(BusError::Overlap { base, len });
            }
        }
        self.ranges.insert(base, Range { len, device });
        Ok(())
    }

    fn find(&self, addr: u64, size: usize) -> Option<(u64, &SharedDevice)> {
        let (&base, r) = self.ranges.range(..=addr).next_back()?;
        let off = addr - base;
        (off.checked_add(size as u64)? <= r.len).then_some((off, &r.device))
    }

    /// Read from whatever device covers `addr`; all ones if none does. Returns whether a device
    /// answered.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr, data.len()) {
            Some((off, dev)) => {
                lock(dev).read(off, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// Write to whatever device covers `addr`; dropped if none does. Returns whether a device
    /// took it.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr, data.len()) {
            Some((off, dev)) => {
                lock(dev).write(off, data);
                true
            }
            None => false,
        }
    }

    /// The registered ranges as `(base, len)`, in address order (for `info mtree`).
    pub fn ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges.iter().map(|(&b, r)| (b, r.len))
    }
}

/// A device that panicked while holding its lock is still used: its state is plain data and
/// a guest must not be able to wedge the bus by tripping one device.
fn lock(dev: &SharedDevice) -> std::sync::MutexGuard<'_, dyn BusDevice + 'static> {
    dev.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Reg(u8);
    impl BusDevice for Reg {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(self.0 + offset as u8);
        }
        fn write(&mut self, _offset: u64, data: &[u8]) {
            self.0 = data[0];
        }
    }

    #[test]
    fn routes_by_range_and_rejects_overlap() {
        let mut bus = Bus::new();
        bus.insert(Arc::new(Mutex::new(Reg(0x10))), 0x3f8, 8)
            .unwrap();
        assert_eq!(
            bus.insert(Arc::new(Mutex::new(Reg(0))), 0x3ff, 1),
            Err(BusError::Overlap {
                base: 0x3ff,
                len: 1
            })
        );
        bus.insert(Arc::new(Mutex::new(Reg(0))), 0x400, 1).unwrap();
        let mut b = [0u8; 1];
        assert!(bus.read(0x3fa, &mut b));
        assert_eq!(b[0], 0x12);
        assert!(!bus.read(0x3f0, &mut b));
        assert_eq!(b[0], 0xff);
        // An access straddling the end of a range hits nothing.
        let mut w = [0u8; 2];
        assert!(!bus.read(0x3ff, &mut w));
        assert!(bus.write(0x3f8, &[5]));
        bus.read(0x3f8, &mut b);
        assert_eq!(b[0], 5);
    }
}

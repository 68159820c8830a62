//! PCI memory BARs: sizing, placement in the PCI hole, capabilities, and the MMIO window that
//! routes guest accesses to the BAR that decodes them now.
//!
//! A function describes its BARs on its [`ConfigSpace`] ([`ConfigSpace::add_mem_bar`]): the
//! BAR's write mask keeps the size bits read-only, so the guest's sizing write of all ones reads
//! back `!(size - 1)` with the type bits, exactly as hardware answers. The machine, acting as
//! the firmware, places each BAR in the PCI hole with a [`BarAllocator`] before the guest runs;
//! the guest may move it later by writing the BAR.
//!
//! Data enters the window ([`PciMmioWindow`], one device on the machine's MMIO bus covering the
//! whole PCI hole) as an access at an offset in the hole; it leaves through the first plugged-in
//! function whose [`PciDevice::mmio_read`]/[`PciDevice::mmio_write`] claims the address (memory
//! space enabled in its command register, address inside one of its BARs as they are *now*), or
//! as all ones / a dropped write. Looking the BAR up on every access is what makes a BAR write
//! move the range: there is no second copy of the address to go stale.

use std::sync::{Arc, Mutex};

use super::pci_host::{
    ConfigSpace, PciDevice, SharedPciDevice, BAR0, CAPABILITIES_POINTER, COMMAND, INTERRUPT_LINE,
    INTERRUPT_PIN, STATUS,
};
use super::BusDevice;

/// Command register: memory space decoding enabled.
pub const COMMAND_MEMORY: u16 = 0b0000_0010;
/// Command register: the function may master the bus (DMA).
pub const COMMAND_BUS_MASTER: u16 = 0b0000_0100;
/// Command register: INTx# disabled.
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
/// Status register: a capabilities list is present.
pub const STATUS_CAP_LIST: u16 = 1 << 4;
/// Status register: the function asserts INTx# (read-only, tracks the line).
pub const STATUS_INTERRUPT: u16 = 1 << 3;
/// BAR type bits: 64-bit memory BAR.
pub const BAR_MEM_64: u32 = 0b100;
/// The smallest memory BAR PCI allows.
pub const MIN_BAR_SIZE: u64 = 16;
/// Where the first capability goes (right after the type-0 header).
const FIRST_CAPABILITY: usize = 0x40;
/// Number of BAR registers in a type-0 header.
pub const BAR_COUNT: usize = 6;

/// Errors describing BARs and capabilities (device setup, never guest input).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PciBarError {
    /// BAR index past 5 (or past 4 for a 64-bit BAR, which takes two registers).
    #[error("BAR {0} does not exist in a type-0 header")]
    BadIndex(usize),
    /// The capability does not fit in the 256-byte configuration space.
    #[error("capability of {0} bytes does not fit in configuration space")]
    NoRoom(usize),
    /// The PCI hole has no room left for a BAR of this size.
    #[error("no room in the PCI hole for a {0:#x}-byte BAR")]
    HoleFull(u64),
}

impl ConfigSpace {
    fn u16_at(&self, offset: usize) -> u16 {
        u16::from_le_bytes([self.bytes[offset], self.bytes[offset + 1]])
    }

    fn u32_at(&self, offset: usize) -> u32 {
        let b = &self.bytes[offset..offset + 4];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Describe BAR `index` as a memory BAR of `size` bytes (rounded up to a power of two, at
    /// least 16), 32- or 64-bit, not prefetchable, address 0 until placed.
    pub fn add_mem_bar(&mut self, index: usize, size: u64, is64: bool) -> Result<(), PciBarError> {
        if index >= BAR_COUNT || (is64 && index + 1 >= BAR_COUNT) {
            return Err(PciBarError::BadIndex(index));
        }
        let size = size.max(MIN_BAR_SIZE).next_power_of_two();
        let mask = !(size - 1);
        let at = BAR0 + 4 * index;
        let low_type = if is64 { BAR_MEM_64 } else { 0 };
        self.bytes[at..at + 4].copy_from_slice(&low_type.to_le_bytes());
        // The low four bits (type) are read-only, as are the size bits below the size.
        let low_mask = (mask as u32) & !0xf;
        self.wmask[at..at + 4].copy_from_slice(&low_mask.to_le_bytes());
        if is64 {
            let high_mask = (mask >> 32) as u32;
            self.bytes[at + 4..at + 8].fill(0);
            self.wmask[at + 4..at + 8].copy_from_slice(&high_mask.to_le_bytes());
        }
        Ok(())
    }

    /// The address BAR `index` holds now (type bits stripped; both halves of a 64-bit BAR).
    pub fn mem_bar_address(&self, index: usize) -> u64 {
        if index >= BAR_COUNT {
            return 0;
        }
        let at = BAR0 + 4 * index;
        let low = self.u32_at(at);
        let mut addr = u64::from(low & !0xf);
        if low & BAR_MEM_64 != 0 && index + 1 < BAR_COUNT {
            addr |= u64::from(self.u32_at(at + 4)) << 32;
        }
        addr
    }

    /// Place BAR `index` at `addr` (what firmware does before the OS runs).
    pub fn set_mem_bar_address(&mut self, index: usize, addr: u64) {
        if index >= BAR_COUNT {
            return;
        }
        let at = BAR0 + 4 * index;
        let low = self.u32_at(at);
        let v = (addr as u32 & !0xf) | (low & 0xf);
        self.bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
        if low & BAR_MEM_64 != 0 && index + 1 < BAR_COUNT {
            self.bytes[at + 4..at + 8].copy_from_slice(&((addr >> 32) as u32).to_le_bytes());
        }
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        self.u16_at(COMMAND)
    }

    /// Set the command register (firmware setup).
    pub fn set_command(&mut self, v: u16) {
        self.set_u16(COMMAND, v);
    }

    /// Whether the function decodes its memory BARs.
    pub fn memory_enabled(&self) -> bool {
        self.command() & COMMAND_MEMORY != 0
    }

    /// The offset of `addr` inside memory BAR `index` of `size` bytes, if the BAR decodes it.
    pub fn decode_mem_bar(&self, index: usize, size: u64, addr: u64) -> Option<u64> {
        if !self.memory_enabled() {
            return None;
        }
        let base = self.mem_bar_address(index);
        // A BAR at 0 is unplaced (or mid-sizing: the size mask reads back then).
        if base == 0 {
            return None;
        }
        let off = addr.checked_sub(base)?;
        (off < size).then_some(off)
    }

    /// Wire INTx: `pin` (1 = INTA#) read-only, `line` (the routed IRQ) writable by the OS. The
    /// command register's INTx-disable bit becomes writable too.
    pub fn set_interrupt(&mut self, pin: u8, line: u8) {
        self.bytes[INTERRUPT_PIN] = pin;
        self.bytes[INTERRUPT_LINE] = line;
        self.wmask[INTERRUPT_LINE] = 0xff;
        self.wmask[COMMAND + 1] |= (COMMAND_INTX_DISABLE >> 8) as u8;
    }

    /// Whether the OS disabled INTx# in the command register.
    pub fn intx_disabled(&self) -> bool {
        self.command() & COMMAND_INTX_DISABLE != 0
    }

    /// Reflect the INTx# line in the status register's interrupt bit.
    pub fn set_interrupt_status(&mut self, asserted: bool) {
        let s = self.u16_at(STATUS) & !STATUS_INTERRUPT;
        let s = if asserted { s | STATUS_INTERRUPT } else { s };
        self.set_u16(STATUS, s);
    }

    /// Append a capability: `body[0]` is the capability ID, `body[1]` (the next pointer) is
    /// filled in here. Its bytes are read-only except where `writable` marks them. Returns the
    /// capability's offset.
    pub fn add_capability(&mut self, body: &[u8], writable: &[u8]) -> Result<usize, PciBarError> {
        if body.len() < 2 {
            return Err(PciBarError::NoRoom(body.len()));
        }
        // Walk the list to its end (bounded: at most 48 dword-aligned capabilities fit).
        let mut last = None;
        let mut at = usize::from(self.bytes[CAPABILITIES_POINTER]);
        let mut end = FIRST_CAPABILITY;
        for _ in 0..64 {
            if at < FIRST_CAPABILITY || at + 2 > self.bytes.len() {
                break;
            }
            last = Some(at);
            end = end.max(at + usize::from(self.bytes[at + 2].max(2)));
            at = usize::from(self.bytes[at + 1]);
        }
        let offset = (end + 3) & !3;
        if offset + body.len() > self.bytes.len() {
            return Err(PciBarError::NoRoom(body.len()));
        }
        self.bytes[offset..offset + body.len()].copy_from_slice(body);
        self.bytes[offset + 1] = 0;
        for (i, &m) in writable.iter().enumerate().take(body.len()) {
            self.wmask[offset + i] = m;
        }
        match last {
            Some(prev) => self.bytes[prev + 1] = offset as u8,
            None => self.bytes[CAPABILITIES_POINTER] = offset as u8,
        }
        let s = self.u16_at(STATUS) | STATUS_CAP_LIST;
        self.set_u16(STATUS, s);
        Ok(offset)
    }
}

/// Hands out naturally aligned ranges of the PCI hole, lowest first, as firmware would.
#[derive(Debug, Clone)]
pub struct BarAllocator {
    next: u64,
    end: u64,
}

impl BarAllocator {
    /// Allocate from `[start, end)`.
    pub fn new(start: u64, end: u64) -> Self {
        Self { next: start, end }
    }

    /// A `size`-byte range aligned to `size` (a power of two).
    pub fn alloc(&mut self, size: u64) -> Result<u64, PciBarError> {
        let size = size.max(MIN_BAR_SIZE).next_power_of_two();
        let base = self
            .next
            .checked_add(size - 1)
            .map(|v| v & !(size - 1))
            .ok_or(PciBarError::HoleFull(size))?;
        let end = base.checked_add(size).ok_or(PciBarError::HoleFull(size))?;
        if end > self.end {
            return Err(PciBarError::HoleFull(size));
        }
        self.next = end;
        Ok(base)
    }
}

/// The PCI hole on the MMIO bus: every access is offered to the plugged-in functions in turn.
pub struct PciMmioWindow {
    base: u64,
    devices: Vec<SharedPciDevice>,
}

impl PciMmioWindow {
    /// A window registered on the MMIO bus at guest-physical `base`, serving `devices`.
    pub fn new(base: u64, devices: Vec<SharedPciDevice>) -> Self {
        Self { base, devices }
    }

    /// Serve another function's BARs.
    pub fn add(&mut self, dev: SharedPciDevice) {
        self.devices.push(dev);
    }

    /// A shared window, ready for `Bus::insert`.
    pub fn shared(self) -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(self))
    }
}

fn lock(dev: &SharedPciDevice) -> std::sync::MutexGuard<'_, dyn PciDevice + 'static> {
    dev.lock().unwrap_or_else(|e| e.into_inner())
}

impl BusDevice for PciMmioWindow {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let addr = self.base.wrapping_add(offset);
        for dev in &self.devices {
            if lock(dev).mmio_read(addr, data) {
                return;
            }
        }
        data.fill(0xff);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let addr = self.base.wrapping_add(offset);
        for dev in &self.devices {
            if lock(dev).mmio_write(addr, data) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A function with one 4 KiB BAR 0 whose registers read as the offset.
    struct Probe {
        cfg: ConfigSpace,
        last_write: Option<(u64, u8)>,
    }

    impl PciDevice for Probe {
        fn config_read(&mut self, offset: u16, data: &mut [u8]) {
            self.cfg.read(offset, data);
        }
        fn config_write(&mut self, offset: u16, data: &[u8]) {
            self.cfg.write(offset, data);
        }
        fn mmio_read(&mut self, addr: u64, data: &mut [u8]) -> bool {
            match self.cfg.decode_mem_bar(0, 0x1000, addr) {
                Some(off) => {
                    data.fill(off as u8);
                    true
                }
                None => false,
            }
        }
        fn mmio_write(&mut self, addr: u64, data: &[u8]) -> bool {
            match self.cfg.decode_mem_bar(0, 0x1000, addr) {
                Some(off) => {
                    self.last_write = Some((off, data[0]));
                    true
                }
                None => false,
            }
        }
    }

    fn probe(is64: bool) -> Probe {
        let mut cfg = ConfigSpace::new(0x1234, 0x5678, 0xff_0000, 0);
        cfg.add_mem_bar(0, 0x1000, is64).unwrap();
        Probe {
            cfg,
            last_write: None,
        }
    }

    fn bar_read(p: &mut Probe, index: usize) -> u32 {
        let mut d = [0u8; 4];
        p.config_read((BAR0 + 4 * index) as u16, &mut d);
        u32::from_le_bytes(d)
    }

    #[test]
    fn sizing_reads_back_the_size_mask() {
        let mut p = probe(false);
        p.config_write(BAR0 as u16, &0xffff_ffffu32.to_le_bytes());
        assert_eq!(bar_read(&mut p, 0), 0xffff_f000);
        p.config_write(BAR0 as u16, &0xc000_0123u32.to_le_bytes());
        assert_eq!(bar_read(&mut p, 0), 0xc000_0000);
        // A BAR that does not exist stays zero.
        p.config_write((BAR0 + 4) as u16, &0xffff_ffffu32.to_le_bytes());
        assert_eq!(bar_read(&mut p, 1), 0);

        let mut p = probe(true);
        p.config_write(BAR0 as u16, &0xffff_ffffu32.to_le_bytes());
        p.config_write((BAR0 + 4) as u16, &0xffff_ffffu32.to_le_bytes());
        assert_eq!(bar_read(&mut p, 0), 0xffff_f000 | BAR_MEM_64);
        assert_eq!(bar_read(&mut p, 1), 0xffff_ffff);
        p.cfg.set_mem_bar_address(0, 0x1_2345_6000);
        assert_eq!(p.cfg.mem_bar_address(0), 0x1_2345_6000);
    }

    #[test]
    fn window_follows_bar_moves_and_memory_enable() {
        let dev = Arc::new(Mutex::new(probe(false)));
        let shared: SharedPciDevice = dev.clone();
        let mut w = PciMmioWindow::new(0xc000_0000, vec![shared]);
        let mut b = [0u8; 1];
        dev.lock().unwrap().cfg.set_mem_bar_address(0, 0xc000_1000);
        // Memory decoding off: nothing answers.
        w.read(0x1004, &mut b);
        assert_eq!(b[0], 0xff);
        dev.lock().unwrap().cfg.set_command(COMMAND_MEMORY);
        w.read(0x1004, &mut b);
        assert_eq!(b[0], 4);
        // The guest moves the BAR: the old range goes dead, the new one answers.
        dev.lock()
            .unwrap()
            .config_write(BAR0 as u16, &0xc000_8000u32.to_le_bytes());
        w.read(0x1004, &mut b);
        assert_eq!(b[0], 0xff);
        w.read(0x8010, &mut b);
        assert_eq!(b[0], 0x10);
        w.write(0x8020, &[7]);
        assert_eq!(dev.lock().unwrap().last_write, Some((0x20, 7)));
        w.write(0x9000, &[9]);
        assert_eq!(dev.lock().unwrap().last_write, Some((0x20, 7)));
    }

    #[test]
    fn allocator_aligns_and_stops_at_the_end() {
        let mut a = BarAllocator::new(0xc000_0000, 0xc001_0000);
        assert_eq!(a.alloc(0x100), Ok(0xc000_0000));
        assert_eq!(a.alloc(0x4000), Ok(0xc000_4000));
        assert_eq!(a.alloc(0x8000), Ok(0xc000_8000));
        assert_eq!(a.alloc(0x10), Err(PciBarError::HoleFull(0x10)));
    }

    #[test]
    fn capabilities_chain_and_interrupt_registers() {
        let mut c = ConfigSpace::new(1, 2, 0, 0);
        let a = c.add_capability(&[0x09, 0xaa, 4, 1], &[]).unwrap();
        let b = c
            .add_capability(&[0x09, 0xbb, 8, 2, 0, 0, 0, 0], &[0, 0, 0, 0, 0xff])
            .unwrap();
        assert_eq!(a, 0x40);
        assert_eq!(b, 0x44);
        assert_eq!(c.bytes[CAPABILITIES_POINTER], 0x40);
        assert_eq!(c.bytes[0x41], 0x44);
        assert_eq!(c.bytes[0x45], 0);
        assert_ne!(c.u16_at(STATUS) & STATUS_CAP_LIST, 0);
        c.write(0x48, &[0x5a, 0x5a]);
        assert_eq!(&c.bytes[0x48..0x4a], &[0x5a, 0]);
        c.set_interrupt(1, 10);
        c.write(INTERRUPT_PIN as u16, &[4]);
        assert_eq!(c.bytes[INTERRUPT_PIN], 1);
        c.write(INTERRUPT_LINE as u16, &[11]);
        assert_eq!(c.bytes[INTERRUPT_LINE], 11);
        c.write(COMMAND as u16, &COMMAND_INTX_DISABLE.to_le_bytes());
        assert!(c.intx_disabled());
    }
}

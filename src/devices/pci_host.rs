//! The PCI host: configuration mechanism #1 at [`PCI_HOST_BASE`] (0xCF8, [`PCI_HOST_LEN`] = 8
//! ports), bus 0 with an Intel 440FX host bridge at 00:00.0, and the PIIX reset control register
//! at 0xCF9.
//!
//! Data enters as guest port accesses: a dword write to 0xCF8 (offset 0) latches CONFIG_ADDRESS
//! (bit 31 enable, bus, device, function, dword register); an access of any width at 0xCFC..0xCFF
//! (offsets 4..8) reads or writes the selected function's configuration space at that register
//! plus the byte offset. It leaves through the [`PciDevice`] plugged into that slot, or as all ones
//! for an absent function or another bus. A byte write at 0xCF9 (offset 1) with bit 2 set asks the
//! injected [`SystemEvents`] for [`SystemEvent::Reset`]; only a one-byte access reaches that
//! register, so the dword write of CONFIG_ADDRESS (offsets 0..4) never triggers it.
//!
//! Later PCI devices implement [`PciDevice`] (often on top of a [`ConfigSpace`]) and are added with
//! [`PciHost::add_device`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{BusDevice, SystemEvent, SystemEvents};

/// First I/O port of the host (CONFIG_ADDRESS).
pub const PCI_HOST_BASE: u16 = 0xcf8;
/// Ports decoded: CONFIG_ADDRESS (0xCF8..0xCFB, with the reset control byte at 0xCF9) and
/// CONFIG_DATA (0xCFC..0xCFF).
pub const PCI_HOST_LEN: u64 = 8;
/// The reset control register's port, for the ACPI FADT's RESET_REG.
pub const RESET_CONTROL_PORT: u16 = 0xcf9;
/// The value the ACPI FADT's RESET_VALUE should hold: hard reset + reset CPU.
pub const RESET_VALUE: u8 = 0x06;

/// Offset of CONFIG_ADDRESS (dword accesses only).
pub const CONFIG_ADDRESS: u64 = 0;
/// Offset of the reset control register (byte accesses only).
pub const RESET_CONTROL: u64 = 1;
/// Offset of CONFIG_DATA (any width, at 0xCFC..0xCFF).
pub const CONFIG_DATA: u64 = 4;

/// CONFIG_ADDRESS: enable configuration cycles.
pub const ADDR_ENABLE: u32 = 1 << 31;
/// CONFIG_ADDRESS: the bits that are stored (enable, bus, device, function, dword register).
const ADDR_MASK: u32 = 0x80ff_fffc;
/// Reset control: reset the CPU (a write with this bit set resets the machine).
pub const RCR_RESET_CPU: u8 = 0b0000_0100;
/// Reset control: hard (system) reset rather than soft (stored only).
pub const RCR_SYS_RESET: u8 = 0b0000_0010;

/// Bytes of conventional configuration space per function.
pub const CONFIG_SPACE_SIZE: usize = 256;
/// Devices per bus.
pub const MAX_DEVICES: u8 = 32;
/// Functions per device.
pub const MAX_FUNCTIONS: u8 = 8;

/// Config-space offset of the vendor ID.
pub const VENDOR_ID: usize = 0x00;
/// Config-space offset of the device ID.
pub const DEVICE_ID: usize = 0x02;
/// Config-space offset of the command register.
pub const COMMAND: usize = 0x04;
/// Config-space offset of the revision ID.
pub const REVISION_ID: usize = 0x08;
/// Config-space offset of the class code (prog-if, subclass, class: 3 bytes).
pub const CLASS_CODE: usize = 0x09;
/// Config-space offset of the status register.
pub const STATUS: usize = 0x06;
/// Config-space offset of the header type.
pub const HEADER_TYPE: usize = 0x0e;
/// Config-space offset of BAR 0 (BAR n is at `BAR0 + 4 * n`).
pub const BAR0: usize = 0x10;
/// Config-space offset of the subsystem vendor ID.
pub const SUBSYSTEM_VENDOR_ID: usize = 0x2c;
/// Config-space offset of the subsystem ID.
pub const SUBSYSTEM_ID: usize = 0x2e;
/// Config-space offset of the capabilities pointer.
pub const CAPABILITIES_POINTER: usize = 0x34;
/// Config-space offset of the interrupt line (the IRQ the firmware routed INTx to).
pub const INTERRUPT_LINE: usize = 0x3c;
/// Config-space offset of the interrupt pin (1 = INTA#, 0 = none).
pub const INTERRUPT_PIN: usize = 0x3d;

/// Intel's vendor ID.
pub const I440FX_VENDOR: u16 = 0x8086;
/// The 82441FX (440FX) host bridge device ID.
pub const I440FX_DEVICE: u16 = 0x1237;
/// Class code of a host bridge: class 06, subclass 00, prog-if 00.
pub const HOST_BRIDGE_CLASS: u32 = 0x06_0000;

/// Errors plugging devices in.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PciError {
    /// The slot/function is outside 0..32 / 0..8.
    #[error("PCI address 00:{device:02x}.{function} is out of range")]
    BadAddress {
        /// Device number.
        device: u8,
        /// Function number.
        function: u8,
    },
    /// Something is already plugged in there.
    #[error("PCI address 00:{device:02x}.{function} is already taken")]
    Taken {
        /// Device number.
        device: u8,
        /// Function number.
        function: u8,
    },
    /// All 32 slots of bus 0 are taken.
    #[error("no free PCI slot on bus 0")]
    Full,
}

/// One PCI function's configuration space, as the host sees it. `offset + data.len()` never
/// crosses a dword boundary and stays below [`CONFIG_SPACE_SIZE`].
pub trait PciDevice: Send {
    /// Read `data.len()` (1, 2 or 4) bytes of configuration space at `offset`.
    fn config_read(&mut self, offset: u16, data: &mut [u8]);
    /// Write `data.len()` bytes of configuration space at `offset`.
    fn config_write(&mut self, offset: u16, data: &[u8]);
    /// Machine reset: back to the power-on configuration (BARs, command register).
    fn reset(&mut self) {}
    /// A read at guest-physical `addr` in the PCI MMIO window: if one of this function's
    /// memory BARs decodes `addr` (memory space enabled), fill `data` and return true.
    fn mmio_read(&mut self, addr: u64, data: &mut [u8]) -> bool {
        let _ = (addr, data);
        false
    }
    /// A write at guest-physical `addr` in the PCI MMIO window: true if a BAR took it.
    fn mmio_write(&mut self, addr: u64, data: &[u8]) -> bool {
        let _ = (addr, data);
        false
    }
}

/// A shared handle to a PCI function (the machine also maps its BARs on the buses).
pub type SharedPciDevice = Arc<Mutex<dyn PciDevice>>;

/// A plain 256-byte configuration space with a per-byte write mask: the building block for
/// simple functions. Bytes whose mask bit is clear are read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSpace {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Writable bits of each byte.
    pub wmask: Vec<u8>,
}

impl ConfigSpace {
    /// A type-0 header with these IDs and class, everything else zero and read-only except the
    /// command register's I/O, memory and bus-master enables.
    pub fn new(vendor: u16, device: u16, class: u32, revision: u8) -> Self {
        let mut c = Self {
            bytes: vec![0; CONFIG_SPACE_SIZE],
            wmask: vec![0; CONFIG_SPACE_SIZE],
        };
        c.set_u16(VENDOR_ID, vendor);
        c.set_u16(DEVICE_ID, device);
        c.bytes[REVISION_ID] = revision;
        c.bytes[CLASS_CODE..CLASS_CODE + 3].copy_from_slice(&class.to_le_bytes()[..3]);
        c.wmask[COMMAND] = 0b0000_0111;
        c
    }

    /// Set a 16-bit field (device setup, not a guest write).
    pub fn set_u16(&mut self, offset: usize, v: u16) {
        if let Some(b) = self.bytes.get_mut(offset..offset + 2) {
            b.copy_from_slice(&v.to_le_bytes());
        }
    }

    /// Read bytes at `offset`; bytes past the end read as all ones.
    pub fn read(&self, offset: u16, data: &mut [u8]) {
        for (i, d) in data.iter_mut().enumerate() {
            *d = self
                .bytes
                .get(usize::from(offset) + i)
                .copied()
                .unwrap_or(0xff);
        }
    }

    /// Write bytes at `offset` through the write mask.
    pub fn write(&mut self, offset: u16, data: &[u8]) {
        for (i, &v) in data.iter().enumerate() {
            let at = usize::from(offset) + i;
            if let (Some(b), Some(&m)) = (self.bytes.get_mut(at), self.wmask.get(at)) {
                *b = (*b & !m) | (v & m);
            }
        }
    }
}

impl PciDevice for ConfigSpace {
    fn config_read(&mut self, offset: u16, data: &mut [u8]) {
        self.read(offset, data);
    }
    fn config_write(&mut self, offset: u16, data: &[u8]) {
        self.write(offset, data);
    }
}

/// The i440FX host bridge at 00:00.0: IDs, class, and a writable chipset area (0x40..0x100:
/// PAM, SMRAM and friends, which firmware programs) with no effect.
pub fn i440fx_host_bridge() -> ConfigSpace {
    let mut c = ConfigSpace::new(I440FX_VENDOR, I440FX_DEVICE, HOST_BRIDGE_CLASS, 0x02);
    c.wmask[0x40..].fill(0xff);
    c
}

/// Guest-visible state of the host's own registers, for snapshots (plugged-in functions keep
/// their own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PciHostState {
    /// CONFIG_ADDRESS.
    pub config_address: u32,
    /// Reset control register (stored bits).
    pub reset_control: u8,
}

/// Configuration mechanism #1 and bus 0.
pub struct PciHost {
    state: PciHostState,
    functions: BTreeMap<(u8, u8), SharedPciDevice>,
    bridge: Arc<Mutex<ConfigSpace>>,
    events: Arc<dyn SystemEvents>,
}

impl PciHost {
    /// A host with the i440FX bridge at 00:00.0; resets go to `events`.
    pub fn new(events: Arc<dyn SystemEvents>) -> Self {
        let bridge = Arc::new(Mutex::new(i440fx_host_bridge()));
        let mut functions: BTreeMap<(u8, u8), SharedPciDevice> = BTreeMap::new();
        functions.insert((0, 0), bridge.clone());
        Self {
            state: PciHostState::default(),
            functions,
            bridge,
            events,
        }
    }

    /// Machine reset: the host's registers and the bridge go back to power-on, and every
    /// plugged-in function gets [`PciDevice::reset`].
    pub fn reset(&mut self) {
        self.state = PciHostState::default();
        *self.bridge.lock().unwrap_or_else(|e| e.into_inner()) = i440fx_host_bridge();
        for (&addr, dev) in &self.functions {
            if addr != (0, 0) {
                lock(dev).reset();
            }
        }
    }

    /// The host bridge's configuration space (for snapshots).
    pub fn host_bridge(&self) -> ConfigSpace {
        self.bridge
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Restore the host bridge's configuration space.
    pub fn restore_host_bridge(&mut self, config: ConfigSpace) {
        *self.bridge.lock().unwrap_or_else(|e| e.into_inner()) = config;
    }

    /// Plug `dev` in at 00:`device`.`function`.
    pub fn add_device(
        &mut self,
        device: u8,
        function: u8,
        dev: SharedPciDevice,
    ) -> Result<(), PciError> {
        if device >= MAX_DEVICES || function >= MAX_FUNCTIONS {
            return Err(PciError::BadAddress { device, function });
        }
        if self.functions.contains_key(&(device, function)) {
            return Err(PciError::Taken { device, function });
        }
        self.functions.insert((device, function), dev);
        Ok(())
    }

    /// The lowest device number with no function plugged in.
    pub fn free_slot(&self) -> Result<u8, PciError> {
        (0..MAX_DEVICES)
            .find(|&d| !self.functions.keys().any(|&(dd, _)| dd == d))
            .ok_or(PciError::Full)
    }

    /// The host's own registers.
    pub fn state(&self) -> PciHostState {
        self.state
    }

    /// Restore the host's own registers.
    pub fn restore(&mut self, state: PciHostState) {
        self.state = state;
    }

    /// The function CONFIG_ADDRESS selects and the config offset for byte `byte` of CONFIG_DATA.
    fn selected(&self, byte: u64) -> Option<(&SharedPciDevice, u16)> {
        let a = self.state.config_address;
        if a & ADDR_ENABLE == 0 || (a >> 16) & 0xff != 0 {
            return None;
        }
        let device = ((a >> 11) & 0x1f) as u8;
        let function = ((a >> 8) & 0x7) as u8;
        let offset = (a & 0xfc) as u16 + byte as u16;
        self.functions.get(&(device, function)).map(|d| (d, offset))
    }

    fn data_access(&self, offset: u64, len: usize) -> Option<(&SharedPciDevice, u16)> {
        // The access must stay inside CONFIG_DATA's dword (the bus guarantees it ends by 8).
        let byte = offset.checked_sub(CONFIG_DATA)?;
        (byte + len as u64 <= 4).then_some(())?;
        self.selected(byte)
    }
}

fn lock(dev: &SharedPciDevice) -> std::sync::MutexGuard<'_, dyn PciDevice + 'static> {
    dev.lock().unwrap_or_else(|e| e.into_inner())
}

impl BusDevice for PciHost {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        match (offset, data.len()) {
            (CONFIG_ADDRESS, 4) => data.copy_from_slice(&self.state.config_address.to_le_bytes()),
            (RESET_CONTROL, 1) => data[0] = self.state.reset_control,
            _ => {
                if let Some((dev, off)) = self.data_access(offset, data.len()) {
                    lock(dev).config_read(off, data);
                }
            }
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        match (offset, data.len()) {
            (CONFIG_ADDRESS, 4) => {
                let v = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                self.state.config_address = v & ADDR_MASK;
            }
            (RESET_CONTROL, 1) => {
                self.state.reset_control = data[0] & RCR_SYS_RESET;
                if data[0] & RCR_RESET_CPU != 0 {
                    self.events.request(SystemEvent::Reset);
                }
            }
            _ => {
                if let Some((dev, off)) = self.data_access(offset, data.len()) {
                    lock(dev).config_write(off, data);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::i8042::tests::Events;

    fn host() -> (PciHost, Arc<Events>) {
        let ev = Arc::new(Events::default());
        (PciHost::new(ev.clone()), ev)
    }

    fn cfg_read32(h: &mut PciHost, dev: u32, func: u32, reg: u32) -> u32 {
        let addr = ADDR_ENABLE | dev << 11 | func << 8 | reg;
        h.write(CONFIG_ADDRESS, &addr.to_le_bytes());
        let mut d = [0u8; 4];
        h.read(CONFIG_DATA, &mut d);
        u32::from_le_bytes(d)
    }

    #[test]
    fn host_bridge_ids_and_absent_functions() {
        let (mut h, _) = host();
        assert_eq!(cfg_read32(&mut h, 0, 0, 0), 0x1237_8086);
        assert_eq!(cfg_read32(&mut h, 0, 0, 8) >> 8, HOST_BRIDGE_CLASS);
        assert_eq!((cfg_read32(&mut h, 0, 0, 0x0c) >> 16) & 0xff, 0);
        assert_eq!(cfg_read32(&mut h, 1, 0, 0), 0xffff_ffff);
        assert_eq!(cfg_read32(&mut h, 0, 1, 0), 0xffff_ffff);
        // Another bus.
        h.write(CONFIG_ADDRESS, &(ADDR_ENABLE | 1 << 16).to_le_bytes());
        let mut d = [0u8; 4];
        h.read(CONFIG_DATA, &mut d);
        assert_eq!(d, [0xff; 4]);
        // Disabled.
        h.write(CONFIG_ADDRESS, &0u32.to_le_bytes());
        h.read(CONFIG_DATA, &mut d);
        assert_eq!(d, [0xff; 4]);
    }

    #[test]
    fn sub_dword_data_accesses() {
        let (mut h, _) = host();
        h.write(CONFIG_ADDRESS, &(ADDR_ENABLE | 0x03).to_le_bytes());
        let mut addr = [0u8; 4];
        h.read(CONFIG_ADDRESS, &mut addr);
        assert_eq!(
            u32::from_le_bytes(addr),
            ADDR_ENABLE,
            "low bits are reserved"
        );
        let mut w = [0u8; 2];
        h.read(CONFIG_DATA + 2, &mut w);
        assert_eq!(u16::from_le_bytes(w), I440FX_DEVICE);
        let mut b = [0u8; 1];
        h.read(CONFIG_DATA + 1, &mut b);
        assert_eq!(b[0], 0x80);
        // Command register: enables stick, the rest does not.
        h.write(CONFIG_ADDRESS, &(ADDR_ENABLE | 0x04).to_le_bytes());
        h.write(CONFIG_DATA, &[0xff, 0xff]);
        h.read(CONFIG_DATA, &mut w);
        assert_eq!(u16::from_le_bytes(w), 0x0007);
        // Vendor ID is read-only.
        h.write(CONFIG_ADDRESS, &ADDR_ENABLE.to_le_bytes());
        h.write(CONFIG_DATA, &[0, 0]);
        h.read(CONFIG_DATA, &mut w);
        assert_eq!(u16::from_le_bytes(w), I440FX_VENDOR);
        // Reset brings the command register back.
        h.reset();
        assert_eq!(h.state(), PciHostState::default());
        assert_eq!(cfg_read32(&mut h, 0, 0, 4) & 0xffff, 0);
        assert_eq!(h.host_bridge(), i440fx_host_bridge());
    }

    #[test]
    fn reset_control_only_on_byte_writes() {
        let (mut h, ev) = host();
        h.write(CONFIG_ADDRESS, &0x8000_0600u32.to_le_bytes());
        h.write(CONFIG_ADDRESS, &0xffff_ffffu32.to_le_bytes());
        assert!(ev.0.lock().unwrap().is_empty());
        h.write(RESET_CONTROL, &[0x02]);
        assert!(ev.0.lock().unwrap().is_empty());
        let mut b = [0u8];
        h.read(RESET_CONTROL, &mut b);
        assert_eq!(b[0], 0x02);
        h.write(RESET_CONTROL, &[RESET_VALUE]);
        assert_eq!(*ev.0.lock().unwrap(), [SystemEvent::Reset]);
    }

    #[test]
    fn plugged_devices_answer_and_slots_are_checked() {
        let (mut h, _) = host();
        let dev = Arc::new(Mutex::new(ConfigSpace::new(0x1af4, 0x1041, 0x02_0000, 1)));
        assert_eq!(h.free_slot(), Ok(1));
        h.add_device(1, 0, dev.clone()).unwrap();
        assert_eq!(
            h.add_device(1, 0, dev.clone()),
            Err(PciError::Taken {
                device: 1,
                function: 0
            })
        );
        assert_eq!(
            h.add_device(32, 0, dev),
            Err(PciError::BadAddress {
                device: 32,
                function: 0
            })
        );
        assert_eq!(cfg_read32(&mut h, 1, 0, 0), 0x1041_1af4);
        assert_eq!(h.free_slot(), Ok(2));
    }
}

//! QEMU's `pci-testdev` (vendor 0x1b36 Red Hat, device 0x0005): a PCI function whose two BARs
//! count guest writes, which kvm-unit-tests uses to measure MMIO and port-I/O exits. Modelled
//! on QEMU's `hw/misc/pci-testdev.c`:
//!
//! - BAR0: 4 KiB of memory (the "mmio" tests), BAR1: 256 I/O ports (the "portio" tests). The
//!   machine assigns them ([`PCI_TESTDEV_MMIO_BASE`], [`PCI_TESTDEV_PORT_BASE`]) as a firmware
//!   would and enables decoding; sizing a BAR (write all ones, read the mask) works, but the
//!   regions stay at the assigned addresses whatever the guest writes there later (kemu's buses
//!   are fixed once the machine is built).
//! - Each BAR holds three tests: 0 "no-eventfd", 1 "wildcard-eventfd", 2 "datamatch-eventfd".
//!   A write of `n` to byte 0 of a BAR selects test `n` of that BAR's kind (and zeroes its
//!   count); reads then return the test's header byte by byte: `test` (u8), `width` (u8, 1),
//!   2 pad bytes, `offset` (u32), `data` (u8), 3 pad bytes, `count` (u32), the NUL-terminated
//!   name ("mmio-no-eventfd", ...). A byte write at `offset` bumps `count`: any value for
//!   "wildcard-eventfd", only `data` (0xFA) for the other two (QEMU's `match_data` is true for
//!   every test but the wildcard one). Offsets are 2048 + i (mmio) and 128 + i
//!   (portio), i = 0..5 the test's global index, as in QEMU. Wider accesses act as that many
//!   byte accesses (QEMU implements the BARs byte-wide).
//!
//! There are no eventfds here: every access is an exit served in kemu, which is what the tests
//! count either way.

use std::sync::{Arc, Mutex};

use super::pci_host::{ConfigSpace, PciDevice};
use super::BusDevice;

/// Red Hat's PCI vendor ID.
pub const PCI_TESTDEV_VENDOR: u16 = 0x1b36;
/// QEMU's PCI test device ID.
pub const PCI_TESTDEV_DEVICE: u16 = 0x0005;
/// Class code: 0xff ("other"), subclass 0, prog-if 0.
pub const PCI_TESTDEV_CLASS: u32 = 0xff_0000;
/// Where the machine places BAR0.
pub const PCI_TESTDEV_MMIO_BASE: u64 = 0xfebf_0000;
/// BAR0's size.
pub const PCI_TESTDEV_MMIO_LEN: u64 = 4096;
/// Where the machine places BAR1.
pub const PCI_TESTDEV_PORT_BASE: u16 = 0xc000;
/// BAR1's size.
pub const PCI_TESTDEV_PORT_LEN: u64 = 256;

const BAR0: usize = 0x10;
const BAR1: usize = 0x14;
const TESTS_PER_KIND: usize = 3;
const DATAMATCH: u8 = 0xfa;
const NOMATCH: u8 = 0xce;

/// One test's header, as the guest reads it.
fn header(index: usize) -> Vec<u8> {
    let mmio = index < TESTS_PER_KIND;
    let which = index % TESTS_PER_KIND;
    let name = format!(
        "{}-{}",
        if mmio { "mmio" } else { "portio" },
        ["no-eventfd", "wildcard-eventfd", "datamatch-eventfd"][which]
    );
    let offset = if mmio { 2048 } else { 128 } + index as u32;
    let data = if which == 1 { NOMATCH } else { DATAMATCH };
    let mut h = vec![index as u8, 1, 0, 0];
    h.extend_from_slice(&offset.to_le_bytes());
    h.extend_from_slice(&[data, 0, 0, 0]);
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(name.as_bytes());
    h.push(0);
    h
}

/// The tests and which one runs; shared by the two BARs.
#[derive(Debug)]
pub struct IoTests {
    headers: Vec<Vec<u8>>,
    current: Option<usize>,
}

impl Default for IoTests {
    fn default() -> Self {
        IoTests {
            headers: (0..2 * TESTS_PER_KIND).map(header).collect(),
            current: None,
        }
    }
}

impl IoTests {
    /// A byte written at `addr` of the BAR of kind `portio`.
    fn write_byte(&mut self, portio: bool, addr: u64, val: u8) {
        if addr == 0 {
            self.current = None;
            if usize::from(val) < TESTS_PER_KIND {
                let t = usize::from(portio) * TESTS_PER_KIND + usize::from(val);
                self.headers[t][12..16].fill(0);
                self.current = Some(t);
            }
            return;
        }
        let Some(t) = self.current else { return };
        let h = &mut self.headers[t];
        let offset = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        if addr != u64::from(offset) {
            return;
        }
        let match_data = t % TESTS_PER_KIND != 1;
        if match_data && val != h[8] {
            return;
        }
        let count = u32::from_le_bytes([h[12], h[13], h[14], h[15]]).wrapping_add(1);
        h[12..16].copy_from_slice(&count.to_le_bytes());
    }

    /// The byte at `addr` of the running test's header (0 with no test or past its end; QEMU
    /// also reads the last byte, the name's NUL, as 0).
    fn read_byte(&self, addr: u64) -> u8 {
        let Some(t) = self.current else { return 0 };
        let h = &self.headers[t];
        match usize::try_from(addr) {
            Ok(a) if a + 1 < h.len() => h[a],
            _ => 0,
        }
    }
}

/// One BAR's window onto the tests.
pub struct TestdevBar {
    tests: Arc<Mutex<IoTests>>,
    portio: bool,
}

impl BusDevice for TestdevBar {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let t = self.tests.lock().unwrap_or_else(|e| e.into_inner());
        for (i, b) in data.iter_mut().enumerate() {
            *b = t.read_byte(offset + i as u64);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut t = self.tests.lock().unwrap_or_else(|e| e.into_inner());
        for (i, &b) in data.iter().enumerate() {
            t.write_byte(self.portio, offset + i as u64, b);
        }
    }
}

/// The PCI function: configuration space plus the tests behind its BARs.
pub struct PciTestdev {
    config: ConfigSpace,
    tests: Arc<Mutex<IoTests>>,
}

impl Default for PciTestdev {
    fn default() -> Self {
        Self::new()
    }
}

impl PciTestdev {
    /// The device with its BARs assigned and decoding enabled.
    pub fn new() -> Self {
        PciTestdev {
            config: Self::power_on_config(),
            tests: Arc::default(),
        }
    }

    fn power_on_config() -> ConfigSpace {
        let mut c = ConfigSpace::new(PCI_TESTDEV_VENDOR, PCI_TESTDEV_DEVICE, PCI_TESTDEV_CLASS, 0);
        c.bytes[0x04] = 0b11; // I/O and memory decoding on, as firmware leaves it
        let bar0 = PCI_TESTDEV_MMIO_BASE as u32; // memory, 32-bit, not prefetchable
        let bar1 = u32::from(PCI_TESTDEV_PORT_BASE) | 1; // I/O space
        c.bytes[BAR0..BAR0 + 4].copy_from_slice(&bar0.to_le_bytes());
        c.bytes[BAR1..BAR1 + 4].copy_from_slice(&bar1.to_le_bytes());
        let mask0 = !(PCI_TESTDEV_MMIO_LEN as u32 - 1);
        let mask1 = !(PCI_TESTDEV_PORT_LEN as u32 - 1);
        c.wmask[BAR0..BAR0 + 4].copy_from_slice(&mask0.to_le_bytes());
        c.wmask[BAR1..BAR1 + 4].copy_from_slice(&mask1.to_le_bytes());
        c
    }

    /// The window of BAR0 (memory) or BAR1 (`portio`), for the machine's buses.
    pub fn bar(&self, portio: bool) -> TestdevBar {
        TestdevBar {
            tests: self.tests.clone(),
            portio,
        }
    }
}

impl PciDevice for PciTestdev {
    fn config_read(&mut self, offset: u16, data: &mut [u8]) {
        self.config.read(offset, data);
    }

    fn config_write(&mut self, offset: u16, data: &[u8]) {
        self.config.write(offset, data);
    }

    fn reset(&mut self) {
        self.config = Self::power_on_config();
        self.tests.lock().unwrap_or_else(|e| e.into_inner()).current = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read32(bar: &mut TestdevBar, off: u64) -> u32 {
        let mut b = [0u8; 4];
        bar.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn ids_and_bar_sizing() {
        let mut d = PciTestdev::new();
        let mut id = [0u8; 4];
        d.config_read(0, &mut id);
        assert_eq!(u32::from_le_bytes(id), 0x0005_1b36);
        d.config_write(0x10, &[0xff; 4]);
        let mut b = [0u8; 4];
        d.config_read(0x10, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0xffff_f000);
        d.config_write(0x14, &[0xff; 4]);
        d.config_read(0x14, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0xffff_ff01);
        d.reset();
        d.config_read(0x10, &mut b);
        assert_eq!(u64::from(u32::from_le_bytes(b)), PCI_TESTDEV_MMIO_BASE);
    }

    #[test]
    fn tests_count_writes_like_qemu() {
        let d = PciTestdev::new();
        let mut mmio = d.bar(false);
        let mut pio = d.bar(true);
        // No test selected: reads are 0.
        assert_eq!(read32(&mut mmio, 0), 0);
        // mmio-no-eventfd: only 0xfa at 2048 counts.
        mmio.write(0, &[0]);
        let mut name = [0u8; 15];
        mmio.read(16, &mut name);
        assert_eq!(&name, b"mmio-no-eventfd");
        assert_eq!(read32(&mut mmio, 4), 2048);
        mmio.write(2048, &[0x12]);
        mmio.write(2048, &[0xfa]);
        mmio.write(2048, &[0xfa]);
        assert_eq!(read32(&mut mmio, 12), 2);
        // mmio-wildcard-eventfd: any byte counts.
        mmio.write(0, &[1]);
        mmio.write(2049, &[0x12]);
        assert_eq!(read32(&mut mmio, 12), 1);
        // portio-datamatch-eventfd (index 5): only 0xfa counts, at 128 + 5.
        pio.write(0, &[2]);
        assert_eq!(read32(&mut pio, 4), 133);
        assert_eq!(read32(&mut pio, 8) & 0xff, 0xfa);
        pio.write(133, &[0x00]);
        pio.write(133, &[0xfa]);
        pio.write(134, &[0xfa]);
        assert_eq!(read32(&mut pio, 12), 1);
        // An out-of-range test number stops the current one.
        pio.write(0, &[7]);
        assert_eq!(read32(&mut pio, 12), 0);
    }
}

//! QEMU's `pc-testdev`, the ISA test device kvm-unit-tests style kernels poke at, modelled on
//! QEMU's `hw/misc/pc-testdev.c` (same ports, same behaviour):
//!
//! | where                 | what                                                            |
//! |-----------------------|-----------------------------------------------------------------|
//! | ports 0xe0..0xe3      | a 32-bit data register: any write of 1/2/4 bytes at offset `o` replaces those bytes, a read returns them (echo) |
//! | ports 0xe4..0xe7      | "flush page": a dword write of a guest-physical address. QEMU mprotects the host page to shake the host TLB; our RAM needs nothing, so it is accepted and ignored |
//! | ports 0xe8..0xeb      | the same data register, reached byte by byte (QEMU splits wider accesses into bytes: the effect is the same) |
//! | ports 0x2000..0x2017  | IRQ lines: a byte write to 0x2000 + n drives ISA/GSI line n to (value != 0) |
//! | MMIO 0xff000000, 64 KiB | a scratch RAM buffer read and written through MMIO exits |
//!
//! Data enters as guest port and MMIO accesses; it leaves as echoes and interrupt-line levels.
//! The three port groups and the MMIO buffer are separate [`BusDevice`]s sharing nothing but
//! the data register (the first and third port groups).

use std::sync::Arc;

use super::{BusDevice, IrqLine};

/// First port of the data/flush/byte-data group.
pub const TESTDEV_PORT_BASE: u16 = 0xe0;
/// Ports in that group (data 0xe0, flush 0xe4, byte data 0xe8).
pub const TESTDEV_PORT_LEN: u64 = 12;
/// First port of the IRQ line group.
pub const TESTDEV_IRQ_BASE: u16 = 0x2000;
/// Number of IRQ lines (and ports) in that group.
pub const TESTDEV_IRQ_LINES: u64 = 24;
/// Guest-physical address of the MMIO scratch buffer.
pub const TESTDEV_IOMEM_BASE: u64 = 0xff00_0000;
/// Its size.
pub const TESTDEV_IOMEM_LEN: u64 = 0x1_0000;

/// The data-register ports 0xe0..0xec.
#[derive(Debug, Default)]
pub struct TestdevPorts {
    data: u32,
}

impl TestdevPorts {
    /// The register with value 0.
    pub fn new() -> Self {
        Self::default()
    }
}

impl BusDevice for TestdevPorts {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if (4..8).contains(&offset) {
            data.fill(0xff);
            return;
        }
        let bytes = self.data.to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = bytes[(offset as usize + i) & 3];
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if (4..8).contains(&offset) {
            // Flush page: nothing to do (see the module docs).
            return;
        }
        let mut bytes = self.data.to_le_bytes();
        for (i, b) in data.iter().enumerate() {
            bytes[(offset as usize + i) & 3] = *b;
        }
        self.data = u32::from_le_bytes(bytes);
    }
}

/// The IRQ-line ports 0x2000..0x2018.
pub struct TestdevIrq {
    lines: Vec<Arc<dyn IrqLine>>,
}

impl TestdevIrq {
    /// Ports driving `lines` (index n at port 0x2000 + n).
    pub fn new(lines: Vec<Arc<dyn IrqLine>>) -> Self {
        TestdevIrq { lines }
    }
}

impl BusDevice for TestdevIrq {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        // QEMU accepts byte writes only.
        if data.len() != 1 {
            return;
        }
        if let Some(line) = usize::try_from(offset).ok().and_then(|o| self.lines.get(o)) {
            line.set_level(data[0] != 0);
        }
    }
}

/// The 64 KiB MMIO scratch buffer.
pub struct TestdevMem {
    buf: Vec<u8>,
}

impl Default for TestdevMem {
    fn default() -> Self {
        TestdevMem {
            buf: vec![0; TESTDEV_IOMEM_LEN as usize],
        }
    }
}

impl TestdevMem {
    /// A zeroed buffer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl BusDevice for TestdevMem {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let start = offset as usize;
        match self.buf.get(start..start + data.len()) {
            Some(src) => data.copy_from_slice(src),
            None => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let start = offset as usize;
        if let Some(dst) = self.buf.get_mut(start..start + data.len()) {
            dst.copy_from_slice(data);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Line(Mutex<Vec<bool>>);
    impl IrqLine for Line {
        fn set_level(&self, level: bool) {
            self.0.lock().unwrap().push(level);
        }
    }

    #[test]
    fn data_register_echoes_every_width() {
        let mut p = TestdevPorts::new();
        p.write(0, &0x1234_5678u32.to_le_bytes());
        let mut d = [0u8; 4];
        p.read(0, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0x1234_5678);
        p.write(2, &[0xaa, 0xbb]);
        let mut w = [0u8; 2];
        p.read(2, &mut w);
        assert_eq!(w, [0xaa, 0xbb]);
        // The byte-wide window at 0xe8 sees the same register.
        let mut b = [0u8; 1];
        p.read(8, &mut b);
        assert_eq!(b[0], 0x78);
        p.write(9, &[0x11]);
        p.read(0, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0xbbaa_1178);
        // The flush port takes a write and changes nothing.
        p.write(4, &0x1000u32.to_le_bytes());
        p.read(0, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0xbbaa_1178);
    }

    #[test]
    fn irq_ports_drive_lines_and_iomem_stores() {
        let lines: Vec<Arc<Line>> = (0..24).map(|_| Arc::new(Line::default())).collect();
        let mut irq = TestdevIrq::new(
            lines
                .iter()
                .map(|l| l.clone() as Arc<dyn IrqLine>)
                .collect(),
        );
        irq.write(10, &[1]);
        irq.write(10, &[0]);
        irq.write(10, &[1, 0]); // not a byte write: ignored
        assert_eq!(*lines[10].0.lock().unwrap(), vec![true, false]);

        let mut m = TestdevMem::new();
        m.write(0x100, &[1, 2, 3, 4]);
        let mut d = [0u8; 4];
        m.read(0x100, &mut d);
        assert_eq!(d, [1, 2, 3, 4]);
        m.read(TESTDEV_IOMEM_LEN - 2, &mut d);
        assert_eq!(d, [0xff; 4]);
    }
}

//! The text of `info pci`, as QEMU's monitor lays it out: every function on bus 0, read through
//! the PCI host's configuration registers (the guest's CONFIG_ADDRESS is put back afterwards).

use std::fmt::Write as _;
use std::sync::Mutex;

use crate::devices::pci_host::{PciHost, MAX_DEVICES, MAX_FUNCTIONS};
use crate::devices::BusDevice;

/// Reads and writes a function's configuration space through the host's CONFIG_ADDRESS /
/// CONFIG_DATA registers, putting the guest's CONFIG_ADDRESS back when done.
struct ConfigPort<'a> {
    host: &'a mut PciHost,
}

impl ConfigPort<'_> {
    fn select(&mut self, dev: u8, func: u8, off: u8) {
        let addr =
            0x8000_0000u32 | u32::from(dev) << 11 | u32::from(func) << 8 | u32::from(off & 0xfc);
        self.host.write(0, &addr.to_le_bytes());
    }

    fn read32(&mut self, dev: u8, func: u8, off: u8) -> u32 {
        self.select(dev, func, off);
        let mut b = [0u8; 4];
        self.host.read(4, &mut b);
        u32::from_le_bytes(b)
    }

    fn write32(&mut self, dev: u8, func: u8, off: u8, v: u32) {
        self.select(dev, func, off);
        self.host.write(4, &v.to_le_bytes());
    }
}

fn class_name(class: u32) -> &'static str {
    match class >> 8 {
        0x0100 => "SCSI controller",
        0x0101 => "IDE controller",
        0x0180 => "Storage controller",
        0x0200 => "Ethernet controller",
        0x0300 => "VGA controller",
        0x0600 => "Host bridge",
        0x0601 => "ISA bridge",
        0x0680 => "Bridge",
        0x00ff | 0xff00 => "Class ff00",
        _ => match class >> 16 {
            0x01 => "Storage controller",
            0x02 => "Network controller",
            0x06 => "Bridge",
            _ => "Device",
        },
    }
}

/// `info pci`: every function on bus 0 with IDs, class, IRQ and BARs (sized by the usual
/// all-ones probe; call it with the vCPUs stopped).
pub fn pci(host: &Mutex<PciHost>) -> String {
    let mut host = host.lock().unwrap_or_else(|e| e.into_inner());
    let saved = host.state();
    let mut port = ConfigPort { host: &mut host };
    let mut o = String::new();
    for dev in 0..MAX_DEVICES {
        for func in 0..MAX_FUNCTIONS {
            let id = port.read32(dev, func, 0);
            if id & 0xffff == 0xffff || id == 0 {
                continue;
            }
            let class = port.read32(dev, func, 8) >> 8;
            let sub = port.read32(dev, func, 0x2c);
            let irq = port.read32(dev, func, 0x3c);
            let header = (port.read32(dev, func, 0x0c) >> 16) & 0x7f;
            let _ = writeln!(o, "  Bus  0, device {dev:3}, function {func}:");
            let _ = writeln!(
                o,
                "    {}: PCI device {:04x}:{:04x}",
                class_name(class),
                id & 0xffff,
                id >> 16
            );
            if sub != 0 {
                let _ = writeln!(
                    o,
                    "      PCI subsystem {:04x}:{:04x}",
                    sub & 0xffff,
                    sub >> 16
                );
            }
            let pin = (irq >> 8) & 0xff;
            if pin != 0 {
                let _ = writeln!(
                    o,
                    "      IRQ {}, pin {}",
                    irq & 0xff,
                    char::from(b'A' + (pin as u8).saturating_sub(1).min(3))
                );
            }
            if header == 0 {
                bars(&mut port, dev, func, &mut o);
            }
            let _ = writeln!(o, "      id \"\"");
        }
    }
    host.restore(saved);
    o
}

fn bars(port: &mut ConfigPort, dev: u8, func: u8, o: &mut String) {
    let mut i = 0u8;
    while i < 6 {
        let off = 0x10 + 4 * i;
        let v = port.read32(dev, func, off);
        port.write32(dev, func, off, 0xffff_ffff);
        let probe = port.read32(dev, func, off);
        port.write32(dev, func, off, v);
        if probe == 0 {
            i += 1;
            continue;
        }
        if v & 1 == 1 {
            let size = (!(probe & !0x3)).wrapping_add(1) & 0xffff;
            let base = v & !0x3;
            let _ = writeln!(
                o,
                "      BAR{i}: I/O at 0x{base:04x} [0x{:04x}].",
                base.wrapping_add(size).wrapping_sub(1)
            );
            i += 1;
            continue;
        }
        let is64 = (v >> 1) & 3 == 2;
        let prefetch = if v & 8 != 0 { "prefetchable " } else { "" };
        let (mut base, mut mask) = (
            u64::from(v & !0xf),
            u64::from(probe & !0xf) | 0xffff_ffff_0000_0000,
        );
        if is64 && i < 5 {
            let hi = port.read32(dev, func, off + 4);
            port.write32(dev, func, off + 4, 0xffff_ffff);
            let hprobe = port.read32(dev, func, off + 4);
            port.write32(dev, func, off + 4, hi);
            base |= u64::from(hi) << 32;
            mask = (mask & 0xffff_ffff) | u64::from(hprobe) << 32;
        }
        let size = (!mask).wrapping_add(1);
        let _ = writeln!(
            o,
            "      BAR{i}: {} bit {prefetch}memory at 0x{base:08x} [0x{:08x}].",
            if is64 { 64 } else { 32 },
            base.wrapping_add(size).wrapping_sub(1)
        );
        i += if is64 { 2 } else { 1 };
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::devices::{SystemEvent, SystemEvents};

    struct NoEvents;
    impl SystemEvents for NoEvents {
        fn request(&self, _: SystemEvent) {}
    }

    #[test]
    fn pci_lists_the_host_bridge_and_restores_the_address_register() {
        let host = Mutex::new(PciHost::new(Arc::new(NoEvents)));
        host.lock().unwrap().write(0, &0x8000_0810u32.to_le_bytes());
        let text = pci(&host);
        assert!(text.contains("Bus  0, device   0, function 0:"));
        assert!(text.contains("Host bridge: PCI device 8086:1237"));
        let mut b = [0u8; 4];
        host.lock().unwrap().read(0, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0x8000_0810);
    }
}

//! The legacy devices together on one port bus, at the bases and lengths their modules publish:
//! the ranges must not overlap, and guest-style access sequences must reach the right device.

use std::sync::{Arc, Mutex};

use super::i8042::tests::Events;
use super::*;

fn bus_with_everything() -> (Bus, Arc<Events>, Arc<Mutex<Vec<u8>>>) {
    let ev = Arc::new(Events::default());
    let post = Arc::new(Mutex::new(Vec::new()));
    let mut bus = Bus::new();
    let mut put = |dev: bus::SharedDevice, base: u16, len: u64| {
        bus.insert(dev, u64::from(base), len).unwrap();
    };
    put(
        Arc::new(Mutex::new(serial::Serial::new(Vec::new(), Arc::new(NoIrq)))),
        serial::COM1_BASE,
        serial::COM1_LEN,
    );
    let kbc = Arc::new(Mutex::new(i8042::I8042::new(
        Arc::new(NoIrq),
        Arc::new(NoIrq),
        ev.clone(),
    )));
    for (port, at) in i8042::bus_ports(&kbc) {
        put(Arc::new(Mutex::new(port)), at, i8042::PORT_LEN);
    }
    put(
        Arc::new(Mutex::new(port61::Port61::new(Arc::new(port61::NoPit)))),
        port61::PORT61_BASE,
        port61::PORT61_LEN,
    );
    put(
        Arc::new(Mutex::new(cmos::Cmos::new(32 << 20, 0, 2))),
        cmos::CMOS_BASE,
        cmos::CMOS_LEN,
    );
    put(
        Arc::new(Mutex::new(debug_exit::DebugExit::new(ev.clone()))),
        debug_exit::DEBUG_EXIT_BASE,
        debug_exit::DEBUG_EXIT_LEN,
    );
    let p = post.clone();
    put(
        Arc::new(Mutex::new(port80::Port80::new(Box::new(move |c| {
            p.lock().unwrap().push(c)
        })))),
        port80::PORT80_BASE,
        port80::PORT80_LEN,
    );
    put(
        Arc::new(Mutex::new(pci_host::PciHost::new(ev.clone()))),
        pci_host::PCI_HOST_BASE,
        pci_host::PCI_HOST_LEN,
    );
    put(
        Arc::new(Mutex::new(acpi_pm::AcpiPm::new(
            Arc::new(NoIrq),
            ev.clone(),
        ))),
        acpi_pm::PM_BASE,
        acpi_pm::PM_LEN,
    );
    (bus, ev, post)
}

fn inb(bus: &Bus, port: u16) -> u8 {
    let mut b = [0];
    bus.read(u64::from(port), &mut b);
    b[0]
}

fn outb(bus: &Bus, port: u16, v: u8) {
    bus.write(u64::from(port), &[v]);
}

#[test]
fn guest_sequences_reach_the_right_devices() {
    let (bus, ev, post) = bus_with_everything();

    // 8250 scratch register and LSR.
    outb(&bus, 0x3ff, 0x5a);
    assert_eq!(inb(&bus, 0x3ff), 0x5a);
    assert_eq!(inb(&bus, 0x3fd) & 0x60, 0x60);

    // i8042 self-test through the split ports.
    outb(&bus, 0x64, 0xaa);
    assert_eq!(inb(&bus, 0x64) & 1, 1);
    assert_eq!(inb(&bus, 0x60), 0x55);

    // CMOS: extended memory = 31 MiB in KiB, CPUs - 1.
    outb(&bus, 0x70, 0x17);
    let lo = inb(&bus, 0x71);
    outb(&bus, 0x70, 0x18);
    let hi = inb(&bus, 0x71);
    assert_eq!(u16::from_le_bytes([lo, hi]), 31 * 1024);
    outb(&bus, 0x70, 0x5f);
    assert_eq!(inb(&bus, 0x71), 1);

    // Linux's pci_check_type1: a byte write to 0xCFB is ignored, CONFIG_ADDRESS reads back.
    outb(&bus, 0xcfb, 0x01);
    bus.write(0xcf8, &0x8000_0000u32.to_le_bytes());
    let mut d = [0u8; 4];
    bus.read(0xcf8, &mut d);
    assert_eq!(u32::from_le_bytes(d), 0x8000_0000);
    bus.read(0xcfc, &mut d);
    assert_eq!(u32::from_le_bytes(d), 0x1237_8086);

    // POST code, then the three ways out.
    outb(&bus, 0x80, 0x42);
    assert_eq!(*post.lock().unwrap(), [0x42]);
    outb(&bus, 0xcf9, 0x06);
    bus.write(0x604, &(1u16 << 13).to_le_bytes());
    outb(&bus, 0xf4, 0x01);
    assert_eq!(
        *ev.0.lock().unwrap(),
        [
            SystemEvent::Reset,
            SystemEvent::PowerOff,
            SystemEvent::Exit(3)
        ]
    );

    // Port 0x61 sits between the i8042's two ports.
    assert_eq!(inb(&bus, 0x61) & 0x20, 0x20);
    let ranges: Vec<_> = bus.ranges().collect();
    assert_eq!(ranges.len(), 9);
}

/// The machine's glue as the software-CPU PC will do it: PIT, PIC pair, port 0x61 and the
/// other legacy ports on one bus; channel 0's edges pulse IRQ 0 into the PIC.
#[test]
fn beside_the_other_legacy_ports_driving_the_pic() {
    use super::clock::Clock;
    use super::clock::ManualClock;
    use super::pic::{self, Pic8259Pair};
    use super::pit::{ticks_to_ns, Pit, PitChannel2Handle, PIT_BASE, PIT_HZ, PIT_IRQ, PIT_LEN};
    /// The HZ=250 tick as Linux programs it.
    const LATCH_250: u16 = ((PIT_HZ + 125) / 250) as u16;

    let clock = Arc::new(ManualClock::new(0));
    let pit = Arc::new(Mutex::new(Pit::new(clock.clone())));
    let pic = Arc::new(Mutex::new(Pic8259Pair::new(Arc::new(|_| {}))));
    let mut bus = Bus::new();
    bus.insert(pit.clone(), u64::from(PIT_BASE), PIT_LEN)
        .unwrap();
    for (port, base, len) in pic::bus_ports(&pic) {
        bus.insert(Arc::new(Mutex::new(port)), u64::from(base), len)
            .unwrap();
    }
    let p61 = port61::Port61::new(Arc::new(PitChannel2Handle(pit.clone())));
    bus.insert(
        Arc::new(Mutex::new(p61)),
        u64::from(port61::PORT61_BASE),
        port61::PORT61_LEN,
    )
    .unwrap();
    let kbc = Arc::new(Mutex::new(i8042::I8042::new(
        Arc::new(NoIrq),
        Arc::new(NoIrq),
        Arc::new(i8042::tests::Events::default()),
    )));
    for (port, at) in i8042::bus_ports(&kbc) {
        bus.insert(Arc::new(Mutex::new(port)), u64::from(at), i8042::PORT_LEN)
            .unwrap();
    }
    let rtc = cmos::Cmos::new(32 << 20, 0, 1);
    bus.insert(
        Arc::new(Mutex::new(rtc)),
        u64::from(cmos::CMOS_BASE),
        cmos::CMOS_LEN,
    )
    .unwrap();

    for (port, v) in [
        (0x20, 0x11),
        (0x21, 0x30),
        (0x21, 0x04),
        (0x21, 0x01),
        (0xa0, 0x11),
        (0xa1, 0x38),
        (0xa1, 0x02),
        (0xa1, 0x01),
        (0x21, 0xfa),
        (0xa1, 0xff),
        (0x43, 0x34),
        (0x40, LATCH_250 as u8),
        (0x40, (LATCH_250 >> 8) as u8),
    ] {
        assert!(bus.write(port, &[v]));
    }
    let mut vectors = Vec::new();
    for _ in 0..3 {
        let deadline = pit.lock().unwrap().next_irq0_deadline_ns().unwrap();
        clock.set(deadline);
        if pit.lock().unwrap().poll_irq0() > 0 {
            let mut pic = pic.lock().unwrap();
            pic.set_irq(PIT_IRQ, true);
            pic.set_irq(PIT_IRQ, false);
        }
        let mut pic = pic.lock().unwrap();
        assert!(pic.has_interrupt());
        vectors.push(pic.acknowledge());
        pic.write_port(0x20, 0x60);
    }
    assert_eq!(vectors, [0x30; 3]);
    assert_eq!(clock.now_ns(), ticks_to_ns(3 * u64::from(LATCH_250)));
}

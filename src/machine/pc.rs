//! The PC's devices on their buses: what `-machine pc` has at which port and IRQ, wired to the
//! accelerator's interrupt controller and the machine's control block.
//!
//! | device          | ports            | IRQ (GSI) |
//! |-----------------|------------------|-----------|
//! | i8042           | 0x60, 0x64       | 1, 12     |
//! | CMOS/RTC        | 0x70-0x71        | 8         |
//! | POST port       | 0x80             | -         |
//! | COM1 16550A     | 0x3f8-0x3ff      | 4         |
//! | ACPI PM block   | 0x600-0x60f      | 9 (SCI)   |
//! | PCI host + 0xCF9| 0xcf8-0xcff      | -         |
//! | isa-debug-exit  | `-device` iobase | -         |
//! | fw_cfg          | 0x510-0x511      | -         |
//! | isa-debugcon    | `-device` iobase (0xe9) | -  |
//! | pc-testdev      | 0xe0-0xeb, 0x2000-0x2017, MMIO 0xff000000 | lines 0-23 |
//! | pci-testdev     | PCI 00:NN.0, BAR0 MMIO 0xfebf0000, BAR1 ports 0xc000-0xc0ff | - |
//! | firmware ROM    | MMIO 4 GiB - size (`machine::firmware`) | - |
//!
//! PCI functions (virtio-blk per `-drive`) are plugged in by `machine::pci`: slots 1.., BARs in
//! the PCI hole, INTx# on GSI 10/11.
//!
//! The PIC (0x20, 0xa0, ELCR 0x4d0), the PIT (0x40-0x43), port 0x61, the IOAPIC (MMIO
//! 0xFEC00000) and the local APICs (0xFEE00000) are KVM's in-kernel devices under KVM and ours
//! (`legacy_irq.rs`, `apic_bus.rs`) under the software CPU.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::config::{CharBackend, MachineConfig, SerialConfig};
use super::console::{self, ConsoleError, ConsoleOutput, RawTerminal};
use super::control::{Control, Outcome};
use super::handle::MachineHandle;
use super::io::MachineIo;
use super::trace::Trace;
use super::{lock, MachineError};
use crate::accel::IrqChip;
use crate::devices::acpi_pm::{AcpiPm, PM_BASE, PM_LEN, SCI_IRQ};
use crate::devices::clock::Clock;
use crate::devices::cmos::{Cmos, CMOS_BASE, CMOS_LEN, RTC_IRQ};
use crate::devices::debug_exit::DebugExit;
use crate::devices::debugcon::Debugcon;
use crate::devices::fw_cfg::{FwCfg, FW_CFG_LEN, FW_CFG_PORT_SEL};
use crate::devices::i8042::{self, I8042};
use crate::devices::pc_testdev::{
    TestdevIrq, TestdevMem, TestdevPorts, TESTDEV_IOMEM_BASE, TESTDEV_IOMEM_LEN, TESTDEV_IRQ_BASE,
    TESTDEV_IRQ_LINES, TESTDEV_PORT_BASE, TESTDEV_PORT_LEN,
};
use crate::devices::pci_host::{PciHost, PCI_HOST_BASE, PCI_HOST_LEN};
use crate::devices::pci_testdev::{
    PciTestdev, PCI_TESTDEV_MMIO_BASE, PCI_TESTDEV_MMIO_LEN, PCI_TESTDEV_PORT_BASE,
    PCI_TESTDEV_PORT_LEN,
};
use crate::devices::port80::{Port80, PORT80_BASE, PORT80_LEN};
use crate::devices::serial::{Serial, COM1_BASE, COM1_IRQ, COM1_LEN};
use crate::devices::{Bus, BusError, IrqLine, SystemEvents};
use crate::monitor::hmp::MuxMonitor;

/// COM1 as the machine builds it.
pub type Com1 = Serial<ConsoleOutput>;

/// The host end of the serial console. It outlives machine resets: the stdin reader feeds
/// whichever COM1 the current power cycle built, and the terminal stays raw until kemu exits.
pub struct HostConsole {
    config: SerialConfig,
    /// For `file:`: one file for the whole run, so a reset does not truncate it.
    file: Option<std::fs::File>,
    /// The isa-debugcon's chardev: where its bytes go, opened once like `file`.
    debugcon: Option<CharBackend>,
    /// For a debugcon `-chardev file`: the file.
    debugcon_file: Option<std::fs::File>,
    /// COM1 of the current power cycle and the input it has not taken yet.
    inbox: Arc<Mutex<Inbox>>,
    /// The control block of the current power cycle, for Ctrl-A X.
    control: Arc<Mutex<Option<Arc<Control>>>>,
    _raw: Option<RawTerminal>,
}

impl HostConsole {
    /// Open the host side `config.serial` asks for; with `stdio`, start reading stdin, where
    /// `Ctrl-A c` switches between the guest and the monitor on `handle`.
    pub fn open(config: &MachineConfig, handle: &Arc<MachineHandle>) -> Result<Self, MachineError> {
        let console_err = |e: ConsoleError| MachineError::Failed(format!("serial console: {e}"));
        let file =
            match &config.serial {
                SerialConfig::File(path) => Some(std::fs::File::create(path).map_err(
                    |source| MachineError::File {
                        what: "cannot create serial output file",
                        path: path.clone(),
                        source,
                    },
                )?),
                _ => None,
            };
        let debugcon = config.debugcon.as_ref().map(|d| d.chardev.clone());
        let debugcon_file = match &debugcon {
            Some(CharBackend::File(path)) => Some(std::fs::File::create(path).map_err(
                |source| MachineError::File {
                    what: "cannot create chardev file",
                    path: path.clone(),
                    source,
                },
            )?),
            _ => None,
        };
        let inbox: Arc<Mutex<Inbox>> = Arc::default();
        let control: Arc<Mutex<Option<Arc<Control>>>> = Arc::default();
        let mut raw = None;
        if config.serial == SerialConfig::Stdio {
            raw = RawTerminal::enter().map_err(console_err)?;
            let target = inbox.clone();
            let quit_target = control.clone();
            // Ctrl-A c: the terminal belongs to the monitor until the next Ctrl-A c.
            let monitor = Arc::new(Mutex::new(MuxMonitor::new(handle.clone())));
            let in_monitor = Arc::new(AtomicBool::new(false));
            let (mon, in_mon) = (monitor.clone(), in_monitor.clone());
            console::spawn_stdin_reader(
                move |bytes| {
                    if in_mon.load(Ordering::Relaxed) {
                        print_now(&lock(&mon).feed(bytes));
                    } else {
                        lock(&target).push(bytes);
                    }
                },
                move || {
                    if let Some(c) = lock(&quit_target).as_ref() {
                        c.finish(Outcome::Quit);
                    }
                },
                move |escape| {
                    if escape == b'c' || escape == b'C' {
                        if in_monitor.fetch_xor(true, Ordering::Relaxed) {
                            print_now("\r\n");
                        } else {
                            print_now(&lock(&monitor).enter());
                        }
                    } else {
                        log::debug!("console: unknown escape C-a {escape:#04x}");
                    }
                },
            )
            .map_err(console_err)?;
        }
        Ok(HostConsole {
            config: config.serial.clone(),
            file,
            debugcon,
            debugcon_file,
            inbox,
            control,
            _raw: raw,
        })
    }

    fn output(&self) -> Result<ConsoleOutput, MachineError> {
        match (&self.config, &self.file) {
            (SerialConfig::File(path), Some(f)) => {
                f.try_clone()
                    .map(ConsoleOutput::File)
                    .map_err(|source| MachineError::File {
                        what: "serial output file",
                        path: path.clone(),
                        source,
                    })
            }
            (other, _) => ConsoleOutput::open(other)
                .map_err(|e| MachineError::Failed(format!("serial console: {e}"))),
        }
    }

    /// Where the isa-debugcon writes (a clone of the file opened at start).
    fn debugcon_output(&self) -> Result<ConsoleOutput, MachineError> {
        match (&self.debugcon, &self.debugcon_file) {
            (Some(CharBackend::File(path)), Some(f)) => f
                .try_clone()
                .map(ConsoleOutput::File)
                .map_err(|source| MachineError::File {
                    what: "chardev file",
                    path: path.clone(),
                    source,
                }),
            (Some(CharBackend::Stdio), _) => Ok(ConsoleOutput::Stdout(std::io::stdout())),
            _ => Ok(ConsoleOutput::Null),
        }
    }

    fn attach(&self, com1: Arc<Mutex<Com1>>, control: Arc<Control>) {
        lock(&self.inbox).attach(com1);
        *lock(&self.control) = Some(control);
    }
}

/// Write monitor text to the terminal at once (the guest's output shares stdout).
fn print_now(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Host input on its way to COM1. Input that arrives before the machine has built COM1 (or
/// while its FIFO is full) waits here, up to [`INBOX_CAP`] bytes; past that it is dropped, as
/// a real UART overrun would drop it.
#[derive(Default)]
struct Inbox {
    com1: Option<Arc<Mutex<Com1>>>,
    pending: std::collections::VecDeque<u8>,
}

/// Host input kept while COM1 cannot take it.
const INBOX_CAP: usize = 64 * 1024;

impl Inbox {
    fn push(&mut self, bytes: &[u8]) {
        let room = INBOX_CAP.saturating_sub(self.pending.len());
        self.pending.extend(bytes.iter().take(room));
        self.deliver();
    }

    fn attach(&mut self, com1: Arc<Mutex<Com1>>) {
        self.com1 = Some(com1);
        self.deliver();
    }

    fn deliver(&mut self) {
        let Some(c) = &self.com1 else { return };
        let (a, b) = self.pending.as_slices();
        let mut com1 = lock(c);
        let mut taken = com1.enqueue_input(a);
        if taken == a.len() {
            taken += com1.enqueue_input(b);
        }
        drop(com1);
        self.pending.drain(..taken);
    }
}

/// What [`build_devices`] returns: the buses, the PCI host and the ACPI PM block.
pub type BuiltDevices = (MachineIo, Arc<Mutex<PciHost>>, Arc<Mutex<AcpiPm>>);

/// One interrupt line of the accelerator's irqchip.
struct Gsi {
    chip: Arc<dyn IrqChip>,
    gsi: u32,
}

impl IrqLine for Gsi {
    fn set_level(&self, level: bool) {
        self.chip.set_irq(self.gsi, level);
    }
}

pub(super) fn line(chip: &Arc<dyn IrqChip>, gsi: u32) -> Arc<dyn IrqLine> {
    Arc::new(Gsi {
        chip: chip.clone(),
        gsi,
    })
}

pub fn bus_err(e: BusError) -> MachineError {
    MachineError::Failed(format!("device layout: {e}"))
}

/// Build the PC's devices on `pio` (which may already hold the interrupt controllers) with
/// their interrupt lines on `chip`, their time from the machine's `clock`; `fw_cfg` is the
/// filled fw_cfg device. Returns the buses, the PCI host, which `machine::pci` plugs the
/// PCI functions into, and the ACPI PM block (its power button is the monitor's).
// Each argument is one thing the machine wires in (buses, IRQ chip, clock, control, console,
// trace, fw_cfg); bundling them would only move the list. TODO: a `Platform` struct when the
// next one arrives.
#[allow(clippy::too_many_arguments)]
pub fn build_devices(
    config: &MachineConfig,
    mut pio: Bus,
    chip: Arc<dyn IrqChip>,
    clock: &Arc<dyn Clock>,
    control: &Arc<Control>,
    console: &HostConsole,
    trace: &Arc<Trace>,
    fw_cfg: FwCfg,
) -> Result<BuiltDevices, MachineError> {
    let mut mmio = Bus::new();
    let events: Arc<dyn SystemEvents> = control.clone();

    let com1 = Arc::new(Mutex::new(Com1::new(
        console.output()?,
        line(&chip, COM1_IRQ),
    )));
    console.attach(com1.clone(), control.clone());
    pio.insert(com1, u64::from(COM1_BASE), COM1_LEN)
        .map_err(bus_err)?;

    let kbc = Arc::new(Mutex::new(I8042::new(
        line(&chip, i8042::KBD_IRQ),
        line(&chip, i8042::AUX_IRQ),
        events.clone(),
    )));
    for (port, addr) in i8042::bus_ports(&kbc) {
        pio.insert(Arc::new(Mutex::new(port)), u64::from(addr), i8042::PORT_LEN)
            .map_err(bus_err)?;
    }

    let low = super::memory::low_ram_end(config.ram_size);
    let high = super::memory::high_ram_size(config.ram_size);
    let cmos = Cmos::new(low, high, config.cpus)
        .with_clock(super::rtc::wall_clock(config.rtc_base, clock.clone()));
    pio.insert(Arc::new(Mutex::new(cmos)), u64::from(CMOS_BASE), CMOS_LEN)
        .map_err(bus_err)?;
    let _ = RTC_IRQ; // the RTC raises no interrupts yet

    let stages = config.trace.stages.then(|| trace.clone());
    let post = Port80::new(Box::new(move |code| {
        if let Some(t) = &stages {
            t.stage(code);
        }
    }));
    pio.insert(
        Arc::new(Mutex::new(post)),
        u64::from(PORT80_BASE),
        PORT80_LEN,
    )
    .map_err(bus_err)?;

    let pm_clock = clock.clone();
    let pm = AcpiPm::new(line(&chip, SCI_IRQ), events.clone()).with_clock(Box::new(move || {
        std::time::Duration::from_nanos(pm_clock.now_ns())
    }));
    let pm = Arc::new(Mutex::new(pm));
    pio.insert(pm.clone(), u64::from(PM_BASE), PM_LEN)
        .map_err(bus_err)?;

    let mut pci = PciHost::new(events.clone());
    if config.pci_testdev {
        add_pci_testdev(&mut pci, &mut pio, &mut mmio)?;
    }
    let pci = Arc::new(Mutex::new(pci));
    pio.insert(pci.clone(), u64::from(PCI_HOST_BASE), PCI_HOST_LEN)
        .map_err(bus_err)?;

    if let Some(de) = config.debug_exit {
        pio.insert(
            Arc::new(Mutex::new(DebugExit::new(events.clone()))),
            u64::from(de.iobase),
            u64::from(de.iosize),
        )
        .map_err(bus_err)?;
    }

    pio.insert(
        Arc::new(Mutex::new(fw_cfg)),
        u64::from(FW_CFG_PORT_SEL),
        FW_CFG_LEN,
    )
    .map_err(bus_err)?;

    if config.pc_testdev {
        add_pc_testdev(&mut pio, &mut mmio, &chip)?;
    }

    if let Some(dc) = &config.debugcon {
        let port = u64::from(dc.iobase);
        let testdev_ports =
            u64::from(TESTDEV_PORT_BASE)..u64::from(TESTDEV_PORT_BASE) + TESTDEV_PORT_LEN;
        if config.pc_testdev && testdev_ports.contains(&port) {
            // QEMU behaves the same: pc-testdev's ports hide the console (0xe9 is in 0xe8..0xeb).
            log::warn!(
                "isa-debugcon at {port:#x} is hidden by pc-testdev's ports 0xe0-0xeb; \
                 use another iobase (e.g. 0x402)"
            );
        } else {
            let dev = Debugcon::new(console.debugcon_output()?);
            pio.insert(Arc::new(Mutex::new(dev)), port, 1)
                .map_err(bus_err)?;
        }
    }

    let io = MachineIo {
        pio,
        mmio,
        lapics: None,
    };
    Ok((io, pci, pm))
}

/// QEMU's pci-testdev in the first free slot, its BARs at the addresses it reports.
fn add_pci_testdev(pci: &mut PciHost, pio: &mut Bus, mmio: &mut Bus) -> Result<(), MachineError> {
    let dev = PciTestdev::new();
    pio.insert(
        Arc::new(Mutex::new(dev.bar(true))),
        u64::from(PCI_TESTDEV_PORT_BASE),
        PCI_TESTDEV_PORT_LEN,
    )
    .map_err(bus_err)?;
    mmio.insert(
        Arc::new(Mutex::new(dev.bar(false))),
        PCI_TESTDEV_MMIO_BASE,
        PCI_TESTDEV_MMIO_LEN,
    )
    .map_err(bus_err)?;
    let pci_err =
        |e: crate::devices::pci_host::PciError| MachineError::Failed(format!("pci-testdev: {e}"));
    let slot = pci.free_slot().map_err(pci_err)?;
    pci.add_device(slot, 0, Arc::new(Mutex::new(dev)))
        .map_err(pci_err)?;
    Ok(())
}

/// QEMU's pc-testdev: its ports, its IRQ-line ports (lines 0..23) and its MMIO window.
fn add_pc_testdev(
    pio: &mut Bus,
    mmio: &mut Bus,
    chip: &Arc<dyn IrqChip>,
) -> Result<(), MachineError> {
    pio.insert(
        Arc::new(Mutex::new(TestdevPorts::new())),
        u64::from(TESTDEV_PORT_BASE),
        TESTDEV_PORT_LEN,
    )
    .map_err(bus_err)?;
    let lines = (0..TESTDEV_IRQ_LINES as u32)
        .map(|g| line(chip, g))
        .collect();
    pio.insert(
        Arc::new(Mutex::new(TestdevIrq::new(lines))),
        u64::from(TESTDEV_IRQ_BASE),
        TESTDEV_IRQ_LINES,
    )
    .map_err(bus_err)?;
    mmio.insert(
        Arc::new(Mutex::new(TestdevMem::new())),
        TESTDEV_IOMEM_BASE,
        TESTDEV_IOMEM_LEN,
    )
    .map_err(bus_err)?;
    Ok(())
}

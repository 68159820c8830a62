//! The PC machine model: the one place that wires guest RAM, devices, interrupt lines and
//! vCPUs together.
//!
//! A [`MachineConfig`] enters [`run`]; it builds the machine (accelerator, RAM, ACPI tables,
//! kernel, devices on the buses, one thread per vCPU, or one for all of them under `-icount`),
//! waits until a device, a vCPU or the user ends the run, and returns the process exit status.
//! A guest reset rebuilds the machine from the same config (unless `-no-reboot`), as a power
//! cycle would.

pub mod acpi;
mod apic_bus;
pub mod boot;
mod config;
pub mod console;
mod control;
mod drive;
pub mod firmware;
pub mod handle;
mod icount;
mod io;
mod legacy_irq;
pub mod memory;
mod pause;
mod pc;
mod pci;
mod rtc;
pub mod stats_file;
mod timers;
mod trace;
mod vcpu_loop;

use std::sync::Arc;
use std::thread;

pub use config::{
    AccelKind, CharBackend, DebugExitConfig, DebugconConfig, DriveConfig, FirmwareChoice,
    KernelSource, MachineConfig, MonitorConfig, QmpAddress, QmpConfig, RtcBase, SerialConfig,
    TraceFlags,
};
pub use control::{Control, Outcome};
pub use io::MachineIo;

use crate::accel::kvm::KvmAccel;
use crate::accel::tcg::Tcg;
use crate::accel::{AccelError, Accelerator, CrashReport, ExitStats, VcpuContext};
use crate::devices::clock::{Clock, HostClock};
use crate::devices::ioapic::{IOAPIC_BASE, IOAPIC_LEN};
use crate::monitor::gdb::{DebugHub, GdbError, GdbServer};

/// Why the machine could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// The accelerator failed to open or set up.
    #[error(transparent)]
    Accel(#[from] AccelError),
    /// Guest RAM could not be created.
    #[error(transparent)]
    Memory(#[from] memory::MemoryError),
    /// The kernel, initrd or ACPI tables could not be loaded.
    #[error(transparent)]
    Boot(#[from] boot::BootError),
    /// The firmware ROM or fw_cfg could not be set up.
    #[error(transparent)]
    Firmware(#[from] firmware::FirmwareError),
    /// A host file (serial output, log) could not be opened.
    #[error("{what} '{path}': {source}")]
    File {
        /// What the file is for.
        what: &'static str,
        /// Its path.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The gdb server could not start.
    #[error(transparent)]
    Gdb(#[from] GdbError),
    /// The QMP server could not start.
    #[error(transparent)]
    Qmp(#[from] crate::monitor::qmp::QmpError),
    /// A disk image could not be opened.
    #[error("disk image '{path}': {source}")]
    Drive {
        /// The image (or `-snapshot` overlay) path.
        path: std::path::PathBuf,
        /// What the block layer said.
        source: crate::block::BlockError,
    },
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    /// The guest stopped on something it cannot go on from.
    #[error("{0}")]
    Crash(Box<CrashReport>),
    /// The accelerator failed while running.
    #[error("{0}")]
    Failed(String),
}

/// Lock a mutex shared with device callbacks. A holder that panicked leaves plain data behind,
/// and the machine keeps running rather than wedge on it.
fn lock<T: ?Sized>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long the end of the machine waits for a connected gdb to take its exit status.
const GDB_LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// Build and run the machine described by `config`; returns the process exit status.
pub fn run(config: MachineConfig) -> Result<i32, MachineError> {
    let debug = match &config.gdb {
        Some(addr) => {
            let hub = DebugHub::new(config.gdb_wait);
            // Under KVM guest code runs natively: software breakpoints beyond the four debug
            // registers become INT3 bytes in guest memory.
            let server = GdbServer::start(addr, hub.clone(), config.accel == AccelKind::Kvm)?;
            log::info!("waiting for gdb on {}", server.local_addr());
            Some(hub)
        }
        None => None,
    };
    let handle = handle::MachineHandle::new(config.start_paused);
    handle.set_debug_hub(debug.clone());
    let mut qmp = match &config.qmp {
        Some(q) => Some(crate::monitor::qmp::QmpServer::start(q, handle.clone())?),
        None => None,
    };
    if config.monitor == MonitorConfig::Stdio {
        crate::monitor::hmp::spawn_stdio(handle.clone()).map_err(MachineError::Thread)?;
    }
    if let Some(q) = &mut qmp {
        q.wait_for_client();
    }
    let result = run_cycles(&config, debug.as_ref(), &handle);
    handle.end();
    if let Some(hub) = &debug {
        hub.finish(*result.as_ref().unwrap_or(&1), GDB_LINGER);
    }
    result
}

/// Power cycles until the run ends.
fn run_cycles(
    config: &MachineConfig,
    debug: Option<&Arc<DebugHub>>,
    handle: &Arc<handle::MachineHandle>,
) -> Result<i32, MachineError> {
    if config.icount.is_some() && config.accel != AccelKind::Tcg {
        // The instruction count is the software CPU's; KVM runs guest code natively.
        return Err(MachineError::Failed(
            "-icount needs -accel tcg (KVM cannot count guest instructions)".into(),
        ));
    }
    let trace = trace::Trace::open(config)?;
    let (image, initrd) = read_inputs(config)?;
    let rom = firmware::rom_image(config)?;
    let host_console = pc::HostConsole::open(config, handle)?;
    let disks = drive::open_drives(&config.drives)?;
    let inputs = Inputs {
        image: &image,
        initrd: initrd.as_deref(),
        rom: rom.as_deref(),
        disks: &disks,
    };
    if config.trace.needs_tcg() && config.accel == AccelKind::Kvm {
        // As QEMU: these look inside the software CPU, which KVM does not use.
        eprintln!(
            "kemu: note: -d in_asm,int,cpu trace the software CPU and need -accel tcg; \
             under kvm only exits and stages are traced"
        );
    }
    loop {
        let outcome = run_once(config, &inputs, &host_console, &trace, debug, handle)?;
        let rebooting = matches!(outcome, Outcome::Reset) && !config.no_reboot;
        handle.cycle_ended(&outcome, rebooting);
        match outcome {
            Outcome::Reset if !config.no_reboot => {
                log::info!("guest reset: rebuilding the machine");
                continue;
            }
            Outcome::Reset | Outcome::PowerOff | Outcome::Quit => return Ok(0),
            Outcome::Exit(code) => return Ok(code),
            Outcome::Crash(report) => return Err(MachineError::Crash(report)),
            Outcome::Failed(why) => return Err(MachineError::Failed(why)),
        }
    }
}

fn read_inputs(config: &MachineConfig) -> Result<(Vec<u8>, Option<Vec<u8>>), MachineError> {
    let image = match &config.kernel {
        KernelSource::File(path) => std::fs::read(path).map_err(|source| MachineError::File {
            what: "cannot read kernel",
            path: path.clone(),
            source,
        })?,
        KernelSource::Embedded { image, .. } => image.to_vec(),
        KernelSource::None => Vec::new(),
    };
    let initrd = config
        .initrd
        .as_deref()
        .map(boot::read_initrd)
        .transpose()?;
    Ok((image, initrd))
}

/// The accelerator, and the software CPU's concrete handle when that is the one.
type OpenedAccel = (Arc<dyn Accelerator>, Option<Arc<Tcg>>);

fn open_accel(config: &MachineConfig) -> Result<OpenedAccel, MachineError> {
    Ok(match config.accel {
        AccelKind::Kvm => (Arc::new(KvmAccel::open(config.kernel_irqchip)?), None),
        AccelKind::Tcg => {
            let tcg = Arc::new(Tcg::new());
            tcg.set_jit(config.jit);
            (tcg.clone(), Some(tcg))
        }
    })
}

/// What every power cycle boots: the files, read once.
struct Inputs<'a> {
    /// The kernel image (empty with no kernel).
    image: &'a [u8],
    /// The initrd.
    initrd: Option<&'a [u8]>,
    /// The firmware ROM, if the boot CPU starts at the reset vector.
    rom: Option<&'a [u8]>,
    /// The disks, opened (and locked) once for the whole run, so a reboot keeps them.
    disks: &'a [drive::SharedDisk],
}

/// Puts the kernel (if any) and the ACPI tables in RAM; returns the boot CPU's first state (the
/// reset vector with a ROM, the kernel's entry without) and the fw_cfg device describing it all.
fn prepare_boot(
    config: &MachineConfig,
    inputs: &Inputs,
    ram: &crate::accel::GuestRam,
) -> Result<(crate::accel::VcpuState, crate::devices::fw_cfg::FwCfg), MachineError> {
    let setup = if firmware::no_kernel(config) {
        acpi::write_acpi_tables(ram, config.cpus, config.ram_size)
            .map_err(boot::BootError::from)?;
        None
    } else {
        let boot_cfg = boot::BootConfig {
            cmdline: config.cmdline.clone(),
            initrd: inputs.initrd.map(<[u8]>::to_vec),
            ram_size: config.ram_size,
            cpus: config.cpus,
        };
        let setup = boot::load_kernel(ram, inputs.image, &boot_cfg)?;
        log::info!(
            "kernel: {:?} entry at {:#x} in {}",
            setup.method,
            setup.entry,
            setup.bsp.mode_name()
        );
        Some(setup)
    };
    let bsp_state = match (inputs.rom, &setup) {
        (Some(rom), _) => {
            log::info!(
                "booting through firmware ({} KiB ROM) from the reset vector",
                rom.len() >> 10
            );
            crate::accel::VcpuState::reset()
        }
        (None, Some(setup)) => setup.bsp.clone(),
        (None, None) => {
            return Err(MachineError::Failed(
                "nothing to boot: no kernel and no firmware".into(),
            ))
        }
    };
    let fw_cfg = firmware::fw_cfg(
        config,
        (!firmware::no_kernel(config)).then_some(firmware::KernelInfo {
            image: inputs.image,
            initrd: inputs.initrd,
            setup: setup.as_ref(),
        }),
    )?;
    Ok((bsp_state, fw_cfg))
}

/// One power cycle: build everything, run until the first event that ends the run.
fn run_once(
    config: &MachineConfig,
    inputs: &Inputs,
    host_console: &pc::HostConsole,
    trace: &Arc<trace::Trace>,
    debug: Option<&Arc<DebugHub>>,
    handle: &Arc<handle::MachineHandle>,
) -> Result<Outcome, MachineError> {
    let started = std::time::Instant::now();
    let (accel, tcg) = open_accel(config)?;
    // Under KVM the ROM is one more memory slot; the software CPU reads it as a device.
    let rom_in_ram = config.accel == AccelKind::Kvm;
    let rom_slot = match inputs.rom {
        Some(rom) if rom_in_ram => rom.len() as u64,
        _ => 0,
    };
    let ram = Arc::new(memory::create_ram_with_rom(config.ram_size, rom_slot)?);
    accel.map_ram(&ram)?;
    let (bsp_state, fw_cfg) = prepare_boot(config, inputs, &ram)?;

    let control = Control::new();
    handle.prepare_cycle(&control);
    let stats = Arc::new(if config.trace.exits {
        let trace = trace.clone();
        ExitStats::with_observer(config.cpus, Box::new(move |v, r| trace.exit(v, r)))
    } else {
        ExitStats::new(config.cpus)
    });
    // One clock for the machine: PIT, APIC timers, ACPI PM timer, CMOS RTC and the software
    // CPU's TSC. Under -icount it is the instruction count (only the software CPU counts).
    let icount = match (config.icount, &tcg) {
        (Some(shift), Some(tcg)) => {
            let budget = Arc::new(crate::accel::tcg::IcountBudget::new());
            tcg.set_icount(budget.clone());
            Some((icount::clock(shift, stats.clone()), budget))
        }
        _ => None,
    };
    let clock: Arc<dyn Clock> = match &icount {
        Some((c, _)) => c.clone(),
        None => Arc::new(HostClock::new()),
    };
    let mut pio = crate::devices::Bus::new();
    // Under KVM the in-kernel irqchip, PIT and APICs serve these unless the user asked for
    // ours (kernel-irqchip=off); our CPU always needs ours.
    let soft_irq = if tcg.is_some() || !config.kernel_irqchip {
        let legacy =
            legacy_irq::LegacyIrq::build(&mut pio, &control, clock.clone()).map_err(pc::bus_err)?;
        let apics = apic_bus::ApicBus::new(
            config.cpus,
            clock.clone(),
            legacy.pic.clone(),
            control.clone(),
        );
        for id in 0..config.cpus {
            accel.set_interrupt_source(id, apics.interrupt_source(id))?;
        }
        if icount.is_some() {
            apics.kick_on_timer_write();
        }
        if let Some(tcg) = &tcg {
            let tsc_clock = clock.clone();
            tcg.set_time_source(Arc::new(move || tsc_clock.now_ns()));
        }
        Some((legacy, apics))
    } else {
        None
    };
    let chip = soft_irq
        .as_ref()
        .map_or_else(|| accel.irq_chip(), |(_, apics)| apics.irq_chip());
    let (mut io, pci_host, pm) = pc::build_devices(
        config,
        pio,
        chip.clone(),
        &clock,
        &control,
        host_console,
        trace,
        fw_cfg,
    )?;
    if let Some((_, apics)) = &soft_irq {
        io.mmio
            .insert(apics.ioapic(), IOAPIC_BASE, IOAPIC_LEN)
            .map_err(pc::bus_err)?;
        io.lapics = Some(apics.clone());
    }
    if let Some(rom) = inputs.rom {
        firmware::map_rom(&ram, &mut io.mmio, rom, rom_in_ram)?;
    }
    // Which frames hold the software CPUs' translated code; disks announce their DMA here.
    let last_ram = vm_memory::GuestMemoryBackend::last_addr(&*ram).0;
    let code_watch = Arc::new(crate::accel::CodeWatch::new(last_ram, config.cpus));
    pci::add_disks(
        &mut io,
        &pci_host,
        &chip,
        &ram,
        &code_watch,
        inputs.disks,
        &config.drives,
    )?;
    let io = Arc::new(io);
    if let Some(tcg) = &tcg {
        let t = config.trace;
        let mask = crate::cpu::trace::TraceMask {
            in_asm: t.in_asm,
            int: t.int,
            cpu: t.cpu,
        };
        if mask.any() {
            tcg.set_trace(mask, trace.clone());
        }
    }
    let ctx = VcpuContext {
        ram: ram.clone(),
        io: io.clone(),
        stats: stats.clone(),
        cpu_count: config.cpus,
        code: code_watch,
    };
    let mut vcpus = Vec::with_capacity(config.cpus);
    for id in 0..config.cpus {
        let mut vcpu = accel.create_vcpu(id, ctx.clone())?;
        if id == 0 {
            vcpu.set_state(&bsp_state)?;
        }
        control.add_kicker(vcpu.kicker());
        vcpus.push(vcpu);
    }
    if let Some(hub) = debug {
        let kick = control.clone();
        let quit = control.clone();
        hub.start_machine(
            config.cpus,
            ram.clone(),
            move || kick.kick_all(),
            move || quit.finish(Outcome::Quit),
        );
    }
    handle.attach_cycle(handle::CycleView {
        control: control.clone(),
        stats: stats.clone(),
        ram: ram.clone(),
        io: io.clone(),
        pci: pci_host.clone(),
        pm,
        cpus: config.cpus,
        accel: accel.name(),
    });
    let timer_poll = soft_irq.as_ref().map(|(legacy, apics)| {
        timers::TimerPoll::new(legacy.pit.clone(), chip.clone(), apics.clone())
    });
    let mut threads = Vec::with_capacity(vcpus.len());
    let mut ticker = None;
    match (icount, timer_poll) {
        // -icount: every vCPU on one thread, which also delivers the timers.
        (Some((clock, budget)), Some(timers)) => {
            let l = icount::IcountLoop {
                control: control.clone(),
                debug: debug.cloned(),
                timers,
                clock,
                budget,
            };
            let handle = thread::Builder::new()
                .name("vcpus".into())
                .spawn(move || {
                    icount::run_vcpus(vcpus, &l);
                    stats_file::CpuTime::this_thread()
                })
                .map_err(MachineError::Thread)?;
            threads.push(handle);
        }
        (_, timer_poll) => {
            for (id, vcpu) in vcpus.into_iter().enumerate() {
                let control = control.clone();
                let debug = debug.cloned();
                let handle = thread::Builder::new()
                    .name(format!("vcpu{id}"))
                    .spawn(move || {
                        vcpu_loop::run_vcpu(vcpu, control, debug);
                        stats_file::CpuTime::this_thread()
                    })
                    .map_err(MachineError::Thread)?;
                threads.push(handle);
            }
            if let Some(timers) = timer_poll {
                ticker = Some(timers::spawn(control.clone(), timers, clock.clone())?);
            }
        }
    }
    control.wait_finished();
    if let Some(t) = ticker {
        let _ = t.join();
    }
    let mut vcpu_time = stats_file::CpuTime::default();
    for t in threads {
        match t.join() {
            Ok(time) => vcpu_time = vcpu_time + time,
            Err(_) => control.finish(Outcome::Failed("a vCPU thread panicked".into())),
        }
    }
    if let Some(path) = &config.stats_file {
        let run = stats_file::RunStats::gather(accel.name(), &stats, started.elapsed(), vcpu_time);
        std::fs::write(path, run.to_text()).map_err(|source| MachineError::File {
            what: "cannot write the stats file",
            path: path.clone(),
            source,
        })?;
    }
    if config.trace.exits {
        trace.write(&format!(
            "exit statistics ({} accelerator, {} vCPU{}):\n{}",
            accel.name(),
            config.cpus,
            if config.cpus == 1 { "" } else { "s" },
            stats.table()
        ));
    }
    Ok(control
        .outcome()
        .unwrap_or_else(|| Outcome::Failed("the machine stopped without a reason".into())))
}

//! The PC machine model: the one place that wires guest RAM, devices, interrupt lines and
//! vCPUs together.
//!
//! A [`MachineConfig`] enters [`run`]; it builds the machine (accelerator, RAM, ACPI tables,
//! kernel, devices on the buses, one thread per vCPU), waits until a device, a vCPU or the user
//! ends the run, and returns the process exit status. A guest reset rebuilds the machine from
//! the same config (unless `-no-reboot`), as a power cycle would.

pub mod acpi;
pub mod boot;
mod config;
pub mod console;
mod control;
pub mod firmware;
mod io;
mod legacy_irq;
pub mod memory;
mod pc;
mod trace;
mod vcpu_loop;

use std::sync::Arc;
use std::thread;

pub use config::{
    AccelKind, CharBackend, DebugExitConfig, DebugconConfig, FirmwareChoice, KernelSource,
    MachineConfig, SerialConfig, TraceFlags,
};
pub use control::{Control, Outcome};
pub use io::MachineIo;

use crate::accel::kvm::KvmAccel;
use crate::accel::tcg::Tcg;
use crate::accel::{AccelError, Accelerator, CrashReport, ExitStats, VcpuContext};

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

/// Build and run the machine described by `config`; returns the process exit status.
pub fn run(config: MachineConfig) -> Result<i32, MachineError> {
    let trace = trace::Trace::open(&config)?;
    let (image, initrd) = read_inputs(&config)?;
    let rom = firmware::rom_image(&config)?;
    let host_console = pc::HostConsole::open(&config)?;
    let inputs = Inputs {
        image: &image,
        initrd: initrd.as_deref(),
        rom: rom.as_deref(),
    };
    loop {
        let outcome = run_once(&config, &inputs, &host_console, &trace)?;
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

fn open_accel(kind: AccelKind) -> Result<OpenedAccel, MachineError> {
    Ok(match kind {
        AccelKind::Kvm => (Arc::new(KvmAccel::open()?), None),
        AccelKind::Tcg => {
            let tcg = Arc::new(Tcg::new());
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
) -> Result<Outcome, MachineError> {
    let (accel, tcg) = open_accel(config.accel)?;
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
    let mut pio = crate::devices::Bus::new();
    // Under KVM the in-kernel irqchip and PIT serve these; our CPU needs ours.
    let legacy = match &tcg {
        Some(tcg) => {
            let legacy = legacy_irq::LegacyIrq::build(&mut pio, &control).map_err(pc::bus_err)?;
            tcg.set_interrupt_source(legacy.interrupt_source());
            Some(legacy)
        }
        None => None,
    };
    let chip = legacy
        .as_ref()
        .map_or_else(|| accel.irq_chip(), |l| l.chip());
    let mut io = pc::build_devices(config, pio, chip, &control, host_console, trace, fw_cfg)?;
    if let Some(rom) = inputs.rom {
        firmware::map_rom(&ram, &mut io.mmio, rom, rom_in_ram)?;
    }
    let io = Arc::new(io);
    let stats = Arc::new(ExitStats::new(config.cpus));
    let ctx = VcpuContext {
        ram: ram.clone(),
        io: io.clone(),
        stats: stats.clone(),
        cpu_count: config.cpus,
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
    let mut threads = Vec::with_capacity(vcpus.len());
    for (id, vcpu) in vcpus.into_iter().enumerate() {
        let control = control.clone();
        let handle = thread::Builder::new()
            .name(format!("vcpu{id}"))
            .spawn(move || vcpu_loop::run_vcpu(vcpu, control))
            .map_err(MachineError::Thread)?;
        threads.push(handle);
    }
    let ticker = match &legacy {
        Some(l) => Some(l.spawn_pit_ticker(control.clone())?),
        None => None,
    };
    control.wait_finished();
    if let Some(t) = ticker {
        let _ = t.join();
    }
    for t in threads {
        if t.join().is_err() {
            control.finish(Outcome::Failed("a vCPU thread panicked".into()));
        }
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

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
mod drive;
mod io;
mod legacy_irq;
pub mod memory;
mod pc;
mod pci;
mod trace;
mod vcpu_loop;

use std::sync::Arc;
use std::thread;

pub use config::{
    AccelKind, DebugExitConfig, DriveConfig, KernelSource, MachineConfig, SerialConfig, TraceFlags,
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

/// Build and run the machine described by `config`; returns the process exit status.
pub fn run(config: MachineConfig) -> Result<i32, MachineError> {
    let trace = trace::Trace::open(&config)?;
    let (image, initrd) = read_inputs(&config)?;
    let host_console = pc::HostConsole::open(&config)?;
    let disks = drive::open_drives(&config.drives)?;
    loop {
        let inputs = Inputs {
            image: &image,
            initrd: initrd.as_deref(),
            disks: &disks,
        };
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

/// What a power cycle starts from, read or opened once per run.
struct Inputs<'a> {
    image: &'a [u8],
    initrd: Option<&'a [u8]>,
    disks: &'a [drive::SharedDisk],
}

/// One power cycle: build everything, run until the first event that ends the run.
fn run_once(
    config: &MachineConfig,
    inputs: &Inputs<'_>,
    host_console: &pc::HostConsole,
    trace: &Arc<trace::Trace>,
) -> Result<Outcome, MachineError> {
    let (accel, tcg) = open_accel(config.accel)?;
    let ram = Arc::new(memory::create_ram(config.ram_size)?);
    accel.map_ram(&ram)?;
    let boot_cfg = boot::BootConfig {
        cmdline: config.cmdline.clone(),
        initrd: inputs.initrd.map(<[u8]>::to_vec),
        ram_size: config.ram_size,
        cpus: config.cpus,
    };
    let setup = boot::load_kernel(&ram, inputs.image, &boot_cfg)?;
    log::info!(
        "booting via {:?} at {:#x} in {}",
        setup.method,
        setup.entry,
        setup.bsp.mode_name()
    );

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
    let (mut io, pci_host) =
        pc::build_devices(config, pio, chip.clone(), &control, host_console, trace)?;
    pci::add_disks(
        &mut io,
        &pci_host,
        &chip,
        &ram,
        inputs.disks,
        &config.drives,
    )?;
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
            vcpu.set_state(&setup.bsp)?;
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

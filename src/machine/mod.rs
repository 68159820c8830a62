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
mod io;
mod legacy_irq;
pub mod memory;
mod pc;
pub mod stats_file;
mod trace;
mod vcpu_loop;

use std::sync::Arc;
use std::thread;

pub use config::{
    AccelKind, DebugExitConfig, KernelSource, MachineConfig, SerialConfig, TraceFlags,
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
    if config.trace.needs_tcg() && config.accel == AccelKind::Kvm {
        // As QEMU: these look inside the software CPU, which KVM does not use.
        eprintln!(
            "kemu: note: -d in_asm,int,cpu trace the software CPU and need -accel tcg; \
             under kvm only exits and stages are traced"
        );
    }
    let (image, initrd) = read_inputs(&config)?;
    let host_console = pc::HostConsole::open(&config)?;
    loop {
        let outcome = run_once(&config, &image, initrd.as_deref(), &host_console, &trace)?;
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

/// One power cycle: build everything, run until the first event that ends the run.
fn run_once(
    config: &MachineConfig,
    image: &[u8],
    initrd: Option<&[u8]>,
    host_console: &pc::HostConsole,
    trace: &Arc<trace::Trace>,
) -> Result<Outcome, MachineError> {
    let started = std::time::Instant::now();
    let (accel, tcg) = open_accel(config.accel)?;
    let ram = Arc::new(memory::create_ram(config.ram_size)?);
    accel.map_ram(&ram)?;
    let boot_cfg = boot::BootConfig {
        cmdline: config.cmdline.clone(),
        initrd: initrd.map(<[u8]>::to_vec),
        ram_size: config.ram_size,
        cpus: config.cpus,
    };
    let setup = boot::load_kernel(&ram, image, &boot_cfg)?;
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
    let io = Arc::new(pc::build_devices(
        config,
        pio,
        chip,
        &control,
        host_console,
        trace,
    )?);
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
    let stats = Arc::new(if config.trace.exits {
        let trace = trace.clone();
        ExitStats::with_observer(config.cpus, Box::new(move |v, r| trace.exit(v, r)))
    } else {
        ExitStats::new(config.cpus)
    });
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
            .spawn(move || {
                vcpu_loop::run_vcpu(vcpu, control);
                stats_file::CpuTime::this_thread()
            })
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

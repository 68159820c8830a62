//! What a machine is made of, as the command line (or a test) describes it.

use std::path::PathBuf;

use crate::block::Format;
use crate::devices::virtio::blk::CacheMode;

/// Which accelerator runs the vCPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelKind {
    /// The host's `/dev/kvm`.
    Kvm,
    /// kemu's software CPU.
    Tcg,
}

impl AccelKind {
    /// The name as spelled on the command line.
    pub fn name(self) -> &'static str {
        match self {
            AccelKind::Kvm => "kvm",
            AccelKind::Tcg => "tcg",
        }
    }
}

/// The kernel to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelSource {
    /// A file given with `-kernel`.
    File(PathBuf),
    /// An image built into kemu (the demo guest).
    Embedded {
        /// Its name, for messages.
        name: &'static str,
        /// Its bytes.
        image: &'static [u8],
    },
    /// No kernel: the firmware boots by itself (`-bios FILE` without `-kernel`).
    None,
}

/// What the boot CPU runs first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FirmwareChoice {
    /// kemu's firmware under tcg, direct kernel boot under KVM (where PVM runs real mode only
    /// slowly).
    #[default]
    Auto,
    /// Direct kernel boot: the boot CPU starts at the kernel's entry (`-bios none`).
    None,
    /// kemu's own firmware (`bios/`), from the reset vector.
    Kemu,
    /// A user ROM (`-bios FILE`), from the reset vector.
    File(PathBuf),
}

/// What the CMOS real-time clock reads when the machine starts (`-rtc base=`); it then counts
/// the machine's clock (virtual time under `-icount`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RtcBase {
    /// The host's UTC time at start.
    #[default]
    Utc,
    /// The host's local time at start.
    LocalTime,
    /// This moment, in seconds since 1970-01-01T00:00:00 UTC (deterministic runs).
    Fixed(u64),
}

/// A character backend (`-chardev`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CharBackend {
    /// The terminal (stdout).
    Stdio,
    /// A file, created (truncated) when the machine starts.
    File(PathBuf),
    /// Nowhere.
    Null,
}

/// QEMU's isa-debugcon: bytes written to `iobase` go to `chardev`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugconConfig {
    /// The port (QEMU's default 0xe9).
    pub iobase: u16,
    /// Where the bytes go.
    pub chardev: CharBackend,
}

/// Where the guest's COM1 output goes and whence its input comes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialConfig {
    /// The terminal: output to stdout, input from stdin.
    Stdio,
    /// Output to a file, no input.
    File(PathBuf),
    /// Nowhere.
    None,
}

/// QEMU's isa-debug-exit device: a write of `v` to `iobase` ends kemu with `(v << 1) | 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebugExitConfig {
    /// First port.
    pub iobase: u16,
    /// Number of ports.
    pub iosize: u16,
}

/// What `-d` asks to trace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TraceFlags {
    /// Log every exit (one line each) and print the exit statistics table when the machine
    /// stops.
    pub exits: bool,
    /// Log port-0x80 boot stages with timestamps.
    pub stages: bool,
    /// Software CPU: log each block of guest code when it is decoded (QEMU's `in_asm`).
    pub in_asm: bool,
    /// Software CPU: log each exception and interrupt delivered (QEMU's `int`).
    pub int: bool,
    /// Software CPU: dump the registers before each executed block (QEMU's `cpu`).
    pub cpu: bool,
}

impl TraceFlags {
    /// Whether any item only the software CPU can trace is on.
    pub fn needs_tcg(&self) -> bool {
        self.in_asm || self.int || self.cpu
    }
}

/// A disk on a virtio-blk device (`-drive if=virtio`, `-hda`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveConfig {
    /// The image file.
    pub path: PathBuf,
    /// Its format; `None` probes it (qcow2 magic, else raw).
    pub format: Option<Format>,
    /// Open read-only: the guest sees VIRTIO_BLK_F_RO and its writes fail.
    pub read_only: bool,
    /// Writes go to a throw-away overlay; the image is never written (`-snapshot`).
    pub snapshot: bool,
    /// How flushes and writes reach the host.
    pub cache: CacheMode,
}

/// Where the human monitor (HMP) is (`-monitor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MonitorConfig {
    /// No monitor of its own (`-monitor none`); with the serial console on stdio, `Ctrl-A c`
    /// still switches to the monitor, as QEMU's `-nographic` does.
    #[default]
    None,
    /// A `(kemu) ` prompt on stdin/stdout (`-monitor stdio`).
    Stdio,
}

/// Where QMP listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QmpAddress {
    /// A Unix socket at this path (created; an old socket file is replaced).
    Unix(PathBuf),
    /// A TCP `host:port`.
    Tcp(String),
}

/// The QMP server (`-qmp unix:PATH,server=on,wait=off`, `-qmp tcp:HOST:PORT,server,nowait`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QmpConfig {
    /// Where it listens.
    pub address: QmpAddress,
    /// The guest starts only once a client has connected (QEMU's default `wait=on`).
    pub wait: bool,
}

/// A complete description of a machine to build and run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineConfig {
    /// The accelerator.
    pub accel: AccelKind,
    /// Under KVM: KVM's in-kernel PIC, IOAPIC, LAPICs and PIT serve the interrupts (QEMU's
    /// `kernel-irqchip=on`, the default); false: the software CPU's own devices do, in
    /// userspace (`kernel-irqchip=off`). The software CPU always uses its own.
    pub kernel_irqchip: bool,
    /// Under tcg: translate hot blocks to host code (`-accel tcg,jit=off` interprets only).
    pub jit: bool,
    /// Guest RAM in bytes.
    pub ram_size: u64,
    /// Number of vCPUs.
    pub cpus: usize,
    /// The kernel.
    pub kernel: KernelSource,
    /// The initial RAM disk, if any.
    pub initrd: Option<PathBuf>,
    /// The kernel command line.
    pub cmdline: String,
    /// COM1.
    pub serial: SerialConfig,
    /// Exit instead of resetting when the guest reboots or triple-faults.
    pub no_reboot: bool,
    /// The isa-debug-exit device, if configured.
    pub debug_exit: Option<DebugExitConfig>,
    /// `-d` flags.
    pub trace: TraceFlags,
    /// `-D`: where traces go (stderr if none).
    pub log_file: Option<PathBuf>,
    /// `-s` / `-gdb`: serve gdb on this `host:port`.
    pub gdb: Option<String>,
    /// `-S`: the vCPUs wait for the debugger's `continue` before the first instruction.
    pub gdb_wait: bool,
    /// `-bios`: what the boot CPU runs first.
    pub firmware: FirmwareChoice,
    /// `-device isa-debugcon`, if configured.
    pub debugcon: Option<DebugconConfig>,
    /// `-device pc-testdev`.
    pub pc_testdev: bool,
    /// `-device pci-testdev`.
    pub pci_testdev: bool,
    /// Where to write the exit statistics when the machine stops (`kemu bench` reads them).
    pub stats_file: Option<PathBuf>,
    /// Disks, each on its own virtio-blk PCI function (slots 1, 2, ... in this order).
    pub drives: Vec<DriveConfig>,
    /// `-icount shift=N`: time is the instruction count, 2^N ns per instruction (tcg only);
    /// `None`: host time.
    pub icount: Option<u32>,
    /// `-rtc base=`: the CMOS clock's time at start.
    pub rtc_base: RtcBase,
    /// The human monitor.
    pub monitor: MonitorConfig,
    /// The QMP server, if any.
    pub qmp: Option<QmpConfig>,
    /// `-S` without gdb: the vCPUs wait for the monitor's `cont`.
    pub start_paused: bool,
}

impl MachineConfig {
    /// A machine with QEMU's defaults for `kernel`: 128 MiB, one vCPU, serial on stdio.
    pub fn new(accel: AccelKind, kernel: KernelSource) -> Self {
        MachineConfig {
            accel,
            kernel_irqchip: true,
            jit: true,
            ram_size: 128 << 20,
            cpus: 1,
            kernel,
            initrd: None,
            cmdline: String::new(),
            serial: SerialConfig::Stdio,
            no_reboot: false,
            debug_exit: None,
            trace: TraceFlags::default(),
            log_file: None,
            gdb: None,
            gdb_wait: false,
            firmware: FirmwareChoice::Auto,
            debugcon: None,
            pc_testdev: false,
            pci_testdev: false,
            stats_file: None,
            drives: Vec::new(),
            icount: None,
            rtc_base: RtcBase::Utc,
            monitor: MonitorConfig::None,
            qmp: None,
            start_paused: false,
        }
    }
}

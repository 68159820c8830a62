//! The `kemu` command line: QEMU's flags in, a [`MachineConfig`] out, then the machine runs and
//! its outcome becomes the process exit status. This is the only place that uses `anyhow`:
//! every error ends as one line `kemu: <what went wrong>` on stderr.

mod bench;
mod drive;
mod qemu_args;
mod time;
mod values;

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::bail;
use clap::Parser;
pub use qemu_args::{normalize, ArgError};
pub use values::{parse_chardev, parse_mem, parse_size, parse_smp, DeviceSpec, ValueError};

use crate::machine::{
    AccelKind, CharBackend, DebugconConfig, DriveConfig, FirmwareChoice, KernelSource,
    MachineConfig, SerialConfig,
};

/// kemu: an x86-64 PC emulator (KVM or its own software CPU). Options use QEMU's spelling.
#[derive(Debug, Parser)]
#[command(
    name = "kemu",
    version,
    disable_help_flag = true,
    disable_version_flag = true
)]
struct Args {
    /// Accelerator: kvm or tcg (default tcg, as QEMU).
    #[arg(long)]
    accel: Option<String>,
    /// Same as -accel kvm.
    #[arg(long = "enable-kvm")]
    enable_kvm: bool,
    /// RAM size: 512 (MiB), 512M, 2G, size=1G.
    #[arg(long = "m")]
    mem: Option<String>,
    /// Number of vCPUs: N or cpus=N[,sockets=,cores=,threads=].
    #[arg(long)]
    smp: Option<String>,
    /// Kernel: Linux bzImage, ELF vmlinux with a PVH note, or multiboot (ELF32 / a.out kludge).
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// Initial RAM disk (Linux) or first module (multiboot).
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long)]
    append: Option<String>,
    /// No display; serial on the terminal.
    #[arg(long)]
    nographic: bool,
    /// Display backend: only `none`.
    #[arg(long)]
    display: Option<String>,
    /// COM1 backend: stdio, mon:stdio, none, null, file:PATH.
    #[arg(long)]
    serial: Option<String>,
    /// Exit instead of rebooting.
    #[arg(long = "no-reboot")]
    no_reboot: bool,
    /// A device: isa-debug-exit[,iobase=0xf4,iosize=0x04], virtio-blk-pci,drive=ID.
    #[arg(long)]
    device: Vec<String>,
    /// Machine type and properties: pc[,accel=kvm|tcg][,kernel-irqchip=on|off]. Under KVM,
    /// kernel-irqchip=off runs the software CPU's own PIC, PIT, IOAPIC and LAPICs in userspace
    /// instead of KVM's in-kernel ones (compare with `-d exits` or `info exits`).
    #[arg(long)]
    machine: Option<String>,
    /// Same as -machine.
    #[arg(long = "M")]
    machine_short: Option<String>,
    /// CPU model: host, max, qemu64, kvm64.
    #[arg(long)]
    cpu: Option<String>,
    /// Trace: exits, stages, in_asm, int, cpu (comma-separated; the last three need tcg).
    #[arg(long = "d")]
    trace: Option<String>,
    /// Write traces to this file instead of stderr.
    #[arg(long = "D")]
    log_file: Option<PathBuf>,
    /// Serve gdb on tcp::1234 (same as -gdb tcp::1234).
    #[arg(long = "s")]
    gdb_default: bool,
    /// Serve gdb: tcp::PORT (127.0.0.1) or tcp:HOST:PORT.
    #[arg(long)]
    gdb: Option<String>,
    /// Do not start the CPUs: wait for gdb's continue (needs -s or -gdb).
    #[arg(long = "S")]
    freeze: bool,
    /// Firmware ROM to start from the reset vector: FILE, `kemu` (built in), `none` (direct).
    #[arg(long)]
    bios: Option<String>,
    /// Character backend: stdio,id=X | file,id=X,path=P | null,id=X.
    #[arg(long)]
    chardev: Vec<String>,
    /// Device property default DRIVER.PROP=VALUE (accepted, ignored with a warning).
    #[arg(long)]
    global: Vec<String>,
    /// Human monitor: stdio (a `(kemu)` prompt) or none; on -nographic Ctrl-A c toggles it.
    #[arg(long)]
    monitor: Option<String>,
    /// QMP server: unix:PATH,server=on[,wait=off] or tcp:HOST:PORT,server[,nowait].
    #[arg(long)]
    qmp: Option<String>,
    /// No default devices (no COM1 backend unless -serial is given).
    #[arg(long)]
    nodefaults: bool,
    /// Boot the embedded demo guest (what kemu does with no arguments).
    #[arg(long)]
    demo: bool,
    /// Write the exit statistics to this file at exit (used by kemu bench).
    #[arg(long = "stats-file", hide = true)]
    stats_file: Option<PathBuf>,
    /// A disk: file=F[,format=raw|qcow2][,if=virtio|none][,id=ID][,cache=writeback|none|
    /// writethrough|directsync|unsafe][,readonly=on|off][,snapshot=on|off] (virtio-blk).
    #[arg(long)]
    drive: Vec<String>,
    /// A disk image on virtio-blk (same as -drive file=F).
    #[arg(long)]
    hda: Option<PathBuf>,
    /// Write to throw-away overlays; disk images are never written.
    #[arg(long)]
    snapshot: bool,
    /// Deterministic clock (tcg): shift=N (or N), each instruction is 2^N ns, N in 0..=10.
    #[arg(long)]
    icount: Option<String>,
    /// RTC start: base=utc|localtime|YYYY-MM-DDTHH:MM:SS.
    #[arg(long)]
    rtc: Option<String>,
    /// Print help.
    #[arg(long, alias = "h")]
    help: bool,
    /// Print the version.
    #[arg(long)]
    version: bool,
}

/// Run kemu with `args` (argv including the program name); returns the process exit status.
pub fn main_with_args(args: Vec<OsString>) -> i32 {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .try_init();
    let rest = &args[1.min(args.len())..];
    // `kemu img ...`: the image tool, qemu-img's spelling.
    if rest.first().and_then(|a| a.to_str()) == Some("img") {
        let words: Option<Vec<String>> = rest[1..]
            .iter()
            .map(|a| a.to_str().map(String::from))
            .collect();
        return match words {
            Some(w) => crate::block::img::img_main(&w),
            None => {
                eprintln!("kemu img: arguments must be valid UTF-8");
                1
            }
        };
    }
    // `kemu bench ...`: the accelerator comparison.
    if rest.first().and_then(|a| a.to_str()) == Some("bench") {
        let words: Option<Vec<String>> = rest[1..]
            .iter()
            .map(|a| a.to_str().map(String::from))
            .collect();
        return match words {
            Some(w) => bench::bench_main(&w),
            None => {
                eprintln!("kemu bench: arguments must be valid UTF-8");
                1
            }
        };
    }
    match run(rest) {
        Ok(status) => status,
        Err(e) => {
            eprintln!("kemu: {}", one_line(&e));
            1
        }
    }
}

/// `a: b: c` from an error chain, on one line.
fn one_line(e: &anyhow::Error) -> String {
    let text = format!("{e}");
    text.lines().next().unwrap_or("error").trim().to_string()
}

fn run(args: &[OsString]) -> anyhow::Result<i32> {
    let normalized = normalize(args)?;
    let parsed = Args::try_parse_from(std::iter::once("kemu".to_string()).chain(normalized))
        .map_err(|e| {
            anyhow::anyhow!(
                "{}",
                e.to_string().lines().next().unwrap_or("bad arguments")
            )
        })?;
    if parsed.help {
        print!("{}", help_text());
        return Ok(0);
    }
    if parsed.version {
        println!("kemu {}", env!("CARGO_PKG_VERSION"));
        return Ok(0);
    }
    // `-demo` (or nothing at all) is the default when no -kernel is given.
    let config = build_config(parsed)?;
    Ok(crate::machine::run(config)?)
}

fn help_text() -> String {
    use clap::CommandFactory;
    let mut text = String::from(
        "usage: kemu [options]    (no options: boot the embedded demo guest)\n\
         \x20      kemu img create|info|check|convert|resize ...   (disk images, qemu-img style)\n\
         \x20      kemu bench [--runs N] [--svg FILE] [--accel kvm,tcg] [GUEST OPTIONS]   (kvm vs tcg)\n\
         Long options take one dash or two, as in QEMU: -kernel bzImage -m 512 -smp 2\n\n",
    );
    for arg in Args::command().get_arguments() {
        if arg.is_hide_set() {
            continue;
        }
        let name = arg.get_long().unwrap_or_default();
        let value = if arg.get_action().takes_values() {
            " VALUE"
        } else {
            ""
        };
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        text.push_str(&format!("  -{name}{value:<8} {help}\n"));
    }
    text
}

fn build_config(a: Args) -> anyhow::Result<MachineConfig> {
    let mut accel = None;
    if a.enable_kvm {
        accel = Some(AccelKind::Kvm);
    }
    let mut jit = true;
    if let Some(v) = &a.accel {
        let (kind, jit_prop) = parse_accel(v)?;
        accel = Some(kind);
        if let Some(on) = jit_prop {
            if kind != AccelKind::Tcg {
                bail!("-accel {v}: jit= applies to tcg only");
            }
            jit = on;
        }
    }
    let mut kernel_irqchip = true;
    if let Some(m) = a.machine.as_ref().or(a.machine_short.as_ref()) {
        let machine = parse_machine(m)?;
        if let Some(acc) = machine.accel {
            accel = Some(acc);
        }
        if let Some(on) = machine.kernel_irqchip {
            kernel_irqchip = on;
        }
    }
    if let Some(cpu) = &a.cpu {
        let model = cpu.split(',').next().unwrap_or_default();
        if !matches!(model, "host" | "max" | "qemu64" | "kvm64") {
            bail!(
                "-cpu {cpu}: unsupported CPU model '{model}' (supported: host, max, qemu64, kvm64)"
            );
        }
    }
    let firmware = match a.bios.as_deref() {
        None => FirmwareChoice::Auto,
        Some("none") => FirmwareChoice::None,
        Some("kemu") => FirmwareChoice::Kemu,
        Some("") => bail!("-bios: no file given"),
        Some(path) => FirmwareChoice::File(PathBuf::from(path)),
    };
    // No kernel: the demo guest, unless a ROM of the user's boots by itself.
    let kernel = match &a.kernel {
        Some(p) => KernelSource::File(p.clone()),
        None if matches!(firmware, FirmwareChoice::File(_)) => KernelSource::None,
        None => KernelSource::Embedded {
            name: "demo guest",
            image: crate::guests::demo(),
        },
    };
    let icount = a.icount.as_deref().map(time::parse_icount).transpose()?;
    if icount.is_some() && accel == Some(AccelKind::Kvm) {
        bail!("-icount needs -accel tcg (KVM cannot count guest instructions)");
    }
    // Without -accel, our CPU runs the guest, as QEMU's default is TCG: the demo then starts
    // at the reset vector and shows every step through our firmware.
    let accel = accel.unwrap_or(AccelKind::Tcg);
    let mut cfg = MachineConfig::new(accel, kernel);
    cfg.kernel_irqchip = kernel_irqchip;
    cfg.jit = jit;
    if let Some(m) = &a.mem {
        cfg.ram_size = parse_mem(m)?;
    }
    if let Some(s) = &a.smp {
        cfg.cpus = parse_smp(s)?;
    }
    cfg.initrd = a.initrd;
    cfg.cmdline = a.append.unwrap_or_default();
    cfg.no_reboot = a.no_reboot;
    if let Some(d) = &a.display {
        if d.split(',').next() != Some("none") {
            bail!("-display {d}: kemu has no graphical display (use -display none or -nographic)");
        }
    }
    cfg.serial = match &a.serial {
        Some(s) => values::parse_serial(s)?,
        None if a.nodefaults => SerialConfig::None,
        None => SerialConfig::Stdio,
    };
    cfg.firmware = firmware;
    let mut chardevs: Vec<(String, CharBackend)> = Vec::new();
    for c in &a.chardev {
        let (id, backend) = values::parse_chardev(c)?;
        if chardevs.iter().any(|(i, _)| *i == id) {
            bail!("-chardev {c}: duplicate id '{id}'");
        }
        chardevs.push((id, backend));
    }
    let mut detached = Vec::new();
    if let Some(path) = a.hda {
        cfg.drives.push(DriveConfig {
            path,
            format: None,
            read_only: false,
            snapshot: false,
            cache: Default::default(),
        });
    }
    for d in &a.drive {
        let spec = drive::parse_drive(d)?;
        if spec.detached {
            detached.push(spec);
        } else {
            cfg.drives.push(spec.config);
        }
    }
    for d in &a.device {
        match values::parse_device(d)? {
            DeviceSpec::DebugExit(de) => cfg.debug_exit = Some(de),
            DeviceSpec::Debugcon { iobase, chardev } => {
                let Some((_, backend)) = chardevs.iter().find(|(i, _)| *i == chardev) else {
                    bail!("-device {d}: no -chardev with id '{chardev}'");
                };
                cfg.debugcon = Some(DebugconConfig {
                    iobase,
                    chardev: backend.clone(),
                });
            }
            DeviceSpec::PcTestdev => cfg.pc_testdev = true,
            DeviceSpec::PciTestdev => cfg.pci_testdev = true,
            DeviceSpec::VirtioBlk { drive } => {
                let Some(at) = detached
                    .iter()
                    .position(|s| s.id.as_deref() == Some(drive.as_str()))
                else {
                    bail!("-device {d}: no -drive if=none,id={drive} (or it is already in use)");
                };
                cfg.drives.push(detached.remove(at).config);
            }
        }
    }
    for g in &a.global {
        if !g.contains('.') || !g.contains('=') {
            bail!("-global {g}: expected DRIVER.PROPERTY=VALUE");
        }
        log::warn!("-global {g}: accepted and ignored (kemu has no such device property)");
    }
    match a.monitor.as_deref() {
        None | Some("none") => {}
        Some("stdio") => {
            if cfg.serial == SerialConfig::Stdio {
                bail!(
                    "-monitor stdio: the serial console already uses stdio (use -serial none or \
                     file:PATH with it, or Ctrl-A c to reach the monitor from the console)"
                );
            }
            cfg.monitor = crate::machine::MonitorConfig::Stdio;
        }
        Some(m) => bail!("-monitor {m}: supported: stdio, none"),
    }
    if let Some(q) = &a.qmp {
        cfg.qmp = Some(crate::monitor::qmp::parse_spec(q)?);
    }
    if let Some(t) = &a.trace {
        cfg.trace = values::parse_trace(t)?;
    }
    cfg.log_file = a.log_file;
    if a.gdb_default {
        cfg.gdb = Some(format!("127.0.0.1:{}", crate::monitor::gdb::DEFAULT_PORT));
    }
    if let Some(g) = &a.gdb {
        cfg.gdb = Some(crate::monitor::gdb::parse_address(g)?);
    }
    if a.freeze && cfg.gdb.is_some() {
        cfg.gdb_wait = true;
    } else if a.freeze {
        if cfg.monitor == crate::machine::MonitorConfig::None
            && cfg.qmp.is_none()
            && cfg.serial != SerialConfig::Stdio
        {
            bail!(
                "-S: the CPUs would wait forever: add -s or -gdb tcp::PORT, -monitor stdio or \
                 -qmp to continue them"
            );
        }
        // As QEMU: the vCPUs wait for the monitor's `cont` (Ctrl-A c on the console).
        cfg.start_paused = true;
    }
    cfg.stats_file = a.stats_file;
    cfg.icount = icount;
    if let Some(r) = &a.rtc {
        cfg.rtc_base = time::parse_rtc(r)?;
    }
    if icount.is_some() && cfg.cpus > 1 && cfg.gdb.is_some() {
        bail!("-icount with -smp > 1 and a gdb server is not supported (use -smp 1)");
    }
    for d in &mut cfg.drives {
        d.snapshot |= a.snapshot;
    }
    Ok(cfg)
}

/// `-accel kvm|tcg[,thread=..][,jit=on|off]`: the accelerator and the `jit` property, if
/// given.
fn parse_accel(v: &str) -> anyhow::Result<(AccelKind, Option<bool>)> {
    let (head, props) = values::split_props(v);
    let kind = match head {
        Some("kvm") => AccelKind::Kvm,
        Some("tcg") => AccelKind::Tcg,
        _ => bail!("-accel {v}: unknown accelerator (supported: kvm, tcg)"),
    };
    let mut jit = None;
    for (k, val) in props {
        match (k, val) {
            ("thread", _) => {}
            ("jit", "on") => jit = Some(true),
            ("jit", "off") => jit = Some(false),
            ("jit", _) => bail!("-accel {v}: jit must be on or off, not '{val}'"),
            _ => bail!("-accel {v}: unknown property '{k}'"),
        }
    }
    Ok((kind, jit))
}

/// What `-machine` says beyond the machine type.
#[derive(Debug, Default, PartialEq, Eq)]
struct MachineProps {
    /// `accel=`, if given.
    accel: Option<AccelKind>,
    /// `kernel-irqchip=on|off`, if given.
    kernel_irqchip: Option<bool>,
}

/// `-machine pc[,accel=..][,kernel-irqchip=on|off]`.
fn parse_machine(v: &str) -> anyhow::Result<MachineProps> {
    let (head, props) = values::split_props(v);
    if let Some(t) = head {
        if t != "pc" && !t.starts_with("pc-i440fx") {
            bail!("-machine {v}: unsupported machine type '{t}' (kemu models the i440FX 'pc')");
        }
    }
    let mut out = MachineProps::default();
    for (k, val) in props {
        match k {
            "type" if val == "pc" || val.starts_with("pc-i440fx") => {}
            "accel" => out.accel = Some(parse_accel(val)?.0),
            "kernel-irqchip" => {
                out.kernel_irqchip = Some(match val {
                    "on" | "true" | "yes" => true,
                    "off" | "false" | "no" => false,
                    // QEMU's split keeps the LAPICs in the kernel and the IOAPIC/PIC/PIT in
                    // userspace; kemu has the two whole sets, not that mix.
                    "split" => bail!(
                        "-machine {v}: kernel-irqchip=split is not supported (in-kernel LAPICs \
                         with a userspace IOAPIC); use kernel-irqchip=on (KVM's controllers) \
                         or off (kemu's own)"
                    ),
                    _ => bail!("-machine {v}: kernel-irqchip={val}: expected on, off or split"),
                });
            }
            _ => bail!("-machine {v}: unknown property '{k}'"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(args: &[&str]) -> anyhow::Result<MachineConfig> {
        let os: Vec<OsString> = args.iter().map(OsString::from).collect();
        let n = normalize(&os)?;
        let a = Args::try_parse_from(std::iter::once("kemu".to_string()).chain(n))?;
        build_config(a)
    }

    #[test]
    fn icount_and_rtc() {
        let c = cfg(&["-icount", "shift=3", "-rtc", "base=2026-01-01T00:00:00"]).unwrap();
        assert_eq!(c.icount, Some(3));
        assert_eq!(
            c.accel,
            AccelKind::Tcg,
            "the demo under -icount runs on tcg"
        );
        assert_eq!(c.rtc_base, crate::machine::RtcBase::Fixed(1_767_225_600));
        assert_eq!(
            cfg(&["-accel", "tcg", "-icount", "5"]).unwrap().icount,
            Some(5)
        );
        let e = cfg(&["-accel", "kvm", "-icount", "shift=1"]).unwrap_err();
        assert!(e.to_string().contains("needs -accel tcg"), "{e}");
        let e = cfg(&["-icount", "shift=auto"]).unwrap_err();
        assert!(e.to_string().contains("not supported"), "{e}");
        let e = cfg(&["-icount", "1", "-smp", "2", "-s"]).unwrap_err();
        assert!(e.to_string().contains("-smp 1"), "{e}");
        assert_eq!(cfg(&[]).unwrap().icount, None);
    }

    #[test]
    fn qemu_style_line() {
        let c = cfg(&[
            "-accel",
            "kvm",
            "-m",
            "1G",
            "-smp",
            "2",
            "-kernel",
            "bz",
            "-append",
            "console=ttyS0",
            "-nographic",
            "-no-reboot",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
        ])
        .unwrap();
        assert_eq!(c.accel, AccelKind::Kvm);
        assert_eq!(c.ram_size, 1 << 30);
        assert_eq!(c.cpus, 2);
        assert_eq!(c.cmdline, "console=ttyS0");
        assert!(c.no_reboot);
        assert_eq!(c.debug_exit.unwrap().iobase, 0xf4);
        assert_eq!(c.firmware, FirmwareChoice::Auto);
    }

    #[test]
    fn firmware_test_devices_and_defaults() {
        let c = cfg(&[
            "-accel",
            "tcg",
            "-nodefaults",
            "-bios",
            "/x/rom.bin",
            "-chardev",
            "file,id=dbg,path=/tmp/dbg.log",
            "-device",
            "isa-debugcon,iobase=0xe9,chardev=dbg",
            "-device",
            "pc-testdev",
            "-global",
            "kvm-pit.lost_tick_policy=discard",
            "-monitor",
            "none",
        ])
        .unwrap();
        assert_eq!(c.firmware, FirmwareChoice::File("/x/rom.bin".into()));
        assert_eq!(c.kernel, KernelSource::None);
        assert_eq!(c.serial, SerialConfig::None);
        assert_eq!(
            c.debugcon,
            Some(DebugconConfig {
                iobase: 0xe9,
                chardev: CharBackend::File("/tmp/dbg.log".into())
            })
        );
        assert!(c.pc_testdev && !c.pci_testdev);
        // No kernel and no ROM of the user's: the demo, through our firmware under tcg.
        let d = cfg(&["-accel", "tcg"]).unwrap();
        assert!(matches!(d.kernel, KernelSource::Embedded { .. }));
        assert_eq!(d.firmware, FirmwareChoice::Auto);
        let n = cfg(&["-kernel", "k", "-bios", "none"]).unwrap();
        assert_eq!(n.firmware, FirmwareChoice::None);
    }

    #[test]
    fn the_jit_property() {
        assert!(cfg(&["-accel", "tcg"]).unwrap().jit);
        assert!(!cfg(&["-accel", "tcg,jit=off"]).unwrap().jit);
        assert!(cfg(&["-accel", "tcg,thread=multi,jit=on"]).unwrap().jit);
        let e = cfg(&["-accel", "tcg,jit=fast"]).unwrap_err();
        assert!(e.to_string().contains("on or off"), "{e}");
        let e = cfg(&["-accel", "kvm,jit=off"]).unwrap_err();
        assert!(e.to_string().contains("tcg only"), "{e}");
    }

    #[test]
    fn demo_with_options_and_traces() {
        let c = cfg(&["-demo", "-accel", "tcg", "-d", "in_asm,exits"]).unwrap();
        assert!(matches!(c.kernel, KernelSource::Embedded { .. }));
        assert_eq!(c.accel, AccelKind::Tcg);
        assert!(c.trace.in_asm && c.trace.exits && !c.trace.int);
        assert!(help_text().contains("-demo"));
        assert!(!help_text().contains("stats-file"), "hidden");
    }

    #[test]
    fn disks() {
        let c = cfg(&[
            "-kernel",
            "k",
            "-hda",
            "a.img",
            "-drive",
            "file=b.qcow2,format=qcow2,if=virtio,readonly=on",
            "-snapshot",
        ])
        .unwrap();
        assert_eq!(c.drives.len(), 2);
        assert_eq!(c.drives[0].path, PathBuf::from("a.img"));
        assert!(c.drives.iter().all(|d| d.snapshot));
        assert!(c.drives[1].read_only);
        let e = cfg(&["-kernel", "k", "-drive", "file=x,if=ide"]).unwrap_err();
        assert!(one_line(&e).contains("no IDE controller; use if=virtio"));
        // QEMU's split form: the drive waits for the device that names it.
        let c = cfg(&[
            "-kernel",
            "k",
            "-drive",
            "file=c.img,if=none,id=d0,format=raw",
            "-device",
            "virtio-blk-pci,drive=d0,disable-legacy=on",
        ])
        .unwrap();
        assert_eq!(c.drives.len(), 1);
        assert_eq!(c.drives[0].path, PathBuf::from("c.img"));
        let c = cfg(&["-kernel", "k", "-drive", "file=c.img,if=none,id=d0"]).unwrap();
        assert!(c.drives.is_empty());
        let e = cfg(&["-kernel", "k", "-device", "virtio-blk-pci,drive=d9"]).unwrap_err();
        assert!(one_line(&e).contains("no -drive if=none,id=d9"));
    }

    #[test]
    fn kernel_irqchip_on_off_and_split() {
        let on = cfg(&["-kernel", "k", "-accel", "kvm"]).unwrap();
        assert!(on.kernel_irqchip, "KVM's irqchip is the default");
        let off = cfg(&[
            "-kernel",
            "k",
            "-machine",
            "pc,accel=kvm,kernel-irqchip=off",
        ])
        .unwrap();
        assert_eq!(off.accel, AccelKind::Kvm);
        assert!(!off.kernel_irqchip);
        let off = cfg(&["-kernel", "k", "-M", "kernel-irqchip=off"]).unwrap();
        assert!(!off.kernel_irqchip);
        let e = cfg(&["-kernel", "k", "-machine", "kernel-irqchip=split"]).unwrap_err();
        assert!(one_line(&e).contains("split is not supported"), "{e}");
        assert!(cfg(&["-kernel", "k", "-machine", "kernel-irqchip=maybe"]).is_err());
    }

    #[test]
    fn bad_lines_are_one_line_errors() {
        for args in [
            &["-kernel", "x", "-m", "0"][..],
            &["-kernel", "x", "-smp", "0"],
            &["-kernel", "x", "-accel", "hvf"],
            &["-kernel", "x", "-machine", "q35"],
            &["-kernel", "x", "-monitor", "vc"],
            &["-kernel", "x", "-monitor", "stdio"],
            &["-kernel", "x", "-qmp", "unix:/x"],
            &["-kernel", "x", "-global", "nonsense"],
            &["-kernel", "x", "-device", "isa-debugcon,chardev=nope"],
            &["-kernel", "x", "-display", "gtk"],
        ] {
            let e = cfg(args).unwrap_err();
            assert_eq!(one_line(&e).lines().count(), 1, "{args:?}");
        }
    }

    #[test]
    fn gdb_options() {
        let c = cfg(&["-kernel", "k", "-s", "-S"]).unwrap();
        assert_eq!(c.gdb.as_deref(), Some("127.0.0.1:1234"));
        assert!(c.gdb_wait);
        let c = cfg(&["-kernel", "k", "-gdb", "tcp:127.0.0.1:4321"]).unwrap();
        assert_eq!(c.gdb.as_deref(), Some("127.0.0.1:4321"));
        assert!(!c.gdb_wait);
        let c = cfg(&["-kernel", "k", "-gdb", "tcp::9"]).unwrap();
        assert_eq!(c.gdb.as_deref(), Some("127.0.0.1:9"));
        assert!(cfg(&["-kernel", "k", "-S", "-serial", "none"]).is_err());
        assert!(cfg(&["-kernel", "k", "-gdb", "udp"]).is_err());
    }

    #[test]
    fn monitor_and_qmp_options() {
        // -S without gdb: paused until the monitor's `cont` (Ctrl-A c on the console).
        let c = cfg(&["-kernel", "k", "-S"]).unwrap();
        assert!(c.start_paused && !c.gdb_wait);
        let c = cfg(&[
            "-kernel",
            "k",
            "-serial",
            "none",
            "-monitor",
            "stdio",
            "-qmp",
            "unix:/tmp/k.sock,server=on,wait=off",
        ])
        .unwrap();
        assert_eq!(c.monitor, crate::machine::MonitorConfig::Stdio);
        assert_eq!(
            c.qmp,
            Some(crate::machine::QmpConfig {
                address: crate::machine::QmpAddress::Unix("/tmp/k.sock".into()),
                wait: false
            })
        );
        let c = cfg(&["-kernel", "k", "-qmp", "tcp::4444,server,nowait", "-S"]).unwrap();
        assert!(c.start_paused);
    }
}

//! The port-I/O exit round trip under KVM: kemu against QEMU on the same guest.
//!
//! `pio_bench` does 200000 `OUT`s to port 0x80 at CPL 0; `pio_base` is the same guest without
//! the loop. Each is booted under `kemu -accel kvm` and `qemu-system-x86_64 -accel kvm`
//! (Debian's `qemu-system-x86`, when installed), alternating, `KEMU_BENCH_RUNS` times (default
//! 5). One exit costs (median(pio_bench) - median(pio_base)) / 200000; boot, firmware and
//! teardown cancel out. Run: `cargo bench --bench pio_exit`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const OUTS: f64 = 200_000.0;

fn guest(name: &str) -> PathBuf {
    Path::new(kemu::guests::GUEST_DIR).join(name)
}

fn kemu_cmd(g: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kemu"));
    c.args(["-accel", "kvm", "-m", "128", "-serial", "none", "-kernel"])
        .arg(g)
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
    c
}

fn qemu_cmd(g: &Path) -> Command {
    let mut c = Command::new("qemu-system-x86_64");
    c.args([
        "-accel",
        "kvm",
        "-M",
        "pc",
        "-m",
        "128",
        "-nographic",
        "-nodefaults",
        "-no-reboot",
        "-serial",
        "none",
        "-kernel",
    ])
    .arg(g)
    .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
    c
}

fn time(mut c: Command) -> Option<Duration> {
    let start = Instant::now();
    let st = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    // Both guests end with debug-exit 0: status 1.
    (st.code() == Some(1)).then(|| start.elapsed())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if !Path::new("/dev/kvm").exists() {
        println!("pio_exit: SKIPPED (no /dev/kvm)");
        return;
    }
    let runs: usize = std::env::var("KEMU_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let have_qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let (bench, base) = (guest("pio_bench.bin"), guest("pio_base.bin"));
    let mut k = (Vec::new(), Vec::new());
    let mut q = (Vec::new(), Vec::new());
    for i in 0..runs {
        eprint!("\rpio_exit: run {}/{runs}", i + 1);
        k.0.extend(time(kemu_cmd(&bench)));
        k.1.extend(time(kemu_cmd(&base)));
        if have_qemu {
            q.0.extend(time(qemu_cmd(&bench)));
            q.1.extend(time(qemu_cmd(&base)));
        }
    }
    eprintln!();
    let per_exit = |(b, z): (Vec<Duration>, Vec<Duration>)| -> Option<(f64, f64, f64)> {
        if b.is_empty() || z.is_empty() {
            return None;
        }
        let (mb, mz) = (median(b).as_secs_f64(), median(z).as_secs_f64());
        Some((mb, mz, (mb - mz) / OUTS * 1e9))
    };
    println!(
        "{:<8} {:>14} {:>14} {:>16}",
        "", "pio_bench (s)", "pio_base (s)", "ns per OUT exit"
    );
    let kr = per_exit(k);
    if let Some((b, z, ns)) = kr {
        println!("{:<8} {b:>14.3} {z:>14.3} {ns:>16.0}", "kemu");
    } else {
        println!("kemu: runs failed");
    }
    if !have_qemu {
        println!("qemu: not installed (apt-get install qemu-system-x86)");
        return;
    }
    match (kr, per_exit(q)) {
        (Some((_, _, kn)), Some((b, z, qn))) => {
            println!("{:<8} {b:>14.3} {z:>14.3} {qn:>16.0}", "qemu");
            println!("ratio kemu/qemu per exit: {:.2}", kn / qn);
        }
        _ => println!("qemu: runs failed"),
    }
}

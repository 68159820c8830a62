//! `kemu bench [--runs N] [--svg FILE] [--accel kvm,tcg] [--timeout SECS] [GUEST OPTIONS...]`:
//! the command line of the accelerator comparison (see `crate::bench`). Bench options take one
//! dash or two; everything else is the guest's, passed to every run as given (no guest options:
//! the embedded demo guest).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

use super::qemu_args::VALUE_OPTIONS;
use crate::bench::{self, BenchAccel, BenchConfig};

const USAGE: &str = "\
usage: kemu bench [--runs N] [--svg FILE] [--accel kvm,tcg] [--timeout SECS] [GUEST OPTIONS...]
Boots the guest (default: the embedded demo guest; or e.g. -kernel X -append ...) under each
accelerator, alternating, N runs each (default 5), and prints the medians side by side: wall
time, vCPU time, guest instructions and MIPS (tcg), exits per reason and exits/s, kvm/tcg ratios.
  --runs N         runs per accelerator (default 5)
  --svg FILE       also draw the result as an SVG bar chart
  --accel LIST     accelerators to compare, in order (default kvm,tcg; kvm is skipped without
                   /dev/kvm); kvm-userirq is KVM with kemu's own interrupt controllers
                   (-machine kernel-irqchip=off), to set against kvm's in-kernel ones
  --timeout SECS   kill a run after this long (default 120)
";

/// The parsed bench command line.
#[derive(Debug, PartialEq, Eq)]
struct BenchArgs {
    runs: usize,
    svg: Option<PathBuf>,
    accels: Vec<BenchAccel>,
    timeout: Duration,
    guest: Vec<String>,
    help: bool,
}

fn parse(args: &[String]) -> anyhow::Result<BenchArgs> {
    let mut b = BenchArgs {
        runs: 5,
        svg: None,
        accels: vec![BenchAccel::Kvm, BenchAccel::Tcg],
        timeout: Duration::from_secs(120),
        guest: Vec::new(),
        help: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let name = arg.trim_start_matches('-');
        let (name, inline) = match name.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (name, None),
        };
        let is_opt = arg.starts_with('-');
        let mut value = |what: &str| -> anyhow::Result<String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it
                    .next()
                    .cloned()
                    .with_context(|| format!("bench option '--{what}' needs a value")),
            }
        };
        match name {
            "runs" if is_opt => {
                let v = value("runs")?;
                b.runs = v
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .with_context(|| format!("--runs {v}: not a positive number"))?;
            }
            "svg" if is_opt => b.svg = Some(PathBuf::from(value("svg")?)),
            "accel" if is_opt => {
                let v = value("accel")?;
                b.accels = v
                    .split(',')
                    .map(|a| match BenchAccel::parse(a) {
                        Some(a) => Ok(a),
                        None => {
                            bail!("--accel {v}: unknown accelerator '{a}' (kvm, kvm-userirq, tcg)")
                        }
                    })
                    .collect::<anyhow::Result<_>>()?;
            }
            "timeout" if is_opt => {
                let v = value("timeout")?;
                let secs: u64 =
                    v.parse().ok().filter(|&n| n > 0).with_context(|| {
                        format!("--timeout {v}: not a positive number of seconds")
                    })?;
                b.timeout = Duration::from_secs(secs);
            }
            "help" | "h" if is_opt => b.help = true,
            _ => {
                // A guest option: keep it, and its value if it takes one, exactly as given.
                b.guest.push(arg.clone());
                if is_opt && inline.is_none() && VALUE_OPTIONS.contains(&name) {
                    if let Some(v) = it.next() {
                        b.guest.push(v.clone());
                    }
                }
            }
        }
    }
    Ok(b)
}

/// `kemu bench ARGS`: run it, print the table, write the SVG; returns the exit status.
pub fn bench_main(args: &[String]) -> i32 {
    match run(args) {
        Ok(status) => status,
        Err(e) => {
            eprintln!("kemu bench: {e}");
            1
        }
    }
}

fn run(args: &[String]) -> anyhow::Result<i32> {
    let a = parse(args)?;
    if a.help {
        print!("{USAGE}");
        return Ok(0);
    }
    let exe = std::env::current_exe().context("cannot find the kemu executable")?;
    // The demo by default, through our firmware under both accelerators: without `-bios
    // kemu`, KVM would boot it directly while tcg starts at the reset vector, and the two
    // columns would not measure the same guest path.
    let (guest_name, guest) = if a.guest.is_empty() {
        (
            "demo guest (-bios kemu)".to_string(),
            vec!["-bios".to_string(), "kemu".to_string()],
        )
    } else {
        (a.guest.join(" "), a.guest)
    };
    let config = BenchConfig {
        exe,
        runs: a.runs,
        accels: a.accels,
        guest_args: guest,
        timeout: a.timeout,
    };
    let summary = bench::run(&config, &mut std::io::stderr())?;
    println!(
        "kemu bench: {guest_name}, {} run{} per accelerator, medians",
        summary.runs,
        if summary.runs == 1 { "" } else { "s" }
    );
    print!("{}", summary.table());
    if let Some(path) = &a.svg {
        let title = format!("kemu bench: {guest_name} ({} runs, medians)", summary.runs);
        std::fs::write(path, bench::svg::chart(&summary, &title))
            .with_context(|| format!("cannot write '{}'", path.display()))?;
        eprintln!("kemu bench: chart written to {}", path.display());
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> anyhow::Result<BenchArgs> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn defaults_and_options() {
        let b = p(&[]).unwrap();
        assert_eq!(b.runs, 5);
        assert_eq!(b.accels, vec![BenchAccel::Kvm, BenchAccel::Tcg]);
        assert!(b.guest.is_empty());
        let b = p(&["--runs", "1", "-svg=out.svg", "--accel", "tcg"]).unwrap();
        assert_eq!(b.runs, 1);
        assert_eq!(b.svg, Some(PathBuf::from("out.svg")));
        assert_eq!(b.accels, vec![BenchAccel::Tcg]);
    }

    #[test]
    fn guest_options_pass_through_with_their_values() {
        let b = p(&[
            "-kernel",
            "bz",
            "--runs",
            "2",
            "-append",
            "--runs",
            "-nographic",
        ])
        .unwrap();
        assert_eq!(b.runs, 2);
        assert_eq!(
            b.guest,
            ["-kernel", "bz", "-append", "--runs", "-nographic"]
        );
    }

    #[test]
    fn bad_values() {
        assert!(p(&["--runs", "0"]).is_err());
        assert!(p(&["--runs"]).is_err());
        assert!(p(&["--accel", "hvf"]).is_err());
        assert!(p(&["--timeout", "x"]).is_err());
    }
}

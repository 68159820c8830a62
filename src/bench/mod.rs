//! `kemu bench`: the same guest under each accelerator, alternating, a few runs each, compared
//! by their medians.
//!
//! A [`BenchConfig`] enters [`run`]. Every run is a child `kemu` process ([`run::run_once`]):
//! clean isolation, the process's wall and CPU time from `wait4`, and the machine's own counters
//! (exits per reason, guest instructions, vCPU thread time) from the stats file the child writes
//! at exit. Progress leaves as one line per run on the `progress` writer; the result leaves as a
//! [`table::Summary`] whose [`table::Summary::table`] is the printed table and whose
//! [`svg::chart`] is the optional SVG.

pub mod run;
pub mod svg;
pub mod table;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::accel::kvm::KvmAccel;

/// One column of the comparison: an accelerator, and under KVM whose interrupt controllers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchAccel {
    /// KVM with its in-kernel irqchip and PIT (`-accel kvm`).
    Kvm,
    /// KVM with kemu's own interrupt controllers in userspace (`-accel kvm -machine
    /// kernel-irqchip=off`).
    KvmUserIrq,
    /// The software CPU (`-accel tcg`).
    Tcg,
}

impl BenchAccel {
    /// Every column kind, in the order `--accel` lists them.
    pub const ALL: [BenchAccel; 3] = [BenchAccel::Kvm, BenchAccel::KvmUserIrq, BenchAccel::Tcg];

    /// The column's name, as `--accel` spells it.
    pub fn name(self) -> &'static str {
        match self {
            BenchAccel::Kvm => "kvm",
            BenchAccel::KvmUserIrq => "kvm-userirq",
            BenchAccel::Tcg => "tcg",
        }
    }

    /// The column named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The options that select it on a kemu command line.
    pub fn args(self) -> &'static [&'static str] {
        match self {
            BenchAccel::Kvm => &["-accel", "kvm"],
            BenchAccel::KvmUserIrq => &["-accel", "kvm", "-machine", "kernel-irqchip=off"],
            BenchAccel::Tcg => &["-accel", "tcg"],
        }
    }

    /// Whether it needs `/dev/kvm`.
    pub fn needs_kvm(self) -> bool {
        self != BenchAccel::Tcg
    }
}

/// What to benchmark and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchConfig {
    /// The `kemu` executable to run (normally this one).
    pub exe: PathBuf,
    /// Runs per accelerator.
    pub runs: usize,
    /// The accelerators, in column order.
    pub accels: Vec<BenchAccel>,
    /// The guest's options; empty for the embedded demo guest.
    pub guest_args: Vec<String>,
    /// A run is killed after this long.
    pub timeout: Duration,
}

/// Why the bench could not finish.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// No accelerator is left to run (KVM skipped and nothing else asked for).
    #[error("no accelerator to run (KVM needs /dev/kvm; add tcg to --accel)")]
    NoAccel,
    /// The child could not be started.
    #[error("cannot start '{exe}': {source}")]
    Spawn {
        /// The executable.
        exe: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Waiting for the child failed.
    #[error("cannot wait for the guest process: {0}")]
    Wait(std::io::Error),
    /// A run did not end as it should.
    #[error("{what}: {problem}{}", stderr_tail(.stderr))]
    Child {
        /// Which run.
        what: String,
        /// What went wrong.
        problem: String,
        /// What the child printed on stderr.
        stderr: String,
    },
}

/// The child's last stderr line, as `: <line>` (or nothing).
fn stderr_tail(stderr: &str) -> String {
    stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map_or_else(String::new, |l| format!(" ({})", l.trim()))
}

/// The accelerators of `wanted` this host can run; prints a loud line for each one skipped.
pub fn usable_accels(
    wanted: &[BenchAccel],
    kvm_present: bool,
    progress: &mut dyn Write,
) -> Vec<BenchAccel> {
    wanted
        .iter()
        .copied()
        .filter(|&a| {
            if a.needs_kvm() && !kvm_present {
                let _ = writeln!(progress, "kemu bench: {} SKIPPED (no /dev/kvm)", a.name());
                false
            } else {
                true
            }
        })
        .collect()
}

/// Run the bench: `config.runs` rounds, each running every accelerator once.
pub fn run(config: &BenchConfig, progress: &mut dyn Write) -> Result<table::Summary, BenchError> {
    let accels = usable_accels(&config.accels, KvmAccel::available(), progress);
    if accels.is_empty() {
        return Err(BenchError::NoAccel);
    }
    let guest_args: Vec<String> = if config.guest_args.is_empty() {
        vec!["-demo".to_string()]
    } else {
        config.guest_args.clone()
    };
    let spec = run::RunSpec {
        exe: &config.exe,
        guest_args: &guest_args,
        stats_path: std::env::temp_dir().join(format!("kemu-bench-{}.stats", std::process::id())),
        timeout: config.timeout,
    };
    let mut samples = Vec::new();
    for round in 1..=config.runs {
        for &accel in &accels {
            let s = run::run_once(&spec, accel)?;
            let _ = writeln!(
                progress,
                "kemu bench: run {round}/{} {:<3}: wall {:8.1} ms, vCPU {:8.1} ms, {} exits, \
                 {} instructions, status {}",
                config.runs,
                accel.name(),
                s.wall.as_secs_f64() * 1e3,
                (s.stats.vcpu_user_us + s.stats.vcpu_sys_us) as f64 / 1e3,
                s.stats.total_exits(),
                s.stats.instructions,
                s.status
            );
            samples.push(s);
        }
    }
    Ok(table::summarise(&accels, &samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_is_skipped_loudly_without_dev_kvm() {
        let mut out = Vec::new();
        let a = usable_accels(&[BenchAccel::Kvm, BenchAccel::Tcg], false, &mut out);
        assert_eq!(a, vec![BenchAccel::Tcg]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "kemu bench: kvm SKIPPED (no /dev/kvm)\n"
        );
        let mut out = Vec::new();
        let a = usable_accels(&[BenchAccel::Kvm, BenchAccel::Tcg], true, &mut out);
        assert_eq!(a.len(), 2);
        assert!(out.is_empty());
    }

    #[test]
    fn columns_by_name_and_their_options() {
        for a in BenchAccel::ALL {
            assert_eq!(BenchAccel::parse(a.name()), Some(a));
        }
        assert_eq!(BenchAccel::parse("hvf"), None);
        assert_eq!(
            BenchAccel::KvmUserIrq.args(),
            ["-accel", "kvm", "-machine", "kernel-irqchip=off"]
        );
        let mut out = Vec::new();
        assert!(usable_accels(&[BenchAccel::KvmUserIrq], false, &mut out).is_empty());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "kemu bench: kvm-userirq SKIPPED (no /dev/kvm)\n"
        );
    }

    #[test]
    fn child_errors_name_the_last_stderr_line() {
        let e = BenchError::Child {
            what: "kemu -accel tcg".into(),
            problem: "exited with status 1 and left no stats".into(),
            stderr: "noise\nkemu: cannot read kernel 'x'\n\n".into(),
        };
        assert_eq!(
            e.to_string(),
            "kemu -accel tcg: exited with status 1 and left no stats (kemu: cannot read kernel 'x')"
        );
    }
}

//! From samples to the comparison: per accelerator the median of each metric, as [`Row`]s (one
//! metric, one value per accelerator) that the text table and the SVG chart both draw.

use std::fmt::Write as _;

use super::run::Sample;
use super::BenchAccel;

/// One metric across accelerators.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Metric name, one word (`wall-ms`, `exit:io-out`).
    pub name: String,
    /// What it means, for the legend.
    pub about: &'static str,
    /// The median per accelerator, in the order of [`Summary::accels`]; `None` where the
    /// accelerator cannot measure it (guest instructions under KVM).
    pub values: Vec<Option<f64>>,
    /// Digits after the point when printed.
    pub decimals: usize,
}

/// The medians of every metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The accelerators compared, in column order.
    pub accels: Vec<BenchAccel>,
    /// Runs per accelerator.
    pub runs: usize,
    /// The metrics.
    pub rows: Vec<Row>,
}

/// The median of `v` (the mean of the middle two for an even count); `None` when empty.
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// Summarise `samples` for `accels`.
pub fn summarise(accels: &[BenchAccel], samples: &[Sample]) -> Summary {
    type Metric = (
        &'static str,
        &'static str,
        usize,
        fn(&Sample) -> Option<f64>,
    );
    let metrics: [Metric; 8] = [
        ("wall-ms", "wall time of the kemu process", 1, |s| {
            Some(s.wall.as_secs_f64() * 1e3)
        }),
        (
            "run-ms",
            "wall time of the machine, build to stop",
            1,
            |s| Some(secs(s.stats.run_ns) * 1e3),
        ),
        (
            "vcpu-ms",
            "CPU time (user+sys) of the vCPU threads",
            1,
            |s| Some((s.stats.vcpu_user_us + s.stats.vcpu_sys_us) as f64 / 1e3),
        ),
        (
            "instructions",
            "guest instructions retired (tcg only)",
            0,
            |s| (s.stats.instructions > 0).then_some(s.stats.instructions as f64),
        ),
        (
            "MIPS",
            "million instructions per second of run-ms",
            2,
            |s| {
                let t = secs(s.stats.run_ns);
                (s.stats.instructions > 0 && t > 0.0).then(|| s.stats.instructions as f64 / t / 1e6)
            },
        ),
        (
            "MIPS-vcpu",
            "million instructions per vCPU CPU second",
            2,
            |s| {
                let t = (s.stats.vcpu_user_us + s.stats.vcpu_sys_us) as f64 / 1e6;
                (s.stats.instructions > 0 && t > 0.0).then(|| s.stats.instructions as f64 / t / 1e6)
            },
        ),
        ("exits", "exits and I/O accesses, all reasons", 0, |s| {
            Some(s.stats.total_exits() as f64)
        }),
        ("exits-per-s", "exits per second of run-ms", 0, |s| {
            let t = secs(s.stats.run_ns);
            (t > 0.0).then(|| s.stats.total_exits() as f64 / t)
        }),
    ];
    let of = |a: BenchAccel| samples.iter().filter(move |s| s.accel == a);
    let column = |a: BenchAccel, f: &dyn Fn(&Sample) -> Option<f64>| {
        let v: Vec<f64> = of(a).filter_map(f).collect();
        median(v)
    };
    let mut rows: Vec<Row> = metrics
        .iter()
        .map(|(name, about, decimals, f)| Row {
            name: (*name).to_string(),
            about,
            values: accels.iter().map(|&a| column(a, f)).collect(),
            decimals: *decimals,
        })
        .collect();
    // One row per exit reason any run saw, in the counters' order.
    let reasons: Vec<String> = samples
        .first()
        .map(|s| s.stats.exits.iter().map(|(r, _)| r.clone()).collect())
        .unwrap_or_default();
    for reason in reasons {
        let count = |s: &Sample| {
            s.stats
                .exits
                .iter()
                .find(|(r, _)| *r == reason)
                .map(|(_, n)| *n as f64)
        };
        if !samples.iter().any(|s| count(s).is_some_and(|n| n > 0.0)) {
            continue;
        }
        rows.push(Row {
            name: format!("exit:{reason}"),
            about: "exits of this reason",
            values: accels.iter().map(|&a| column(a, &count)).collect(),
            decimals: 0,
        });
    }
    let runs = accels.first().map_or(0, |&a| of(a).count());
    Summary {
        accels: accels.to_vec(),
        runs,
        rows,
    }
}

/// Width of the metric column.
const NAME_W: usize = 16;
/// Width of each value column.
const COL_W: usize = 14;

fn cell(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.decimals$}"))
}

impl Summary {
    /// The ratio column's header (`kvm/tcg`), when exactly two accelerators are compared.
    pub fn ratio_name(&self) -> Option<String> {
        match self.accels.as_slice() {
            [a, b] => Some(format!("{}/{}", a.name(), b.name())),
            _ => None,
        }
    }

    /// The table: a header line, then one line per metric (`-` where there is no value), then
    /// a legend.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = write!(out, "{:<NAME_W$}", "metric");
        for a in &self.accels {
            let _ = write!(out, "{:>COL_W$}", a.name());
        }
        if let Some(r) = self.ratio_name() {
            // A space first, so a long pair of names (`kvm/kvm-userirq`) stays apart from the
            // column before it.
            let _ = write!(out, " {r:>w$}", w = COL_W - 1);
        }
        out.push('\n');
        for row in &self.rows {
            let _ = write!(out, "{:<NAME_W$}", row.name);
            for v in &row.values {
                let _ = write!(out, "{:>COL_W$}", cell(*v, row.decimals));
            }
            if self.ratio_name().is_some() {
                let ratio = match row.values.as_slice() {
                    [Some(a), Some(b)] if *b != 0.0 => Some(a / b),
                    _ => None,
                };
                let _ = write!(out, "{:>COL_W$}", cell(ratio, 3));
            }
            out.push('\n');
        }
        out.push('\n');
        for row in self
            .rows
            .iter()
            .take_while(|r| !r.name.starts_with("exit:"))
        {
            let _ = writeln!(out, "  {:<14} {}", row.name, row.about);
        }
        let _ = writeln!(out, "  {:<14} exits of one reason", "exit:REASON");
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::machine::stats_file::{CpuTime, RunStats};

    fn sample(accel: BenchAccel, wall_ms: u64, insns: u64, outs: u64) -> Sample {
        Sample {
            accel,
            wall: Duration::from_millis(wall_ms),
            process_cpu: CpuTime::default(),
            status: 0,
            stats: RunStats {
                accel: accel.name().into(),
                vcpus: 1,
                run_ns: wall_ms * 1_000_000,
                vcpu_user_us: wall_ms * 1000,
                vcpu_sys_us: 0,
                instructions: insns,
                exits: vec![("io-out".into(), outs), ("mmio-read".into(), 0)],
            },
        }
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn table_has_medians_ratios_and_dashes() {
        let accels = [BenchAccel::Kvm, BenchAccel::Tcg];
        let samples = [
            sample(BenchAccel::Kvm, 10, 0, 100),
            sample(BenchAccel::Tcg, 40, 2_000_000, 100),
            sample(BenchAccel::Kvm, 30, 0, 100),
            sample(BenchAccel::Tcg, 20, 2_000_000, 100),
            sample(BenchAccel::Kvm, 20, 0, 100),
            sample(BenchAccel::Tcg, 60, 2_000_000, 100),
        ];
        let s = summarise(&accels, &samples);
        assert_eq!(s.runs, 3);
        let t = s.table();
        let lines: Vec<&str> = t.lines().collect();
        let head: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(head, ["metric", "kvm", "tcg", "kvm/tcg"]);
        let row = |name: &str| -> Vec<String> {
            let l = lines.iter().find(|l| l.starts_with(name)).unwrap();
            l.split_whitespace().map(String::from).collect()
        };
        assert_eq!(row("wall-ms"), ["wall-ms", "20.0", "40.0", "0.500"]);
        assert_eq!(row("MIPS "), ["MIPS", "-", "50.00", "-"]);
        assert_eq!(row("MIPS-vcpu"), ["MIPS-vcpu", "-", "50.00", "-"]);
        assert_eq!(row("exit:io-out"), ["exit:io-out", "100", "100", "1.000"]);
        assert!(!t.contains("exit:mmio-read"), "{t}");
    }

    #[test]
    fn one_accelerator_has_no_ratio() {
        let s = summarise(&[BenchAccel::Tcg], &[sample(BenchAccel::Tcg, 5, 10, 1)]);
        let t = s.table();
        let head: Vec<&str> = t.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(head, ["metric", "tcg"]);
    }
}

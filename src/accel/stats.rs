//! Exit and I/O counters, per reason and per vCPU, kept by both accelerators.
//!
//! Accelerators call [`ExitStats::count`] on every exit (KVM) or every I/O access and event
//! (software CPU); `-d exits`, the monitor's `info exits` and `kemu bench` read them. Counters are
//! relaxed atomics in per-vCPU rows, so counting costs one uncontended add.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a vCPU left guest mode (KVM) or what event the software CPU served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum ExitReason {
    /// Port read (IN, INS).
    PioRead,
    /// Port write (OUT, OUTS).
    PioWrite,
    /// MMIO read.
    MmioRead,
    /// MMIO write.
    MmioWrite,
    /// HLT.
    Halt,
    /// Kicked / signal / immediate exit.
    Interrupted,
    /// Debug exit.
    Debug,
    /// Triple fault / shutdown.
    Shutdown,
    /// Interrupt window or other irqchip-related exit.
    IrqWindow,
    /// KVM internal error or software-CPU unimplemented feature.
    InternalError,
    /// VM entry failed.
    FailEntry,
    /// Anything else (system events, hypercalls, ...).
    Other,
}

impl ExitReason {
    /// All reasons, in table order.
    pub const ALL: [ExitReason; 12] = [
        ExitReason::PioRead,
        ExitReason::PioWrite,
        ExitReason::MmioRead,
        ExitReason::MmioWrite,
        ExitReason::Halt,
        ExitReason::Interrupted,
        ExitReason::Debug,
        ExitReason::Shutdown,
        ExitReason::IrqWindow,
        ExitReason::InternalError,
        ExitReason::FailEntry,
        ExitReason::Other,
    ];

    /// Name as printed in tables.
    pub fn name(self) -> &'static str {
        match self {
            ExitReason::PioRead => "io-in",
            ExitReason::PioWrite => "io-out",
            ExitReason::MmioRead => "mmio-read",
            ExitReason::MmioWrite => "mmio-write",
            ExitReason::Halt => "hlt",
            ExitReason::Interrupted => "interrupted",
            ExitReason::Debug => "debug",
            ExitReason::Shutdown => "shutdown",
            ExitReason::IrqWindow => "irq-window",
            ExitReason::InternalError => "internal-error",
            ExitReason::FailEntry => "fail-entry",
            ExitReason::Other => "other",
        }
    }
}

const REASONS: usize = ExitReason::ALL.len();

/// Told of every exit as it is counted (`-d exits` logs one line per exit through it).
pub type ExitObserver = Box<dyn Fn(usize, ExitReason) + Send + Sync>;

/// Counters for every vCPU of a machine.
#[derive(Debug)]
pub struct ExitStats {
    rows: Vec<[AtomicU64; REASONS]>,
    instructions: Vec<AtomicU64>,
    observer: Option<Observer>,
}

/// An [`ExitObserver`] in a box `Debug` can print.
struct Observer(ExitObserver);

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

impl ExitStats {
    /// Zeroed counters for `vcpus` vCPUs.
    pub fn new(vcpus: usize) -> Self {
        ExitStats {
            rows: (0..vcpus)
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
            instructions: (0..vcpus).map(|_| AtomicU64::new(0)).collect(),
            observer: None,
        }
    }

    /// Zeroed counters for `vcpus` vCPUs that also call `observer` on every counted exit.
    pub fn with_observer(vcpus: usize, observer: ExitObserver) -> Self {
        ExitStats {
            observer: Some(Observer(observer)),
            ..ExitStats::new(vcpus)
        }
    }

    /// Count one exit of `reason` on `vcpu` (out-of-range vCPUs are ignored).
    #[inline]
    pub fn count(&self, vcpu: usize, reason: ExitReason) {
        if let Some(row) = self.rows.get(vcpu) {
            row[reason as usize].fetch_add(1, Ordering::Relaxed);
            if let Some(o) = &self.observer {
                (o.0)(vcpu, reason);
            }
        }
    }

    /// Add `n` retired guest instructions for `vcpu` (software CPU only).
    #[inline]
    pub fn add_instructions(&self, vcpu: usize, n: u64) {
        if let Some(c) = self.instructions.get(vcpu) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Number of vCPUs tracked.
    pub fn vcpus(&self) -> usize {
        self.rows.len()
    }

    /// The count of `reason` on `vcpu`.
    pub fn get(&self, vcpu: usize, reason: ExitReason) -> u64 {
        self.rows
            .get(vcpu)
            .map_or(0, |r| r[reason as usize].load(Ordering::Relaxed))
    }

    /// Retired instructions on `vcpu` (0 where unknown, as under KVM).
    pub fn instructions(&self, vcpu: usize) -> u64 {
        self.instructions
            .get(vcpu)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Total of `reason` over all vCPUs.
    pub fn total(&self, reason: ExitReason) -> u64 {
        (0..self.vcpus()).map(|v| self.get(v, reason)).sum()
    }

    /// A table: one row per reason with a non-zero count, one column per vCPU, and a total.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = write!(out, "{:<16}", "exit reason");
        for v in 0..self.vcpus() {
            let _ = write!(out, "{:>12}", format!("cpu{v}"));
        }
        let _ = writeln!(out, "{:>12}", "total");
        for reason in ExitReason::ALL {
            let total = self.total(reason);
            if total == 0 {
                continue;
            }
            let _ = write!(out, "{:<16}", reason.name());
            for v in 0..self.vcpus() {
                let _ = write!(out, "{:>12}", self.get(v, reason));
            }
            let _ = writeln!(out, "{total:>12}");
        }
        let insns: u64 = (0..self.vcpus()).map(|v| self.instructions(v)).sum();
        if insns > 0 {
            let _ = write!(out, "{:<16}", "instructions");
            for v in 0..self.vcpus() {
                let _ = write!(out, "{:>12}", self.instructions(v));
            }
            let _ = writeln!(out, "{insns:>12}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_vcpu_and_total() {
        let s = ExitStats::new(2);
        s.count(0, ExitReason::PioWrite);
        s.count(1, ExitReason::PioWrite);
        s.count(1, ExitReason::Halt);
        s.count(7, ExitReason::Halt); // ignored, no panic
        assert_eq!(s.total(ExitReason::PioWrite), 2);
        assert_eq!(s.get(1, ExitReason::Halt), 1);
        let t = s.table();
        assert!(t.contains("io-out"));
        assert!(!t.contains("mmio-read"));
    }

    #[test]
    fn observer_sees_exactly_the_counted_exits() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let s = ExitStats::with_observer(1, Box::new(move |v, r| log.lock().unwrap().push((v, r))));
        s.count(0, ExitReason::Halt);
        s.count(3, ExitReason::Halt); // not counted, not observed
        assert_eq!(*seen.lock().unwrap(), vec![(0, ExitReason::Halt)]);
        assert_eq!(s.total(ExitReason::Halt), 1);
    }
}

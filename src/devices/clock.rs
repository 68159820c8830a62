//! The one source of time for the timer devices (PIT now; later the RTC and the LAPIC timer).
//!
//! Time enters only through [`Clock::now_ns`]; devices compute their counters from it instead of
//! running host timer threads, so the machine decides when to look (and can sleep until the next
//! deadline a device reports). [`HostClock`] is host monotonic time since its creation;
//! [`ManualClock`] is set and advanced by hand, for tests. [`IcountClock`] is the deterministic
//! clock of `-icount shift=N`: virtual time derived from the software CPU's retired-instruction
//! count, plus the jumps ("warps") the machine makes when every vCPU is idle.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// A monotonic clock in nanoseconds. The origin is the clock's own (usually its creation); only
/// differences between readings matter to devices.
pub trait Clock: Send + Sync {
    /// Nanoseconds since the clock's origin; never decreases.
    fn now_ns(&self) -> u64;
}

/// Host monotonic time since the clock was created.
#[derive(Debug, Clone, Copy)]
pub struct HostClock {
    start: Instant,
}

impl HostClock {
    /// A clock reading 0 now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }
}

impl Default for HostClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for HostClock {
    fn now_ns(&self) -> u64 {
        // u64 nanoseconds last 584 years; saturate rather than wrap past that.
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A clock that moves only when told to (tests, and a stopped machine).
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    /// A clock reading `ns`.
    pub fn new(ns: u64) -> Self {
        Self {
            now: AtomicU64::new(ns),
        }
    }

    /// Set the time to `ns`. Going backwards is refused (the clock stays put): devices rely on
    /// monotonic time.
    pub fn set(&self, ns: u64) {
        self.now.fetch_max(ns, Ordering::SeqCst);
    }

    /// Move the time forward by `ns` (saturating).
    pub fn advance(&self, ns: u64) {
        // fetch_update with a closure that always returns Some cannot fail.
        let _ = self
            .now
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(ns))
            });
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}

/// Where an [`IcountClock`] reads the number of guest instructions retired so far (by all vCPUs).
pub type InstructionCount = Box<dyn Fn() -> u64 + Send + Sync>;

/// The largest `-icount` shift: one instruction = 2^10 ns (QEMU's limit too).
pub const MAX_ICOUNT_SHIFT: u32 = 10;

/// Virtual time from the instruction count: `now = (retired << shift) + warp`.
///
/// The count is whatever the injected [`InstructionCount`] says (the machine sums the vCPUs'
/// retired instructions); the clock adds the warp, which only grows, through
/// [`IcountClock::warp_to`]. With the same guest and the same inputs, every reading happens at
/// the same instruction and returns the same value: the run repeats bit for bit.
pub struct IcountClock {
    shift: u32,
    count: InstructionCount,
    warp: AtomicU64,
}

impl std::fmt::Debug for IcountClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IcountClock")
            .field("shift", &self.shift)
            .field("warp", &self.warp.load(Ordering::Relaxed))
            .finish()
    }
}

impl IcountClock {
    /// A clock where each instruction `count` reports is 2^`shift` ns (`shift` is clamped to
    /// [`MAX_ICOUNT_SHIFT`]).
    pub fn new(shift: u32, count: InstructionCount) -> Self {
        Self {
            shift: shift.min(MAX_ICOUNT_SHIFT),
            count,
            warp: AtomicU64::new(0),
        }
    }

    /// Nanoseconds of virtual time per instruction, as a power of two.
    pub fn shift(&self) -> u32 {
        self.shift
    }

    /// Virtual time spent idle so far (the sum of the warps).
    pub fn warped_ns(&self) -> u64 {
        self.warp.load(Ordering::SeqCst)
    }

    /// Every vCPU is idle: jump to `deadline_ns` if it is still ahead (no effect otherwise).
    pub fn warp_to(&self, deadline_ns: u64) {
        let now = self.now_ns();
        if deadline_ns > now {
            let gap = deadline_ns - now;
            // fetch_update with a closure that always returns Some cannot fail.
            let _ = self
                .warp
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                    Some(w.saturating_add(gap))
                });
        }
    }

    /// How many more instructions must retire before the clock reaches `deadline_ns`: 0 if it
    /// already has, else at least 1 (rounded up, so running that many reaches the deadline).
    pub fn instructions_until(&self, deadline_ns: u64) -> u64 {
        let now = self.now_ns();
        if deadline_ns <= now {
            return 0;
        }
        let gap = deadline_ns - now;
        let step = 1u64 << self.shift;
        gap.div_ceil(step)
    }
}

impl Clock for IcountClock {
    fn now_ns(&self) -> u64 {
        let insns = (self.count)();
        let ns = insns
            .checked_shl(self.shift)
            .filter(|v| v >> self.shift == insns)
            .unwrap_or(u64::MAX);
        ns.saturating_add(self.warp.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn manual_clock_moves_only_forward() {
        let c = ManualClock::new(100);
        assert_eq!(c.now_ns(), 100);
        c.advance(50);
        assert_eq!(c.now_ns(), 150);
        c.set(120);
        assert_eq!(c.now_ns(), 150);
        c.set(1_000);
        assert_eq!(c.now_ns(), 1_000);
        c.advance(u64::MAX);
        assert_eq!(c.now_ns(), u64::MAX);
    }

    #[test]
    fn host_clock_is_monotonic() {
        let c = HostClock::new();
        let a = c.now_ns();
        std::thread::sleep(std::time::Duration::from_millis(1));
        let b = c.now_ns();
        assert!(b >= a + 1_000_000);
    }

    fn counter() -> (Arc<AtomicU64>, IcountClock) {
        let n = Arc::new(AtomicU64::new(0));
        let m = n.clone();
        (
            n,
            IcountClock::new(3, Box::new(move || m.load(Ordering::SeqCst))),
        )
    }

    #[test]
    fn icount_clock_is_instructions_shifted_plus_warps() {
        let (n, c) = counter();
        assert_eq!(c.now_ns(), 0);
        n.store(100, Ordering::SeqCst);
        assert_eq!(c.now_ns(), 800);
        c.warp_to(10_000);
        assert_eq!(c.now_ns(), 10_000);
        assert_eq!(c.warped_ns(), 9_200);
        // A deadline already passed does not move the clock.
        c.warp_to(5_000);
        assert_eq!(c.now_ns(), 10_000);
        n.store(101, Ordering::SeqCst);
        assert_eq!(c.now_ns(), 10_008);
    }

    #[test]
    fn instructions_until_rounds_up() {
        let (n, c) = counter();
        n.store(10, Ordering::SeqCst); // 80 ns
        assert_eq!(c.instructions_until(80), 0);
        assert_eq!(c.instructions_until(50), 0);
        assert_eq!(c.instructions_until(81), 1);
        assert_eq!(c.instructions_until(88), 1);
        assert_eq!(c.instructions_until(89), 2);
        n.store(12, Ordering::SeqCst);
        assert_eq!(c.now_ns(), 96);
        assert!(c.now_ns() >= 89);
    }

    #[test]
    fn icount_clock_saturates_and_clamps_shift() {
        let c = IcountClock::new(99, Box::new(|| u64::MAX / 2));
        assert_eq!(c.shift(), MAX_ICOUNT_SHIFT);
        assert_eq!(c.now_ns(), u64::MAX);
    }
}

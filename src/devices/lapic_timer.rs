//! The local APIC's timer: a 32-bit down-counter clocked by the APIC bus clock through a divider,
//! one-shot or periodic.
//!
//! The counter is never stepped: like the PIT it is computed from the machine's [`Clock`] when
//! read. Data enters as the guest's writes of the initial count and the divide configuration
//! (with the time they happened) and leaves as the current count ([`ApicTimer::current`]), the
//! next expiry ([`ApicTimer::deadline_ns`]) and the number of expiries since the last poll
//! ([`ApicTimer::poll`]), which the local APIC turns into an interrupt.
//!
//! The APIC bus clock runs at [`APIC_BUS_HZ`] = 1 GHz, so one tick at divide-by-1 is one
//! nanosecond of the clock (QEMU's choice too): a 32-bit count then lasts up to 4.3 s at divide
//! 1 and 9 minutes at divide 128.

/// The APIC bus (timer input) frequency: one tick per clock nanosecond.
pub const APIC_BUS_HZ: u64 = 1_000_000_000;

/// Timer mode, from LVT timer bits 18:17.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimerMode {
    /// Count down once to zero, interrupt, stop.
    #[default]
    OneShot,
    /// Count down to zero, interrupt, reload the initial count, again.
    Periodic,
}

/// The timer's registers and where its count started, for snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApicTimerState {
    /// Initial count register (0 = stopped).
    pub initial: u32,
    /// Divide configuration register as written (bits 0, 1 and 3 matter).
    pub divide_config: u32,
    /// A clock time (ns) at which the count was known: the last load or divider change.
    pub anchor_ns: u64,
    /// The count at `anchor_ns`.
    pub anchor_count: u32,
    /// Clock time of the next expiry not yet polled, if the timer is counting.
    pub next_ns: Option<u64>,
    /// One-shot or periodic.
    pub mode: TimerMode,
}

/// The timer.
#[derive(Debug, Clone, Default)]
pub struct ApicTimer {
    /// Its state.
    pub state: ApicTimerState,
}

impl ApicTimer {
    /// Divider shift: the count decrements once every `1 << shift` bus ticks.
    fn shift(&self) -> u32 {
        let c = self.state.divide_config;
        let v = (c & 3) | ((c >> 1) & 4);
        (v + 1) & 7
    }

    /// Nanoseconds one full count takes (the period in periodic mode).
    fn period_ns(&self) -> u64 {
        u64::from(self.state.initial) << self.shift()
    }

    /// Write the initial count at time `now`: the count restarts from it (0 stops the timer).
    pub fn set_initial(&mut self, count: u32, now: u64) {
        self.state.initial = count;
        self.state.anchor_ns = now;
        self.state.anchor_count = count;
        self.state.next_ns = (count != 0).then(|| now.saturating_add(self.period_ns()));
    }

    /// Write the divide configuration at `now`. The count goes on from its current value at the
    /// new rate (so a guest that changes the divider mid-count sees no jump).
    pub fn set_divide(&mut self, config: u32, now: u64) {
        let remaining = self.current(now);
        self.state.divide_config = config & 0xb;
        self.state.anchor_ns = now;
        self.state.anchor_count = remaining;
        if self.state.next_ns.is_some() {
            let left = u64::from(remaining) << self.shift();
            self.state.next_ns = Some(now.saturating_add(left));
        }
    }

    /// Switch between one-shot and periodic (LVT timer write) at `now`.
    pub fn set_mode(&mut self, mode: TimerMode, now: u64) {
        if mode == self.state.mode {
            return;
        }
        self.state.mode = mode;
        // A one-shot timer that already fired may start counting again as periodic.
        if mode == TimerMode::Periodic && self.state.next_ns.is_none() && self.state.initial != 0 {
            self.set_initial(self.state.initial, now);
        }
    }

    /// The current count register at `now`.
    pub fn current(&self, now: u64) -> u32 {
        let initial = u64::from(self.state.initial);
        if initial == 0 {
            return 0;
        }
        let ticks = now.saturating_sub(self.state.anchor_ns) >> self.shift();
        let anchor = u64::from(self.state.anchor_count);
        if ticks < anchor {
            return (anchor - ticks) as u32;
        }
        match self.state.mode {
            TimerMode::OneShot => 0,
            // Reloaded at each zero: `over` ticks into the reloads.
            TimerMode::Periodic => (initial - (ticks - anchor) % initial) as u32,
        }
    }

    /// When the timer next expires (clock ns), if it is counting.
    pub fn deadline_ns(&self) -> Option<u64> {
        self.state.next_ns
    }

    /// Account for time up to `now`: how many expiries passed since the last poll (a periodic
    /// timer that was not polled for several periods reports them all; the APIC can latch only
    /// one).
    pub fn poll(&mut self, now: u64) -> u64 {
        let Some(next) = self.state.next_ns else {
            return 0;
        };
        if now < next {
            return 0;
        }
        match self.state.mode {
            TimerMode::OneShot => {
                self.state.next_ns = None;
                1
            }
            TimerMode::Periodic => {
                let period = self.period_ns().max(1);
                let missed = (now - next) / period;
                self.state.next_ns = Some(next.saturating_add((missed + 1) * period));
                missed + 1
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shot_counts_down_and_fires_once() {
        let mut t = ApicTimer::default();
        t.set_divide(0xb, 0); // divide by 1
        t.set_initial(1000, 100);
        assert_eq!(t.current(100), 1000);
        assert_eq!(t.current(600), 500);
        assert_eq!(t.deadline_ns(), Some(1100));
        assert_eq!(t.poll(1099), 0);
        assert_eq!(t.poll(1100), 1);
        assert_eq!(t.current(1100), 0);
        assert_eq!(t.poll(5000), 0);
        assert_eq!(t.deadline_ns(), None);
    }

    #[test]
    fn periodic_reloads_and_counts_missed_periods() {
        let mut t = ApicTimer::default();
        t.set_mode(TimerMode::Periodic, 0);
        t.set_divide(0, 0); // divide by 2
        t.set_initial(100, 0); // 200 ns period
        assert_eq!(t.current(50), 75);
        assert_eq!(t.current(250), 75);
        assert_eq!(t.poll(200), 1);
        assert_eq!(t.deadline_ns(), Some(400));
        assert_eq!(t.poll(1000), 4);
        assert_eq!(t.deadline_ns(), Some(1200));
        t.set_initial(0, 1000);
        assert_eq!(t.deadline_ns(), None);
        assert_eq!(t.current(2000), 0);
    }

    #[test]
    fn divider_encodings_and_change_mid_count() {
        let mut t = ApicTimer::default();
        for (cfg, shift) in [
            (0, 1),
            (1, 2),
            (2, 3),
            (3, 4),
            (8, 5),
            (9, 6),
            (10, 7),
            (11, 0),
        ] {
            t.state.divide_config = cfg;
            assert_eq!(t.shift(), shift, "config {cfg:#x}");
        }
        t.set_divide(0xb, 0);
        t.set_initial(1000, 0);
        t.set_divide(0x3, 400); // divide by 16 with 600 left
        assert_eq!(t.current(400), 600);
        assert_eq!(t.current(400 + 16 * 100), 500);
        assert_eq!(t.deadline_ns(), Some(400 + 16 * 600));
    }
}

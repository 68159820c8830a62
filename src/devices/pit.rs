//! The 8254 programmable interval timer at [`PIT_BASE`] (0x40-0x43): three 16-bit down-counters
//! clocked at [`PIT_HZ`]. Channel 0 drives IRQ 0, channel 2's gate and output are wired to system
//! control port B (0x61, [`super::port61`]); channel 1 (DRAM refresh on old PCs) counts but goes
//! nowhere.
//!
//! Data enters as guest port accesses ([`Pit`] is a [`BusDevice`] for the whole range, offset 0-2
//! = counters, 3 = control word), gate changes ([`Pit::set_gate`], or through the
//! [`PitChannel2Handle`] port 0x61 holds) and the time of an injected [`Clock`]. Nothing runs on
//! its own: every counter value and output is computed from the clock when asked. It leaves as
//! channel outputs ([`Pit::output`]), and for IRQ 0 as a count of rising edges of channel 0's
//! output since the last [`Pit::poll_irq0`]; [`Pit::next_irq0_deadline_ns`] tells the machine
//! when to poll next, so it can sleep (or, under a deterministic clock, run) until then and
//! pulse IRQ 0 once per poll that found edges (edges the machine was late for are coalesced,
//! the way Linux tolerates lost ticks).
//!
//! Modelled: modes 0-5 (6 and 7 are aliases of 2 and 3), lobyte/hibyte/lobyte-then-hibyte
//! access, the counter-latch command, the read-back command (count and status), BCD counting,
//! gate behaviour per mode (0/4 pause, 1/5 trigger, 2/3 hold with the output high, and reload on
//! the rising gate), null-count status.
//! Simplifications: a new count starts counting at once (no extra CLK cycle to load it), and a
//! count rewritten in mode 2 or 3 while the counter runs restarts the period at once instead of
//! at the end of the current one. Clock times in [`PitState`] are in the clock's own nanoseconds:
//! restore it against the same (or a continued) clock.

use std::sync::{Arc, Mutex};

use super::clock::Clock;
use super::port61::PitChannel2;
use super::BusDevice;

/// First I/O port of the PIT.
pub const PIT_BASE: u16 = 0x40;
/// Ports it decodes: counters 0-2, then the control word.
pub const PIT_LEN: u64 = 4;
/// Input clock frequency in Hz.
pub const PIT_HZ: u64 = 1_193_182;
/// ISA IRQ channel 0 drives.
pub const PIT_IRQ: u8 = 0;
/// Offset of the control-word register.
pub const CONTROL: u64 = 3;
/// Number of channels.
pub const CHANNELS: usize = 3;

/// Control word bits 7-6: the counter to program (3 = read-back command).
pub const CW_SELECT_SHIFT: u8 = 6;
/// Control word bits 7-6 value that makes it a read-back command.
pub const CW_READ_BACK: u8 = 3;
/// Control word bits 5-4: access mode (0 = counter latch command).
pub const CW_ACCESS_SHIFT: u8 = 4;
/// Control word bits 3-1: counter mode.
pub const CW_MODE_SHIFT: u8 = 1;
/// Control word bit 0: BCD counting.
pub const CW_BCD: u8 = 0b0000_0001;
/// Access mode: counter latch command.
pub const ACCESS_LATCH: u8 = 0;
/// Access mode: low byte only.
pub const ACCESS_LO: u8 = 1;
/// Access mode: high byte only.
pub const ACCESS_HI: u8 = 2;
/// Access mode: low byte then high byte.
pub const ACCESS_LOHI: u8 = 3;
/// Read-back: do not latch the count (active low).
pub const RB_NO_COUNT: u8 = 0b0010_0000;
/// Read-back: do not latch the status (active low).
pub const RB_NO_STATUS: u8 = 0b0001_0000;
/// Read-back: the lowest channel-select bit (bit 1 = channel 0, bit 2 = 1, bit 3 = 2).
pub const RB_CHANNEL0: u8 = 0b0000_0010;
/// Status byte: the channel's output.
pub const STATUS_OUT: u8 = 0b1000_0000;
/// Status byte: null count (a count was written but is not yet in the counting element).
pub const STATUS_NULL_COUNT: u8 = 0b0100_0000;

const NS_PER_S: u128 = 1_000_000_000;

/// One counter's registers and its place in time, for snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PitChannelState {
    /// Counter mode, 0-5.
    pub mode: u8,
    /// Access mode ([`ACCESS_LO`], [`ACCESS_HI`], [`ACCESS_LOHI`]; 0 before programming).
    pub access: u8,
    /// BCD counting.
    pub bcd: bool,
    /// The count register as last written (0 is the maximum count).
    pub reload: u16,
    /// A count is in the counting element (false after a control word, until the count is
    /// written).
    pub loaded: bool,
    /// Counting has begun (modes 1 and 5 also need a gate edge after the count).
    pub triggered: bool,
    /// The gate input.
    pub gate: bool,
    /// The counter is counting now.
    pub running: bool,
    /// Clock time when the current run began.
    pub run_start_ns: u64,
    /// Ticks counted before the current run (mode 0 and 4 pause while the gate is low).
    pub elapsed_base: u64,
    /// Rising output edges of this count already reported by [`Pit::poll_irq0`].
    pub edges_seen: u64,
    /// The next count write is the high byte (lobyte/hibyte access).
    pub write_hi_next: bool,
    /// The low byte waiting for its high byte.
    pub write_lo: u8,
    /// The next read is the high byte (lobyte/hibyte access).
    pub read_hi_next: bool,
    /// A latched count, read before the live one.
    pub latched_count: Option<u16>,
    /// A latched status byte (read-back), read before any count.
    pub latched_status: Option<u8>,
    /// The null-count status flag.
    pub null_count: bool,
}

impl PitChannelState {
    fn modulus(&self) -> u64 {
        if self.bcd {
            10_000
        } else {
            65_536
        }
    }

    /// The programmed count as a number of ticks (0 means the modulus).
    fn initial(&self) -> u64 {
        let n = if self.bcd {
            from_bcd(self.reload)
        } else {
            u64::from(self.reload)
        } % self.modulus();
        if n == 0 {
            self.modulus()
        } else {
            n
        }
    }

    fn elapsed(&self, now: u64) -> u64 {
        let run = if self.running {
            ns_to_ticks(now.saturating_sub(self.run_start_ns))
        } else {
            0
        };
        self.elapsed_base.saturating_add(run)
    }

    /// The counting element now, in binary.
    fn count(&self, now: u64) -> u64 {
        if !self.triggered {
            return self.initial() % self.modulus();
        }
        let n = self.initial();
        let e = self.elapsed(now);
        let m = self.modulus();
        match self.mode {
            2 => n - e % n,
            3 => {
                // Decrements by two, through each half-period in turn.
                let p = e % n;
                let high = n.div_ceil(2);
                let into = if p < high { p } else { p - high };
                n.saturating_sub(2 * into).max(1)
            }
            // Modes 0, 1, 4, 5 count down once and then wrap around the modulus.
            _ => (n + m - e % m) % m,
        }
    }

    fn output(&self, now: u64) -> bool {
        if !self.triggered {
            // Mode 0 waits with its output low; the others idle high.
            return self.mode != 0;
        }
        let n = self.initial();
        let e = self.elapsed(now);
        match self.mode {
            0 | 1 => e >= n,
            2 => !self.gate || e % n != n - 1,
            3 => !self.gate || e % n < n.div_ceil(2),
            _ => e != n,
        }
    }

    /// Rising output edges in the first `e` ticks of this count.
    fn edges(&self, e: u64) -> u64 {
        let n = self.initial();
        match self.mode {
            0 | 1 => u64::from(e >= n),
            2 | 3 => e / n,
            _ => u64::from(e > n),
        }
    }

    /// The tick of the `k`-th rising edge (1-based), if there is one.
    fn edge_tick(&self, k: u64) -> Option<u64> {
        let n = self.initial();
        match self.mode {
            0 | 1 => (k == 1).then_some(n),
            2 | 3 => k.checked_mul(n),
            _ => (k == 1).then_some(n + 1),
        }
    }

    /// Begin counting this count from `now` (or pause, for a low gate).
    fn start(&mut self, now: u64) {
        self.elapsed_base = 0;
        self.run_start_ns = now;
        self.edges_seen = 0;
        self.triggered = true;
        self.running = true;
    }

    fn program(&mut self, cw: u8) {
        let mode = (cw >> CW_MODE_SHIFT) & 7;
        *self = PitChannelState {
            mode: if mode >= 6 { mode - 4 } else { mode },
            access: (cw >> CW_ACCESS_SHIFT) & 3,
            bcd: cw & CW_BCD != 0,
            gate: self.gate,
            null_count: true,
            ..PitChannelState::default()
        };
    }

    fn latch_count(&mut self, now: u64) {
        if self.latched_count.is_none() {
            let c = self.count(now);
            let c = if self.bcd { to_bcd(c) } else { c as u16 };
            self.latched_count = Some(c);
        }
    }

    fn status(&self, now: u64) -> u8 {
        let mut s = (self.access << CW_ACCESS_SHIFT) | (self.mode << CW_MODE_SHIFT);
        if self.bcd {
            s |= CW_BCD;
        }
        if self.output(now) {
            s |= STATUS_OUT;
        }
        if self.null_count {
            s |= STATUS_NULL_COUNT;
        }
        s
    }

    fn write_count(&mut self, v: u8, now: u64) {
        let full = match self.access {
            ACCESS_LO => u16::from(v),
            ACCESS_HI => u16::from(v) << 8,
            ACCESS_LOHI if !self.write_hi_next => {
                self.write_lo = v;
                self.write_hi_next = true;
                if self.mode == 0 {
                    // Mode 0: the first byte stops the count (output low until the second).
                    self.loaded = false;
                    self.triggered = false;
                    self.running = false;
                }
                return;
            }
            ACCESS_LOHI => {
                self.write_hi_next = false;
                u16::from(self.write_lo) | (u16::from(v) << 8)
            }
            _ => return, // not programmed yet
        };
        self.reload = full;
        self.loaded = true;
        self.null_count = false;
        match self.mode {
            1 | 5 => {
                // Waits for a rising gate edge.
                self.triggered = false;
                self.running = false;
            }
            _ => {
                self.start(now);
                self.running = self.gate;
            }
        }
    }

    fn read(&mut self, now: u64) -> u8 {
        if let Some(s) = self.latched_status.take() {
            return s;
        }
        let value = match self.latched_count {
            Some(c) => c,
            None => {
                let c = self.count(now);
                if self.bcd {
                    to_bcd(c)
                } else {
                    c as u16
                }
            }
        };
        let [lo, hi] = value.to_le_bytes();
        let (byte, done) = match self.access {
            ACCESS_HI => (hi, true),
            ACCESS_LOHI if !self.read_hi_next => {
                self.read_hi_next = true;
                (lo, false)
            }
            ACCESS_LOHI => {
                self.read_hi_next = false;
                (hi, true)
            }
            _ => (lo, true),
        };
        if done {
            self.latched_count = None;
        }
        byte
    }

    fn set_gate(&mut self, gate: bool, now: u64) {
        let rising = gate && !self.gate;
        match self.mode {
            0 | 4 if self.triggered && gate != self.gate => {
                if gate {
                    self.run_start_ns = now;
                } else {
                    self.elapsed_base = self.elapsed(now);
                }
                self.running = gate;
            }
            1 | 5 if rising && self.loaded => self.start(now),
            2 | 3 if self.loaded => {
                if rising {
                    self.start(now);
                } else if !gate && self.gate {
                    // The count holds while the gate is low; a rising gate reloads it.
                    self.elapsed_base = self.elapsed(now);
                    self.running = false;
                }
            }
            _ => {}
        }
        self.gate = gate;
    }
}

fn ns_to_ticks(ns: u64) -> u64 {
    u64::try_from(u128::from(ns) * u128::from(PIT_HZ) / NS_PER_S).unwrap_or(u64::MAX)
}

/// The first clock time at which `ticks` ticks have passed.
pub(super) fn ticks_to_ns(ticks: u64) -> u64 {
    let hz = u128::from(PIT_HZ);
    u64::try_from((u128::from(ticks) * NS_PER_S).div_ceil(hz)).unwrap_or(u64::MAX)
}

/// Four BCD digits as a number (nibbles above 9 are taken at face value).
fn from_bcd(v: u16) -> u64 {
    (0..4).fold(0, |acc, i| acc * 10 + u64::from((v >> (12 - 4 * i)) & 0xf))
}

fn to_bcd(v: u64) -> u16 {
    let v = v % 10_000;
    (0..4).fold(0u16, |acc, i| {
        acc | (((v / 10u64.pow(i)) % 10) as u16) << (4 * i)
    })
}

/// The three channels, for snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PitState {
    /// Channels 0-2.
    pub channels: [PitChannelState; CHANNELS],
}

impl Default for PitState {
    /// Power-on: unprogrammed, gates of channels 0 and 1 tied high, channel 2's low (port 0x61).
    fn default() -> Self {
        let mut channels = [PitChannelState::default(); CHANNELS];
        channels[0].gate = true;
        channels[1].gate = true;
        Self { channels }
    }
}

/// The 8254.
pub struct Pit {
    state: PitState,
    clock: Arc<dyn Clock>,
}

impl Pit {
    /// A PIT at power-on, reading time from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self::from_state(PitState::default(), clock)
    }

    /// A PIT resumed from `state` against `clock`.
    pub fn from_state(state: PitState, clock: Arc<dyn Clock>) -> Self {
        Self { state, clock }
    }

    /// A copy of the state.
    pub fn state(&self) -> PitState {
        self.state
    }

    /// Back to power-on (machine reset).
    pub fn reset(&mut self) {
        self.state = PitState::default();
    }

    fn now(&self) -> u64 {
        self.clock.now_ns()
    }

    /// Channel `ch`'s output now (false for a channel that does not exist).
    pub fn output(&self, ch: usize) -> bool {
        let now = self.now();
        self.state.channels.get(ch).is_some_and(|c| c.output(now))
    }

    /// Channel `ch`'s counting element now, as the guest would read it (BCD in BCD mode).
    pub fn count(&self, ch: usize) -> Option<u16> {
        let now = self.now();
        let c = self.state.channels.get(ch)?;
        let v = c.count(now);
        Some(if c.bcd { to_bcd(v) } else { v as u16 })
    }

    /// Drive channel `ch`'s gate input (only channel 2's is not tied high on a PC).
    pub fn set_gate(&mut self, ch: usize, gate: bool) {
        let now = self.now();
        if let Some(c) = self.state.channels.get_mut(ch) {
            c.set_gate(gate, now);
        }
    }

    /// Rising edges of channel 0's output since the last call: pulse IRQ 0 if non-zero.
    pub fn poll_irq0(&mut self) -> u64 {
        let now = self.now();
        let c = &mut self.state.channels[0];
        if !c.triggered {
            return 0;
        }
        let total = c.edges(c.elapsed(now));
        let new = total.saturating_sub(c.edges_seen);
        c.edges_seen = total;
        new
    }

    /// The clock time of channel 0's next rising output edge not yet reported by
    /// [`Self::poll_irq0`] (possibly already past), or `None` if none is coming (not programmed,
    /// one-shot done, gate low).
    pub fn next_irq0_deadline_ns(&self) -> Option<u64> {
        let c = &self.state.channels[0];
        if !c.triggered || !c.running {
            return None;
        }
        let tick = c.edge_tick(c.edges_seen.saturating_add(1))?;
        let to_go = tick.saturating_sub(c.elapsed_base);
        Some(c.run_start_ns.saturating_add(ticks_to_ns(to_go)))
    }

    fn write_control(&mut self, cw: u8, now: u64) {
        let select = cw >> CW_SELECT_SHIFT;
        if select == CW_READ_BACK {
            for (i, c) in self.state.channels.iter_mut().enumerate() {
                if cw & (RB_CHANNEL0 << i) == 0 {
                    continue;
                }
                if cw & RB_NO_STATUS == 0 && c.latched_status.is_none() {
                    c.latched_status = Some(c.status(now));
                }
                if cw & RB_NO_COUNT == 0 {
                    c.latch_count(now);
                }
            }
            return;
        }
        let c = &mut self.state.channels[usize::from(select)];
        if (cw >> CW_ACCESS_SHIFT) & 3 == ACCESS_LATCH {
            c.latch_count(now);
        } else {
            c.program(cw);
        }
    }
}

impl BusDevice for Pit {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        let now = self.now();
        let Some(b) = data.first_mut() else { return };
        if let Some(c) = usize::try_from(offset)
            .ok()
            .and_then(|i| self.state.channels.get_mut(i))
        {
            *b = c.read(now);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        let now = self.now();
        if offset == CONTROL {
            self.write_control(v, now);
        } else if let Some(c) = usize::try_from(offset)
            .ok()
            .and_then(|i| self.state.channels.get_mut(i))
        {
            c.write_count(v, now);
        }
    }
}

/// Channel 2 of a shared [`Pit`], for port 0x61.
pub struct PitChannel2Handle(pub Arc<Mutex<Pit>>);

impl PitChannel2 for PitChannel2Handle {
    fn set_gate(&self, gate: bool) {
        let mut pit = self.0.lock().unwrap_or_else(|e| e.into_inner());
        pit.set_gate(2, gate);
    }

    fn output(&self) -> bool {
        let pit = self.0.lock().unwrap_or_else(|e| e.into_inner());
        pit.output(2)
    }
}

#[cfg(test)]
mod tests {
    use super::super::clock::ManualClock;
    use super::super::port61::{Port61, P61_PIT2_OUT};
    use super::*;

    /// Linux's LATCH for HZ=250.
    const LATCH_250: u16 = ((PIT_HZ + 125) / 250) as u16;

    fn pit() -> (Pit, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(1_000));
        (Pit::new(clock.clone()), clock)
    }

    fn out(p: &mut Pit, port: u64, v: u8) {
        p.write(port, &[v]);
    }

    fn inb(p: &mut Pit, port: u64) -> u8 {
        let mut b = [0];
        p.read(port, &mut b);
        b[0]
    }

    /// Linux's pit_read-style read: latch channel 0, then low and high byte.
    fn latched_ch0(p: &mut Pit) -> u16 {
        out(p, CONTROL, 0x00);
        let lo = inb(p, 0);
        let hi = inb(p, 0);
        u16::from_le_bytes([lo, hi])
    }

    #[test]
    fn linux_hz250_periodic_tick() {
        let (mut p, clock) = pit();
        assert_eq!(p.next_irq0_deadline_ns(), None);
        // init_pit_clockevent / pit_set_periodic: mode 2, lobyte then hibyte.
        out(&mut p, CONTROL, 0x34);
        out(&mut p, 0, LATCH_250 as u8);
        out(&mut p, 0, (LATCH_250 >> 8) as u8);
        assert_eq!(LATCH_250, 4773);
        assert_eq!(latched_ch0(&mut p), 4773);
        clock.advance(1_000_000); // 1 ms = 1193 ticks
        assert_eq!(latched_ch0(&mut p), 4773 - 1193);
        assert_eq!(p.poll_irq0(), 0);
        let first = p.next_irq0_deadline_ns().unwrap();
        // 4773 ticks is 4.000228 ms.
        assert_eq!(first, 1_000 + 4_000_228);
        clock.set(first - 1);
        assert_eq!(p.poll_irq0(), 0);
        clock.set(first);
        assert_eq!(p.poll_irq0(), 1);
        assert_eq!(p.poll_irq0(), 0);
        let second = p.next_irq0_deadline_ns().unwrap();
        assert!((second - first).abs_diff(4_000_228) <= 1);
        // Late by ten periods: the edges are counted, the machine pulses once.
        clock.set(1_000 + ticks_to_ns(11 * 4773));
        assert_eq!(p.poll_irq0(), 10);
        // Output low for exactly the last tick of each period.
        clock.set(1_000 + ticks_to_ns(12 * 4773) - 500);
        assert!(!p.output(0));
        assert_eq!(p.count(0), Some(1));
        clock.advance(2_000);
        assert!(p.output(0));
    }

    #[test]
    fn latch_holds_value_and_read_back_reports_status() {
        let (mut p, clock) = pit();
        out(&mut p, CONTROL, 0x34);
        out(&mut p, 0, 0x00);
        out(&mut p, 0, 0x10); // 0x1000
                              // A latch holds the count at the time of the command.
        out(&mut p, CONTROL, 0x00);
        clock.advance(100_000); // 119 ticks
        assert_eq!(u16::from_le_bytes([inb(&mut p, 0), inb(&mut p, 0)]), 0x1000);
        assert_eq!(latched_ch0(&mut p), 0x1000 - 119);
        // The first latch is held until read even if latched twice.
        out(&mut p, CONTROL, 0x00);
        clock.advance(100_000);
        out(&mut p, CONTROL, 0x00);
        assert_eq!(
            u16::from_le_bytes([inb(&mut p, 0), inb(&mut p, 0)]),
            0x1000 - 119
        );
        // Read-back of status and count of channel 0: status byte first.
        out(&mut p, CONTROL, 0xc0 | RB_CHANNEL0);
        let status = inb(&mut p, 0);
        assert_eq!(status, STATUS_OUT | (ACCESS_LOHI << 4) | (2 << 1));
        let c = u16::from_le_bytes([inb(&mut p, 0), inb(&mut p, 0)]);
        assert_eq!(c, 0x1000 - 238);
        // A fresh control word shows null count until the count is written.
        out(&mut p, CONTROL, 0x30);
        out(&mut p, CONTROL, 0xc0 | RB_NO_COUNT | RB_CHANNEL0);
        assert_eq!(inb(&mut p, 0), STATUS_NULL_COUNT | (ACCESS_LOHI << 4));
    }

    #[test]
    fn mode0_one_shot_and_linux_tsc_calibration_through_port61() {
        let clock = Arc::new(ManualClock::new(0));
        let dev = Arc::new(Mutex::new(Pit::new(clock.clone())));
        let mut p61 = Port61::new(Arc::new(PitChannel2Handle(dev.clone())));
        let rd61 = |p: &mut Port61| {
            let mut b = [0];
            p.read(0, &mut b);
            b[0]
        };
        // pit_calibrate_tsc: gate on, speaker off; channel 2 mode 0; 10 ms latch.
        let v = rd61(&mut p61);
        p61.write(0, &[(v & !0x02) | 0x01]);
        let latch = (PIT_HZ / 100) as u16;
        {
            let mut p = dev.lock().unwrap();
            out(&mut p, CONTROL, 0xb0);
            out(&mut p, 2, latch as u8);
            assert!(!p.output(2));
            out(&mut p, 2, (latch >> 8) as u8);
        }
        assert_eq!(rd61(&mut p61) & P61_PIT2_OUT, 0);
        clock.set(9_999_000);
        assert_eq!(rd61(&mut p61) & P61_PIT2_OUT, 0);
        clock.set(10_000_000);
        assert_ne!(rd61(&mut p61) & P61_PIT2_OUT, 0);
        // After terminal count the counter wraps and keeps counting, output stays high.
        clock.advance(1_000_000);
        let mut p = dev.lock().unwrap();
        assert!(p.output(2));
        let ticks = ns_to_ticks(11_000_000);
        assert_eq!(p.count(2), Some((65_536 + u64::from(latch) - ticks) as u16));
        // Gate low pauses mode 0.
        out(&mut p, CONTROL, 0xb0);
        out(&mut p, 2, 100);
        out(&mut p, 2, 0);
        p.set_gate(2, false);
        clock.advance(1_000_000);
        assert_eq!(p.count(2), Some(100));
        p.set_gate(2, true);
        clock.advance(50_000); // 59 ticks
        assert_eq!(p.count(2), Some(41));
    }

    #[test]
    fn mode0_irq0_one_edge_and_deadline() {
        let (mut p, clock) = pit();
        out(&mut p, CONTROL, 0x30);
        out(&mut p, 0, 0xff);
        out(&mut p, 0, 0xff);
        let d = p.next_irq0_deadline_ns().unwrap();
        assert_eq!(d, 1_000 + ticks_to_ns(0xffff));
        clock.set(d);
        assert_eq!(p.poll_irq0(), 1);
        assert_eq!(p.next_irq0_deadline_ns(), None);
        clock.advance(1_000_000_000);
        assert_eq!(p.poll_irq0(), 0);
    }

    #[test]
    fn mode3_square_wave_and_lobyte_access() {
        let (mut p, clock) = pit();
        // Channel 0, lobyte only, mode 3, count 10.
        out(&mut p, CONTROL, 0x16);
        out(&mut p, 0, 10);
        assert!(p.output(0));
        assert_eq!(inb(&mut p, 0), 10);
        clock.advance(ticks_to_ns(4));
        assert!(p.output(0));
        assert_eq!(inb(&mut p, 0), 2);
        clock.advance(ticks_to_ns(1));
        assert!(!p.output(0));
        clock.advance(ticks_to_ns(5));
        assert!(p.output(0));
        assert_eq!(p.poll_irq0(), 1);
    }

    #[test]
    fn modes_1_4_5_and_gate_triggers() {
        let (mut p, clock) = pit();
        // Mode 1 on channel 2: waits for a gate edge.
        out(&mut p, CONTROL, 0x92); // ch2, lobyte, mode 1
        out(&mut p, 2, 5);
        assert!(p.output(2));
        clock.advance(ticks_to_ns(10));
        assert!(p.output(2));
        p.set_gate(2, true);
        assert!(!p.output(2));
        clock.advance(ticks_to_ns(5));
        assert!(p.output(2));
        // Mode 4: a one-tick low strobe at terminal count.
        out(&mut p, CONTROL, 0x18); // ch0, lobyte, mode 4
        out(&mut p, 0, 3);
        assert!(p.output(0));
        clock.advance(ticks_to_ns(3));
        assert!(!p.output(0));
        assert_eq!(p.poll_irq0(), 0);
        clock.advance(ticks_to_ns(1));
        assert!(p.output(0));
        assert_eq!(p.poll_irq0(), 1);
        // Mode 5 retriggers on each gate edge.
        p.set_gate(2, false);
        out(&mut p, CONTROL, 0x9a); // ch2, lobyte, mode 5
        out(&mut p, 2, 4);
        p.set_gate(2, true);
        clock.advance(ticks_to_ns(2));
        p.set_gate(2, false);
        p.set_gate(2, true);
        clock.advance(ticks_to_ns(3));
        assert!(p.output(2));
        clock.advance(ticks_to_ns(1));
        assert!(!p.output(2));
    }

    #[test]
    fn linux_oneshot_mode4_rearms_on_each_count() {
        let (mut p, clock) = pit();
        // pit_set_oneshot, then pit_next_event(delta) writes lobyte, hibyte with no control word.
        out(&mut p, CONTROL, 0x38);
        assert_eq!(p.next_irq0_deadline_ns(), None);
        out(&mut p, 0, 0xe8);
        out(&mut p, 0, 0x03); // 1000 ticks
        assert_eq!(p.next_irq0_deadline_ns(), Some(1_000 + ticks_to_ns(1001)));
        clock.advance(ticks_to_ns(500));
        out(&mut p, 0, 100);
        out(&mut p, 0, 0);
        let d = p.next_irq0_deadline_ns().unwrap();
        assert_eq!(d, clock.now_ns() + ticks_to_ns(101));
        clock.set(d);
        assert_eq!(p.poll_irq0(), 1);
        assert_eq!(p.next_irq0_deadline_ns(), None);
        clock.advance(1_000_000_000);
        assert_eq!(p.poll_irq0(), 0);
    }

    #[test]
    fn mode2_gate_low_holds_and_rising_gate_reloads() {
        let (mut p, clock) = pit();
        p.set_gate(2, true);
        out(&mut p, CONTROL, 0xb4); // ch2, lohi, mode 2
        out(&mut p, 2, 100);
        out(&mut p, 2, 0);
        clock.advance(ticks_to_ns(30));
        p.set_gate(2, false);
        clock.advance(ticks_to_ns(30));
        assert_eq!(p.count(2), Some(70));
        assert!(p.output(2));
        p.set_gate(2, true);
        assert_eq!(p.count(2), Some(100));
        // Live lobyte/hibyte reads without a latch, as quick_pit_calibrate does.
        clock.advance(ticks_to_ns(1));
        assert_eq!(inb(&mut p, 2), 99);
        assert_eq!(inb(&mut p, 2), 0);
    }

    #[test]
    fn bcd_counting() {
        let (mut p, clock) = pit();
        out(&mut p, CONTROL, 0x35); // ch0, lohi, mode 2, BCD
        out(&mut p, 0, 0x00);
        out(&mut p, 0, 0x10); // 1000 decimal
        clock.advance(ticks_to_ns(1));
        assert_eq!(latched_ch0(&mut p), 0x0999);
        clock.advance(ticks_to_ns(999));
        assert_eq!(p.poll_irq0(), 1);
        assert_eq!(to_bcd(1234), 0x1234);
        assert_eq!(from_bcd(0x9999), 9999);
    }

    #[test]
    fn garbage_state_does_not_panic() {
        let (p, clock) = pit();
        let mut st = p.state();
        for c in st.channels.iter_mut() {
            *c = PitChannelState {
                mode: 0xff,
                access: 0xff,
                reload: 0xffff,
                bcd: true,
                triggered: true,
                running: true,
                edges_seen: u64::MAX,
                elapsed_base: u64::MAX,
                ..PitChannelState::default()
            };
        }
        let mut p = Pit::from_state(st, clock.clone());
        clock.set(u64::MAX);
        let _ = (
            p.poll_irq0(),
            p.next_irq0_deadline_ns(),
            p.output(0),
            p.count(1),
        );
        out(&mut p, CONTROL, 0xc2 | 0x0c);
        for _ in 0..4 {
            inb(&mut p, 0);
            inb(&mut p, 2);
        }
        out(&mut p, 1, 0);
        p.set_gate(2, false);
        p.set_gate(2, true);
    }

    #[test]
    fn state_round_trips() {
        let (mut p, clock) = pit();
        out(&mut p, CONTROL, 0x34);
        out(&mut p, 0, 0x34);
        let st = p.state();
        let mut q = Pit::from_state(st, clock.clone());
        out(&mut q, 0, 0x12);
        assert_eq!(latched_ch0(&mut q), 0x1234);
        assert_eq!(p.state(), st);
        q.reset();
        assert_eq!(q.state(), PitState::default());
        // Reads of the control port and writes to unprogrammed channels do nothing harmful.
        assert_eq!(inb(&mut q, CONTROL), 0xff);
        out(&mut q, 1, 7);
        assert_eq!(q.count(1), Some(0));
        assert_eq!(q.count(3), None);
        assert!(!q.output(9));
    }
}

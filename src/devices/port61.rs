//! System control port B at [`PORT61_BASE`] (0x61, one byte): the PC speaker gate and the
//! read-back of PIT channel 2, which Linux uses to calibrate the TSC against the PIT.
//!
//! Data enters as guest reads/writes of the byte; it leaves through an injected [`PitChannel2`]
//! (the gate of PIT channel 2 follows bit 0; bit 5 reads the channel's output). Bit 4 toggles on
//! every read, standing in for the DRAM refresh clock that old delay loops watch. Under KVM with
//! the in-kernel PIT, KVM serves this port itself and this device is not reached.

use std::sync::Arc;

use super::BusDevice;

/// I/O port of system control port B.
pub const PORT61_BASE: u16 = 0x61;
/// Ports it decodes.
pub const PORT61_LEN: u64 = 1;

/// Bit 0 (read/write): gate of PIT channel 2.
pub const P61_PIT2_GATE: u8 = 0b0000_0001;
/// Bit 1 (read/write): speaker data enable (speaker sound is not produced).
pub const P61_SPEAKER: u8 = 0b0000_0010;
/// Bits 2-3 (read/write): parity and I/O channel check disables, stored only.
pub const P61_CHECK_DISABLES: u8 = 0b0000_1100;
/// Bit 4 (read only): refresh request toggle.
pub const P61_REFRESH: u8 = 0b0001_0000;
/// Bit 5 (read only): output of PIT channel 2.
pub const P61_PIT2_OUT: u8 = 0b0010_0000;
/// Bits the guest can write.
const WRITABLE: u8 = P61_PIT2_GATE | P61_SPEAKER | P61_CHECK_DISABLES;

/// PIT channel 2 as port 0x61 sees it; the machine's PIT implements it.
pub trait PitChannel2: Send + Sync {
    /// Drive the channel's gate input.
    fn set_gate(&self, gate: bool);
    /// The channel's output now.
    fn output(&self) -> bool;
}

/// No PIT behind the port: the gate goes nowhere and the output reads high, so a guest that
/// polls bit 5 to calibrate stops at once (and finds the calibration implausible) instead of
/// spinning forever.
pub struct NoPit;

impl PitChannel2 for NoPit {
    fn set_gate(&self, _gate: bool) {}
    fn output(&self) -> bool {
        true
    }
}

/// Guest-visible state, for snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Port61State {
    /// The writable bits.
    pub value: u8,
    /// The refresh toggle's current phase.
    pub refresh: bool,
}

/// System control port B.
pub struct Port61 {
    state: Port61State,
    pit: Arc<dyn PitChannel2>,
}

impl Port61 {
    /// The port in its reset state (gate low), reading channel 2 from `pit`.
    pub fn new(pit: Arc<dyn PitChannel2>) -> Self {
        Self::from_state(Port61State::default(), pit)
    }

    /// The port resumed from `state`; the PIT gate is driven to match.
    pub fn from_state(state: Port61State, pit: Arc<dyn PitChannel2>) -> Self {
        pit.set_gate(state.value & P61_PIT2_GATE != 0);
        Self { state, pit }
    }

    /// Back to the power-on state (machine reset): gate low.
    pub fn reset(&mut self) {
        self.state = Port61State::default();
        self.pit.set_gate(false);
    }

    /// A copy of the state.
    pub fn state(&self) -> Port61State {
        self.state
    }
}

impl BusDevice for Port61 {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        self.state.refresh = !self.state.refresh;
        let mut v = self.state.value;
        if self.state.refresh {
            v |= P61_REFRESH;
        }
        if self.pit.output() {
            v |= P61_PIT2_OUT;
        }
        if let Some(b) = data.first_mut() {
            *b = v;
        }
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        self.state.value = v & WRITABLE;
        self.pit.set_gate(v & P61_PIT2_GATE != 0);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[derive(Default)]
    struct FakePit {
        gate: AtomicBool,
    }
    impl PitChannel2 for FakePit {
        fn set_gate(&self, gate: bool) {
            self.gate.store(gate, Ordering::SeqCst);
        }
        // The fake's output mirrors its gate, so the test sees bit 5 follow bit 0.
        fn output(&self) -> bool {
            self.gate.load(Ordering::SeqCst)
        }
    }

    fn rd(p: &mut Port61) -> u8 {
        let mut b = [0];
        p.read(0, &mut b);
        b[0]
    }

    #[test]
    fn gate_and_output_follow_the_pit() {
        let pit = Arc::new(FakePit::default());
        let mut p = Port61::new(pit.clone());
        assert_eq!(rd(&mut p) & P61_PIT2_OUT, 0);
        p.write(0, &[0xff]);
        assert!(pit.gate.load(Ordering::SeqCst));
        let v = rd(&mut p);
        assert_eq!(v & WRITABLE, WRITABLE);
        assert_eq!(v & P61_PIT2_OUT, P61_PIT2_OUT);
        p.write(0, &[P61_SPEAKER]);
        assert!(!pit.gate.load(Ordering::SeqCst));
        assert_eq!(p.state().value, P61_SPEAKER);
    }

    #[test]
    fn refresh_toggles_and_no_pit_reads_high() {
        let mut p = Port61::new(Arc::new(NoPit));
        let a = rd(&mut p);
        let b = rd(&mut p);
        assert_ne!(a & P61_REFRESH, b & P61_REFRESH);
        assert_eq!(a & P61_PIT2_OUT, P61_PIT2_OUT);
    }
}

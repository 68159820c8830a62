//! The ACPI fixed-hardware PM registers, at QEMU `pc`'s address [`PM_BASE`] (0x600,
//! [`PM_LEN`] = 0x10 ports). The ACPI tables point at them: PM1a_EVT_BLK = [`PM1A_EVT`],
//! PM1a_CNT_BLK = [`PM1A_CNT`], PM_TMR_BLK = [`PM_TMR`], SCI_INT = [`SCI_IRQ`], `_S5` SLP_TYP =
//! [`S5_SLP_TYP`]; the FADT reset register is PCI's 0xCF9 with value 0x06 (see
//! [`super::pci_host`]).
//!
//! Layout (offsets from 0x600): PM1_STS at 0 and PM1_EN at 2 (16 bits each), PM1_CNT at 4
//! (16 bits), PM_TMR at 8 (32 bits, 24 significant), 0xC..0x10 unused (reads all ones). Any width
//! at any offset works byte by byte, as the registers are byte-addressable.
//!
//! Data enters as guest accesses, from [`AcpiPm::press_power_button`] and from an injected
//! monotonic clock (the PM timer counts at 3.579545 MHz from it); it leaves as the level of the
//! injected SCI [`IrqLine`] (high while an enabled status bit is set) and as
//! [`SystemEvent::PowerOff`] when the guest writes SLP_EN with SLP_TYP = [`S5_SLP_TYP`].
//!
//! The machine has no SMI_CMD port and starts in ACPI mode, so SCI_EN always reads 1. Not
//! modelled: the timer overflow status/interrupt (TMR_STS never sets), sleep states other than S5
//! (other SLP_TYP values are ignored), GPE blocks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{BusDevice, IrqLine, SystemEvent, SystemEvents};

/// First I/O port of the block.
pub const PM_BASE: u16 = 0x600;
/// Ports decoded.
pub const PM_LEN: u64 = 0x10;
/// PM1a event block port (PM1_STS, then PM1_EN): FADT PM1a_EVT_BLK, length 4.
pub const PM1A_EVT: u16 = PM_BASE;
/// PM1a control block port: FADT PM1a_CNT_BLK, length 2.
pub const PM1A_CNT: u16 = PM_BASE + 4;
/// PM timer port: FADT PM_TMR_BLK, length 4.
pub const PM_TMR: u16 = PM_BASE + 8;
/// The SCI's ISA IRQ (FADT SCI_INT), as QEMU's. The line is a level: the MADT should carry an
/// interrupt source override making IRQ 9 level-triggered, active high.
pub const SCI_IRQ: u32 = 9;
/// SLP_TYP of S5 (soft off) in our DSDT's `_S5` package.
pub const S5_SLP_TYP: u16 = 0;
/// FADT RESET_REG: the PIIX reset control register in system I/O space (one byte).
pub const RESET_REG_PORT: u16 = super::pci_host::RESET_CONTROL_PORT;
/// FADT RESET_VALUE.
pub const RESET_VALUE: u8 = super::pci_host::RESET_VALUE;
/// FADT PM1_EVT_LEN.
pub const PM1_EVT_LEN: u8 = 4;
/// FADT PM1_CNT_LEN.
pub const PM1_CNT_LEN: u8 = 2;
/// FADT PM_TMR_LEN.
pub const PM_TMR_LEN: u8 = 4;
/// The PM timer's frequency in Hz.
pub const PM_TIMER_HZ: u64 = 3_579_545;

/// Offset of PM1_STS.
pub const PM1_STS: u64 = 0;
/// Offset of PM1_EN.
pub const PM1_EN: u64 = 2;
/// Offset of PM1_CNT.
pub const PM1_CNT: u64 = 4;
/// Offset of the PM timer.
pub const PM_TMR_OFF: u64 = 8;

/// PM1_STS/PM1_EN: PM timer carry (never set here).
pub const TMR_STS: u16 = 1 << 0;
/// PM1_STS/PM1_EN: power button pressed.
pub const PWRBTN_STS: u16 = 1 << 8;
/// PM1_STS: the system woke (write-1-to-clear like the others).
pub const WAK_STS: u16 = 1 << 15;
/// PM1_EN bits the guest can set.
const PM1_EN_MASK: u16 = TMR_STS | PWRBTN_STS;
/// PM1_CNT: SCI_EN, reads 1 (we are always in ACPI mode).
pub const SCI_EN: u16 = 1 << 0;
/// PM1_CNT: shift of the 3-bit SLP_TYP field.
pub const SLP_TYP_SHIFT: u16 = 10;
/// PM1_CNT: SLP_TYP mask.
pub const SLP_TYP_MASK: u16 = 0b111 << SLP_TYP_SHIFT;
/// PM1_CNT: SLP_EN, write-only, enters the sleep state in SLP_TYP.
pub const SLP_EN: u16 = 1 << 13;
/// PM1_CNT bits that are stored (SLP_TYP and the reserved read/write bits, not SLP_EN).
const PM1_CNT_STORED: u16 = !(SLP_EN | SCI_EN);

/// A monotonic clock: time since any fixed origin.
pub type MonotonicClock = Box<dyn Fn() -> Duration + Send>;

/// Guest-visible state, for snapshots (the timer restarts from the clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AcpiPmState {
    /// PM1_STS.
    pub pm1_sts: u16,
    /// PM1_EN.
    pub pm1_en: u16,
    /// PM1_CNT's stored bits.
    pub pm1_cnt: u16,
}

/// The PM1a event/control blocks and the PM timer.
pub struct AcpiPm {
    state: AcpiPmState,
    sci: Arc<dyn IrqLine>,
    events: Arc<dyn SystemEvents>,
    clock: MonotonicClock,
    sci_level: bool,
}

impl AcpiPm {
    /// The block after reset, raising the SCI on `sci`, asking `events` for power-off; the timer
    /// counts from the host's monotonic clock.
    pub fn new(sci: Arc<dyn IrqLine>, events: Arc<dyn SystemEvents>) -> Self {
        Self::from_state(AcpiPmState::default(), sci, events)
    }

    /// The block resumed from `state`.
    pub fn from_state(
        state: AcpiPmState,
        sci: Arc<dyn IrqLine>,
        events: Arc<dyn SystemEvents>,
    ) -> Self {
        let start = Instant::now();
        let mut pm = Self {
            state,
            sci,
            events,
            clock: Box::new(move || start.elapsed()),
            sci_level: false,
        };
        pm.sci.set_level(false);
        pm.update_sci();
        pm
    }

    /// The same block with its timer on `clock` (tests, deterministic runs).
    pub fn with_clock(mut self, clock: MonotonicClock) -> Self {
        self.clock = clock;
        self
    }

    /// Back to the power-on state (machine reset); the timer keeps running, as it does on a PC.
    pub fn reset(&mut self) {
        self.state = AcpiPmState::default();
        self.update_sci();
    }

    /// A copy of the state.
    pub fn state(&self) -> AcpiPmState {
        self.state
    }

    /// The power button was pressed (monitor `system_powerdown`, a host signal): set PWRBTN_STS
    /// and raise the SCI if the guest enabled it; an ACPI guest then shuts down cleanly.
    pub fn press_power_button(&mut self) {
        self.state.pm1_sts |= PWRBTN_STS;
        self.update_sci();
    }

    /// The 24-bit PM timer now.
    pub fn timer(&self) -> u32 {
        let nanos = (self.clock)().as_nanos();
        let ticks = nanos * u128::from(PM_TIMER_HZ) / 1_000_000_000;
        (ticks & 0xff_ffff) as u32
    }

    fn update_sci(&mut self) {
        let level = self.state.pm1_sts & self.state.pm1_en & PM1_EN_MASK != 0;
        if level != self.sci_level {
            self.sci_level = level;
            self.sci.set_level(level);
        }
    }

    fn read_byte(&self, offset: u64, timer: u32) -> u8 {
        let pick = |v: u16, hi: bool| if hi { (v >> 8) as u8 } else { v as u8 };
        match offset {
            0 | 1 => pick(self.state.pm1_sts, offset == 1),
            2 | 3 => pick(self.state.pm1_en, offset == 3),
            4 | 5 => pick(self.state.pm1_cnt | SCI_EN, offset == 5),
            8..=11 => timer.to_le_bytes()[(offset - 8) as usize],
            _ => 0xff,
        }
    }

    fn write_byte(&mut self, offset: u64, v: u8) {
        let (shift, mask) = if offset & 1 == 1 {
            (8, 0xff00u16)
        } else {
            (0, 0x00ffu16)
        };
        let v = u16::from(v) << shift;
        match offset {
            0 | 1 => self.state.pm1_sts &= !v,
            2 | 3 => self.state.pm1_en = (self.state.pm1_en & !mask) | (v & PM1_EN_MASK),
            4 | 5 => {
                let cnt = &mut self.state.pm1_cnt;
                *cnt = (*cnt & !mask) | (v & mask & PM1_CNT_STORED);
                if v & SLP_EN != 0 {
                    let typ = (self.state.pm1_cnt & SLP_TYP_MASK) >> SLP_TYP_SHIFT;
                    if typ == S5_SLP_TYP {
                        self.events.request(SystemEvent::PowerOff);
                    } else {
                        log::info!("acpi: sleep type {typ} requested, not supported");
                    }
                }
            }
            // The timer is read-only; 0xC..0x10 is unused.
            _ => {}
        }
    }
}

impl BusDevice for AcpiPm {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        // One timer sample per access, so a 32-bit read is consistent.
        let timer = self.timer();
        for (i, d) in data.iter_mut().enumerate() {
            *d = self.read_byte(offset + i as u64, timer);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        for (i, &v) in data.iter().enumerate() {
            self.write_byte(offset + i as u64, v);
        }
        self.update_sci();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use super::*;
    use crate::devices::i8042::tests::Events;

    #[derive(Default)]
    struct Line(AtomicBool);
    impl IrqLine for Line {
        fn set_level(&self, level: bool) {
            self.0.store(level, Ordering::SeqCst);
        }
    }

    fn pm() -> (AcpiPm, Arc<Line>, Arc<Events>) {
        let (line, ev) = (Arc::new(Line::default()), Arc::new(Events::default()));
        (AcpiPm::new(line.clone(), ev.clone()), line, ev)
    }

    fn rd16(p: &mut AcpiPm, off: u64) -> u16 {
        let mut b = [0u8; 2];
        p.read(off, &mut b);
        u16::from_le_bytes(b)
    }

    #[test]
    fn sci_en_reads_one_and_s5_powers_off() {
        let (mut p, _, ev) = pm();
        assert_eq!(rd16(&mut p, PM1_CNT) & SCI_EN, SCI_EN);
        p.write(PM1_CNT, &(5u16 << SLP_TYP_SHIFT).to_le_bytes());
        assert_eq!(rd16(&mut p, PM1_CNT), 5 << SLP_TYP_SHIFT | SCI_EN);
        p.write(PM1_CNT, &(5u16 << SLP_TYP_SHIFT | SLP_EN).to_le_bytes());
        assert!(ev.0.lock().unwrap().is_empty(), "S-state 5 is not our S5");
        p.write(
            PM1_CNT,
            &(S5_SLP_TYP << SLP_TYP_SHIFT | SLP_EN).to_le_bytes(),
        );
        assert_eq!(*ev.0.lock().unwrap(), [SystemEvent::PowerOff]);
        assert_eq!(rd16(&mut p, PM1_CNT) & SLP_EN, 0);
    }

    #[test]
    fn power_button_raises_sci_when_enabled() {
        let (mut p, line, _) = pm();
        p.press_power_button();
        assert_eq!(rd16(&mut p, PM1_STS), PWRBTN_STS);
        assert!(!line.0.load(Ordering::SeqCst));
        p.write(PM1_EN, &PWRBTN_STS.to_le_bytes());
        assert!(line.0.load(Ordering::SeqCst));
        // Writing 0 clears nothing; writing 1 to the bit clears it.
        p.write(PM1_STS, &0u16.to_le_bytes());
        assert!(line.0.load(Ordering::SeqCst));
        p.write(PM1_STS + 1, &[0x01]);
        assert_eq!(rd16(&mut p, PM1_STS), 0);
        assert!(!line.0.load(Ordering::SeqCst));
        assert_eq!(p.state().pm1_en, PWRBTN_STS);
    }

    #[test]
    fn timer_counts_at_3_58_mhz_and_wraps_at_24_bits() {
        let now = Arc::new(AtomicU64::new(0));
        let n = now.clone();
        let (p, _, _) = pm();
        let mut p = p.with_clock(Box::new(move || {
            Duration::from_nanos(n.load(Ordering::SeqCst))
        }));
        let mut b = [0u8; 4];
        p.read(PM_TMR_OFF, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0);
        now.store(1_000_000_000, Ordering::SeqCst);
        p.read(PM_TMR_OFF, &mut b);
        assert_eq!(u32::from_le_bytes(b), (PM_TIMER_HZ & 0xff_ffff) as u32);
        now.store(1_000, Ordering::SeqCst);
        p.read(PM_TMR_OFF, &mut b);
        assert_eq!(u32::from_le_bytes(b), 3);
        p.read(0x0c, &mut b);
        assert_eq!(b, [0xff; 4]);
    }
}

//! A local APIC (xAPIC mode), one per vCPU of the software CPU, its registers at
//! [`LAPIC_BASE`] (0xFEE00000) as every CPU sees its own.
//!
//! Data enters as the owning CPU's MMIO accesses ([`Lapic::read`], [`Lapic::write`]), as
//! interrupt messages from the APIC bus ([`Lapic::accept_fixed`], [`Lapic::accept_signal`]) and as
//! time from the machine's [`Clock`] (the timer, see [`super::lapic_timer`]). It leaves three
//! ways: the CPU's interrupt-acknowledge cycle ([`Lapic::has_interrupt`], [`Lapic::acknowledge`])
//! and its non-vectored signals ([`Lapic::take_signal`]: INIT, STARTUP, NMI); and what a register
//! write asks of the rest of the machine ([`LapicOutput`]: an IPI to route, or an EOI of a
//! level-triggered vector for the IOAPIC). Writes *return* those instead of calling out, so the
//! machine performs them after releasing this APIC's lock: an IPI between two CPUs cannot then
//! deadlock on their two locks.
//!
//! Interrupts are prioritised as on hardware: the highest vector in IRR is delivered when its
//! priority class is above the processor priority (PPR = the higher of TPR and the class of the
//! highest in-service vector); acknowledging moves it from IRR to ISR; EOI clears the highest ISR
//! bit. LINT0 in ExtINT mode is the 8259's INTR (the machine asks [`Lapic::accepts_extint`]): as
//! QEMU does, the boot CPU's LINT0 resets to unmasked ExtINT (virtual wire mode, what firmware
//! would program), so PIC interrupts reach it before any guest touches the APIC. The APIC
//! starts software-disabled (SVR bit 8 clear): no LVT can be unmasked and no APIC interrupt is
//! delivered until the guest enables it; the PIC's path through LINT0 stays open.
//!
//! Not modelled: x2APIC (not advertised), the TSC-deadline timer mode (not advertised), moving
//! or hardware-disabling the APIC through IA32_APIC_BASE, the thermal/performance/CMCI sources
//! (their LVTs are plain registers), SMI, and the error conditions of ESR except illegal
//! vectors.

use std::sync::Arc;

use super::clock::Clock;
use super::lapic_timer::{ApicTimer, ApicTimerState, TimerMode};

/// Physical address of every CPU's local APIC page.
pub const LAPIC_BASE: u64 = 0xfee0_0000;
/// Bytes the local APIC decodes.
pub const LAPIC_LEN: u64 = 0x1000;

/// Register offsets.
pub mod reg {
    /// Local APIC ID (bits 31:24).
    pub const ID: u64 = 0x020;
    /// Version (read only).
    pub const VERSION: u64 = 0x030;
    /// Task priority.
    pub const TPR: u64 = 0x080;
    /// Arbitration priority (read only).
    pub const APR: u64 = 0x090;
    /// Processor priority (read only).
    pub const PPR: u64 = 0x0a0;
    /// End of interrupt (write only).
    pub const EOI: u64 = 0x0b0;
    /// Logical destination.
    pub const LDR: u64 = 0x0d0;
    /// Destination format.
    pub const DFR: u64 = 0x0e0;
    /// Spurious-interrupt vector.
    pub const SVR: u64 = 0x0f0;
    /// In-service register, 8 x 32 bits at 0x10 strides.
    pub const ISR: u64 = 0x100;
    /// Trigger-mode register.
    pub const TMR: u64 = 0x180;
    /// Interrupt request register.
    pub const IRR: u64 = 0x200;
    /// Error status.
    pub const ESR: u64 = 0x280;
    /// Interrupt command, low half (writing it sends the IPI).
    pub const ICR_LO: u64 = 0x300;
    /// Interrupt command, high half (destination in bits 31:24).
    pub const ICR_HI: u64 = 0x310;
    /// LVT timer; the other LVTs follow at 0x10 strides: thermal, perf, LINT0, LINT1, error.
    pub const LVT_TIMER: u64 = 0x320;
    /// LVT LINT0.
    pub const LVT_LINT0: u64 = 0x350;
    /// LVT LINT1.
    pub const LVT_LINT1: u64 = 0x360;
    /// LVT error.
    pub const LVT_ERROR: u64 = 0x370;
    /// Timer initial count.
    pub const TIMER_INITIAL: u64 = 0x380;
    /// Timer current count (read only).
    pub const TIMER_CURRENT: u64 = 0x390;
    /// Timer divide configuration.
    pub const TIMER_DIVIDE: u64 = 0x3e0;
}

/// Version register: version 0x14 (integrated xAPIC), 6 LVT entries (max index 5).
pub const VERSION: u32 = 0x14 | (5 << 16);
/// SVR: APIC software enable.
pub const SVR_ENABLE: u32 = 1 << 8;
/// LVT and ICR: delivery status (send pending); always idle here.
pub const DELIVERY_PENDING: u32 = 1 << 12;
/// LVT: masked.
pub const LVT_MASKED: u32 = 1 << 16;
/// LVT timer: periodic mode (bits 18:17 = 01).
pub const LVT_TIMER_PERIODIC: u32 = 1 << 17;
/// LVT LINT0/1: level-triggered.
pub const LVT_LEVEL: u32 = 1 << 15;
/// ESR: a message with an illegal vector (0-15) was received.
pub const ESR_RECEIVE_ILLEGAL: u32 = 1 << 6;

/// Delivery modes (ICR bits 10:8, LVT bits 10:8).
pub mod mode {
    /// Fixed vector.
    pub const FIXED: u8 = 0;
    /// Lowest priority among the destinations.
    pub const LOWEST: u8 = 1;
    /// System management interrupt (ignored).
    pub const SMI: u8 = 2;
    /// Non-maskable interrupt.
    pub const NMI: u8 = 4;
    /// INIT (or INIT level de-assert).
    pub const INIT: u8 = 5;
    /// STARTUP (SIPI).
    pub const STARTUP: u8 = 6;
    /// External interrupt: the vector comes from the 8259.
    pub const EXTINT: u8 = 7;
}

/// Index of each LVT entry in [`LapicState::lvt`].
const LVT_TIMER: usize = 0;
const LVT_LINT0: usize = 3;
const LVT_ERROR: usize = 5;
const LVT_COUNT: usize = 6;
/// Bits each LVT keeps (vector, delivery mode, polarity, trigger, mask; timer mode for the timer).
const LVT_WRITABLE: [u32; LVT_COUNT] = [
    0x0003_00ff, // timer: vector, mask, one-shot/periodic (TSC-deadline not offered)
    0x0001_07ff, // thermal
    0x0001_07ff, // performance counters
    0x0001_a7ff, // LINT0
    0x0001_a7ff, // LINT1
    0x0001_00ff, // error
];

/// How an IPI picks its destinations (ICR bits 19:18).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shorthand {
    /// The destination field says.
    None,
    /// The sender only.
    SelfOnly,
    /// Every APIC, the sender too.
    All,
    /// Every APIC but the sender.
    AllButSelf,
}

/// An interrupt message a write to ICR asks the machine to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipi {
    /// APIC ID of the sender.
    pub source: u8,
    /// Vector (fixed, lowest priority) or start page (STARTUP).
    pub vector: u8,
    /// Delivery mode ([`mode`]).
    pub mode: u8,
    /// The destination field is a logical set (true) or an APIC ID.
    pub logical: bool,
    /// Destination field (ICR bits 63:56).
    pub dest: u8,
    /// Level bit: false only for an INIT level de-assert.
    pub assert: bool,
    /// Trigger mode: level.
    pub level: bool,
    /// Destination shorthand.
    pub shorthand: Shorthand,
}

/// What a register write asks of the machine, performed after the APIC's lock is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LapicOutput {
    /// Route this IPI over the APIC bus.
    Ipi(Ipi),
    /// A level-triggered vector was EOIed: tell the IOAPIC(s).
    LevelEoi(u8),
}

/// A non-vectored message for the CPU itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LapicSignal {
    /// INIT: the CPU resets and waits for STARTUP (an AP) .
    Init,
    /// STARTUP with this vector: the AP starts in real mode at `vector * 0x1000`.
    Startup(u8),
    /// Non-maskable interrupt.
    Nmi,
}

/// The APIC's registers and latched messages, for snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LapicState {
    /// APIC ID.
    pub id: u8,
    /// Task priority.
    pub tpr: u8,
    /// Logical destination register.
    pub ldr: u32,
    /// Destination format register.
    pub dfr: u32,
    /// Spurious-interrupt vector register.
    pub svr: u32,
    /// In service, one bit per vector.
    pub isr: [u32; 8],
    /// Trigger mode of each accepted vector (1 = level).
    pub tmr: [u32; 8],
    /// Requested, one bit per vector.
    pub irr: [u32; 8],
    /// ESR as the guest reads it (latched by the last ESR write).
    pub esr: u32,
    /// Errors since the last ESR write.
    pub esr_pending: u32,
    /// ICR low and high halves.
    pub icr: [u32; 2],
    /// LVT timer, thermal, perf, LINT0, LINT1, error.
    pub lvt: [u32; LVT_COUNT],
    /// The timer.
    pub timer: ApicTimerState,
    /// INIT received, not yet taken by the CPU.
    pub init_pending: bool,
    /// STARTUP vector received, not yet taken.
    pub sipi_pending: Option<u8>,
    /// NMI received, not yet taken.
    pub nmi_pending: bool,
}

impl LapicState {
    /// The state after RESET for APIC `id`; the boot CPU's LINT0 is ExtINT (virtual wire).
    pub fn reset(id: u8, bsp: bool) -> Self {
        let mut lvt = [LVT_MASKED; LVT_COUNT];
        if bsp {
            lvt[LVT_LINT0] = u32::from(mode::EXTINT) << 8;
        }
        Self {
            id,
            tpr: 0,
            ldr: 0,
            dfr: 0xffff_ffff,
            svr: 0xff,
            isr: [0; 8],
            tmr: [0; 8],
            irr: [0; 8],
            esr: 0,
            esr_pending: 0,
            icr: [0; 2],
            lvt,
            timer: ApicTimerState::default(),
            init_pending: false,
            sipi_pending: None,
            nmi_pending: false,
        }
    }
}

/// One local APIC.
pub struct Lapic {
    state: LapicState,
    timer: ApicTimer,
    clock: Arc<dyn Clock>,
}

fn highest(bits: &[u32; 8]) -> Option<u8> {
    (0..8)
        .rev()
        .find(|&w| bits[w] != 0)
        .map(|w| (w * 32 + 31 - bits[w].leading_zeros() as usize) as u8)
}

fn set_bit(bits: &mut [u32; 8], v: u8, on: bool) {
    let (w, b) = (usize::from(v / 32), v % 32);
    if on {
        bits[w] |= 1 << b;
    } else {
        bits[w] &= !(1 << b);
    }
}

fn bit(bits: &[u32; 8], v: u8) -> bool {
    bits[usize::from(v / 32)] & (1 << (v % 32)) != 0
}

impl Lapic {
    /// A local APIC after RESET with ID `id` (the boot CPU's when `bsp`), timed by `clock`.
    pub fn new(id: u8, bsp: bool, clock: Arc<dyn Clock>) -> Self {
        Self::from_state(LapicState::reset(id, bsp), clock)
    }

    /// A local APIC resumed from `state` against `clock`.
    pub fn from_state(state: LapicState, clock: Arc<dyn Clock>) -> Self {
        Self {
            state,
            timer: ApicTimer { state: state.timer },
            clock,
        }
    }

    /// A copy of the state.
    pub fn state(&self) -> LapicState {
        LapicState {
            timer: self.timer.state,
            ..self.state
        }
    }

    /// The APIC ID.
    pub fn id(&self) -> u8 {
        self.state.id
    }

    /// The INIT reset of an application processor: everything but the ID back to RESET values
    /// (pending INIT/STARTUP messages stay for the CPU to take).
    pub fn init_reset(&mut self) {
        let keep = self.state;
        self.state = LapicState {
            init_pending: keep.init_pending,
            sipi_pending: keep.sipi_pending,
            nmi_pending: keep.nmi_pending,
            ..LapicState::reset(keep.id, false)
        };
        self.timer = ApicTimer::default();
    }

    fn software_enabled(&self) -> bool {
        self.state.svr & SVR_ENABLE != 0
    }

    /// Processor priority: the higher of TPR and the class of the highest in-service vector.
    pub fn ppr(&self) -> u8 {
        let isrv = highest(&self.state.isr).unwrap_or(0);
        if self.state.tpr >> 4 >= isrv >> 4 {
            self.state.tpr
        } else {
            isrv & 0xf0
        }
    }

    /// Queue fixed interrupt `vector` (edge, or level when `level`) in IRR.
    pub fn accept_fixed(&mut self, vector: u8, level: bool) {
        if vector < 16 {
            self.state.esr_pending |= ESR_RECEIVE_ILLEGAL;
            // The error interrupt itself, unless its own vector is illegal too (no loop).
            let lvt = self.state.lvt[LVT_ERROR];
            if lvt & LVT_MASKED == 0 && lvt as u8 >= 16 {
                set_bit(&mut self.state.irr, lvt as u8, true);
                set_bit(&mut self.state.tmr, lvt as u8, false);
            }
            return;
        }
        set_bit(&mut self.state.irr, vector, true);
        set_bit(&mut self.state.tmr, vector, level);
    }

    /// Latch a non-vectored message for the CPU.
    pub fn accept_signal(&mut self, signal: LapicSignal) {
        match signal {
            LapicSignal::Init => {
                self.state.init_pending = true;
                self.state.sipi_pending = None;
            }
            LapicSignal::Startup(v) => self.state.sipi_pending = Some(v),
            LapicSignal::Nmi => self.state.nmi_pending = true,
        }
    }

    /// The next signal for the CPU: INIT before STARTUP before NMI.
    pub fn take_signal(&mut self) -> Option<LapicSignal> {
        if std::mem::take(&mut self.state.init_pending) {
            return Some(LapicSignal::Init);
        }
        if let Some(v) = self.state.sipi_pending.take() {
            return Some(LapicSignal::Startup(v));
        }
        std::mem::take(&mut self.state.nmi_pending).then_some(LapicSignal::Nmi)
    }

    /// Whether a signal waits for the CPU.
    pub fn signal_pending(&self) -> bool {
        self.state.init_pending || self.state.sipi_pending.is_some() || self.state.nmi_pending
    }

    /// Raise the interrupt the timer's LVT entry describes, if it is unmasked.
    fn timer_fire(&mut self) {
        let lvt = self.state.lvt[LVT_TIMER];
        if lvt & LVT_MASKED == 0 {
            self.accept_fixed(lvt as u8, false);
        }
    }

    /// Account for the timer up to now; true if it expired (whether or not its LVT is masked).
    pub fn poll_timer(&mut self) -> bool {
        let now = self.clock.now_ns();
        if self.timer.poll(now) > 0 {
            self.timer_fire();
            true
        } else {
            false
        }
    }

    /// When the timer next expires (clock nanoseconds), if it counts.
    pub fn timer_deadline_ns(&self) -> Option<u64> {
        self.timer.deadline_ns()
    }

    /// Whether a vector in IRR beats the processor priority.
    pub fn has_interrupt(&self) -> bool {
        if !self.software_enabled() {
            return false;
        }
        match highest(&self.state.irr) {
            Some(v) => v >> 4 > self.ppr() >> 4,
            None => false,
        }
    }

    /// The INTA cycle for an APIC interrupt: the vector moves from IRR to ISR. `None` when none
    /// is deliverable (the CPU then gets [`Lapic::spurious_vector`]).
    pub fn acknowledge(&mut self) -> Option<u8> {
        if !self.has_interrupt() {
            return None;
        }
        let v = highest(&self.state.irr)?;
        set_bit(&mut self.state.irr, v, false);
        set_bit(&mut self.state.isr, v, true);
        Some(v)
    }

    /// The spurious-interrupt vector (SVR bits 7:0).
    pub fn spurious_vector(&self) -> u8 {
        self.state.svr as u8
    }

    /// Whether the 8259's INTR reaches this CPU: LINT0 unmasked in ExtINT mode.
    pub fn accepts_extint(&self) -> bool {
        let l = self.state.lvt[LVT_LINT0];
        l & LVT_MASKED == 0 && (l >> 8) & 7 == u32::from(mode::EXTINT)
    }

    /// Whether this APIC is addressed by physical destination `dest` (0xFF = all).
    pub fn matches_physical(&self, dest: u8) -> bool {
        dest == 0xff || dest == self.state.id
    }

    /// Whether this APIC is addressed by logical destination `dest`, in the flat or cluster
    /// model its DFR selects.
    pub fn matches_logical(&self, dest: u8) -> bool {
        if dest == 0xff {
            return true;
        }
        let ldr = (self.state.ldr >> 24) as u8;
        if self.state.dfr >> 28 == 0xf {
            ldr & dest != 0
        } else {
            ldr >> 4 == dest >> 4 && ldr & dest & 0xf != 0
        }
    }

    fn read_u32(&mut self, r: u64) -> u32 {
        let s = &self.state;
        let idx = |base: u64| ((r - base) >> 4) as usize;
        match r {
            reg::ID => u32::from(s.id) << 24,
            reg::VERSION => VERSION,
            reg::TPR => u32::from(s.tpr),
            reg::APR => 0,
            reg::PPR => u32::from(self.ppr()),
            reg::LDR => s.ldr,
            reg::DFR => s.dfr | 0x0fff_ffff,
            reg::SVR => s.svr,
            0x100..=0x170 => s.isr[idx(reg::ISR)],
            0x180..=0x1f0 => s.tmr[idx(reg::TMR)],
            0x200..=0x270 => s.irr[idx(reg::IRR)],
            reg::ESR => s.esr,
            reg::ICR_LO => s.icr[0] & !DELIVERY_PENDING,
            reg::ICR_HI => s.icr[1],
            0x320..=0x370 => s.lvt[idx(reg::LVT_TIMER)],
            reg::TIMER_INITIAL => self.timer.state.initial,
            reg::TIMER_CURRENT => {
                let now = self.clock.now_ns();
                self.timer.current(now)
            }
            reg::TIMER_DIVIDE => self.timer.state.divide_config,
            _ => 0,
        }
    }

    fn write_u32(&mut self, r: u64, v: u32) -> Option<LapicOutput> {
        let now = self.clock.now_ns();
        match r {
            reg::ID => self.state.id = (v >> 24) as u8,
            reg::TPR => self.state.tpr = v as u8,
            reg::EOI => return self.eoi(),
            reg::LDR => self.state.ldr = v & 0xff00_0000,
            reg::DFR => self.state.dfr = v | 0x0fff_ffff,
            reg::SVR => {
                // Bits 7:0 vector, 8 enable, 9 focus check, 12 EOI-broadcast suppression (not
                // offered: version bit 24 clear, so it stays 0).
                self.state.svr = v & 0x3ff;
                if !self.software_enabled() {
                    for l in &mut self.state.lvt {
                        *l |= LVT_MASKED;
                    }
                }
            }
            reg::ESR => {
                self.state.esr = std::mem::take(&mut self.state.esr_pending);
            }
            reg::ICR_LO => {
                self.state.icr[0] = v & 0x000c_dfff;
                return Some(LapicOutput::Ipi(self.ipi()));
            }
            reg::ICR_HI => self.state.icr[1] = v & 0xff00_0000,
            0x320..=0x370 => {
                let i = ((r - reg::LVT_TIMER) >> 4) as usize;
                let mut val = v & LVT_WRITABLE[i];
                if !self.software_enabled() {
                    val |= LVT_MASKED;
                }
                self.state.lvt[i] = val;
                if i == LVT_TIMER {
                    let m = if val & LVT_TIMER_PERIODIC != 0 {
                        TimerMode::Periodic
                    } else {
                        TimerMode::OneShot
                    };
                    self.timer.set_mode(m, now);
                }
            }
            reg::TIMER_INITIAL => self.timer.set_initial(v, now),
            reg::TIMER_DIVIDE => self.timer.set_divide(v, now),
            _ => {}
        }
        None
    }

    /// EOI: retire the highest in-service vector; a level-triggered one goes on to the IOAPIC.
    fn eoi(&mut self) -> Option<LapicOutput> {
        let v = highest(&self.state.isr)?;
        set_bit(&mut self.state.isr, v, false);
        bit(&self.state.tmr, v).then_some(LapicOutput::LevelEoi(v))
    }

    fn ipi(&self) -> Ipi {
        let [lo, hi] = self.state.icr;
        Ipi {
            source: self.state.id,
            vector: lo as u8,
            mode: ((lo >> 8) & 7) as u8,
            logical: lo & (1 << 11) != 0,
            dest: (hi >> 24) as u8,
            assert: lo & (1 << 14) != 0,
            level: lo & (1 << 15) != 0,
            shorthand: match (lo >> 18) & 3 {
                0 => Shorthand::None,
                1 => Shorthand::SelfOnly,
                2 => Shorthand::All,
                _ => Shorthand::AllButSelf,
            },
        }
    }

    /// A guest read of `data.len()` bytes at `offset` in the APIC page. Registers are 32 bits
    /// at 16-byte strides; narrower reads see part of one, reads of the gaps see zeros.
    pub fn read(&mut self, offset: u64, data: &mut [u8]) {
        let within = (offset & 0xf) as usize;
        let value = self.read_u32(offset & 0xff0).to_le_bytes();
        for (k, b) in data.iter_mut().enumerate() {
            *b = value.get(within + k).copied().unwrap_or(0);
        }
    }

    /// A guest write at `offset`. Only aligned 32-bit writes reach a register (the SDM makes
    /// others undefined); what the machine must do about it comes back.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Option<LapicOutput> {
        let bytes: [u8; 4] = data.try_into().ok()?;
        if offset & 0xf != 0 {
            return None;
        }
        self.write_u32(offset & 0xff0, u32::from_le_bytes(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::clock::ManualClock;

    fn apic(bsp: bool) -> (Lapic, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(0));
        (
            Lapic::new(if bsp { 0 } else { 1 }, bsp, clock.clone()),
            clock,
        )
    }

    fn rd(a: &mut Lapic, r: u64) -> u32 {
        let mut b = [0u8; 4];
        a.read(r, &mut b);
        u32::from_le_bytes(b)
    }

    fn wr(a: &mut Lapic, r: u64, v: u32) -> Option<LapicOutput> {
        a.write(r, &v.to_le_bytes())
    }

    #[test]
    fn reset_values_and_virtual_wire() {
        let (mut a, _) = apic(true);
        assert_eq!(rd(&mut a, reg::ID), 0);
        assert_eq!(rd(&mut a, reg::VERSION), 0x0005_0014);
        assert_eq!(rd(&mut a, reg::SVR), 0xff);
        assert_eq!(rd(&mut a, reg::DFR), 0xffff_ffff);
        assert_eq!(rd(&mut a, reg::LVT_LINT0), 0x700);
        assert!(a.accepts_extint());
        let (mut ap, _) = apic(false);
        assert_eq!(rd(&mut ap, reg::ID), 1 << 24);
        assert_eq!(rd(&mut ap, reg::LVT_LINT0), LVT_MASKED);
        assert!(!ap.accepts_extint());
        // Software-disabled: LVTs cannot be unmasked.
        wr(&mut ap, reg::LVT_LINT0, 0x700);
        assert_eq!(rd(&mut ap, reg::LVT_LINT0), 0x700 | LVT_MASKED);
        // Narrow reads see bytes of the register.
        let mut b = [0u8; 1];
        a.read(reg::VERSION + 2, &mut b);
        assert_eq!(b[0], 5);
    }

    #[test]
    fn priority_acknowledge_and_eoi() {
        let (mut a, _) = apic(true);
        a.accept_fixed(0x31, false);
        assert!(
            !a.has_interrupt(),
            "software-disabled APIC delivers nothing"
        );
        wr(&mut a, reg::SVR, 0x1ff);
        assert!(a.has_interrupt());
        a.accept_fixed(0x45, false);
        assert_eq!(a.acknowledge(), Some(0x45));
        assert_eq!(rd(&mut a, reg::PPR), 0x40);
        assert!(!a.has_interrupt(), "0x31 is below the in-service class");
        assert_eq!(a.acknowledge(), None);
        assert_eq!(a.spurious_vector(), 0xff);
        assert_eq!(rd(&mut a, reg::ISR + 0x20), 1 << 5);
        assert_eq!(wr(&mut a, reg::EOI, 0), None);
        assert!(a.has_interrupt());
        wr(&mut a, reg::TPR, 0x30);
        assert!(!a.has_interrupt(), "TPR class 3 blocks vector 0x31");
        wr(&mut a, reg::TPR, 0x20);
        assert_eq!(a.acknowledge(), Some(0x31));
        assert_eq!(rd(&mut a, reg::IRR + 0x10), 0);
    }

    #[test]
    fn level_triggered_eoi_goes_to_the_ioapic() {
        let (mut a, _) = apic(true);
        wr(&mut a, reg::SVR, 0x1ff);
        a.accept_fixed(0x50, true);
        assert_eq!(rd(&mut a, reg::TMR + 0x20), 1 << 16);
        assert_eq!(a.acknowledge(), Some(0x50));
        assert_eq!(wr(&mut a, reg::EOI, 0), Some(LapicOutput::LevelEoi(0x50)));
        assert_eq!(wr(&mut a, reg::EOI, 0), None, "nothing in service");
    }

    #[test]
    fn illegal_vector_sets_esr() {
        let (mut a, _) = apic(true);
        a.accept_fixed(3, false);
        assert_eq!(
            rd(&mut a, reg::ESR),
            0,
            "ESR reads the value latched by a write"
        );
        wr(&mut a, reg::ESR, 0);
        assert_eq!(rd(&mut a, reg::ESR), ESR_RECEIVE_ILLEGAL);
        wr(&mut a, reg::ESR, 0);
        assert_eq!(rd(&mut a, reg::ESR), 0);
    }

    #[test]
    fn timer_one_shot_and_periodic() {
        let (mut a, clock) = apic(true);
        wr(&mut a, reg::SVR, 0x1ff);
        wr(&mut a, reg::TIMER_DIVIDE, 0xb); // by 1: 1 tick per ns
        wr(&mut a, reg::LVT_TIMER, 0x40);
        wr(&mut a, reg::TIMER_INITIAL, 1000);
        assert_eq!(a.timer_deadline_ns(), Some(1000));
        clock.set(400);
        assert_eq!(rd(&mut a, reg::TIMER_CURRENT), 600);
        assert!(!a.poll_timer());
        clock.set(1000);
        assert!(a.poll_timer());
        assert_eq!(a.acknowledge(), Some(0x40));
        wr(&mut a, reg::EOI, 0);
        clock.set(5000);
        assert!(!a.poll_timer(), "one-shot fires once");
        assert_eq!(rd(&mut a, reg::TIMER_CURRENT), 0);

        wr(&mut a, reg::LVT_TIMER, 0x41 | LVT_TIMER_PERIODIC);
        wr(&mut a, reg::TIMER_INITIAL, 100);
        for k in 1..=3u64 {
            clock.set(5000 + 100 * k);
            assert!(a.poll_timer());
            assert_eq!(a.acknowledge(), Some(0x41));
            wr(&mut a, reg::EOI, 0);
        }
        // Masked: the count goes on, no interrupt.
        wr(
            &mut a,
            reg::LVT_TIMER,
            0x41 | LVT_TIMER_PERIODIC | LVT_MASKED,
        );
        clock.set(5400);
        assert!(a.poll_timer());
        assert!(!a.has_interrupt());
        wr(&mut a, reg::TIMER_INITIAL, 0);
        assert_eq!(a.timer_deadline_ns(), None);
    }

    #[test]
    fn icr_write_makes_an_ipi() {
        let (mut a, _) = apic(true);
        wr(&mut a, reg::ICR_HI, 0x0100_0000);
        let out = wr(&mut a, reg::ICR_LO, 0x0000_4030);
        assert_eq!(
            out,
            Some(LapicOutput::Ipi(Ipi {
                source: 0,
                vector: 0x30,
                mode: mode::FIXED,
                logical: false,
                dest: 1,
                assert: true,
                level: false,
                shorthand: Shorthand::None,
            }))
        );
        let Some(LapicOutput::Ipi(ipi)) = wr(&mut a, reg::ICR_LO, 0x000c_4608) else {
            panic!("no IPI");
        };
        assert_eq!(ipi.mode, mode::STARTUP);
        assert_eq!(ipi.vector, 8);
        assert_eq!(ipi.shorthand, Shorthand::AllButSelf);
        assert_eq!(rd(&mut a, reg::ICR_LO) & DELIVERY_PENDING, 0);
        // Misaligned or narrow writes do nothing.
        assert_eq!(a.write(reg::ICR_LO, &[0x30]), None);
        assert_eq!(a.write(reg::ICR_LO + 4, &0x4030u32.to_le_bytes()), None);
    }

    #[test]
    fn destinations_and_signals() {
        let (mut a, _) = apic(false);
        assert!(a.matches_physical(1) && a.matches_physical(0xff) && !a.matches_physical(0));
        wr(&mut a, reg::LDR, 0x0200_0000);
        assert!(a.matches_logical(0x03) && !a.matches_logical(0x01));
        wr(&mut a, reg::DFR, 0x0fff_ffff); // cluster model
        wr(&mut a, reg::LDR, 0x2100_0000);
        assert!(a.matches_logical(0x21) && !a.matches_logical(0x11));
        a.accept_signal(LapicSignal::Nmi);
        a.accept_signal(LapicSignal::Init);
        a.accept_signal(LapicSignal::Startup(8));
        assert!(a.signal_pending());
        assert_eq!(a.take_signal(), Some(LapicSignal::Init));
        assert_eq!(a.take_signal(), Some(LapicSignal::Startup(8)));
        assert_eq!(a.take_signal(), Some(LapicSignal::Nmi));
        assert_eq!(a.take_signal(), None);
        wr(&mut a, reg::SVR, 0x1ff);
        a.init_reset();
        assert_eq!(rd(&mut a, reg::SVR), 0xff);
        assert_eq!(rd(&mut a, reg::ID), 1 << 24);
    }
}

//! The 8259A programmable interrupt controller pair of a PC: master at [`MASTER_BASE`]
//! (0x20-0x21), slave at [`SLAVE_BASE`] (0xA0-0xA1) cascaded on master input 2, and the EISA edge/
//! level control registers (ELCR) at [`ELCR_BASE`] (0x4D0-0x4D1).
//!
//! Data enters as guest port accesses (through the three handles [`bus_ports`] returns, each a
//! [`BusDevice`] registered at its base with length [`PIC_LEN`]/[`ELCR_LEN`]) and as interrupt
//! request levels from the machine ([`Pic8259Pair::set_irq`], IRQ 0-15). It leaves as the INTR
//! output: [`Pic8259Pair::has_interrupt`] reads it, [`Pic8259Pair::acknowledge`] is the CPU's
//! INTA cycle (returns the vector), and every change of INTR is reported to the injected
//! [`IntrSink`] so the machine can wake or kick the vCPU without polling. `set_irq` also returns
//! the new INTR level. The sink runs with the pair's lock held: it must only record the level
//! (an atomic, a kick), never call back into the PIC.
//!
//! Modelled: ICW1-ICW4 (8086 mode; single or cascade; ICW1 LTIM), OCW1 mask, OCW2 EOI
//! (non-specific, specific, with rotation, set priority, rotate in auto-EOI), OCW3 (read IRR/ISR,
//! poll, special mask mode), auto-EOI, special fully nested mode, per-line edge/level triggering
//! from the ELCR, rotating priority, and spurious interrupts: an INTA with nothing left to serve
//! returns IRQ 7's vector of the chip concerned (IRQ 15 for the slave) without setting its ISR bit.
//! Not modelled: MCS-80/85 mode (ICW4 bit 0 clear is accepted and treated as 8086 mode), buffered
//! mode (stored only). An edge request stays latched in IRR if the line drops before INTA (as
//! QEMU does); real silicon would lose it and give a spurious IRQ 7. The cascade line from the
//! slave into master input 2 behaves as a level, so a slave request is never lost.

use std::sync::{Arc, Mutex};

use super::BusDevice;

/// Base port of the master PIC (command at +0, data/mask at +1).
pub const MASTER_BASE: u16 = 0x20;
/// Base port of the slave PIC.
pub const SLAVE_BASE: u16 = 0xa0;
/// Ports each PIC decodes.
pub const PIC_LEN: u64 = 2;
/// Base port of the ELCR pair (master's at +0, slave's at +1).
pub const ELCR_BASE: u16 = 0x4d0;
/// Ports the ELCR pair decodes.
pub const ELCR_LEN: u64 = 2;
/// Master input the slave's INTR is wired to.
pub const CASCADE_IRQ: u8 = 2;

/// Command-port write: ICW1 (start of the initialization sequence).
pub const ICW1_INIT: u8 = 0b0001_0000;
/// ICW1: ICW4 follows.
pub const ICW1_IC4: u8 = 0b0000_0001;
/// ICW1: single PIC (no ICW3).
pub const ICW1_SNGL: u8 = 0b0000_0010;
/// ICW1: level-triggered mode for all inputs.
pub const ICW1_LTIM: u8 = 0b0000_1000;
/// ICW4: 8086/88 mode (clear would be MCS-80/85 mode, not modelled).
pub const ICW4_8086: u8 = 0b0000_0001;
/// ICW4: automatic end of interrupt.
pub const ICW4_AEOI: u8 = 0b0000_0010;
/// ICW4: buffered mode bits (stored only).
pub const ICW4_BUF: u8 = 0b0000_1100;
/// ICW4: special fully nested mode.
pub const ICW4_SFNM: u8 = 0b0001_0000;
/// Command-port write that is OCW3 (bit 4 clear, bit 3 set); otherwise bit 3 clear means OCW2.
pub const OCW3_SELECT: u8 = 0b0000_1000;
/// OCW3: the next read of the command port is a poll.
pub const OCW3_POLL: u8 = 0b0000_0100;
/// OCW3: the read-register select bit (below) is valid.
pub const OCW3_RR: u8 = 0b0000_0010;
/// OCW3: read ISR (set) or IRR (clear) at the command port.
pub const OCW3_RIS: u8 = 0b0000_0001;
/// OCW3: the special-mask bit (below) is valid.
pub const OCW3_ESMM: u8 = 0b0100_0000;
/// OCW3: special mask mode on (set) or off (clear).
pub const OCW3_SMM: u8 = 0b0010_0000;
/// OCW2 command (bits 7-5): rotate in auto-EOI mode off.
pub const OCW2_CLEAR_ROTATE_AEOI: u8 = 0b000;
/// OCW2 command: non-specific EOI.
pub const OCW2_EOI: u8 = 0b001;
/// OCW2 command: no operation.
pub const OCW2_NOP: u8 = 0b010;
/// OCW2 command: specific EOI for the level in bits 2-0.
pub const OCW2_SPECIFIC_EOI: u8 = 0b011;
/// OCW2 command: rotate in auto-EOI mode on.
pub const OCW2_SET_ROTATE_AEOI: u8 = 0b100;
/// OCW2 command: non-specific EOI and rotate priorities.
pub const OCW2_ROTATE_EOI: u8 = 0b101;
/// OCW2 command: set priority (the level in bits 2-0 becomes the lowest).
pub const OCW2_SET_PRIORITY: u8 = 0b110;
/// OCW2 command: specific EOI and rotate priorities.
pub const OCW2_ROTATE_SPECIFIC_EOI: u8 = 0b111;
/// Poll-read result: an interrupt was pending (its level is in bits 2-0).
pub const POLL_INT: u8 = 0b1000_0000;
/// ELCR bits that can be set on the master: IRQ 0, 1 and 2 are always edge.
pub const ELCR_MASTER_MASK: u8 = 0xf8;
/// ELCR bits that can be set on the slave: IRQ 8 and 13 are always edge.
pub const ELCR_SLAVE_MASK: u8 = 0xde;
/// Level of the spurious interrupt each chip answers with.
const SPURIOUS_LEVEL: u8 = 7;

/// Where the INTR output goes: called with the new level whenever it changes.
pub type IntrSink = Arc<dyn Fn(bool) + Send + Sync>;

/// Where a chip is in its initialization sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InitStep {
    /// Initialized: data-port writes are OCW1.
    #[default]
    Ready,
    /// The next data-port write is ICW2 (vector base).
    Icw2,
    /// The next data-port write is ICW3 (cascade wiring).
    Icw3,
    /// The next data-port write is ICW4 (mode).
    Icw4,
}

/// One 8259A's registers, for snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PicChipState {
    /// Interrupt request register.
    pub irr: u8,
    /// In-service register.
    pub isr: u8,
    /// Interrupt mask register (OCW1).
    pub imr: u8,
    /// Current levels of the request inputs, for edge detection.
    pub lines: u8,
    /// Edge/level control register: set bits are level-triggered inputs.
    pub elcr: u8,
    /// Vector base from ICW2 (low 3 bits clear).
    pub vector_base: u8,
    /// Initialization progress.
    pub init: InitStep,
    /// ICW1 asked for ICW4.
    pub icw4_needed: bool,
    /// ICW1 single mode (no cascade).
    pub single: bool,
    /// ICW1 LTIM: every input is level-triggered.
    pub ltim: bool,
    /// ICW3 value (cascade wiring), stored only.
    pub icw3: u8,
    /// ICW4 value, as written.
    pub icw4: u8,
    /// Automatic EOI (ICW4).
    pub auto_eoi: bool,
    /// Rotate priorities on automatic EOI (OCW2).
    pub rotate_on_aeoi: bool,
    /// Special fully nested mode (ICW4).
    pub sfnm: bool,
    /// The level that has the highest priority (0 after init; rotation moves it).
    pub priority_base: u8,
    /// OCW3: command-port reads return ISR instead of IRR.
    pub read_isr: bool,
    /// OCW3: the next command-port read is a poll.
    pub poll: bool,
    /// OCW3: special mask mode.
    pub special_mask: bool,
}

impl PicChipState {
    fn is_level(&self, bit: u8) -> bool {
        self.ltim || self.elcr & bit != 0
    }

    /// Drive input `n` (0-7) to `level`.
    fn set_line(&mut self, n: u8, level: bool) {
        let bit = 1 << n;
        if self.is_level(bit) {
            if level {
                self.irr |= bit;
            } else {
                self.irr &= !bit;
            }
        } else if level && self.lines & bit == 0 {
            self.irr |= bit;
        }
        if level {
            self.lines |= bit;
        } else {
            self.lines &= !bit;
        }
    }

    /// The highest-priority level set in `bits`, as a priority rank (0 = highest).
    fn best_rank(&self, bits: u8) -> Option<u8> {
        (0u8..8).find(|r| bits & (1 << (r.wrapping_add(self.priority_base) & 7)) != 0)
    }

    fn level_of_rank(&self, rank: u8) -> u8 {
        rank.wrapping_add(self.priority_base) & 7
    }

    /// The level this chip would present to the CPU now, if any: the highest-priority unmasked
    /// request that outranks everything in service.
    fn pending(&self, is_master: bool) -> Option<u8> {
        let rank = self.best_rank(self.irr & !self.imr)?;
        let mut blocking = self.isr;
        if self.special_mask {
            blocking &= !self.imr;
        }
        if is_master && self.sfnm {
            // The slave's own priority logic orders its requests; a new slave request must get
            // through while an earlier one is in service.
            blocking &= !(1 << CASCADE_IRQ);
        }
        match self.best_rank(blocking) {
            Some(busy) if busy <= rank => None,
            _ => Some(self.level_of_rank(rank)),
        }
    }

    /// The INTA for `level`: move it from IRR to ISR (or straight through with auto-EOI).
    fn accept(&mut self, level: u8) {
        let bit = 1 << level;
        if !self.is_level(bit) {
            self.irr &= !bit;
        }
        if self.auto_eoi {
            if self.rotate_on_aeoi {
                self.priority_base = (level + 1) & 7;
            }
        } else {
            self.isr |= bit;
        }
    }

    fn vector(&self, level: u8) -> u8 {
        self.vector_base.wrapping_add(level)
    }

    fn write_command(&mut self, v: u8) {
        if v & ICW1_INIT != 0 {
            // ICW1 resets the edge detectors (a line already high must fall and rise again),
            // the mask, the in-service bits, priorities and the read mode.
            let levels = self.lines;
            *self = PicChipState {
                elcr: self.elcr,
                lines: levels,
                init: InitStep::Icw2,
                icw4_needed: v & ICW1_IC4 != 0,
                single: v & ICW1_SNGL != 0,
                ltim: v & ICW1_LTIM != 0,
                ..PicChipState::default()
            };
            // Level-triggered inputs show their current level at once.
            self.irr = levels & if self.ltim { 0xff } else { self.elcr };
            return;
        }
        if v & OCW3_SELECT != 0 {
            if v & OCW3_POLL != 0 {
                self.poll = true;
            }
            if v & OCW3_RR != 0 {
                self.read_isr = v & OCW3_RIS != 0;
            }
            if v & OCW3_ESMM != 0 {
                self.special_mask = v & OCW3_SMM != 0;
            }
            return;
        }
        let level = v & 7;
        match v >> 5 {
            OCW2_CLEAR_ROTATE_AEOI => self.rotate_on_aeoi = false,
            OCW2_SET_ROTATE_AEOI => self.rotate_on_aeoi = true,
            OCW2_EOI | OCW2_ROTATE_EOI => {
                if let Some(rank) = self.best_rank(self.isr) {
                    let served = self.level_of_rank(rank);
                    self.isr &= !(1 << served);
                    if v >> 5 == OCW2_ROTATE_EOI {
                        self.priority_base = (served + 1) & 7;
                    }
                }
            }
            OCW2_SPECIFIC_EOI => self.isr &= !(1 << level),
            OCW2_ROTATE_SPECIFIC_EOI => {
                self.isr &= !(1 << level);
                self.priority_base = (level + 1) & 7;
            }
            OCW2_SET_PRIORITY => self.priority_base = (level + 1) & 7,
            _ => {} // OCW2_NOP
        }
    }

    fn write_data(&mut self, v: u8) {
        match self.init {
            InitStep::Ready => self.imr = v,
            InitStep::Icw2 => {
                self.vector_base = v & 0xf8;
                self.init = if !self.single {
                    InitStep::Icw3
                } else if self.icw4_needed {
                    InitStep::Icw4
                } else {
                    InitStep::Ready
                };
            }
            InitStep::Icw3 => {
                self.icw3 = v;
                self.init = if self.icw4_needed {
                    InitStep::Icw4
                } else {
                    InitStep::Ready
                };
            }
            InitStep::Icw4 => {
                self.icw4 = v;
                self.auto_eoi = v & ICW4_AEOI != 0;
                self.sfnm = v & ICW4_SFNM != 0;
                self.init = InitStep::Ready;
            }
        }
    }
}

/// Both PICs' registers, for snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pic8259PairState {
    /// The master (IRQ 0-7).
    pub master: PicChipState,
    /// The slave (IRQ 8-15).
    pub slave: PicChipState,
}

/// The master/slave 8259A pair with its ELCRs.
pub struct Pic8259Pair {
    state: Pic8259PairState,
    intr: bool,
    sink: IntrSink,
}

impl Pic8259Pair {
    /// The pair at power-on (uninitialized, nothing masked, all edge-triggered), reporting INTR
    /// changes to `sink`.
    pub fn new(sink: IntrSink) -> Self {
        Self::from_state(Pic8259PairState::default(), sink)
    }

    /// The pair resumed from `state`. `sink` is not called for the restored INTR level; read it
    /// with [`Self::has_interrupt`].
    pub fn from_state(state: Pic8259PairState, sink: IntrSink) -> Self {
        let mut pic = Self {
            state,
            intr: false,
            sink,
        };
        pic.update_cascade();
        pic.intr = pic.state.master.pending(true).is_some();
        pic
    }

    /// A copy of the registers.
    pub fn state(&self) -> Pic8259PairState {
        self.state
    }

    /// Back to power-on (machine reset); input levels are kept, they are wires.
    pub fn reset(&mut self) {
        let (ml, sl) = (self.state.master.lines, self.state.slave.lines);
        self.state = Pic8259PairState::default();
        self.state.master.lines = ml;
        self.state.slave.lines = sl;
        self.update();
    }

    /// Drive ISA interrupt request `irq` (0-15) to `level`; returns INTR afterwards. Out-of-range
    /// lines and the cascade input (IRQ 2, driven by the slave) are ignored.
    pub fn set_irq(&mut self, irq: u8, level: bool) -> bool {
        match irq {
            CASCADE_IRQ => {}
            0..=7 => self.state.master.set_line(irq, level),
            8..=15 => self.state.slave.set_line(irq - 8, level),
            _ => {}
        }
        self.update();
        self.intr
    }

    /// The INTR output: an interrupt is waiting for [`Self::acknowledge`].
    pub fn has_interrupt(&self) -> bool {
        self.intr
    }

    /// The CPU's interrupt-acknowledge cycle: the vector to deliver, with IRR/ISR updated as the
    /// chips do. With nothing to serve (the request went away), the spurious vector of IRQ 7 (or
    /// IRQ 15 behind the cascade) comes back and no ISR bit is set for it.
    pub fn acknowledge(&mut self) -> u8 {
        let m = &mut self.state.master;
        let vector = match m.pending(true) {
            Some(CASCADE_IRQ) if !m.single => {
                m.accept(CASCADE_IRQ);
                let s = &mut self.state.slave;
                match s.pending(false) {
                    Some(level) => {
                        s.accept(level);
                        s.vector(level)
                    }
                    None => s.vector(SPURIOUS_LEVEL),
                }
            }
            Some(level) => {
                m.accept(level);
                m.vector(level)
            }
            None => m.vector(SPURIOUS_LEVEL),
        };
        self.update();
        vector
    }

    /// A guest read of I/O port `port` (one of the six this pair decodes; others read 0xFF).
    pub fn read_port(&mut self, port: u16) -> u8 {
        let v = match port {
            p if p == MASTER_BASE || p == MASTER_BASE + 1 => self.read_chip(true, p - MASTER_BASE),
            p if p == SLAVE_BASE || p == SLAVE_BASE + 1 => self.read_chip(false, p - SLAVE_BASE),
            p if p == ELCR_BASE => self.state.master.elcr,
            p if p == ELCR_BASE + 1 => self.state.slave.elcr,
            _ => 0xff,
        };
        self.update();
        v
    }

    /// A guest write of `v` to I/O port `port` (others are ignored).
    pub fn write_port(&mut self, port: u16, v: u8) {
        match port {
            p if p == MASTER_BASE => self.state.master.write_command(v),
            p if p == MASTER_BASE + 1 => self.state.master.write_data(v),
            p if p == SLAVE_BASE => self.state.slave.write_command(v),
            p if p == SLAVE_BASE + 1 => self.state.slave.write_data(v),
            p if p == ELCR_BASE => self.write_elcr(true, v),
            p if p == ELCR_BASE + 1 => self.write_elcr(false, v),
            _ => {}
        }
        self.update();
    }

    fn write_elcr(&mut self, master: bool, v: u8) {
        let (chip, mask) = if master {
            (&mut self.state.master, ELCR_MASTER_MASK)
        } else {
            (&mut self.state.slave, ELCR_SLAVE_MASK)
        };
        chip.elcr = v & mask;
        // A line switched to level shows its level now; one switched to edge keeps its request.
        chip.irr = (chip.irr & !chip.elcr) | (chip.lines & chip.elcr);
    }

    fn read_chip(&mut self, master: bool, reg: u16) -> u8 {
        let chip = if master {
            self.state.master
        } else {
            self.state.slave
        };
        if chip.poll {
            return self.poll(master);
        }
        match (reg, chip.read_isr) {
            (0, true) => chip.isr,
            (0, false) => chip.irr,
            _ => chip.imr,
        }
    }

    /// A poll read: acknowledge the chip's best request as INTA would, report its level.
    fn poll(&mut self, master: bool) -> u8 {
        let chip = if master {
            &mut self.state.master
        } else {
            &mut self.state.slave
        };
        chip.poll = false;
        match chip.pending(master) {
            Some(level) => {
                chip.accept(level);
                POLL_INT | level
            }
            None => 0,
        }
    }

    /// The slave's INTR drives master input 2 as a level.
    fn update_cascade(&mut self) {
        let out = self.state.slave.pending(false).is_some();
        let m = &mut self.state.master;
        let bit = 1 << CASCADE_IRQ;
        if out {
            m.irr |= bit;
            m.lines |= bit;
        } else {
            m.irr &= !bit;
            m.lines &= !bit;
        }
    }

    fn update(&mut self) {
        self.update_cascade();
        let out = self.state.master.pending(true).is_some();
        if out != self.intr {
            self.intr = out;
            (self.sink)(out);
        }
    }
}

/// Which of the pair's three port ranges a [`PicPort`] serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PicRange {
    /// Master command/data at [`MASTER_BASE`].
    Master,
    /// Slave command/data at [`SLAVE_BASE`].
    Slave,
    /// The ELCRs at [`ELCR_BASE`].
    Elcr,
}

impl PicRange {
    /// First port of the range.
    pub fn base(self) -> u16 {
        match self {
            PicRange::Master => MASTER_BASE,
            PicRange::Slave => SLAVE_BASE,
            PicRange::Elcr => ELCR_BASE,
        }
    }
}

/// One port range of a shared [`Pic8259Pair`], as its own bus device.
pub struct PicPort {
    dev: Arc<Mutex<Pic8259Pair>>,
    range: PicRange,
}

impl BusDevice for PicPort {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        let (Some(b), Ok(off)) = (data.first_mut(), u16::try_from(offset)) else {
            return;
        };
        let mut dev = self.dev.lock().unwrap_or_else(|e| e.into_inner());
        *b = dev.read_port(self.range.base().wrapping_add(off));
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let (Some(&v), Ok(off)) = (data.first(), u16::try_from(offset)) else {
            return;
        };
        let mut dev = self.dev.lock().unwrap_or_else(|e| e.into_inner());
        dev.write_port(self.range.base().wrapping_add(off), v);
    }
}

/// The three port handles to register, as `(device, base, len)`. Keep `dev` for the CPU side
/// (`acknowledge`, `set_irq`) and for snapshots.
pub fn bus_ports(dev: &Arc<Mutex<Pic8259Pair>>) -> [(PicPort, u16, u64); 3] {
    [
        (PicRange::Master, PIC_LEN),
        (PicRange::Slave, PIC_LEN),
        (PicRange::Elcr, ELCR_LEN),
    ]
    .map(|(range, len)| {
        (
            PicPort {
                dev: dev.clone(),
                range,
            },
            range.base(),
            len,
        )
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    struct Intr {
        level: AtomicBool,
        changes: AtomicUsize,
    }

    fn pair() -> (Pic8259Pair, Arc<Intr>) {
        let intr = Arc::new(Intr {
            level: AtomicBool::new(false),
            changes: AtomicUsize::new(0),
        });
        let i = intr.clone();
        let pic = Pic8259Pair::new(Arc::new(move |l| {
            i.level.store(l, Ordering::SeqCst);
            i.changes.fetch_add(1, Ordering::SeqCst);
        }));
        (pic, intr)
    }

    /// Linux's init_8259A(0) followed by unmasking the cascade, as arch/x86/kernel/i8259.c does.
    fn linux_init(pic: &mut Pic8259Pair) {
        pic.write_port(0x21, 0xff);
        pic.write_port(0xa1, 0xff);
        pic.write_port(0x20, 0x11);
        pic.write_port(0x21, 0x30);
        pic.write_port(0x21, 0x04);
        pic.write_port(0x21, 0x01);
        pic.write_port(0xa0, 0x11);
        pic.write_port(0xa1, 0x38);
        pic.write_port(0xa1, 0x02);
        pic.write_port(0xa1, 0x01);
        pic.write_port(0x21, 0xfb);
        pic.write_port(0xa1, 0xff);
    }

    /// Linux's mask_and_ack_8259A for `irq` (specific EOIs), then unmask again.
    fn linux_eoi(pic: &mut Pic8259Pair, irq: u8) {
        if irq >= 8 {
            pic.write_port(0xa0, 0x60 + (irq & 7));
            pic.write_port(0x20, 0x60 + CASCADE_IRQ);
        } else {
            pic.write_port(0x20, 0x60 + irq);
        }
    }

    fn isr(pic: &mut Pic8259Pair, cmd: u16) -> u8 {
        pic.write_port(cmd, 0x0b);
        let v = pic.read_port(cmd);
        pic.write_port(cmd, 0x0a);
        v
    }

    #[test]
    fn linux_init_then_timer_tick() {
        let (mut pic, intr) = pair();
        linux_init(&mut pic);
        // probe_8259A: the mask reads back.
        assert_eq!(pic.read_port(0x21), 0xfb);
        assert_eq!(pic.read_port(0xa1), 0xff);
        assert!(!pic.set_irq(0, true));
        pic.write_port(0x21, 0xfa); // unmask IRQ 0: the latched edge now raises INTR
        assert!(pic.has_interrupt());
        assert!(intr.level.load(Ordering::SeqCst));
        pic.set_irq(0, false);
        assert_eq!(pic.acknowledge(), 0x30);
        assert!(!pic.has_interrupt());
        assert!(!intr.level.load(Ordering::SeqCst));
        assert_eq!(isr(&mut pic, 0x20), 0x01);
        linux_eoi(&mut pic, 0);
        assert_eq!(isr(&mut pic, 0x20), 0);
        // The next tick is a new edge.
        pic.set_irq(0, true);
        pic.set_irq(0, false);
        assert_eq!(pic.acknowledge(), 0x30);
        assert_eq!(intr.changes.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn edge_needs_a_new_rising_edge() {
        let (mut pic, _) = pair();
        linux_init(&mut pic);
        pic.write_port(0x21, 0xfa);
        pic.set_irq(0, true);
        assert_eq!(pic.acknowledge(), 0x30);
        linux_eoi(&mut pic, 0);
        // The line stayed high: no new request.
        assert!(!pic.set_irq(0, true));
    }

    #[test]
    fn slave_irq_through_cascade_and_priorities() {
        let (mut pic, _) = pair();
        linux_init(&mut pic);
        pic.write_port(0x21, 0xe8); // IRQ 0, 1, 2, 4 unmasked
        pic.write_port(0xa1, 0xf7); // IRQ 11 unmasked
        pic.set_irq(11, true);
        pic.set_irq(4, true);
        // IRQ 2 (the cascade) outranks IRQ 4.
        assert_eq!(pic.acknowledge(), 0x38 + 3);
        assert_eq!(isr(&mut pic, 0x20), 0x04);
        assert_eq!(isr(&mut pic, 0xa0), 0x08);
        // IRQ 4 is lower priority than the cascade in service: held.
        assert!(!pic.has_interrupt());
        // IRQ 1 outranks it: nested.
        assert!(pic.set_irq(1, true));
        assert_eq!(pic.acknowledge(), 0x31);
        linux_eoi(&mut pic, 1);
        linux_eoi(&mut pic, 11);
        assert!(pic.has_interrupt());
        assert_eq!(pic.acknowledge(), 0x34);
    }

    #[test]
    fn level_triggered_via_elcr_stays_pending_until_the_line_drops() {
        let (mut pic, _) = pair();
        linux_init(&mut pic);
        // IRQ 0-2 cannot be made level; IRQ 8 and 13 neither.
        pic.write_port(0x4d0, 0xff);
        pic.write_port(0x4d1, 0xff);
        assert_eq!(pic.read_port(0x4d0), ELCR_MASTER_MASK);
        assert_eq!(pic.read_port(0x4d1), ELCR_SLAVE_MASK);
        pic.write_port(0x4d1, 0x08); // IRQ 11 level (a PCI INTx)
        pic.write_port(0xa1, 0xf7);
        pic.set_irq(11, true);
        assert_eq!(pic.acknowledge(), 0x3b);
        linux_eoi(&mut pic, 11);
        // Still asserted: it comes back.
        assert!(pic.has_interrupt());
        assert_eq!(pic.acknowledge(), 0x3b);
        pic.set_irq(11, false);
        linux_eoi(&mut pic, 11);
        assert!(!pic.has_interrupt());
    }

    #[test]
    fn spurious_irq7_and_irq15() {
        let (mut pic, _) = pair();
        linux_init(&mut pic);
        // Nothing pending: IRQ 7's vector, ISR untouched.
        assert_eq!(pic.acknowledge(), 0x37);
        assert_eq!(isr(&mut pic, 0x20), 0);
        // A slave request that vanishes after the master committed to the cascade (the race
        // between INTR and INTA): IRQ 15's vector, no slave ISR bit, the master's cascade bit in
        // service (Linux then EOIs the master only).
        pic.write_port(0xa1, 0xf7);
        pic.set_irq(11, true);
        assert_eq!(pic.state.master.pending(true), Some(CASCADE_IRQ));
        pic.state.slave.imr = 0xff;
        assert_eq!(pic.acknowledge(), 0x3f);
        assert_eq!(isr(&mut pic, 0xa0), 0);
    }

    #[test]
    fn auto_eoi_and_rotation() {
        let (mut pic, _) = pair();
        pic.write_port(0x20, 0x13); // single, ICW4
        pic.write_port(0x21, 0x08);
        pic.write_port(0x21, ICW4_8086 | ICW4_AEOI);
        pic.write_port(0x21, 0x00);
        pic.write_port(0x20, OCW2_SET_ROTATE_AEOI << 5);
        pic.set_irq(3, true);
        pic.set_irq(5, true);
        assert_eq!(pic.acknowledge(), 0x0b);
        assert_eq!(isr(&mut pic, 0x20), 0);
        // IRQ 3 became the lowest priority; a new IRQ 3 loses against IRQ 5.
        pic.set_irq(3, false);
        pic.set_irq(3, true);
        assert_eq!(pic.acknowledge(), 0x0d);
        assert_eq!(pic.acknowledge(), 0x0b);
    }

    #[test]
    fn non_specific_eoi_set_priority_and_poll() {
        let (mut pic, _) = pair();
        linux_init(&mut pic);
        pic.write_port(0x21, 0x00);
        // IRQ 5 highest: priority base 5 means "4 lowest".
        pic.write_port(0x20, (OCW2_SET_PRIORITY << 5) | 4);
        pic.set_irq(1, true);
        pic.set_irq(6, true);
        assert_eq!(pic.acknowledge(), 0x36);
        pic.write_port(0x20, OCW2_EOI << 5);
        assert_eq!(isr(&mut pic, 0x20), 0);
        // Poll mode reads the level and acknowledges it.
        pic.write_port(0x20, OCW3_SELECT | OCW3_POLL);
        assert_eq!(pic.read_port(0x20), POLL_INT | 1);
        assert_eq!(isr(&mut pic, 0x20), 0x02);
        pic.write_port(0x20, OCW3_SELECT | OCW3_POLL);
        assert_eq!(pic.read_port(0x20), 0);
        // The IRR read shows requests.
        pic.set_irq(7, true);
        assert_eq!(pic.read_port(0x20), 0x80);
    }

    #[test]
    fn special_mask_mode_lets_lower_priorities_in() {
        let (mut pic, _) = pair();
        linux_init(&mut pic);
        pic.write_port(0x21, 0x00);
        pic.set_irq(3, true);
        assert_eq!(pic.acknowledge(), 0x33);
        pic.set_irq(6, true);
        assert!(!pic.has_interrupt());
        pic.write_port(0x21, 0x08);
        pic.write_port(0x20, OCW3_SELECT | OCW3_ESMM | OCW3_SMM);
        assert!(pic.has_interrupt());
        assert_eq!(pic.acknowledge(), 0x36);
    }

    #[test]
    fn garbage_state_does_not_panic() {
        let mut st = Pic8259PairState::default();
        st.master.priority_base = 0xff;
        st.master.irr = 0xff;
        st.slave.vector_base = 0xff;
        st.slave.irr = 0xff;
        let mut pic = Pic8259Pair::from_state(st, Arc::new(|_| {}));
        for _ in 0..20 {
            pic.acknowledge();
        }
        pic.write_port(0x20, 0x20);
        pic.set_irq(200, true);
    }

    #[test]
    fn state_round_trips_and_bus_ports_reach_the_pair() {
        let (pic, _) = pair();
        let dev = Arc::new(Mutex::new(pic));
        let mut bus = super::super::Bus::new();
        for (port, base, len) in bus_ports(&dev) {
            bus.insert(Arc::new(Mutex::new(port)), u64::from(base), len)
                .unwrap();
        }
        for (p, v) in [
            (0x20, 0x11),
            (0x21, 0x30),
            (0x21, 0x04),
            (0x21, 0x01),
            (0xa0, 0x11),
            (0xa1, 0x38),
            (0xa1, 0x02),
            (0xa1, 0x01),
            (0x21, 0xfa),
            (0x4d1, 0x0c),
        ] {
            assert!(bus.write(p, &[v]));
        }
        let mut b = [0];
        bus.read(0x21, &mut b);
        assert_eq!(b[0], 0xfa);
        bus.read(0x4d1, &mut b);
        assert_eq!(b[0], 0x0c);
        let mut pic = dev.lock().unwrap();
        pic.set_irq(0, true);
        let st = pic.state();
        let copy = Pic8259Pair::from_state(st, Arc::new(|_| {}));
        assert_eq!(copy.state(), st);
        assert!(copy.has_interrupt());
        pic.reset();
        assert!(!pic.has_interrupt());
        assert_eq!(pic.state().master.lines, 1);
    }
}

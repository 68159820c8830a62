//! The I/O APIC at [`IOAPIC_BASE`] (MMIO 0xFEC00000): 24 interrupt inputs (GSIs 0-23), each
//! routed by a redirection entry to a vector on some local APIC(s).
//!
//! Data enters as guest MMIO accesses ([`IoApic`] is a [`BusDevice`] for [`IOAPIC_LEN`] bytes:
//! the index register IOREGSEL at 0x00, the data window IOWIN at 0x10, and the EOI register at
//! 0x40 of version 0x20 parts), as input levels from the machine ([`IoApic::set_irq`]) and as EOIs
//! broadcast by the local APICs for level-triggered vectors ([`IoApic::eoi`]). It leaves as
//! [`Delivery`] messages handed to an injected [`DeliverySink`] (the software CPU's LAPICs,
//! later): one per edge on an unmasked edge-triggered input, and one per assertion of a
//! level-triggered input, which then sets the entry's remote IRR until the EOI; an input still
//! asserted at the EOI is delivered again. The sink runs with the IOAPIC's lock held: it must
//! only queue the message, never call back into the IOAPIC (an EOI that follows arrives later,
//! from the CPU side).
//!
//! Input levels are the logical "asserted" level of the device's [`super::IrqLine`]; the
//! polarity bit of an entry is stored and read back but not applied, so the machine's ACPI/MP
//! tables should describe every line as active high (as QEMU's do for its ISA and PCI links).
//! An edge that arrives while its entry is masked is kept pending and delivered on unmask (as
//! QEMU does; hardware would drop it). Delivery status always reads idle: messages are handed
//! over at once.

use std::sync::Arc;

use super::BusDevice;

/// MMIO base of the first IOAPIC on a PC.
pub const IOAPIC_BASE: u64 = 0xfec0_0000;
/// MMIO bytes it decodes.
pub const IOAPIC_LEN: u64 = 0x1000;
/// Number of inputs (redirection entries).
pub const IOAPIC_PINS: usize = 24;
/// Offset of IOREGSEL, the register index.
pub const IOREGSEL: u64 = 0x00;
/// Offset of IOWIN, the selected register's data.
pub const IOWIN: u64 = 0x10;
/// Offset of the EOI register (version 0x20): writing a vector ends level interrupts with it.
pub const IOEOI: u64 = 0x40;
/// Implemented version, with the EOI register.
pub const IOAPIC_VERSION: u32 = 0x20;

/// Register index: IOAPICID (bits 27-24 the ID).
pub const REG_ID: u8 = 0x00;
/// Register index: IOAPICVER (bits 7-0 version, bits 23-16 highest entry index).
pub const REG_VERSION: u8 = 0x01;
/// Register index: IOAPICARB (arbitration ID, bits 27-24; reads as the ID).
pub const REG_ARB: u8 = 0x02;
/// Register index of redirection entry 0's low half; entry n is at 0x10 + 2n (low) and +1 (high).
pub const REG_REDIR_BASE: u8 = 0x10;
/// Shift of the ID in IOAPICID.
pub const ID_SHIFT: u32 = 24;
/// ID bits that exist (4).
pub const ID_MASK: u8 = 0x0f;

/// Redirection entry: vector.
pub const RTE_VECTOR: u64 = 0xff;
/// Redirection entry: delivery mode shift (bits 10-8, see the `DM_*` values).
pub const RTE_DELIVERY_MODE_SHIFT: u32 = 8;
/// Redirection entry: logical destination mode.
pub const RTE_DEST_LOGICAL: u64 = 1 << 11;
/// Redirection entry: delivery status (read only; always idle here).
pub const RTE_DELIVERY_STATUS: u64 = 1 << 12;
/// Redirection entry: polarity active low (stored only).
pub const RTE_POLARITY_LOW: u64 = 1 << 13;
/// Redirection entry: remote IRR (read only): a level interrupt was delivered and not yet EOId.
pub const RTE_REMOTE_IRR: u64 = 1 << 14;
/// Redirection entry: level-triggered.
pub const RTE_LEVEL: u64 = 1 << 15;
/// Redirection entry: masked.
pub const RTE_MASKED: u64 = 1 << 16;
/// Redirection entry: destination shift (bits 63-56).
pub const RTE_DEST_SHIFT: u32 = 56;
/// Redirection entry bits the guest can write.
const RTE_WRITABLE: u64 =
    (0x1_ffff & !(RTE_DELIVERY_STATUS | RTE_REMOTE_IRR)) | (0xff << RTE_DEST_SHIFT);

/// Delivery mode: fixed.
pub const DM_FIXED: u8 = 0;
/// Delivery mode: lowest priority.
pub const DM_LOWEST_PRIORITY: u8 = 1;
/// Delivery mode: SMI.
pub const DM_SMI: u8 = 2;
/// Delivery mode: NMI.
pub const DM_NMI: u8 = 4;
/// Delivery mode: INIT.
pub const DM_INIT: u8 = 5;
/// Delivery mode: ExtINT (the vector comes from the 8259 through an INTA cycle).
pub const DM_EXTINT: u8 = 7;

/// One interrupt message for the local APICs, decoded from a redirection entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The input it came from.
    pub gsi: u32,
    /// Vector to raise.
    pub vector: u8,
    /// Destination: an APIC ID (physical) or a logical destination set.
    pub dest: u8,
    /// `dest` is logical (true) or an APIC ID (false).
    pub dest_mode_logical: bool,
    /// Delivery mode (`DM_*`).
    pub delivery_mode: u8,
    /// Level-triggered: the LAPIC must broadcast an EOI for it ([`IoApic::eoi`]).
    pub level: bool,
}

/// Where deliveries go.
pub type DeliverySink = Arc<dyn Fn(Delivery) + Send + Sync>;

/// The guest-visible registers and input levels, for snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoApicState {
    /// IOAPIC ID (4 bits).
    pub id: u8,
    /// IOREGSEL.
    pub select: u8,
    /// Redirection entries (with remote IRR).
    pub redir: [u64; IOAPIC_PINS],
    /// Current input levels, bit n = GSI n.
    pub lines: u32,
    /// Requests not yet delivered (edges while masked; asserted levels), bit n = GSI n.
    pub irr: u32,
}

impl Default for IoApicState {
    /// Reset: every entry masked, edge, vector 0.
    fn default() -> Self {
        Self {
            id: 0,
            select: 0,
            redir: [RTE_MASKED; IOAPIC_PINS],
            lines: 0,
            irr: 0,
        }
    }
}

/// The I/O APIC.
pub struct IoApic {
    state: IoApicState,
    sink: DeliverySink,
}

impl IoApic {
    /// An IOAPIC at reset with ID `id`, delivering to `sink`.
    pub fn new(id: u8, sink: DeliverySink) -> Self {
        let state = IoApicState {
            id: id & ID_MASK,
            ..IoApicState::default()
        };
        Self::from_state(state, sink)
    }

    /// An IOAPIC resumed from `state`. Nothing is delivered until the next input change, EOI or
    /// register write.
    pub fn from_state(state: IoApicState, sink: DeliverySink) -> Self {
        Self { state, sink }
    }

    /// A copy of the state.
    pub fn state(&self) -> IoApicState {
        self.state
    }

    /// Back to reset (machine reset), keeping the ID and the input levels (they are wires).
    pub fn reset(&mut self) {
        self.state = IoApicState {
            id: self.state.id,
            lines: self.state.lines,
            ..IoApicState::default()
        };
    }

    /// Drive input `gsi` to `level` (asserted = true). Inputs past the last pin are ignored.
    pub fn set_irq(&mut self, gsi: u32, level: bool) {
        let Some(&entry) = self.state.redir.get(gsi as usize) else {
            return;
        };
        let bit = 1u32 << gsi;
        let was = self.state.lines & bit != 0;
        if level {
            self.state.lines |= bit;
        } else {
            self.state.lines &= !bit;
        }
        if entry & RTE_LEVEL != 0 {
            if level {
                self.state.irr |= bit;
            } else {
                self.state.irr &= !bit;
            }
        } else if level && !was {
            self.state.irr |= bit;
        }
        self.service(gsi as usize);
    }

    /// A local APIC's EOI for `vector`: clear remote IRR of every level entry with that vector,
    /// and deliver again those whose input is still asserted.
    pub fn eoi(&mut self, vector: u8) {
        for pin in 0..IOAPIC_PINS {
            let e = self.state.redir[pin];
            if e & RTE_LEVEL != 0 && e & RTE_REMOTE_IRR != 0 && (e & RTE_VECTOR) as u8 == vector {
                self.state.redir[pin] = e & !RTE_REMOTE_IRR;
                self.service(pin);
            }
        }
    }

    /// Deliver pin `pin`'s pending request if its entry allows it now.
    fn service(&mut self, pin: usize) {
        let bit = 1u32 << pin;
        let e = self.state.redir[pin];
        if self.state.irr & bit == 0 || e & RTE_MASKED != 0 {
            return;
        }
        let level = e & RTE_LEVEL != 0;
        if level {
            if e & RTE_REMOTE_IRR != 0 {
                return;
            }
            self.state.redir[pin] = e | RTE_REMOTE_IRR;
        } else {
            self.state.irr &= !bit;
        }
        (self.sink)(Delivery {
            gsi: pin as u32,
            vector: (e & RTE_VECTOR) as u8,
            dest: (e >> RTE_DEST_SHIFT) as u8,
            dest_mode_logical: e & RTE_DEST_LOGICAL != 0,
            delivery_mode: ((e >> RTE_DELIVERY_MODE_SHIFT) & 7) as u8,
            level,
        });
    }

    fn read_register(&self) -> u32 {
        let sel = self.state.select;
        match sel {
            REG_ID | REG_ARB => u32::from(self.state.id) << ID_SHIFT,
            REG_VERSION => IOAPIC_VERSION | (((IOAPIC_PINS - 1) as u32) << 16),
            _ => match redir_index(sel) {
                Some((pin, high)) => {
                    let e = self.state.redir[pin];
                    if high {
                        (e >> 32) as u32
                    } else {
                        e as u32
                    }
                }
                None => 0,
            },
        }
    }

    fn write_register(&mut self, v: u32) {
        let sel = self.state.select;
        match sel {
            REG_ID => self.state.id = (v >> ID_SHIFT) as u8 & ID_MASK,
            _ => {
                let Some((pin, high)) = redir_index(sel) else {
                    return;
                };
                let old = self.state.redir[pin];
                let new = if high {
                    (old & 0xffff_ffff) | (u64::from(v) << 32)
                } else {
                    (old & !0xffff_ffff) | u64::from(v)
                };
                let mut e = (new & RTE_WRITABLE) | (old & RTE_REMOTE_IRR);
                let bit = 1u32 << pin;
                if e & RTE_LEVEL == 0 {
                    // An edge entry has no remote IRR; a level entry's request is the level.
                    e &= !RTE_REMOTE_IRR;
                } else if self.state.lines & bit != 0 {
                    self.state.irr |= bit;
                } else {
                    self.state.irr &= !bit;
                }
                self.state.redir[pin] = e;
                self.service(pin);
            }
        }
    }
}

/// The redirection entry (and which half) register index `sel` names.
fn redir_index(sel: u8) -> Option<(usize, bool)> {
    let i = usize::from(sel.checked_sub(REG_REDIR_BASE)?);
    (i < 2 * IOAPIC_PINS).then_some((i / 2, i % 2 == 1))
}

impl BusDevice for IoApic {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let reg = match offset & !3 {
            IOREGSEL => u32::from(self.state.select),
            IOWIN => self.read_register(),
            _ => 0,
        };
        let bytes = reg.to_le_bytes();
        let start = (offset & 3) as usize;
        for (i, b) in data.iter_mut().enumerate() {
            *b = bytes.get(start + i).copied().unwrap_or(0);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&first) = data.first() else { return };
        match offset {
            IOREGSEL => self.state.select = first,
            IOWIN if data.len() == 4 => {
                let mut b = [0u8; 4];
                b.copy_from_slice(data);
                self.write_register(u32::from_le_bytes(b));
            }
            IOEOI => self.eoi(first),
            _ => {} // partial IOWIN writes and other offsets are ignored
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn ioapic() -> (IoApic, Arc<Mutex<Vec<Delivery>>>) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        let io = IoApic::new(0, Arc::new(move |d| g.lock().unwrap().push(d)));
        (io, got)
    }

    fn writel(io: &mut IoApic, off: u64, v: u32) {
        io.write(off, &v.to_le_bytes());
    }

    fn readl(io: &mut IoApic, off: u64) -> u32 {
        let mut b = [0u8; 4];
        io.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    fn reg_read(io: &mut IoApic, reg: u8) -> u32 {
        writel(io, IOREGSEL, u32::from(reg));
        readl(io, IOWIN)
    }

    fn reg_write(io: &mut IoApic, reg: u8, v: u32) {
        writel(io, IOREGSEL, u32::from(reg));
        writel(io, IOWIN, v);
    }

    /// Linux's ioapic_write_entry: high half first, then the low half.
    fn write_entry(io: &mut IoApic, pin: u8, e: u64) {
        reg_write(io, REG_REDIR_BASE + 2 * pin + 1, (e >> 32) as u32);
        reg_write(io, REG_REDIR_BASE + 2 * pin, e as u32);
    }

    fn read_entry(io: &mut IoApic, pin: u8) -> u64 {
        let lo = reg_read(io, REG_REDIR_BASE + 2 * pin);
        let hi = reg_read(io, REG_REDIR_BASE + 2 * pin + 1);
        u64::from(lo) | (u64::from(hi) << 32)
    }

    #[test]
    fn id_version_and_arbitration() {
        let (mut io, _) = ioapic();
        assert_eq!(reg_read(&mut io, REG_VERSION), 0x0017_0020);
        reg_write(&mut io, REG_ID, 0x0500_0000);
        assert_eq!(reg_read(&mut io, REG_ID), 0x0500_0000);
        assert_eq!(reg_read(&mut io, REG_ARB), 0x0500_0000);
        // The version register is read only; unknown registers read 0.
        reg_write(&mut io, REG_VERSION, 0);
        assert_eq!(reg_read(&mut io, REG_VERSION), 0x0017_0020);
        assert_eq!(reg_read(&mut io, 0x70), 0);
        // Reset state: all entries masked.
        for pin in 0..IOAPIC_PINS as u8 {
            assert_eq!(read_entry(&mut io, pin), RTE_MASKED);
        }
        // IOREGSEL reads back, byte-wise too.
        writel(&mut io, IOREGSEL, 0x11);
        let mut b = [0u8];
        io.read(IOREGSEL, &mut b);
        assert_eq!(b[0], 0x11);
    }

    #[test]
    fn level_triggered_with_remote_irr_and_lapic_eoi() {
        let (mut io, got) = ioapic();
        // The ACPI SCI (GSI 9): level, fixed, physical destination APIC 0, vector 0x29.
        write_entry(&mut io, 9, RTE_LEVEL | 0x29);
        io.set_irq(9, true);
        let d = Delivery {
            gsi: 9,
            vector: 0x29,
            dest: 0,
            dest_mode_logical: false,
            delivery_mode: DM_FIXED,
            level: true,
        };
        assert_eq!(*got.lock().unwrap(), vec![d]);
        assert_ne!(read_entry(&mut io, 9) & RTE_REMOTE_IRR, 0);
        // Still asserted, not EOId: nothing new.
        io.set_irq(9, true);
        assert_eq!(got.lock().unwrap().len(), 1);
        // The guest cannot clear remote IRR by writing the entry.
        write_entry(&mut io, 9, RTE_LEVEL | 0x29);
        assert_eq!(got.lock().unwrap().len(), 1);
        // EOI of another vector does nothing; of this one, with the line high, redelivers.
        io.eoi(0x30);
        assert_eq!(got.lock().unwrap().len(), 1);
        io.eoi(0x29);
        assert_eq!(got.lock().unwrap().len(), 2);
        // The device deasserts, the handler EOIs: remote IRR clears, nothing more.
        io.set_irq(9, false);
        io.eoi(0x29);
        assert_eq!(got.lock().unwrap().len(), 2);
        assert_eq!(read_entry(&mut io, 9) & RTE_REMOTE_IRR, 0);
        // The version 0x20 EOI register does the same.
        io.set_irq(9, true);
        io.write(IOEOI, &[0x29, 0, 0, 0]);
        assert_eq!(got.lock().unwrap().len(), 4);
        // Linux's clear_IO_APIC_pin: a stuck remote IRR is cleared by switching to edge, masked.
        io.set_irq(9, false);
        assert_ne!(read_entry(&mut io, 9) & RTE_REMOTE_IRR, 0);
        write_entry(&mut io, 9, RTE_MASKED | 0x29);
        write_entry(&mut io, 9, RTE_MASKED | RTE_LEVEL | 0x29);
        assert_eq!(read_entry(&mut io, 9) & RTE_REMOTE_IRR, 0);
        assert_eq!(got.lock().unwrap().len(), 4);
    }

    #[test]
    fn edge_triggered_masking_and_decoding() {
        let (mut io, got) = ioapic();
        // The PIT through the ISA override (GSI 2), logical lowest-priority to CPUs 0xff.
        let e = (0xffu64 << RTE_DEST_SHIFT)
            | RTE_DEST_LOGICAL
            | (u64::from(DM_LOWEST_PRIORITY) << RTE_DELIVERY_MODE_SHIFT)
            | 0x30;
        write_entry(&mut io, 2, e);
        assert_eq!(read_entry(&mut io, 2), e);
        io.set_irq(2, true);
        io.set_irq(2, true); // no edge
        io.set_irq(2, false);
        io.set_irq(2, true);
        io.set_irq(2, false);
        let all = got.lock().unwrap().clone();
        assert_eq!(all.len(), 2);
        assert_eq!(
            all[0],
            Delivery {
                gsi: 2,
                vector: 0x30,
                dest: 0xff,
                dest_mode_logical: true,
                delivery_mode: DM_LOWEST_PRIORITY,
                level: false,
            }
        );
        // Edge entries have no remote IRR; EOIs do not touch them.
        assert_eq!(read_entry(&mut io, 2) & RTE_REMOTE_IRR, 0);
        io.eoi(0x30);
        assert_eq!(got.lock().unwrap().len(), 2);
        // An edge while masked is delivered on unmask, once.
        write_entry(&mut io, 2, e | RTE_MASKED);
        io.set_irq(2, true);
        io.set_irq(2, false);
        assert_eq!(got.lock().unwrap().len(), 2);
        write_entry(&mut io, 2, e);
        assert_eq!(got.lock().unwrap().len(), 3);
        write_entry(&mut io, 2, e);
        assert_eq!(got.lock().unwrap().len(), 3);
        // Read-only and reserved bits do not stick.
        write_entry(&mut io, 3, 0x00ff_ffff_ffff_ffff);
        assert_eq!(
            read_entry(&mut io, 3),
            0x1_ffff & !(RTE_DELIVERY_STATUS | RTE_REMOTE_IRR)
        );
    }

    #[test]
    fn out_of_range_and_state_round_trip() {
        let (mut io, got) = ioapic();
        io.set_irq(24, true);
        io.set_irq(u32::MAX, true);
        reg_write(&mut io, REG_REDIR_BASE + 2 * IOAPIC_PINS as u8, 0);
        writel(&mut io, 0x20, 5);
        assert_eq!(readl(&mut io, 0x20), 0);
        // A partial IOWIN write is ignored.
        writel(&mut io, IOREGSEL, u32::from(REG_REDIR_BASE));
        io.write(IOWIN, &[0x41]);
        assert_eq!(read_entry(&mut io, 0), RTE_MASKED);
        write_entry(&mut io, 5, RTE_LEVEL | 0x25);
        io.set_irq(5, true);
        assert_eq!(got.lock().unwrap().len(), 1);
        let st = io.state();
        let mut copy = IoApic::from_state(st, Arc::new(|_| {}));
        assert_eq!(copy.state(), st);
        copy.reset();
        assert_eq!(copy.state().lines, 1 << 5);
        assert_eq!(copy.state().redir, [RTE_MASKED; IOAPIC_PINS]);
    }
}

//! A 16550A UART, the PC's COM1 (ports [`COM1_BASE`]`..+`[`COM1_LEN`], ISA IRQ [`COM1_IRQ`]).
//!
//! Our own model (not `vm-superio`'s), written to be read next to the 16550A datasheet.
//! Data enters from the guest as register writes at offsets 0..8 and from the host through
//! [`Serial::enqueue_input`]; it leaves as bytes written to the injected sink `W` (each byte is
//! written and flushed at once: transmission is instantaneous, so THRE/TEMT always read as set) and
//! as the level of the injected [`IrqLine`].
//!
//! Interrupts: the line is high exactly while an interrupt source enabled in IER is pending, low
//! otherwise (a PC routes it through an edge-triggered PIC input, so each new rising edge is one
//! interrupt). Sources, highest priority first:
//! - receiver line status (overrun) — [`IER_RLS`];
//! - received data available while the RX FIFO holds anything — [`IER_RDA`] (the FIFO trigger
//!   level and the character-timeout interrupt are not modelled: RDA fires from the first byte);
//! - transmitter holding register empty — [`IER_THRI`]: latched on a 0→1 edge of IER.THRI and
//!   after every THR write, cleared by a THR write or by reading IIR while it is the reported
//!   source. Linux's 8250 driver relies on this at startup (it enables THRI, reads IIR, clears IER,
//!   enables THRI again, and expects IIR to report THRE both times);
//! - modem status change (delta bits in MSR) — [`IER_MSI`].
//!
//! MCR.OUT2, which gates the IRQ on a real PC board, is not modelled (as in QEMU).
//! Loopback (MCR bit 4) routes THR writes into the RX FIFO and MCR's outputs into MSR's inputs,
//! which Linux uses to detect the UART. The receive queue behaves the same with FIFOs enabled or
//! not (a 16450-mode guest that reads slowly sees no overrun).
//!
//! ```
//! use std::sync::Arc;
//! use kemu::devices::serial::{Serial, DATA, LSR, LSR_THRE};
//! use kemu::devices::{BusDevice, NoIrq};
//!
//! let mut uart = Serial::new(Vec::new(), Arc::new(NoIrq));
//! let mut lsr = [0];
//! uart.read(LSR, &mut lsr);
//! assert_ne!(lsr[0] & LSR_THRE, 0, "always ready to send");
//! uart.write(DATA, b"A");
//! assert_eq!(uart.sink(), b"A");
//! ```

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Arc;

use super::{BusDevice, IrqLine};

/// I/O port base of COM1.
pub const COM1_BASE: u16 = 0x3f8;
/// Number of ports the UART decodes.
pub const COM1_LEN: u64 = 8;
/// ISA IRQ of COM1.
pub const COM1_IRQ: u32 = 4;

/// Host input bytes the RX FIFO holds before [`Serial::enqueue_input`] refuses more. A real 16550A
/// has 16; we hold more so pasted text is not lost while a polling guest catches up.
pub const RX_FIFO_CAP: usize = 4096;

/// Offset 0, DLAB=0: receiver buffer (read) / transmitter holding register (write).
pub const DATA: u64 = 0;
/// Offset 1, DLAB=0: interrupt enable register.
pub const IER: u64 = 1;
/// Offset 2: interrupt identification (read) / FIFO control (write).
pub const IIR_FCR: u64 = 2;
/// Offset 3: line control register.
pub const LCR: u64 = 3;
/// Offset 4: modem control register.
pub const MCR: u64 = 4;
/// Offset 5: line status register (read only).
pub const LSR: u64 = 5;
/// Offset 6: modem status register (read only).
pub const MSR: u64 = 6;
/// Offset 7: scratch register.
pub const SCR: u64 = 7;

/// IER: interrupt when received data is available.
pub const IER_RDA: u8 = 0b0000_0001;
/// IER: interrupt when the transmitter holding register is empty.
pub const IER_THRI: u8 = 0b0000_0010;
/// IER: interrupt on receiver line status (errors, overrun).
pub const IER_RLS: u8 = 0b0000_0100;
/// IER: interrupt on modem status change.
pub const IER_MSI: u8 = 0b0000_1000;
/// IER bits a 16550A implements (the rest read as 0; Linux probes bit 6 to spot XScale UARTs).
const IER_MASK: u8 = 0b0000_1111;

/// IIR: no interrupt pending.
pub const IIR_NO_INT: u8 = 0b0000_0001;
/// IIR id: modem status change.
pub const IIR_MSI: u8 = 0b0000_0000;
/// IIR id: transmitter holding register empty.
pub const IIR_THRI: u8 = 0b0000_0010;
/// IIR id: received data available.
pub const IIR_RDA: u8 = 0b0000_0100;
/// IIR id: receiver line status.
pub const IIR_RLS: u8 = 0b0000_0110;
/// IIR bits 6-7: both set when the FIFOs are enabled (what identifies a 16550A, not a 16550).
pub const IIR_FIFO_ENABLED: u8 = 0b1100_0000;

/// FCR: enable the FIFOs.
pub const FCR_ENABLE: u8 = 0b0000_0001;
/// FCR: clear the receive FIFO (self-clearing).
pub const FCR_CLEAR_RX: u8 = 0b0000_0010;
/// FCR: clear the transmit FIFO (self-clearing; ours is always empty).
pub const FCR_CLEAR_TX: u8 = 0b0000_0100;

/// LCR: divisor latch access bit; offsets 0/1 become the divisor latch.
pub const LCR_DLAB: u8 = 0b1000_0000;

/// MCR: data terminal ready (loops back to MSR.DSR).
pub const MCR_DTR: u8 = 0b0000_0001;
/// MCR: request to send (loops back to MSR.CTS).
pub const MCR_RTS: u8 = 0b0000_0010;
/// MCR: user output 1 (loops back to MSR.RI).
pub const MCR_OUT1: u8 = 0b0000_0100;
/// MCR: user output 2, the PC's IRQ gate (loops back to MSR.DCD).
pub const MCR_OUT2: u8 = 0b0000_1000;
/// MCR: loopback mode.
pub const MCR_LOOP: u8 = 0b0001_0000;
/// MCR bits a 16550A implements.
const MCR_MASK: u8 = 0b0001_1111;

/// LSR: data ready (the RX FIFO is not empty).
pub const LSR_DR: u8 = 0b0000_0001;
/// LSR: overrun error (a host byte was dropped); cleared by reading LSR.
pub const LSR_OE: u8 = 0b0000_0010;
/// LSR: transmitter holding register empty.
pub const LSR_THRE: u8 = 0b0010_0000;
/// LSR: transmitter empty (holding and shift register).
pub const LSR_TEMT: u8 = 0b0100_0000;

/// MSR: delta CTS.
pub const MSR_DCTS: u8 = 0b0000_0001;
/// MSR: delta DSR.
pub const MSR_DDSR: u8 = 0b0000_0010;
/// MSR: trailing edge of RI.
pub const MSR_TERI: u8 = 0b0000_0100;
/// MSR: delta DCD.
pub const MSR_DDCD: u8 = 0b0000_1000;
/// MSR: clear to send.
pub const MSR_CTS: u8 = 0b0001_0000;
/// MSR: data set ready.
pub const MSR_DSR: u8 = 0b0010_0000;
/// MSR: ring indicator.
pub const MSR_RI: u8 = 0b0100_0000;
/// MSR: data carrier detect.
pub const MSR_DCD: u8 = 0b1000_0000;
/// The modem inputs outside loopback: a host terminal is always "connected" (as QEMU reports).
const MSR_CONNECTED: u8 = MSR_DCD | MSR_DSR | MSR_CTS;

/// Divisor after reset: 12, i.e. 9600 baud from the 1.8432 MHz clock.
const DEFAULT_DIVISOR: u16 = 12;
/// LCR after reset: 8 data bits, no parity, 1 stop bit.
const DEFAULT_LCR: u8 = 0b0000_0011;

/// Everything the guest can observe of the UART, for snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialState {
    /// Divisor latch (DLM:DLL).
    pub divisor: u16,
    /// Interrupt enable register.
    pub ier: u8,
    /// FIFO control bits that stick (enable, trigger level).
    pub fcr: u8,
    /// Line control register.
    pub lcr: u8,
    /// Modem control register.
    pub mcr: u8,
    /// Modem status register: current inputs and delta bits.
    pub msr: u8,
    /// Scratch register.
    pub scr: u8,
    /// A THRE interrupt is latched.
    pub thr_pending: bool,
    /// A byte was dropped since LSR was last read.
    pub overrun: bool,
    /// Bytes received and not yet read by the guest.
    pub rx: Vec<u8>,
}

impl Default for SerialState {
    fn default() -> Self {
        Self {
            divisor: DEFAULT_DIVISOR,
            ier: 0,
            fcr: 0,
            lcr: DEFAULT_LCR,
            mcr: 0,
            msr: MSR_CONNECTED,
            scr: 0,
            thr_pending: false,
            overrun: false,
            rx: Vec::new(),
        }
    }
}

/// A 16550A UART writing its output to `W` and signalling on an [`IrqLine`].
pub struct Serial<W: Write + Send> {
    state: SerialState,
    rx: VecDeque<u8>,
    out: W,
    irq: Arc<dyn IrqLine>,
    irq_level: bool,
}

impl<W: Write + Send> Serial<W> {
    /// A UART in its reset state, transmitting to `out`, interrupting on `irq`.
    pub fn new(out: W, irq: Arc<dyn IrqLine>) -> Self {
        Self::from_state(SerialState::default(), out, irq)
    }

    /// A UART resumed from `state`. The line is driven to match the restored state.
    pub fn from_state(state: SerialState, out: W, irq: Arc<dyn IrqLine>) -> Self {
        let rx = state.rx.iter().copied().collect();
        let mut s = Self {
            state: SerialState {
                rx: Vec::new(),
                ..state
            },
            rx,
            out,
            irq,
            irq_level: false,
        };
        s.irq.set_level(false);
        s.update_irq();
        s
    }

    /// Back to the power-on state (machine reset); queued host input is dropped.
    pub fn reset(&mut self) {
        self.state = SerialState::default();
        self.rx.clear();
        self.update_irq();
    }

    /// A copy of the guest-visible state.
    pub fn state(&self) -> SerialState {
        SerialState {
            rx: self.rx.iter().copied().collect(),
            ..self.state.clone()
        }
    }

    /// Queue host input for the guest; returns how many bytes were taken (fewer than
    /// `bytes.len()` only when [`RX_FIFO_CAP`] bytes are already waiting: retry the rest later,
    /// or drop them — a stdin reader must not block on a guest that never reads, or `Ctrl-A x`
    /// would go unheard).
    /// Raises the RDA interrupt if enabled. In loopback mode the receiver is disconnected from
    /// the wire, so the bytes are consumed and dropped, as on real hardware.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        if self.state.mcr & MCR_LOOP != 0 {
            return bytes.len();
        }
        let room = RX_FIFO_CAP.saturating_sub(self.rx.len());
        let n = room.min(bytes.len());
        self.rx.extend(&bytes[..n]);
        self.update_irq();
        n
    }

    /// Whether the guest has drained everything queued (lets a caller pace its input).
    pub fn rx_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// The sink, e.g. to inspect captured output in tests.
    pub fn sink(&self) -> &W {
        &self.out
    }

    fn dlab(&self) -> bool {
        self.state.lcr & LCR_DLAB != 0
    }

    /// The highest-priority pending interrupt enabled in IER, as an IIR id.
    fn pending(&self) -> Option<u8> {
        let ier = self.state.ier;
        if ier & IER_RLS != 0 && self.state.overrun {
            Some(IIR_RLS)
        } else if ier & IER_RDA != 0 && !self.rx.is_empty() {
            Some(IIR_RDA)
        } else if ier & IER_THRI != 0 && self.state.thr_pending {
            Some(IIR_THRI)
        } else if ier & IER_MSI != 0 && self.state.msr & 0x0f != 0 {
            Some(IIR_MSI)
        } else {
            None
        }
    }

    fn update_irq(&mut self) {
        let level = self.pending().is_some();
        if level != self.irq_level {
            self.irq_level = level;
            self.irq.set_level(level);
        }
    }

    fn transmit(&mut self, byte: u8) {
        // The holding register is full for an instant: drop the THRE source, then the byte
        // is gone and THRE is back, which makes a fresh edge for an edge-triggered PIC.
        self.state.thr_pending = false;
        self.update_irq();
        if self.state.mcr & MCR_LOOP != 0 {
            if self.rx.len() < RX_FIFO_CAP {
                self.rx.push_back(byte);
            } else {
                self.state.overrun = true;
            }
        } else if let Err(e) = self.out.write_all(&[byte]).and_then(|()| self.out.flush()) {
            log::warn!("serial: output sink failed: {e}");
        }
        self.state.thr_pending = true;
        self.update_irq();
    }

    /// MSR's input bits implied by MCR in loopback mode, or the connected-terminal inputs.
    fn modem_inputs(mcr: u8) -> u8 {
        if mcr & MCR_LOOP == 0 {
            return MSR_CONNECTED;
        }
        let mut m = 0;
        if mcr & MCR_RTS != 0 {
            m |= MSR_CTS;
        }
        if mcr & MCR_DTR != 0 {
            m |= MSR_DSR;
        }
        if mcr & MCR_OUT1 != 0 {
            m |= MSR_RI;
        }
        if mcr & MCR_OUT2 != 0 {
            m |= MSR_DCD;
        }
        m
    }

    fn write_mcr(&mut self, value: u8) {
        self.state.mcr = value & MCR_MASK;
        let old = self.state.msr & 0xf0;
        let new = Self::modem_inputs(self.state.mcr);
        let changed = old ^ new;
        let mut delta = self.state.msr & 0x0f;
        if changed & MSR_CTS != 0 {
            delta |= MSR_DCTS;
        }
        if changed & MSR_DSR != 0 {
            delta |= MSR_DDSR;
        }
        if old & MSR_RI != 0 && new & MSR_RI == 0 {
            delta |= MSR_TERI;
        }
        if changed & MSR_DCD != 0 {
            delta |= MSR_DDCD;
        }
        self.state.msr = new | delta;
    }

    fn read_reg(&mut self, offset: u64) -> u8 {
        match offset {
            DATA if self.dlab() => self.state.divisor as u8,
            DATA => {
                let b = self.rx.pop_front().unwrap_or(0);
                self.update_irq();
                b
            }
            IER if self.dlab() => (self.state.divisor >> 8) as u8,
            IER => self.state.ier,
            IIR_FCR => {
                let fifo = if self.state.fcr & FCR_ENABLE != 0 {
                    IIR_FIFO_ENABLED
                } else {
                    0
                };
                match self.pending() {
                    Some(id) => {
                        if id == IIR_THRI {
                            self.state.thr_pending = false;
                            self.update_irq();
                        }
                        fifo | id
                    }
                    None => fifo | IIR_NO_INT,
                }
            }
            LCR => self.state.lcr,
            MCR => self.state.mcr,
            LSR => {
                let mut lsr = LSR_THRE | LSR_TEMT;
                if !self.rx.is_empty() {
                    lsr |= LSR_DR;
                }
                if self.state.overrun {
                    lsr |= LSR_OE;
                    self.state.overrun = false;
                    self.update_irq();
                }
                lsr
            }
            MSR => {
                let msr = self.state.msr;
                self.state.msr &= 0xf0;
                self.update_irq();
                msr
            }
            SCR => self.state.scr,
            _ => 0xff,
        }
    }

    fn write_reg(&mut self, offset: u64, value: u8) {
        match offset {
            DATA if self.dlab() => {
                self.state.divisor = (self.state.divisor & 0xff00) | u16::from(value);
            }
            DATA => self.transmit(value),
            IER if self.dlab() => {
                self.state.divisor = (self.state.divisor & 0x00ff) | (u16::from(value) << 8);
            }
            IER => {
                let old = self.state.ier;
                self.state.ier = value & IER_MASK;
                // Our transmitter is always empty, so a rising THRI edge latches THRE.
                if old & IER_THRI == 0 && self.state.ier & IER_THRI != 0 {
                    self.state.thr_pending = true;
                }
                if self.state.ier & IER_THRI == 0 {
                    self.state.thr_pending = false;
                }
                self.update_irq();
            }
            IIR_FCR => {
                if value & FCR_CLEAR_RX != 0 {
                    self.rx.clear();
                }
                // Enabling or disabling the FIFOs empties them on a 16550A.
                if (value ^ self.state.fcr) & FCR_ENABLE != 0 {
                    self.rx.clear();
                }
                self.state.fcr = value & !(FCR_CLEAR_RX | FCR_CLEAR_TX);
                self.update_irq();
            }
            LCR => self.state.lcr = value,
            MCR => {
                self.write_mcr(value);
                self.update_irq();
            }
            SCR => self.state.scr = value,
            // LSR and MSR are read only.
            _ => {}
        }
    }
}

impl<W: Write + Send> BusDevice for Serial<W> {
    // The UART is a byte device: a wider access is split into byte accesses to consecutive
    // registers, as the ISA bus does.
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        for (i, d) in data.iter_mut().enumerate() {
            *d = self.read_reg(offset + i as u64);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        for (i, &v) in data.iter().enumerate() {
            self.write_reg(offset + i as u64, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    #[derive(Default)]
    struct Line {
        level: AtomicBool,
        rises: AtomicUsize,
    }
    impl IrqLine for Line {
        fn set_level(&self, level: bool) {
            if level && !self.level.load(Ordering::SeqCst) {
                self.rises.fetch_add(1, Ordering::SeqCst);
            }
            self.level.store(level, Ordering::SeqCst);
        }
    }
    impl Line {
        fn high(&self) -> bool {
            self.level.load(Ordering::SeqCst)
        }
    }

    fn uart() -> (Serial<Vec<u8>>, Arc<Line>) {
        let line = Arc::new(Line::default());
        (Serial::new(Vec::new(), line.clone()), line)
    }

    fn rd(s: &mut Serial<Vec<u8>>, off: u64) -> u8 {
        let mut b = [0];
        s.read(off, &mut b);
        b[0]
    }

    fn wr(s: &mut Serial<Vec<u8>>, off: u64, v: u8) {
        s.write(off, &[v]);
    }

    #[test]
    fn output_is_byte_exact_and_lsr_always_ready() {
        let (mut s, line) = uart();
        for &b in b"hi\n\0\xff" {
            assert_eq!(rd(&mut s, LSR) & (LSR_THRE | LSR_TEMT), LSR_THRE | LSR_TEMT);
            wr(&mut s, DATA, b);
        }
        assert_eq!(s.sink(), b"hi\n\0\xff");
        assert!(!line.high());
    }

    #[test]
    fn divisor_latch_hides_data_and_ier() {
        let (mut s, _) = uart();
        wr(&mut s, IER, 0x05);
        wr(&mut s, LCR, LCR_DLAB | 3);
        wr(&mut s, DATA, 0x01);
        wr(&mut s, IER, 0x00);
        assert_eq!(rd(&mut s, DATA), 0x01);
        assert_eq!(rd(&mut s, IER), 0x00);
        wr(&mut s, LCR, 3);
        assert_eq!(rd(&mut s, IER), 0x05);
        assert_eq!(s.state().divisor, 1);
        assert!(s.sink().is_empty());
    }

    #[test]
    fn wide_accesses_split_into_registers() {
        let (mut s, _) = uart();
        s.write(LCR, &[3, 0x0b]);
        assert_eq!(rd(&mut s, MCR), 0x0b);
        let mut w = [0u8; 2];
        s.read(LCR, &mut w);
        assert_eq!(w, [3, 0x0b]);
    }

    #[test]
    fn ier_masks_unimplemented_bits() {
        let (mut s, _) = uart();
        wr(&mut s, IER, 0xff);
        assert_eq!(rd(&mut s, IER), 0x0f);
    }

    #[test]
    fn fifo_enable_shows_in_iir() {
        let (mut s, _) = uart();
        assert_eq!(rd(&mut s, IIR_FCR), IIR_NO_INT);
        wr(&mut s, IIR_FCR, FCR_ENABLE);
        assert_eq!(rd(&mut s, IIR_FCR), IIR_FIFO_ENABLED | IIR_NO_INT);
    }

    #[test]
    fn linux_thre_probe_sees_thre_twice() {
        // serial8250_do_startup's UART_BUG_THRE test.
        let (mut s, line) = uart();
        wr(&mut s, IER, IER_THRI);
        assert!(line.high());
        let iir1 = rd(&mut s, IIR_FCR);
        assert_eq!(iir1 & 0x0f, IIR_THRI);
        assert!(!line.high());
        wr(&mut s, IER, 0);
        wr(&mut s, IER, IER_THRI);
        let iir = rd(&mut s, IIR_FCR);
        assert_eq!(iir & IIR_NO_INT, 0);
        // Read once, the source is gone until the next THR write.
        assert_eq!(rd(&mut s, IIR_FCR) & 0x0f, IIR_NO_INT);
        let before = line.rises.load(Ordering::SeqCst);
        wr(&mut s, DATA, b'x');
        assert!(line.high());
        assert_eq!(line.rises.load(Ordering::SeqCst), before + 1);
        wr(&mut s, IER, 0);
        assert!(!line.high());
    }

    #[test]
    fn input_raises_rda_until_drained() {
        let (mut s, line) = uart();
        assert_eq!(s.enqueue_input(b"ab"), 2);
        assert_eq!(rd(&mut s, LSR) & LSR_DR, LSR_DR);
        assert!(!line.high(), "RDA not enabled yet");
        wr(&mut s, IER, IER_RDA);
        assert!(line.high());
        assert_eq!(rd(&mut s, IIR_FCR) & 0x0f, IIR_RDA);
        assert_eq!(rd(&mut s, DATA), b'a');
        assert!(line.high());
        assert_eq!(rd(&mut s, DATA), b'b');
        assert!(!line.high());
        assert_eq!(rd(&mut s, LSR) & LSR_DR, 0);
        assert!(s.rx_empty());
    }

    #[test]
    fn input_is_bounded() {
        let (mut s, _) = uart();
        let big = vec![b'z'; RX_FIFO_CAP + 10];
        assert_eq!(s.enqueue_input(&big), RX_FIFO_CAP);
        assert_eq!(s.enqueue_input(b"q"), 0);
        rd(&mut s, DATA);
        assert_eq!(s.enqueue_input(b"q"), 1);
    }

    #[test]
    fn fcr_clears_rx() {
        let (mut s, _) = uart();
        s.enqueue_input(b"abc");
        wr(&mut s, IIR_FCR, FCR_ENABLE | FCR_CLEAR_RX);
        assert!(s.rx_empty());
        assert_eq!(rd(&mut s, IIR_FCR), IIR_FIFO_ENABLED | IIR_NO_INT);
    }

    #[test]
    fn loopback_as_linux_autoconfig_probes_it() {
        let (mut s, _) = uart();
        assert_eq!(rd(&mut s, MSR) & 0xf0, MSR_CONNECTED);
        wr(&mut s, MCR, MCR_LOOP | 0x0a);
        assert_eq!(rd(&mut s, MSR) & 0xf0, MSR_CTS | MSR_DCD);
        wr(&mut s, MCR, MCR_LOOP);
        wr(&mut s, DATA, 0x5a);
        assert!(s.sink().is_empty());
        assert_eq!(rd(&mut s, LSR) & LSR_DR, LSR_DR);
        assert_eq!(rd(&mut s, DATA), 0x5a);
        // Host input is not heard in loopback.
        s.enqueue_input(b"x");
        assert!(s.rx_empty());
        wr(&mut s, MCR, 0);
        assert_eq!(rd(&mut s, MSR) & 0xf0, MSR_CONNECTED);
    }

    #[test]
    fn modem_status_interrupt_and_delta_clear() {
        let (mut s, line) = uart();
        wr(&mut s, MCR, MCR_LOOP);
        rd(&mut s, MSR);
        wr(&mut s, IER, IER_MSI);
        assert!(!line.high());
        wr(&mut s, MCR, MCR_LOOP | MCR_RTS);
        assert!(line.high());
        assert_eq!(rd(&mut s, IIR_FCR) & 0x0f, IIR_MSI);
        assert_eq!(rd(&mut s, MSR), MSR_CTS | MSR_DCTS);
        assert!(!line.high());
    }

    #[test]
    fn scratch_and_state_round_trip() {
        let (mut s, _) = uart();
        wr(&mut s, SCR, 0xa5);
        wr(&mut s, IER, IER_RDA | IER_THRI);
        s.enqueue_input(b"k");
        let st = s.state();
        let line = Arc::new(Line::default());
        let mut t = Serial::from_state(st.clone(), Vec::new(), line.clone());
        assert!(line.high());
        assert_eq!(t.state(), st);
        assert_eq!(rd(&mut t, SCR), 0xa5);
        assert_eq!(rd(&mut t, DATA), b'k');
    }
}

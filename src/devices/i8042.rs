//! The i8042 keyboard controller, with no keyboard and no mouse plugged in.
//!
//! Ports: data at [`DATA_PORT`] (0x60), status/command at [`COMMAND_PORT`] (0x64). The two ports
//! are not contiguous (0x61 is [`super::port61`]), so the machine registers two one-port handles
//! from [`bus_ports`], each at length [`PORT_LEN`]. [`I8042`] itself is also a [`BusDevice`] whose
//! offset 0 is the data port and offset 4 the command port (for a bus without port 0x61).
//!
//! Data enters as guest port accesses; it leaves as bytes in the output buffer (read at 0x60),
//! the levels of two injected [`IrqLine`]s (IRQ [`KBD_IRQ`] for keyboard-side bytes, IRQ
//! [`AUX_IRQ`] for mouse-side bytes, each gated by its command-byte enable bit) and
//! [`SystemEvent::Reset`] through the injected [`SystemEvents`] (command 0xFE, or an output-port
//! write with bit 0 clear).
//!
//! What it does is what Linux's i8042 driver needs to find the controller quickly and find no
//! devices without waiting on timeouts: the controller self/interface tests pass, the command
//! byte reads back, the AUX loop-back (0xD3) works so the AUX port is found, and every byte sent
//! to a device (keyboard: plain writes to 0x60; mouse: 0xD4) is answered at once with 0xFE and the
//! status timeout bit, the way a controller with nothing on the cable reports it, so `atkbd` and
//! `psmouse` give up without sleeping. The A20 gate (output port bit 1) is stored but not
//! modelled: A20 is always enabled.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::{BusDevice, IrqLine, SystemEvent, SystemEvents};

/// Data port (output buffer / device data).
pub const DATA_PORT: u16 = 0x60;
/// Status (read) / command (write) port.
pub const COMMAND_PORT: u16 = 0x64;
/// Length of each of the two port registrations.
pub const PORT_LEN: u64 = 1;
/// ISA IRQ for bytes from the keyboard side.
pub const KBD_IRQ: u32 = 1;
/// ISA IRQ for bytes from the AUX (mouse) side.
pub const AUX_IRQ: u32 = 12;

/// Offset of the data register when [`I8042`] is registered at 0x60 as one range.
pub const DATA: u64 = 0;
/// Offset of the status/command register when [`I8042`] is registered at 0x60 as one range.
pub const COMMAND: u64 = 4;

/// Status: output buffer full (a byte waits at 0x60).
pub const STS_OBF: u8 = 0b0000_0001;
/// Status: input buffer full (never: we consume every write at once).
pub const STS_IBF: u8 = 0b0000_0010;
/// Status: system flag (self-test passed, warm boot).
pub const STS_SYS: u8 = 0b0000_0100;
/// Status: the last write went to the command port (1) or the data port (0).
pub const STS_CMD: u8 = 0b0000_1000;
/// Status: keyboard not inhibited by the key lock.
pub const STS_UNLOCKED: u8 = 0b0001_0000;
/// Status: the byte in the output buffer came from the AUX device.
pub const STS_AUXDATA: u8 = 0b0010_0000;
/// Status: timeout talking to a device (none is connected).
pub const STS_TIMEOUT: u8 = 0b0100_0000;

/// Command byte: interrupt on keyboard bytes.
pub const CTR_KBDINT: u8 = 0b0000_0001;
/// Command byte: interrupt on AUX bytes.
pub const CTR_AUXINT: u8 = 0b0000_0010;
/// Command byte: system flag.
pub const CTR_SYS: u8 = 0b0000_0100;
/// Command byte: keyboard port disabled.
pub const CTR_KBDDIS: u8 = 0b0001_0000;
/// Command byte: AUX port disabled.
pub const CTR_AUXDIS: u8 = 0b0010_0000;
/// Command byte: translate set 2 scancodes to set 1.
pub const CTR_XLATE: u8 = 0b0100_0000;
/// Command byte after reset, as a PC BIOS leaves it: both interrupts on, translation on.
pub const CTR_DEFAULT: u8 = CTR_XLATE | CTR_SYS | CTR_AUXINT | CTR_KBDINT;

/// Output port: system reset line (active low).
pub const OUT_RESET: u8 = 0b0000_0001;
/// Output port: A20 gate.
pub const OUT_A20: u8 = 0b0000_0010;
/// Output port: keyboard output buffer full.
pub const OUT_OBF_KBD: u8 = 0b0001_0000;
/// Output port: AUX output buffer full.
pub const OUT_OBF_AUX: u8 = 0b0010_0000;

/// Command: read internal RAM byte 0 (the command byte); 0x21..0x3F read bytes 1..31.
pub const CMD_READ_CTR: u8 = 0x20;
/// Command: write internal RAM byte 0 (the command byte); 0x61..0x7F write bytes 1..31.
pub const CMD_WRITE_CTR: u8 = 0x60;
/// Command: disable the AUX port.
pub const CMD_AUX_DISABLE: u8 = 0xa7;
/// Command: enable the AUX port.
pub const CMD_AUX_ENABLE: u8 = 0xa8;
/// Command: AUX interface test (0x00 = passed).
pub const CMD_AUX_TEST: u8 = 0xa9;
/// Command: controller self-test (0x55 = passed).
pub const CMD_SELF_TEST: u8 = 0xaa;
/// Command: keyboard interface test (0x00 = passed).
pub const CMD_KBD_TEST: u8 = 0xab;
/// Command: disable the keyboard port.
pub const CMD_KBD_DISABLE: u8 = 0xad;
/// Command: enable the keyboard port.
pub const CMD_KBD_ENABLE: u8 = 0xae;
/// Command: read the input port.
pub const CMD_READ_INPUT: u8 = 0xc0;
/// Command: read the output port.
pub const CMD_READ_OUTPUT: u8 = 0xd0;
/// Command: write the output port (next data byte).
pub const CMD_WRITE_OUTPUT: u8 = 0xd1;
/// Command: put the next data byte in the output buffer as if from the keyboard.
pub const CMD_KBD_LOOP: u8 = 0xd2;
/// Command: put the next data byte in the output buffer as if from the AUX device.
pub const CMD_AUX_LOOP: u8 = 0xd3;
/// Command: send the next data byte to the AUX device.
pub const CMD_AUX_SEND: u8 = 0xd4;
/// Command: disable A20 (not modelled).
pub const CMD_A20_OFF: u8 = 0xdd;
/// Command: enable A20.
pub const CMD_A20_ON: u8 = 0xdf;
/// Command: read test inputs.
pub const CMD_READ_TEST: u8 = 0xe0;
/// Command: pulse the output lines whose bits (0..3) are clear; bit 0 is the reset line.
pub const CMD_PULSE_BASE: u8 = 0xf0;
/// Command: pulse the reset line.
pub const CMD_RESET: u8 = 0xfe;

/// What a device with nothing connected answers: "resend", with [`STS_TIMEOUT`].
pub const NO_DEVICE_REPLY: u8 = 0xfe;
/// Self-test passed.
const SELF_TEST_OK: u8 = 0x55;
/// Bytes the output queue holds; a guest that never reads cannot grow it further.
const OUT_QUEUE_CAP: usize = 16;

/// Where the next byte written to the data port goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DataTarget {
    /// To the keyboard device.
    #[default]
    Keyboard,
    /// Internal RAM byte `n` (0 = command byte).
    Ram(u8),
    /// The output port.
    OutputPort,
    /// The output buffer, tagged as keyboard data.
    KbdLoop,
    /// The output buffer, tagged as AUX data.
    AuxLoop,
    /// The AUX device.
    Aux,
}

/// Everything the guest can observe of the controller, for snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct I8042State {
    /// Internal RAM; byte 0 is the command byte.
    pub ram: [u8; 32],
    /// Output port.
    pub output_port: u8,
    /// Status bits that are stored rather than derived (SYS, CMD, TIMEOUT).
    pub status: u8,
    /// Pending destination of the next data-port write.
    pub target: DataTarget,
    /// Output buffer: bytes and whether each came from the AUX side.
    pub out: Vec<(u8, bool)>,
    /// The last byte read from the output buffer (what an empty buffer reads as).
    pub last_out: u8,
}

impl Default for I8042State {
    fn default() -> Self {
        let mut ram = [0; 32];
        ram[0] = CTR_DEFAULT;
        Self {
            ram,
            output_port: OUT_RESET | OUT_A20,
            status: STS_SYS,
            target: DataTarget::Keyboard,
            out: Vec::new(),
            last_out: 0,
        }
    }
}

/// The keyboard controller.
pub struct I8042 {
    state: I8042State,
    out: VecDeque<(u8, bool)>,
    kbd_irq: Arc<dyn IrqLine>,
    aux_irq: Arc<dyn IrqLine>,
    events: Arc<dyn SystemEvents>,
    levels: (bool, bool),
}

impl I8042 {
    /// A controller in its reset state.
    pub fn new(
        kbd_irq: Arc<dyn IrqLine>,
        aux_irq: Arc<dyn IrqLine>,
        events: Arc<dyn SystemEvents>,
    ) -> Self {
        Self::from_state(I8042State::default(), kbd_irq, aux_irq, events)
    }

    /// A controller resumed from `state`.
    pub fn from_state(
        state: I8042State,
        kbd_irq: Arc<dyn IrqLine>,
        aux_irq: Arc<dyn IrqLine>,
        events: Arc<dyn SystemEvents>,
    ) -> Self {
        let out = state.out.iter().copied().collect();
        let mut dev = Self {
            state: I8042State {
                out: Vec::new(),
                ..state
            },
            out,
            kbd_irq,
            aux_irq,
            events,
            levels: (false, false),
        };
        dev.kbd_irq.set_level(false);
        dev.aux_irq.set_level(false);
        dev.update_irq();
        dev
    }

    /// Back to the power-on state (machine reset).
    pub fn reset(&mut self) {
        self.state = I8042State::default();
        self.out.clear();
        self.update_irq();
    }

    /// A copy of the guest-visible state.
    pub fn state(&self) -> I8042State {
        I8042State {
            out: self.out.iter().copied().collect(),
            ..self.state.clone()
        }
    }

    fn ctr(&self) -> u8 {
        self.state.ram[0]
    }

    fn push(&mut self, byte: u8, aux: bool) {
        if self.out.len() < OUT_QUEUE_CAP {
            self.out.push_back((byte, aux));
        }
        self.update_irq();
    }

    fn update_irq(&mut self) {
        let (kbd, aux) = match self.out.front() {
            Some(&(_, false)) => (self.ctr() & CTR_KBDINT != 0, false),
            Some(&(_, true)) => (false, self.ctr() & CTR_AUXINT != 0),
            None => (false, false),
        };
        if kbd != self.levels.0 {
            self.kbd_irq.set_level(kbd);
        }
        if aux != self.levels.1 {
            self.aux_irq.set_level(aux);
        }
        self.levels = (kbd, aux);
    }

    /// The status register.
    pub fn read_status(&self) -> u8 {
        let mut s = self.state.status | STS_UNLOCKED;
        if let Some(&(_, aux)) = self.out.front() {
            s |= STS_OBF;
            if aux {
                s |= STS_AUXDATA;
            }
        }
        s
    }

    /// A read of the data port: the next output byte (the last one again if the buffer is empty,
    /// as real controllers do).
    pub fn read_data(&mut self) -> u8 {
        // Drop both lines so a following byte makes a fresh edge on an edge-triggered PIC.
        for (level, line) in [
            (&mut self.levels.0, &self.kbd_irq),
            (&mut self.levels.1, &self.aux_irq),
        ] {
            if *level {
                line.set_level(false);
                *level = false;
            }
        }
        let byte = match self.out.pop_front() {
            Some((b, _)) => {
                self.state.last_out = b;
                b
            }
            None => self.state.last_out,
        };
        self.state.status &= !STS_TIMEOUT;
        self.update_irq();
        byte
    }

    /// A write to the command port.
    pub fn write_command(&mut self, cmd: u8) {
        self.state.status |= STS_CMD;
        self.state.target = DataTarget::Keyboard;
        match cmd {
            0x20..=0x3f => self.push(self.state.ram[usize::from(cmd & 0x1f)], false),
            0x60..=0x7f => self.state.target = DataTarget::Ram(cmd & 0x1f),
            CMD_AUX_DISABLE => self.state.ram[0] |= CTR_AUXDIS,
            CMD_AUX_ENABLE => self.state.ram[0] &= !CTR_AUXDIS,
            CMD_AUX_TEST | CMD_KBD_TEST => self.push(0x00, false),
            CMD_SELF_TEST => {
                self.state.status |= STS_SYS;
                self.push(SELF_TEST_OK, false);
            }
            CMD_KBD_DISABLE => self.state.ram[0] |= CTR_KBDDIS,
            CMD_KBD_ENABLE => self.state.ram[0] &= !CTR_KBDDIS,
            // Input port: bit 7 = keyboard not inhibited, bit 4 = 512K+ on board (AT heritage).
            CMD_READ_INPUT => self.push(0xb0, false),
            CMD_READ_OUTPUT => {
                let mut p = self.state.output_port & !(OUT_OBF_KBD | OUT_OBF_AUX);
                match self.out.front() {
                    Some(&(_, false)) => p |= OUT_OBF_KBD,
                    Some(&(_, true)) => p |= OUT_OBF_AUX,
                    None => {}
                }
                self.push(p, false);
            }
            CMD_WRITE_OUTPUT => self.state.target = DataTarget::OutputPort,
            CMD_KBD_LOOP => self.state.target = DataTarget::KbdLoop,
            CMD_AUX_LOOP => self.state.target = DataTarget::AuxLoop,
            CMD_AUX_SEND => self.state.target = DataTarget::Aux,
            CMD_A20_OFF => self.state.output_port &= !OUT_A20,
            CMD_A20_ON => self.state.output_port |= OUT_A20,
            CMD_READ_TEST => self.push(0x00, false),
            CMD_PULSE_BASE..=0xff => {
                if cmd & OUT_RESET == 0 {
                    self.events.request(SystemEvent::Reset);
                }
            }
            _ => log::debug!("i8042: ignoring command {cmd:#04x}"),
        }
        self.update_irq();
    }

    /// A write to the data port.
    pub fn write_data(&mut self, byte: u8) {
        self.state.status &= !STS_CMD;
        let target = std::mem::take(&mut self.state.target);
        match target {
            DataTarget::Ram(n) => self.state.ram[usize::from(n)] = byte,
            DataTarget::OutputPort => {
                self.state.output_port = byte;
                if byte & OUT_RESET == 0 {
                    self.events.request(SystemEvent::Reset);
                }
            }
            DataTarget::KbdLoop => self.push(byte, false),
            DataTarget::AuxLoop => self.push(byte, true),
            DataTarget::Keyboard | DataTarget::Aux => {
                self.state.status |= STS_TIMEOUT;
                self.push(NO_DEVICE_REPLY, target == DataTarget::Aux);
            }
        }
        self.update_irq();
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        let value = match offset {
            DATA => self.read_data(),
            COMMAND => self.read_status(),
            _ => return,
        };
        if let Some(b) = data.first_mut() {
            *b = value;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else { return };
        match offset {
            DATA => self.write_data(value),
            COMMAND => self.write_command(value),
            _ => {}
        }
    }
}

/// One of the controller's two ports, as its own one-byte bus device.
pub struct I8042Port {
    dev: Arc<Mutex<I8042>>,
    offset: u64,
}

impl BusDevice for I8042Port {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        let mut dev = self.dev.lock().unwrap_or_else(|e| e.into_inner());
        dev.read(self.offset, data);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        let mut dev = self.dev.lock().unwrap_or_else(|e| e.into_inner());
        dev.write(self.offset, data);
    }
}

/// The two port handles to register, as `(device, port)`: register each at `port` with length
/// [`PORT_LEN`]. Keep `dev` to take snapshots.
pub fn bus_ports(dev: &Arc<Mutex<I8042>>) -> [(I8042Port, u16); 2] {
    [
        (
            I8042Port {
                dev: dev.clone(),
                offset: DATA,
            },
            DATA_PORT,
        ),
        (
            I8042Port {
                dev: dev.clone(),
                offset: COMMAND,
            },
            COMMAND_PORT,
        ),
    ]
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// Records requested events.
    #[derive(Default)]
    pub(crate) struct Events(pub Mutex<Vec<SystemEvent>>);
    impl SystemEvents for Events {
        fn request(&self, event: SystemEvent) {
            self.0.lock().unwrap().push(event);
        }
    }

    #[derive(Default)]
    struct Line(AtomicBool);
    impl IrqLine for Line {
        fn set_level(&self, level: bool) {
            self.0.store(level, Ordering::SeqCst);
        }
    }

    struct Rig {
        dev: I8042,
        kbd: Arc<Line>,
        aux: Arc<Line>,
        ev: Arc<Events>,
    }

    fn rig() -> Rig {
        let (kbd, aux, ev) = (
            Arc::new(Line::default()),
            Arc::new(Line::default()),
            Arc::new(Events::default()),
        );
        let dev = I8042::new(kbd.clone(), aux.clone(), ev.clone());
        Rig { dev, kbd, aux, ev }
    }

    fn cmd(r: &mut Rig, c: u8) -> Option<u8> {
        r.dev.write_command(c);
        (r.dev.read_status() & STS_OBF != 0).then(|| r.dev.read_data())
    }

    #[test]
    fn self_and_interface_tests_pass() {
        let mut r = rig();
        assert_eq!(r.dev.read_status() & STS_OBF, 0);
        assert_eq!(cmd(&mut r, CMD_SELF_TEST), Some(0x55));
        assert_eq!(cmd(&mut r, CMD_KBD_TEST), Some(0x00));
        assert_eq!(cmd(&mut r, CMD_AUX_TEST), Some(0x00));
        assert_eq!(r.dev.read_status() & (STS_OBF | STS_IBF), 0);
    }

    #[test]
    fn command_byte_round_trips_and_port_toggles() {
        let mut r = rig();
        assert_eq!(cmd(&mut r, CMD_READ_CTR), Some(CTR_DEFAULT));
        r.dev.write_command(CMD_WRITE_CTR);
        r.dev.write_data(0x45);
        assert_eq!(cmd(&mut r, CMD_READ_CTR), Some(0x45));
        cmd(&mut r, CMD_KBD_DISABLE);
        cmd(&mut r, CMD_AUX_DISABLE);
        assert_eq!(
            cmd(&mut r, CMD_READ_CTR),
            Some(0x45 | CTR_KBDDIS | CTR_AUXDIS)
        );
        cmd(&mut r, CMD_KBD_ENABLE);
        cmd(&mut r, CMD_AUX_ENABLE);
        assert_eq!(cmd(&mut r, CMD_READ_CTR), Some(0x45));
    }

    #[test]
    fn aux_loop_sets_auxdata_and_irq12() {
        let mut r = rig();
        r.dev.write_command(CMD_AUX_LOOP);
        r.dev.write_data(0x5a);
        assert_eq!(
            r.dev.read_status() & (STS_OBF | STS_AUXDATA),
            STS_OBF | STS_AUXDATA
        );
        assert!(r.aux.0.load(Ordering::SeqCst));
        assert!(!r.kbd.0.load(Ordering::SeqCst));
        assert_eq!(r.dev.read_data(), 0x5a);
        assert!(!r.aux.0.load(Ordering::SeqCst));
    }

    #[test]
    fn absent_devices_answer_at_once() {
        let mut r = rig();
        r.dev.write_data(0xf2); // keyboard GET ID
        assert_eq!(
            r.dev.read_status() & (STS_OBF | STS_TIMEOUT),
            STS_OBF | STS_TIMEOUT
        );
        assert!(r.kbd.0.load(Ordering::SeqCst));
        assert_eq!(r.dev.read_data(), NO_DEVICE_REPLY);
        assert_eq!(r.dev.read_status() & STS_TIMEOUT, 0);
        r.dev.write_command(CMD_AUX_SEND);
        r.dev.write_data(0xff);
        assert_eq!(r.dev.read_status() & STS_AUXDATA, STS_AUXDATA);
        assert_eq!(r.dev.read_data(), NO_DEVICE_REPLY);
    }

    #[test]
    fn interrupts_follow_command_byte() {
        let mut r = rig();
        r.dev.write_command(CMD_WRITE_CTR);
        r.dev.write_data(CTR_XLATE);
        r.dev.write_command(CMD_KBD_LOOP);
        r.dev.write_data(0x1c);
        assert!(!r.kbd.0.load(Ordering::SeqCst));
        assert_eq!(r.dev.read_data(), 0x1c);
    }

    #[test]
    fn output_port_and_resets() {
        let mut r = rig();
        assert_eq!(cmd(&mut r, CMD_READ_OUTPUT), Some(OUT_RESET | OUT_A20));
        r.dev.write_command(CMD_WRITE_OUTPUT);
        r.dev.write_data(OUT_RESET | OUT_A20);
        assert!(r.ev.0.lock().unwrap().is_empty());
        r.dev.write_command(CMD_WRITE_OUTPUT);
        r.dev.write_data(OUT_A20);
        r.dev.write_command(0xff); // pulse nothing
        r.dev.write_command(CMD_RESET);
        assert_eq!(
            *r.ev.0.lock().unwrap(),
            [SystemEvent::Reset, SystemEvent::Reset]
        );
    }

    #[test]
    fn ports_route_to_the_shared_controller() {
        let r = rig();
        let dev = Arc::new(Mutex::new(r.dev));
        let [(mut data, dp), (mut cmdp, cp)] = bus_ports(&dev);
        assert_eq!((dp, cp), (0x60, 0x64));
        cmdp.write(0, &[CMD_SELF_TEST]);
        let mut b = [0];
        cmdp.read(0, &mut b);
        assert_eq!(b[0] & STS_OBF, STS_OBF);
        data.read(0, &mut b);
        assert_eq!(b[0], 0x55);
        let st = dev.lock().unwrap().state();
        assert!(st.out.is_empty());
        assert_eq!(st.ram[0], CTR_DEFAULT);
    }
}

//! QEMU's `isa-debug-exit`: a guest ends the emulator with a status by writing one port.
//!
//! Registered at [`DEBUG_EXIT_BASE`] (0xf4) with length [`DEBUG_EXIT_LEN`] (4) by default, like
//! QEMU's `-device isa-debug-exit` (both configurable: the device decodes any offset). A write of
//! value `v` (1, 2 or 4 bytes, little-endian) asks the injected [`SystemEvents`] for
//! [`SystemEvent::Exit`]`((v << 1) | 1)`, QEMU's formula, so a test guest's status never collides
//! with a clean exit (0); the shell sees the low 8 bits. Reads return all ones. No state.

use std::sync::Arc;

use super::{BusDevice, SystemEvent, SystemEvents};

/// Default I/O port.
pub const DEBUG_EXIT_BASE: u16 = 0xf4;
/// Default number of ports.
pub const DEBUG_EXIT_LEN: u64 = 4;

/// The exit port.
pub struct DebugExit {
    events: Arc<dyn SystemEvents>,
}

impl DebugExit {
    /// A debug-exit device sending its exit requests to `events`.
    pub fn new(events: Arc<dyn SystemEvents>) -> Self {
        Self { events }
    }
}

/// The status QEMU's isa-debug-exit exits with for a written value.
pub fn exit_status(value: u32) -> i32 {
    ((value << 1) | 1) as i32
}

impl BusDevice for DebugExit {
    fn write(&mut self, _offset: u64, data: &[u8]) {
        let mut le = [0u8; 4];
        let n = data.len().min(4);
        le[..n].copy_from_slice(&data[..n]);
        let status = exit_status(u32::from_le_bytes(le));
        self.events.request(SystemEvent::Exit(status));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::i8042::tests::Events;

    #[test]
    fn writes_exit_with_qemu_status() {
        let ev = Arc::new(Events::default());
        let mut d = DebugExit::new(ev.clone());
        d.write(0, &[0x10]);
        d.write(0, &[0x00, 0x01]);
        d.write(0, &0x8000_0000u32.to_le_bytes());
        let mut b = [0u8; 2];
        d.read(0, &mut b);
        assert_eq!(b, [0xff, 0xff]);
        assert_eq!(
            *ev.0.lock().unwrap(),
            [
                SystemEvent::Exit(0x21),
                SystemEvent::Exit(0x201),
                SystemEvent::Exit(1)
            ]
        );
        assert_eq!(exit_status(0x31) & 0xff, 0x63);
    }
}

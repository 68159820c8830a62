//! QEMU's `isa-debugcon`: a one-port console. Every byte the guest writes to the port goes to
//! the character backend (a file or stdout); a read returns the port's signature 0xe9, which is
//! how guests (SeaBIOS, kvm-unit-tests) detect the device.
//!
//! Output leaves through the injected `W: Write`, flushed after every write so a test reading
//! the file sees each byte as soon as the guest wrote it.

use std::io::Write;

use super::BusDevice;

/// QEMU's default port.
pub const DEBUGCON_PORT: u16 = 0xe9;
/// What a read of the port returns (QEMU's `readback` default).
pub const DEBUGCON_READBACK: u8 = 0xe9;

/// The debug console.
pub struct Debugcon<W: Write + Send> {
    out: W,
}

impl<W: Write + Send> Debugcon<W> {
    /// A console writing to `out`.
    pub fn new(out: W) -> Self {
        Debugcon { out }
    }
}

impl<W: Write + Send> BusDevice for Debugcon<W> {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(DEBUGCON_READBACK);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        // QEMU sends only the low byte of a wider write.
        if let Some(&b) = data.first() {
            // Host output errors cannot be reported to the guest; drop the byte like a full pipe.
            let _ = self.out.write_all(&[b]);
            let _ = self.out.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writes_go_out_reads_are_e9() {
        let sink = Sink::default();
        let mut d = Debugcon::new(sink.clone());
        d.write(0, b"h");
        d.write(0, &[b'i', 0x12]);
        assert_eq!(*sink.0.lock().unwrap(), b"hi");
        let mut r = [0u8; 2];
        d.read(0, &mut r);
        assert_eq!(r, [0xe9, 0xe9]);
    }
}

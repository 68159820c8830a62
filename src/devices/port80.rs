//! The POST code port at [`PORT80_BASE`] (0x80, one byte): firmware and some kernels write boot
//! progress codes here. Each write is stored and handed to an injected callback (the machine logs
//! boot stages with timestamps for `-d stages`); reads return the last value written.

use super::BusDevice;

/// I/O port.
pub const PORT80_BASE: u16 = 0x80;
/// Ports decoded.
pub const PORT80_LEN: u64 = 1;

/// Called with every byte written.
pub type PostCallback = Box<dyn FnMut(u8) + Send>;

/// Guest-visible state, for snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Port80State {
    /// The last code written.
    pub last: u8,
}

/// The POST code port.
pub struct Port80 {
    last: u8,
    on_write: PostCallback,
}

impl Port80 {
    /// A port calling `on_write` for each code written.
    pub fn new(on_write: PostCallback) -> Self {
        Self { last: 0, on_write }
    }

    /// The last code written.
    pub fn last(&self) -> u8 {
        self.last
    }

    /// A copy of the state.
    pub fn state(&self) -> Port80State {
        Port80State { last: self.last }
    }

    /// Restore the state without calling the callback.
    pub fn restore(&mut self, state: Port80State) {
        self.last = state.last;
    }
}

impl BusDevice for Port80 {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(self.last);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        if let Some(&code) = data.first() {
            self.last = code;
            (self.on_write)(code);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn stores_and_reports_codes() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let mut p = Port80::new(Box::new(move |c| s.lock().unwrap().push(c)));
        p.write(0, &[0x12]);
        p.write(0, &[0x34]);
        let mut b = [0];
        p.read(0, &mut b);
        assert_eq!(b[0], 0x34);
        assert_eq!(p.last(), 0x34);
        assert_eq!(*seen.lock().unwrap(), [0x12, 0x34]);
        p.restore(Port80State { last: 7 });
        assert_eq!(p.state().last, 7);
        assert_eq!(seen.lock().unwrap().len(), 2);
    }
}

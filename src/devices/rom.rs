//! A read-only memory on the MMIO bus: the firmware ROM at the top of the 32-bit address space.
//!
//! Data enters once, as the image bytes given to [`Rom::new`]; the guest's reads return them
//! (all ones past the end, as an undriven bus), and its writes are ignored, as a real flash or
//! mask ROM ignores plain stores. The software CPU fetches code from it like any MMIO page (byte
//! by byte, uncached), which is fine for the few instructions a firmware runs there before it
//! jumps into its copy below 1 MiB.

use super::BusDevice;

/// A read-only image.
#[derive(Debug, Clone)]
pub struct Rom {
    bytes: Vec<u8>,
}

impl Rom {
    /// A ROM holding `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        Rom { bytes }
    }

    /// Its size in bytes.
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl BusDevice for Rom {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(i))
                .and_then(|o| self.bytes.get(o))
                .copied()
                .unwrap_or(0xff);
        }
    }

    fn write(&mut self, _offset: u64, _data: &[u8]) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bytes_and_ignores_writes() {
        let mut r = Rom::new(vec![1, 2, 3, 4]);
        let mut b = [0u8; 2];
        r.read(1, &mut b);
        assert_eq!(b, [2, 3]);
        r.write(1, &[9, 9]);
        r.read(1, &mut b);
        assert_eq!(b, [2, 3]);
        r.read(3, &mut b);
        assert_eq!(b, [4, 0xff]);
        assert_eq!(r.len(), 4);
    }
}

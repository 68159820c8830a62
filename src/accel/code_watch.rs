//! Which guest-RAM pages hold code a software vCPU has translated, shared by every vCPU of a
//! machine and by every device that writes guest RAM (DMA).
//!
//! Each software vCPU keeps its own cache of decoded blocks, keyed by guest-physical address.
//! A store through that vCPU's own TLB is seen at once: its TLB never holds a writable entry
//! for a watched page, so the first store takes the slow path and drops the blocks. Stores the
//! vCPU cannot see are announced here instead:
//!
//! - a vCPU that decodes code on a frame calls [`CodeWatch::watch`] *before* it reads the
//!   bytes; a frame that becomes watched bumps [`CodeWatch::marks`], and every vCPU drops its
//!   writable TLB entries when it sees `marks` move (at its next block boundary), so its later
//!   stores to that frame take the slow path too;
//! - a store that finds its frame watched ([`CodeWatch::wrote_page`], from a vCPU's slow path)
//!   or a device's DMA into RAM ([`CodeWatch::wrote`]) clears the frame's bit and bumps
//!   [`CodeWatch::epoch`]. Every vCPU compares a block's bytes with guest RAM again before it
//!   runs it in a new epoch (and watches the frame again if they still match).
//!
//! Under KVM nobody watches, so devices' calls cost one bitmap test per page.
//!
//! One race is left open, as narrow as a block: a store made through a writable TLB entry
//! filled before the frame became watched, in the few instructions before that vCPU reaches
//! its next block boundary, is not announced. Guests order cross-modifying code with an
//! interrupt or a serialising instruction on the executing CPU (the SDM's "cross-modifying
//! code" protocol), which lands after that boundary.

use std::sync::atomic::{AtomicU64, Ordering};

/// The code-page bitmap and the two generation counters.
#[derive(Debug)]
pub struct CodeWatch {
    /// One bit per 4 KiB frame of guest RAM: some vCPU holds blocks decoded from it.
    pages: Vec<AtomicU64>,
    /// Bumped when a watched frame is written where the vCPUs' TLBs could not see it.
    epoch: AtomicU64,
    /// Bumped when a frame becomes watched.
    marks: AtomicU64,
    /// vCPUs sharing the watch: a vCPU's store needs no epoch bump when it is alone.
    sharers: usize,
}

/// Byte offsets of the two counters, for translated code that polls them (`cpu::jit`).
pub(crate) mod layout {
    pub const EPOCH: usize = std::mem::offset_of!(super::CodeWatch, epoch);
    pub const MARKS: usize = std::mem::offset_of!(super::CodeWatch, marks);
}

impl CodeWatch {
    /// A watch over guest RAM up to `last_addr` for `sharers` vCPUs.
    pub fn new(last_addr: u64, sharers: usize) -> Self {
        let frames = (last_addr >> 12) as usize + 1;
        CodeWatch {
            pages: (0..frames.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
            epoch: AtomicU64::new(0),
            marks: AtomicU64::new(0),
            sharers,
        }
    }

    fn slot(&self, phys: u64) -> Option<(&AtomicU64, u64)> {
        let frame = usize::try_from(phys >> 12).ok()?;
        Some((self.pages.get(frame / 64)?, 1 << (frame % 64)))
    }

    /// The code epoch: blocks validated in an older epoch must be checked against RAM again.
    #[inline]
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// How many times a frame became watched: a vCPU that sees this move drops its writable
    /// TLB entries.
    #[inline]
    pub fn marks(&self) -> u64 {
        self.marks.load(Ordering::Acquire)
    }

    /// A vCPU is about to decode code on frame `phys`. Returns false if `phys` is outside RAM
    /// (the caller must not cache what it decodes there).
    pub fn watch(&self, phys: u64) -> bool {
        let Some((word, bit)) = self.slot(phys) else {
            return false;
        };
        if word.load(Ordering::Relaxed) & bit == 0
            && word.fetch_or(bit, Ordering::AcqRel) & bit == 0
        {
            self.marks.fetch_add(1, Ordering::AcqRel);
        }
        true
    }

    /// Whether some vCPU may hold blocks decoded from frame `phys`.
    #[inline]
    pub fn is_watched(&self, phys: u64) -> bool {
        self.slot(phys)
            .is_some_and(|(word, bit)| word.load(Ordering::Acquire) & bit != 0)
    }

    /// A vCPU's store found frame `phys` watched (the vCPU dropped its own blocks there).
    /// The frame stops being watched; the other vCPUs, if any, check their blocks again.
    pub fn wrote_page(&self, phys: u64) {
        if let Some((word, bit)) = self.slot(phys) {
            word.fetch_and(!bit, Ordering::AcqRel);
            if self.sharers > 1 {
                self.epoch.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    /// Guest RAM `[addr, addr + len)` was written outside every vCPU's TLB (a device's DMA).
    pub fn wrote(&self, addr: u64, len: u64) {
        if len == 0 {
            return;
        }
        let first = addr >> 12;
        let last = addr.saturating_add(len - 1) >> 12;
        let mut hit = false;
        for frame in first..=last {
            let Some((word, bit)) = self.slot(frame << 12) else {
                break;
            };
            if word.load(Ordering::Relaxed) & bit != 0 {
                word.fetch_and(!bit, Ordering::AcqRel);
                hit = true;
            }
        }
        if hit {
            self.epoch.fetch_add(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dma_into_a_watched_frame_bumps_the_epoch_once() {
        let w = CodeWatch::new(0x10_0000 - 1, 1);
        assert!(w.watch(0x3000));
        assert!(w.watch(0x3000));
        assert_eq!(w.marks(), 1);
        w.wrote(0x1000, 0x1000);
        assert_eq!(w.epoch(), 0);
        w.wrote(0x2ff0, 0x2000);
        assert_eq!(w.epoch(), 1);
        assert!(!w.is_watched(0x3000));
        w.wrote(0x3000, 1);
        assert_eq!(w.epoch(), 1);
    }

    #[test]
    fn a_lone_vcpu_store_needs_no_new_epoch() {
        let alone = CodeWatch::new(0xffff, 1);
        alone.watch(0x1000);
        alone.wrote_page(0x1000);
        assert_eq!(alone.epoch(), 0);
        assert!(!alone.is_watched(0x1000));
        let shared = CodeWatch::new(0xffff, 2);
        shared.watch(0x1000);
        shared.wrote_page(0x1000);
        assert_eq!(shared.epoch(), 1);
    }

    #[test]
    fn frames_outside_ram_are_not_watched() {
        let w = CodeWatch::new(0xffff, 1);
        assert!(!w.watch(0x10_0000));
        assert!(!w.is_watched(0x10_0000));
        w.wrote(u64::MAX - 10, 100);
        assert_eq!(w.epoch(), 0);
    }
}

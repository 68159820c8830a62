//! Guest memory as the CPU sees it: segmentation (`seg`), paging (`walk`), the software TLB
//! (`tlb`) and the physical access path to RAM or MMIO.
//!
//! Semantics functions call [`Cpu::read_seg`]/[`Cpu::write_seg`] (segment:offset) or the
//! `*_lin` functions (linear). A TLB hit is a tag compare and an add; a miss walks the page
//! tables and fills the entry. RAM pages are reached through host pointers obtained once per
//! fill from `vm-memory`; other physical pages go to the `IoHandler` as MMIO. Writes to a
//! physical page holding translated code invalidate its blocks first (self-modifying code).

mod atomic;
pub mod seg;
pub mod tlb;
pub mod walk;

use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryRegion, MemoryRegionAddress};

use self::tlb::{index, tag, Access, TlbEntry};
use super::fault::Res;
use super::Cpu;
use crate::accel::ExitReason;

/// Read `size` (1, 2, 4 or 8) bytes little-endian from a host pointer.
///
/// # Safety
/// `p..p+size` must be inside a live guest RAM mapping.
#[inline]
unsafe fn host_read(p: *const u8, size: usize) -> u64 {
    // SAFETY: the caller guarantees the range is mapped; unaligned reads are explicit.
    unsafe {
        match size {
            1 => u64::from(*p),
            2 => u64::from(u16::from_le(std::ptr::read_unaligned(p as *const u16))),
            4 => u64::from(u32::from_le(std::ptr::read_unaligned(p as *const u32))),
            _ => u64::from_le(std::ptr::read_unaligned(p as *const u64)),
        }
    }
}

/// Write `size` bytes little-endian to a host pointer.
///
/// # Safety
/// `p..p+size` must be inside a live guest RAM mapping.
#[inline]
unsafe fn host_write(p: *mut u8, size: usize, v: u64) {
    // SAFETY: the caller guarantees the range is mapped; unaligned writes are explicit.
    unsafe {
        match size {
            1 => *p = v as u8,
            2 => std::ptr::write_unaligned(p as *mut u16, (v as u16).to_le()),
            4 => std::ptr::write_unaligned(p as *mut u32, (v as u32).to_le()),
            _ => std::ptr::write_unaligned(p as *mut u64, v.to_le()),
        }
    }
}

impl Cpu {
    /// Host address of the 4 KiB guest-physical frame `phys`, if the whole frame is RAM in one
    /// region.
    pub(crate) fn host_page(&self, phys: u64) -> Option<*mut u8> {
        let region = self.ram.find_region(GuestAddress(phys))?;
        let start = region.start_addr().0;
        let last = region.last_addr().0;
        if phys < start || phys.checked_add(0xfff)? > last {
            return None;
        }
        region
            .get_host_address(MemoryRegionAddress(phys - start))
            .ok()
    }

    /// Walk and fill the TLB entry for `lin`; returns the entry.
    fn tlb_fill(&mut self, lin: u64, acc: Access, user: bool) -> Res<TlbEntry> {
        let w = self.translate(lin, acc, user)?;
        let host = self.host_page(w.phys);
        if acc == Access::Write && host.is_some() && self.code.is_watched(w.phys) {
            // The first write to a code page drops its blocks (ours at once, the other vCPUs'
            // at their next look); the page can then be cached writable.
            self.blocks.invalidate_page(w.phys);
            self.code.wrote_page(w.phys);
            self.stop_block = true;
        }
        let entry = TlbEntry {
            tag: tag(lin, user),
            addend: host.map_or(0, |h| (h as usize).wrapping_sub((lin & !0xfff) as usize)),
            phys: w.phys,
            mmio: host.is_none(),
            global: w.global,
        };
        self.tlb.sets[acc as usize][index(lin)] = entry;
        Ok(entry)
    }

    /// Read `size` bytes at linear `lin` (a data read at privilege `user`).
    #[inline]
    pub(crate) fn read_lin(&mut self, lin: u64, size: usize, user: bool) -> Res<u64> {
        if (lin & 0xfff) as usize <= 0x1000 - size && matches!(size, 1 | 2 | 4 | 8) {
            let e = &self.tlb.sets[Access::Read as usize][index(lin)];
            if e.tag == tag(lin, user) && !e.mmio {
                let p = e.addend.wrapping_add(lin as usize) as *const u8;
                // SAFETY: the entry was filled by `tlb_fill` from a RAM frame that lies wholly in
                // one region of `self.ram`, which this Cpu keeps alive; the access stays in the page.
                return Ok(unsafe { host_read(p, size) });
            }
        }
        self.read_lin_slow(lin, size, user, Access::Read)
    }

    /// Write `size` bytes at linear `lin`.
    #[inline]
    pub(crate) fn write_lin(&mut self, lin: u64, size: usize, v: u64, user: bool) -> Res<()> {
        if (lin & 0xfff) as usize <= 0x1000 - size && matches!(size, 1 | 2 | 4 | 8) {
            let e = &self.tlb.sets[Access::Write as usize][index(lin)];
            if e.tag == tag(lin, user) && !e.mmio {
                let p = e.addend.wrapping_add(lin as usize) as *mut u8;
                // SAFETY: as in `read_lin`; write entries exist only for pages without code.
                unsafe { host_write(p, size, v) };
                return Ok(());
            }
        }
        self.write_lin_slow(lin, size, v, user)
    }

    fn lin_mask(&self) -> u64 {
        if self.state.long_mode() {
            u64::MAX
        } else {
            0xffff_ffff
        }
    }

    pub(crate) fn read_lin_slow(
        &mut self,
        lin: u64,
        size: usize,
        user: bool,
        acc: Access,
    ) -> Res<u64> {
        let size = size.min(8);
        if (lin & 0xfff) as usize > 0x1000 - size || !matches!(size, 1 | 2 | 4 | 8) {
            let mask = self.lin_mask();
            let mut v = 0u64;
            for k in 0..size {
                let b = self.read_lin_slow(lin.wrapping_add(k as u64) & mask, 1, user, acc)?;
                v |= b << (8 * k);
            }
            return Ok(v);
        }
        let e = {
            let e = self.tlb.sets[acc as usize][index(lin)];
            if e.tag == tag(lin, user) {
                e
            } else {
                self.tlb_fill(lin, acc, user)?
            }
        };
        if e.mmio {
            let mut buf = [0u8; 8];
            self.io
                .mmio_read(self.id, e.phys | (lin & 0xfff), &mut buf[..size]);
            self.stats.count(self.id, ExitReason::MmioRead);
            return Ok(u64::from_le_bytes(buf));
        }
        let p = e.addend.wrapping_add(lin as usize) as *const u8;
        // SAFETY: as in `read_lin`.
        Ok(unsafe { host_read(p, size) })
    }

    fn write_lin_slow(&mut self, lin: u64, size: usize, v: u64, user: bool) -> Res<()> {
        let size = size.min(8);
        if (lin & 0xfff) as usize > 0x1000 - size || !matches!(size, 1 | 2 | 4 | 8) {
            // Check both pages before writing any byte, so a fault leaves memory untouched.
            let mask = self.lin_mask();
            let second = (lin | 0xfff).wrapping_add(1) & mask;
            self.probe_write(lin, user)?;
            if (lin & 0xfff) as usize + size > 0x1000 {
                self.probe_write(second, user)?;
            }
            for k in 0..size {
                self.write_lin_slow(lin.wrapping_add(k as u64) & mask, 1, v >> (8 * k), user)?;
            }
            return Ok(());
        }
        let e = {
            let e = self.tlb.sets[Access::Write as usize][index(lin)];
            if e.tag == tag(lin, user) {
                e
            } else {
                self.tlb_fill(lin, Access::Write, user)?
            }
        };
        if e.mmio {
            let bytes = v.to_le_bytes();
            self.io
                .mmio_write(self.id, e.phys | (lin & 0xfff), &bytes[..size]);
            self.stats.count(self.id, ExitReason::MmioWrite);
            return Ok(());
        }
        let p = e.addend.wrapping_add(lin as usize) as *mut u8;
        // SAFETY: as in `write_lin`.
        unsafe { host_write(p, size, v) };
        Ok(())
    }

    /// Host address of linear `lin` for an access of kind `acc` (filling the TLB, so faults
    /// and A/D bits are as for a normal access), or `None` when the page is MMIO. The address
    /// is valid up to the end of `lin`'s page; a write entry never maps a page holding code.
    pub(crate) fn host_span(&mut self, lin: u64, acc: Access, user: bool) -> Res<Option<*mut u8>> {
        let e = {
            let e = self.tlb.sets[acc as usize][index(lin)];
            if e.tag == tag(lin, user) {
                e
            } else {
                self.tlb_fill(lin, acc, user)?
            }
        };
        if e.mmio {
            return Ok(None);
        }
        Ok(Some(e.addend.wrapping_add(lin as usize) as *mut u8))
    }

    /// Make sure a write to `lin` would not fault (fills the write TLB).
    pub(crate) fn probe_write(&mut self, lin: u64, user: bool) -> Res<()> {
        let e = self.tlb.sets[Access::Write as usize][index(lin)];
        if e.tag != tag(lin, user) {
            self.tlb_fill(lin, Access::Write, user)?;
        }
        Ok(())
    }

    /// Translate an instruction fetch at linear `lin`: the physical frame and, for RAM, the host
    /// address of the frame.
    pub(crate) fn fetch_page(&mut self, lin: u64) -> Res<(u64, Option<*const u8>)> {
        let user = self.state.cpl() == 3;
        let e = {
            let e = self.tlb.sets[Access::Exec as usize][index(lin)];
            if e.tag == tag(lin, user) {
                e
            } else {
                self.tlb_fill(lin, Access::Exec, user)?
            }
        };
        if e.mmio {
            Ok((e.phys, None))
        } else {
            let host = e.addend.wrapping_add((lin & !0xfff) as usize) as *const u8;
            Ok((e.phys, Some(host)))
        }
    }

    /// Fetch `buf.len()` code bytes at linear `lin` byte by byte (page-crossing instructions,
    /// code in MMIO).
    pub(crate) fn fetch_bytes(&mut self, lin: u64, buf: &mut [u8]) -> Res<()> {
        let user = self.state.cpl() == 3;
        let mask = self.lin_mask();
        for (k, b) in buf.iter_mut().enumerate() {
            *b =
                self.read_lin_slow(lin.wrapping_add(k as u64) & mask, 1, user, Access::Exec)? as u8;
        }
        Ok(())
    }

    /// Keep translated code coherent with a write to physical frame `phys` made outside the
    /// TLB (page-table A/D bits, DMA-like paths).
    pub(crate) fn note_phys_write(&mut self, phys: u64) {
        if self.code.is_watched(phys) {
            self.blocks.invalidate_page(phys);
            self.code.wrote_page(phys);
            self.stop_block = true;
        }
    }
}

//! The software TLB: direct-mapped, one array per access kind (read, write, fetch), mapping a
//! guest-virtual page straight to a host address (RAM) or to a guest-physical page (MMIO).
//!
//! Entries are filled by the page walk in `super::walk` after its permission checks passed for
//! that access kind and privilege, so a hit needs no further checks: compare the tag, add.
//! The tag folds in the user/supervisor bit so CPL changes need no flush.

/// Number of entries per access kind.
pub const TLB_SIZE: usize = 256;

/// Access kinds, each with its own array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Data read.
    Read = 0,
    /// Data write.
    Write = 1,
    /// Instruction fetch.
    Exec = 2,
}

/// One TLB entry.
#[derive(Debug, Clone, Copy, Default)]
pub struct TlbEntry {
    /// `vpage | user << 1 | 1`, or 0 when invalid.
    pub tag: u64,
    /// Host address of the page minus the guest-virtual page (wrapping); 0 for MMIO pages.
    pub addend: usize,
    /// Guest-physical page.
    pub phys: u64,
    /// The page is MMIO: accesses go to the `IoHandler`.
    pub mmio: bool,
    /// Global page (survives CR3 writes).
    pub global: bool,
}

/// Byte offsets of [`TlbEntry`] fields and the entry size, for translated code that looks up
/// the TLB itself (`cpu::jit`).
pub(crate) mod layout {
    use super::TlbEntry;
    pub const TAG: usize = std::mem::offset_of!(TlbEntry, tag);
    pub const ADDEND: usize = std::mem::offset_of!(TlbEntry, addend);
    pub const MMIO: usize = std::mem::offset_of!(TlbEntry, mmio);
    pub const PHYS: usize = std::mem::offset_of!(TlbEntry, phys);
    /// log2 of the entry size.
    pub const SHIFT: u32 = std::mem::size_of::<TlbEntry>().trailing_zeros();
    const _: () = assert!(1 << SHIFT == std::mem::size_of::<TlbEntry>());
    /// Offset of the pointer to the array for access kind `k` inside [`super::Tlb`].
    pub const fn set(k: usize) -> usize {
        std::mem::offset_of!(super::Tlb, sets) + k * std::mem::size_of::<usize>()
    }
    const _: () = assert!(std::mem::size_of::<Box<[TlbEntry; super::TLB_SIZE]>>() == 8);
}

/// The three TLB arrays.
pub struct Tlb {
    /// Indexed by [`Access`].
    pub sets: [Box<[TlbEntry; TLB_SIZE]>; 3],
}

impl Default for Tlb {
    fn default() -> Self {
        Tlb {
            sets: std::array::from_fn(|_| Box::new([TlbEntry::default(); TLB_SIZE])),
        }
    }
}

/// The tag for a linear address and privilege.
#[inline]
pub fn tag(lin: u64, user: bool) -> u64 {
    (lin & !0xfff) | (u64::from(user) << 1) | 1
}

/// The index for a linear address.
#[inline]
pub fn index(lin: u64) -> usize {
    ((lin >> 12) as usize) & (TLB_SIZE - 1)
}

impl Tlb {
    /// Drop everything (CR0/CR4 paging changes).
    pub fn flush_all(&mut self) {
        for set in &mut self.sets {
            set.fill(TlbEntry::default());
        }
    }

    /// Drop non-global entries (CR3 write).
    pub fn flush_non_global(&mut self) {
        for set in &mut self.sets {
            for e in set.iter_mut() {
                if !e.global {
                    *e = TlbEntry::default();
                }
            }
        }
    }

    /// Drop the entries of one linear page (INVLPG).
    pub fn flush_page(&mut self, lin: u64) {
        let i = index(lin);
        for set in &mut self.sets {
            if set[i].tag & !0xfff == lin & !0xfff {
                set[i] = TlbEntry::default();
            }
        }
    }

    /// Drop every write entry (another vCPU started watching some frame for code).
    pub fn flush_writes(&mut self) {
        self.sets[Access::Write as usize].fill(TlbEntry::default());
    }

    /// Drop write entries mapping guest-physical page `phys` (it now holds translated code).
    pub fn flush_phys_writes(&mut self, phys: u64) {
        for e in self.sets[Access::Write as usize].iter_mut() {
            if e.tag != 0 && e.phys == phys {
                *e = TlbEntry::default();
            }
        }
    }
}

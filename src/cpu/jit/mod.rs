//! The baseline JIT: hot decoded blocks become host code that runs them without the
//! interpreter loop.
//!
//! How a block gets here: the run loop asks `Cpu::jit_entry` for the block it is about to
//! run; each ask counts, and on the [`HOT`]th the block is translated (`compile`) into this
//! vCPU's executable `arena`. From then on the run loop calls the translation instead of
//! stepping through the instructions, whenever it would have run the whole block anyway (no
//! single-step, interrupt shadow, debugger breakpoints or short instruction budget).
//!
//! What it buys: the interpreter pays, per instruction, an indirect call, the loop's RIP and
//! retire bookkeeping, and the general register and flag plumbing of the fast forms; per
//! block, the run loop's checks and lookup. Here the common integer forms are a handful of
//! host instructions, branches test host flags, everything else is one direct call to a shim
//! that calls the same semantics pointer the interpreter would (so behaviour is still defined
//! in one place, and the differential tests exercise the translations as they do the
//! interpreter), and a block that ends in a branch goes on into the next block's translation
//! through the jump cache ([`Jit`]) when nothing needs the run loop.
//!
//! Coherence is the block cache's: a translation belongs to its block, and a block dropped for
//! a store into its frame (or a new code epoch that shows its bytes changed) is never asked for
//! again. Guest state lives in the `Cpu` throughout, so faults are precise with no recovery
//! step: a call-out that faults leaves through an exit naming the instruction.

mod arena;
mod asm;
mod compile;
mod helpers;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use arena::{Arena, CodeRef, ARENA_BYTES};
pub use arena::{ArenaError, Entry};
pub(crate) use compile::FAULT;

use super::decode::BlockRef;
use super::Cpu;

/// A block is translated on its HOT-th run: cold code (boot-once paths) stays interpreted.
pub const HOT: u32 = 16;

/// What a translated block that jumps back to its own start checks before it goes round
/// again, instead of returning to the run loop: everything the run loop would look at between
/// two runs of the block that can change without the block ending (mode, paging, IF and the
/// like only change through instructions that end it). The run loop fills it in before each
/// entry.
#[repr(C)]
#[derive(Debug, Default)]
pub struct LoopCtx {
    /// Address of the run loop's kick flag (an `AtomicBool`).
    pub kick: usize,
    /// Address of the machine's `CodeWatch`.
    pub watch: usize,
    /// The code epoch the block was validated in.
    pub epoch: u64,
    /// Instructions the run loop's budget allows from the start of the first block; each
    /// jump to another pass or block takes the finished block's length off (the run loop
    /// counts what went).
    pub budget: u64,
    /// What inline memory accesses OR into the page to form a TLB tag
    /// (`BlockMode::jit_tag_bits`: 0 sends every access to its call-out).
    pub tlb_tag: u64,
}

/// Per-block JIT state, kept in the block.
#[derive(Debug, Default)]
pub struct BlockJit {
    /// Runs counted towards [`HOT`].
    hot: AtomicU32,
    /// The translation, if any ([`CodeRef`]; 0: none).
    code: AtomicU64,
}

/// log2 of the entries in the jump cache.
pub(crate) const JUMP_BITS: u32 = 10;

/// One jump-cache entry: the translation of the block at (`rip`, `phys`), valid while the
/// block cache's link generation is `gen`, entered `top` bytes in (past the prologue).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct JumpEntry {
    rip: u64,
    phys: u64,
    gen: u64,
    /// Its instruction count.
    len: u64,
    /// Host address of the translation's first instruction after the prologue.
    top: u64,
    /// Pads the entry to 64 bytes: one cache line, and an index shift for translated code.
    _pad: [u64; 3],
}

/// The multiplier of [`jump_index`]'s Fibonacci hash.
pub(crate) const JUMP_HASH: u64 = 0x9e37_79b9_7f4a_7c15;
/// log2 of the size of a [`JumpEntry`].
pub(crate) const JUMP_ENTRY_SHIFT: u32 = 6;
const _: () = assert!(std::mem::size_of::<JumpEntry>() == 1 << JUMP_ENTRY_SHIFT);

/// The jump-cache slot of a block at `rip` (translated code computes the same hash with
/// [`JUMP_HASH`]).
pub(crate) fn jump_index(rip: u64) -> usize {
    (rip.wrapping_mul(JUMP_HASH) >> (64 - JUMP_BITS)) as usize
}

/// Per-vCPU JIT state: the arena (mapped on first use), the jump cache and counters.
///
/// The jump cache is how translations chain: a block that ends with a direct branch looks its
/// target up there (by RIP, then by the physical address the TLB gives) and, if the entry is
/// of the current link generation, jumps straight into the target's translation instead of
/// returning to the run loop. The run loop fills an entry each time it enters a translation.
pub struct Jit {
    /// Translate hot blocks.
    pub enabled: bool,
    /// Runs after which a block is translated ([`HOT`]; tests lower it).
    pub hot: u32,
    arena: Option<Arena>,
    /// Blocks translated so far.
    pub translated: u64,
    jumps: Box<[JumpEntry; 1 << JUMP_BITS]>,
}

impl Jit {
    /// JIT state, translating if `enabled`.
    pub fn new(enabled: bool) -> Self {
        Jit {
            enabled,
            hot: HOT,
            arena: None,
            translated: 0,
            jumps: Box::new([JumpEntry::default(); 1 << JUMP_BITS]),
        }
    }

    /// Remember that the block at (`rip`, `phys`), of `len` instructions, has translation
    /// `entry`, valid in link generation `gen`.
    #[inline]
    pub(crate) fn remember(&mut self, rip: u64, phys: u64, gen: u64, len: usize, entry: Entry) {
        let e = &mut self.jumps[jump_index(rip)];
        *e = JumpEntry {
            rip,
            phys,
            gen,
            len: len as u64,
            top: entry as usize as u64 + compile::PROLOGUE as u64,
            _pad: [0; 3],
        };
    }
}

impl Cpu {
    /// The translation of `block` (which starts at the current RIP), translating it if this
    /// run makes it hot. `None`: interpret it this time.
    #[inline]
    pub(crate) fn jit_entry(&mut self, block: BlockRef) -> Option<Entry> {
        let j = block.jit();
        let code = j.code.load(Ordering::Relaxed);
        if code != 0 {
            if let Some(e) = self.jit.arena.as_ref().and_then(|a| a.entry(code)) {
                return Some(e);
            }
            // The arena started over since: count up again.
            j.code.store(0, Ordering::Relaxed);
            j.hot.store(0, Ordering::Relaxed);
        }
        let hot = j.hot.load(Ordering::Relaxed) + 1;
        j.hot.store(hot, Ordering::Relaxed);
        if hot != self.jit.hot {
            return None;
        }
        self.jit_translate(block)
    }

    #[cold]
    fn jit_translate(&mut self, block: BlockRef) -> Option<Entry> {
        // SAFETY: the run loop holds `block` for this iteration (see `decode::cache`).
        let insns = unsafe { block.insns() };
        let bits = match block.ip_mask {
            u64::MAX => 64,
            0xffff_ffff => 32,
            _ => 16,
        };
        let tsc_counts = self.tsc_counts_instructions();
        let code = compile::translate(insns, self.state.rip, block.ip_mask, bits, tsc_counts)?;
        if self.jit.arena.is_none() {
            match Arena::new(ARENA_BYTES) {
                Ok(a) => self.jit.arena = Some(a),
                Err(e) => {
                    log::warn!("{e}; the software CPU goes on interpreting");
                    self.jit.enabled = false;
                    return None;
                }
            }
        }
        let arena = self.jit.arena.as_mut()?;
        let gen = arena.generation();
        let r: CodeRef = arena.put(&code)?;
        if arena.generation() != gen {
            // Older translations are gone: so are the jump-cache entries naming them.
            self.blocks.new_generation();
        }
        block.jit().code.store(r, Ordering::Relaxed);
        self.jit.translated += 1;
        arena.entry(r)
    }
}

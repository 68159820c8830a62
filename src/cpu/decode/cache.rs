//! The block cache: decoded blocks by (guest-physical address, RIP, code size), with the
//! direct-mapped front cache the run loop looks in first.
//!
//! Blocks enter through [`BlockCache::insert`] (freshly decoded) and leave through
//! [`BlockCache::invalidate_page`] (a store into their frame) or [`BlockCache::clear`]; a block
//! that leaves is parked until the next [`BlockCache::collect`], which only the run loop calls
//! between blocks, so the [`BlockRef`] it is running stays valid. Lookups hand out
//! [`BlockRef`]s: the hot path ([`BlockCache::get_fast`]) follows the link the previous block's
//! slot holds to the block that last ran after it, else looks in that block's own slot; it
//! touches neither the hash map nor the block. Why a front cache and links: a booting kernel
//! runs from a working set of tens of thousands of blocks, and the lookup between two blocks
//! was a few cache misses (hash map, block header) each time.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use super::{ip_mask, Block, DecodedInsn};
use crate::cpu::jit::BlockJit;

/// The cache is dropped wholesale past this many blocks (simple, bounded memory).
const MAX_BLOCKS: usize = 1 << 16;

/// Cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    /// Guest-physical address of the first byte.
    pub phys: u64,
    /// RIP at the first instruction (branch targets are decoded as absolute addresses).
    pub rip: u64,
    /// Code size: 16, 32 or 64.
    pub bits: u8,
}

/// A cheap multiplicative hasher for [`Key`]s.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn write_u8(&mut self, v: u8) {
        self.write_u64(u64::from(v));
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<KeyHasher>>;

/// log2 of the entries in the direct-mapped lookup cache in front of the hash map (16 Ki
/// entries of 32 bytes: a booting Linux kernel keeps more hot blocks than 4 Ki entries hold).
const FAST_BITS: u32 = 14;

/// A block as the run loop sees it: its instructions, its JIT state and the RIP mask of its
/// code size.
#[derive(Clone, Copy)]
pub struct BlockRef {
    block: *const Block,
    /// Number of instructions (known without touching the block).
    pub len: usize,
    /// Guest-physical address of its first byte ([`UNCACHED`] for a block that is not in the
    /// cache).
    pub phys: u64,
    /// RIP wraps to this (see [`Block::ip_mask`]).
    pub ip_mask: u64,
}

// SAFETY: a `BlockRef` (and a `FastSlot`) points into a block owned by the `BlockCache` it
// came from (or its retired list), which lives in the same `Cpu` and moves between threads
// with it; the instructions are immutable once decoded.
unsafe impl Send for BlockRef {}
// SAFETY: as for `BlockRef`.
unsafe impl Send for FastSlot {}

impl BlockRef {
    pub(super) fn of(b: &Block) -> Self {
        BlockRef {
            block: b,
            len: b.insns.len(),
            phys: UNCACHED,
            ip_mask: b.ip_mask,
        }
    }

    /// The same block, cached at guest-physical `phys`.
    pub fn at(self, phys: u64) -> Self {
        BlockRef { phys, ..self }
    }

    /// The block's JIT state (valid as long as [`BlockRef::insns`] is).
    #[inline]
    pub fn jit<'a>(self) -> &'a BlockJit {
        // SAFETY: `block` points to a block the cache (or its retired list) keeps alive until
        // the next `collect`, which the run loop calls only between blocks, after it is done
        // with this reference.
        unsafe { &(*self.block).jit }
    }

    /// The instructions.
    ///
    /// # Safety
    /// Only until the next [`BlockCache::collect`] (see [`BlockCache::get`]).
    #[inline]
    pub unsafe fn insns<'a>(self) -> &'a [DecodedInsn] {
        // SAFETY: `block` is a block the cache (or its retired list) keeps alive until the
        // next `collect`, as the caller promises; its instructions never change.
        unsafe { (*self.block).insns.as_slice() }
    }
}

/// A block's instructions at (`phys`, `rip`), with `tag` = validity counter << 16 |
/// instruction count << 8 | code size (0 when empty: no code size matches).
#[derive(Clone, Copy)]
struct Entry {
    phys: u64,
    rip: u64,
    tag: u64,
    block: *const Block,
}

const EMPTY: Entry = Entry {
    phys: 0,
    rip: 0,
    tag: 0,
    block: std::ptr::null(),
};

impl Entry {
    /// The tag bits a lookup compares: everything but the instruction count.
    const MATCH: u64 = !0xff00;

    fn new(key: &Key, block: &Block, counter: u64) -> Self {
        // Blocks hold at most MAX_BLOCK (64) instructions: the count fits its byte.
        let len = block.insns.len() as u64 & 0xff;
        Entry {
            phys: key.phys,
            rip: key.rip,
            tag: counter << 16 | len << 8 | u64::from(key.bits),
            block,
        }
    }

    fn matches(&self, key: &Key) -> bool {
        self.phys == key.phys && self.rip == key.rip
    }

    #[inline]
    fn get(&self, key: &Key, counter: u64) -> Option<BlockRef> {
        (self.matches(key) && self.tag & Entry::MATCH == counter << 16 | u64::from(key.bits)).then(
            || BlockRef {
                block: self.block,
                len: (self.tag >> 8 & 0xff) as usize,
                phys: self.phys,
                ip_mask: ip_mask(u32::from(key.bits)),
            },
        )
    }
}

/// One slot of the direct-mapped front cache (64 bytes, one cache line): a block validated
/// in the code epoch its tag holds, and a link to the block that last ran after it, valid in
/// the cache generation its tag holds. Following the link skips the lookup of the next block
/// in this table (a cache miss per block in a kernel-sized working set). Neither holds a
/// reference count: every path that drops a block from the map clears its slot and starts a
/// new generation.
#[derive(Clone, Copy)]
struct FastSlot {
    block: Entry,
    next: Entry,
}

const EMPTY_SLOT: FastSlot = FastSlot {
    block: EMPTY,
    next: EMPTY,
};

/// No slot: the last block run was not cached.
const NO_SLOT: usize = usize::MAX;

/// The block cache with its per-page index.
#[derive(Default)]
pub struct BlockCache {
    map: FastMap<Key, Arc<Block>>,
    pages: FastMap<u64, Vec<Key>>,
    /// Direct-mapped front cache: most block lookups end here, touching one cache line.
    fast: Vec<FastSlot>,
    /// Blocks dropped from the cache, freed at the next block boundary.
    retired: Vec<Arc<Block>>,
    /// The slot of the block that ran last ([`NO_SLOT`] if none): the next block is linked
    /// from there.
    last: usize,
    /// The link generation: moves whenever a block leaves the map or the code epoch moves.
    gen: u64,
    /// The code epoch `gen` last moved for.
    gen_epoch: u64,
    /// Recently run instructions that straddle a page boundary, by RIP (see
    /// [`BlockCache::straddler`]).
    straddlers: Vec<Option<Arc<Block>>>,
}

/// Entries in the straddling-instruction cache.
const STRADDLERS: usize = 64;

/// [`BlockRef::phys`] of a block that is not cached (no RAM address is this).
pub const UNCACHED: u64 = u64::MAX;

/// Byte offset of the link generation in a [`BlockCache`] (translated code compares it).
pub(crate) const GEN_OFFSET: usize = std::mem::offset_of!(BlockCache, gen);

fn straddler_index(rip: u64) -> usize {
    (rip.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize % STRADDLERS
}

#[inline]
fn fast_index(k: &Key) -> usize {
    // Fibonacci hashing of the physical address (the RIP nearly always follows from it).
    (k.phys.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - FAST_BITS)) as usize
}

impl BlockCache {
    /// An empty cache.
    pub fn new() -> Self {
        BlockCache {
            fast: vec![EMPTY_SLOT; 1 << FAST_BITS],
            straddlers: vec![None; STRADDLERS],
            last: NO_SLOT,
            ..BlockCache::default()
        }
    }

    /// The block at `key` if it was validated in code epoch `epoch`: the hot path, which
    /// touches neither the hash map nor the block (and, when the last block's link names
    /// `key`, not even this block's slot). Valid until the next [`BlockCache::collect`].
    #[inline]
    pub fn get_fast(&mut self, key: &Key, epoch: u64) -> Option<BlockRef> {
        if epoch != self.gen_epoch {
            self.gen_epoch = epoch;
            self.gen += 1;
        }
        let idx = fast_index(key);
        if let Some(b) = self
            .fast
            .get(self.last)
            .and_then(|s| s.next.get(key, self.gen))
        {
            self.last = idx;
            return Some(b);
        }
        let b = self.fast.get(idx)?.block.get(key, epoch)?;
        self.link(idx, key);
        Some(b)
    }

    /// Link the last block's slot to the block in slot `idx` (at `key`), which runs next.
    #[inline]
    fn link(&mut self, idx: usize, key: &Key) {
        let gen = self.gen;
        let this = self.fast.get(idx).map(|s| s.block);
        if let (Some(mut next), Some(last)) = (this, self.fast.get_mut(self.last)) {
            if next.matches(key) {
                next.tag = gen << 16 | (next.tag & 0xffff);
                last.next = next;
            }
        }
        self.last = idx;
    }

    /// A cached block, whatever epoch it was last validated in. The pointer stays valid until
    /// the next [`BlockCache::collect`], even if the block is dropped from the cache meanwhile.
    pub fn get(&self, key: &Key) -> Option<*const Block> {
        self.map.get(key).map(Arc::as_ptr)
    }

    /// Remember that the cached block at `key` is valid in code epoch `epoch`.
    /// Remember that the cached block at `key` is valid in code epoch `epoch`; it runs next.
    pub(super) fn remember(&mut self, key: Key, block: &Block, epoch: u64) {
        let idx = fast_index(&key);
        if let Some(slot) = self.fast.get_mut(idx) {
            *slot = FastSlot {
                block: Entry::new(&key, block, epoch),
                next: EMPTY,
            };
            self.link(idx, &key);
        }
    }

    fn forget(&mut self, key: &Key) {
        if let Some(slot) = self.fast.get_mut(fast_index(key)) {
            if slot.block.matches(key) {
                *slot = EMPTY_SLOT;
            }
        }
    }

    /// Keep `block` (not cached) alive until the next [`BlockCache::collect`]; it runs next,
    /// and nothing links to it.
    pub fn park(&mut self, block: Arc<Block>) -> BlockRef {
        let r = BlockRef::of(&block);
        self.retired.push(block);
        self.last = NO_SLOT;
        r
    }

    /// The one-instruction block of an instruction at `rip` (in `bits`-bit code) that starts
    /// with `code`, as [`BlockCache::keep_straddler`] kept it. Such instructions are not cached
    /// by address (their bytes lie in two frames), so the caller fetches their bytes on every
    /// run and this cache only saves decoding them again: a match on the bytes is always
    /// current.
    pub fn straddler(&self, rip: u64, bits: u32, code: &[u8]) -> Option<Arc<Block>> {
        let b = self.straddlers.get(straddler_index(rip))?.as_ref()?;
        let d = b.insns.first()?;
        (d.insn.ip() == rip
            && b.ip_mask == ip_mask(bits)
            && !b.bytes.is_empty()
            && code.starts_with(&b.bytes))
        .then(|| b.clone())
    }

    /// Keep `block`, the one instruction at `rip` whose bytes are `block.bytes`, for
    /// [`BlockCache::straddler`].
    pub fn keep_straddler(&mut self, rip: u64, block: Arc<Block>) {
        if let Some(slot) = self.straddlers.get_mut(straddler_index(rip)) {
            *slot = Some(block);
        }
    }

    /// Free the blocks dropped since the last call. Only the run loop calls this, between
    /// blocks, when no pointer from [`BlockCache::get`] is in use.
    #[inline]
    pub fn collect(&mut self) {
        if !self.retired.is_empty() {
            self.retired.clear();
        }
    }

    /// Cache a block validated in code epoch `epoch`.
    pub fn insert(&mut self, key: Key, block: Arc<Block>, epoch: u64) {
        if self.map.len() >= MAX_BLOCKS {
            self.clear();
        }
        self.remember(key, &block, epoch);
        if let Some(old) = self.map.insert(key, block) {
            self.gen += 1;
            self.retired.push(old);
        } else {
            self.pages.entry(key.phys & !0xfff).or_default().push(key);
        }
    }

    /// Drop every block on physical frame `phys`; returns whether there were any.
    pub fn invalidate_page(&mut self, phys: u64) -> bool {
        let Some(keys) = self.pages.remove(&(phys & !0xfff)) else {
            return false;
        };
        self.gen += 1;
        for k in keys {
            if let Some(b) = self.map.remove(&k) {
                self.retired.push(b);
            }
            self.forget(&k);
        }
        true
    }

    /// The link generation: it moves whenever a block leaves the map (or the code epoch
    /// moves), so anything that remembers blocks by generation stops trusting them.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.gen
    }

    /// Start a new link generation (the JIT's code arena started over).
    pub fn new_generation(&mut self) {
        self.gen += 1;
    }

    /// Drop everything.
    pub fn clear(&mut self) {
        self.gen += 1;
        self.retired.extend(self.map.drain().map(|(_, b)| b));
        self.pages.clear();
        self.fast.fill(EMPTY_SLOT);
    }

    /// Number of cached blocks.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// No cached blocks.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

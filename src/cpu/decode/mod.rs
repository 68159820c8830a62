//! Decode once: guest code decoded with iced-x86 into blocks, cached by guest-physical address.
//!
//! A block starts at some RIP, ends after a control-flow instruction, an instruction that may
//! change how the following code must be decoded or run (mode, paging, interrupt flag), at the
//! end of its 4 KiB page, or after [`MAX_BLOCK`] instructions. Every decoded instruction carries
//! the semantics function chosen once by [`table::handler_for`], so the run loop calls through a
//! pointer with no opcode dispatch. The cache key is (physical address, RIP, code size), so a
//! block stays valid whatever the segment base or linear alias it is reached through.
//! The machine-wide [`crate::accel::CodeWatch`] tells every write path which physical frames
//! hold translated code; a block is checked against guest RAM again in each new code epoch.

pub mod sse_table;
pub mod table;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use iced_x86::Instruction;

use super::exec::fast::{self, Ops};
use super::fault::Res;
use super::Cpu;

/// Maximum instructions per block.
pub const MAX_BLOCK: usize = 64;
/// The cache is dropped wholesale past this many blocks (simple, bounded memory).
const MAX_BLOCKS: usize = 1 << 16;

/// A semantics function: executes one decoded instruction on the CPU.
pub type Handler = fn(&mut Cpu, &Instruction) -> Res<()>;

/// What the run loop calls for a decoded instruction: a pre-decoded fast form
/// (`exec::fast`) or [`via_handler`], which runs the general semantics function.
pub type Exec = fn(&mut Cpu, &DecodedInsn) -> Res<()>;

/// One decoded instruction and its semantics.
pub struct DecodedInsn {
    /// What runs it.
    pub exec: Exec,
    /// Its operands, pre-decoded for `exec` when that is a fast form.
    pub ops: Ops,
    /// Its general semantics (the reference the fast forms agree with).
    pub handler: Handler,
    /// The iced-x86 decoding (operands, prefixes, length, absolute branch targets).
    pub insn: Instruction,
}

impl DecodedInsn {
    /// `insn` with its general semantics `handler`, and the fast form when it has one and
    /// `fast` allows it.
    pub fn new(insn: Instruction, handler: Handler, bits: u32, fast: bool) -> Self {
        let chosen = if fast {
            fast::select(&insn, bits)
        } else {
            None
        };
        let (exec, ops) = chosen.unwrap_or((via_handler, Ops::default()));
        DecodedInsn {
            exec,
            ops,
            handler,
            insn,
        }
    }
}

/// Run the general semantics function of `d`.
pub fn via_handler(cpu: &mut Cpu, d: &DecodedInsn) -> Res<()> {
    (d.handler)(cpu, &d.insn)
}

/// A straight-line run of decoded instructions.
pub struct Block {
    /// The instructions, the last one possibly a branch.
    pub insns: Vec<DecodedInsn>,
    /// The code bytes the block was decoded from (revalidated after a code-epoch bump).
    pub bytes: Vec<u8>,
    /// The code epoch at which `bytes` were last known to match guest memory.
    pub epoch: AtomicU64,
    /// RIP wraps to this (the code size it was decoded for: 16, 32 or 64 bits).
    pub ip_mask: u64,
}

/// The RIP mask of a `bits`-bit code segment.
fn ip_mask(bits: u32) -> u64 {
    match bits {
        64 => u64::MAX,
        32 => 0xffff_ffff,
        _ => 0xffff,
    }
}

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

/// A block as the run loop sees it: its instructions and the RIP mask of its code size.
#[derive(Clone, Copy)]
pub struct BlockRef {
    insns: *const DecodedInsn,
    len: usize,
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
    fn of(b: &Block) -> Self {
        BlockRef {
            insns: b.insns.as_ptr(),
            len: b.insns.len(),
            ip_mask: b.ip_mask,
        }
    }

    /// The instructions.
    ///
    /// # Safety
    /// Only until the next [`BlockCache::collect`] (see [`BlockCache::get`]).
    #[inline]
    pub unsafe fn insns<'a>(self) -> &'a [DecodedInsn] {
        // SAFETY: `insns`/`len` describe the instruction buffer of a block the cache (or its
        // retired list) keeps alive until the next `collect`, as the caller promises.
        unsafe { std::slice::from_raw_parts(self.insns, self.len) }
    }
}

/// A block's instructions at (`phys`, `rip`), with `tag` = validity counter << 16 |
/// instruction count << 8 | code size (0 when empty: no code size matches).
#[derive(Clone, Copy)]
struct Entry {
    phys: u64,
    rip: u64,
    tag: u64,
    insns: *const DecodedInsn,
}

const EMPTY: Entry = Entry {
    phys: 0,
    rip: 0,
    tag: 0,
    insns: std::ptr::null(),
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
            insns: block.insns.as_ptr(),
        }
    }

    fn matches(&self, key: &Key) -> bool {
        self.phys == key.phys && self.rip == key.rip
    }

    #[inline]
    fn get(&self, key: &Key, counter: u64) -> Option<BlockRef> {
        (self.matches(key) && self.tag & Entry::MATCH == counter << 16 | u64::from(key.bits)).then(
            || BlockRef {
                insns: self.insns,
                len: (self.tag >> 8 & 0xff) as usize,
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
    fn remember(&mut self, key: Key, block: &Block, epoch: u64) {
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

impl Cpu {
    /// The block at the current CS:RIP, from the cache or freshly decoded. Fetch faults (#PF,
    /// #GP on CS limit) are returned like any instruction fault.
    /// The block is valid until the next `self.blocks.collect()` (see the module doc).
    #[inline]
    pub(crate) fn current_block(&mut self) -> Res<BlockRef> {
        let marks = self.code.marks();
        if marks != self.seen_marks {
            // Another vCPU decoded code on a frame we may hold writable: look again.
            self.seen_marks = marks;
            if self.cpu_count > 1 {
                self.tlb.flush_writes();
            }
        }
        let bits = self.state.bitness();
        let rip = self.state.rip;
        let cs = &self.state.seg[super::state::sreg::CS];
        let lin = if bits == 64 {
            rip
        } else {
            if rip > u64::from(cs.limit) {
                return Err(super::fault::gp(0));
            }
            cs.base.wrapping_add(rip) & 0xffff_ffff
        };
        let (frame, host) = self.fetch_page(lin)?;
        let key = Key {
            phys: frame | (lin & 0xfff),
            rip,
            bits: bits as u8,
        };
        let epoch = self.code.epoch();
        if let Some(b) = self.blocks.get_fast(&key, epoch) {
            return Ok(b);
        }
        self.lookup_or_decode(key, lin, frame, host, epoch)
    }

    /// [`Cpu::current_block`] past the front cache: the hash map (checking the block's bytes
    /// again after a new code epoch), else a fresh decode.
    fn lookup_or_decode(
        &mut self,
        key: Key,
        lin: u64,
        frame: u64,
        host: Option<*const u8>,
        epoch: u64,
    ) -> Res<BlockRef> {
        let bits = u32::from(key.bits);
        let rip = key.rip;
        let off = (lin & 0xfff) as usize;
        // A copy of up to `len` code bytes at `lin` (RAM only). Frames are watched before
        // their bytes are read, so a store that lands after the read is announced.
        let copy = |cpu: &Cpu, len: usize| {
            host.filter(|_| cpu.code.watch(frame)).map(|page| {
                let len = len.min(0x1000 - off);
                // SAFETY: `fetch_page` returned the host address of a RAM frame that lies
                // wholly in one region of `self.ram` (checked in `host_page`), which this Cpu
                // keeps alive; the slice stays inside that frame and is copied at once.
                unsafe { std::slice::from_raw_parts(page.add(off), len) }.to_vec()
            })
        };
        if let Some(p) = self.blocks.get(&key) {
            // SAFETY: `get` returned a block the cache keeps alive until the next `collect`,
            // which only the run loop calls, never during this function.
            let b = unsafe { &*p };
            // Validated in this epoch: its frame has stayed watched since (a store to it
            // would have dropped the block or started a new epoch).
            let mut valid = b.epoch.load(Ordering::Relaxed) == epoch;
            if !valid && copy(self, b.bytes.len()).is_some_and(|c| c == b.bytes) {
                // Watched again: our own stores to this frame must take the slow path again.
                self.tlb.flush_phys_writes(frame);
                b.epoch.store(epoch, Ordering::Relaxed);
                valid = true;
            }
            if valid {
                self.blocks.remember(key, b, epoch);
                return Ok(BlockRef::of(b));
            }
            // Guest RAM was written behind our back (DMA, another vCPU): decode afresh.
            self.blocks.invalidate_page(frame);
        }
        let fast = self.fast_forms;
        let code = copy(self, MAX_BLOCK * 15);
        let block = code.and_then(|c| decode_block(&c, bits, rip, epoch, fast));
        let block = match block {
            Some(b) => Arc::new(b),
            None => {
                // Page-crossing first instruction, or code outside RAM: one uncached instruction.
                let mut buf = [0u8; 15];
                let avail = if host.is_some() {
                    15
                } else {
                    (0x1000 - (lin & 0xfff) as usize).min(15)
                };
                self.fetch_bytes(lin, &mut buf[..avail])?;
                let b =
                    decode_block(&buf[..avail], bits, rip, epoch, fast).unwrap_or_else(|| Block {
                        insns: vec![DecodedInsn::new(
                            Instruction::default(),
                            table::invalid,
                            bits,
                            false,
                        )],
                        bytes: Vec::new(),
                        epoch: AtomicU64::new(epoch),
                        ip_mask: ip_mask(bits),
                    });
                let one = Block {
                    insns: b.insns.into_iter().take(1).collect(),
                    bytes: Vec::new(),
                    epoch: AtomicU64::new(epoch),
                    ip_mask: b.ip_mask,
                };
                if self.trace.mask.in_asm {
                    self.trace_block(&one, lin, frame | (lin & 0xfff));
                }
                return Ok(self.blocks.park(Arc::new(one)));
            }
        };
        if self.trace.mask.in_asm {
            self.trace_block(&block, lin, key.phys);
        }
        self.tlb.flush_phys_writes(frame);
        let r = BlockRef::of(&block);
        self.blocks.insert(key, block, epoch);
        Ok(r)
    }
}

/// Decode a block from `code` (which starts at `rip`); `None` if not even the first
/// instruction fits in `code`. `epoch` is the current code epoch; `fast` allows the
/// pre-decoded fast forms.
pub fn decode_block(code: &[u8], bits: u32, rip: u64, epoch: u64, fast: bool) -> Option<Block> {
    let mut decoder = iced_x86::Decoder::with_ip(bits, code, rip, iced_x86::DecoderOptions::NONE);
    let mut insns = Vec::new();
    let mut insn = Instruction::default();
    while insns.len() < MAX_BLOCK && decoder.can_decode() {
        decoder.decode_out(&mut insn);
        if insn.is_invalid() {
            if decoder.last_error() == iced_x86::DecoderError::NoMoreBytes {
                break;
            }
            insns.push(DecodedInsn::new(insn, table::invalid, bits, false));
            break;
        }
        let (handler, ends) = table::handler_for(&insn);
        insns.push(DecodedInsn::new(insn, handler, bits, fast));
        if ends || insn.flow_control() != iced_x86::FlowControl::Next {
            break;
        }
    }
    if insns.is_empty() {
        None
    } else {
        let used: usize = insns.iter().map(|d| d.insn.len()).sum();
        Some(Block {
            insns,
            bytes: code[..used.min(code.len())].to_vec(),
            epoch: AtomicU64::new(epoch),
            ip_mask: ip_mask(bits),
        })
    }
}

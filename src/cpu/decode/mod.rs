//! Decode once: guest code decoded with iced-x86 into blocks, cached by guest-physical address.
//!
//! A block starts at some RIP, ends after a control-flow instruction, an instruction that may
//! change how the following code must be decoded or run (mode, paging, interrupt flag), at the
//! end of its 4 KiB page, or after [`MAX_BLOCK`] instructions. Every decoded instruction carries
//! the semantics function chosen once by [`table::handler_for`], so the run loop calls through a
//! pointer with no opcode dispatch. The cache key is (physical address, RIP, code size), so a
//! block stays valid whatever the segment base or linear alias it is reached through.
//! A per-page bitmap tells the write path which physical pages hold translated code.

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

/// Entries in the direct-mapped lookup cache in front of the hash map.
const FAST_SIZE: usize = 4096;

/// The block cache with its per-page index and code bitmap.
#[derive(Default)]
pub struct BlockCache {
    map: FastMap<Key, Arc<Block>>,
    pages: FastMap<u64, Vec<Key>>,
    bitmap: Vec<u64>,
    /// Direct-mapped front cache: most block lookups end here without hashing.
    fast: Vec<Option<(Key, Arc<Block>)>>,
    /// Blocks dropped from the cache, freed at the next block boundary.
    retired: Vec<Arc<Block>>,
}

#[inline]
fn fast_index(k: &Key) -> usize {
    ((k.phys ^ (k.rip << 7) ^ (k.rip >> 5)) as usize) & (FAST_SIZE - 1)
}

impl BlockCache {
    /// A cache for guest RAM up to `last_addr`.
    pub fn new(last_addr: u64) -> Self {
        let pages = (last_addr >> 12) as usize + 1;
        BlockCache {
            bitmap: vec![0; pages.div_ceil(64)],
            fast: vec![None; FAST_SIZE],
            ..BlockCache::default()
        }
    }

    /// Does physical frame `phys` hold translated code?
    #[inline]
    pub fn is_code_page(&self, phys: u64) -> bool {
        let page = (phys >> 12) as usize;
        self.bitmap
            .get(page / 64)
            .is_some_and(|w| w & (1 << (page % 64)) != 0)
    }

    /// A cached block. The pointer stays valid until the next [`BlockCache::collect`], even
    /// if the block is dropped from the cache meanwhile.
    #[inline]
    pub fn get(&mut self, key: &Key) -> Option<*const Block> {
        let idx = fast_index(key);
        if let Some(Some((k, b))) = self.fast.get(idx) {
            if k == key {
                return Some(Arc::as_ptr(b));
            }
        }
        let b = self.map.get(key)?.clone();
        let p = Arc::as_ptr(&b);
        if let Some(slot) = self.fast.get_mut(idx) {
            *slot = Some((*key, b));
        }
        Some(p)
    }

    /// Keep `block` (not cached) alive until the next [`BlockCache::collect`].
    pub fn park(&mut self, block: Arc<Block>) -> *const Block {
        let p = Arc::as_ptr(&block);
        self.retired.push(block);
        p
    }

    /// Free the blocks dropped since the last call. Only the run loop calls this, between
    /// blocks, when no pointer from [`BlockCache::get`] is in use.
    #[inline]
    pub fn collect(&mut self) {
        if !self.retired.is_empty() {
            self.retired.clear();
        }
    }

    /// Cache a block; returns false (not cached) if its page is outside the bitmap.
    pub fn insert(&mut self, key: Key, block: Arc<Block>) -> bool {
        let page = (key.phys >> 12) as usize;
        let Some(word) = self.bitmap.get_mut(page / 64) else {
            return false;
        };
        *word |= 1 << (page % 64);
        if self.map.len() >= MAX_BLOCKS {
            self.clear();
            return self.insert(key, block);
        }
        self.map.insert(key, block);
        self.pages.entry(key.phys & !0xfff).or_default().push(key);
        true
    }

    /// Drop every block on physical frame `phys`.
    pub fn invalidate_page(&mut self, phys: u64) {
        let page = phys & !0xfff;
        if let Some(keys) = self.pages.remove(&page) {
            for k in keys {
                if let Some(b) = self.map.remove(&k) {
                    self.retired.push(b);
                }
                if let Some(slot) = self.fast.get_mut(fast_index(&k)) {
                    if slot.as_ref().is_some_and(|(fk, _)| *fk == k) {
                        *slot = None;
                    }
                }
            }
        }
        let p = (page >> 12) as usize;
        if let Some(w) = self.bitmap.get_mut(p / 64) {
            *w &= !(1 << (p % 64));
        }
    }

    /// Drop everything.
    pub fn clear(&mut self) {
        self.retired.extend(self.map.drain().map(|(_, b)| b));
        self.pages.clear();
        self.bitmap.fill(0);
        self.fast.fill(None);
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
    /// The pointer is valid until the next `self.blocks.collect()` (see the module doc).
    pub(crate) fn current_block(&mut self) -> Res<*const Block> {
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
        let epoch = self.code_epoch.load(Ordering::Relaxed);
        let off = (lin & 0xfff) as usize;
        // A copy of up to `len` code bytes at `lin` (RAM only).
        let copy = |len: usize| {
            host.map(|page| {
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
            if b.epoch.load(Ordering::Relaxed) == epoch {
                return Ok(p);
            }
            // Guest RAM may have been written behind our back (DMA): check the bytes.
            if copy(b.bytes.len()).is_some_and(|c| c == b.bytes) {
                b.epoch.store(epoch, Ordering::Relaxed);
                return Ok(p);
            }
            self.blocks.invalidate_page(frame);
        }
        let fast = self.fast_forms;
        let code = copy(MAX_BLOCK * 15);
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
        if self.blocks.insert(key, block.clone()) {
            self.tlb.flush_phys_writes(frame);
        }
        Ok(self.blocks.park(block))
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

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

mod cache;
pub mod sse_table;
pub mod table;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use iced_x86::Instruction;

use super::exec::fast::{self, Ops};
use super::fault::Res;
use super::Cpu;
pub(crate) use cache::GEN_OFFSET;
pub use cache::{BlockCache, BlockRef, Key, UNCACHED};

/// Maximum instructions per block.
pub const MAX_BLOCK: usize = 64;

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
///
/// The run loop reads `jit` and then `insns` of every block it runs: they come first, so
/// they usually share a cache line (a booting kernel's blocks mostly miss in the cache).
#[repr(C)]
pub struct Block {
    /// Hotness and translation (`cpu::jit`).
    pub jit: crate::cpu::jit::BlockJit,
    /// The instructions, the last one possibly a branch.
    pub insns: Vec<DecodedInsn>,
    /// RIP wraps to this (the code size it was decoded for: 16, 32 or 64 bits).
    pub ip_mask: u64,
    /// The code epoch at which `bytes` were last known to match guest memory.
    pub epoch: AtomicU64,
    /// The code bytes the block was decoded from (revalidated after a code-epoch bump).
    pub bytes: Vec<u8>,
}

/// The RIP mask of a `bits`-bit code segment.
pub(crate) fn ip_mask(bits: u32) -> u64 {
    match bits {
        64 => u64::MAX,
        32 => 0xffff_ffff,
        _ => 0xffff,
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
        self.jit_ctx.epoch = epoch;
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
                return Ok(BlockRef::of(b).at(key.phys));
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
                if let Some(b) = self.blocks.straddler(rip, bits, &buf[..avail]) {
                    return Ok(self.blocks.park(b));
                }
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
                        jit: Default::default(),
                    });
                let insns: Vec<DecodedInsn> = b.insns.into_iter().take(1).collect();
                // Its bytes, to know it again (none for an undecodable one).
                let len = insns.first().map_or(0, |d| d.insn.len()).min(avail);
                let one = Arc::new(Block {
                    insns,
                    bytes: buf[..len].to_vec(),
                    epoch: AtomicU64::new(epoch),
                    ip_mask: b.ip_mask,
                    jit: Default::default(),
                });
                if self.trace.mask.in_asm {
                    self.trace_block(&one, lin, frame | (lin & 0xfff));
                }
                self.blocks.keep_straddler(rip, one.clone());
                return Ok(self.blocks.park(one));
            }
        };
        if self.trace.mask.in_asm {
            self.trace_block(&block, lin, key.phys);
        }
        self.tlb.flush_phys_writes(frame);
        let r = BlockRef::of(&block).at(key.phys);
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
            jit: Default::default(),
        })
    }
}

//! The software x86-64 CPU: decode cache, interpreter, baseline JIT, MMU and exceptions. It
//! reaches the outside only through the seam types in `crate::accel`.
//!
//! A [`Cpu`] owns its architectural state ([`state::CpuState`]), a software TLB, and a block
//! cache; it borrows guest RAM (`Arc<GuestRam>`), the machine's [`IoHandler`] and the shared
//! [`ExitStats`]. [`Cpu::run`] executes blocks until HLT, a kick, a shutdown or a fatal
//! condition. External interrupts come in through [`Cpu::raise_external`].
//!
//! Layout: `state`/`flags` (registers), `mmu/` (segmentation, paging, TLB), `decode/` (block
//! cache, handler table), `exec/` (semantics by instruction family), `exception`/`interrupt`
//! (event delivery), `descriptor` (GDT/LDT/TSS), `run` (the block loop), `jit` (hot blocks as
//! host code, entered from the block loop), `trace` (`-d` hooks).

pub mod decode;
pub mod descriptor;
pub mod exception;
pub mod exec;
pub mod fault;
pub mod flags;
pub mod fpu_state;
pub mod interrupt;
pub mod jit;
pub mod mmu;
pub mod run;
pub mod state;
pub mod trace;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use vm_memory::GuestMemoryBackend;

use self::decode::BlockCache;
use self::mmu::tlb::Tlb;
use self::state::CpuState;
use crate::accel::{CodeWatch, ExitStats, GuestRam, IoHandler, TimeSource};

pub use run::CpuExit;

/// One software vCPU.
pub struct Cpu {
    /// Architectural state.
    pub state: CpuState,
    pub(crate) ram: Arc<GuestRam>,
    pub(crate) io: Arc<dyn IoHandler>,
    pub(crate) stats: Arc<ExitStats>,
    pub(crate) id: usize,
    pub(crate) tlb: Tlb,
    pub(crate) blocks: BlockCache,
    /// RIP of the next instruction, set before each semantics call; branches overwrite it.
    pub(crate) next_rip: u64,
    /// End the current block after this instruction (mode change, SMC, STI...).
    pub(crate) stop_block: bool,
    /// Interrupts are inhibited for one instruction (after STI or MOV/POP SS).
    pub(crate) shadow: bool,
    /// The CPU is halted (HLT) until an interrupt.
    pub halted: bool,
    pending_external: Option<u8>,
    /// Return at the next boundary with IF set (see [`Cpu::request_interrupt_window`]).
    interrupt_window: bool,
    pending_nmi: bool,
    /// An NMI handler is running: further NMIs wait for the next IRET.
    pub(crate) nmi_blocked: bool,
    /// Instructions that raised #UD because they are not implemented (not invalid encodings).
    pub unimplemented: u64,
    /// The last unimplemented mnemonic seen, for reports.
    pub last_unimplemented: Option<iced_x86::Mnemonic>,
    /// Number of vCPUs in the machine (CPUID topology).
    pub cpu_count: usize,
    /// Which frames hold translated code, shared with the other vCPUs and the devices that
    /// write guest RAM (see [`Cpu::set_code_watch`]).
    pub(crate) code: Arc<CodeWatch>,
    /// The last [`CodeWatch::marks`] this vCPU acted on.
    pub(crate) seen_marks: u64,
    /// Debugger breakpoints (linear addresses): `run` stops with [`CpuExit::Debug`] before
    /// executing an instruction at one of them. Empty = no per-instruction check.
    pub breakpoints: Vec<u64>,
    /// Where the TSC comes from (see [`Cpu::set_time_source`]); `None`: retired instructions.
    time: Option<TimeSource>,
    /// `-d in_asm,int,cpu`: what to trace and where (see [`trace`]).
    pub(crate) trace: trace::Tracer,
    /// Mode facts for the fast forms' memory path, recomputed at the start of every block.
    pub(crate) block_mode: exec::fast::BlockMode,
    /// Decode into the pre-decoded fast forms (`exec::fast`) where they exist; off, every
    /// instruction runs its general semantics (the tests compare the two).
    pub(crate) fast_forms: bool,
    /// Retired instructions reach the shared counters once this many have gathered.
    pub(crate) report_every: u64,
    /// Hot blocks as host code (`cpu::jit`).
    pub jit: jit::Jit,
    /// The fault a translated block's call-out met, for the run loop to deliver.
    pub(crate) jit_fault: Option<fault::Fault>,
    /// What a translated loop checks before it goes round again (set by the run loop).
    pub(crate) jit_ctx: jit::LoopCtx,
}

impl Cpu {
    /// A CPU in the RESET state over `ram`, serving I/O through `io`, counting into `stats`.
    pub fn new(
        id: usize,
        ram: Arc<GuestRam>,
        io: Arc<dyn IoHandler>,
        stats: Arc<ExitStats>,
    ) -> Self {
        let last = ram.last_addr().0;
        Cpu {
            state: CpuState::default(),
            ram,
            io,
            stats,
            id,
            tlb: Tlb::default(),
            blocks: BlockCache::new(),
            next_rip: 0,
            stop_block: false,
            shadow: false,
            halted: false,
            pending_external: None,
            interrupt_window: false,
            pending_nmi: false,
            nmi_blocked: false,
            unimplemented: 0,
            last_unimplemented: None,
            cpu_count: 1,
            code: Arc::new(CodeWatch::new(last, 1)),
            seen_marks: 0,
            breakpoints: Vec::new(),
            time: None,
            trace: trace::Tracer::default(),
            block_mode: exec::fast::BlockMode::default(),
            fast_forms: true,
            report_every: run::REPORT_EVERY,
            jit: jit::Jit::new(true),
            jit_fault: None,
            jit_ctx: jit::LoopCtx::default(),
        }
    }

    /// The vCPU index.
    pub fn id(&self) -> usize {
        self.id
    }

    /// Replace the architectural state (boot, reset, restore): TLB and halt state are reset.
    pub fn set_state(&mut self, s: CpuState) {
        self.state = s;
        self.tlb.flush_all();
        self.halted = false;
        self.shadow = false;
        self.nmi_blocked = false;
    }

    /// Ask [`Cpu::run`] to return [`CpuExit::InterruptWindow`] at the first instruction
    /// boundary where RFLAGS.IF is set (and no STI/MOV SS shadow): the interrupt controller has
    /// an interrupt that had to wait for IF. Without it, the wait would last until the next
    /// slice or kick, and a periodic timer could keep a lower-priority vector waiting forever.
    pub fn request_interrupt_window(&mut self) {
        self.interrupt_window = true;
    }

    /// Request external interrupt `vector` (from the interrupt controller). It is delivered at
    /// the next instruction boundary where RFLAGS.IF = 1 and no STI/MOV SS shadow is active,
    /// and wakes a halted CPU then. Only one vector is latched (like the INTR pin with its
    /// INTA cycle): a second call before delivery replaces the first.
    pub fn raise_external(&mut self, vector: u8) {
        self.pending_external = Some(vector);
    }

    /// The latched external interrupt not yet delivered, if any.
    pub fn pending_external(&self) -> Option<u8> {
        self.pending_external
    }

    /// Request an NMI (delivered at the next instruction boundary regardless of IF, unless an
    /// NMI handler is still running: then after its IRET).
    pub fn raise_nmi(&mut self) {
        self.pending_nmi = true;
    }

    /// Drop a latched external interrupt and a pending NMI (INIT discards them).
    pub fn discard_pending_events(&mut self) {
        self.pending_external = None;
        self.pending_nmi = false;
    }

    /// The code watch: which frames hold translated code, and the epoch that moves when one
    /// of them is written without going through this CPU (device DMA, other vCPUs' stores).
    /// Every cached block is then re-checked against memory before it runs again, so stale
    /// code is never executed.
    pub fn code_watch(&self) -> Arc<CodeWatch> {
        self.code.clone()
    }

    /// Share `watch` with the machine's devices and the other vCPUs (before the first `run`).
    pub fn set_code_watch(&mut self, watch: Arc<CodeWatch>) {
        self.code = watch;
        self.seen_marks = self.code.marks();
        self.blocks.clear();
    }

    /// Drive the TSC from `time` (nanoseconds: a 1 GHz TSC) instead of the instruction count,
    /// keeping its current value. From then on `state.tsc` holds the offset TSC − time, which
    /// WRMSR to IA32_TSC changes.
    pub fn set_time_source(&mut self, time: TimeSource) {
        let tsc = self.tsc();
        self.time = Some(time);
        self.set_tsc(tsc);
        // Translated loops advance an instruction-counting TSC themselves: translate again.
        self.blocks.clear();
    }

    /// The time-stamp counter now.
    pub fn tsc(&self) -> u64 {
        match &self.time {
            Some(t) => t().wrapping_add(self.state.tsc),
            None => self.state.tsc,
        }
    }

    /// Set the time-stamp counter (WRMSR IA32_TSC).
    pub fn set_tsc(&mut self, v: u64) {
        self.state.tsc = match &self.time {
            Some(t) => v.wrapping_sub(t()),
            None => v,
        };
    }

    /// Report retired instructions to the shared counters after every block (`true`: the
    /// counters are exact at each block boundary, as an instruction-count clock reading them
    /// in the middle of a run needs) or in batches (`false`, the default: cheaper).
    pub fn set_exact_instruction_count(&mut self, exact: bool) {
        self.report_every = if exact { 1 } else { run::REPORT_EVERY };
    }

    /// Whether the TSC counts retired instructions (no time source).
    pub(crate) fn tsc_counts_instructions(&self) -> bool {
        self.time.is_none()
    }

    /// Number of blocks in the decode cache (tests, statistics).
    pub fn cached_blocks(&self) -> usize {
        self.blocks.len()
    }
}

impl Cpu {
    /// Drop all translated code and TLB entries: call after writing guest code behind the CPU's
    /// back (image loading, DMA into code pages).
    pub fn invalidate_code(&mut self) {
        self.blocks.clear();
        self.tlb.flush_all();
    }
}

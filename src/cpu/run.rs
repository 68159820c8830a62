//! The block loop: fetch the block at CS:RIP and run it, either through its translation
//! (`cpu::jit`, once the block is hot and will run whole) or by calling each instruction's
//! semantics through its pre-resolved pointer; deliver faults and interrupts at instruction
//! boundaries.
//!
//! Between blocks it checks the kick flag and pending interrupts; retired instructions are
//! counted once per block. Translations may run several blocks before they return (loops and
//! chained branches): they do the same checks between them and report through
//! `Cpu::jit_ctx` how many instructions went.

use std::sync::atomic::{AtomicBool, Ordering};

use super::fault::Fault;
use super::flags::{IF, TF};
use super::Cpu;

/// Retired instructions are added to the shared counters in batches of at least this many
/// (and whenever `run` returns), so counting costs nothing measurable; an instruction-count
/// clock needs every block reported ([`Cpu::set_exact_instruction_count`]).
pub(crate) const REPORT_EVERY: u64 = 4096;

/// Why [`Cpu::run`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuExit {
    /// HLT with no deliverable interrupt.
    Halt,
    /// The kick flag was set.
    Interrupted,
    /// Triple fault.
    Shutdown,
    /// The CPU cannot go on (the text says why).
    Fatal(String),
    /// The next instruction is at a debugger breakpoint ([`Cpu::breakpoints`]); it has not run.
    Debug,
    /// RFLAGS.IF is set again after [`Cpu::request_interrupt_window`]: the interrupt the
    /// controller holds can be taken now (KVM's interrupt-window exit).
    InterruptWindow,
}

impl Cpu {
    /// Run until HLT, a kick (`kick` is cleared when seen), a triple fault or a fatal condition.
    pub fn run(&mut self, kick: &AtomicBool) -> CpuExit {
        self.run_limited(kick, u64::MAX)
    }

    /// Like [`Cpu::run`], but also return [`CpuExit::Interrupted`] once at least `budget`
    /// instructions have retired (checked between blocks: single stepping, tests, and a
    /// deterministic instruction-count clock later).
    pub fn run_limited(&mut self, kick: &AtomicBool, budget: u64) -> CpuExit {
        let mut executed = 0u64;
        let mut unreported = 0u64;
        let exit = self.run_inner(kick, budget, &mut executed, &mut unreported);
        self.stats.add_instructions(self.id, unreported);
        exit
    }

    fn run_inner(
        &mut self,
        kick: &AtomicBool,
        budget: u64,
        executed: &mut u64,
        unreported: &mut u64,
    ) -> CpuExit {
        loop {
            if *executed >= budget {
                return CpuExit::Interrupted;
            }
            if kick.load(Ordering::Relaxed) {
                kick.store(false, Ordering::Relaxed);
                return CpuExit::Interrupted;
            }
            let inhibit = std::mem::take(&mut self.shadow);
            if !inhibit {
                if self.interrupt_window
                    && self.pending_external.is_none()
                    && self.state.flags.sys(IF)
                {
                    self.interrupt_window = false;
                    return CpuExit::InterruptWindow;
                }
                if let Err(exit) = self.take_interrupt() {
                    return exit;
                }
            }
            if self.halted {
                return CpuExit::Halt;
            }
            // No block pointer is held across this point: free what the last block retired.
            self.blocks.collect();
            let block = match self.current_block() {
                Ok(b) => b,
                Err(f) => match self.fault(f) {
                    Ok(()) => continue,
                    Err(exit) => return exit,
                },
            };
            if self.trace.mask.cpu {
                self.trace_cpu();
            }
            self.block_mode = super::exec::fast::BlockMode::of(&self.state);
            let room = usize::try_from(budget - *executed).unwrap_or(usize::MAX);
            // RFLAGS.TF: one instruction, then a #DB trap.
            let single_step = self.state.flags.sys(TF);
            let limit = if inhibit || single_step {
                1
            } else {
                block.len.min(room)
            };
            let mut retired = 0u64;
            let mut result = Ok(());
            // One test per block when no debugger breakpoint is set.
            let watch = !self.breakpoints.is_empty();
            let mut at_breakpoint = false;
            let ip_mask = block.ip_mask;
            let whole = limit == block.len && !inhibit && !single_step && !watch;
            let entry = if whole && self.jit.enabled {
                self.jit_entry(block)
            } else {
                None
            };
            // Instructions of the blocks a translation ran before its last one (loops and
            // chains; an instruction-counting TSC has them already).
            let mut looped = 0;
            if let Some(entry) = entry {
                (retired, looped, result) = self.run_translated(block, entry, room, kick);
            }
            let insns = if entry.is_some() {
                &[][..]
            } else {
                // SAFETY: the block stays alive until the next `collect` above, which runs
                // only after this iteration is done with it (see the `decode::cache` module
                // doc).
                let all = unsafe { block.insns() };
                &all[..limit]
            };
            for d in insns {
                if watch && self.breakpoints.contains(&self.linear_rip()) {
                    at_breakpoint = true;
                    break;
                }
                self.next_rip = self.state.rip.wrapping_add(d.insn.len() as u64) & ip_mask;
                match (d.exec)(self, d) {
                    Ok(()) => {
                        self.state.rip = self.next_rip;
                        retired += 1;
                    }
                    Err(f) => {
                        if f == Fault::Halt {
                            retired += 1;
                        }
                        result = self.fault(f);
                        break;
                    }
                }
                if self.stop_block {
                    self.stop_block = false;
                    break;
                }
            }
            self.stop_block = false;
            if single_step && result.is_ok() && retired == 1 {
                self.state.dr[6] |= 1 << 14;
                result = self.deliver_event(
                    super::fault::vec::DB,
                    None,
                    super::exception::Kind::External,
                );
            }
            if self.tsc_counts_instructions() {
                self.state.tsc = self.state.tsc.wrapping_add(retired);
            }
            retired += looped;
            *unreported += retired;
            if *unreported >= self.report_every {
                self.stats.add_instructions(self.id, *unreported);
                *unreported = 0;
            }
            *executed += retired.max(1);
            if let Err(exit) = result {
                return exit;
            }
            if at_breakpoint {
                return CpuExit::Debug;
            }
        }
    }

    /// Run `block`'s translation `entry` with `room` instructions of budget left: how many
    /// instructions its last block retired, how many the blocks before it did, and the effect
    /// of a fault it met.
    fn run_translated(
        &mut self,
        block: super::decode::BlockRef,
        entry: super::jit::Entry,
        room: usize,
        kick: &AtomicBool,
    ) -> (u64, u64, Result<(), CpuExit>) {
        let budget = if self.trace.mask.cpu {
            // Traced: one block per entry, as interpreted.
            0
        } else {
            room as u64
        };
        if block.phys != super::decode::UNCACHED {
            let gen = self.blocks.generation();
            let rip = self.state.rip;
            self.jit.remember(rip, block.phys, gen, block.len, entry);
        }
        self.jit_ctx.budget = budget;
        self.jit_ctx.tlb_tag = self.block_mode.jit_tag_bits();
        self.jit_ctx.kick = kick as *const AtomicBool as usize;
        self.jit_ctx.watch = std::sync::Arc::as_ptr(&self.code) as usize;
        // SAFETY: `entry` is the translation of `block`, which stays alive for this
        // iteration of the run loop; it is entered with this Cpu, which nothing else uses
        // meanwhile (the translation reaches it only through the pointer it is given), and
        // `jit_ctx` points at the kick flag and code watch, alive for the call.
        let word = unsafe { entry(self as *mut Cpu) };
        let looped = budget - self.jit_ctx.budget;
        let index = word & 0xffff_ffff;
        if word >> 32 == super::jit::FAULT {
            if let Some(f) = self.jit_fault.take() {
                // HLT retires; a faulting instruction does not.
                let retired = if f == Fault::Halt { index + 1 } else { index };
                return (retired, looped, self.fault(f));
            }
        }
        (index + 1, looped, Ok(()))
    }

    /// Turn a fault into its effect: exception delivery, halt, or an exit.
    fn fault(&mut self, f: Fault) -> Result<(), CpuExit> {
        match f {
            Fault::Exception(e) => self.raise_exception(e.vector(), e.code()),
            Fault::Halt => {
                self.halted = true;
                self.stats.count(self.id, crate::accel::ExitReason::Halt);
                Ok(())
            }
            Fault::Shutdown => Err(CpuExit::Shutdown),
        }
    }

    /// Deliver a pending NMI or external interrupt if the CPU accepts one now.
    fn take_interrupt(&mut self) -> Result<(), CpuExit> {
        if self.pending_nmi && !self.nmi_blocked {
            self.pending_nmi = false;
            self.nmi_blocked = true;
            self.halted = false;
            return self.deliver_event(
                super::fault::vec::NMI,
                None,
                super::exception::Kind::External,
            );
        }
        if let Some(v) = self.pending_external {
            if self.state.flags.sys(IF) {
                self.pending_external = None;
                self.halted = false;
                return self.deliver_event(v, None, super::exception::Kind::External);
            }
        }
        Ok(())
    }
}

impl Cpu {
    /// The linear address of the next instruction (CS base + RIP outside 64-bit mode), as
    /// debugger breakpoints name it.
    pub fn linear_rip(&self) -> u64 {
        let s = &self.state;
        if s.mode64() {
            s.rip
        } else {
            s.seg[super::state::sreg::CS].base.wrapping_add(s.rip) & 0xffff_ffff
        }
    }

    /// Up to 15 code bytes at CS:RIP for crash reports (empty if unreadable).
    pub fn code_bytes_at_rip(&mut self) -> Vec<u8> {
        let lin = self.linear_rip();
        let mut out = Vec::new();
        for k in 0..15u64 {
            match self.read_lin_slow(lin.wrapping_add(k), 1, false, super::mmu::tlb::Access::Read) {
                Ok(b) => out.push(b as u8),
                Err(_) => break,
            }
        }
        out
    }
}

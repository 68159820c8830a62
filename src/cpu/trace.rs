//! What the software CPU can trace (QEMU's `-d in_asm,int,cpu`) and the hook it traces through.
//!
//! The CPU knows nothing of the machine's log: whoever creates it hands it a [`TraceMask`] (what
//! to report) and a [`TraceSink`] (where the text goes, implemented by the machine over its
//! `-d`/`-D` output). Text enters the sink as finished records: an `IN:` listing per decoded
//! block, one line per delivered event, a register dump per executed block. With the mask all
//! off the run loop pays one branch on a bool per block, decoding one per block decoded, event
//! delivery one per event.

use std::fmt::Write as _;
use std::sync::Arc;

use iced_x86::{Formatter, IntelFormatter};

use super::decode::Block;
use super::exception::Kind;
use super::state::sreg;
use super::Cpu;

/// Which events the CPU reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TraceMask {
    /// Each block of guest code when it is decoded (`in_asm`).
    pub in_asm: bool,
    /// Each exception and interrupt delivered (`int`).
    pub int: bool,
    /// The registers before each executed block (`cpu`).
    pub cpu: bool,
}

impl TraceMask {
    /// Whether anything is traced.
    pub fn any(&self) -> bool {
        self.in_asm || self.int || self.cpu
    }
}

/// Where the CPU's trace records go.
pub trait TraceSink: Send + Sync {
    /// One record from vCPU `vcpu`: one or more lines, without a final newline.
    fn record(&self, vcpu: usize, text: &str);
}

/// A CPU's tracing setup: the mask, the sink, and the event counter `int` records are numbered
/// with (as QEMU numbers its `int` lines).
#[derive(Default)]
pub(crate) struct Tracer {
    pub(crate) mask: TraceMask,
    sink: Option<Arc<dyn TraceSink>>,
    events: u64,
}

impl Cpu {
    /// Trace what `mask` asks for into `sink` (none: trace nothing).
    pub fn set_trace(&mut self, mask: TraceMask, sink: Option<Arc<dyn TraceSink>>) {
        let mask = if sink.is_some() {
            mask
        } else {
            TraceMask::default()
        };
        self.trace = Tracer {
            mask,
            sink,
            events: 0,
        };
    }

    fn emit(&self, text: &str) {
        if let Some(sink) = &self.trace.sink {
            sink.record(self.id, text);
        }
    }

    /// `in_asm`: list a freshly decoded block that starts at linear address `lin`.
    pub(crate) fn trace_block(&self, block: &Block, lin: u64, phys: u64) {
        let mut text = String::new();
        let _ = write!(
            text,
            "----------------\nIN: cpu{} {}-bit phys {phys:#x}",
            self.id,
            self.state.bitness()
        );
        let mut formatter = IntelFormatter::new();
        formatter.options_mut().set_first_operand_char_index(8);
        let mut asm = String::new();
        let start = block.insns.first().map_or(0, |d| d.insn.ip());
        for d in &block.insns {
            asm.clear();
            formatter.format(&d.insn, &mut asm);
            let at = lin.wrapping_add(d.insn.ip().wrapping_sub(start));
            let _ = write!(text, "\n{at:#018x}:  {asm}");
        }
        self.emit(&text);
    }

    /// `int`: one line for event `vector` about to be delivered, in QEMU's layout: the event
    /// number, vector, error code, whether it is a software interrupt, CPL, CS:RIP (the
    /// faulting or interrupted instruction, or the return address for INT n), SS:RSP and CR2.
    pub(crate) fn trace_event(&mut self, vector: u8, code: Option<u32>, kind: Kind, ret: u64) {
        let n = self.trace.events;
        self.trace.events += 1;
        let s = &self.state;
        let err = code.map_or_else(|| "----".to_string(), |c| format!("{c:04x}"));
        let what = match kind {
            Kind::Exception => "exception",
            Kind::Software => "software",
            Kind::External => "external",
        };
        let text = format!(
            "cpu{} int {n:>6}: v={vector:02x} e={err} i={} cpl={} IP={:04x}:{:016x} \
             pc={ret:016x} SP={:04x}:{:016x} CR2={:016x} ({what})",
            self.id,
            u8::from(kind == Kind::Software),
            s.cpl(),
            s.seg[sreg::CS].selector,
            s.rip,
            s.seg[sreg::SS].selector,
            s.gpr[4],
            s.cr2,
        );
        self.emit(&text);
    }

    /// `cpu`: the registers before the block at CS:RIP runs.
    pub(crate) fn trace_cpu(&self) {
        const NAMES: [&str; 16] = [
            "RAX", "RCX", "RDX", "RBX", "RSP", "RBP", "RSI", "RDI", "R8", "R9", "R10", "R11",
            "R12", "R13", "R14", "R15",
        ];
        // QEMU's order: RAX RBX RCX RDX, RSI RDI RBP RSP, R8..R15.
        const ORDER: [usize; 16] = [0, 3, 1, 2, 6, 7, 5, 4, 8, 9, 10, 11, 12, 13, 14, 15];
        let s = &self.state;
        let mut text = format!("cpu{} state:", self.id);
        for (k, &r) in ORDER.iter().enumerate() {
            let sep = if k % 4 == 0 { "\n" } else { " " };
            let _ = write!(text, "{sep}{:<3}={:016x}", NAMES[r], s.gpr[r]);
        }
        let _ = write!(
            text,
            "\nRIP={:016x} RFL={:08x} CPL={} {}-bit",
            s.rip,
            s.flags.get(),
            s.cpl(),
            s.bitness()
        );
        for (name, i) in [
            ("ES", sreg::ES),
            ("CS", sreg::CS),
            ("SS", sreg::SS),
            ("DS", sreg::DS),
            ("FS", sreg::FS),
            ("GS", sreg::GS),
        ] {
            let g = &s.seg[i];
            let _ = write!(
                text,
                "\n{name} ={:04x} {:016x} {:08x}",
                g.selector, g.base, g.limit
            );
        }
        let _ = write!(
            text,
            "\nCR0={:08x} CR2={:016x} CR3={:016x} CR4={:08x} EFER={:016x}",
            s.cr0, s.cr2, s.cr3, s.cr4, s.efer
        );
        self.emit(&text);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;

    use vm_memory::{Bytes, GuestAddress};

    use super::*;
    use crate::accel::{ExitStats, GuestRam, IoHandler, Segment, VcpuState};
    use crate::cpu::state::CpuState;

    struct NoIo;
    impl IoHandler for NoIo {
        fn pio_read(&self, _: usize, _: u16, d: &mut [u8]) {
            d.fill(0xff);
        }
        fn pio_write(&self, _: usize, _: u16, _: &[u8]) {}
        fn mmio_read(&self, _: usize, _: u64, d: &mut [u8]) {
            d.fill(0xff);
        }
        fn mmio_write(&self, _: usize, _: u64, _: &[u8]) {}
    }

    #[derive(Default)]
    struct Lines(Mutex<Vec<String>>);
    impl TraceSink for Lines {
        fn record(&self, vcpu: usize, text: &str) {
            assert_eq!(vcpu, 0);
            self.0.lock().unwrap().push(text.to_string());
        }
    }

    /// A real-mode CPU at 0000:7c00 running `code`, with an IVT entry for INT 0x30 → 0:7d00
    /// (an IRET there).
    fn cpu(code: &[u8], mask: TraceMask) -> (Cpu, Arc<Lines>) {
        let ram = Arc::new(GuestRam::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap());
        ram.write_slice(code, GuestAddress(0x7c00)).unwrap();
        ram.write_obj(0x7d00u16, GuestAddress(0x30 * 4)).unwrap();
        ram.write_obj(0u16, GuestAddress(0x30 * 4 + 2)).unwrap();
        ram.write_slice(&[0xcf], GuestAddress(0x7d00)).unwrap();
        let mut c = Cpu::new(0, ram, Arc::new(NoIo), Arc::new(ExitStats::new(1)));
        let mut s = VcpuState::reset();
        s.cs = Segment::real(0, 0xb);
        s.rip = 0x7c00;
        s.gpr[4] = 0x7000;
        c.set_state(CpuState::from_vcpu_state(&s));
        let lines = Arc::new(Lines::default());
        c.set_trace(mask, Some(lines.clone()));
        (c, lines)
    }

    // mov ax, 0x1234; int 0x30; hlt
    const PROGRAM: [u8; 6] = [0xb8, 0x34, 0x12, 0xcd, 0x30, 0xf4];

    #[test]
    fn in_asm_lists_each_block_once_when_decoded() {
        let mask = TraceMask {
            in_asm: true,
            ..TraceMask::default()
        };
        let (mut c, lines) = cpu(&PROGRAM, mask);
        assert_eq!(c.run(&AtomicBool::new(false)), crate::cpu::CpuExit::Halt);
        let l = lines.0.lock().unwrap().clone();
        // Blocks: 7c00 (mov; int), 7d00 (iret), 7c05 (hlt).
        assert_eq!(l.len(), 3, "{l:#?}");
        assert!(l[0].starts_with("----------------\nIN: cpu0 16-bit phys 0x7c00\n"));
        assert!(
            l[0].contains("0x0000000000007c00:  mov     ax,1234h"),
            "{}",
            l[0]
        );
        assert!(
            l[0].contains("0x0000000000007c03:  int     30h"),
            "{}",
            l[0]
        );
        assert!(l[1].contains("iret"), "{}", l[1]);
        assert!(l[2].contains("hlt"), "{}", l[2]);
    }

    #[test]
    fn int_logs_vector_and_return_address() {
        let mask = TraceMask {
            int: true,
            ..TraceMask::default()
        };
        let (mut c, lines) = cpu(&PROGRAM, mask);
        c.run(&AtomicBool::new(false));
        let l = lines.0.lock().unwrap().clone();
        assert_eq!(l.len(), 1, "{l:#?}");
        assert!(
            l[0].starts_with("cpu0 int      0: v=30 e=---- i=1 cpl=0 IP=0000:0000000000007c03"),
            "{}",
            l[0]
        );
        assert!(l[0].contains("pc=0000000000007c05"), "{}", l[0]);
        assert!(l[0].ends_with("(software)"), "{}", l[0]);
    }

    #[test]
    fn cpu_dumps_registers_per_block_and_nothing_without_a_sink() {
        let mask = TraceMask {
            cpu: true,
            ..TraceMask::default()
        };
        let (mut c, lines) = cpu(&PROGRAM, mask);
        c.run(&AtomicBool::new(false));
        let l = lines.0.lock().unwrap().clone();
        assert_eq!(l.len(), 3, "{l:#?}");
        assert!(l[0].contains("RIP=0000000000007c00"), "{}", l[0]);
        assert!(l[1].contains("RAX=0000000000001234"), "{}", l[1]);
        assert!(l[1].contains("RIP=0000000000007d00"), "{}", l[1]);

        let (mut c, lines) = cpu(&PROGRAM, mask);
        c.set_trace(mask, None);
        c.run(&AtomicBool::new(false));
        assert!(lines.0.lock().unwrap().is_empty());
    }
}

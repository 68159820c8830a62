//! Runs one generated block on KVM and on the software CPU from the same start state and
//! compares what they leave behind.
//!
//! Each side is a machine-less VM: 2 MiB of RAM holding a GDT (64-bit user code/data, a TSS),
//! 4-level page tables identity-mapping the low pages (code, data and stack pages user-accessible)
//! and one vCPU at CPL 3 in 64-bit mode. A block enters as bytes written to the code page plus a
//! start state (GPRs, arithmetic flags, data page); the block ends with `hlt`, which at CPL 3
//! raises #GP, and with an empty IDT that escalates to a triple fault (`VcpuExit::Shutdown`) on
//! both accelerators. What leaves is the final GPRs, the defined flags and the data and stack pages of each
//! side, compared into a list of differences.
//!
//! Both sides are built once and reused for every block (PVM makes each KVM entry costly): the
//! code page is rewritten through each side's `GuestRam`, and the software CPU's decode cache is
//! told through [`TcgVcpu::cpu`]`().invalidate_code()`. Every other block runs on the software
//! CPU translated by its JIT (translated before its first run), the others interpreted.

use std::sync::Arc;

use vm_memory::{Bytes, GuestAddress};

use super::gen::{Block, Rng, DATA_SIZE};
use crate::accel::kvm::KvmAccel;
use crate::accel::tcg::{Tcg, TcgVcpu};
use crate::accel::{
    AccelError, Accelerator, DescriptorTable, ExitStats, GuestRam, IoHandler, Segment, Vcpu,
    VcpuContext, VcpuExit, VcpuState,
};

/// Guest RAM size of each side.
const RAM_SIZE: usize = 2 << 20;
/// GDT: null, kernel code/data, user data (0x1b), user code (0x23), TSS (0x28).
const GDT: u64 = 0x1000;
const TSS: u64 = 0x2000;
const PML4: u64 = 0x3000;
const PDPT: u64 = 0x4000;
const PD: u64 = 0x5000;
const PT: u64 = 0x6000;
/// Where blocks are assembled and run (two pages, user read-only).
pub const CODE: u64 = 0x10000;
/// Room for a block's bytes.
pub const CODE_SIZE: u64 = 0x2000;
/// The data page memory operands address (through R15).
pub const DATA: u64 = 0x20000;
/// The stack page, right after the data page so one compare covers both (PUSH/POP use it).
const STACK: u64 = DATA + DATA_SIZE;
/// Bytes compared from [`DATA`]: the data page and the stack page.
const COMPARED: usize = 2 * DATA_SIZE as usize;
const USER_CS: u16 = 0x23;
const USER_DS: u16 = 0x1b;
const TSS_SEL: u16 = 0x28;

/// RFLAGS bits the start state randomizes and the compare may look at.
const ARITH: u64 = 0x8d5;

/// Errors of the harness itself (not differences between the sides).
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// An accelerator could not be set up or failed to run a block.
    #[error("{side}: {source}")]
    Accel {
        /// `kvm` or `tcg`.
        side: &'static str,
        /// The accelerator's error.
        source: AccelError,
    },
    /// A side did not end the block with the expected triple fault.
    #[error("{side}: block ended with {exit:?} at rip {rip:#x}, expected a shutdown")]
    UnexpectedExit {
        /// `kvm` or `tcg`.
        side: &'static str,
        /// The exit seen.
        exit: VcpuExit,
        /// RIP at that exit.
        rip: u64,
    },
    /// Guest memory could not be written or read.
    #[error("guest memory at {addr:#x}: {what}")]
    Memory {
        /// Guest-physical address.
        addr: u64,
        /// What went wrong.
        what: String,
    },
    /// A block does not fit the code area.
    #[error("block of {0} bytes does not fit the code area")]
    BlockTooLarge(usize),
}

/// I/O nobody should do: the blocks have no IN/OUT; reads float.
struct NoIo;

impl IoHandler for NoIo {
    fn pio_read(&self, _: usize, _: u16, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn pio_write(&self, _: usize, _: u16, _: &[u8]) {}
    fn mmio_read(&self, _: usize, _: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn mmio_write(&self, _: usize, _: u64, _: &[u8]) {}
}

/// What a block starts from: identical on both sides.
#[derive(Debug, Clone)]
pub struct Start {
    /// General registers (RSP and R15 are overwritten with the stack and data pointers).
    pub gpr: [u64; 16],
    /// Arithmetic flags (only CF PF AF ZF SF OF are used).
    pub flags: u64,
    /// Data page then stack page contents.
    pub data: Vec<u8>,
}

impl Start {
    /// A random start state.
    pub fn random(rng: &mut Rng) -> Self {
        let mut gpr = [0u64; 16];
        for g in gpr.iter_mut() {
            *g = rng.value();
        }
        gpr[4] = STACK + 0x800;
        gpr[15] = DATA;
        let mut data = vec![0u8; COMPARED];
        for chunk in data.chunks_mut(8) {
            let v = rng.value().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        Start {
            gpr,
            flags: rng.next_u64() & ARITH,
            data,
        }
    }
}

/// What a block leaves behind on one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    /// Final general registers.
    pub gpr: [u64; 16],
    /// Final RFLAGS (full; the compare masks it).
    pub rflags: u64,
    /// RIP at the shutdown.
    pub rip: u64,
    /// Final data page then stack page.
    pub data: Vec<u8>,
}

enum Engine {
    Kvm(Box<dyn Vcpu>),
    Tcg(Box<TcgVcpu>),
}

/// One accelerator with its RAM and its vCPU, reused across blocks.
struct Side {
    name: &'static str,
    ram: Arc<GuestRam>,
    engine: Engine,
    /// Blocks run so far.
    runs: u64,
    // Keeps the VM (and its fds) alive for the vCPU.
    _accel: Box<dyn Accelerator>,
}

fn mem_err(addr: u64, e: impl std::fmt::Display) -> HarnessError {
    HarnessError::Memory {
        addr,
        what: e.to_string(),
    }
}

fn write(ram: &GuestRam, addr: u64, bytes: &[u8]) -> Result<(), HarnessError> {
    ram.write_slice(bytes, GuestAddress(addr))
        .map_err(|e| mem_err(addr, e))
}

/// GDT, TSS and page tables. Only the code, data and stack pages are user-accessible; the code
/// pages are read-only so a stray write faults instead of silently differing.
fn build_tables(ram: &GuestRam) -> Result<(), HarnessError> {
    let tss_lo: u64 = 0x67 | (TSS << 16) | (0x8b << 40);
    let gdt: [u64; 7] = [
        0,
        0x00af_9b00_0000_ffff,
        0x00cf_9300_0000_ffff,
        0x00cf_f300_0000_ffff,
        0x00af_fb00_0000_ffff,
        tss_lo,
        0,
    ];
    for (i, d) in gdt.iter().enumerate() {
        write(ram, GDT + 8 * i as u64, &d.to_le_bytes())?;
    }
    write(ram, PML4, &(PDPT | 7).to_le_bytes())?;
    write(ram, PDPT, &(PD | 7).to_le_bytes())?;
    write(ram, PD, &(PT | 7).to_le_bytes())?;
    for page in (0..0x40u64).map(|p| p << 12) {
        let user_ro = (CODE..CODE + CODE_SIZE).contains(&page);
        let user_rw = page == DATA || page == STACK;
        let flags = if user_ro {
            0x5
        } else if user_rw {
            0x7
        } else if page == 0 {
            continue;
        } else {
            0x3
        };
        write(ram, PT + 8 * (page >> 12), &(page | flags).to_le_bytes())?;
    }
    Ok(())
}

/// The CPL 3 64-bit state a block starts in.
fn user_state(start: &Start) -> VcpuState {
    let mut s = VcpuState::reset();
    s.cr0 = 0x8000_0031;
    s.cr3 = PML4;
    // PAE, OSFXSR, OSXMMEXCPT: SSE usable (the SSE blocks of `gen_sse`).
    s.cr4 = 0x620;
    s.efer = 0xd00;
    s.cs = Segment::flat(USER_CS, 0xb, true);
    let d = Segment::flat(USER_DS, 0x3, false);
    (s.ds, s.es, s.ss, s.fs, s.gs) = (d, d, d, d, d);
    s.tr = Segment {
        selector: TSS_SEL,
        base: TSS,
        limit: 0x67,
        type_: 0xb,
        s: false,
        present: true,
        ..Segment::default()
    };
    s.ldt = Segment {
        type_: 0x2,
        unusable: true,
        ..Segment::default()
    };
    s.gdt = DescriptorTable {
        base: GDT,
        limit: 0x37,
    };
    s.idt = DescriptorTable { base: 0, limit: 0 };
    s.gpr = start.gpr;
    s.rflags = 0x2 | (start.flags & ARITH);
    s.rip = CODE;
    s
}

impl Side {
    fn new(accel: Box<dyn Accelerator>) -> Result<Side, HarnessError> {
        let name = accel.name();
        let aerr = |source| HarnessError::Accel { side: name, source };
        let ram = Arc::new(
            GuestRam::from_ranges(&[(GuestAddress(0), RAM_SIZE)]).map_err(|e| mem_err(0, e))?,
        );
        build_tables(&ram)?;
        accel.map_ram(&ram).map_err(aerr)?;
        let ctx = VcpuContext::new(ram.clone(), Arc::new(NoIo), Arc::new(ExitStats::new(1)), 1);
        let engine = if name == "tcg" {
            Engine::Tcg(Box::new(TcgVcpu::new(0, ctx)))
        } else {
            Engine::Kvm(accel.create_vcpu(0, ctx).map_err(aerr)?)
        };
        Ok(Side {
            name,
            ram,
            engine,
            runs: 0,
            _accel: accel,
        })
    }

    fn vcpu(&mut self) -> &mut dyn Vcpu {
        match &mut self.engine {
            Engine::Kvm(v) => v.as_mut(),
            Engine::Tcg(v) => v.as_mut(),
        }
    }

    fn run(&mut self, block: &Block, start: &Start) -> Result<End, HarnessError> {
        let name = self.name;
        let aerr = |source| HarnessError::Accel { side: name, source };
        write(&self.ram, block.addr, &block.bytes)?;
        write(&self.ram, DATA, &start.data)?;
        if let Engine::Tcg(v) = &mut self.engine {
            let cpu = v.cpu();
            cpu.invalidate_code();
            // Every other block is translated before its first run: both tiers meet the host.
            cpu.jit.hot = if self.runs.is_multiple_of(2) {
                1
            } else {
                crate::cpu::jit::HOT
            };
        }
        self.runs += 1;
        let vcpu = self.vcpu();
        vcpu.set_state(&user_state(start)).map_err(aerr)?;
        let exit = vcpu.run().map_err(aerr)?;
        let s = vcpu.state().map_err(aerr)?;
        if exit != VcpuExit::Shutdown {
            return Err(HarnessError::UnexpectedExit {
                side: name,
                exit,
                rip: s.rip,
            });
        }
        let mut data = vec![0u8; COMPARED];
        self.ram
            .read_slice(&mut data, GuestAddress(DATA))
            .map_err(|e| mem_err(DATA, e))?;
        Ok(End {
            gpr: s.gpr,
            rflags: s.rflags,
            rip: s.rip,
            data,
        })
    }
}

const GPR_NAMES: [&str; 16] = [
    "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15",
];

/// The differences between the host CPU (`kvm`) and the software CPU (`tcg`) after `block`.
pub fn compare(block: &Block, kvm: &End, tcg: &End) -> Vec<String> {
    let mut d = Vec::new();
    for (i, name) in GPR_NAMES.iter().enumerate() {
        if kvm.gpr[i] != tcg.gpr[i] {
            d.push(format!(
                "{name}: kvm {:#018x} tcg {:#018x}",
                kvm.gpr[i], tcg.gpr[i]
            ));
        }
    }
    let m = block.flags_mask;
    if kvm.rflags & m != tcg.rflags & m {
        d.push(format!(
            "rflags (mask {m:#x}): kvm {:#x} tcg {:#x}",
            kvm.rflags & m,
            tcg.rflags & m
        ));
    }
    if kvm.rip != tcg.rip {
        d.push(format!("rip: kvm {:#x} tcg {:#x}", kvm.rip, tcg.rip));
    }
    for (i, (a, b)) in kvm.data.chunks(8).zip(tcg.data.chunks(8)).enumerate() {
        if a != b {
            d.push(format!(
                "mem[{:#x}]: kvm {a:02x?} tcg {b:02x?}",
                DATA + 8 * i as u64
            ));
        }
    }
    d
}

/// The two sides, built once.
pub struct Harness {
    kvm: Side,
    tcg: Side,
}

impl Harness {
    /// Open `/dev/kvm` and build both VMs.
    pub fn new() -> Result<Harness, HarnessError> {
        let kvm = KvmAccel::open(true).map_err(|source| HarnessError::Accel {
            side: "kvm",
            source,
        })?;
        Ok(Harness {
            kvm: Side::new(Box::new(kvm))?,
            tcg: Side::new(Box::new(Tcg::new()))?,
        })
    }

    /// Run `block` from `start` on both sides; the list of differences (empty when they agree)
    /// and what each side left.
    pub fn run(
        &mut self,
        block: &Block,
        start: &Start,
    ) -> Result<(Vec<String>, End, End), HarnessError> {
        if block.addr != CODE || block.bytes.len() as u64 > CODE_SIZE {
            return Err(HarnessError::BlockTooLarge(block.bytes.len()));
        }
        let k = self.kvm.run(block, start)?;
        let t = self.tcg.run(block, start)?;
        Ok((compare(block, &k, &t), k, t))
    }
}

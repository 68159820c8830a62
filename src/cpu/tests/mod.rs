//! CPU tests: small programs assembled with iced-x86's `CodeAssembler` (or raw bytes) run in a
//! small guest RAM with a mock I/O handler, in real, 32-bit protected and 64-bit long mode.

mod alu_flags;
mod atomics;
mod exceptions;
mod fast_forms;
mod jit;
mod modes;
mod programs;
mod strings;
mod system;
mod x87;
mod x87_transcend;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use iced_x86::code_asm::CodeAssembler;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::state::CpuState;
use super::{Cpu, CpuExit};
use crate::accel::{ExitStats, IoHandler, Segment, VcpuState};

/// Records port and MMIO writes; reads return 0xff bytes (port 0x42 returns 0x5a).
#[derive(Default)]
pub struct MockIo {
    pub pio: Mutex<Vec<(u16, Vec<u8>)>>,
    pub mmio: Mutex<Vec<(u64, Vec<u8>)>>,
}

impl IoHandler for MockIo {
    fn pio_read(&self, _vcpu: usize, port: u16, data: &mut [u8]) {
        data.fill(if port == 0x42 { 0x5a } else { 0xff });
    }
    fn pio_write(&self, _vcpu: usize, port: u16, data: &[u8]) {
        self.pio.lock().unwrap().push((port, data.to_vec()));
    }
    fn mmio_read(&self, _vcpu: usize, addr: u64, data: &mut [u8]) {
        for (k, b) in data.iter_mut().enumerate() {
            *b = (addr as u8).wrapping_add(k as u8);
        }
    }
    fn mmio_write(&self, _vcpu: usize, addr: u64, data: &[u8]) {
        self.mmio.lock().unwrap().push((addr, data.to_vec()));
    }
}

/// RAM size of test guests.
pub const RAM: usize = 4 << 20;
/// Where test code is loaded.
pub const CODE: u64 = 0x1_0000;
/// Page tables for 64-bit tests (PML4, PDPT, PD).
pub const PT: u64 = 0x20_0000;
/// GDT.
pub const GDT: u64 = 0x500;

pub struct Guest {
    pub cpu: Cpu,
    pub io: Arc<MockIo>,
    pub stats: Arc<ExitStats>,
    pub ram: Arc<GuestMemoryMmap<()>>,
}

impl Guest {
    pub fn new() -> Self {
        let ram = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM)]).unwrap());
        let io = Arc::new(MockIo::default());
        let stats = Arc::new(ExitStats::new(1));
        let cpu = Cpu::new(0, ram.clone(), io.clone(), stats.clone());
        Guest {
            cpu,
            io,
            stats,
            ram,
        }
    }

    pub fn write(&mut self, addr: u64, bytes: &[u8]) {
        self.ram.write_slice(bytes, GuestAddress(addr)).unwrap();
        self.cpu.invalidate_code();
    }

    pub fn read_u64(&self, addr: u64) -> u64 {
        self.ram.read_obj(GuestAddress(addr)).unwrap()
    }

    pub fn write_u64(&mut self, addr: u64, v: u64) {
        self.ram.write_obj(v, GuestAddress(addr)).unwrap();
    }

    /// A GDT: null, 64-bit code (0x08), data (0x10), 32-bit code (0x18), 16-bit code (0x20),
    /// user 64-bit code (0x2b), user data (0x33).
    pub fn gdt(&mut self) {
        let descs: [u64; 7] = [
            0,
            0x00af_9b00_0000_ffff,
            0x00cf_9300_0000_ffff,
            0x00cf_9b00_0000_ffff,
            0x000f_9b00_0000_ffff,
            0x00af_fb00_0000_ffff,
            0x00cf_f300_0000_ffff,
        ];
        for (k, d) in descs.iter().enumerate() {
            self.write_u64(GDT + 8 * k as u64, *d);
        }
    }

    /// Identity-map the first 1 GiB with 2 MiB pages (user, writable).
    pub fn page_tables(&mut self) {
        self.write_u64(PT, (PT + 0x1000) | 7);
        self.write_u64(PT + 0x1000, (PT + 0x2000) | 7);
        for k in 0..512u64 {
            self.write_u64(PT + 0x2000 + 8 * k, (k << 21) | 0x87);
        }
    }

    pub fn set_real(&mut self, code: &[u8]) {
        self.write(CODE, code);
        let mut v = VcpuState::reset();
        v.cs = Segment::real((CODE >> 4) as u16, 0xb);
        v.rip = 0;
        v.gpr[4] = 0xfffe;
        v.ss = Segment::real(0x8000, 0x3);
        self.cpu.set_state(CpuState::from_vcpu_state(&v));
    }

    pub fn set_flat32(&mut self, code: &[u8]) {
        self.write(CODE, code);
        self.gdt();
        let mut v = VcpuState::reset();
        v.cr0 = 0x11;
        v.cs = Segment::flat(0x18, 0xb, false);
        let d = Segment::flat(0x10, 0x3, false);
        (v.ds, v.es, v.ss, v.fs, v.gs) = (d, d, d, d, d);
        v.gdt = crate::accel::DescriptorTable {
            base: GDT,
            limit: 0x37,
        };
        v.rip = CODE;
        v.gpr[4] = 0x8_0000;
        self.cpu.set_state(CpuState::from_vcpu_state(&v));
    }

    pub fn set_long(&mut self, code: &[u8]) {
        self.write(CODE, code);
        self.gdt();
        self.page_tables();
        let mut v = VcpuState::reset();
        v.cr0 = 0x8000_0011;
        v.cr3 = PT;
        v.cr4 = 0x20;
        v.efer = 0xd00;
        v.cs = Segment::flat(0x8, 0xb, true);
        let d = Segment::flat(0x10, 0x3, false);
        (v.ds, v.es, v.ss, v.fs, v.gs) = (d, d, d, d, d);
        v.gdt = crate::accel::DescriptorTable {
            base: GDT,
            limit: 0x37,
        };
        v.rip = CODE;
        v.gpr[4] = 0x8_0000;
        self.cpu.set_state(CpuState::from_vcpu_state(&v));
    }

    pub fn run(&mut self) -> CpuExit {
        let kick = AtomicBool::new(false);
        self.cpu.run(&kick)
    }

    pub fn gpr(&self, n: usize) -> u64 {
        self.cpu.state.gpr[n]
    }

    /// Assert that `other` left the same registers, RIP, RFLAGS and MMIO writes (`what` says
    /// which run this is).
    pub fn assert_same_as(&self, other: &Guest, what: &str) {
        assert_eq!(self.cpu.state.gpr, other.cpu.state.gpr, "registers: {what}");
        assert_eq!(self.cpu.state.rip, other.cpu.state.rip, "rip: {what}");
        assert_eq!(
            self.cpu.state.flags.get(),
            other.cpu.state.flags.get(),
            "flags: {what}"
        );
        assert_eq!(
            *self.io.mmio.lock().unwrap(),
            *other.io.mmio.lock().unwrap(),
            "mmio: {what}"
        );
    }
}

/// xorshift64*: reproducible without a crate.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Assemble with a CodeAssembler of `bits` at `CODE`.
pub fn asm(
    bits: u32,
    f: impl FnOnce(&mut CodeAssembler) -> Result<(), iced_x86::IcedError>,
) -> Vec<u8> {
    let mut a = CodeAssembler::new(bits).unwrap();
    f(&mut a).unwrap();
    a.assemble(CODE).unwrap()
}

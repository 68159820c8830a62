//! Software-CPU throughput in guest MIPS (criterion's "elements" are guest instructions).
//!
//! Three 64-bit guests run straight on a `Cpu` with a do-nothing I/O handler, so the figure is
//! the software CPU alone: a tight integer loop (register ALU + one store + branch), a memory
//! walk (loads and stores striding through 1 MiB, so the TLB and the memory path work), and a
//! mixed block (calls, pushes, shifts, multiplies, string moves, conditional moves). Each runs
//! with the JIT (`/jit`, the default) and interpreted only (`/interp`). Run with
//! `cargo bench --bench cpu_mips`; criterion prints `thrpt` in Melem/s = MIPS.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use iced_x86::code_asm::*;
use kemu::accel::{DescriptorTable, ExitStats, IoHandler, Segment, VcpuState};
use kemu::cpu::state::CpuState;
use kemu::cpu::{Cpu, CpuExit};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const RAM: usize = 8 << 20;
const CODE: u64 = 0x1_0000;
const PT: u64 = 0x20_0000;
const GDT: u64 = 0x500;
const DATA: u64 = 0x40_0000;

struct NoIo;

impl IoHandler for NoIo {
    fn pio_read(&self, _vcpu: usize, _port: u16, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn pio_write(&self, _vcpu: usize, _port: u16, _data: &[u8]) {}
    fn mmio_read(&self, _vcpu: usize, _addr: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn mmio_write(&self, _vcpu: usize, _addr: u64, _data: &[u8]) {}
}

/// A long-mode CPU (identity-mapped first GiB, 2 MiB pages) about to run `code` at CODE.
fn long_mode_cpu(code: &[u8]) -> (Cpu, Arc<ExitStats>) {
    let ram = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM)]).unwrap());
    let descs: [u64; 3] = [0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff];
    for (k, d) in descs.iter().enumerate() {
        ram.write_obj(*d, GuestAddress(GDT + 8 * k as u64)).unwrap();
    }
    ram.write_obj((PT + 0x1000) | 7, GuestAddress(PT)).unwrap();
    ram.write_obj((PT + 0x2000) | 7, GuestAddress(PT + 0x1000))
        .unwrap();
    for k in 0..512u64 {
        ram.write_obj((k << 21) | 0x87, GuestAddress(PT + 0x2000 + 8 * k))
            .unwrap();
    }
    ram.write_slice(code, GuestAddress(CODE)).unwrap();
    let stats = Arc::new(ExitStats::new(1));
    let mut cpu = Cpu::new(0, ram, Arc::new(NoIo), stats.clone());
    let mut v = VcpuState::reset();
    v.cr0 = 0x8000_0011;
    v.cr3 = PT;
    v.cr4 = 0x20;
    v.efer = 0xd00;
    v.cs = Segment::flat(0x8, 0xb, true);
    let d = Segment::flat(0x10, 0x3, false);
    (v.ds, v.es, v.ss, v.fs, v.gs) = (d, d, d, d, d);
    v.gdt = DescriptorTable {
        base: GDT,
        limit: 0x17,
    };
    v.rip = CODE;
    v.gpr[4] = 0x8_0000;
    cpu.set_state(CpuState::from_vcpu_state(&v));
    (cpu, stats)
}

fn assemble(f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    f(&mut a).unwrap();
    a.hlt().unwrap();
    a.assemble(CODE).unwrap()
}

fn tight_loop(iters: u32) -> Vec<u8> {
    assemble(|a| {
        a.mov(ecx, iters)?;
        let mut top = a.create_label();
        a.set_label(&mut top)?;
        a.add(rax, rcx)?;
        a.xor(rbx, rax)?;
        a.mov(qword_ptr(DATA), rbx)?;
        a.dec(rcx)?;
        a.jnz(top)
    })
}

fn memory_walk(iters: u32) -> Vec<u8> {
    assemble(|a| {
        a.mov(ecx, iters)?;
        a.mov(rsi, DATA)?;
        let mut top = a.create_label();
        a.set_label(&mut top)?;
        a.mov(rax, qword_ptr(rsi))?;
        a.add(rax, rcx)?;
        a.mov(qword_ptr(rsi + 8), rax)?;
        a.add(rsi, 4104i32)?; // a page and a bit: a new TLB entry every time
        a.and(rsi, 0x4f_ffffi32)?;
        a.or(rsi, DATA as i32)?;
        a.dec(rcx)?;
        a.jnz(top)
    })
}

fn mixed(iters: u32) -> Vec<u8> {
    assemble(|a| {
        let mut func = a.create_label();
        let mut top = a.create_label();
        let mut after = a.create_label();
        let mut done = a.create_label();
        a.mov(r8d, iters)?;
        a.set_label(&mut top)?;
        a.mov(rdi, DATA)?;
        a.mov(rsi, DATA + 0x100)?;
        a.mov(ecx, 4u32)?;
        a.cld()?;
        a.rep().movsq()?;
        a.push(r8)?;
        a.call(func)?;
        a.pop(r8)?;
        a.imul_3(rdx, r8, 7)?;
        a.shl(rdx, 3)?;
        a.cmp(rdx, rax)?;
        a.cmovb(rax, rdx)?;
        a.test(r8, 1)?;
        a.jz(after)?;
        a.inc(r9)?;
        a.set_label(&mut after)?;
        a.dec(r8)?;
        a.jnz(top)?;
        a.jmp(done)?;
        a.set_label(&mut func)?;
        a.lea(rax, qword_ptr(r8 + r8 * 2 + 5))?;
        a.ror(rax, 5)?;
        a.movzx(ebx, al)?;
        a.ret()?;
        a.set_label(&mut done)?;
        a.nop()
    })
}

fn bench_one(c: &mut Criterion, name: &str, code: Vec<u8>, jit: bool) {
    let make = |code: &[u8]| {
        let (mut cpu, stats) = long_mode_cpu(code);
        cpu.jit.enabled = jit;
        (cpu, stats)
    };
    // Count once how many instructions one run retires.
    let (mut cpu, stats) = make(&code);
    assert_eq!(cpu.run(&AtomicBool::new(false)), CpuExit::Halt);
    let per_run = stats.instructions(0);
    let mut group = c.benchmark_group("cpu_mips");
    group.throughput(Throughput::Elements(per_run));
    group.sample_size(10);
    group.bench_function(name, |b| {
        b.iter_batched(
            || make(&code).0,
            |mut cpu| assert_eq!(cpu.run(&AtomicBool::new(false)), CpuExit::Halt),
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn cpu_mips(c: &mut Criterion) {
    for (jit, tier) in [(true, "jit"), (false, "interp")] {
        bench_one(c, &format!("tight_loop/{tier}"), tight_loop(1_000_000), jit);
        bench_one(c, &format!("memory_walk/{tier}"), memory_walk(500_000), jit);
        bench_one(c, &format!("mixed_block/{tier}"), mixed(200_000), jit);
    }
}

criterion_group!(benches, cpu_mips);
criterion_main!(benches);

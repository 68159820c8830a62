//! The JIT (`cpu::jit`) against the interpreter: random loops of integer instructions run
//! twice from the same registers and flags, translated and interpreted, under random
//! instruction budgets; every exit, register, the flags, RIP, the TSC and the data page must
//! be identical after every slice. The loops mix the forms the JIT emits inline with
//! call-outs that read and write flags and memory, and end in the branch shapes it handles.

use std::sync::atomic::AtomicBool;

use iced_x86::code_asm::*;
use vm_memory::{Bytes, GuestAddress};

use super::{Guest, Rng, CODE};
use crate::cpu::CpuExit;

/// A page the loops load from and store to.
const DATA: u64 = 0x30_0000;
/// Mapped by the test page tables but outside RAM: the mock I/O handler serves it.
const MMIO: u64 = 0x1000_0000;
/// Bytes of RAM from DATA the tests compare.
const DATA_LEN: usize = 0x1010;

const R64: [AsmRegister64; 12] = [rax, rdx, rbx, rsi, rdi, rbp, r8, r9, r10, r11, r12, r13];
const R32: [AsmRegister32; 12] = [
    eax, edx, ebx, esi, edi, ebp, r8d, r9d, r10d, r11d, r12d, r13d,
];
/// Where the loops sum the flags they capture (in DATA's compared range).
const FLAG_LOG: u64 = DATA + 0xf00;
const R16: [AsmRegister16; 4] = [ax, dx, bx, si];
const R8: [AsmRegister8; 4] = [al, dl, bl, sil];

/// One random instruction (never touching RCX, the loop counter, RSP, R14 or R15).
fn one(a: &mut CodeAssembler, rng: &mut Rng) -> Result<(), IcedError> {
    let q = R64[rng.below(R64.len())];
    let q2 = R64[rng.below(R64.len())];
    let d = R32[rng.below(R32.len())];
    let d2 = R32[rng.below(R32.len())];
    let imm = rng.next() as i32 >> rng.below(31);
    let mem = qword_ptr(DATA + 8 * rng.below(32) as u64);
    let dmem = dword_ptr(DATA + 4 * rng.below(64) as u64);
    let slot = 8 * rng.below(32) as i32;
    match rng.below(59) {
        0 => a.add(q, q2),
        1 => a.sub(d, d2),
        2 => a.and(q, imm),
        3 => a.or(d, imm),
        4 => a.xor(q, q2),
        5 => a.cmp(d, d2),
        6 => a.test(q, q2),
        7 => a.cmp(q, imm),
        8 => a.inc(q),
        9 => a.dec(d),
        10 => a.lea(q, q2 + q * 4 + imm),
        11 => a.lea(d, q2 - 0x18),
        12 => a.mov(q, q2),
        13 => a.mov(d, imm as u32),
        14 => a.mov(q, rng.next()),
        15 => a.adc(q, q2),
        16 => a.sbb(d, imm),
        17 => a.setb(R8[rng.below(4)]),
        18 => a.cmovle(q, q2),
        19 => a.mov(mem, q),
        20 => a.mov(d, dmem),
        21 => a.add(mem, q2),
        22 => a.add(R16[rng.below(4)], R16[rng.below(4)]),
        23 => a.rdtsc(),
        24 => {
            a.pushfq()?;
            a.pop(q)
        }
        25 => a.shl(q, (rng.below(63) + 1) as u32),
        26 => a.imul_2(d, d2),
        27 => a.neg(q),
        28 => a.sub(q, imm),
        // Through a base register (R15 holds DATA), crossing into the next page, to MMIO
        // (mapped, but not RAM), and from the stack.
        29 => a.mov(qword_ptr(r15 + slot), q),
        30 => a.mov(d, dword_ptr(r15 + slot + 4)),
        31 => a.mov(q, qword_ptr(DATA + 0xffc)),
        32 => a.mov(dword_ptr(MMIO + slot as u64), d),
        33 => a.mov(q, qword_ptr(MMIO)),
        34 => a.mov(qword_ptr(r15 + slot), imm),
        35 => a.mov(q, qword_ptr(r15 + slot)),
        36 => a.add(q, qword_ptr(r15 + slot)),
        37 => a.cmp(dword_ptr(r15 + slot), imm),
        38 => a.test(qword_ptr(DATA + 0xff8), q2),
        39 => a.movzx(d, byte_ptr(r15 + slot + 3)),
        40 => a.movsx(q, word_ptr(r15 + slot + 1)),
        41 => a.movsxd(q, dword_ptr(DATA + 0xffe)),
        42 => a.movzx(q, R8[rng.below(4)]),
        43 => a.movsx(d, R16[rng.below(4)]),
        44 => a.movsxd(q, d2),
        45 => {
            a.push(q)?;
            a.pop(q2)
        }
        46 => a.sub(d, dword_ptr(MMIO + 4)),
        47 => a.sar(d, (rng.below(40)) as u32),
        48 => a.shr(q, (rng.below(70)) as u32),
        49 => a.imul_3(q, q2, imm),
        50 => a.imul_3(d, d2, imm),
        51 => a.imul_2(q, q2),
        52 => a.cmovg(d, d2),
        53 => a.cmovb(q, q2),
        54 => a.sete(R8[rng.below(4)]),
        55 => a.setl(R8[rng.below(4)]),
        56 => a.seto(R8[rng.below(4)]),
        57 => a.cmovbe(d, d2),
        _ => a.xor(d, d),
    }
}

/// `mov ecx, iters; top: <body>; <counter step>; jcc top; hlt`, sometimes with a forward
/// branch inside the body (two blocks) or a call to a one-instruction function.
fn random_loop(rng: &mut Rng) -> Vec<u8> {
    let iters = 1 + rng.below(300) as u32;
    let body = 1 + rng.below(12);
    let calls = rng.below(3) == 0;
    super::asm(64, |a| {
        let mut func = a.create_label();
        a.mov(ecx, iters)?;
        let mut top = a.create_label();
        a.set_label(&mut top)?;
        for k in 0..body {
            if calls && k == body / 3 {
                a.call(func)?;
            }
            if k == body / 2 && rng.below(4) == 0 {
                let mut skip = a.create_label();
                let r = R32[rng.below(R32.len())];
                // Conditions on flags from every kind of producer: lazy inline (TEST), eager
                // inline (shift, IMUL), eager and lazy from call-outs (BT, ADC).
                match rng.below(5) {
                    0 => {
                        a.test(r, 1)?;
                        a.jnz(skip)?;
                    }
                    1 => {
                        a.shl(r, 3)?;
                        a.jo(skip)?;
                    }
                    2 => {
                        a.imul_2(r, R32[rng.below(R32.len())])?;
                        a.jl(skip)?;
                    }
                    3 => {
                        a.bt(r, 5)?;
                        a.jb(skip)?;
                    }
                    _ => {
                        a.adc(r, R32[rng.below(R32.len())])?;
                        a.jg(skip)?;
                    }
                }
                one(a, rng)?;
                a.set_label(&mut skip)?;
                // An instruction must follow the label.
                a.nop()?;
            }
            one(a, rng)?;
            if rng.below(3) == 0 {
                // Every flag the instruction left, defined or not, must agree.
                a.pushfq()?;
                a.pop(r14)?;
                a.add(qword_ptr(FLAG_LOG), r14)?;
            }
        }
        match rng.below(5) {
            0 => {
                a.dec(ecx)?;
                a.jnz(top)?;
            }
            1 => {
                a.sub(rcx, 1)?;
                a.jne(top)?;
            }
            2 => {
                // A 16-bit step is a call-out: the branch asks for the flags at run time.
                a.dec(cx)?;
                a.jnz(top)?;
            }
            3 => {
                a.dec(ecx)?;
                a.cmp(ecx, 0)?;
                a.jg(top)?;
            }
            _ => {
                a.loop_(top)?;
            }
        }
        a.hlt()?;
        // A function for the calls: one instruction, then RET (sometimes RET imm16 after
        // pushing a word to drop).
        a.set_label(&mut func)?;
        one(a, rng)?;
        if rng.below(2) == 0 {
            a.ret()
        } else {
            a.pop(r14)?;
            a.push(rsp)?;
            a.push(r14)?;
            a.ret_1(8)
        }
    })
}

fn guest(code: &[u8], seed: u64, jit: bool, hot: u32) -> Guest {
    let mut g = Guest::new();
    g.set_long(code);
    g.cpu.jit.enabled = jit;
    g.cpu.jit.hot = hot;
    let mut rng = Rng(seed | 1);
    for r in 0..16 {
        if r != 4 {
            g.cpu.state.gpr[r] = rng.next() >> (rng.below(2) * 40);
        }
    }
    g.cpu.state.gpr[15] = DATA;
    g.cpu.state.flags.set((rng.next() & 0x8d5) | 2);
    let data: Vec<u8> = (0..DATA_LEN).map(|_| rng.next() as u8).collect();
    g.ram.write_slice(&data, GuestAddress(DATA)).unwrap();
    g
}

fn data(g: &Guest) -> Vec<u8> {
    let mut v = vec![0u8; DATA_LEN];
    g.ram.read_slice(&mut v, GuestAddress(DATA)).unwrap();
    v
}

#[test]
fn translated_loops_agree_with_the_interpreter() {
    let mut rng = Rng(0x1175_0001);
    let kick = AtomicBool::new(false);
    let mut translated = 0;
    for case in 0..1000 {
        let code = random_loop(&mut rng);
        let seed = rng.next();
        let hot = [1, 2, 16][rng.below(3)];
        let mut a = guest(&code, seed, true, hot);
        let mut b = guest(&code, seed, false, hot);
        for slice in 0..200 {
            let budget = [7, 50, 333, 5000][rng.below(4)];
            let ea = a.cpu.run_limited(&kick, budget);
            let eb = b.cpu.run_limited(&kick, budget);
            let what = format!("case {case} slice {slice} seed {seed:#x} code {code:02x?}");
            assert_eq!(ea, eb, "exit: {what}");
            a.assert_same_as(&b, &what);
            assert_eq!(a.cpu.state.tsc, b.cpu.state.tsc, "tsc: {what}");
            assert!(data(&a) == data(&b), "memory: {what}");
            if ea == CpuExit::Halt {
                break;
            }
        }
        translated += a.cpu.jit.translated;
    }
    assert!(translated > 300, "only {translated} blocks were translated");
}

#[test]
fn a_translated_loop_sees_its_own_code_change() {
    // One block that stores the loop counter into the immediate of its own `add eax, imm32`:
    // every store ends the pass early (the block is dropped), and the next pass must add
    // what the last one stored.
    let code = super::asm(64, |a| {
        a.mov(ecx, 100u32)?;
        a.xor(eax, eax)?;
        let mut top = a.create_label();
        a.set_label(&mut top)?;
        a.add(eax, 0x1000_0000)?;
        a.mov(dword_ptr(CODE + 8), ecx)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.hlt()
    });
    // mov ecx (5 bytes), xor eax,eax (2): the add's imm32 starts at offset 8.
    assert_eq!(code[7], 0x05, "add eax, imm32 is at offset 7");
    for hot in [1, 16] {
        let mut g = Guest::new();
        g.set_long(&code);
        g.cpu.jit.hot = hot;
        assert_eq!(g.run(), CpuExit::Halt);
        // Pass 1 adds the original immediate, pass k > 1 adds 102 - k.
        let want = 0x1000_0000 + (2..=100u64).sum::<u64>();
        assert_eq!(g.gpr(0), want, "hot {hot}");
    }
}

#[test]
fn an_instruction_straddling_two_pages_follows_its_bytes() {
    // `add eax, imm32` at CODE + 0xffd straddles into the next page, where the loop rewrites
    // the immediate's top byte halfway: straddling instructions are not cached by address, and
    // the decode kept for one must not outlive its bytes.
    let mut a = CodeAssembler::new(64).unwrap();
    let mut top = a.create_label();
    let mut skip = a.create_label();
    a.mov(ecx, 10u32).unwrap();
    a.xor(eax, eax).unwrap();
    a.jmp(top).unwrap();
    let head = a.assemble(CODE).unwrap().len();
    for _ in head..0xffd {
        a.nop().unwrap();
    }
    a.set_label(&mut top).unwrap();
    a.add(eax, 0x1111_1111).unwrap();
    a.cmp(ecx, 5).unwrap();
    a.jne(skip).unwrap();
    a.mov(byte_ptr(CODE + 0x1001), 0x22).unwrap();
    a.set_label(&mut skip).unwrap();
    a.dec(ecx).unwrap();
    a.jnz(top).unwrap();
    a.hlt().unwrap();
    let code = a.assemble(CODE).unwrap();
    assert_eq!(code[0xffd], 0x05, "add eax, imm32 starts at 0xffd");
    let want = (6 * 0x1111_1111u64 + 4 * 0x2211_1111) & 0xffff_ffff;
    for (jit, hot) in [(true, 1), (true, 16), (false, 16)] {
        let mut g = Guest::new();
        g.set_long(&code);
        g.cpu.jit.enabled = jit;
        g.cpu.jit.hot = hot;
        assert_eq!(g.run(), CpuExit::Halt);
        assert_eq!(g.gpr(0), want, "jit {jit} hot {hot}");
    }
}

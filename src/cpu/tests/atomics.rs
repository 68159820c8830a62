//! CMPXCHG16B: success, failure (RDX:RAX loaded, memory rewritten unchanged) and the
//! alignment #GP.

use iced_x86::code_asm::*;

use super::*;

const OP: u64 = 0x3000;

fn run_cmpxchg16b(g: &mut Guest, addr: u64, rax_v: u64, rdx_v: u64) -> CpuExit {
    let code = asm(64, |a| {
        a.mov(rax, rax_v)?;
        a.mov(rdx, rdx_v)?;
        a.mov(rbx, 0x1111_2222_3333_4444u64)?;
        a.mov(rcx, 0x5555_6666_7777_8888u64)?;
        a.mov(rsi, addr)?;
        a.lock().cmpxchg16b(xmmword_ptr(rsi))?;
        a.setz(dil)?;
        a.hlt()
    });
    g.set_long(&code);
    g.run()
}

#[test]
fn cmpxchg16b_swaps_when_equal() {
    let mut g = Guest::new();
    g.write_u64(OP, 0xaaaa);
    g.write_u64(OP + 8, 0xbbbb);
    assert_eq!(run_cmpxchg16b(&mut g, OP, 0xaaaa, 0xbbbb), CpuExit::Halt);
    assert_eq!(g.read_u64(OP), 0x1111_2222_3333_4444);
    assert_eq!(g.read_u64(OP + 8), 0x5555_6666_7777_8888);
    assert_eq!(g.gpr(7) & 0xff, 1, "ZF set");
}

#[test]
fn cmpxchg16b_loads_when_different() {
    let mut g = Guest::new();
    g.write_u64(OP, 0xaaaa);
    g.write_u64(OP + 8, 0xbbbb);
    assert_eq!(run_cmpxchg16b(&mut g, OP, 0xaaaa, 0xcccc), CpuExit::Halt);
    assert_eq!((g.read_u64(OP), g.read_u64(OP + 8)), (0xaaaa, 0xbbbb));
    assert_eq!((g.gpr(0), g.gpr(2)), (0xaaaa, 0xbbbb));
    assert_eq!(g.gpr(7) & 0xff, 0, "ZF clear");
}

#[test]
fn cmpxchg16b_misaligned_faults_without_writing() {
    let mut g = Guest::new();
    g.write_u64(OP + 8, 0xaaaa);
    g.write_u64(OP + 16, 0xbbbb);
    // No IDT: the #GP escalates to a triple fault.
    assert_eq!(
        run_cmpxchg16b(&mut g, OP + 8, 0xaaaa, 0xbbbb),
        CpuExit::Shutdown
    );
    assert_eq!(g.read_u64(OP + 8), 0xaaaa);
}

//! Exceptions and interrupts through a 64-bit IDT: #DE, #PF error codes and CR2, INT n with
//! IRETQ, a user→kernel stack switch through the TSS, double and triple faults.

use iced_x86::code_asm::*;

use super::*;

const IDT: u64 = 0x4000;
const TSS: u64 = 0x5000;
const HANDLERS: u64 = 0x1_8000;

fn gate64(g: &mut Guest, vector: u8, target: u64, dpl: u64, present: bool) {
    let lo = (target & 0xffff)
        | (0x8 << 16)
        | (0xe << 40)
        | (dpl << 45)
        | (u64::from(present) << 47)
        | ((target >> 16) & 0xffff) << 48;
    g.write_u64(IDT + 16 * u64::from(vector), lo);
    g.write_u64(IDT + 16 * u64::from(vector) + 8, target >> 32);
}

/// A handler that records `vector` in R15, pops the error code (if any) into R14, copies
/// CR2 to R13 and the saved RIP to R12, then halts.
fn handler(vector: u8, has_code: bool) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    a.mov(r15, u64::from(vector)).unwrap();
    if has_code {
        a.pop(r14).unwrap();
    }
    a.mov(r13, cr2).unwrap();
    a.mov(r12, qword_ptr(rsp)).unwrap();
    a.hlt().unwrap();
    a.assemble(0).unwrap()
}

fn setup(g: &mut Guest, code: &[u8]) {
    g.set_long(code);
    for (k, (v, has_code)) in [(0u8, false), (13, true), (14, true), (8, true), (6, false)]
        .into_iter()
        .enumerate()
    {
        let at = HANDLERS + 0x100 * k as u64;
        g.write(at, &handler(v, has_code));
        gate64(g, v, at, 0, true);
    }
    g.cpu.state.idtr = crate::accel::DescriptorTable {
        base: IDT,
        limit: 0xfff,
    };
}

#[test]
fn divide_error_through_idt() {
    let mut g = Guest::new();
    let code = asm(64, |a| {
        a.mov(eax, 1u32)?;
        a.xor(ecx, ecx)?;
        a.div(ecx)?;
        a.hlt()
    });
    setup(&mut g, &code);
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(g.gpr(15), 0);
    assert_eq!(g.gpr(12), CODE + 7, "RIP of the faulting DIV");
    assert_eq!(g.gpr(0), 1, "state as before the DIV");
    // Frame: RIP, CS, RFLAGS, RSP, SS.
    assert_eq!(g.read_u64(g.gpr(4) + 8), 0x8);
    assert_eq!(g.read_u64(g.gpr(4) + 24), 0x8_0000);
}

#[test]
fn page_fault_error_codes_and_cr2() {
    // PD entry 3 (6-8 MiB) not present; entry 2 (4-6 MiB) read-only with CR0.WP;
    // entry 1 holds the page tables themselves: make entry 5 no-execute.
    let cases: [(u64, u8, u64); 4] = [
        (0x60_0010, 0, 0x0),  // read, not present
        (0x60_0020, 1, 0x2),  // write, not present
        (0x40_0030, 1, 0x3),  // write, present, read-only
        (0xa0_0000, 2, 0x11), // fetch from an NX page
    ];
    for (addr, kind, code) in cases {
        let mut g = Guest::new();
        let prog = asm(64, |a| {
            a.mov(rbx, addr)?;
            match kind {
                0 => a.mov(rax, qword_ptr(rbx))?,
                1 => a.mov(qword_ptr(rbx), rax)?,
                _ => a.call(rbx)?,
            }
            a.hlt()
        });
        setup(&mut g, &prog);
        g.write_u64(PT + 0x2000 + 3 * 8, 0);
        g.write_u64(PT + 0x2000 + 2 * 8, (2 << 21) | 0x85);
        g.write_u64(PT + 0x2000 + 5 * 8, (5 << 21) | 0x87 | 1 << 63);
        g.cpu.state.cr0 |= crate::cpu::state::cr0::WP;
        g.cpu.invalidate_code();
        assert_eq!(g.run(), CpuExit::Halt, "{addr:#x}");
        assert_eq!(g.gpr(15), 14, "{addr:#x}: #PF");
        assert_eq!(g.gpr(14), code, "{addr:#x}: error code");
        assert_eq!(g.gpr(13), addr, "{addr:#x}: CR2");
        let expect_rip = if kind == 2 { addr } else { CODE + 10 };
        assert_eq!(g.gpr(12), expect_rip, "{addr:#x}: saved RIP");
    }
}

#[test]
fn accessed_and_dirty_bits_are_set() {
    let mut g = Guest::new();
    let prog = asm(64, |a| {
        a.mov(rbx, 0x30_0000u64)?;
        a.mov(qword_ptr(rbx), rax)?;
        a.hlt()
    });
    setup(&mut g, &prog);
    g.write_u64(PT + 0x2000 + 8, (1 << 21) | 0x07 | 0x80);
    assert_eq!(g.run(), CpuExit::Halt);
    let pde = g.read_u64(PT + 0x2000 + 8);
    assert_eq!(pde & 0x60, 0x60, "A and D set on the 2 MiB page: {pde:#x}");
    assert_eq!(g.read_u64(PT) & 0x20, 0x20, "A set on the PML4E");
}

#[test]
fn int_and_iretq() {
    let mut g = Guest::new();
    let prog = asm(64, |a| {
        a.int(0x80)?;
        a.mov(rbx, 1u64)?;
        a.hlt()
    });
    setup(&mut g, &prog);
    let h = asm(64, |a| {
        a.mov(r15, 0x80u64)?;
        a.iretq()
    });
    g.write(HANDLERS + 0x800, &h);
    gate64(&mut g, 0x80, HANDLERS + 0x800, 0, true);
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!((g.gpr(15), g.gpr(3)), (0x80, 1));
    assert_eq!(g.gpr(4), 0x8_0000, "stack balanced");
}

#[test]
fn user_to_kernel_stack_switch() {
    let mut g = Guest::new();
    // Kernel: load TR, IRETQ to user code at CODE+0x200 with user stack 0x7_0000.
    let prog = asm(64, |a| {
        a.mov(ax, 0x38u32)?;
        a.ltr(ax)?;
        a.push(0x33)?;
        a.push(0x7_0000)?;
        a.push(0x202)?;
        a.push(0x2b)?;
        a.mov(rax, CODE + 0x200)?;
        a.push(rax)?;
        a.iretq()
    });
    setup(&mut g, &prog);
    let user = asm(64, |a| {
        a.mov(rbx, 0x1234u64)?;
        a.int(0x80)?;
        a.hlt()
    });
    g.write(CODE + 0x200, &user);
    let h = asm(64, |a| {
        a.mov(r15, rsp)?;
        a.mov(r14, qword_ptr(rsp + 8))?; // CS
        a.mov(r13, qword_ptr(rsp + 24))?; // user RSP
        a.hlt()
    });
    g.write(HANDLERS + 0x800, &h);
    gate64(&mut g, 0x80, HANDLERS + 0x800, 3, true);
    // 64-bit TSS descriptor at 0x38, RSP0 = 0x9_0000.
    let limit = 0x67u64;
    let lo = limit | (TSS & 0xff_ffff) << 16 | 0x89 << 40 | ((TSS >> 24) & 0xff) << 56;
    g.write_u64(GDT + 0x38, lo);
    g.write_u64(GDT + 0x40, TSS >> 32);
    g.write_u64(TSS + 4, 0x9_0000);
    g.cpu.state.gdtr.limit = 0x47;
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(g.gpr(3), 0x1234);
    assert_eq!(g.gpr(15), 0x9_0000 - 40, "kernel stack from TSS.RSP0");
    assert_eq!(g.gpr(14), 0x2b);
    assert_eq!(g.gpr(13), 0x7_0000);
    assert_eq!(g.cpu.state.cpl(), 0);
}

#[test]
fn double_then_triple_fault() {
    let mut g = Guest::new();
    let prog = asm(64, |a| {
        a.mov(rbx, 0x60_0000u64)?;
        a.mov(rax, qword_ptr(rbx))?;
        a.hlt()
    });
    setup(&mut g, &prog);
    g.write_u64(PT + 0x2000 + 3 * 8, 0);
    gate64(&mut g, 14, HANDLERS, 0, false); // #PF gate not present → #NP → #DF
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(g.gpr(15), 8, "#DF delivered");
    assert_eq!(g.gpr(14), 0, "#DF error code");

    setup(&mut g, &prog);
    g.write_u64(PT + 0x2000 + 3 * 8, 0);
    gate64(&mut g, 14, HANDLERS, 0, false);
    gate64(&mut g, 8, HANDLERS, 0, false);
    assert_eq!(g.run(), CpuExit::Shutdown);
}

#[test]
fn undefined_opcode_and_unimplemented_count() {
    let mut g = Guest::new();
    let prog = asm(64, |a| {
        a.vzeroupper()?; // AVX is not implemented: #UD, counted
        a.hlt()
    });
    setup(&mut g, &prog);
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(g.gpr(15), 6);
    assert_eq!(g.gpr(12), CODE);
    assert_eq!(g.cpu.unimplemented, 1);
}

#[test]
fn external_interrupt_waits_for_if_and_sti_shadow() {
    let mut g = Guest::new();
    let prog = asm(64, |a| {
        a.mov(ecx, 5u32)?;
        a.sti()?;
        a.inc(ecx)?; // runs in the STI shadow
        a.inc(ecx)?;
        a.hlt()
    });
    setup(&mut g, &prog);
    let h = asm(64, |a| {
        a.mov(r15, rcx)?;
        a.hlt()
    });
    g.write(HANDLERS + 0x800, &h);
    gate64(&mut g, 0x40, HANDLERS + 0x800, 0, true);
    g.cpu.raise_external(0x40);
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(
        g.gpr(15),
        6,
        "delivered right after the instruction following STI"
    );
    assert_eq!(g.cpu.pending_external(), None);
}

#[test]
fn halt_then_wake_by_interrupt() {
    let mut g = Guest::new();
    let prog = asm(64, |a| {
        a.sti()?;
        a.hlt()?;
        a.mov(rbx, 7u64)?;
        a.hlt()
    });
    setup(&mut g, &prog);
    let h = asm(64, |a| {
        a.mov(r15, 0x41u64)?;
        a.iretq()
    });
    g.write(HANDLERS + 0x800, &h);
    gate64(&mut g, 0x41, HANDLERS + 0x800, 0, true);
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(g.run(), CpuExit::Halt, "still halted without an interrupt");
    g.cpu.raise_external(0x41);
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!((g.gpr(15), g.gpr(3)), (0x41, 7));
}

#[test]
fn single_step_trap_and_hint_nops() {
    let mut g = Guest::new();
    let prog = asm(64, |a| {
        a.endbr64()?; // a NOP without CET
        a.pushfq()?;
        a.or(qword_ptr(rsp), 0x100)?;
        a.popfq()?; // TF=1: the next instruction traps
        a.mov(eax, 1u32)?;
        a.hlt()
    });
    setup(&mut g, &prog);
    let h = asm(64, |a| {
        a.mov(r15, 1u64)?;
        a.mov(r12, qword_ptr(rsp))?;
        a.hlt()
    });
    g.write(HANDLERS + 0x800, &h);
    gate64(&mut g, 1, HANDLERS + 0x800, 0, true);
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(g.gpr(15), 1, "#DB delivered");
    assert_eq!(g.gpr(0), 1, "after the MOV that followed POPF");
    assert_eq!(
        g.gpr(12),
        CODE + 4 + 1 + 8 + 1 + 5,
        "trap RIP is the next instruction"
    );
    assert_eq!(g.cpu.unimplemented, 0);
}

#[test]
fn xlat_in_real_mode() {
    let mut g = Guest::new();
    let code = asm(16, |a| {
        a.mov(bx, 0x100u32)?;
        a.mov(al, 3u32)?;
        a.xlatb()?;
        a.hlt()
    });
    g.set_real(&code);
    g.ram
        .write_slice(&[10, 11, 12, 13], GuestAddress(0x100))
        .unwrap();
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(g.gpr(0) & 0xff, 13);
}

#[test]
fn nmi_ignores_if_and_is_blocked_until_iret() {
    let mut g = Guest::new();
    let prog = asm(64, |a| {
        a.cli()?;
        a.hlt()?;
        a.hlt()
    });
    setup(&mut g, &prog);
    // The NMI handler counts in R15 and halts without IRET the first time.
    let h = asm(64, |a| {
        a.inc(r15)?;
        a.hlt()?;
        a.iretq()
    });
    g.write(HANDLERS + 0x800, &h);
    gate64(&mut g, 2, HANDLERS + 0x800, 0, true);
    g.cpu.state.gpr[15] = 0;
    assert_eq!(g.run(), CpuExit::Halt);
    g.cpu.raise_nmi();
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(g.gpr(15), 1, "NMI delivered with IF=0");
    g.cpu.raise_nmi();
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(g.gpr(15), 1, "second NMI held while the handler runs");
    // Resume the handler past its HLT (as if woken): IRETQ unblocks the held NMI.
    g.cpu.halted = false;
    assert_eq!(
        g.run(),
        CpuExit::Halt,
        "IRETQ unblocks, the held NMI runs, handler halts"
    );
    assert_eq!(g.gpr(15), 2);
}

/// #AC(0): a misaligned load at CPL 3 with CR0.AM and EFLAGS.AC set; the aligned load before
/// it and everything at CPL 0 are unaffected.
#[test]
fn alignment_check_at_cpl3() {
    let mut g = Guest::new();
    let prog = asm(64, |a| {
        a.mov(rax, qword_ptr(0x7_0001))?; // CPL 0: never checked
        a.mov(ax, 0x38u32)?;
        a.ltr(ax)?;
        a.push(0x33)?;
        a.push(0x7_0000)?;
        a.push(0x4_0002)?; // AC
        a.push(0x2b)?;
        a.mov(rax, CODE + 0x200)?;
        a.push(rax)?;
        a.iretq()
    });
    setup(&mut g, &prog);
    let user = asm(64, |a| {
        a.mov(rbx, qword_ptr(0x7_0008))?;
        a.mov(rcx, qword_ptr(0x7_0001))?;
        a.hlt()
    });
    g.write(CODE + 0x200, &user);
    g.write(HANDLERS + 0x800, &handler(17, true));
    gate64(&mut g, 17, HANDLERS + 0x800, 0, true);
    let lo = 0x67u64 | (TSS & 0xff_ffff) << 16 | 0x89 << 40 | ((TSS >> 24) & 0xff) << 56;
    g.write_u64(GDT + 0x38, lo);
    g.write_u64(GDT + 0x40, TSS >> 32);
    g.write_u64(TSS + 4, 0x9_0000);
    g.cpu.state.gdtr.limit = 0x47;
    g.cpu.state.cr0 |= crate::cpu::state::cr0::AM;
    g.write_u64(0x7_0008, 0x1122);
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(g.gpr(15), 17, "#AC");
    assert_eq!(g.gpr(14), 0, "error code 0");
    assert_eq!(g.gpr(3), 0x1122, "the aligned load went through");
    assert_eq!(g.gpr(12), CODE + 0x200 + 8, "RIP of the misaligned load");
}

//! Privilege and system-instruction tests: a 32-bit IDT with a ring 3 → ring 0 stack switch
//! through a 32-bit TSS and IRETD back, the TSS I/O bitmap, SYSCALL/SYSRET, SYSENTER/SYSEXIT,
//! far CALL/RETF through a call gate, LAR/LSL/VERR, segment limits, page-crossing accesses,
//! BCD, ENTER/LEAVE and PUSHA/POPA.

use iced_x86::code_asm::*;

use super::*;

const IDT: u64 = 0x4000;
const TSS: u64 = 0x5000;

fn gate32(g: &mut Guest, vector: u64, target: u64, dpl: u64) {
    let lo = (target & 0xffff)
        | (0x18 << 16)
        | ((0x8e | dpl << 5) << 40)
        | ((target >> 16) & 0xffff) << 48;
    g.write_u64(IDT + 8 * vector, lo);
}

fn sys_desc(base: u64, limit: u64, access: u64) -> u64 {
    (limit & 0xffff) | (base & 0xff_ffff) << 16 | access << 40 | ((base >> 24) & 0xff) << 56
}

fn at(
    bits: u32,
    addr: u64,
    f: impl FnOnce(&mut CodeAssembler) -> Result<(), iced_x86::IcedError>,
) -> Vec<u8> {
    let mut a = CodeAssembler::new(bits).unwrap();
    f(&mut a).unwrap();
    a.assemble(addr).unwrap()
}

#[test]
fn ring3_to_ring0_through_32bit_idt_and_io_bitmap() {
    let mut g = Guest::new();
    let user_eip = CODE + 0x200;
    let kernel = asm(32, |a| {
        a.mov(ax, 0x40u32)?;
        a.ltr(ax)?;
        a.push(0x33)?;
        a.push(0x7000)?;
        a.push(0x202)?;
        a.push(0x3b)?;
        a.push(user_eip as i32)?;
        a.iretd()
    });
    g.set_flat32(&kernel);
    let in_at;
    let user = {
        let mut a = CodeAssembler::new(32).unwrap();
        a.out(0x80, al).unwrap();
        a.mov(ebx, 0x1234u32).unwrap();
        a.int(0x80).unwrap();
        let mut l = a.create_label();
        a.set_label(&mut l).unwrap();
        a.in_(al, 0x60).unwrap();
        a.hlt().unwrap();
        let r = a
            .assemble_options(
                user_eip,
                iced_x86::BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS,
            )
            .unwrap();
        in_at = r.label_ip(&l).unwrap();
        r.inner.code_buffer
    };
    g.write(user_eip, &user);
    let h80 = at(32, CODE + 0x400, |a| {
        a.mov(esi, esp)?;
        a.mov(edi, dword_ptr(esp + 4))?;
        a.iretd()
    });
    g.write(CODE + 0x400, &h80);
    let h13 = at(32, CODE + 0x500, |a| {
        a.pop(ecx)?;
        a.mov(edx, dword_ptr(esp))?;
        a.hlt()
    });
    g.write(CODE + 0x500, &h13);
    gate32(&mut g, 0x80, CODE + 0x400, 3);
    gate32(&mut g, 13, CODE + 0x500, 0);
    g.write_u64(GDT + 0x38, 0x00cf_fb00_0000_ffff);
    g.write_u64(GDT + 0x40, sys_desc(TSS, 0x68 + 128, 0x89));
    g.ram.write_obj(0x9000u32, GuestAddress(TSS + 4)).unwrap();
    g.ram.write_obj(0x10u32, GuestAddress(TSS + 8)).unwrap();
    g.ram.write_obj(0x68u16, GuestAddress(TSS + 0x66)).unwrap();
    let mut bitmap = [0xffu8; 129];
    bitmap[0x80 / 8] &= !1;
    g.ram
        .write_slice(&bitmap, GuestAddress(TSS + 0x68))
        .unwrap();
    g.cpu.state.gdtr.limit = 0x47;
    g.cpu.state.idtr = crate::accel::DescriptorTable {
        base: IDT,
        limit: 0x7ff,
    };
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(
        g.io.pio.lock().unwrap().len(),
        1,
        "OUT 0x80 allowed by the bitmap"
    );
    assert_eq!(g.gpr(3), 0x1234);
    assert_eq!(
        g.gpr(6),
        0x9000 - 20,
        "ring-0 stack from TSS.ESP0 with SS:ESP pushed"
    );
    assert_eq!(g.gpr(7), 0x3b);
    assert_eq!(g.gpr(1), 0, "#GP(0) for IN 0x60");
    assert_eq!(g.gpr(2), in_at);
    assert_eq!(g.cpu.state.cpl(), 0);
}

#[test]
fn syscall_sysret_round_trip() {
    let mut g = Guest::new();
    let user_rip = CODE + 0x200;
    let kernel = asm(64, |a| {
        a.mov(ecx, 0xc000_0080u32)?;
        a.rdmsr()?;
        a.or(eax, 1)?;
        a.wrmsr()?;
        a.mov(ecx, 0xc000_0081u32)?;
        a.xor(eax, eax)?;
        a.mov(edx, 0x0018_0008u32)?;
        a.wrmsr()?;
        a.mov(ecx, 0xc000_0082u32)?;
        a.mov(eax, (CODE + 0x400) as u32)?;
        a.xor(edx, edx)?;
        a.wrmsr()?;
        a.mov(ecx, 0xc000_0084u32)?;
        a.mov(eax, 0x200u32)?;
        a.wrmsr()?;
        a.mov(rcx, user_rip)?;
        a.mov(r11, 0x202u64)?;
        a.sysretq()
    });
    g.set_long(&kernel);
    let user = at(64, user_rip, |a| {
        a.mov(rbx, 5u64)?;
        a.syscall()?;
        a.hlt()
    });
    g.write(user_rip, &user);
    let handler = at(64, CODE + 0x400, |a| {
        a.mov(r15, rcx)?;
        a.mov(r14, r11)?;
        a.hlt()
    });
    g.write(CODE + 0x400, &handler);
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(g.gpr(3), 5);
    assert_eq!(g.gpr(15), user_rip + 12, "RCX = RIP after SYSCALL");
    assert_eq!(g.gpr(14) & 0x200, 0x200, "R11 = user RFLAGS");
    assert_eq!(g.cpu.state.cpl(), 0);
    assert!(
        !g.cpu.state.flags.sys(crate::cpu::flags::IF),
        "FMASK cleared IF"
    );
    assert_eq!(g.cpu.state.seg[crate::cpu::state::sreg::CS].selector, 0x08);
}

#[test]
fn sysenter_sysexit_round_trip_32() {
    let mut g = Guest::new();
    let user_eip = CODE + 0x200;
    let kernel = asm(32, |a| {
        a.mov(ecx, 0x174u32)?;
        a.mov(eax, 0x08u32)?; // SYSENTER_CS
        a.xor(edx, edx)?;
        a.wrmsr()?;
        a.mov(ecx, 0x175u32)?;
        a.mov(eax, 0x9000u32)?;
        a.wrmsr()?;
        a.mov(ecx, 0x176u32)?;
        a.mov(eax, (CODE + 0x400) as u32)?;
        a.wrmsr()?;
        a.mov(ecx, 0x7000u32)?;
        a.mov(edx, user_eip as u32)?;
        a.sysexit()
    });
    g.set_flat32(&kernel);
    let user = at(32, user_eip, |a| {
        a.mov(ebx, esp)?;
        a.sysenter()
    });
    g.write(user_eip, &user);
    let handler = at(32, CODE + 0x400, |a| {
        a.mov(esi, esp)?;
        a.hlt()
    });
    g.write(CODE + 0x400, &handler);
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(g.gpr(3), 0x7000, "user ESP from ECX");
    assert_eq!(g.gpr(6), 0x9000, "kernel ESP from SYSENTER_ESP");
    assert_eq!(g.cpu.state.seg[crate::cpu::state::sreg::CS].selector, 0x08);
}

#[test]
fn far_call_through_gate_and_retf() {
    let mut g = Guest::new();
    // Call gate at 0x48 → 0x18:CODE+0x400, DPL 0.
    let target = CODE + 0x400;
    let gate = (target & 0xffff) | 0x18 << 16 | 0x8c << 40 | ((target >> 16) & 0xffff) << 48;
    let mut code = asm(32, |a| {
        a.mov(ebx, 1u32)?;
        Ok(())
    });
    code.extend_from_slice(&[0x9a, 0, 0, 0, 0, 0x48, 0]); // call far 0x48:0 (gate)
    code.extend_from_slice(&[0xf4]);
    g.set_flat32(&code);
    let callee = at(32, target, |a| {
        a.mov(ecx, dword_ptr(esp + 4))?; // pushed CS
        a.mov(ebx, 2u32)?;
        a.retf()
    });
    g.write(target, &callee);
    g.write_u64(GDT + 0x48, gate);
    g.cpu.state.gdtr.limit = 0x4f;
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(g.gpr(3), 2);
    assert_eq!(g.gpr(1), 0x18);
    assert_eq!(g.cpu.state.rip, CODE + 5 + 7 + 1);
}

#[test]
fn lar_lsl_verr_verw() {
    let mut g = Guest::new();
    let code = asm(32, |a| {
        a.mov(eax, 0x10u32)?;
        a.lar(ebx, eax)?;
        a.lsl(ecx, eax)?;
        a.verw(ax)?;
        a.setz(dl)?;
        a.mov(eax, 0x18u32)?;
        a.verw(ax)?;
        a.setz(dh)?;
        a.mov(eax, 0x1000u32)?;
        a.lsl(esi, eax)?;
        a.setz(al)?;
        a.hlt()
    });
    g.set_flat32(&code);
    g.cpu.state.gpr[6] = 0x77;
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(g.gpr(3), 0x00c0_9300);
    assert_eq!(g.gpr(1), 0xffff_ffff);
    assert_eq!(g.gpr(2) & 0xffff, 0x0001, "data writable, code not");
    assert_eq!(g.gpr(0) & 0xff, 0, "selector past the GDT limit");
    assert_eq!(g.gpr(6), 0x77);
}

#[test]
fn segment_limit_faults_in_protected_mode() {
    let mut g = Guest::new();
    // DS with limit 0xfff: a dword read at 0xffe faults with #GP(0) → no IDT → shutdown.
    let code = asm(32, |a| {
        a.mov(ax, 0x48u32)?;
        a.mov(ds, ax)?;
        a.mov(ebx, dword_ptr(0xffc))?;
        a.mov(ecx, dword_ptr(0xffe))?;
        a.hlt()
    });
    g.set_flat32(&code);
    g.write_u64(GDT + 0x48, 0x0040_9300_0000_0fff);
    g.cpu.state.gdtr.limit = 0x4f;
    g.cpu.state.idtr.limit = 0;
    g.ram
        .write_obj(0xcafe_f00du32, GuestAddress(0xffc))
        .unwrap();
    assert_eq!(g.run(), CpuExit::Shutdown);
    assert_eq!(g.gpr(3), 0xcafe_f00d);
    assert_eq!(g.gpr(1), 0);
}

#[test]
fn page_crossing_write_is_all_or_nothing() {
    let mut g = Guest::new();
    // 4 KiB table for 0-2 MiB with page 0x21000 not present.
    let pt = 0x30_0000u64;
    for k in 0..512u64 {
        let e = if k == 0x21 { 0 } else { (k << 12) | 7 };
        g.write_u64(pt + 8 * k, e);
    }
    let code = asm(64, |a| {
        a.mov(rbx, 0x2_0ffcu64)?;
        a.mov(rax, 0x1122_3344_5566_7788u64)?;
        a.mov(qword_ptr(rbx), rax)?;
        a.hlt()
    });
    g.set_long(&code);
    g.write_u64(PT + 0x2000, pt | 7);
    g.cpu.state.idtr.limit = 0;
    assert_eq!(g.run(), CpuExit::Shutdown);
    assert_eq!(
        g.cpu.state.cr2, 0x2_1000,
        "CR2 is the first byte of the missing page"
    );
    let v: u32 = g.ram.read_obj(GuestAddress(0x2_0ffc)).unwrap();
    assert_eq!(v, 0, "no partial write");
    // The same store across two present pages works and is split.
    let mut g = Guest::new();
    let code = asm(64, |a| {
        a.mov(rbx, 0x2_0ffdu64)?;
        a.mov(rax, 0x1122_3344_5566_7788u64)?;
        a.mov(qword_ptr(rbx), rax)?;
        a.mov(rcx, qword_ptr(rbx))?;
        a.hlt()
    });
    g.set_long(&code);
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(g.gpr(1), 0x1122_3344_5566_7788);
}

#[test]
fn bcd_known_values() {
    let mut g = Guest::new();
    let code = asm(32, |a| {
        a.mov(al, 0x19u32)?;
        a.add(al, 0x28)?; // 0x41, AF
        a.daa()?; // 0x47
        a.mov(bl, al)?;
        a.mov(al, 0x47u32)?;
        a.sub(al, 0x19)?; // 0x2e
        a.das()?; // 0x28
        a.mov(bh, al)?;
        a.mov(ax, 0x0009u32)?;
        a.add(al, 0x08)?; // 0x11 with AF
        a.aaa()?; // AX = 0x0107
        a.mov(cx, ax)?;
        a.mov(al, 77u32)?;
        a.aam(10)?; // AX = 0x0707
        a.mov(dx, ax)?;
        a.mov(ax, 0x0307u32)?;
        a.aad(10)?; // AL = 37
        a.hlt()
    });
    g.set_flat32(&code);
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(g.gpr(3) & 0xffff, 0x2847);
    assert_eq!(g.gpr(1) & 0xffff, 0x0107);
    assert_eq!(g.gpr(2) & 0xffff, 0x0707);
    assert_eq!(g.gpr(0) & 0xffff, 37);
}

#[test]
fn enter_leave_pusha_popa() {
    let mut g = Guest::new();
    let code = asm(32, |a| {
        a.mov(ebp, 0x1111u32)?;
        a.enter(16, 0)?;
        a.mov(esi, esp)?;
        a.mov(edi, ebp)?;
        a.leave()?;
        a.mov(eax, 1u32)?;
        a.mov(ecx, 2u32)?;
        a.pushad()?;
        a.xor(eax, eax)?;
        a.xor(ecx, ecx)?;
        a.popad()?;
        a.hlt()
    });
    g.set_flat32(&code);
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(g.gpr(7), 0x8_0000 - 4, "EBP = frame");
    assert_eq!(g.gpr(6), 0x8_0000 - 4 - 16);
    assert_eq!(g.gpr(5), 0x1111, "LEAVE restored EBP");
    assert_eq!((g.gpr(0), g.gpr(1)), (1, 2));
    assert_eq!(g.gpr(4), 0x8_0000);
}

#[test]
fn call_gate_to_inner_privilege_with_parameter() {
    let mut g = Guest::new();
    let user_eip = CODE + 0x200;
    let kernel = asm(32, |a| {
        a.mov(ax, 0x40u32)?;
        a.ltr(ax)?;
        a.push(0x33)?;
        a.push(0x7000)?;
        a.push(0x2)?;
        a.push(0x3b)?;
        a.push(user_eip as i32)?;
        a.iretd()
    });
    g.set_flat32(&kernel);
    let mut user = asm(32, |a| {
        a.push(0x99)?;
        Ok(())
    });
    user.extend_from_slice(&[0x9a, 0, 0, 0, 0, 0x4b, 0]); // call far 0x4b:0 (gate, RPL 3)
    user.extend_from_slice(&[0x89, 0xe7, 0xeb, 0xfe]); // mov edi, esp; jmp $
    g.write(user_eip, &user);
    let target = CODE + 0x400;
    let callee = at(32, target, |a| {
        a.mov(esi, esp)?;
        a.mov(ebx, dword_ptr(esp + 8))?;
        a.mov(ecx, dword_ptr(esp + 4))?;
        a.retf_1(4)
    });
    g.write(target, &callee);
    g.write_u64(GDT + 0x38, 0x00cf_fb00_0000_ffff);
    g.write_u64(GDT + 0x40, sys_desc(TSS, 0x67, 0x89));
    let gate =
        (target & 0xffff) | 0x18 << 16 | 1 << 32 | 0xec << 40 | ((target >> 16) & 0xffff) << 48;
    g.write_u64(GDT + 0x48, gate);
    g.ram.write_obj(0x9000u32, GuestAddress(TSS + 4)).unwrap();
    g.ram.write_obj(0x10u32, GuestAddress(TSS + 8)).unwrap();
    g.cpu.state.gdtr.limit = 0x4f;
    let kick = AtomicBool::new(false);
    assert_eq!(g.cpu.run_limited(&kick, 1000), CpuExit::Interrupted);
    assert_eq!(g.gpr(6), 0x9000 - 20, "inner stack from the TSS");
    assert_eq!(g.gpr(3), 0x99, "parameter copied");
    assert_eq!(g.gpr(1), 0x3b, "caller CS");
    assert_eq!(
        g.gpr(7),
        0x7000,
        "back on the user stack, parameter released"
    );
    assert_eq!(g.cpu.state.cpl(), 3);
}

/// Linux's microcode loader reads IA32_PLATFORM_ID on family-6 Intel CPUs (as we present
/// ourselves) and prints an "unchecked MSR access" trace when it faults.
#[test]
fn platform_id_and_microcode_signature_read_zero() {
    let g = Guest::new();
    assert_eq!(g.cpu.read_msr(0x17), Some(0));
    assert_eq!(g.cpu.read_msr(0x8b), Some(0));
}

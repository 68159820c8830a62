//! x87 and FXSAVE programs run on the software CPU: loads, arithmetic, stores, compares into
//! EFLAGS, the status word, #NM/#MF and the FXSAVE image.

use iced_x86::code_asm::*;

use super::*;

/// Data page the programs read and write (identity-mapped in every mode used here).
const DATA: u64 = 0x3_0000;

fn run64(g: &mut Guest, f: impl FnOnce(&mut CodeAssembler) -> Result<(), iced_x86::IcedError>) {
    let code = asm(64, |a| {
        a.mov(rbx, DATA)?;
        f(a)?;
        a.hlt()
    });
    g.set_long(&code);
    assert_eq!(g.run(), CpuExit::Halt, "rip {:#x}", g.cpu.state.rip);
}

#[test]
fn load_add_store_double() {
    let mut g = Guest::new();
    g.write_u64(DATA, 1.5f64.to_bits());
    g.write_u64(DATA + 8, 2.25f64.to_bits());
    run64(&mut g, |a| {
        a.fninit()?;
        a.fld(qword_ptr(rbx))?;
        a.fadd(qword_ptr(rbx + 8))?;
        a.fstp(qword_ptr(rbx + 16))?;
        a.fnstsw(ax)
    });
    assert_eq!(f64::from_bits(g.read_u64(DATA + 16)), 3.75);
    assert_eq!(g.gpr(0) & 0xffff, 0, "status word clean, TOP back to 0");
}

#[test]
fn integer_ops_precision_and_fistp() {
    let mut g = Guest::new();
    g.write_u64(DATA, 7);
    g.write_u64(DATA + 8, 2);
    run64(&mut g, |a| {
        a.fninit()?;
        a.fild(dword_ptr(rbx))?;
        a.fidiv(dword_ptr(rbx + 8))?; // 3.5
        a.fistp(dword_ptr(rbx + 16))?; // round to even: 4
        a.fld1()?;
        a.fild(dword_ptr(rbx))?;
        a.fdivp(st1, st0)?; // st1 = 1/7, pop
        a.fst(qword_ptr(rbx + 24))?;
        a.fnstsw(ax)
    });
    assert_eq!(g.read_u64(DATA + 16) as u32, 4);
    assert_eq!(f64::from_bits(g.read_u64(DATA + 24)), 1.0 / 7.0);
    let fsw = g.gpr(0) as u16;
    assert_ne!(fsw & 0x20, 0, "PE set by 1/7");
    assert_eq!((fsw >> 11) & 7, 7, "one value left on the stack");
}

#[test]
fn fcomi_sets_eflags_and_fxch() {
    let mut g = Guest::new();
    run64(&mut g, |a| {
        a.fninit()?;
        a.fld1()?;
        a.fldz()?; // st0 = 0, st1 = 1
        a.fcomi(st0, st1)?; // 0 < 1: CF
        a.setb(cl)?;
        a.fxch(st0, st1)?;
        a.fcomip(st0, st1)?; // 1 > 0: nothing, pop
        a.seta(dl)?;
        a.fstp(qword_ptr(rbx))
    });
    assert_eq!(g.gpr(1) & 0xff, 1);
    assert_eq!(g.gpr(2) & 0xff, 1);
    assert_eq!(f64::from_bits(g.read_u64(DATA)), 0.0);
}

#[test]
fn m80_roundtrip_and_constants() {
    let mut g = Guest::new();
    run64(&mut g, |a| {
        a.fninit()?;
        a.fldpi()?;
        a.fstp(tword_ptr(rbx))?;
        a.fld(tword_ptr(rbx))?;
        a.fsqrt()?;
        a.fstp(tword_ptr(rbx + 16))
    });
    assert_eq!(g.read_u64(DATA), 0xc90f_daa2_2168_c235);
    assert_eq!(g.read_u64(DATA + 8) & 0xffff, 0x4000);
    // sqrt(pi) = 1.7724538509055160273...
    assert_eq!(g.read_u64(DATA + 16), 0xe2df_c48d_a77b_553d);
}

#[test]
fn stack_underflow_masked_gives_indefinite() {
    let mut g = Guest::new();
    run64(&mut g, |a| {
        a.fninit()?;
        a.fadd_2(st0, st1)?;
        a.fnstsw(ax)?;
        a.fstp(qword_ptr(rbx))
    });
    let fsw = g.gpr(0) as u16;
    assert_eq!(fsw & 0x41, 0x41, "IE and SF");
    assert_eq!(fsw & 0x200, 0, "C1 = 0 on underflow");
    assert_eq!(g.read_u64(DATA), 0xfff8_0000_0000_0000);
}

#[test]
fn unmasked_zero_divide_raises_mf_at_next_wait() {
    let mut g = Guest::new();
    // FLDCW with ZE unmasked, 1/0, then FWAIT: #MF (vector 16) with no IDT -> shutdown path.
    g.write_u64(DATA, 0x037b);
    run64(&mut g, |a| {
        a.fninit()?;
        a.fldcw(word_ptr(rbx))?;
        a.fld1()?;
        a.fldz()?;
        a.fdivp(st1, st0)?;
        a.fnstsw(ax)?;
        a.fnclex()?;
        a.wait()
    });
    let fsw = g.gpr(0) as u16;
    assert_eq!(fsw & 0x8084, 0x8084, "ZE, ES and B");
    // Unmasked ZE: destination and stack unchanged (two values, TOP = 6).
    assert_eq!((fsw >> 11) & 7, 6);
    assert_eq!(
        g.cpu.state.fpu.fsw & 0x80,
        0,
        "cleared by FNCLEX before the FWAIT"
    );
}

#[test]
fn pending_exception_faults_with_mf() {
    let mut g = Guest::new();
    g.write_u64(DATA, 0x037b);
    let code = asm(64, |a| {
        a.mov(rbx, DATA)?;
        a.fninit()?;
        a.fldcw(word_ptr(rbx))?;
        a.fld1()?;
        a.fldz()?;
        a.fdivp(st1, st0)?;
        a.wait()?;
        a.hlt()
    });
    g.set_long(&code);
    // No IDT: delivering #MF escalates to a triple fault.
    assert_eq!(g.run(), CpuExit::Shutdown);
}

#[test]
fn em_bit_raises_nm() {
    let mut g = Guest::new();
    let code = asm(64, |a| {
        a.fld1()?;
        a.hlt()
    });
    g.set_long(&code);
    g.cpu.state.cr0 |= crate::cpu::state::cr0::EM;
    assert_eq!(g.run(), CpuExit::Shutdown);
}

#[test]
fn fxsave_image_and_restore() {
    let mut g = Guest::new();
    run64(&mut g, |a| {
        a.fninit()?;
        a.fld1()?;
        a.fldz()?;
        a.fxsave(zmmword_ptr(rbx))?;
        a.fninit()?;
        a.fxrstor(zmmword_ptr(rbx))?;
        a.faddp(st1, st0)?;
        a.fstp(qword_ptr(rbx + 512))
    });
    assert_eq!(g.read_u64(DATA) & 0xffff_ffff_ffff, 0x00c0_3000_037f);
    // ST(0) = +0 at 32, ST(1) = 1.0 at 48.
    assert_eq!(g.read_u64(DATA + 32), 0);
    assert_eq!(g.read_u64(DATA + 48), 1 << 63);
    assert_eq!(g.read_u64(DATA + 56) & 0xffff, 0x3fff);
    assert_eq!(f64::from_bits(g.read_u64(DATA + 512)), 1.0);
}

#[test]
fn fxsave_misaligned_faults() {
    let mut g = Guest::new();
    let code = asm(64, |a| {
        a.mov(rbx, DATA + 8)?;
        a.fxsave(zmmword_ptr(rbx))?;
        a.hlt()
    });
    g.set_long(&code);
    assert_eq!(g.run(), CpuExit::Shutdown);
}

#[test]
fn fsave_frstor_real_mode() {
    let mut g = Guest::new();
    let code = asm(16, |a| {
        a.fninit()?;
        a.fld1()?;
        a.fnsave(ptr(0x100u32))?;
        a.fnstsw(ax)?;
        a.mov(dx, ax)?;
        a.frstor(ptr(0x100u32))?;
        a.fnstsw(ax)?;
        a.fstp(qword_ptr(0x200u32))?;
        a.hlt()
    });
    g.set_real(&code);
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(g.gpr(2) & 0xffff, 0, "FNSAVE reinitialises");
    assert_eq!((g.gpr(0) >> 11) & 7, 7, "FRSTOR brought TOP back");
    let v: u64 = g.ram.read_obj(GuestAddress(0x200)).unwrap();
    assert_eq!(f64::from_bits(v), 1.0);
}

#[test]
fn bcd_roundtrip_and_fcmov() {
    let mut g = Guest::new();
    g.write_u64(DATA, 0x0000_0000_9876_5432);
    g.write_u64(DATA + 8, 0x8000);
    run64(&mut g, |a| {
        a.fninit()?;
        a.fbld(tword_ptr(rbx))?; // -98765432
        a.fld1()?;
        a.stc()?;
        a.fcmovb(st0, st1)?; // CF = 1: st0 = -98765432
        a.fistp(dword_ptr(rbx + 16))?;
        a.fbstp(tword_ptr(rbx + 32))
    });
    assert_eq!(g.read_u64(DATA + 16) as u32 as i32, -98_765_432);
    assert_eq!(g.read_u64(DATA + 32), 0x9876_5432);
    assert_eq!(g.read_u64(DATA + 40) & 0xffff, 0x8000);
}

#[test]
fn fstenv_32bit_protected_layout() {
    let mut g = Guest::new();
    let code = asm(32, |a| {
        a.mov(ebx, DATA as u32)?;
        a.fninit()?;
        a.fld1()?;
        a.fnstenv(ptr(ebx))?;
        a.fldenv(ptr(ebx))?;
        a.fnstcw(word_ptr(ebx + 64))?;
        a.hlt()
    });
    g.set_flat32(&code);
    assert_eq!(g.run(), CpuExit::Halt);
    // FCW, FSW (TOP = 7) and FTW with 0xffff in the reserved upper halves.
    assert_eq!(g.read_u64(DATA), 0xffff_3800_ffff_037f);
    assert_eq!(g.read_u64(DATA + 8) as u32, 0xffff_3fff);
    // FIP: the FLD1 (after the 5-byte MOV and the 2-byte FNINIT); FCS:FOP.
    assert_eq!((g.read_u64(DATA + 8) >> 32) as u32, CODE as u32 + 7);
    assert_eq!(g.read_u64(DATA + 16) as u32, (0x1e8 << 16) | 0x18);
    // FSTENV masks all exceptions; FLDENV brought the stored FCW back.
    assert_eq!(g.read_u64(DATA + 64) as u16, 0x037f);
}

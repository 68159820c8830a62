//! Mode switches and paging modes: real → protected → long mode the way a boot loader does
//! it, 32-bit paging with 4 MiB pages, PAE paging, and random bytes as code in every mode.

use iced_x86::code_asm::*;

use super::*;
use crate::cpu::fault::Fault;

fn far_jmp(bytes: &mut Vec<u8>, prefix32: bool, sel: u16, off: u32) {
    if prefix32 {
        bytes.push(0x66);
    }
    bytes.push(0xea);
    bytes.extend_from_slice(&off.to_le_bytes());
    bytes.extend_from_slice(&sel.to_le_bytes());
}

#[test]
fn real_to_protected_to_long_mode() {
    let mut g = Guest::new();
    g.gdt();
    g.page_tables();
    // GDTR image at 0x600.
    g.ram.write_obj(0x37u16, GuestAddress(0x600)).unwrap();
    g.ram.write_obj(GDT as u32, GuestAddress(0x602)).unwrap();
    let mut real = asm(16, |a| {
        a.cli()?;
        a.xor(ax, ax)?;
        a.mov(ds, ax)?;
        a.db(&[0x66, 0x0f, 0x01, 0x16, 0x00, 0x06])?; // lgdt [0x600] (32-bit base)
        a.mov(eax, cr0)?;
        a.or(eax, 1)?;
        a.mov(cr0, eax)
    });
    far_jmp(&mut real, true, 0x18, (CODE + 0x100) as u32);
    let mut prot = {
        let mut a = CodeAssembler::new(32).unwrap();
        a.mov(ax, 0x10u32).unwrap();
        a.mov(ds, ax).unwrap();
        a.mov(es, ax).unwrap();
        a.mov(ss, ax).unwrap();
        a.mov(esp, 0x8_0000u32).unwrap();
        a.mov(eax, cr4).unwrap();
        a.or(eax, 0x20).unwrap();
        a.mov(cr4, eax).unwrap();
        a.mov(eax, PT as u32).unwrap();
        a.mov(cr3, eax).unwrap();
        a.mov(ecx, 0xc000_0080u32).unwrap();
        a.rdmsr().unwrap();
        a.or(eax, 0x100).unwrap();
        a.wrmsr().unwrap();
        a.mov(eax, cr0).unwrap();
        a.or(eax, 0x8000_0000u32 as i32).unwrap();
        a.mov(cr0, eax).unwrap();
        a.assemble(CODE + 0x100).unwrap()
    };
    far_jmp(&mut prot, false, 0x08, (CODE + 0x200) as u32);
    let long = {
        let mut a = CodeAssembler::new(64).unwrap();
        a.mov(rax, 0x1234_5678_9abc_def0u64).unwrap();
        a.push(rax).unwrap();
        a.pop(rbx).unwrap();
        a.hlt().unwrap();
        a.assemble(CODE + 0x200).unwrap()
    };
    g.set_real(&real);
    g.write(CODE + 0x100, &prot);
    g.write(CODE + 0x200, &long);
    assert_eq!(g.run(), CpuExit::Halt);
    let s = &g.cpu.state;
    assert!(
        s.mode64(),
        "in 64-bit mode: {:?}",
        s.to_vcpu_state().mode_name()
    );
    assert_eq!(s.efer & 0x500, 0x500, "LME and LMA");
    assert_eq!(g.gpr(3), 0x1234_5678_9abc_def0);
    assert_eq!(g.gpr(4), 0x8_0000);
}

#[test]
fn legacy_paging_with_4m_pages_and_pae() {
    // 32-bit paging: PDE 0 → 4 MiB page at 0, PDE 1 (4-8 MiB) → a 4 KiB table mapping
    // linear 0x400000 to physical 0x3000.
    let mut g = Guest::new();
    let pd = 0x30_0000u64;
    let pt = 0x30_1000u64;
    g.ram.write_obj(0x87u32, GuestAddress(pd)).unwrap();
    g.ram
        .write_obj((pt as u32) | 7, GuestAddress(pd + 4))
        .unwrap();
    g.ram.write_obj(0x3007u32, GuestAddress(pt)).unwrap();
    g.ram
        .write_obj(0xdead_beefu32, GuestAddress(0x3000))
        .unwrap();
    let code = asm(32, |a| {
        a.mov(eax, pd as u32)?;
        a.mov(cr3, eax)?;
        a.mov(eax, cr4)?;
        a.or(eax, 0x10)?;
        a.mov(cr4, eax)?;
        a.mov(eax, cr0)?;
        a.or(eax, 0x8000_0000u32 as i32)?;
        a.mov(cr0, eax)?;
        a.mov(ebx, dword_ptr(0x40_0000))?;
        a.hlt()
    });
    g.set_flat32(&code);
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(g.gpr(3), 0xdead_beef);

    // PAE: PDPT at 0x302000 → PD at 0x303000 with a 2 MiB identity page and a 4 KiB table.
    let mut g = Guest::new();
    let pdpt = 0x30_2000u64;
    let pd = 0x30_3000u64;
    let pt = 0x30_4000u64;
    g.write_u64(pdpt, pd | 1);
    g.write_u64(pd, 0x83);
    g.write_u64(pd + 8, pt | 3);
    g.write_u64(pt + 8, 0x3003);
    g.ram
        .write_obj(0x1234_5678u32, GuestAddress(0x3000))
        .unwrap();
    let code = asm(32, |a| {
        a.mov(eax, pdpt as u32)?;
        a.mov(cr3, eax)?;
        a.mov(eax, cr4)?;
        a.or(eax, 0x20)?;
        a.mov(cr4, eax)?;
        a.mov(eax, cr0)?;
        a.or(eax, 0x8000_0000u32 as i32)?;
        a.mov(cr0, eax)?;
        a.mov(ebx, dword_ptr(0x20_1000))?;
        a.hlt()
    });
    g.set_flat32(&code);
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(g.gpr(3), 0x1234_5678);
}

#[test]
fn mmio_reads_and_writes_go_to_the_io_handler() {
    let mut g = Guest::new();
    let code = asm(32, |a| {
        a.mov(eax, 0x1122_3344u32)?;
        a.mov(dword_ptr(0xfee0_0010u32), eax)?;
        a.mov(ebx, dword_ptr(0xfee0_0020u32))?;
        a.hlt()
    });
    g.set_flat32(&code);
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(
        *g.io.mmio.lock().unwrap(),
        vec![(0xfee0_0010, vec![0x44, 0x33, 0x22, 0x11])]
    );
    assert_eq!(g.gpr(3), 0x2322_2120);
}

#[test]
fn random_bytes_never_panic() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let iters: usize = std::env::var("KEMU_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1200);
    let mut g = Guest::new();
    for mode in 0..3 {
        for _ in 0..iters {
            let mut bytes = [0u8; 15];
            for b in bytes.iter_mut() {
                *b = next() as u8;
            }
            let mut code = bytes.to_vec();
            code.extend_from_slice(&[0xf4; 4]);
            match mode {
                0 => g.set_real(&code),
                1 => g.set_flat32(&code),
                _ => g.set_long(&code),
            }
            // Random registers too, so memory operands land anywhere.
            for r in 0..16 {
                if r != 4 {
                    g.cpu.state.gpr[r] = next() >> (next() % 64);
                }
            }
            g.cpu.state.idtr.limit = 0;
            if mode == 2 && next() % 2 == 0 {
                // A working IDT (every vector → HLT), sometimes from ring 3 with random flags,
                // so delivery, privilege checks and IRET-less handlers get exercised too.
                g.write(0x1_8000, &[0xf4]);
                for v in 0..256u64 {
                    let t = 0x1_8000u64;
                    let lo = (t & 0xffff) | 0x8 << 16 | 0x8eu64 << 40 | 3 << 45 | (t >> 16) << 48;
                    g.write_u64(0x4000 + 16 * v, lo);
                    g.write_u64(0x4008 + 16 * v, 0);
                }
                g.cpu.state.idtr = crate::accel::DescriptorTable {
                    base: 0x4000,
                    limit: 0xfff,
                };
                if next() % 2 == 0 {
                    g.cpu.state.seg[crate::cpu::state::sreg::CS].selector = 0x2b;
                    g.cpu.state.seg[crate::cpu::state::sreg::CS].dpl = 3;
                    g.cpu.state.seg[crate::cpu::state::sreg::SS].selector = 0x33;
                    g.cpu.state.seg[crate::cpu::state::sreg::SS].dpl = 3;
                }
                g.cpu.state.flags.set(next() & 0x3f_7fd5 & !0x100);
            }
            let kick = AtomicBool::new(false);
            // A few rounds: HLT returns; faults end in shutdown (no IDT).
            for _ in 0..3 {
                match g.cpu.run_limited(&kick, 300) {
                    CpuExit::Halt => g.cpu.halted = false,
                    _ => break,
                }
            }
        }
    }
    let _ = Fault::Halt;
}

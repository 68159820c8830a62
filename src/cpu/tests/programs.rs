//! Whole small programs: arithmetic loops, port I/O, strings, MUL/DIV, self-modifying code.

use iced_x86::code_asm::*;

use super::*;
use crate::accel::ExitReason;

#[test]
fn long_mode_loop_and_out() {
    let mut g = Guest::new();
    let code = asm(64, |a| {
        a.mov(rcx, 100u64)?;
        a.xor(eax, eax)?;
        let mut top = a.create_label();
        a.set_label(&mut top)?;
        a.add(rax, rcx)?;
        a.dec(rcx)?;
        a.jnz(top)?;
        a.mov(dx, 0x3f8u32)?;
        a.out(dx, al)?;
        a.hlt()
    });
    g.set_long(&code);
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(g.gpr(0), 5050);
    assert_eq!(
        *g.io.pio.lock().unwrap(),
        vec![(0x3f8, vec![5050u64 as u8])]
    );
    assert_eq!(g.stats.get(0, ExitReason::PioWrite), 1);
    assert_eq!(g.stats.get(0, ExitReason::Halt), 1);
    assert_eq!(g.stats.instructions(0), 2 + 300 + 3);
}

#[test]
fn real_mode_program() {
    let mut g = Guest::new();
    let code = asm(16, |a| {
        a.mov(ax, 0x1234u32)?;
        a.push(ax)?;
        a.pop(bx)?;
        a.mov(ds, bx)?;
        a.mov(word_ptr(0x10), 0xbeefu32)?;
        a.mov(cx, word_ptr(0x10))?;
        a.in_(al, 0x42)?;
        a.hlt()
    });
    g.set_real(&code);
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(g.gpr(3) & 0xffff, 0x1234);
    assert_eq!(g.gpr(1) & 0xffff, 0xbeef);
    assert_eq!(g.gpr(0) & 0xff, 0x5a);
    let v: u16 = g.ram.read_obj(GuestAddress(0x12340 + 0x10)).unwrap();
    assert_eq!(v, 0xbeef);
}

#[test]
fn rep_string_ops_32() {
    let mut g = Guest::new();
    let code = asm(32, |a| {
        a.cld()?;
        a.mov(edi, 0x3_0000u32)?;
        a.mov(eax, 0x11223344u32)?;
        a.mov(ecx, 16u32)?;
        a.rep().stosd()?;
        a.mov(esi, 0x3_0000u32)?;
        a.mov(edi, 0x3_1000u32)?;
        a.mov(ecx, 64u32)?;
        a.rep().movsb()?;
        a.mov(esi, 0x3_0000u32)?;
        a.mov(edi, 0x3_1000u32)?;
        a.mov(ecx, 64u32)?;
        a.repe().cmpsb()?;
        a.mov(ebx, ecx)?;
        a.mov(edi, 0x3_1000u32)?;
        a.mov(al, 0x11u32)?;
        a.mov(ecx, 64u32)?;
        a.repne().scasb()?;
        a.std()?;
        a.mov(esi, 0x3_0003u32)?;
        a.lodsb()?;
        a.hlt()
    });
    g.set_flat32(&code);
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(g.read_u64(0x3_1000), 0x1122334411223344);
    assert_eq!(g.read_u64(0x3_1038), 0x1122334411223344);
    assert_eq!(g.gpr(3), 0, "repe cmpsb ran to the end");
    assert_eq!(g.gpr(1), 60, "repne scasb stopped at the 4th byte");
    assert_eq!(g.gpr(7), 0x3_1004);
    assert_eq!(g.gpr(0) & 0xff, 0x11);
    assert_eq!(g.gpr(6), 0x3_0002);
}

#[test]
fn string_16bit_address_wraps() {
    let mut g = Guest::new();
    // rep stosb with DI wrapping at 64 KiB in real mode.
    let code = asm(16, |a| {
        a.mov(ax, 0x2000u32)?;
        a.mov(es, ax)?;
        a.mov(di, 0xfffeu32)?;
        a.mov(cx, 4u32)?;
        a.mov(al, 0xaau32)?;
        a.rep().stosb()?;
        a.hlt()
    });
    g.set_real(&code);
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(g.gpr(7) & 0xffff, 2);
    let lo: u16 = g.ram.read_obj(GuestAddress(0x20000)).unwrap();
    let hi: u16 = g.ram.read_obj(GuestAddress(0x2fffe)).unwrap();
    assert_eq!((lo, hi), (0xaaaa, 0xaaaa));
}

#[test]
fn mul_div_and_divide_error() {
    let mut g = Guest::new();
    let code = asm(64, |a| {
        a.mov(rax, 0xffff_ffff_ffff_ffffu64)?;
        a.mov(rbx, 2u64)?;
        a.mul(rbx)?;
        a.mov(r8, rax)?;
        a.mov(r9, rdx)?;
        a.mov(rax, -7i64)?;
        a.cqo()?;
        a.mov(rbx, 2u64)?;
        a.idiv(rbx)?;
        a.mov(r10, rax)?;
        a.mov(r11, rdx)?;
        a.mov(eax, 7u32)?;
        a.mov(ecx, -3i32 as u32)?;
        a.imul_3(r12d, ecx, 5)?;
        a.imul_2(eax, ecx)?;
        a.xor(edx, edx)?;
        a.xor(ebx, ebx)?;
        a.div(ebx)?;
        a.hlt()
    });
    g.set_long(&code);
    // No IDT: #DE → #GP (IDT limit 0xffff but zeros) ... escalates to shutdown.
    let exit = g.run();
    assert_eq!(g.gpr(8), 0xffff_ffff_ffff_fffe);
    assert_eq!(g.gpr(9), 1);
    assert_eq!(g.gpr(10) as i64, -3);
    assert_eq!(g.gpr(11) as i64, -1);
    assert_eq!(g.gpr(12) as u32 as i32, -15);
    assert_eq!(g.gpr(0) as u32 as i32, -21);
    assert_eq!(
        exit,
        CpuExit::Shutdown,
        "#DE with an empty IDT triple-faults"
    );
}

#[test]
fn self_modifying_code() {
    let mut g = Guest::new();
    // Overwrite the immediate of an instruction later in the same block, then run it.
    let code = asm(64, |a| {
        let mut target = a.create_label();
        a.lea(rbx, ptr(target))?;
        a.mov(byte_ptr(rbx + 1), 0x42)?;
        a.set_label(&mut target)?;
        a.mov(al, 0x11)?;
        a.hlt()
    });
    g.set_long(&code);
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(g.gpr(0) & 0xff, 0x42);
    // Run the same code again after patching it from a second pass: cached block dropped.
    let code2 = asm(64, |a| {
        a.mov(rax, 0x11u64)?;
        a.mov(byte_ptr(CODE + 0x100), 0xf4)?; // hlt
        a.jmp(CODE + 0x100)
    });
    g.write(CODE + 0x100, &[0x90, 0x90, 0xf4]);
    g.set_long(&code2);
    g.write(CODE + 0x100, &[0x90, 0x90, 0xf4]);
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(g.cpu.state.rip, CODE + 0x101);
}

#[test]
fn kick_interrupts_an_endless_loop() {
    let mut g = Guest::new();
    let code = asm(64, |a| {
        let mut top = a.create_label();
        a.set_label(&mut top)?;
        a.jmp(top)
    });
    g.set_long(&code);
    let kick = Arc::new(AtomicBool::new(false));
    let kick2 = kick.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(20));
        kick2.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    assert_eq!(g.cpu.run(&kick), CpuExit::Interrupted);
    t.join().unwrap();
}

/// Throughput of a tight integer loop (run with `--ignored --nocapture`; meaningful only in an
/// optimised build).
#[test]
#[ignore]
fn tight_loop_mips() {
    let mut g = Guest::new();
    let code = asm(64, |a| {
        a.mov(ecx, 10_000_000u32)?; // 50 M guest instructions
        let mut top = a.create_label();
        a.set_label(&mut top)?;
        a.add(rax, rcx)?;
        a.xor(rbx, rax)?;
        a.mov(qword_ptr(0x3000), rbx)?;
        a.dec(rcx)?;
        a.jnz(top)?;
        a.hlt()
    });
    g.set_long(&code);
    let t = std::time::Instant::now();
    assert_eq!(g.run(), CpuExit::Halt);
    let dt = t.elapsed().as_secs_f64();
    let n = g.stats.instructions(0) as f64;
    println!("{n} instructions in {dt:.3} s: {:.1} MIPS", n / dt / 1e6);
}

#[test]
fn dma_announced_to_the_code_watch_drops_stale_blocks() {
    let mut g = Guest::new();
    let code = asm(64, |a| {
        a.mov(eax, 1u32)?;
        a.hlt()
    });
    g.set_long(&code);
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(g.gpr(0), 1);
    // Rewrite the code the way a device would (not through the CPU) and announce it.
    let code2 = asm(64, |a| {
        a.mov(eax, 2u32)?;
        a.hlt()
    });
    g.ram.write_slice(&code2, GuestAddress(CODE)).unwrap();
    let watch = g.cpu.code_watch();
    watch.wrote(CODE, code2.len() as u64);
    let base = g.cpu.state.clone();
    let mut s = base.clone();
    s.rip = CODE;
    g.cpu.set_state(s);
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(g.gpr(0), 2, "the stale block was dropped");
    // Unchanged code survives a new epoch (checked again, not re-decoded).
    let epoch = watch.epoch();
    watch.wrote(CODE, 1);
    assert_eq!(watch.epoch(), epoch + 1, "the frame was watched again");
    let n = g.cpu.cached_blocks();
    let mut s = base;
    s.rip = CODE;
    g.cpu.set_state(s);
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(g.gpr(0), 2);
    assert_eq!(g.cpu.cached_blocks(), n);
}

/// Cross-modifying code: CPU 1 stores into code CPU 0 has translated, and CPU 0 runs it
/// again. CPU 1's TLB already maps the frame writable (it wrote data there before CPU 0
/// decoded it, in the same run), so its store is seen only because CPU 0's new watch makes
/// CPU 1 drop its writable entries at its next block boundary.
#[test]
fn stores_by_another_vcpu_reach_translated_code() {
    const PATCHER: u64 = CODE + 0x2000;
    const READY: u32 = 0x9000;
    const GO: u32 = 0x9004;
    let mut g = Guest::new();
    let code = asm(32, |a| {
        a.mov(eax, 1u32)?;
        a.mov(dword_ptr(GO), 1u32)?;
        a.hlt()
    });
    g.set_flat32(&code);
    let mut a = CodeAssembler::new(32).unwrap();
    let mut spin = a.create_label();
    a.mov(dword_ptr(CODE as u32 + 0x800), 7u32).unwrap();
    a.mov(dword_ptr(READY), 1u32).unwrap();
    a.set_label(&mut spin).unwrap();
    a.cmp(dword_ptr(GO), 1u32).unwrap();
    a.jne(spin).unwrap();
    // The immediate of CPU 0's `mov eax, imm32` (opcode byte at CODE).
    a.mov(dword_ptr(CODE as u32 + 1), 2u32).unwrap();
    a.hlt().unwrap();
    let patcher = a.assemble(PATCHER).unwrap();
    g.ram.write_slice(&patcher, GuestAddress(PATCHER)).unwrap();

    let watch = Arc::new(crate::accel::CodeWatch::new(RAM as u64 - 1, 2));
    g.cpu.set_code_watch(watch.clone());
    g.cpu.cpu_count = 2;
    let mut second = Cpu::new(1, g.ram.clone(), g.io.clone(), Arc::new(ExitStats::new(2)));
    second.cpu_count = 2;
    second.set_code_watch(watch);
    let base = g.cpu.state.clone();
    let mut s = base.clone();
    s.rip = PATCHER;
    second.set_state(s);
    let ram = g.ram.clone();
    std::thread::scope(|scope| {
        let patcher = scope.spawn(move || second.run(&AtomicBool::new(false)));
        let ready = || ram.read_obj::<u32>(GuestAddress(u64::from(READY))).unwrap() == 1;
        let t0 = std::time::Instant::now();
        while !ready() && t0.elapsed().as_secs() < 20 {
            std::thread::yield_now();
        }
        assert!(ready(), "CPU 1 never wrote the code frame");
        assert_eq!(g.run(), CpuExit::Halt);
        assert_eq!(g.gpr(0), 1);
        assert_eq!(patcher.join().unwrap(), CpuExit::Halt);
    });
    let mut s = base;
    s.rip = CODE;
    g.cpu.set_state(s);
    assert_eq!(g.run(), CpuExit::Halt);
    assert_eq!(g.gpr(0), 2, "CPU 0 ran the patched code");
}

/// Two CPUs on one RAM, each 20000 times: LOCK INC, LOCK XADD, LOCK ADD, LOCK CMPXCHG in a
/// retry loop, and a plain increment under an XCHG spinlock. Every update must survive.
#[test]
fn locked_instructions_are_atomic_between_cpus() {
    const N: u32 = 20_000;
    let mut g = Guest::new();
    let code = asm(32, |a| {
        a.mov(ecx, N)?;
        a.mov(ebx, 1u32)?;
        let mut top = a.create_label();
        let mut spin = a.create_label();
        let mut cas = a.create_label();
        a.set_label(&mut top)?;
        a.lock().inc(dword_ptr(0x9000u32))?;
        a.mov(edx, 1u32)?;
        a.lock().xadd(dword_ptr(0x9004u32), edx)?;
        a.lock().add(dword_ptr(0x9008u32), 1u32)?;
        a.set_label(&mut cas)?;
        a.mov(eax, dword_ptr(0x900cu32))?;
        a.lea(edx, dword_ptr(eax + 1))?;
        a.lock().cmpxchg(dword_ptr(0x900cu32), edx)?;
        a.jnz(cas)?;
        a.set_label(&mut spin)?;
        a.mov(eax, 1u32)?;
        a.xchg(dword_ptr(0x9010u32), eax)?;
        a.test(eax, eax)?;
        a.jnz(spin)?;
        a.add(dword_ptr(0x9014u32), ebx)?;
        a.mov(dword_ptr(0x9010u32), 0u32)?;
        // Each CPU toggles its own bit of one shared word (CPU 0 bit 0, CPU 1 bit 1), via ESI.
        a.lock().btc(dword_ptr(0x9018u32), esi)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.hlt()
    });
    g.set_flat32(&code);
    let mut second = Cpu::new(1, g.ram.clone(), g.io.clone(), Arc::new(ExitStats::new(2)));
    let mut state = g.cpu.state.clone();
    state.gpr[6] = 1; // ESI: CPU 1 toggles bit 1
    second.set_state(state);
    std::thread::scope(|s| {
        for cpu in [&mut g.cpu, &mut second] {
            s.spawn(move || assert_eq!(cpu.run(&AtomicBool::new(false)), CpuExit::Halt));
        }
    });
    for off in [0x9000u64, 0x9004, 0x9008, 0x900c, 0x9014] {
        let v: u32 = g.ram.read_obj(GuestAddress(off)).unwrap();
        assert_eq!(v, 2 * N, "counter at {off:#x}");
    }
    // Each bit toggled an even number of times: back to 0, no toggle lost to the other CPU.
    let bits: u32 = g.ram.read_obj(GuestAddress(0x9018)).unwrap();
    assert_eq!(bits, 0);
}

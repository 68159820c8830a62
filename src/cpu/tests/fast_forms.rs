//! The pre-decoded fast forms (`exec::fast`) against the general semantics they shortcut:
//! random instruction bytes that decode to a fast form run once with fast forms on and once
//! with them off, from the same random registers and flags, in real, 32-bit protected and
//! 64-bit mode; registers, flags, RIP, the exit, RAM and MMIO writes must be identical.

use vm_memory::{Bytes, GuestAddress};

use super::{Guest, Rng, RAM};
use crate::cpu::exec::fast;
use crate::cpu::CpuExit;

#[derive(Clone, Copy, Debug)]
enum Mode {
    Real,
    Flat32,
    Long,
}

/// One guest in `mode` with `code`, registers and flags from `seed`, fast forms as told.
fn guest(mode: Mode, code: &[u8], seed: u64, fast_forms: bool) -> Guest {
    let mut g = Guest::new();
    g.cpu.fast_forms = fast_forms;
    match mode {
        Mode::Real => g.set_real(code),
        Mode::Flat32 => g.set_flat32(code),
        Mode::Long => g.set_long(code),
    }
    let mut rng = Rng(seed | 1);
    for r in 0..16 {
        if r == 4 {
            continue;
        }
        // Half the registers are small, so memory operands often land in RAM.
        let v = rng.next();
        g.cpu.state.gpr[r] = if v & 1 == 0 { v >> 44 } else { v };
    }
    let flags = (rng.next() & 0x8d5) | 2;
    g.cpu.state.flags.set(flags);
    g
}

fn ram(g: &Guest) -> Vec<u8> {
    let mut v = vec![0u8; RAM];
    g.ram.read_slice(&mut v, GuestAddress(0)).unwrap();
    v
}

#[test]
fn fast_forms_agree_with_the_general_semantics() {
    let prefixes: [&[u8]; 8] = [
        &[],
        &[0x66],
        &[0x67],
        &[0x48],
        &[0x4d],
        &[0x41],
        &[0x66, 0x44],
        &[0x26],
    ];
    let mut rng = Rng(0x5eed_f00d);
    for (mode, bits) in [(Mode::Real, 16), (Mode::Flat32, 32), (Mode::Long, 64)] {
        let mut tested = 0;
        let mut tries = 0;
        while tested < 400 && tries < 1_000_000 {
            tries += 1;
            let pre = prefixes[(rng.next() % prefixes.len() as u64) as usize];
            if bits != 64 && pre.iter().any(|b| b & 0xf0 == 0x40) {
                continue;
            }
            let mut bytes: Vec<u8> = pre.to_vec();
            bytes.extend((0..12).map(|_| rng.next() as u8));
            let mut dec = iced_x86::Decoder::with_ip(bits, &bytes, 0, 0);
            let insn = dec.decode();
            if insn.is_invalid() || fast::select(&insn, bits).is_none() {
                continue;
            }
            let mut code = bytes[..insn.len()].to_vec();
            code.push(0xf4); // HLT
            let seed = rng.next();
            let mut a = guest(mode, &code, seed, true);
            let mut b = guest(mode, &code, seed, false);
            // A taken branch may land anywhere: a budget keeps a wild one finite.
            let kick = std::sync::atomic::AtomicBool::new(false);
            let ea = a.cpu.run_limited(&kick, 200);
            let eb = b.cpu.run_limited(&kick, 200);
            let what = format!("{mode:?} {:02x?} ({insn}) seed {seed:#x}", &code);
            assert_eq!(ea, eb, "exit: {what}");
            a.assert_same_as(&b, &what);
            assert!(ram(&a) == ram(&b), "memory: {what}");
            if ea == CpuExit::Halt {
                tested += 1;
            }
        }
        assert!(
            tested >= 400,
            "{mode:?}: only {tested} fast forms ran to HLT"
        );
    }
}

//! CPUID: a GenuineIntel-compatible description of exactly what this CPU implements. FPU (x87),
//! FXSR (FXSAVE/FXRSTOR), SSE and SSE2 (no MMX, SSE3 or later); the local APIC (xAPIC: the
//! machine provides it; no x2APIC, no TSC-deadline), PAE, PSE, PGE, TSC, MSR, CX8, CX16, CMOV,
//! SEP, PAT, CLFSH, POPCNT, SYSCALL, NX, LM, RDTSCP and LAHF/SAHF in 64-bit mode.

use iced_x86::Instruction;

use crate::cpu::fault::Res;
use crate::cpu::mmu::walk::PHYS_BITS;
use crate::cpu::Cpu;

/// Leaf 1 EDX feature bits we implement.
const LEAF1_EDX: u32 = (1 << 0) // FPU
    | (1 << 3) // PSE
    | (1 << 4) // TSC
    | (1 << 5) // MSR
    | (1 << 6) // PAE
    | (1 << 8) // CX8
    | (1 << 9) // APIC (on-chip local APIC, initial APIC ID in leaf 1 EBX[31:24])
    | (1 << 11) // SEP
    | (1 << 13) // PGE
    | (1 << 15) // CMOV
    | (1 << 16) // PAT
    | (1 << 19) // CLFSH
    | (1 << 24) // FXSR
    | (1 << 25) // SSE
    | (1 << 26); // SSE2
/// Leaf 1 ECX feature bits.
const LEAF1_ECX: u32 = (1 << 13) // CMPXCHG16B
    | (1 << 23); // POPCNT
/// Leaf 0x80000001 EDX.
const EXT1_EDX: u32 = (1 << 11) | (1 << 20) | (1 << 27) | (1 << 29);
/// Leaf 0x80000001 ECX.
const EXT1_ECX: u32 = 1; // LAHF/SAHF in 64-bit mode

fn text(s: &[u8; 16]) -> [u32; 4] {
    std::array::from_fn(|k| {
        u32::from_le_bytes([s[4 * k], s[4 * k + 1], s[4 * k + 2], s[4 * k + 3]])
    })
}

/// The four registers CPUID returns for `leaf`/`subleaf` on vCPU `id` of `count`.
pub fn cpuid(leaf: u32, _subleaf: u32, id: usize, count: usize) -> [u32; 4] {
    match leaf {
        0 => [1, 0x756e_6547, 0x6c65_746e, 0x4965_6e69], // "Genu" "ntel" "ineI": EBX, ECX, EDX
        1 => [
            0x0000_0663,
            ((id as u32 & 0xff) << 24) | ((count.min(255) as u32) << 16) | (8 << 8),
            LEAF1_ECX,
            LEAF1_EDX,
        ],
        0x8000_0000 => [0x8000_0008, 0, 0, 0],
        0x8000_0001 => [0, 0, EXT1_ECX, EXT1_EDX],
        0x8000_0002 => text(b"kemu software x8"),
        0x8000_0003 => text(b"6-64 CPU (interp"),
        0x8000_0004 => text(b"reter + JIT)\0\0\0\0"),
        0x8000_0008 => [0x3000 | PHYS_BITS, 0, 0, 0],
        _ => [0; 4],
    }
}

/// CPUID.
pub fn exec_cpuid(cpu: &mut Cpu, _i: &Instruction) -> Res<()> {
    let g = &cpu.state.gpr;
    let [a, b, c, d] = cpuid(g[0] as u32, g[1] as u32, cpu.id, cpu.cpu_count);
    cpu.state.gpr[0] = u64::from(a);
    cpu.state.gpr[3] = u64::from(b);
    cpu.state.gpr[1] = u64::from(c);
    cpu.state.gpr[2] = u64::from(d);
    Ok(())
}

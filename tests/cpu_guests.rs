//! One test guest per concern of the software CPU (`tests/guest-images/`: modes, paging,
//! exceptions, gates, strings, smc, and the tcg-only modes_tcg, exceptions_tcg and gates_tcg), each under
//! `-accel tcg` and, where /dev/kvm (PVM on this project's host) can run it, under `-accel kvm`.
//! The expected outputs are what the real CPU prints under KVM; the tcg-only guests' were
//! checked against the SDM by hand.

mod common;

use common::run_guest;

fn both(name: &str) {
    let file = format!("{name}.bin");
    run_guest("tcg", &file, name, 1, "1");
    run_guest("kvm", &file, name, 1, "1");
}

#[test]
fn modes_real_protected_long_compat() {
    both("modes");
}

/// modes.S plus a real-mode INT n through the IVT: under PVM the vCPU never comes back from it
/// (the run hangs until the time limit kills it), so this variant is tcg only.
#[test]
fn modes_with_real_mode_int_tcg_only() {
    run_guest("tcg", "modes_tcg.bin", "modes_tcg", 1, "1");
}

#[test]
fn paging_faults_ad_bits_invlpg() {
    both("paging");
}

#[test]
fn exceptions_each_class() {
    both("exceptions");
}

/// INT3, INTO and BOUND: PVM fails them. INT3 at CPL 0: "KVM internal error (emulation
/// failure) ... instruction: int3"; BOUND at CPL 0 likewise; BOUND in compatibility mode at
/// CPL 3 raises #UD instead of #BR (PVM runs CPL 3 code on the host's 64-bit CS, where 0x62 is
/// the EVEX prefix).
#[test]
fn exceptions_tcg_only() {
    run_guest("tcg", "exceptions_tcg.bin", "exceptions_tcg", 1, "1");
}

#[test]
fn gates_iretq_to_cpl3() {
    both("gates");
}

/// The call gate from CPL 3 raises #UD at CPL 3 under PVM ("unexpected exception 6 at RIP
/// <the lcall>, CPL 3"), and SYSENTER is #UD in long mode on this AMD host while kemu's CPU is
/// an Intel one; so this variant is tcg only.
#[test]
fn gates_call_gate_and_sysenter_tcg_only() {
    run_guest("tcg", "gates_tcg.bin", "gates_tcg", 1, "1");
}

#[test]
fn string_instructions() {
    both("strings");
}

#[test]
fn self_modifying_code() {
    both("smc");
}

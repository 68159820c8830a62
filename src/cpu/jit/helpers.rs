//! The Rust functions translated code calls, with the C calling convention it can call.
//!
//! Each takes the `Cpu` pointer the translated function was entered with (its first argument,
//! kept in RBX), and nothing of it outlives the call.

use super::compile::{FAULT, STOP};
use crate::cpu::decode::DecodedInsn;
use crate::cpu::Cpu;

/// Run one instruction through its semantics pointer, as the interpreter loop does: RIP and
/// next RIP were stored by the caller; on success RIP moves on. Returns 0, [`FAULT`] (the fault
/// waits in `Cpu::jit_fault`) or [`STOP`] (the block must end here).
///
/// # Safety
/// `cpu` is the `Cpu` whose run loop entered the translated code (no other reference to it is
/// in use during the call), and `d` an instruction of a block that `Cpu`'s cache keeps alive
/// until its run loop's next `collect`.
pub(super) unsafe extern "sysv64" fn callout(cpu: *mut Cpu, d: *const DecodedInsn) -> u32 {
    // SAFETY: as the caller promises (see above); the instruction is immutable and not part
    // of the `Cpu` fields the semantics mutate through `cpu`.
    let (cpu, d) = unsafe { (&mut *cpu, &*d) };
    match (d.exec)(cpu, d) {
        Ok(()) => {
            cpu.state.rip = cpu.next_rip;
            if cpu.stop_block {
                STOP as u32
            } else {
                0
            }
        }
        Err(f) => {
            cpu.jit_fault = Some(f);
            FAULT as u32
        }
    }
}

/// Condition code `cc` on the current flags (1 true, 0 false).
///
/// # Safety
/// As for [`callout`].
pub(super) unsafe extern "sysv64" fn cond(cpu: *mut Cpu, cc: u64) -> u32 {
    // SAFETY: as for `callout`.
    let cpu = unsafe { &*cpu };
    u32::from(cpu.state.flags.cond(cc as u8))
}

/// Make CF current in the flag bits (before an INC/DEC whose flags producer is unknown).
///
/// # Safety
/// As for [`callout`].
pub(super) unsafe extern "sysv64" fn fold_cf(cpu: *mut Cpu) {
    // SAFETY: as for `callout`.
    let cpu = unsafe { &mut *cpu };
    cpu.state.flags.fold_cf();
}

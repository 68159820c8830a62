//! What a debugger (the gdbstub) asks of a vCPU, in terms both accelerators understand.
//!
//! The gdbstub hands a [`DebugConfig`] to [`crate::accel::Vcpu::set_debug`] before each resume;
//! the vCPU then returns [`crate::accel::VcpuExit::Debug`] from `run()` when it reaches a
//! breakpoint or has executed one instruction in single-step mode. [`FpuRegs`] is the x87/SSE
//! register file in an accelerator-neutral form (KVM's `kvm_fpu`, the software CPU's
//! `FpuState`), in the order gdb numbers the registers.

/// Debug settings for one vCPU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DebugConfig {
    /// Stop after executing one instruction.
    pub single_step: bool,
    /// Software breakpoints, by linear address (CS base + RIP). The software CPU checks them
    /// before each instruction; under KVM the debugger patches INT3 into guest memory itself
    /// and the list only switches interception of #BP on.
    pub sw_breakpoints: Vec<u64>,
    /// Hardware instruction breakpoints, by linear address (at most [`MAX_HW_BREAKPOINTS`]):
    /// debug registers DR0..DR3 under KVM, the same check as software ones in the software CPU.
    pub hw_breakpoints: Vec<u64>,
}

/// x86 has four debug address registers.
pub const MAX_HW_BREAKPOINTS: usize = 4;

impl DebugConfig {
    /// Whether anything is asked at all (otherwise debugging is switched off).
    pub fn active(&self) -> bool {
        self.single_step || !self.sw_breakpoints.is_empty() || !self.hw_breakpoints.is_empty()
    }

    /// Whether linear address `addr` holds a breakpoint of either kind.
    pub fn breaks_at(&self, addr: u64) -> bool {
        self.sw_breakpoints.contains(&addr) || self.hw_breakpoints.contains(&addr)
    }
}

/// The x87 and SSE registers as gdb shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FpuRegs {
    /// ST(0)..ST(7) (stack order, not physical order), 80 bits each, little-endian.
    pub st: [[u8; 10]; 8],
    /// Control word.
    pub fcw: u16,
    /// Status word.
    pub fsw: u16,
    /// Full tag word (two bits per physical register, 3 = empty).
    pub ftw: u16,
    /// Last instruction's code selector.
    pub fcs: u16,
    /// Last instruction's offset.
    pub fip: u64,
    /// Last operand's data selector.
    pub fds: u16,
    /// Last operand's offset.
    pub fdp: u64,
    /// Last opcode (11 bits).
    pub fop: u16,
    /// XMM0..XMM15.
    pub xmm: [u128; 16],
    /// SSE control/status.
    pub mxcsr: u32,
}

impl FpuRegs {
    /// Registers after RESET/FNINIT as KVM and the software CPU set them up.
    pub fn reset() -> Self {
        FpuRegs {
            fcw: 0x37f,
            ftw: 0xffff,
            mxcsr: 0x1f80,
            ..FpuRegs::default()
        }
    }

    /// The full tag word from FXSAVE's abridged one (bit `i` set = physical register `i` in
    /// use), classifying each used register's value as gdb and FSAVE do.
    pub fn full_tag(abridged: u8, fsw: u16, st: &[[u8; 10]; 8]) -> u16 {
        let top = usize::from((fsw >> 11) & 7);
        let mut ftw = 0u16;
        for phys in 0..8 {
            let tag = if abridged & (1 << phys) == 0 {
                3
            } else {
                // ST(i) lives in physical register (top + i) & 7.
                classify(&st[(phys + 8 - top) & 7])
            };
            ftw |= tag << (2 * phys);
        }
        ftw
    }

    /// FXSAVE's abridged tag byte from the full tag word.
    pub fn abridged_tag(&self) -> u8 {
        (0..8).fold(0u8, |acc, i| {
            if (self.ftw >> (2 * i)) & 3 == 3 {
                acc
            } else {
                acc | (1 << i)
            }
        })
    }
}

/// The two-bit tag of a non-empty 80-bit register: 0 valid, 1 zero, 2 special.
fn classify(r: &[u8; 10]) -> u16 {
    let exp = u16::from_le_bytes([r[8], r[9]]) & 0x7fff;
    let mut m = [0u8; 8];
    m.copy_from_slice(&r[..8]);
    let mant = u64::from_le_bytes(m);
    match exp {
        0x7fff => 2,
        0 if mant == 0 => 1,
        0 => 2,
        _ if mant >> 63 == 0 => 2, // unnormal
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_activity_and_hits() {
        let mut c = DebugConfig::default();
        assert!(!c.active());
        c.hw_breakpoints.push(0x1000);
        assert!(c.active() && c.breaks_at(0x1000) && !c.breaks_at(0x1001));
    }

    #[test]
    fn tags_round_trip() {
        let mut st = [[0u8; 10]; 8];
        // ST(0) = 1.0 (valid), ST(1) = +0 (zero), TOP = 6.
        st[0] = [0, 0, 0, 0, 0, 0, 0, 0x80, 0xff, 0x3f];
        let fsw = 6 << 11;
        let abridged = (1 << 6) | (1 << 7);
        let ftw = FpuRegs::full_tag(abridged, fsw, &st);
        assert_eq!(ftw, 0x4fff); // R6 valid (0), R7 zero (1), the rest empty (3)
        let r = FpuRegs {
            ftw,
            ..FpuRegs::reset()
        };
        assert_eq!(r.abridged_tag(), abridged);
    }
}

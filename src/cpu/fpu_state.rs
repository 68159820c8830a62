//! `FpuState`: the x87 and SSE register files of the software CPU, in one struct because
//! FXSAVE/FXRSTOR (and the `save()`/`restore()` of a snapshot) move them together.
//!
//! The x87 half keeps the stack as eight 80-bit registers in *physical* order (`st[i]` is
//! R`i`; ST(`j`) is `st[(top + j) & 7]`, with TOP held in bits 11..13 of `fsw`), and the full
//! 16-bit tag word; FXSAVE's abridged tag byte is derived from it. The SSE half is sixteen
//! 128-bit registers and MXCSR. The semantics that read and write these live in
//! `exec/x87*` and `exec/sse*`.

/// One 80-bit x87 register: 64-bit significand (explicit integer bit) and sign+exponent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct F80 {
    /// Significand, bit 63 is the explicit integer bit.
    pub mant: u64,
    /// Bit 15 is the sign, bits 0..15 the biased exponent (bias 16383).
    pub sign_exp: u16,
}

/// x87 tag values (two bits per register in the full tag word).
pub mod tag {
    /// Holds a normal finite value.
    pub const VALID: u16 = 0;
    /// Holds +0 or -0.
    pub const ZERO: u16 = 1;
    /// NaN, infinity, denormal or unsupported.
    pub const SPECIAL: u16 = 2;
    /// Empty.
    pub const EMPTY: u16 = 3;
}

/// MXCSR after reset: all exceptions masked, round to nearest.
pub const MXCSR_RESET: u32 = 0x1f80;
/// FCW after FNINIT/reset: all exceptions masked, 64-bit precision, round to nearest.
pub const FCW_RESET: u16 = 0x037f;

/// x87 + SSE architectural state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FpuState {
    /// Control word.
    pub fcw: u16,
    /// Status word (TOP in bits 11..13).
    pub fsw: u16,
    /// Full tag word, two bits per physical register (see [`tag`]).
    pub ftw: u16,
    /// Physical registers R0..R7.
    pub st: [F80; 8],
    /// Last x87 opcode (11 bits).
    pub fop: u16,
    /// Last x87 instruction pointer (offset) and its code selector.
    pub fip: u64,
    /// Code selector of the last x87 instruction.
    pub fcs: u16,
    /// Last x87 data pointer (offset) and its selector.
    pub fdp: u64,
    /// Data selector of the last x87 memory operand.
    pub fds: u16,
    /// XMM0..XMM15.
    pub xmm: [u128; 16],
    /// SSE control/status.
    pub mxcsr: u32,
}

impl Default for FpuState {
    /// The state after RESET: FCW 0x40, all tags empty, MXCSR 0x1f80 (Intel SDM table 9-1).
    fn default() -> Self {
        FpuState {
            fcw: 0x0040,
            fsw: 0,
            ftw: 0xffff,
            st: [F80::default(); 8],
            fop: 0,
            fip: 0,
            fcs: 0,
            fdp: 0,
            fds: 0,
            xmm: [0; 16],
            mxcsr: MXCSR_RESET,
        }
    }
}

impl FpuState {
    /// TOP, the physical index of ST(0).
    pub fn top(&self) -> usize {
        usize::from((self.fsw >> 11) & 7)
    }

    /// Physical index of ST(`i`).
    pub fn phys(&self, i: usize) -> usize {
        (self.top() + i) & 7
    }

    /// FXSAVE's abridged tag byte: bit `i` set when R`i` is not empty.
    pub fn abridged_tag(&self) -> u8 {
        (0..8).fold(0u8, |acc, i| {
            if (self.ftw >> (2 * i)) & 3 == tag::EMPTY {
                acc
            } else {
                acc | (1 << i)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_state_is_empty_and_masked() {
        let f = FpuState::default();
        assert_eq!(f.abridged_tag(), 0);
        assert_eq!(f.top(), 0);
        assert_eq!(f.mxcsr, 0x1f80);
    }

    #[test]
    fn st_index_wraps_around_top() {
        let f = FpuState {
            fsw: 6 << 11,
            ftw: !(3 << 12),
            ..FpuState::default()
        };
        assert_eq!(f.phys(0), 6);
        assert_eq!(f.phys(3), 1);
        assert_eq!(f.abridged_tag(), 1 << 6);
    }
}

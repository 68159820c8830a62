//! Why an instruction did not complete: a guest exception to deliver, or an event for the run
//! loop (HLT, shutdown). Semantics functions return `Result<_, Fault>`; state is left as before
//! the instruction, so exceptions are precise.

/// Exception vectors.
pub mod vec {
    /// Divide error.
    pub const DE: u8 = 0;
    /// Debug.
    pub const DB: u8 = 1;
    /// Non-maskable interrupt.
    pub const NMI: u8 = 2;
    /// Breakpoint (INT3).
    pub const BP: u8 = 3;
    /// Overflow (INTO).
    pub const OF: u8 = 4;
    /// BOUND range exceeded.
    pub const BR: u8 = 5;
    /// Invalid opcode.
    pub const UD: u8 = 6;
    /// Device not available.
    pub const NM: u8 = 7;
    /// Double fault.
    pub const DF: u8 = 8;
    /// Invalid TSS.
    pub const TS: u8 = 10;
    /// Segment not present.
    pub const NP: u8 = 11;
    /// Stack-segment fault.
    pub const SS: u8 = 12;
    /// General protection.
    pub const GP: u8 = 13;
    /// Page fault.
    pub const PF: u8 = 14;
    /// x87 floating-point error.
    pub const MF: u8 = 16;
    /// Alignment check.
    pub const AC: u8 = 17;
}

/// What stopped an instruction.
///
/// Kept to a tag and one machine word ([`Exc`] packs vector and error code) so that
/// `Result<(), Fault>`, which every semantics function returns, comes back in two registers
/// rather than through memory: the interpreter's hottest return path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A guest exception with its error code, if the vector has one.
    Exception(Exc),
    /// HLT executed (RIP already past it).
    Halt,
    /// Triple fault / shutdown.
    Shutdown,
}

/// An exception vector and its optional error code, packed: bits 0..8 vector, bit 8 "has an
/// error code", bits 32..64 the code.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Exc(u64);

impl Exc {
    /// Pack `vector` and `code`.
    #[inline]
    pub fn new(vector: u8, code: Option<u32>) -> Self {
        match code {
            Some(c) => Exc(u64::from(vector) | 1 << 8 | u64::from(c) << 32),
            None => Exc(u64::from(vector)),
        }
    }

    /// The vector.
    #[inline]
    pub fn vector(self) -> u8 {
        self.0 as u8
    }

    /// The error code, if the exception pushes one.
    #[inline]
    pub fn code(self) -> Option<u32> {
        (self.0 & 1 << 8 != 0).then_some((self.0 >> 32) as u32)
    }
}

impl std::fmt::Debug for Exc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exc")
            .field("vector", &self.vector())
            .field("code", &self.code())
            .finish()
    }
}

/// Result of a semantics step.
pub type Res<T> = Result<T, Fault>;

/// An exception without error code.
#[inline]
pub fn exc(vector: u8) -> Fault {
    Fault::Exception(Exc::new(vector, None))
}

/// An exception with an error code.
#[inline]
pub fn exc_code(vector: u8, code: u32) -> Fault {
    Fault::Exception(Exc::new(vector, Some(code)))
}

/// #UD.
#[inline]
pub fn ud() -> Fault {
    exc(vec::UD)
}

/// #GP(code).
#[inline]
pub fn gp(code: u32) -> Fault {
    exc_code(vec::GP, code)
}

/// #SS(code).
#[inline]
pub fn ss(code: u32) -> Fault {
    exc_code(vec::SS, code)
}

/// #NP(code).
#[inline]
pub fn np(code: u32) -> Fault {
    exc_code(vec::NP, code)
}

/// #TS(code).
#[inline]
pub fn ts(code: u32) -> Fault {
    exc_code(vec::TS, code)
}

/// #DE.
#[inline]
pub fn de() -> Fault {
    exc(vec::DE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exc_packs_vector_and_code() {
        let e = Exc::new(14, Some(0xdead_beef));
        assert_eq!((e.vector(), e.code()), (14, Some(0xdead_beef)));
        assert_eq!(Exc::new(6, None).code(), None);
        assert_eq!(Exc::new(8, Some(0)).code(), Some(0));
    }

    #[test]
    fn results_fit_in_two_registers() {
        assert!(std::mem::size_of::<Res<()>>() <= 16);
    }
}

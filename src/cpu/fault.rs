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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A guest exception with its error code, if the vector has one.
    Exception {
        /// The vector.
        vector: u8,
        /// The error code pushed on the handler's stack.
        code: Option<u32>,
    },
    /// HLT executed (RIP already past it).
    Halt,
    /// Triple fault / shutdown.
    Shutdown,
}

/// Result of a semantics step.
pub type Res<T> = Result<T, Fault>;

/// An exception without error code.
#[inline]
pub fn exc(vector: u8) -> Fault {
    Fault::Exception { vector, code: None }
}

/// An exception with an error code.
#[inline]
pub fn exc_code(vector: u8, code: u32) -> Fault {
    Fault::Exception {
        vector,
        code: Some(code),
    }
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

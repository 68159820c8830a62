//! RFLAGS with lazy arithmetic flags.
//!
//! The hot arithmetic instructions (ADD/ADC/SUB/SBB/CMP/AND/OR/XOR/TEST/INC/DEC/NEG) do not
//! compute CF/PF/AF/ZF/SF/OF: they record the operation, operand size, both operands and the
//! result; each flag is derived only when something reads it (a Jcc, PUSHF, an interrupt...).
//! Everything else writes flags eagerly through [`Flags::set_arith`].

/// Carry flag.
pub const CF: u64 = 1 << 0;
/// Parity flag.
pub const PF: u64 = 1 << 2;
/// Auxiliary carry flag.
pub const AF: u64 = 1 << 4;
/// Zero flag.
pub const ZF: u64 = 1 << 6;
/// Sign flag.
pub const SF: u64 = 1 << 7;
/// Trap flag.
pub const TF: u64 = 1 << 8;
/// Interrupt enable flag.
pub const IF: u64 = 1 << 9;
/// Direction flag.
pub const DF: u64 = 1 << 10;
/// Overflow flag.
pub const OF: u64 = 1 << 11;
/// I/O privilege level (2 bits).
pub const IOPL: u64 = 3 << 12;
/// Nested task.
pub const NT: u64 = 1 << 14;
/// Resume flag.
pub const RF: u64 = 1 << 16;
/// Virtual-8086 mode.
pub const VM: u64 = 1 << 17;
/// Alignment check.
pub const AC: u64 = 1 << 18;
/// Virtual interrupt flag.
pub const VIF: u64 = 1 << 19;
/// Virtual interrupt pending.
pub const VIP: u64 = 1 << 20;
/// CPUID available.
pub const ID: u64 = 1 << 21;
/// The six arithmetic status flags.
pub const ARITH: u64 = CF | PF | AF | ZF | SF | OF;
/// Bits software can change at all (the rest read as fixed values).
pub const WRITABLE: u64 = ARITH | TF | IF | DF | IOPL | NT | RF | VM | AC | VIF | VIP | ID;

/// Which operation produced the pending lazy flags (one byte: translated code stores it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FlagOp {
    /// Flags are materialised in `bits`.
    None = 0,
    /// `r = a + b (+ carry)`.
    Add = 1,
    /// `r = a - b (- borrow)`.
    Sub = 2,
    /// AND/OR/XOR/TEST: CF = OF = 0.
    Logic = 3,
    /// INC (CF kept in `bits`).
    Inc = 4,
    /// DEC (CF kept in `bits`).
    Dec = 5,
}

/// RFLAGS, with the arithmetic part possibly pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    bits: u64,
    op: FlagOp,
    size: u32,
    a: u64,
    b: u64,
    r: u64,
}

impl Default for Flags {
    fn default() -> Self {
        Flags {
            bits: 2,
            op: FlagOp::None,
            size: 8,
            a: 0,
            b: 0,
            r: 0,
        }
    }
}

/// Byte offsets of the [`Flags`] fields, for translated code that records lazy flags itself
/// (`cpu::jit`): `op` is one byte, `size` four, the rest eight.
pub(crate) mod layout {
    use super::Flags;
    pub const BITS: usize = std::mem::offset_of!(Flags, bits);
    pub const OP: usize = std::mem::offset_of!(Flags, op);
    pub const SIZE: usize = std::mem::offset_of!(Flags, size);
    pub const A: usize = std::mem::offset_of!(Flags, a);
    pub const B: usize = std::mem::offset_of!(Flags, b);
    pub const R: usize = std::mem::offset_of!(Flags, r);
}

/// All-ones mask for an operand of `bits` bits.
#[inline]
pub fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

#[inline]
fn parity(v: u64) -> bool {
    (v as u8).count_ones().is_multiple_of(2)
}

impl Flags {
    /// Record an arithmetic result; `bits` is the operand size (8, 16, 32, 64).
    #[inline]
    pub fn set_lazy(&mut self, op: FlagOp, bits: u32, a: u64, b: u64, r: u64) {
        if matches!(op, FlagOp::Inc | FlagOp::Dec) {
            self.fold_cf();
        }
        self.op = op;
        self.size = bits.clamp(8, 64);
        self.a = a;
        self.b = b;
        self.r = r;
    }

    /// Make the bits' CF current (INC and DEC keep CF while the rest turns lazy).
    #[inline]
    pub(crate) fn fold_cf(&mut self) {
        let cf = self.cf();
        self.bits = (self.bits & !CF) | u64::from(cf);
    }

    #[inline]
    fn msb(&self, v: u64) -> bool {
        (v >> (self.size - 1)) & 1 != 0
    }

    /// Carry flag.
    #[inline]
    pub fn cf(&self) -> bool {
        let (a, b, r) = (self.a, self.b, self.r);
        match self.op {
            FlagOp::None | FlagOp::Inc | FlagOp::Dec => self.bits & CF != 0,
            FlagOp::Add => self.msb((a & b) | ((a | b) & !r)),
            FlagOp::Sub => self.msb((!a & b) | (!(a ^ b) & r)),
            FlagOp::Logic => false,
        }
    }

    /// Zero flag.
    #[inline]
    pub fn zf(&self) -> bool {
        match self.op {
            FlagOp::None => self.bits & ZF != 0,
            _ => self.r & mask(self.size) == 0,
        }
    }

    /// Sign flag.
    #[inline]
    pub fn sf(&self) -> bool {
        match self.op {
            FlagOp::None => self.bits & SF != 0,
            _ => self.msb(self.r),
        }
    }

    /// Overflow flag.
    #[inline]
    pub fn of(&self) -> bool {
        let (a, b, r) = (self.a, self.b, self.r);
        match self.op {
            FlagOp::None => self.bits & OF != 0,
            FlagOp::Add | FlagOp::Inc => self.msb((a ^ r) & (b ^ r)),
            FlagOp::Sub | FlagOp::Dec => self.msb((a ^ b) & (a ^ r)),
            FlagOp::Logic => false,
        }
    }

    /// Parity flag (of the low result byte).
    #[inline]
    pub fn pf(&self) -> bool {
        match self.op {
            FlagOp::None => self.bits & PF != 0,
            _ => parity(self.r),
        }
    }

    /// Auxiliary carry flag.
    #[inline]
    pub fn af(&self) -> bool {
        match self.op {
            FlagOp::None => self.bits & AF != 0,
            FlagOp::Logic => false,
            _ => (self.a ^ self.b ^ self.r) & 0x10 != 0,
        }
    }

    /// The full RFLAGS value.
    pub fn get(&self) -> u64 {
        if self.op == FlagOp::None {
            return self.bits;
        }
        let mut v = self.bits & !ARITH;
        v |= u64::from(self.cf()) * CF;
        v |= u64::from(self.pf()) * PF;
        v |= u64::from(self.af()) * AF;
        v |= u64::from(self.zf()) * ZF;
        v |= u64::from(self.sf()) * SF;
        v |= u64::from(self.of()) * OF;
        v
    }

    /// Replace RFLAGS (bit 1 forced to 1, reserved bits to 0).
    pub fn set(&mut self, v: u64) {
        self.bits = (v & WRITABLE) | 2;
        self.op = FlagOp::None;
    }

    /// Set the flags in `which` to the corresponding bits of `values`, others unchanged.
    #[inline]
    pub fn set_arith(&mut self, which: u64, values: u64) {
        if which == ARITH {
            // Every arithmetic flag is replaced: nothing pending needs computing (the
            // non-arithmetic bits are always current in `bits`).
            self.bits = (self.bits & !ARITH) | (values & ARITH);
            self.op = FlagOp::None;
            return;
        }
        let cur = self.get();
        self.bits = (cur & !which) | (values & which);
        self.op = FlagOp::None;
    }

    /// Set one flag.
    #[inline]
    pub fn set_flag(&mut self, flag: u64, on: bool) {
        self.set_arith(flag, if on { flag } else { 0 });
    }

    /// A non-arithmetic flag (IF, DF, TF, ...), never pending.
    #[inline]
    pub fn sys(&self, flag: u64) -> bool {
        self.bits & flag != 0
    }

    /// Set a non-arithmetic flag without touching pending arithmetic flags.
    #[inline]
    pub fn set_sys(&mut self, flag: u64, on: bool) {
        debug_assert!(flag & ARITH == 0);
        if on {
            self.bits |= flag;
        } else {
            self.bits &= !flag;
        }
    }

    /// Evaluate condition code `cc` (0..15, the x86 encoding order: O, NO, B, AE, E, NE, BE,
    /// A, S, NS, P, NP, L, GE, LE, G).
    #[inline(always)]
    pub fn cond(&self, cc: u8) -> bool {
        let v = match cc >> 1 {
            0 => self.of(),
            1 => self.cf(),
            2 => self.zf(),
            3 => self.cf() || self.zf(),
            4 => self.sf(),
            5 => self.pf(),
            6 => self.sf() != self.of(),
            _ => self.zf() || (self.sf() != self.of()),
        };
        v != (cc & 1 != 0)
    }

    /// Flags for a result with SF/ZF/PF from `r` (size `bits`), as shifts and multiplies do.
    pub fn szp(bits: u32, r: u64) -> u64 {
        let bits = bits.clamp(8, 64);
        let r = r & mask(bits);
        let mut v = 0;
        if r == 0 {
            v |= ZF;
        }
        if (r >> (bits - 1)) & 1 != 0 {
            v |= SF;
        }
        if parity(r) {
            v |= PF;
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_and_sub_flags() {
        let mut f = Flags::default();
        f.set_lazy(FlagOp::Add, 8, 0xff, 1, 0x100);
        assert_eq!(f.get() & ARITH, CF | ZF | PF | AF);
        f.set_lazy(FlagOp::Add, 8, 0x7f, 1, 0x80);
        assert_eq!(f.get() & ARITH, SF | OF | AF);
        f.set_lazy(FlagOp::Sub, 32, 0, 1, 0xffff_ffff);
        assert_eq!(f.get() & ARITH, CF | SF | PF | AF);
        f.set_lazy(FlagOp::Inc, 16, 0xffff, 1, 0);
        assert!(f.cf(), "INC keeps CF");
        assert!(f.zf());
    }

    #[test]
    fn conditions() {
        let mut f = Flags::default();
        f.set_lazy(FlagOp::Sub, 64, 1, 2, 1u64.wrapping_sub(2));
        assert!(f.cond(0x2)); // B
        assert!(f.cond(0xc)); // L
        assert!(!f.cond(0x4)); // E
        assert!(f.cond(0x5)); // NE
    }
}

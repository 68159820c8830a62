//! A small x86-64 encoder for the handful of instruction shapes the translator emits.
//!
//! Why our own and not iced-x86's `CodeAssembler`: the translator runs while the guest waits,
//! thousands of times per second during a kernel boot, and every shape it needs is a register,
//! a `[base + disp]` operand or an immediate. Encoding those straight into a byte vector is a
//! few lines each and costs nanoseconds; the tests decode what this writes with iced-x86, so
//! the two agree on every shape.
//!
//! Data enters as method calls ([`Asm::load`], [`Asm::alu_rr`], [`Asm::jcc`]...) and leaves as
//! the bytes of [`Asm::finish`], position-independent (calls go through a register, jumps to
//! [`Label`]s are relative).

/// A host general register, numbered as the hardware encodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum R {
    Rax = 0,
    Rcx = 1,
    Rdx = 2,
    Rbx = 3,
    Rsi = 6,
    Rdi = 7,
}

/// `[base + disp]`.
#[derive(Debug, Clone, Copy)]
pub struct M {
    pub base: R,
    pub disp: i32,
}

/// An ALU operation, by the `/digit` of its `81 /n` encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Alu {
    Add = 0,
    Or = 1,
    And = 4,
    Sub = 5,
    Xor = 6,
    Cmp = 7,
}

impl Alu {
    /// The `op r/m, r` opcode (01, 09, 21, 29, 31, 39).
    fn mr(self) -> u8 {
        (self as u8) << 3 | 1
    }
    /// The `op r, r/m` opcode.
    fn rm(self) -> u8 {
        (self as u8) << 3 | 3
    }
}

/// A shift, by the `/digit` of its `C1 /n` encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Shift {
    Shl = 4,
    Shr = 5,
    Sar = 7,
}

/// A jump target inside the code being assembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label(usize);

/// Operand width: 32-bit forms zero-extend into the full register, as the hardware does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum W {
    D,
    Q,
}

/// The source width of a MOVZX/MOVSX.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ext {
    B,
    W,
    D,
}

/// The assembler: a byte buffer, label positions and the rel32 fields still to patch.
#[derive(Default)]
pub struct Asm {
    buf: Vec<u8>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, Label)>,
}

enum Rm {
    Reg(u8),
    Mem(M),
}

impl Asm {
    /// An empty buffer.
    pub fn new() -> Self {
        Asm::default()
    }

    /// A new, unplaced label.
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Place `l` here.
    pub fn bind(&mut self, l: Label) {
        self.labels[l.0] = Some(self.buf.len());
    }

    /// The finished code, every jump resolved; `None` if a used label was never placed.
    pub fn finish(mut self) -> Option<Vec<u8>> {
        for (at, l) in std::mem::take(&mut self.fixups) {
            let target = self.labels[l.0]?;
            let rel = target as i64 - (at as i64 + 4);
            self.buf[at..at + 4].copy_from_slice(&(rel as i32).to_le_bytes());
        }
        Some(self.buf)
    }

    fn byte(&mut self, b: u8) {
        self.buf.push(b);
    }

    fn imm32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// REX prefix (if needed), opcode bytes, ModRM (+SIB, displacement).
    fn op(&mut self, w: bool, opcode: &[u8], reg: u8, rm: Rm) {
        let (b, x) = match rm {
            Rm::Reg(r) => (r >> 3, 0),
            Rm::Mem(m) => ((m.base as u8) >> 3, 0),
        };
        let rex = 0x40 | u8::from(w) << 3 | (reg >> 3 & 1) << 2 | x << 1 | (b & 1);
        if rex != 0x40 {
            self.byte(rex);
        }
        self.buf.extend_from_slice(opcode);
        match rm {
            Rm::Reg(r) => self.byte(0xc0 | (reg & 7) << 3 | (r & 7)),
            Rm::Mem(m) => {
                let base = m.base as u8 & 7;
                let short = i8::try_from(m.disp).is_ok();
                // Bases are never RSP or R12 (which would need a SIB byte): `R` has neither.
                self.byte(if short { 0x40 } else { 0x80 } | (reg & 7) << 3 | base);
                if short {
                    self.byte(m.disp as u8);
                } else {
                    self.imm32(m.disp);
                }
            }
        }
    }

    /// `mov dst, [m]` (32-bit: zero-extending).
    pub fn load(&mut self, w: W, dst: R, m: M) {
        self.op(w == W::Q, &[0x8b], dst as u8, Rm::Mem(m));
    }

    /// `mov [m], src` (8-byte store for `W::Q`, 4-byte for `W::D`).
    pub fn store(&mut self, w: W, m: M, src: R) {
        self.op(w == W::Q, &[0x89], src as u8, Rm::Mem(m));
    }

    /// The opcode bytes of a zero or sign extension from `from` (MOVSXD for a dword).
    fn ext_opcode(from: Ext, signed: bool) -> &'static [u8] {
        match (from, signed) {
            (Ext::B, false) => &[0x0f, 0xb6],
            (Ext::W, false) => &[0x0f, 0xb7],
            (Ext::B, true) => &[0x0f, 0xbe],
            (Ext::W, true) => &[0x0f, 0xbf],
            (Ext::D, _) => &[0x63],
        }
    }

    /// `movzx/movsx/movsxd dst, [m]` into a `w`-wide register.
    pub fn extend_m(&mut self, from: Ext, signed: bool, w: W, dst: R, m: M) {
        self.op(
            w == W::Q,
            Asm::ext_opcode(from, signed),
            dst as u8,
            Rm::Mem(m),
        );
    }

    /// `movzx/movsx/movsxd dst, src` (the low byte, word or dword of `src`, which must be
    /// RAX, RCX, RDX or RBX for a byte).
    pub fn extend_r(&mut self, from: Ext, signed: bool, w: W, dst: R, src: R) {
        self.op(
            w == W::Q,
            Asm::ext_opcode(from, signed),
            dst as u8,
            Rm::Reg(src as u8),
        );
    }

    /// `mov dst, src`.
    pub fn mov_rr(&mut self, w: W, dst: R, src: R) {
        self.op(w == W::Q, &[0x89], src as u8, Rm::Reg(dst as u8));
    }

    /// `mov dst, imm` in the shortest form that yields the 64-bit value `v`.
    pub fn mov_imm(&mut self, dst: R, v: u64) {
        if let Ok(v32) = u32::try_from(v) {
            // mov r32, imm32 zero-extends.
            self.byte(0xb8 + dst as u8);
            self.imm32(v32 as i32);
        } else if let Ok(s) = i32::try_from(v as i64) {
            self.op(true, &[0xc7], 0, Rm::Reg(dst as u8));
            self.imm32(s);
        } else {
            self.byte(0x48);
            self.byte(0xb8 + dst as u8);
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// Store the 64-bit value `v` at `[m]`, through `scratch` when it does not fit a
    /// sign-extended imm32.
    pub fn store_imm64(&mut self, m: M, v: u64, scratch: R) {
        if let Ok(s) = i32::try_from(v as i64) {
            self.op(true, &[0xc7], 0, Rm::Mem(m));
            self.imm32(s);
        } else {
            self.mov_imm(scratch, v);
            self.store(W::Q, m, scratch);
        }
    }

    /// `mov dword [m], v`.
    pub fn store_imm32(&mut self, m: M, v: u32) {
        self.op(false, &[0xc7], 0, Rm::Mem(m));
        self.imm32(v as i32);
    }

    /// `mov byte [m], v`.
    pub fn store_imm8(&mut self, m: M, v: u8) {
        self.op(false, &[0xc6], 0, Rm::Mem(m));
        self.byte(v);
    }

    /// `op dst, src`.
    pub fn alu_rr(&mut self, op: Alu, w: W, dst: R, src: R) {
        self.op(w == W::Q, &[op.mr()], src as u8, Rm::Reg(dst as u8));
    }

    /// `op dst, [m]`.
    pub fn alu_rm(&mut self, op: Alu, w: W, dst: R, m: M) {
        self.op(w == W::Q, &[op.rm()], dst as u8, Rm::Mem(m));
    }

    /// `op [m], src`.
    pub fn alu_mr(&mut self, op: Alu, w: W, m: M, src: R) {
        self.op(w == W::Q, &[op.mr()], src as u8, Rm::Mem(m));
    }

    /// `op qword/dword [m], imm8` (sign-extended).
    pub fn alu_mi8(&mut self, op: Alu, w: W, m: M, v: i8) {
        self.op(w == W::Q, &[0x83], op as u8, Rm::Mem(m));
        self.byte(v as u8);
    }

    /// `cmp byte [m], v`.
    pub fn cmp_m8(&mut self, m: M, v: u8) {
        self.op(false, &[0x80], Alu::Cmp as u8, Rm::Mem(m));
        self.byte(v);
    }

    /// `imul dst, src`.
    pub fn imul(&mut self, dst: R, src: R) {
        self.imul_w(W::Q, dst, src);
    }

    /// `imul dst, src` at width `w`.
    pub fn imul_w(&mut self, w: W, dst: R, src: R) {
        self.op(w == W::Q, &[0x0f, 0xaf], dst as u8, Rm::Reg(src as u8));
    }

    /// `test a, b`.
    pub fn test_rr(&mut self, w: W, a: R, b: R) {
        self.op(w == W::Q, &[0x85], b as u8, Rm::Reg(a as u8));
    }

    /// `inc r` (`dec r` when `dec`).
    pub fn incdec(&mut self, w: W, r: R, dec: bool) {
        self.op(w == W::Q, &[0xff], u8::from(dec), Rm::Reg(r as u8));
    }

    /// `shl r, n`.
    pub fn shl(&mut self, r: R, n: u8) {
        self.shift(Shift::Shl, W::Q, r, n);
    }

    /// `shr r, n`.
    pub fn shr(&mut self, r: R, n: u8) {
        self.shift(Shift::Shr, W::Q, r, n);
    }

    /// `sar r, n`.
    pub fn sar(&mut self, r: R, n: u8) {
        self.shift(Shift::Sar, W::Q, r, n);
    }

    /// `shl/shr/sar r, n` at width `w`.
    pub fn shift(&mut self, k: Shift, w: W, r: R, n: u8) {
        self.op(w == W::Q, &[0xc1], k as u8, Rm::Reg(r as u8));
        self.byte(n);
    }

    /// `cmovcc dst, src` for condition `cc`.
    pub fn cmov(&mut self, cc: u8, w: W, dst: R, src: R) {
        self.op(
            w == W::Q,
            &[0x0f, 0x40 | (cc & 15)],
            dst as u8,
            Rm::Reg(src as u8),
        );
    }

    /// `mov byte [m], src` (the low byte of RAX, RCX, RDX or RBX).
    pub fn store8(&mut self, m: M, src: R) {
        self.op(false, &[0x88], src as u8, Rm::Mem(m));
    }

    /// `pushfq`.
    pub fn pushf(&mut self) {
        self.byte(0x9c);
    }

    /// `popfq`.
    pub fn popf(&mut self) {
        self.byte(0x9d);
    }

    /// `op r, imm32` (sign-extended for `W::Q`).
    pub fn alu_ri(&mut self, op: Alu, w: W, r: R, v: i32) {
        self.op(w == W::Q, &[0x81], op as u8, Rm::Reg(r as u8));
        self.imm32(v);
    }

    /// `setcc r8` for condition `cc` (x86 encoding order); `r` must be AL, CL, DL or BL.
    pub fn setcc(&mut self, cc: u8, r: R) {
        self.op(false, &[0x0f, 0x90 | (cc & 15)], 0, Rm::Reg(r as u8));
    }

    /// `movzx r32, r8` of the low byte of `r` (AL, CL, DL or BL).
    pub fn movzx8(&mut self, r: R) {
        self.op(false, &[0x0f, 0xb6], r as u8, Rm::Reg(r as u8));
    }

    /// `jcc l` (rel32).
    pub fn jcc(&mut self, cc: u8, l: Label) {
        self.byte(0x0f);
        self.byte(0x80 | (cc & 15));
        self.fixups.push((self.buf.len(), l));
        self.imm32(0);
    }

    /// `jmp l` (rel32).
    pub fn jmp(&mut self, l: Label) {
        self.byte(0xe9);
        self.fixups.push((self.buf.len(), l));
        self.imm32(0);
    }

    /// `jmp qword [m]`.
    pub fn jmp_m(&mut self, m: M) {
        self.op(false, &[0xff], 4, Rm::Mem(m));
    }

    /// Bytes emitted so far.
    pub fn pos(&self) -> usize {
        self.buf.len()
    }

    /// `call r`.
    pub fn call(&mut self, r: R) {
        self.op(false, &[0xff], 2, Rm::Reg(r as u8));
    }

    /// `push r`.
    pub fn push(&mut self, r: R) {
        self.byte(0x50 + r as u8);
    }

    /// `pop r`.
    pub fn pop(&mut self, r: R) {
        self.byte(0x58 + r as u8);
    }

    /// `ret`.
    pub fn ret(&mut self) {
        self.byte(0xc3);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};

    fn text(code: &[u8]) -> Vec<String> {
        let mut d = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
        let mut f = IntelFormatter::new();
        let mut out = Vec::new();
        for i in &mut d {
            assert!(!i.is_invalid(), "invalid encoding in {code:02x?}");
            let mut s = String::new();
            f.format(&i, &mut s);
            out.push(s);
        }
        out
    }

    #[test]
    fn shapes_decode_as_intended() {
        let mut a = Asm::new();
        let m = M {
            base: R::Rbx,
            disp: 0x120,
        };
        let near = M {
            base: R::Rbx,
            disp: -8,
        };
        let si = M {
            base: R::Rsi,
            disp: 8,
        };
        a.load(W::Q, R::Rax, m);
        a.load(W::D, R::Rcx, near);
        a.store(W::Q, m, R::Rdx);
        a.store(W::D, si, R::Rax);
        a.mov_rr(W::Q, R::Rdi, R::Rbx);
        a.mov_imm(R::Rax, 0x1234);
        a.mov_imm(R::Rcx, 0xffff_ffff_8100_0000);
        a.mov_imm(R::Rdx, 0x1234_5678_9abc);
        a.store_imm64(m, 0xffff_ffff_ffff_fffe, R::Rax);
        a.store_imm64(m, 0x1_0000_0000, R::Rax);
        a.store_imm32(m, 64);
        a.store_imm8(near, 5);
        a.alu_rr(Alu::Sub, W::Q, R::Rdx, R::Rcx);
        a.alu_rr(Alu::Xor, W::D, R::Rax, R::Rdx);
        a.alu_rm(Alu::Cmp, W::D, R::Rax, m);
        a.alu_mr(Alu::Or, W::Q, m, R::Rcx);
        a.alu_mi8(Alu::And, W::Q, m, -2);
        a.test_rr(W::Q, R::Rax, R::Rax);
        a.imul(R::Rdx, R::Rcx);
        a.imul_w(W::D, R::Rax, R::Rdx);
        a.shift(Shift::Sar, W::D, R::Rdx, 3);
        a.pushf();
        a.popf();
        a.cmov(0xf, W::D, R::Rax, R::Rcx);
        a.cmov(2, W::Q, R::Rdx, R::Rsi);
        a.store8(near, R::Rcx);
        a.cmp_m8(
            M {
                base: R::Rax,
                disp: 0,
            },
            0,
        );
        a.incdec(W::D, R::Rdx, true);
        a.incdec(W::Q, R::Rdx, false);
        a.shl(R::Rcx, 3);
        a.shr(R::Rdx, 12);
        a.sar(R::Rcx, 16);
        a.alu_ri(Alu::And, W::D, R::Rdx, 0xff);
        a.alu_ri(Alu::And, W::Q, R::Rcx, -4096);
        a.alu_ri(Alu::Cmp, W::D, R::Rcx, 0xff8);
        a.setcc(2, R::Rcx);
        a.movzx8(R::Rcx);
        a.extend_r(Ext::B, false, W::D, R::Rax, R::Rax);
        a.extend_r(Ext::W, true, W::Q, R::Rax, R::Rcx);
        a.extend_r(Ext::D, true, W::Q, R::Rdx, R::Rdx);
        a.extend_m(Ext::B, true, W::D, R::Rax, m);
        a.extend_m(Ext::W, false, W::D, R::Rcx, near);
        a.call(R::Rax);
        a.jmp_m(m);
        a.push(R::Rbx);
        a.pop(R::Rbx);
        a.ret();
        let code = a.finish().unwrap();
        let want = [
            "mov rax,[rbx+120h]",
            "mov ecx,[rbx-8]",
            "mov [rbx+120h],rdx",
            "mov [rsi+8],eax",
            "mov rdi,rbx",
            "mov eax,1234h",
            "mov rcx,0FFFFFFFF81000000h",
            "mov rdx,123456789ABCh",
            "mov qword ptr [rbx+120h],0FFFFFFFFFFFFFFFEh",
            "mov rax,100000000h",
            "mov [rbx+120h],rax",
            "mov dword ptr [rbx+120h],40h",
            "mov byte ptr [rbx-8],5",
            "sub rdx,rcx",
            "xor eax,edx",
            "cmp eax,[rbx+120h]",
            "or [rbx+120h],rcx",
            "and qword ptr [rbx+120h],0FFFFFFFFFFFFFFFEh",
            "test rax,rax",
            "imul rdx,rcx",
            "imul eax,edx",
            "sar edx,3",
            "pushfq",
            "popfq",
            "cmovg eax,ecx",
            "cmovb rdx,rsi",
            "mov [rbx-8],cl",
            "cmp byte ptr [rax],0",
            "dec edx",
            "inc rdx",
            "shl rcx,3",
            "shr rdx,0Ch",
            "sar rcx,10h",
            "and edx,0FFh",
            "and rcx,0FFFFFFFFFFFFF000h",
            "cmp ecx,0FF8h",
            "setb cl",
            "movzx ecx,cl",
            "movzx eax,al",
            "movsx rax,cx",
            "movsxd rdx,edx",
            "movsx eax,byte ptr [rbx+120h]",
            "movzx ecx,word ptr [rbx-8]",
            "call rax",
            "jmp qword ptr [rbx+120h]",
            "push rbx",
            "pop rbx",
            "ret",
        ];
        assert_eq!(text(&code), want);
    }

    #[test]
    fn jumps_resolve_to_their_labels() {
        let mut a = Asm::new();
        let fwd = a.label();
        let back = a.label();
        a.bind(back);
        a.jcc(5, fwd);
        a.jmp(back);
        a.bind(fwd);
        a.ret();
        let code = a.finish().unwrap();
        assert_eq!(text(&code), ["jne 000000000000000Bh", "jmp 0", "ret"]);
    }

    #[test]
    fn an_unplaced_label_is_refused() {
        let mut a = Asm::new();
        let l = a.label();
        a.jmp(l);
        assert!(a.finish().is_none());
    }
}

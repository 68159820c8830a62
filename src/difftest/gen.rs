//! A seeded, reproducible generator of random integer-instruction blocks for the differential
//! checker.
//!
//! Data enters as a seed; it leaves as a [`Block`]: the encoded bytes (assembled with iced-x86's
//! `CodeAssembler` at the code address), the instruction list, and the RFLAGS mask of the
//! arithmetic flags that are architecturally defined at the end of the block.
//!
//! Instruction forms are taken from iced-x86's `Code` table by name (`Add_rm32_imm8` →
//! mnemonic `Add`, operands `rm32`, `imm8`) for a fixed list of integer mnemonics; forms whose
//! operands we do not model (accumulator-only, moffs, segment registers...) are skipped.
//! Register operands never name RSP or R15 (R15 holds the data-page base, RSP the stack);
//! memory operands are `[r15 + disp]` inside the data page, so every access lands in RAM both
//! sides see. PUSH/POP use the stack page after it (RSP starts mid-page; a 50-instruction
//! block cannot leave the page).
//!
//! Undefined flags: the generator tracks, per arithmetic flag, whether the last writer left it
//! undefined (from iced-x86's `rflags_undefined`, widened for shifts, see [`shift_extra_undef`]).
//! Before an instruction that *reads* an undefined flag (ADC, CMOVcc, LAHF, RCL...) it inserts a
//! `cmp r, r` that defines all six; the final mask keeps only flags defined at the end.

use iced_x86::code_asm::CodeAssembler;
use iced_x86::{
    Code, Encoder, IcedError, Instruction, MemoryOperand, Mnemonic, OpKind, Register, RflagsBits,
};

/// Forms left out because the architecture leaves their result undefined or they do not exist
/// in 64-bit mode (not CPU bugs).
pub const ARCH_EXCLUDED: &[(&str, &str)] = &[
    (
        "Shld_rm16_r16_CL",
        "16-bit SHLD by CL: result undefined when the count is above 16",
    ),
    (
        "Shrd_rm16_r16_CL",
        "16-bit SHRD by CL: result undefined when the count is above 16",
    ),
    ("Bswap_r16", "BSWAP with a 16-bit operand is undefined"),
    ("Movsxd_r16_rm16", "odd MOVSXD form, not used by compilers"),
    ("Movsxd_r32_rm32", "odd MOVSXD form, not used by compilers"),
    // BSF/BSR with a zero source leave the destination architecturally undefined. AMD (this
    // host) and tcg keep it unchanged, and so does Intel for 16/64-bit operands, so those forms
    // stay in; for 32-bit operands Intel clears bits 63:32, so they are out to keep the test
    // host-independent.
    (
        "Bsf_r32_rm32",
        "zero source: AMD keeps bits 63:32 of the destination, Intel clears them",
    ),
    (
        "Bsr_r32_rm32",
        "zero source: AMD keeps bits 63:32 of the destination, Intel clears them",
    ),
];

/// Forms skipped because our software CPU gets them wrong: the CPU's to-do list. Each entry
/// names the iced-x86 `Code` and the bug (with the seed that found it). A name ending in
/// `:reg` skips only the instances whose first operand is a register (the memory form stays).
pub const CPU_BUGS: &[(&str, &str)] = &[
    // Vendor difference rather than a plain bug (found with seed 0x6b656d75, block 35:
    // `cmpxchg r13d, r12d`): on a failed compare with a 32-bit register destination the AMD
    // host leaves bits 63:32 of the destination alone, tcg zero-extends the written-back value
    // (what Intel documents). Decide which CPU tcg models, then drop this entry.
    (
        "Cmpxchg_rm32_r32:reg",
        "failed compare: upper half of a 32-bit register destination (AMD keeps, tcg clears)",
    ),
];

/// The six arithmetic flags, as iced-x86 `RflagsBits`.
const SIX: u32 = RflagsBits::OF
    | RflagsBits::SF
    | RflagsBits::ZF
    | RflagsBits::AF
    | RflagsBits::CF
    | RflagsBits::PF;

/// Mnemonics (as spelled at the start of iced-x86 `Code` names) the generator uses.
const MNEMONICS: &[&str] = &[
    "Add", "Adc", "Sub", "Sbb", "And", "Or", "Xor", "Cmp", "Test", "Inc", "Dec", "Neg", "Not",
    "Shl", "Shr", "Sar", "Rol", "Ror", "Rcl", "Rcr", "Shld", "Shrd", "Mul", "Imul", "Mov", "Movzx",
    "Movsx", "Movsxd", "Lea", "Xchg", "Bswap", "Xadd", "Cmpxchg", "Bt", "Bts", "Btr", "Btc", "Bsf",
    "Bsr", "Div", "Idiv", "Cbw", "Cwde", "Cdqe", "Cwd", "Cdq", "Cqo", "Lahf", "Sahf", "Push",
    "Pop",
];

const CONDITIONS: &[&str] = &[
    "o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g",
];

/// Size of the data page the memory operands point into.
pub const DATA_SIZE: u64 = 4096;

/// A small splitmix64 PRNG: reproducible across hosts, no crate needed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A value in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// A random register value biased towards interesting corner values.
    pub fn value(&mut self) -> u64 {
        match self.below(8) {
            0 => [0, 1, u64::MAX, 0x8000_0000_0000_0000, 0x7fff_ffff_ffff_ffff]
                [self.below(5) as usize],
            1 => {
                [0x80, 0x7f, 0xff, 0x8000, 0xffff, 0x8000_0000, 0xffff_ffff][self.below(7) as usize]
            }
            2 => self.below(64),
            _ => self.next_u64(),
        }
    }
}

/// One operand slot of an instruction form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// Register or memory of this many bits.
    Rm(u32),
    /// Register of this many bits.
    R(u32),
    /// Immediate of this many bits.
    Imm(u32),
    /// The CL register (shift count).
    Cl,
    /// The implicit constant 1 of `D0`/`D1` shifts.
    One,
    /// An address for LEA (never accessed).
    Addr,
}

/// One instruction form the generator can produce.
#[derive(Debug, Clone)]
struct Form {
    code: Code,
    mnemonic: String,
    ops: Vec<Op>,
}

fn parse_op(tok: &str) -> Option<Op> {
    let bits = |s: &str| match s {
        "8" => Some(8),
        "16" => Some(16),
        "32" => Some(32),
        "64" => Some(64),
        _ => None,
    };
    if let Some(b) = tok.strip_prefix("rm") {
        return bits(b).map(Op::Rm);
    }
    if let Some(b) = tok.strip_prefix("imm") {
        return bits(b).map(Op::Imm);
    }
    if let Some(b) = tok.strip_prefix('r') {
        return bits(b).map(Op::R);
    }
    match tok {
        "CL" => Some(Op::Cl),
        "1" => Some(Op::One),
        "m" => Some(Op::Addr),
        _ => None,
    }
}

fn known_mnemonic(m: &str) -> bool {
    if MNEMONICS.contains(&m) {
        return true;
    }
    ["Cmov", "Set"].iter().any(|p| {
        m.strip_prefix(p)
            .is_some_and(|cc| CONDITIONS.contains(&cc.to_lowercase().as_str()))
    })
}

/// True if the register-destination instances of `code` are on the `:reg` exclusion list.
fn reg_form_excluded(code: Code) -> bool {
    let name = format!("{code:?}:reg");
    CPU_BUGS.iter().any(|(n, _)| *n == name)
}

fn excluded(name: &str) -> bool {
    ARCH_EXCLUDED
        .iter()
        .chain(CPU_BUGS.iter())
        .any(|(n, _)| *n == name)
}

/// Every form the generator may emit (deterministic order).
fn forms() -> Vec<Form> {
    let mut out = Vec::new();
    for code in Code::values() {
        let name = format!("{code:?}");
        let mut parts = name.split('_');
        let Some(mnemonic) = parts.next() else {
            continue;
        };
        if !known_mnemonic(mnemonic) || excluded(&name) {
            continue;
        }
        let ops: Option<Vec<Op>> = parts.map(parse_op).collect();
        let Some(ops) = ops else { continue };
        // Xchg/Cmpxchg/Xadd and friends all have rm-first forms; `r_rm` duplicates are fine.
        let form = Form {
            code,
            mnemonic: mnemonic.to_string(),
            ops,
        };
        // Keep only forms that encode in 64-bit mode (drops e.g. `Inc_r32`, 0x40+r).
        let mut rng = Rng::new(1);
        let ok = (0..8).any(|_| {
            build(&form, &mut rng, true)
                .is_some_and(|i| Encoder::new(64).encode(&i, 0x1000).is_ok())
        });
        if ok {
            out.push(form);
        }
    }
    out
}

const R8: &[Register] = &[
    Register::AL,
    Register::CL,
    Register::DL,
    Register::BL,
    Register::AH,
    Register::CH,
    Register::DH,
    Register::BH,
    Register::BPL,
    Register::SIL,
    Register::DIL,
    Register::R8L,
    Register::R9L,
    Register::R10L,
    Register::R11L,
    Register::R12L,
    Register::R13L,
    Register::R14L,
];

/// The 64-bit registers random writes may touch (not RSP, not R15).
const R64: &[Register] = &[
    Register::RAX,
    Register::RCX,
    Register::RDX,
    Register::RBX,
    Register::RBP,
    Register::RSI,
    Register::RDI,
    Register::R8,
    Register::R9,
    Register::R10,
    Register::R11,
    Register::R12,
    Register::R13,
    Register::R14,
];

fn reg(rng: &mut Rng, bits: u32) -> Register {
    if bits == 8 {
        return R8[rng.below(R8.len() as u64) as usize];
    }
    let r = R64[rng.below(R64.len() as u64) as usize];
    let n = r.number();
    match bits {
        16 => Register::AX + n as u32,
        32 => Register::EAX + n as u32,
        _ => r,
    }
}

/// Largest value an index register holds when used in a data operand (see [`INDEX_MASK`]).
const INDEX_MASK: u32 = 0x1ff;

/// `[r15 + disp]` or `[r15 + index*scale + disp]` with room for a `bits`-wide access inside
/// the data page. The block generator masks an index register to [`INDEX_MASK`] right before
/// the instruction (`and r32, 0x1ff`), so the address stays in the page.
fn data_mem(rng: &mut Rng, bits: u32) -> MemoryOperand {
    let bytes = u64::from(bits / 8);
    let (index, scale) = if rng.below(3) == 0 {
        let scale = 1u32 << rng.below(3);
        (R64[rng.below(R64.len() as u64) as usize], scale)
    } else {
        (Register::None, 1)
    };
    let reach = if index == Register::None {
        0
    } else {
        u64::from(INDEX_MASK * scale)
    };
    let disp = rng.below(DATA_SIZE - reach - bytes + 1) as i64;
    // iced-x86 spells a disp32 in 64-bit addressing as displacement size 8.
    let size = if disp < 128 { 1 } else { 8 };
    MemoryOperand::new(
        Register::R15,
        index,
        scale,
        disp,
        size,
        false,
        Register::None,
    )
}

/// An arbitrary address expression (LEA only, never accessed).
fn lea_mem(rng: &mut Rng) -> MemoryOperand {
    let all = [R64, &[Register::RSP, Register::R15]].concat();
    let base = all[rng.below(all.len() as u64) as usize];
    let index = if rng.below(3) == 0 {
        Register::None
    } else {
        R64[rng.below(R64.len() as u64) as usize]
    };
    let scale = 1 << rng.below(4);
    let disp = rng.next_u64() as i32 as i64;
    MemoryOperand::new(base, index, scale, disp, 8, false, Register::None)
}

fn is_shift(m: &str) -> bool {
    matches!(
        m,
        "Shl" | "Shr" | "Sar" | "Rol" | "Ror" | "Rcl" | "Rcr" | "Shld" | "Shrd"
    )
}

enum Val {
    Reg(Register),
    Mem(MemoryOperand),
    Imm(i64),
}

/// A random instance of `form`. `regs_only` forces register operands (probe encodes).
fn build(form: &Form, rng: &mut Rng, regs_only: bool) -> Option<Instruction> {
    let size = form
        .ops
        .iter()
        .find_map(|o| match o {
            Op::Rm(b) | Op::R(b) => Some(*b),
            _ => None,
        })
        .unwrap_or(64);
    // BT* r/m, r: a register bit offset can address far outside a memory operand.
    let bt_reg = form.mnemonic.starts_with("Bt") && form.ops.contains(&Op::R(size));
    let mut vals = Vec::new();
    for op in &form.ops {
        vals.push(match *op {
            Op::Rm(b) if !regs_only && !bt_reg && rng.below(2) == 0 => Val::Mem(data_mem(rng, b)),
            Op::Rm(b) | Op::R(b) => Val::Reg(reg(rng, b)),
            Op::Cl => Val::Reg(Register::CL),
            Op::One => Val::Imm(1),
            Op::Addr => Val::Mem(lea_mem(rng)),
            Op::Imm(b) if is_shift(&form.mnemonic) => {
                // Counts 1..size-1: no masked-to-0 count (flags untouched) and no count past
                // the operand size (undefined for 16-bit SHLD/SHRD, CF undefined for SHL...).
                Val::Imm(rng.range(1, u64::from(size) - 1) as i64 & ((1 << b) - 1))
            }
            Op::Imm(8) => Val::Imm(rng.next_u64() as i8 as i64),
            Op::Imm(16) => Val::Imm(rng.next_u64() as i16 as i64),
            Op::Imm(32) => Val::Imm(rng.next_u64() as i32 as i64),
            Op::Imm(_) => Val::Imm(rng.value() as i64),
        });
    }
    let c = form.code;
    let imm32 = |v: i64| v as i32;
    let r = match vals.as_slice() {
        [] => Ok(Instruction::with(c)),
        [Val::Reg(a)] => Instruction::with1(c, *a),
        [Val::Mem(a)] => Instruction::with1(c, *a),
        [Val::Reg(a), Val::Reg(b)] => Instruction::with2(c, *a, *b),
        [Val::Reg(a), Val::Mem(b)] => Instruction::with2(c, *a, *b),
        [Val::Mem(a), Val::Reg(b)] => Instruction::with2(c, *a, *b),
        [Val::Reg(a), Val::Imm(v)] if form.ops[1] == Op::Imm(64) => {
            Instruction::with2(c, *a, *v as u64)
        }
        [Val::Reg(a), Val::Imm(v)] => Instruction::with2(c, *a, imm32(*v)),
        [Val::Mem(a), Val::Imm(v)] => Instruction::with2(c, *a, imm32(*v)),
        [Val::Reg(a), Val::Reg(b), Val::Reg(d)] => Instruction::with3(c, *a, *b, *d),
        [Val::Mem(a), Val::Reg(b), Val::Reg(d)] => Instruction::with3(c, *a, *b, *d),
        [Val::Reg(a), Val::Reg(b), Val::Imm(v)] => Instruction::with3(c, *a, *b, imm32(*v)),
        [Val::Mem(a), Val::Reg(b), Val::Imm(v)] => Instruction::with3(c, *a, *b, imm32(*v)),
        [Val::Reg(a), Val::Mem(b), Val::Imm(v)] => Instruction::with3(c, *a, *b, imm32(*v)),
        _ => return None,
    };
    r.ok()
}

fn is_shift_mnemonic(m: Mnemonic) -> bool {
    matches!(
        m,
        Mnemonic::Shl
            | Mnemonic::Shr
            | Mnemonic::Sar
            | Mnemonic::Rol
            | Mnemonic::Ror
            | Mnemonic::Rcl
            | Mnemonic::Rcr
            | Mnemonic::Shld
            | Mnemonic::Shrd
    )
}

/// True for a shift/rotate whose count is CL (the count, maybe 0, is not visible here).
fn counts_by_cl(ins: &Instruction) -> bool {
    is_shift_mnemonic(ins.mnemonic())
        && (0..ins.op_count())
            .any(|i| ins.op_kind(i) == OpKind::Register && ins.op_register(i) == Register::CL)
}

/// Flags a shift/rotate leaves undefined beyond what iced-x86 reports (conservative: AF after
/// any shift, OF after any count but 1, everything after a CL count we cannot see).
fn shift_extra_undef(ins: &Instruction) -> u32 {
    if !is_shift_mnemonic(ins.mnemonic()) {
        return 0;
    }
    if counts_by_cl(ins) {
        return ins.rflags_modified() & SIX;
    }
    let count_one = (0..ins.op_count()).any(|i| match ins.op_kind(i) {
        OpKind::Immediate8 => ins.immediate8() == 1,
        _ => false,
    }) || matches!(format!("{:?}", ins.code()).rsplit('_').next(), Some("1"));
    let mut u = RflagsBits::AF;
    if !count_one {
        u |= RflagsBits::OF;
    }
    u & ins.rflags_modified()
}

/// iced-x86 `RflagsBits` → architectural RFLAGS bits.
pub fn to_rflags(bits: u32) -> u64 {
    let map = [
        (RflagsBits::CF, 1u64 << 0),
        (RflagsBits::PF, 1 << 2),
        (RflagsBits::AF, 1 << 4),
        (RflagsBits::ZF, 1 << 6),
        (RflagsBits::SF, 1 << 7),
        (RflagsBits::OF, 1 << 11),
    ];
    map.iter()
        .filter(|(i, _)| bits & i != 0)
        .map(|(_, r)| r)
        .fold(0, |a, b| a | b)
}

/// One generated block: `instrs` then `hlt`.
#[derive(Debug, Clone)]
pub struct Block {
    /// The encoded bytes at [`Block::addr`], ending with `hlt`.
    pub bytes: Vec<u8>,
    /// Where the bytes were assembled for.
    pub addr: u64,
    /// The instructions (including inserted flag-defining `cmp`s and the final `hlt`).
    pub instrs: Vec<Instruction>,
    /// Architectural RFLAGS bits (of CF PF AF ZF SF OF) defined at the end of the block.
    pub flags_mask: u64,
}

impl Block {
    /// The block in Intel syntax, one instruction a line with its address and bytes.
    pub fn disassembly(&self) -> String {
        use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};
        let mut dec = Decoder::with_ip(64, &self.bytes, self.addr, DecoderOptions::NONE);
        let mut f = IntelFormatter::new();
        let mut out = String::new();
        for ins in dec.iter() {
            let mut text = String::new();
            f.format(&ins, &mut text);
            let start = (ins.ip() - self.addr) as usize;
            let bytes: String = self.bytes[start..start + ins.len()]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            out.push_str(&format!(
                "{:#x}: {bytes:<30} {text}   ; {:?}\n",
                ins.ip(),
                ins.code()
            ));
        }
        out
    }
}

/// The block generator: the instruction forms plus a PRNG.
pub struct Generator {
    forms: Vec<Form>,
}

impl Default for Generator {
    fn default() -> Self {
        Self::new()
    }
}

impl Generator {
    /// A generator over every modelled form not excluded.
    pub fn new() -> Self {
        Generator { forms: forms() }
    }

    /// Number of distinct instruction forms (iced-x86 `Code`s) in use.
    pub fn form_count(&self) -> usize {
        self.forms.len()
    }

    /// Names of the forms in use.
    pub fn form_names(&self) -> Vec<String> {
        self.forms.iter().map(|f| format!("{:?}", f.code)).collect()
    }

    /// A block of `n` random instructions (plus inserted `cmp`s) assembled at `addr`.
    pub fn block(&self, rng: &mut Rng, n: usize, addr: u64) -> Result<Block, IcedError> {
        let mut instrs = Vec::with_capacity(n + 8);
        let mut undef = 0u32;
        let mut enc = Encoder::new(64);
        while instrs.len() < n {
            let form = &self.forms[rng.below(self.forms.len() as u64) as usize];
            let Some(ins) = build(form, rng, false) else {
                continue;
            };
            if ins.op0_kind() == OpKind::Register && reg_form_excluded(ins.code()) {
                continue;
            }
            // High-byte registers cannot mix with REX: let the encoder judge, then retry.
            if enc.encode(&ins, addr).is_err() {
                continue;
            }
            let index = ins.memory_index();
            let is_div = matches!(ins.mnemonic(), Mnemonic::Div | Mnemonic::Idiv);
            if index != Register::None && ins.mnemonic() != Mnemonic::Lea {
                // The DIV guard rewrites RAX/RDX, which must not move the divisor's address.
                if is_div && matches!(index, Register::RAX | Register::RDX) {
                    continue;
                }
                let idx32 = Register::EAX + index.number() as u32;
                let mask = Instruction::with2(Code::And_rm32_imm32, idx32, INDEX_MASK)?;
                undef = track_undef(undef, &mask);
                instrs.push(mask);
            }
            if is_div {
                match div_guard(&ins) {
                    Some(guard) => {
                        undef = guard.iter().fold(undef, track_undef);
                        instrs.extend(guard);
                    }
                    None => continue,
                }
            }
            let needs_defined =
                ins.rflags_read() & undef != 0 || (counts_by_cl(&ins) && undef != 0);
            if needs_defined {
                let a = R64[rng.below(R64.len() as u64) as usize];
                let b = R64[rng.below(R64.len() as u64) as usize];
                instrs.push(Instruction::with2(Code::Cmp_rm64_r64, a, b)?);
                undef = 0;
            }
            undef = track_undef(undef, &ins);
            instrs.push(ins);
        }
        Block::assemble(instrs, addr)
    }
}

/// Instructions that make `ins` (a DIV/IDIV) unable to raise #DE: the divisor becomes positive
/// and odd (`shr d, 1; or d, 1`) and the dividend's high half zero (DIV) or the sign
/// extension of its low half (IDIV), so the quotient always fits. `None` when the divisor is
/// a register the dividend uses (the guard would not hold).
fn div_guard(ins: &Instruction) -> Option<Vec<Instruction>> {
    let size = match ins.code() {
        Code::Div_rm8 | Code::Idiv_rm8 => 8,
        Code::Div_rm16 | Code::Idiv_rm16 => 16,
        Code::Div_rm32 | Code::Idiv_rm32 => 32,
        _ => 64,
    };
    let (shr, or) = match size {
        8 => (Code::Shr_rm8_1, Code::Or_rm8_imm8),
        16 => (Code::Shr_rm16_1, Code::Or_rm16_imm8),
        32 => (Code::Shr_rm32_1, Code::Or_rm32_imm8),
        _ => (Code::Shr_rm64_1, Code::Or_rm64_imm8),
    };
    let (a, b) = match ins.op0_kind() {
        OpKind::Register => {
            let r = ins.op0_register();
            let clash = if size == 8 {
                matches!(r, Register::AL | Register::AH)
            } else {
                matches!(r.full_register(), Register::RAX | Register::RDX)
            };
            if clash {
                return None;
            }
            (
                Instruction::with2(shr, r, 1).ok()?,
                Instruction::with2(or, r, 1).ok()?,
            )
        }
        OpKind::Memory => {
            let m = MemoryOperand::new(
                Register::R15,
                ins.memory_index(),
                ins.memory_index_scale(),
                ins.memory_displacement64() as i64,
                if ins.memory_displacement64() < 128 {
                    1
                } else {
                    8
                },
                false,
                Register::None,
            );
            (
                Instruction::with2(shr, m, 1).ok()?,
                Instruction::with2(or, m, 1).ok()?,
            )
        }
        _ => return None,
    };
    let signed = ins.mnemonic() == Mnemonic::Idiv;
    let extend = match (size, signed) {
        (8, false) => Instruction::with2(Code::Movzx_r32_rm8, Register::EAX, Register::AL),
        (_, false) => Instruction::with2(Code::Xor_r32_rm32, Register::EDX, Register::EDX),
        (8, true) => Ok(Instruction::with(Code::Cbw)),
        (16, true) => Ok(Instruction::with(Code::Cwd)),
        (32, true) => Ok(Instruction::with(Code::Cdq)),
        _ => Ok(Instruction::with(Code::Cqo)),
    }
    .ok()?;
    Some(vec![a, b, extend])
}

/// The undefined-flag set after `ins` runs with `undef` undefined before it.
fn track_undef(undef: u32, ins: &Instruction) -> u32 {
    let written = ins.rflags_modified() & SIX;
    let u = (ins.rflags_undefined() | shift_extra_undef(ins)) & SIX;
    (undef & !written) | u
}

impl Block {
    /// Assemble `instrs` (without the final `hlt`, which is appended) at `addr`; the flags mask
    /// is recomputed from the instructions. Used for generated blocks and their prefixes.
    pub fn assemble(mut instrs: Vec<Instruction>, addr: u64) -> Result<Block, IcedError> {
        let undef = instrs.iter().fold(0, track_undef);
        instrs.push(Instruction::with(Code::Hlt));
        let mut a = CodeAssembler::new(64)?;
        for ins in &instrs {
            a.add_instruction(*ins)?;
        }
        let bytes = a.assemble(addr)?;
        Ok(Block {
            bytes,
            addr,
            instrs,
            flags_mask: to_rflags(SIX & !undef),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_reproducible() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn forms_cover_the_families() {
        let g = Generator::new();
        let names = g.form_names();
        for want in [
            "Add_rm64_r64",
            "Adc_rm8_imm8",
            "Shld_rm32_r32_CL",
            "Imul_r32_rm32_imm8",
            "Mul_rm64",
            "Cmovne_r16_rm16",
            "Sete_rm8",
            "Movsxd_r64_rm32",
            "Lea_r64_m",
            "Cqo",
            "Lahf",
            "Shl_rm8_1",
            "Mov_r64_imm64",
            "Btc_rm32_imm8",
            "Div_rm8",
            "Idiv_rm64",
            "Push_r64",
            "Pop_rm64",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing");
        }
        assert!(!names.iter().any(|n| n == "Bswap_r16"));
    }

    #[test]
    fn blocks_are_deterministic_and_end_in_hlt() {
        let g = Generator::new();
        let b1 = g.block(&mut Rng::new(3), 50, 0x10000).unwrap();
        let b2 = g.block(&mut Rng::new(3), 50, 0x10000).unwrap();
        assert_eq!(b1.bytes, b2.bytes);
        assert_eq!(b1.bytes.last(), Some(&0xf4));
        assert!(b1.instrs.len() > 50);
        assert!(b1.disassembly().contains("hlt"));
        let text: String = (0..20)
            .map(|i| {
                g.block(&mut Rng::new(i), 50, 0x10000)
                    .unwrap()
                    .disassembly()
            })
            .collect();
        assert!(text.contains("[r15+r"), "no indexed data operand");
        assert!(text.contains("div "), "no DIV/IDIV");
    }
}

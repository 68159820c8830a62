//! A seeded generator of random SSE/SSE2 blocks for the differential checker.
//!
//! Data enters as a seed; it leaves as an [`SseBlock`]: a prologue that loads XMM0–15 from the
//! first 256 bytes of the data page and MXCSR from a random value (random rounding mode, FTZ,
//! DAZ and sticky flags, exceptions nearly always masked), the random body, and an epilogue that stores
//! XMM0–15 back (MOVDQU) and MXCSR after them, so the data-page compare sees every SSE result.
//! [`fp_patterns`] fills those 256 bytes with the values where FP code goes wrong (NaNs,
//! denormals, infinities, signed zeros, the edges of the integer ranges).
//!
//! Forms are the legacy (non-VEX) iced-x86 `Code`s our SSE handler table implements
//! (`decode::sse_table`), minus [`SSE_EXCLUDED`]. Memory operands are `[r15 + disp]` inside the
//! data page, 16-byte aligned for 128-bit operands; general registers never name RSP or R15.

use iced_x86::code_asm::CodeAssembler;
use iced_x86::{Code, CpuidFeature, IcedError, Instruction, MemoryOperand, Register};

use super::gen::{Block, Rng, DATA_SIZE};

/// Forms left out, with why.
pub const SSE_EXCLUDED: &[(&str, &str)] = &[
    (
        "Rcpps",
        "approximation: the bits differ between CPU generations",
    ),
    (
        "Rcpss",
        "approximation: the bits differ between CPU generations",
    ),
    (
        "Rsqrtps",
        "approximation: the bits differ between CPU generations",
    ),
    (
        "Rsqrtss",
        "approximation: the bits differ between CPU generations",
    ),
    (
        "Ldmxcsr",
        "MXCSR is set by the prologue (a random value could #GP)",
    ),
    ("Stmxcsr", "MXCSR is stored by the epilogue"),
    ("Maskmovdqu", "implicit [rdi] store outside the data page"),
];

/// Bytes of the data page the prologue loads XMM0-15 from (and the epilogue stores them to).
pub const XMM_AREA: u64 = 256;
/// Offset of the MXCSR slot (after the XMM area).
const MXCSR_SLOT: u64 = XMM_AREA;
/// Body memory operands start past the XMM area and the MXCSR slot.
const BODY_DATA: u64 = XMM_AREA + 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Xmm,
    XmmOrMem(u32),
    Mem(u32),
    Gpr(u32),
    /// Register width, memory width.
    GprOrMem(u32, u32),
    Imm8,
}

fn parse_op(tok: &str) -> Option<Op> {
    Some(match tok {
        "xmm" => Op::Xmm,
        "xmmm128" => Op::XmmOrMem(128),
        "xmmm64" => Op::XmmOrMem(64),
        "xmmm32" => Op::XmmOrMem(32),
        "m128" => Op::Mem(128),
        "m64" => Op::Mem(64),
        "m32" => Op::Mem(32),
        "r32" => Op::Gpr(32),
        "r64" => Op::Gpr(64),
        "rm32" => Op::GprOrMem(32, 32),
        "rm64" => Op::GprOrMem(64, 64),
        "r32m16" => Op::GprOrMem(32, 16),
        "r64m16" => Op::GprOrMem(64, 16),
        "imm8" => Op::Imm8,
        _ => return None,
    })
}

#[derive(Debug, Clone)]
struct Form {
    code: Code,
    name: String,
    ops: Vec<Op>,
}

const GPRS: &[Register] = &[
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

fn gpr(rng: &mut Rng, bits: u32) -> Register {
    let r = GPRS[rng.below(GPRS.len() as u64) as usize];
    if bits == 64 {
        r
    } else {
        Register::EAX + r.number() as u32
    }
}

fn xmm(rng: &mut Rng) -> Register {
    Register::XMM0 + rng.below(16) as u32
}

fn mem(rng: &mut Rng, bits: u32) -> MemoryOperand {
    let bytes = u64::from(bits / 8).max(1);
    let slots = (DATA_SIZE - BODY_DATA) / bytes;
    let disp = (BODY_DATA + bytes * rng.below(slots)) as i64;
    MemoryOperand::new(
        Register::R15,
        Register::None,
        1,
        disp,
        8,
        false,
        Register::None,
    )
}

fn build(form: &Form, rng: &mut Rng, regs_only: bool) -> Option<Instruction> {
    enum V {
        R(Register),
        M(MemoryOperand),
        I(u32),
    }
    let cmp = form.name.starts_with("Cmp");
    let vals: Vec<V> = form
        .ops
        .iter()
        .map(|op| match *op {
            Op::Xmm => V::R(xmm(rng)),
            Op::XmmOrMem(_) if regs_only || rng.below(2) == 0 => V::R(xmm(rng)),
            Op::XmmOrMem(b) | Op::Mem(b) => V::M(mem(rng, b)),
            Op::Gpr(b) => V::R(gpr(rng, b)),
            Op::GprOrMem(r, _) if regs_only || rng.below(2) == 0 => V::R(gpr(rng, r)),
            Op::GprOrMem(_, m) => V::M(mem(rng, m)),
            // Legacy CMPcc predicates are 0..7.
            Op::Imm8 if cmp => V::I(rng.below(8) as u32),
            Op::Imm8 => V::I(rng.below(256) as u32),
        })
        .collect();
    let c = form.code;
    let r = match vals.as_slice() {
        [V::M(a)] => Instruction::with1(c, *a),
        [V::R(a), V::R(b)] => Instruction::with2(c, *a, *b),
        [V::R(a), V::M(b)] => Instruction::with2(c, *a, *b),
        [V::M(a), V::R(b)] => Instruction::with2(c, *a, *b),
        [V::R(a), V::I(v)] => Instruction::with2(c, *a, *v),
        [V::R(a), V::R(b), V::I(v)] => Instruction::with3(c, *a, *b, *v),
        [V::R(a), V::M(b), V::I(v)] => Instruction::with3(c, *a, *b, *v),
        _ => return None,
    };
    r.ok()
}

fn excluded(name: &str) -> bool {
    SSE_EXCLUDED.iter().any(|(n, _)| *n == name)
}

/// Every SSE/SSE2 form we implement and can generate (deterministic order).
fn forms() -> Vec<Form> {
    let mut out = Vec::new();
    for code in Code::values() {
        let full = format!("{code:?}");
        let mut parts = full.split('_');
        let Some(name) = parts.next() else { continue };
        if excluded(name) {
            continue;
        }
        let Some(ops) = parts.map(parse_op).collect::<Option<Vec<Op>>>() else {
            continue;
        };
        let form = Form {
            code,
            name: name.to_string(),
            ops,
        };
        let mut rng = Rng::new(1);
        let Some(i) = build(&form, &mut rng, true) else {
            continue;
        };
        let sse12 = i
            .cpuid_features()
            .iter()
            .all(|f| matches!(f, CpuidFeature::SSE | CpuidFeature::SSE2));
        if sse12 && crate::cpu::decode::sse_table::handler(&i).is_some() {
            out.push(form);
        }
    }
    out
}

/// One generated SSE block, in three parts so a prefix of the body can be replayed.
#[derive(Debug, Clone)]
pub struct SseBlock {
    /// MXCSR and XMM0-15 loads.
    pub prologue: Vec<Instruction>,
    /// The random instructions.
    pub body: Vec<Instruction>,
    /// XMM0-15 and MXCSR stores.
    pub epilogue: Vec<Instruction>,
}

impl SseBlock {
    /// Assemble the prologue, the first `n` body instructions and the epilogue, then `hlt`.
    /// All six arithmetic flags are compared: only COMIS*/UCOMIS* write them, fully.
    pub fn assemble(&self, n: usize, addr: u64) -> Result<Block, IcedError> {
        let mut instrs: Vec<Instruction> = self.prologue.clone();
        instrs.extend_from_slice(&self.body[..n.min(self.body.len())]);
        instrs.extend_from_slice(&self.epilogue);
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
            flags_mask: 0x8d5,
        })
    }
}

fn slot(disp: u64) -> MemoryOperand {
    MemoryOperand::new(
        Register::R15,
        Register::None,
        1,
        disp as i64,
        8,
        false,
        Register::None,
    )
}

/// The SSE block generator.
pub struct SseGenerator {
    forms: Vec<Form>,
}

impl Default for SseGenerator {
    fn default() -> Self {
        Self::new()
    }
}

impl SseGenerator {
    /// Collect the forms (a few milliseconds).
    pub fn new() -> Self {
        SseGenerator { forms: forms() }
    }

    /// Number of forms.
    pub fn len(&self) -> usize {
        self.forms.len()
    }

    /// No forms at all?
    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }

    /// A random MXCSR: random RC, FTZ, DAZ and sticky flags; every exception masked, except in
    /// one block of eight where some are unmasked (the block then ends in #XM, a triple fault
    /// with no IDT, and the compare checks that both sides stop at the same instruction).
    pub fn mxcsr(rng: &mut Rng) -> u32 {
        let r = rng.next_u64() as u32;
        let masks = if rng.below(8) == 0 {
            (r >> 16) & 0x1f80
        } else {
            0x1f80
        };
        masks | (r & 0x3f) | (r & 0x6000) | (r & 0x8000) | (r & 0x40)
    }

    /// A block of `len` random instructions.
    pub fn block(&self, rng: &mut Rng, len: usize) -> Result<SseBlock, IcedError> {
        let mx = Self::mxcsr(rng);
        let mut prologue = vec![
            Instruction::with2(Code::Mov_rm32_imm32, slot(MXCSR_SLOT), mx)?,
            Instruction::with1(Code::Ldmxcsr_m32, slot(MXCSR_SLOT))?,
        ];
        let mut epilogue = Vec::new();
        for k in 0..16u32 {
            let r = Register::XMM0 + k;
            let m = slot(16 * u64::from(k));
            prologue.push(Instruction::with2(Code::Movdqu_xmm_xmmm128, r, m)?);
            epilogue.push(Instruction::with2(Code::Movdqu_xmmm128_xmm, m, r)?);
        }
        epilogue.push(Instruction::with1(Code::Stmxcsr_m32, slot(MXCSR_SLOT))?);
        let mut body = Vec::with_capacity(len);
        while body.len() < len && !self.forms.is_empty() {
            let f = &self.forms[rng.below(self.forms.len() as u64) as usize];
            if let Some(i) = build(f, rng, false) {
                body.push(i);
            }
        }
        Ok(SseBlock {
            prologue,
            body,
            epilogue,
        })
    }
}

/// Interesting single and double bit patterns.
const F32S: &[u32] = &[
    0x0000_0000,
    0x8000_0000,
    0x3f80_0000,
    0xbf80_0000,
    0x7f80_0000,
    0xff80_0000,
    0x7fc0_0000,
    0xffc0_0000,
    0x7fa0_0001,
    0x0000_0001,
    0x807f_ffff,
    0x0080_0000,
    0x7f7f_ffff,
    0x4f00_0000,
    0xcf00_0000,
    0x3f00_0000,
    0x4b80_0000,
];
const F64S: &[u64] = &[
    0,
    1 << 63,
    0x3ff0_0000_0000_0000,
    0xbff0_0000_0000_0000,
    0x7ff0_0000_0000_0000,
    0xfff0_0000_0000_0000,
    0x7ff8_0000_0000_0000,
    0x7ff4_0000_0000_0001,
    0x0000_0000_0000_0001,
    0x800f_ffff_ffff_ffff,
    0x0010_0000_0000_0000,
    0x7fef_ffff_ffff_ffff,
    0x41e0_0000_0000_0000,
    0xc3e0_0000_0000_0000,
    0x3fe0_0000_0000_0000,
    0x4330_0000_0000_0000,
    0x3810_0000_0000_0000,
    0x47f0_0000_0000_0000,
];

fn f32_value(rng: &mut Rng) -> u32 {
    match rng.below(4) {
        0 => F32S[rng.below(F32S.len() as u64) as usize],
        1 => ((rng.below(2001) as f32) - 1000.0).to_bits(),
        _ => rng.next_u64() as u32,
    }
}

/// Fill `data` (the data page of a start state) with FP-interesting values: each qword two
/// singles or one double, from the pattern lists, small integers or random bits.
pub fn fp_patterns(rng: &mut Rng, data: &mut [u8]) {
    for chunk in data.chunks_mut(8) {
        let v: u64 = match rng.below(3) {
            0 => u64::from(f32_value(rng)) | (u64::from(f32_value(rng)) << 32),
            1 => F64S[rng.below(F64S.len() as u64) as usize],
            _ => match rng.below(3) {
                0 => ((rng.below(2001) as f64) - 1000.0).to_bits(),
                1 => u64::from(((rng.below(2001) as f32) - 1000.0).to_bits()),
                _ => rng.next_u64(),
            },
        };
        let b = v.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_cover_the_groups() {
        let g = SseGenerator::new();
        let names: Vec<&str> = g.forms.iter().map(|f| f.name.as_str()).collect();
        for want in [
            "Addps",
            "Sqrtsd",
            "Cmpps",
            "Comisd",
            "Cvtsi2ss",
            "Cvttpd2dq",
            "Paddusb",
            "Pmaddwd",
            "Psrlw",
            "Pshufd",
            "Packsswb",
            "Pinsrw",
            "Movq",
            "Movhps",
            "Movmskpd",
            "Shufps",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        assert!(!names.contains(&"Rcpps"));
    }

    #[test]
    fn blocks_assemble_and_replay() {
        let g = SseGenerator::new();
        let mut a = Rng::new(5);
        let mut b = Rng::new(5);
        let x = g.block(&mut a, 30).unwrap().assemble(30, 0x10000).unwrap();
        let y = g.block(&mut b, 30).unwrap().assemble(30, 0x10000).unwrap();
        assert_eq!(x.bytes, y.bytes);
        assert_eq!(x.instrs.len(), 2 + 16 + 30 + 17 + 1);
    }
}

//! Differential checking of the software CPU against the host CPU (through `/dev/kvm`).
//!
//! [`gen`] produces seeded random blocks of integer instructions, [`gen_sse`] of SSE/SSE2 ones
//! (run by [`run_sse_campaign`]); [`harness`] runs each block
//! at CPL 3 on KVM (where, under PVM, user code runs natively on the host CPU: the oracle) and on
//! our software CPU from the same start state and compares the results. [`run_campaign`] ties
//! them together: a seed in, a count of compared instructions or the first [`Mismatch`] out
//! (with the shortest failing prefix of the block, which names the first differing
//! instruction).
//!
//! Compared after each block: the 16 GPRs, the arithmetic flags the last writers left defined,
//! RIP at the end marker, and the data and stack pages. Not covered: string instructions,
//! CALL/RET/ENTER/LEAVE/PUSHF/POPF, control flow inside a block, AVX, system and
//! privileged instructions, exceptions and their delivery (everything runs at CPL 3 with no
//! IDT), segment overrides, data operands other than `[r15 + disp]` / `[r15 + idx*1,2,4 +
//! disp]` (LEA uses any base+index*scale+disp), page-crossing accesses and LOCK. x87 blocks
//! ([`gen_x87`], [`run_x87_campaign`]) end with an FXSAVE into the data page, so the x87 state
//! is compared with it (transcendental instructions are not generated there: the host's are not
//! correctly rounded; [`transcend`] measures them case by case with a one-ulp tolerance).

pub mod gen;
pub mod gen_sse;
pub mod gen_transcend;
pub mod gen_x87;
pub mod harness;
pub mod transcend;

use gen::{Block, Generator, Rng};
use gen_sse::{fp_patterns, SseBlock, SseGenerator};
use harness::{Harness, HarnessError, Start, CODE};

/// The first block on which the two CPUs disagreed: enough to replay and read it.
#[derive(Debug, Clone)]
pub struct Mismatch {
    /// Campaign seed.
    pub seed: u64,
    /// Index of the block within the campaign (its own seed derives from both).
    pub block: usize,
    /// The block in Intel syntax.
    pub disassembly: String,
    /// One line per differing register, flag set or data quadword.
    pub diffs: Vec<String>,
    /// The first instruction after which the states differ (shortest failing prefix), with
    /// its iced-x86 `Code` name, and the differences right after it.
    pub culprit: Option<(String, Vec<String>)>,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "kvm and tcg differ: campaign seed {:#x}, block {}",
            self.seed, self.block
        )?;
        if let Some((ins, diffs)) = &self.culprit {
            writeln!(f, "first differing instruction: {ins}")?;
            for d in diffs {
                writeln!(f, "  {d}")?;
            }
        }
        writeln!(f, "whole block:")?;
        for d in &self.diffs {
            writeln!(f, "  {d}")?;
        }
        write!(f, "{}", self.disassembly)
    }
}

/// Why a campaign stopped early.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// The harness failed (accelerator setup, unexpected exit...).
    #[error("seed {seed:#x} block {block}: {source}")]
    Harness {
        /// Campaign seed.
        seed: u64,
        /// Block index.
        block: usize,
        /// What failed.
        source: HarnessError,
    },
    /// Generating a block failed (an assembler error).
    #[error("seed {seed:#x} block {block}: assembling: {what}")]
    Generate {
        /// Campaign seed.
        seed: u64,
        /// Block index.
        block: usize,
        /// The assembler's message.
        what: String,
    },
    /// The CPUs disagreed.
    #[error("{0}")]
    Mismatch(Box<Mismatch>),
}

/// The seed of block `index` of a campaign seeded with `seed`: blocks replay independently.
pub fn block_seed(seed: u64, index: usize) -> u64 {
    Rng::new(seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).next_u64()
}

/// Run `blocks` blocks of `len` random instructions each on KVM and tcg, stopping at the first
/// difference. Returns the number of instructions compared (inserted `cmp`s included, `hlt`s
/// not).
pub fn run_campaign(
    harness: &mut Harness,
    seed: u64,
    blocks: usize,
    len: usize,
) -> Result<usize, DiffError> {
    let generator = Generator::new();
    run_blocks(harness, seed, blocks, (0, &[]), |rng| {
        generator.block(rng, len, CODE)
    })
}

/// Like [`run_campaign`] with x87 blocks ([`gen_x87::x87_block`]): `len` random x87
/// instructions after the loads, the FXSAVE image compared with the data page.
pub fn run_x87_campaign(
    harness: &mut Harness,
    seed: u64,
    blocks: usize,
    len: usize,
) -> Result<usize, DiffError> {
    let epilogue = gen_x87::epilogue().map_err(|e| DiffError::Generate {
        seed,
        block: 0,
        what: e.to_string(),
    })?;
    run_blocks(
        harness,
        seed,
        blocks,
        (gen_x87::PROLOGUE_LEN, &epilogue),
        |rng| gen_x87::x87_block(rng, len, CODE),
    )
}

fn run_blocks(
    harness: &mut Harness,
    seed: u64,
    blocks: usize,
    frame: (usize, &[iced_x86::Instruction]),
    make: impl Fn(&mut Rng) -> Result<Block, iced_x86::IcedError>,
) -> Result<usize, DiffError> {
    let mut compared = 0;
    for index in 0..blocks {
        let mut rng = Rng::new(block_seed(seed, index));
        let block = make(&mut rng).map_err(|e| DiffError::Generate {
            seed,
            block: index,
            what: e.to_string(),
        })?;
        let start = Start::random(&mut rng);
        let (diffs, _, _) = harness
            .run(&block, &start)
            .map_err(|source| DiffError::Harness {
                seed,
                block: index,
                source,
            })?;
        if !diffs.is_empty() {
            return Err(DiffError::Mismatch(Box::new(Mismatch {
                seed,
                block: index,
                disassembly: block.disassembly(),
                culprit: culprit(harness, &block, &start, frame),
                diffs,
            })));
        }
        compared += block.instrs.len() - 1;
    }
    Ok(compared)
}

/// The shortest prefix of `block` on which the sides differ: its last instruction (Intel
/// syntax and `Code`) and the differences. `None` if no prefix reproduces it.
/// `frame`: how many leading instructions every prefix keeps (a prologue that sets up state)
/// and the block's last instructions before `hlt`, appended to every prefix (for x87 blocks the
/// FXSAVE that makes the register stack visible).
fn culprit(
    harness: &mut Harness,
    block: &Block,
    start: &Start,
    (first, epilogue): (usize, &[iced_x86::Instruction]),
) -> Option<(String, Vec<String>)> {
    use iced_x86::{Formatter, IntelFormatter};
    let body = &block.instrs[..block.instrs.len().saturating_sub(1 + epilogue.len())];
    for k in first.max(1)..=body.len() {
        let mut instrs = body[..k].to_vec();
        instrs.extend_from_slice(epilogue);
        let prefix = Block::assemble(instrs, block.addr).ok()?;
        let (diffs, _, _) = harness.run(&prefix, start).ok()?;
        if !diffs.is_empty() {
            let ins = &body[k - 1];
            let mut text = String::new();
            IntelFormatter::new().format(ins, &mut text);
            return Some((format!("{text}   ; {:?} (#{k})", ins.code()), diffs));
        }
    }
    None
}

/// Like [`run_campaign`] for SSE/SSE2 blocks ([`gen_sse`]): the data page gets FP-interesting
/// values, MXCSR a random rounding mode, FTZ and DAZ. Returns the number of
/// body instructions compared.
pub fn run_sse_campaign(
    harness: &mut Harness,
    seed: u64,
    blocks: usize,
    len: usize,
) -> Result<usize, DiffError> {
    let generator = SseGenerator::new();
    let mut compared = 0;
    for index in 0..blocks {
        let mut rng = Rng::new(block_seed(seed, index));
        let gen_err = |e: iced_x86::IcedError| DiffError::Generate {
            seed,
            block: index,
            what: e.to_string(),
        };
        let sse = generator.block(&mut rng, len).map_err(gen_err)?;
        let block = sse.assemble(len, CODE).map_err(gen_err)?;
        let mut start = Start::random(&mut rng);
        // XMM loads and memory operands alike see FP-interesting values.
        fp_patterns(&mut rng, &mut start.data[..gen::DATA_SIZE as usize]);
        let (diffs, _, _) = harness
            .run(&block, &start)
            .map_err(|source| DiffError::Harness {
                seed,
                block: index,
                source,
            })?;
        if !diffs.is_empty() {
            return Err(DiffError::Mismatch(Box::new(Mismatch {
                seed,
                block: index,
                disassembly: block.disassembly(),
                culprit: sse_culprit(harness, &sse, &start),
                diffs,
            })));
        }
        compared += sse.body.len();
    }
    Ok(compared)
}

/// The shortest body prefix (with prologue and epilogue) on which the sides differ.
fn sse_culprit(
    harness: &mut Harness,
    sse: &SseBlock,
    start: &Start,
) -> Option<(String, Vec<String>)> {
    use iced_x86::{Formatter, IntelFormatter};
    for k in 1..=sse.body.len() {
        let prefix = sse.assemble(k, CODE).ok()?;
        let (diffs, _, _) = harness.run(&prefix, start).ok()?;
        if !diffs.is_empty() {
            let ins = &sse.body[k - 1];
            let mut text = String::new();
            IntelFormatter::new().format(ins, &mut text);
            return Some((format!("{text}   ; {:?} (#{k})", ins.code()), diffs));
        }
    }
    None
}

//! Pre-decoded forms of the hottest integer instructions: MOV, the ALU group, INC/DEC, LEA,
//! MOVZX/MOVSX, SHL/SHR/SAR and IMUL of a register, CMOVcc, SETcc of a register, PUSH/POP of
//! a register, Jcc, and near CALL/JMP/RET in 64-bit mode, with their operands resolved once at
//! decode time.
//!
//! Why: the general semantics functions take iced-x86's `Instruction` and ask it, on every
//! execution, what kind each operand is, which register, what size, how the address is formed
//! (each a table lookup or a `match`). Profiles put that plumbing above the work itself. Here
//! [`select`] looks at an instruction once, when its block is decoded, and, if it has one of
//! the forms below, returns a specialised function and an [`Ops`] record holding register
//! indexes, the size mask, the immediate and the address recipe; the run loop then calls that
//! function with the record. Anything else (high-byte registers, LOCK, segment registers, odd
//! operand kinds) keeps its general semantics function, so behaviour is defined in one place
//! and these forms must agree with it (the differential tests run them against the host CPU).

use iced_x86::{Instruction, Mnemonic as M, OpKind, Register};

use super::alu::{self, compute_cf};
use super::{address_size, mem_seg, sext, size_mask};
use super::{muldiv, shift};
use crate::cpu::decode::{via_handler, DecodedInsn, Exec};
use crate::cpu::fault::Res;
use crate::cpu::flags::FlagOp;
use crate::cpu::mmu::seg::canonical;
use crate::cpu::state::sreg;
use crate::cpu::Cpu;

/// "No register" in [`Mem`].
pub(crate) const NONE: u8 = 16;

/// A memory operand's effective-address recipe: `(disp + base + index << shift) & mask`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mem {
    pub(crate) disp: u64,
    pub(crate) mask: u64,
    pub(crate) base: u8,
    pub(crate) index: u8,
    pub(crate) shift: u8,
    pub(crate) seg: u8,
}

/// The operands of a pre-decoded instruction.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ops {
    /// Immediate (already masked to the operand size) or branch target.
    imm: u64,
    /// Operand-size mask.
    mask: u64,
    mem: Mem,
    /// Destination (or only) general register index.
    r0: u8,
    /// Source general register index.
    r1: u8,
    /// Operand size in bytes.
    size: u8,
    /// Source size in bytes (MOVZX/MOVSX) or condition code (Jcc).
    aux: u8,
}

/// Index (0-15) of a general register usable by these forms; high-byte registers are not.
pub(crate) fn gpr(r: Register) -> Option<u8> {
    let n = r as usize;
    let i = match n {
        1..=4 => n - 1,
        9..=20 => n - 5,
        21..=36 => n - 21,
        37..=52 => n - 37,
        53..=68 => n - 53,
        _ => return None,
    };
    Some(i as u8)
}

fn reg_op(i: &Instruction, n: u32) -> Option<u8> {
    if i.op_kind(n) == OpKind::Register {
        gpr(i.op_register(n))
    } else {
        None
    }
}

pub(crate) fn is_imm(i: &Instruction, n: u32) -> bool {
    matches!(
        i.op_kind(n),
        OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64
    )
}

/// The address recipe of `i`'s memory operand, as [`super::ea`] computes it.
pub(crate) fn mem(i: &Instruction, bits: u32) -> Option<Mem> {
    let base = i.memory_base();
    let index = i.memory_index();
    let seg = mem_seg(i) as u8;
    let disp = i.memory_displacement64();
    if base == Register::RIP || base == Register::EIP {
        let mask = if base == Register::RIP {
            u64::MAX
        } else {
            0xffff_ffff
        };
        return Some(Mem {
            disp: disp & mask,
            mask,
            base: NONE,
            index: NONE,
            shift: 0,
            seg,
        });
    }
    let b = if base == Register::None {
        NONE
    } else {
        gpr(base)?
    };
    let x = if index == Register::None {
        NONE
    } else {
        gpr(index)?
    };
    Some(Mem {
        disp,
        mask: size_mask(address_size(i, || bits)),
        base: b,
        index: x,
        shift: i.memory_index_scale().trailing_zeros() as u8,
        seg,
    })
}

/// CMOVcc, any condition.
pub(crate) fn is_cmovcc(m: M) -> bool {
    matches!(
        m,
        M::Cmova
            | M::Cmovae
            | M::Cmovb
            | M::Cmovbe
            | M::Cmove
            | M::Cmovg
            | M::Cmovge
            | M::Cmovl
            | M::Cmovle
            | M::Cmovne
            | M::Cmovno
            | M::Cmovnp
            | M::Cmovns
            | M::Cmovo
            | M::Cmovp
            | M::Cmovs
    )
}

/// SETcc, any condition.
pub(crate) fn is_setcc(m: M) -> bool {
    matches!(
        m,
        M::Seta
            | M::Setae
            | M::Setb
            | M::Setbe
            | M::Sete
            | M::Setg
            | M::Setge
            | M::Setl
            | M::Setle
            | M::Setne
            | M::Setno
            | M::Setnp
            | M::Setns
            | M::Seto
            | M::Setp
            | M::Sets
    )
}

/// `f::<.., S>` for an operand size of `size` bytes (1, 2, 4 or 8): the hottest forms are
/// compiled once per size, so masks, flag widths and register merges are constants.
macro_rules! sized {
    ($size:expr, $f:ident $(, $g:expr)*) => {
        match $size {
            1 => $f::<$({ $g },)* 1> as Exec,
            2 => $f::<$({ $g },)* 2> as Exec,
            4 => $f::<$({ $g },)* 4> as Exec,
            _ => $f::<$({ $g },)* 8> as Exec,
        }
    };
}

/// The fast form of `i` (decoded in a `bits`-bit code segment), if it has one.
pub fn select(i: &Instruction, bits: u32) -> Option<(Exec, Ops)> {
    let m = i.mnemonic();
    let mut o = Ops::default();
    let kind0 = i.op_kind(0);
    let mem0 = kind0 == OpKind::Memory;
    let mem1 = i.op_count() > 1 && i.op_kind(1) == OpKind::Memory;
    if mem0 || mem1 || m == M::Lea {
        o.mem = mem(i, bits)?;
    }
    match m {
        M::Mov | M::Add | M::Adc | M::Sub | M::Sbb | M::And | M::Or | M::Xor | M::Cmp | M::Test => {
            let size = super::op_size(i, 0);
            o.size = size as u8;
            o.mask = size_mask(size);
            let form = if let Some(r0) = reg_op(i, 0) {
                o.r0 = r0;
                if let Some(r1) = reg_op(i, 1) {
                    o.r1 = r1;
                    Form::RR
                } else if is_imm(i, 1) {
                    o.imm = i.immediate(1) & o.mask;
                    Form::RI
                } else if mem1 {
                    Form::RM
                } else {
                    return None;
                }
            } else if mem0 && !i.has_lock_prefix() && !i.has_xacquire_prefix() {
                if let Some(r1) = reg_op(i, 1) {
                    o.r1 = r1;
                    Form::MR
                } else if is_imm(i, 1) {
                    o.imm = i.immediate(1) & o.mask;
                    Form::MI
                } else {
                    return None;
                }
            } else {
                return None;
            };
            if m == M::Mov {
                let f: Exec = match form {
                    Form::RR => sized!(size, mov_rr),
                    Form::RI => sized!(size, mov_ri),
                    Form::RM => sized!(size, mov_rm),
                    Form::MR => sized!(size, mov_mr),
                    Form::MI => sized!(size, mov_mi),
                };
                return Some((f, o));
            }
            Some((alu_exec(m, form, size)?, o))
        }
        M::Inc | M::Dec => {
            o.r0 = reg_op(i, 0)?;
            let size = i.op0_register().size();
            o.size = size as u8;
            o.mask = size_mask(size);
            Some((
                if m == M::Inc {
                    sized!(size, incdec, true)
                } else {
                    sized!(size, incdec, false)
                },
                o,
            ))
        }
        M::Lea => {
            o.r0 = reg_op(i, 0)?;
            let size = i.op0_register().size();
            o.size = size as u8;
            o.mask = size_mask(size);
            Some((sized!(size, lea), o))
        }
        M::Movzx | M::Movsx | M::Movsxd => {
            o.r0 = reg_op(i, 0)?;
            let size = i.op0_register().size();
            o.size = size as u8;
            o.mask = size_mask(size);
            o.aux = super::op_size(i, 1) as u8;
            let zx = m == M::Movzx;
            if let Some(r1) = reg_op(i, 1) {
                o.r1 = r1;
                Some((if zx { movzx_r } else { movsx_r }, o))
            } else if mem1 {
                Some((
                    if zx {
                        sized!(o.aux, movzx_m)
                    } else {
                        sized!(o.aux, movsx_m)
                    },
                    o,
                ))
            } else {
                None
            }
        }
        M::Push if i.op_count() == 1 => {
            o.r0 = reg_op(i, 0)?;
            let size = (-i.stack_pointer_increment()) as usize;
            // PUSH of a register whose size differs from the push size does not exist.
            if size != i.op0_register().size() {
                return None;
            }
            o.size = size as u8;
            Some((push_r, o))
        }
        M::Pop if i.op_count() == 1 => {
            o.r0 = reg_op(i, 0)?;
            let size = i.stack_pointer_increment() as usize;
            if size != i.op0_register().size() {
                return None;
            }
            o.size = size as u8;
            Some((pop_r, o))
        }
        M::Shl | M::Sal | M::Shr | M::Sar => {
            o.r0 = reg_op(i, 0)?;
            let size = i.op0_register().size();
            o.size = size as u8;
            o.mask = size_mask(size);
            let k = match m {
                M::Shr => SHR,
                M::Sar => SAR,
                _ => SHL,
            };
            if is_imm(i, 1) {
                o.imm = i.immediate(1) & if size == 8 { 0x3f } else { 0x1f };
                // A zero count has its own rules: the general form keeps them.
                if o.imm == 0 {
                    return None;
                }
                Some((SHIFT_RI[usize::from(k)], o))
            } else if i.op_kind(1) == OpKind::Register && i.op1_register() == Register::CL {
                Some((SHIFT_RC[usize::from(k)], o))
            } else {
                None
            }
        }
        M::Imul if i.op_count() >= 2 => {
            o.r0 = reg_op(i, 0)?;
            let size = i.op0_register().size();
            o.size = size as u8;
            o.mask = size_mask(size);
            let three = i.op_count() == 3;
            if three {
                o.imm = i.immediate(2) & o.mask;
            }
            if let Some(r1) = reg_op(i, 1) {
                o.r1 = r1;
                Some((if three { imul3_r } else { imul2_r }, o))
            } else if mem1 {
                Some((if three { imul3_m } else { imul2_m }, o))
            } else {
                None
            }
        }
        m if is_cmovcc(m) => {
            o.r0 = reg_op(i, 0)?;
            let size = i.op0_register().size();
            o.size = size as u8;
            o.mask = size_mask(size);
            o.aux = alu::cc(i);
            if let Some(r1) = reg_op(i, 1) {
                o.r1 = r1;
                Some((cmov_r, o))
            } else if mem1 {
                Some((cmov_m, o))
            } else {
                None
            }
        }
        m if is_setcc(m) => {
            o.r0 = reg_op(i, 0)?;
            o.size = 1;
            o.aux = alu::cc(i);
            Some((setcc_r, o))
        }
        // Near CALL/JMP/RET in 64-bit mode with the 64-bit stack (no operand-size prefix).
        M::Call if bits == 64 && i.code() == iced_x86::Code::Call_rel32_64 => {
            o.imm = i.near_branch_target();
            Some((call_rel64, o))
        }
        M::Jmp if bits == 64 && i.is_jmp_short_or_near() => {
            o.imm = i.near_branch_target();
            Some((jmp_rel, o))
        }
        M::Ret
            if bits == 64
                && matches!(
                    i.code(),
                    iced_x86::Code::Retnq | iced_x86::Code::Retnq_imm16
                ) =>
        {
            if i.op_count() > 0 {
                o.imm = u64::from(i.immediate16());
            }
            Some((ret64, o))
        }
        _ if i.is_jcc_short_or_near() => {
            o.imm = i.near_branch_target();
            o.aux = alu::cc(i);
            Some((JCC[usize::from(o.aux & 15)], o))
        }
        _ => None,
    }
}

#[derive(Clone, Copy)]
enum Form {
    RR,
    RI,
    RM,
    MR,
    MI,
}

fn alu_exec(m: M, form: Form, size: usize) -> Option<Exec> {
    macro_rules! pick {
        ($op:expr) => {
            match form {
                Form::RR => sized!(size, alu_rr, $op),
                Form::RI => sized!(size, alu_ri, $op),
                Form::RM => sized!(size, alu_rm, $op),
                Form::MR => sized!(size, alu_mr, $op),
                Form::MI => sized!(size, alu_mi, $op),
            }
        };
    }
    Some(match m {
        M::Add => pick!(alu::ADD),
        M::Adc => pick!(alu::ADC),
        M::Sub => pick!(alu::SUB),
        M::Sbb => pick!(alu::SBB),
        M::And => pick!(alu::AND),
        M::Or => pick!(alu::OR),
        M::Xor => pick!(alu::XOR),
        M::Cmp => pick!(alu::CMP),
        M::Test => pick!(alu::TEST),
        _ => return None,
    })
}

/// What the fast forms' memory path needs to know about the mode, computed once per block.
///
/// It cannot go stale inside a block: every instruction that can change the mode, the CPL,
/// EFLAGS.AC at CPL 3 or the stack size ends its block (far transfers, interrupts, IRET,
/// SYSCALL & co. by their flow control; MOV to CR/SS, POP SS, POPF, LSS... by the decode
/// table), and a fault ends the block too.
#[derive(Debug, Clone, Copy, Default)]
pub struct BlockMode {
    /// 64-bit mode: flat segments (FS/GS bases aside), canonical checks, 64-bit stack.
    flat: bool,
    /// CPL 3 (the TLB tag's user bit).
    user: bool,
    /// Alignment checks apply (CPL 3, CR0.AM, EFLAGS.AC): take the general path.
    align_check: bool,
}

impl BlockMode {
    /// The mode facts of `s`.
    #[inline]
    pub fn of(s: &crate::cpu::state::CpuState) -> Self {
        let user = s.cpl() == 3;
        BlockMode {
            flat: s.mode64(),
            user,
            align_check: user
                && s.cr0 & crate::cpu::state::cr0::AM != 0
                && s.flags.sys(crate::cpu::flags::AC),
        }
    }

    /// Flat 64-bit addressing without alignment checks: the short path applies.
    #[inline(always)]
    fn short(self) -> bool {
        self.flat && !self.align_check
    }

    /// What translated code ORs into a linear page to form its TLB tag: the user bit and the
    /// valid bit, or 0 (a tag no entry has) when the short path does not apply.
    #[inline]
    pub fn jit_tag_bits(self) -> u64 {
        if self.short() {
            u64::from(self.user) << 1 | 1
        } else {
            0
        }
    }
}

impl Cpu {
    /// The linear address of `seg:off` in 64-bit mode, if canonical.
    #[inline(always)]
    fn flat_linear(&self, seg: usize, off: u64) -> Option<u64> {
        let lin = if seg >= sreg::FS {
            self.state.seg[seg & 7].base.wrapping_add(off)
        } else {
            off
        };
        canonical(lin).then_some(lin)
    }

    /// A data read with the block's mode facts; the general path for anything unusual
    /// (which also raises the right fault).
    #[inline(always)]
    fn quick_read(&mut self, seg: usize, off: u64, size: usize) -> Res<u64> {
        let m = self.block_mode;
        if m.short() {
            if let Some(lin) = self.flat_linear(seg, off) {
                return self.read_lin(lin, size, m.user);
            }
        }
        self.read_seg(seg, off, size)
    }

    /// A data write, as [`Cpu::quick_read`].
    #[inline(always)]
    fn quick_write(&mut self, seg: usize, off: u64, size: usize, v: u64) -> Res<()> {
        let m = self.block_mode;
        if m.short() {
            if let Some(lin) = self.flat_linear(seg, off) {
                return self.write_lin(lin, size, v, m.user);
            }
        }
        self.write_seg(seg, off, size, v)
    }

    /// Branch-free: one shared handler serves every addressing form, so a branch on "has a
    /// base" would be mispredicted whenever neighbouring instructions differ.
    #[inline(always)]
    fn fast_ea(&self, m: &Mem) -> u64 {
        let g = &self.state.gpr;
        // All ones for a register index (0-15), zero for NONE (16).
        let present = |r: u8| u64::from(r >> 4).wrapping_sub(1);
        let b = g[m.base as usize & 15] & present(m.base);
        let x = (g[m.index as usize & 15] & present(m.index)) << m.shift;
        m.disp.wrapping_add(b).wrapping_add(x) & m.mask
    }

    #[inline(always)]
    fn fast_load(&mut self, o: &Ops, size: usize) -> Res<u64> {
        let a = self.fast_ea(&o.mem);
        self.quick_read(o.mem.seg as usize, a, size)
    }

    #[inline(always)]
    fn fast_store(&mut self, o: &Ops, size: usize, v: u64) -> Res<()> {
        let a = self.fast_ea(&o.mem);
        self.quick_write(o.mem.seg as usize, a, size, v)
    }

    #[inline(always)]
    fn g(&self, r: u8) -> u64 {
        self.state.gpr[r as usize & 15]
    }
}

fn mov_rr<const S: usize>(cpu: &mut Cpu, d: &DecodedInsn) -> Res<()> {
    let o = &d.ops;
    let v = cpu.g(o.r1) & size_mask(S);
    cpu.set_gpr_sized(o.r0 as usize & 15, S, v);
    Ok(())
}

fn mov_ri<const S: usize>(cpu: &mut Cpu, d: &DecodedInsn) -> Res<()> {
    let o = &d.ops;
    cpu.set_gpr_sized(o.r0 as usize & 15, S, o.imm);
    Ok(())
}

fn mov_rm<const S: usize>(cpu: &mut Cpu, d: &DecodedInsn) -> Res<()> {
    let o = &d.ops;
    let v = cpu.fast_load(o, S)?;
    cpu.set_gpr_sized(o.r0 as usize & 15, S, v);
    Ok(())
}

fn mov_mr<const S: usize>(cpu: &mut Cpu, d: &DecodedInsn) -> Res<()> {
    let o = &d.ops;
    let v = cpu.g(o.r1) & size_mask(S);
    cpu.fast_store(o, S, v)
}

fn mov_mi<const S: usize>(cpu: &mut Cpu, d: &DecodedInsn) -> Res<()> {
    let o = &d.ops;
    cpu.fast_store(o, S, o.imm)
}

/// Result of `a OP b` with the flags recorded; `None` for CMP/TEST (no write-back).
#[inline(always)]
fn alu_apply<const OP: u8, const S: usize>(cpu: &mut Cpu, a: u64, b: u64) -> Option<u64> {
    let (r, op) = compute_cf::<OP>(cpu.state.flags.cf(), a, b);
    let r = r & size_mask(S);
    cpu.state.flags.set_lazy(op, S as u32 * 8, a, b, r);
    (OP != alu::CMP && OP != alu::TEST).then_some(r)
}

fn alu_rr<const OP: u8, const S: usize>(cpu: &mut Cpu, d: &DecodedInsn) -> Res<()> {
    let o = &d.ops;
    let (a, b) = (cpu.g(o.r0) & size_mask(S), cpu.g(o.r1) & size_mask(S));
    if let Some(r) = alu_apply::<OP, S>(cpu, a, b) {
        cpu.set_gpr_sized(o.r0 as usize & 15, S, r);
    }
    Ok(())
}

fn alu_ri<const OP: u8, const S: usize>(cpu: &mut Cpu, d: &DecodedInsn) -> Res<()> {
    let o = &d.ops;
    let a = cpu.g(o.r0) & size_mask(S);
    if let Some(r) = alu_apply::<OP, S>(cpu, a, o.imm) {
        cpu.set_gpr_sized(o.r0 as usize & 15, S, r);
    }
    Ok(())
}

fn alu_rm<const OP: u8, const S: usize>(cpu: &mut Cpu, d: &DecodedInsn) -> Res<()> {
    let o = &d.ops;
    let b = cpu.fast_load(o, S)?;
    let a = cpu.g(o.r0) & size_mask(S);
    if let Some(r) = alu_apply::<OP, S>(cpu, a, b) {
        cpu.set_gpr_sized(o.r0 as usize & 15, S, r);
    }
    Ok(())
}

/// Memory destination: the store happens before the flags change, so a faulting store
/// leaves the flags as they were.
#[inline(always)]
fn alu_m<const OP: u8, const S: usize>(cpu: &mut Cpu, o: &Ops, b: u64) -> Res<()> {
    let a = cpu.fast_load(o, S)?;
    let (r, op) = compute_cf::<OP>(cpu.state.flags.cf(), a, b);
    let r = r & size_mask(S);
    if OP != alu::CMP && OP != alu::TEST {
        cpu.fast_store(o, S, r)?;
    }
    cpu.state.flags.set_lazy(op, S as u32 * 8, a, b, r);
    Ok(())
}

fn alu_mr<const OP: u8, const S: usize>(cpu: &mut Cpu, d: &DecodedInsn) -> Res<()> {
    let o = &d.ops;
    let b = cpu.g(o.r1) & size_mask(S);
    alu_m::<OP, S>(cpu, o, b)
}

fn alu_mi<const OP: u8, const S: usize>(cpu: &mut Cpu, d: &DecodedInsn) -> Res<()> {
    let o = &d.ops;
    alu_m::<OP, S>(cpu, o, o.imm)
}

/// INC (`INC` true) or DEC of a register.
fn incdec<const INC: bool, const S: usize>(cpu: &mut Cpu, d: &DecodedInsn) -> Res<()> {
    let o = &d.ops;
    let a = cpu.g(o.r0) & size_mask(S);
    let (r, op) = if INC {
        (a.wrapping_add(1), FlagOp::Inc)
    } else {
        (a.wrapping_sub(1), FlagOp::Dec)
    };
    let r = r & size_mask(S);
    cpu.set_gpr_sized(o.r0 as usize & 15, S, r);
    cpu.state.flags.set_lazy(op, S as u32 * 8, a, 1, r);
    Ok(())
}

fn lea<const S: usize>(cpu: &mut Cpu, d: &DecodedInsn) -> Res<()> {
    let o = &d.ops;
    let a = cpu.fast_ea(&o.mem);
    cpu.set_gpr_sized(o.r0 as usize & 15, S, a & size_mask(S));
    Ok(())
}

fn movzx_r(cpu: &mut Cpu, d: &DecodedInsn) -> Res<()> {
    let o = &d.ops;
    let v = cpu.g(o.r1) & size_mask(o.aux as usize);
    cpu.set_gpr_sized(o.r0 as usize & 15, o.size as usize, v);
    Ok(())
}

/// MOVZX from memory, `S` the source size.
fn movzx_m<const S: usize>(cpu: &mut Cpu, d: &DecodedInsn) -> Res<()> {
    let o = &d.ops;
    let v = cpu.fast_load(o, S)?;
    cpu.set_gpr_sized(o.r0 as usize & 15, o.size as usize, v);
    Ok(())
}

fn movsx_r(cpu: &mut Cpu, d: &DecodedInsn) -> Res<()> {
    let o = &d.ops;
    let v = sext(cpu.g(o.r1), o.aux as usize) & o.mask;
    cpu.set_gpr_sized(o.r0 as usize & 15, o.size as usize, v);
    Ok(())
}

/// MOVSX/MOVSXD from memory, `S` the source size.
fn movsx_m<const S: usize>(cpu: &mut Cpu, d: &DecodedInsn) -> Res<()> {
    let o = &d.ops;
    let v = sext(cpu.fast_load(o, S)?, S) & o.mask;
    cpu.set_gpr_sized(o.r0 as usize & 15, o.size as usize, v);
    Ok(())
}

fn push_r(cpu: &mut Cpu, d: &DecodedInsn) -> Res<()> {
    let o = &d.ops;
    let v = cpu.g(o.r0);
    if cpu.block_mode.flat {
        let sp = cpu.state.gpr[4].wrapping_sub(u64::from(o.size));
        cpu.quick_write(sreg::SS, sp, o.size as usize, v)?;
        cpu.state.gpr[4] = sp;
        return Ok(());
    }
    cpu.push(v, o.size as usize)
}

fn pop_r(cpu: &mut Cpu, d: &DecodedInsn) -> Res<()> {
    let o = &d.ops;
    let v = if cpu.block_mode.flat {
        cpu.quick_read(sreg::SS, cpu.state.gpr[4], o.size as usize)?
    } else {
        cpu.peek(0, o.size as usize)?
    };
    let sp = cpu.state.gpr[4].wrapping_add(u64::from(o.size));
    cpu.set_sp(sp);
    // After the SP update, so POP RSP loads the popped value.
    cpu.set_gpr_sized(o.r0 as usize & 15, o.size as usize, v);
    Ok(())
}

const SHL: u8 = 0;
const SHR: u8 = 1;
const SAR: u8 = 2;

const SHIFT_RI: [Exec; 3] = [shift_ri::<SHL>, shift_ri::<SHR>, shift_ri::<SAR>];
const SHIFT_RC: [Exec; 3] = [shift_rc::<SHL>, shift_rc::<SHR>, shift_rc::<SAR>];

/// A shift of a register by a non-zero masked count `c`, through the shared semantics.
#[inline(always)]
fn shift_go<const K: u8>(cpu: &mut Cpu, o: &Ops, c: u32) -> Res<()> {
    let kind = match K {
        SHL => shift::Kind::Shl,
        SHR => shift::Kind::Shr,
        _ => shift::Kind::Sar,
    };
    let size = o.size as usize;
    let a = cpu.g(o.r0) & o.mask;
    // CF in only matters to RCL/RCR.
    let (r, cf, of, arith) = shift::compute(kind, a, c, size, false);
    cpu.set_gpr_sized(o.r0 as usize & 15, size, r);
    shift::set_flags(cpu, u32::from(o.size) * 8, r, cf, of, arith);
    Ok(())
}

fn shift_ri<const K: u8>(cpu: &mut Cpu, d: &DecodedInsn) -> Res<()> {
    shift_go::<K>(cpu, &d.ops, d.ops.imm as u32)
}

fn shift_rc<const K: u8>(cpu: &mut Cpu, d: &DecodedInsn) -> Res<()> {
    let o = &d.ops;
    let c = (cpu.state.gpr[1] & if o.size == 8 { 0x3f } else { 0x1f }) as u32;
    if c == 0 {
        return via_handler(cpu, d);
    }
    shift_go::<K>(cpu, o, c)
}

/// Signed `a * b` truncated to the operand size, into the destination register.
#[inline(always)]
fn imul_go(cpu: &mut Cpu, o: &Ops, a: u64, b: u64) -> Res<()> {
    let size = o.size as usize;
    let (_, lo, overflow) = muldiv::signed_product(a, b, size);
    cpu.set_gpr_sized(o.r0 as usize & 15, size, lo);
    muldiv::mul_flags(cpu, u32::from(o.size) * 8, lo, overflow);
    Ok(())
}

fn imul2_r(cpu: &mut Cpu, d: &DecodedInsn) -> Res<()> {
    let o = &d.ops;
    imul_go(cpu, o, cpu.g(o.r0), cpu.g(o.r1))
}

fn imul2_m(cpu: &mut Cpu, d: &DecodedInsn) -> Res<()> {
    let o = &d.ops;
    let b = cpu.fast_load(o, o.size as usize)?;
    imul_go(cpu, o, cpu.g(o.r0), b)
}

fn imul3_r(cpu: &mut Cpu, d: &DecodedInsn) -> Res<()> {
    let o = &d.ops;
    imul_go(cpu, o, cpu.g(o.r1), o.imm)
}

fn imul3_m(cpu: &mut Cpu, d: &DecodedInsn) -> Res<()> {
    let o = &d.ops;
    let a = cpu.fast_load(o, o.size as usize)?;
    imul_go(cpu, o, a, o.imm)
}

/// CMOVcc: the source is read (and may fault) whatever the condition; the 32-bit form
/// zero-extends the destination even when the condition is false.
#[inline(always)]
fn cmov_go(cpu: &mut Cpu, o: &Ops, src: u64) -> Res<()> {
    let v = if cpu.state.flags.cond(o.aux) {
        src
    } else {
        cpu.g(o.r0)
    };
    cpu.set_gpr_sized(o.r0 as usize & 15, o.size as usize, v & o.mask);
    Ok(())
}

fn cmov_r(cpu: &mut Cpu, d: &DecodedInsn) -> Res<()> {
    let o = &d.ops;
    cmov_go(cpu, o, cpu.g(o.r1))
}

fn cmov_m(cpu: &mut Cpu, d: &DecodedInsn) -> Res<()> {
    let o = &d.ops;
    let src = cpu.fast_load(o, o.size as usize)?;
    cmov_go(cpu, o, src)
}

fn setcc_r(cpu: &mut Cpu, d: &DecodedInsn) -> Res<()> {
    let o = &d.ops;
    let v = u64::from(cpu.state.flags.cond(o.aux));
    cpu.set_gpr_sized(o.r0 as usize & 15, 1, v);
    Ok(())
}

/// CALL rel32 in 64-bit mode: push the return address, then go (a bad target leaves RSP as
/// it was, as the general form does).
fn call_rel64(cpu: &mut Cpu, d: &DecodedInsn) -> Res<()> {
    if !cpu.block_mode.flat {
        return via_handler(cpu, d);
    }
    let old = cpu.state.gpr[4];
    let sp = old.wrapping_sub(8);
    cpu.quick_write(sreg::SS, sp, 8, cpu.next_rip)?;
    cpu.state.gpr[4] = sp;
    if let Err(f) = super::control::set_target(cpu, d.ops.imm) {
        cpu.state.gpr[4] = old;
        return Err(f);
    }
    Ok(())
}

/// JMP rel8/rel32 in 64-bit mode.
fn jmp_rel(cpu: &mut Cpu, d: &DecodedInsn) -> Res<()> {
    super::control::set_target(cpu, d.ops.imm)
}

/// RET / RET imm16 in 64-bit mode.
fn ret64(cpu: &mut Cpu, d: &DecodedInsn) -> Res<()> {
    if !cpu.block_mode.flat {
        return via_handler(cpu, d);
    }
    let sp = cpu.state.gpr[4];
    let t = cpu.quick_read(sreg::SS, sp, 8)?;
    super::control::set_target(cpu, t)?;
    cpu.state.gpr[4] = sp.wrapping_add(8 + d.ops.imm);
    Ok(())
}

/// Jcc by condition code, each with its condition known at compile time.
const JCC: [Exec; 16] = [
    jcc::<0>, jcc::<1>, jcc::<2>, jcc::<3>, jcc::<4>, jcc::<5>, jcc::<6>, jcc::<7>, jcc::<8>,
    jcc::<9>, jcc::<10>, jcc::<11>, jcc::<12>, jcc::<13>, jcc::<14>, jcc::<15>,
];

fn jcc<const CC: u8>(cpu: &mut Cpu, d: &DecodedInsn) -> Res<()> {
    let o = &d.ops;
    if cpu.state.flags.cond(CC) {
        super::control::set_target(cpu, o.imm)
    } else {
        Ok(())
    }
}

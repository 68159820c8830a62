//! The handler table: which semantics function runs a decoded instruction, chosen once at
//! decode time from its mnemonic (and, for MOV, its operand kinds). Also says which
//! instructions must end a block because they can change how later code is decoded or run.

use iced_x86::{CpuidFeature, Instruction, Mnemonic as M, OpKind, Register};

use super::{sse_table, Handler};
use crate::cpu::exec::{
    alu, bcd, bit, control, cpuid, fxsave, msr, muldiv, shift, stack, string, system, x87,
};
use crate::cpu::fault::{ud, Res};
use crate::cpu::Cpu;

/// Invalid encodings: #UD (not counted as unimplemented).
pub fn invalid(_cpu: &mut Cpu, _i: &Instruction) -> Res<()> {
    Err(ud())
}

fn is_sreg(i: &Instruction, n: u32) -> bool {
    i.op_kind(n) == OpKind::Register && i.op_register(n).is_segment_register()
}

fn reg_in(i: &Instruction, n: u32, lo: Register, hi: Register) -> bool {
    i.op_kind(n) == OpKind::Register && {
        let r = i.op_register(n) as usize;
        (lo as usize..=hi as usize).contains(&r)
    }
}

/// The semantics of `i` and whether it ends its block.
pub fn handler_for(i: &Instruction) -> (Handler, bool) {
    if let Some(h) = alu::arith_handler(i.mnemonic(), i) {
        return (h, false);
    }
    if let Some(h) = sse_table::handler(i) {
        return (h, false);
    }
    let h: Handler = match i.mnemonic() {
        M::Add => alu::add,
        M::Adc => alu::adc,
        M::Sub => alu::sub,
        M::Sbb => alu::sbb,
        M::And => alu::and,
        M::Or => alu::or,
        M::Xor => alu::xor,
        M::Cmp => alu::cmp,
        M::Test => alu::test,
        M::Inc | M::Dec if alu::is_gpr(i, 0) => alu::incdec_reg,
        M::Inc => alu::inc,
        M::Dec => alu::dec,
        M::Neg => alu::neg,
        M::Not => alu::not,
        M::Mov => {
            if is_sreg(i, 0) || is_sreg(i, 1) {
                return (system::mov_sreg, true);
            }
            if reg_in(i, 0, Register::CR0, Register::CR15)
                || reg_in(i, 1, Register::CR0, Register::CR15)
            {
                return (system::mov_cr, true);
            }
            if reg_in(i, 0, Register::DR0, Register::DR15)
                || reg_in(i, 1, Register::DR0, Register::DR15)
            {
                return (system::mov_dr, true);
            }
            if alu::is_gpr(i, 0) && alu::is_gpr(i, 1) {
                alu::mov_rr
            } else if alu::is_gpr(i, 0)
                && !matches!(i.op1_kind(), OpKind::Register | OpKind::Memory)
            {
                alu::mov_ri
            } else {
                alu::mov
            }
        }
        M::Movzx => alu::movzx,
        M::Movsx | M::Movsxd => alu::movsx,
        M::Lea => alu::lea,
        M::Xchg => alu::xchg,
        M::Cmpxchg => alu::cmpxchg,
        M::Cmpxchg8b => alu::cmpxchg8b,
        M::Cmpxchg16b => alu::cmpxchg16b,
        M::Xadd => alu::xadd,
        M::Bswap => alu::bswap,
        M::Cbw | M::Cwde | M::Cdqe => alu::cbw_family,
        M::Cwd | M::Cdq | M::Cqo => alu::cwd_family,
        M::Cmovo
        | M::Cmovno
        | M::Cmovb
        | M::Cmovae
        | M::Cmove
        | M::Cmovne
        | M::Cmovbe
        | M::Cmova
        | M::Cmovs
        | M::Cmovns
        | M::Cmovp
        | M::Cmovnp
        | M::Cmovl
        | M::Cmovge
        | M::Cmovle
        | M::Cmovg => alu::cmovcc,
        M::Seto
        | M::Setno
        | M::Setb
        | M::Setae
        | M::Sete
        | M::Setne
        | M::Setbe
        | M::Seta
        | M::Sets
        | M::Setns
        | M::Setp
        | M::Setnp
        | M::Setl
        | M::Setge
        | M::Setle
        | M::Setg => alu::setcc,
        M::Shl | M::Sal => shift::shl,
        M::Shr => shift::shr,
        M::Sar => shift::sar,
        M::Rol => shift::rol,
        M::Ror => shift::ror,
        M::Rcl => shift::rcl,
        M::Rcr => shift::rcr,
        M::Shld => shift::shld,
        M::Shrd => shift::shrd,
        M::Mul => muldiv::mul,
        M::Imul => muldiv::imul,
        M::Div => muldiv::div,
        M::Idiv => muldiv::idiv,
        M::Bt | M::Bts | M::Btr | M::Btc => bit::bt_family,
        M::Bsf | M::Tzcnt => bit::bsf,
        M::Bsr | M::Lzcnt => bit::bsr,
        M::Popcnt => bit::popcnt,
        M::Daa => bcd::daa,
        M::Das => bcd::das,
        M::Aaa => bcd::aaa,
        M::Aas => bcd::aas,
        M::Aam => bcd::aam,
        M::Aad => bcd::aad,
        M::Movsb
        | M::Movsw
        | M::Movsd
        | M::Movsq
        | M::Stosb
        | M::Stosw
        | M::Stosd
        | M::Stosq
        | M::Lodsb
        | M::Lodsw
        | M::Lodsd
        | M::Lodsq
        | M::Cmpsb
        | M::Cmpsw
        | M::Cmpsd
        | M::Cmpsq
        | M::Scasb
        | M::Scasw
        | M::Scasd
        | M::Scasq
        | M::Insb
        | M::Insw
        | M::Insd
        | M::Outsb
        | M::Outsw
        | M::Outsd
            if i.op_count() == 0 || i.op0_kind() != OpKind::Register || is_string(i) =>
        {
            string::string
        }
        M::Push => stack::push,
        M::Pop => {
            if is_sreg(i, 0) {
                return (stack::pop, true);
            }
            stack::pop
        }
        M::Pusha | M::Pushad => stack::pusha,
        M::Popa | M::Popad => stack::popa,
        M::Pushf | M::Pushfd | M::Pushfq => stack::pushf,
        M::Popf | M::Popfd | M::Popfq => return (stack::popf, true),
        M::Enter => stack::enter,
        M::Leave => stack::leave,
        M::Jmp => control::jmp,
        M::Jo
        | M::Jno
        | M::Jb
        | M::Jae
        | M::Je
        | M::Jne
        | M::Jbe
        | M::Ja
        | M::Js
        | M::Jns
        | M::Jp
        | M::Jnp
        | M::Jl
        | M::Jge
        | M::Jle
        | M::Jg => control::jcc,
        M::Call => control::call,
        M::Ret => control::ret,
        M::Retf => control::retf,
        M::Loop | M::Loope | M::Loopne | M::Jcxz | M::Jecxz | M::Jrcxz => control::loop_family,
        M::Int => control::int,
        M::Int3 => control::int3,
        M::Int1 => control::int1,
        M::Into => control::into,
        M::Iret | M::Iretd | M::Iretq => control::iret,
        M::Nop
        | M::Pause
        | M::Wbinvd
        | M::Invd
        | M::Clflush
        | M::Clflushopt
        | M::Prefetch
        | M::Prefetchnta
        | M::Prefetcht0
        | M::Prefetcht1
        | M::Prefetcht2
        | M::Prefetchw
        | M::Lfence
        | M::Sfence
        | M::Mfence => system::nop,
        // ENDBR and RDSSP sit in the hint-NOP space: NOPs on a CPU without CET.
        M::Endbr32 | M::Endbr64 | M::Rdsspd | M::Rdsspq => system::nop,
        M::Xlatb => alu::xlat,
        M::Salc => alu::salc,
        M::Bound => alu::bound,
        M::Arpl => alu::arpl,
        M::Ud0 | M::Ud1 | M::Ud2 => system::ud2,
        M::Hlt => system::hlt,
        M::Cli => system::cli,
        M::Sti => return (system::sti, true),
        M::Clc | M::Stc | M::Cmc | M::Cld | M::Std => system::flag_op,
        M::Lahf => system::lahf,
        M::Sahf => system::sahf,
        M::In => system::in_,
        M::Out => system::out,
        M::Lds | M::Les | M::Lfs | M::Lgs | M::Lss => return (system::load_far, true),
        M::Clts => system::clts,
        M::Lmsw => return (system::lmsw, true),
        M::Smsw => system::smsw,
        M::Lgdt | M::Lidt => return (system::lgdt_lidt, true),
        M::Sgdt | M::Sidt => system::sgdt_sidt,
        M::Sldt | M::Str => system::sldt_str,
        M::Lldt => return (system::lldt, true),
        M::Ltr => return (system::ltr, true),
        M::Invlpg => return (system::invlpg, true),
        M::Rdtsc | M::Rdtscp => system::rdtsc,
        M::Lar | M::Lsl => system::lar_lsl,
        M::Verr | M::Verw => system::verr_verw,
        M::Cpuid => cpuid::exec_cpuid,
        M::Rdmsr => msr::rdmsr,
        M::Wrmsr => return (msr::wrmsr, true),
        M::Syscall => msr::syscall,
        M::Sysret | M::Sysretq => msr::sysret,
        M::Sysenter => msr::sysenter,
        M::Sysexit | M::Sysexitq => msr::sysexit,
        M::Swapgs => msr::swapgs,
        M::Fxsave | M::Fxsave64 => fxsave::fxsave,
        M::Fxrstor | M::Fxrstor64 => fxsave::fxrstor,
        m => match x87::handler(m) {
            Some(h) => h,
            None => return (fallback(i), true),
        },
    };
    (h, false)
}

fn is_string(i: &Instruction) -> bool {
    (0..i.op_count()).any(|n| {
        matches!(
            i.op_kind(n),
            OpKind::MemorySegSI
                | OpKind::MemorySegESI
                | OpKind::MemorySegRSI
                | OpKind::MemoryESDI
                | OpKind::MemoryESEDI
                | OpKind::MemoryESRDI
        )
    })
}

/// x87 → #NM/#UD, SSE/MMX → #NM/#UD, anything else → #UD counted as unimplemented.
fn fallback(i: &Instruction) -> Handler {
    let feats = i.cpuid_features();
    if feats.iter().any(|f| {
        matches!(
            f,
            CpuidFeature::FPU | CpuidFeature::FPU287 | CpuidFeature::FPU387
        )
    }) {
        system::x87
    } else if feats.iter().any(|f| {
        matches!(
            f,
            CpuidFeature::MMX
                | CpuidFeature::SSE
                | CpuidFeature::SSE2
                | CpuidFeature::SSE3
                | CpuidFeature::SSSE3
                | CpuidFeature::SSE4_1
                | CpuidFeature::SSE4_2
                | CpuidFeature::FXSR
        )
    }) {
        system::sse
    } else {
        system::unimplemented
    }
}

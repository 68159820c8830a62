//! The SSE/SSE2 part of the handler table: the XMM forms of SSE and SSE2 instructions map to
//! `exec::sse`. MMX-register forms, later SSE generations and VEX encodings are not matched
//! here (they reach `table::fallback`, which answers #NM/#UD).

use iced_x86::{CpuidFeature, Instruction, Mnemonic as M, OpKind};

use super::Handler;
use crate::cpu::exec::sse::{arith, cvt, int, mov, shuf};

/// Is this instruction an SSE or SSE2 form with no MMX register operand?
fn sse12_xmm(i: &Instruction) -> bool {
    let feats = i.cpuid_features();
    if feats.is_empty()
        || !feats
            .iter()
            .all(|f| matches!(f, CpuidFeature::SSE | CpuidFeature::SSE2))
    {
        return false;
    }
    !(0..i.op_count()).any(|n| i.op_kind(n) == OpKind::Register && i.op_register(n).is_mm())
}

/// The SSE/SSE2 semantics of `i`, if it is one we implement.
pub fn handler(i: &Instruction) -> Option<Handler> {
    if !sse12_xmm(i) {
        return None;
    }
    let h: Handler = match i.mnemonic() {
        M::Movaps | M::Movapd | M::Movdqa | M::Movntps | M::Movntpd | M::Movntdq => {
            mov::mov_aligned
        }
        M::Movups | M::Movupd | M::Movdqu => mov::mov_unaligned,
        M::Movss => mov::movss,
        M::Movsd => mov::movsd,
        M::Movd | M::Movq => mov::movd_movq,
        M::Movhps | M::Movhpd => mov::movhp,
        M::Movlps | M::Movlpd => mov::movlp,
        M::Movhlps => mov::movhlps,
        M::Movlhps => mov::movlhps,
        M::Movmskps => mov::movmskps,
        M::Movmskpd => mov::movmskpd,
        M::Pmovmskb => mov::pmovmskb,
        M::Movnti => mov::movnti,
        M::Maskmovdqu => mov::maskmovdqu,
        M::Ldmxcsr => mov::ldmxcsr,
        M::Stmxcsr => mov::stmxcsr,
        M::Addps => arith::addps,
        M::Addss => arith::addss,
        M::Addpd => arith::addpd,
        M::Addsd => arith::addsd,
        M::Subps => arith::subps,
        M::Subss => arith::subss,
        M::Subpd => arith::subpd,
        M::Subsd => arith::subsd,
        M::Mulps => arith::mulps,
        M::Mulss => arith::mulss,
        M::Mulpd => arith::mulpd,
        M::Mulsd => arith::mulsd,
        M::Divps => arith::divps,
        M::Divss => arith::divss,
        M::Divpd => arith::divpd,
        M::Divsd => arith::divsd,
        M::Minps => arith::minps,
        M::Minss => arith::minss,
        M::Minpd => arith::minpd,
        M::Minsd => arith::minsd,
        M::Maxps => arith::maxps,
        M::Maxss => arith::maxss,
        M::Maxpd => arith::maxpd,
        M::Maxsd => arith::maxsd,
        M::Sqrtps => arith::sqrtps,
        M::Sqrtss => arith::sqrtss,
        M::Sqrtpd => arith::sqrtpd,
        M::Sqrtsd => arith::sqrtsd,
        M::Cmpps => arith::cmpps,
        M::Cmpss => arith::cmpss,
        M::Cmppd => arith::cmppd,
        M::Cmpsd => arith::cmpsd,
        M::Comiss => arith::comiss,
        M::Comisd => arith::comisd,
        M::Ucomiss => arith::ucomiss,
        M::Ucomisd => arith::ucomisd,
        M::Rcpps => arith::rcpps,
        M::Rcpss => arith::rcpss,
        M::Rsqrtps => arith::rsqrtps,
        M::Rsqrtss => arith::rsqrtss,
        M::Andps | M::Andpd | M::Pand => int::pand,
        M::Andnps | M::Andnpd | M::Pandn => int::pandn,
        M::Orps | M::Orpd | M::Por => int::por,
        M::Xorps | M::Xorpd | M::Pxor => int::pxor,
        M::Cvtsi2ss => cvt::cvtsi2ss,
        M::Cvtsi2sd => cvt::cvtsi2sd,
        M::Cvtss2si => cvt::cvtss2si,
        M::Cvttss2si => cvt::cvttss2si,
        M::Cvtsd2si => cvt::cvtsd2si,
        M::Cvttsd2si => cvt::cvttsd2si,
        M::Cvtss2sd => cvt::cvtss2sd,
        M::Cvtsd2ss => cvt::cvtsd2ss,
        M::Cvtps2pd => cvt::cvtps2pd,
        M::Cvtpd2ps => cvt::cvtpd2ps,
        M::Cvtdq2ps => cvt::cvtdq2ps,
        M::Cvtdq2pd => cvt::cvtdq2pd,
        M::Cvtps2dq => cvt::cvtps2dq,
        M::Cvttps2dq => cvt::cvttps2dq,
        M::Cvtpd2dq => cvt::cvtpd2dq,
        M::Cvttpd2dq => cvt::cvttpd2dq,
        M::Paddb => int::paddb,
        M::Paddw => int::paddw,
        M::Paddd => int::paddd,
        M::Paddq => int::paddq,
        M::Psubb => int::psubb,
        M::Psubw => int::psubw,
        M::Psubd => int::psubd,
        M::Psubq => int::psubq,
        M::Paddsb => int::paddsb,
        M::Paddsw => int::paddsw,
        M::Psubsb => int::psubsb,
        M::Psubsw => int::psubsw,
        M::Paddusb => int::paddusb,
        M::Paddusw => int::paddusw,
        M::Psubusb => int::psubusb,
        M::Psubusw => int::psubusw,
        M::Pcmpeqb => int::pcmpeqb,
        M::Pcmpeqw => int::pcmpeqw,
        M::Pcmpeqd => int::pcmpeqd,
        M::Pcmpgtb => int::pcmpgtb,
        M::Pcmpgtw => int::pcmpgtw,
        M::Pcmpgtd => int::pcmpgtd,
        M::Pmullw => int::pmullw,
        M::Pmulhw => int::pmulhw,
        M::Pmulhuw => int::pmulhuw,
        M::Pmuludq => int::pmuludq,
        M::Pmaddwd => int::pmaddwd,
        M::Pavgb => int::pavgb,
        M::Pavgw => int::pavgw,
        M::Pminub => int::pminub,
        M::Pmaxub => int::pmaxub,
        M::Pminsw => int::pminsw,
        M::Pmaxsw => int::pmaxsw,
        M::Psadbw => int::psadbw,
        M::Psllw => shuf::psllw,
        M::Pslld => shuf::pslld,
        M::Psllq => shuf::psllq,
        M::Psrlw => shuf::psrlw,
        M::Psrld => shuf::psrld,
        M::Psrlq => shuf::psrlq,
        M::Psraw => shuf::psraw,
        M::Psrad => shuf::psrad,
        M::Pslldq => shuf::pslldq,
        M::Psrldq => shuf::psrldq,
        M::Pshufd => shuf::pshufd,
        M::Pshuflw => shuf::pshuflw,
        M::Pshufhw => shuf::pshufhw,
        M::Shufps => shuf::shufps,
        M::Shufpd => shuf::shufpd,
        M::Punpcklbw => shuf::punpcklbw,
        M::Punpckhbw => shuf::punpckhbw,
        M::Punpcklwd => shuf::punpcklwd,
        M::Punpckhwd => shuf::punpckhwd,
        M::Punpckldq | M::Unpcklps => shuf::punpckldq,
        M::Punpckhdq | M::Unpckhps => shuf::punpckhdq,
        M::Punpcklqdq | M::Unpcklpd => shuf::punpcklqdq,
        M::Punpckhqdq | M::Unpckhpd => shuf::punpckhqdq,
        M::Packsswb => shuf::packsswb,
        M::Packssdw => shuf::packssdw,
        M::Packuswb => shuf::packuswb,
        M::Pextrw => shuf::pextrw,
        M::Pinsrw => shuf::pinsrw,
        _ => return None,
    };
    Some(h)
}

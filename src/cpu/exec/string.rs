//! String instructions: MOVS/STOS/LODS/CMPS/SCAS/INS/OUTS with REP/REPE/REPNE and any address
//! size (the address size comes from iced-x86's string operand kinds). Registers are committed
//! after every element so a fault mid-way leaves a restartable state; a long REP yields after
//! [`CHUNK`] elements by re-executing itself, so kicks and interrupts are not starved.
//!
//! REP MOVS and REP STOS going forward run in bulk ([`bulk_rep`]): per page, one TLB lookup on
//! each side and one host copy or fill, the registers committed after each page. Anything the
//! bulk path does not take (backward, MMIO, overlapping copies that replicate, segment-limit
//! edges, faults) falls through to the element loop, which stays the reference semantics.

use iced_x86::{Instruction, Mnemonic, OpKind};

use super::{mem_seg, size_mask};
use crate::cpu::fault::Res;
use crate::cpu::flags::{FlagOp, AC, DF};
use crate::cpu::mmu::tlb::Access;
use crate::cpu::state::{cr0, sreg};
use crate::cpu::Cpu;

/// Elements per execution of a REP string instruction before it yields.
const CHUNK: u64 = 16384;

fn addr_size(i: &Instruction) -> usize {
    for n in 0..i.op_count() {
        match i.op_kind(n) {
            OpKind::MemorySegSI | OpKind::MemoryESDI => return 2,
            OpKind::MemorySegESI | OpKind::MemoryESEDI => return 4,
            OpKind::MemorySegRSI | OpKind::MemoryESRDI => return 8,
            _ => {}
        }
    }
    8
}

/// All string instructions.
pub fn string(cpu: &mut Cpu, i: &Instruction) -> Res<()> {
    let asz = addr_size(i);
    let am = size_mask(asz);
    let es = i.memory_size().size().max(1);
    let mn = i.mnemonic();
    let step = if cpu.state.flags.sys(DF) {
        (es as u64).wrapping_neg()
    } else {
        es as u64
    };
    let rep = i.has_rep_prefix() || i.has_repne_prefix();
    let compare = matches!(
        mn,
        Mnemonic::Cmpsb
            | Mnemonic::Cmpsw
            | Mnemonic::Cmpsd
            | Mnemonic::Cmpsq
            | Mnemonic::Scasb
            | Mnemonic::Scasw
            | Mnemonic::Scasd
            | Mnemonic::Scasq
    );
    let src_seg = mem_seg(i);
    let mut done = 0u64;
    if rep && step == es as u64 {
        if let Some(d) = bulk_rep(cpu, mn, src_seg, asz, es) {
            done = d;
        }
    }
    loop {
        if rep && cpu.state.gpr[1] & am == 0 {
            break;
        }
        if rep && done == CHUNK {
            // Come back to this instruction: RIP stays, the block ends.
            cpu.next_rip = cpu.state.rip;
            cpu.stop_block = true;
            return Ok(());
        }
        let si = cpu.state.gpr[6] & am;
        let di = cpu.state.gpr[7] & am;
        let (mut adv_si, mut adv_di) = (false, false);
        match mn {
            Mnemonic::Movsb | Mnemonic::Movsw | Mnemonic::Movsd | Mnemonic::Movsq => {
                let v = cpu.read_seg(src_seg, si, es)?;
                cpu.write_seg(sreg::ES, di, es, v)?;
                adv_si = true;
                adv_di = true;
            }
            Mnemonic::Stosb | Mnemonic::Stosw | Mnemonic::Stosd | Mnemonic::Stosq => {
                cpu.write_seg(sreg::ES, di, es, cpu.state.gpr[0])?;
                adv_di = true;
            }
            Mnemonic::Lodsb | Mnemonic::Lodsw | Mnemonic::Lodsd | Mnemonic::Lodsq => {
                let v = cpu.read_seg(src_seg, si, es)?;
                cpu.set_gpr_sized(0, es, v);
                adv_si = true;
            }
            Mnemonic::Cmpsb | Mnemonic::Cmpsw | Mnemonic::Cmpsd | Mnemonic::Cmpsq => {
                let a = cpu.read_seg(src_seg, si, es)?;
                let b = cpu.read_seg(sreg::ES, di, es)?;
                let r = a.wrapping_sub(b) & size_mask(es);
                cpu.state
                    .flags
                    .set_lazy(FlagOp::Sub, es as u32 * 8, a, b, r);
                adv_si = true;
                adv_di = true;
            }
            Mnemonic::Scasb | Mnemonic::Scasw | Mnemonic::Scasd | Mnemonic::Scasq => {
                let a = cpu.state.gpr[0] & size_mask(es);
                let b = cpu.read_seg(sreg::ES, di, es)?;
                let r = a.wrapping_sub(b) & size_mask(es);
                cpu.state
                    .flags
                    .set_lazy(FlagOp::Sub, es as u32 * 8, a, b, r);
                adv_di = true;
            }
            Mnemonic::Insb | Mnemonic::Insw | Mnemonic::Insd => {
                let port = cpu.state.gpr[2] as u16;
                cpu.io_allowed(port, es)?;
                cpu.probe_write_seg(sreg::ES, di, es)?;
                let v = cpu.port_in(port, es);
                cpu.write_seg(sreg::ES, di, es, v)?;
                adv_di = true;
            }
            Mnemonic::Outsb | Mnemonic::Outsw | Mnemonic::Outsd => {
                let port = cpu.state.gpr[2] as u16;
                cpu.io_allowed(port, es)?;
                let v = cpu.read_seg(src_seg, si, es)?;
                cpu.port_out(port, es, v);
                adv_si = true;
            }
            _ => return Err(crate::cpu::fault::ud()),
        }
        if adv_si {
            cpu.set_gpr_sized(6, asz, si.wrapping_add(step));
        }
        if adv_di {
            cpu.set_gpr_sized(7, asz, di.wrapping_add(step));
        }
        if !rep {
            break;
        }
        let c = (cpu.state.gpr[1] & am).wrapping_sub(1);
        cpu.set_gpr_sized(1, asz, c);
        done += 1;
        if compare {
            let zf = cpu.state.flags.zf();
            if (i.has_repe_prefix() && !zf) || (i.has_repne_prefix() && zf) {
                break;
            }
        }
    }
    Ok(())
}

/// REP MOVS/STOS forward in page-sized host copies: returns the elements done (registers
/// already advanced), or `None` for instructions it does not handle. Stops early, leaving the
/// rest to the element loop, at the first thing that needs care.
fn bulk_rep(cpu: &mut Cpu, mn: Mnemonic, src_seg: usize, asz: usize, es: usize) -> Option<u64> {
    let movs = match mn {
        Mnemonic::Movsb | Mnemonic::Movsw | Mnemonic::Movsd | Mnemonic::Movsq => true,
        Mnemonic::Stosb | Mnemonic::Stosw | Mnemonic::Stosd | Mnemonic::Stosq => false,
        _ => return None,
    };
    let am = size_mask(asz);
    let user = cpu.state.cpl() == 3;
    // Alignment checking (#AC) is per element: leave it to the element loop.
    if user && es > 1 && cpu.state.cr0 & cr0::AM != 0 && cpu.state.flags.sys(AC) {
        return None;
    }
    let esz = es as u64;
    let mut done = 0u64;
    while done < CHUNK {
        let count = cpu.state.gpr[1] & am;
        if count == 0 {
            break;
        }
        let si = cpu.state.gpr[6] & am;
        let di = cpu.state.gpr[7] & am;
        // Elements until either side reaches its page end (at least one whole element).
        let Ok(dlin) = cpu.linear(sreg::ES, di, es, true) else {
            break;
        };
        let mut n = count.min(CHUNK - done).min((0x1000 - (dlin & 0xfff)) / esz);
        let slin = if movs {
            let Ok(l) = cpu.linear(src_seg, si, es, false) else {
                break;
            };
            n = n.min((0x1000 - (l & 0xfff)) / esz);
            l
        } else {
            0
        };
        // The address registers must not wrap inside the run, and the last element must pass
        // the same segment checks as the first.
        let span = n * esz;
        if n == 0 || di + span - 1 > am || (movs && si + span - 1 > am) {
            break;
        }
        if cpu.linear(sreg::ES, di + span - esz, es, true).is_err()
            || (movs && cpu.linear(src_seg, si + span - esz, es, false).is_err())
        {
            break;
        }
        let src = if movs {
            match cpu.host_span(slin, Access::Read, user) {
                Ok(Some(p)) => Some(p as *const u8),
                _ => break,
            }
        } else {
            None
        };
        let Ok(Some(dst)) = cpu.host_span(dlin, Access::Write, user) else {
            break;
        };
        let len = span as usize;
        match src {
            Some(src) => {
                // A forward element copy whose destination starts inside its source replicates
                // data; memmove would not. Leave those to the element loop.
                if dst as usize > src as usize && (dst as usize) < src as usize + len {
                    break;
                }
                // SAFETY: `host_span` returned host addresses of RAM pages that stay mapped
                // while this Cpu lives; both runs end at or before their page ends (n was
                // clamped to each side's page). `copy` allows overlap.
                unsafe { std::ptr::copy(src, dst, len) };
            }
            None => {
                let v = cpu.state.gpr[0].to_le_bytes();
                // SAFETY: as above, `dst..dst+len` lies in one RAM page.
                let out = unsafe { std::slice::from_raw_parts_mut(dst, len) };
                for chunk in out.chunks_exact_mut(es) {
                    chunk.copy_from_slice(&v[..es]);
                }
            }
        }
        if movs {
            cpu.set_gpr_sized(6, asz, si.wrapping_add(span));
        }
        cpu.set_gpr_sized(7, asz, di.wrapping_add(span));
        cpu.set_gpr_sized(1, asz, count - n);
        done += n;
    }
    Some(done)
}

impl Cpu {
    /// Check a write to `seg:off` would succeed (INS reads the port only then).
    pub(crate) fn probe_write_seg(&mut self, seg: usize, off: u64, size: usize) -> Res<()> {
        let lin = self.linear(seg, off, size, true)?;
        let user = self.state.cpl() == 3;
        self.probe_write(lin, user)?;
        if (lin & 0xfff) as usize + size > 0x1000 {
            self.probe_write((lin | 0xfff).wrapping_add(1), user)?;
        }
        Ok(())
    }
}

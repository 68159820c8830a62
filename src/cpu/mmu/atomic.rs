//! Locked read-modify-write: XCHG with memory and LOCK-prefixed instructions (ALU, INC/DEC,
//! NOT/NEG, XADD, CMPXCHG, BTS/BTR/BTC; not yet CMPXCHG8B) as one atomic
//! access to guest RAM, so vCPU threads that share RAM see them as other CPUs would (a
//! spinlock taken with XCHG, a counter bumped with LOCK INC, CMPXCHG loops).
//!
//! The access is translated and checked like a read followed by a write (so faults stay
//! precise), then done with a host compare-and-swap on the RAM page when the operand is
//! naturally aligned; a misaligned (split-lock) operand or MMIO falls back to a plain read and
//! write, which is atomic only against this vCPU.

use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};

use super::tlb::{index, tag, Access};
use crate::cpu::exec::size_mask;
use crate::cpu::fault::Res;
use crate::cpu::Cpu;

impl Cpu {
    /// Replace the `size`-byte (1, 2, 4, 8) value at `seg:off` with `f(old)`, atomically when
    /// the operand is naturally aligned RAM; returns the old value. `f` may run more than once
    /// (when another CPU changes the value in between) and must be pure.
    pub(crate) fn rmw_seg(
        &mut self,
        seg: usize,
        off: u64,
        size: usize,
        f: impl Fn(u64) -> u64,
    ) -> Res<u64> {
        let lin = self.linear(seg, off, size, true)?;
        let user = self.state.cpl() == 3;
        let old = self.read_lin(lin, size, user)?;
        self.probe_write(lin, user)?;
        let m = size_mask(size);
        if matches!(size, 1 | 2 | 4 | 8) && lin % size as u64 == 0 {
            let e = self.tlb.sets[Access::Write as usize][index(lin)];
            if e.tag == tag(lin, user) && !e.mmio {
                let p = e.addend.wrapping_add(lin as usize);
                // SAFETY: the write entry was filled by `tlb_fill` from a RAM frame that lies
                // wholly in one region of `self.ram`, which this Cpu keeps alive; the operand is
                // naturally aligned, so it stays in the page and suits the atomic type.
                return Ok(unsafe { cas(p, size, |v| f(v) & m) });
            }
        }
        self.write_lin(lin, size, f(old) & m, user)?;
        Ok(old)
    }
}

/// Compare-and-swap loop at host address `p`: store `f(current)` unless another thread changed
/// the value in between (then again with the new value); returns the value replaced.
///
/// # Safety
/// `p` must point to `size` bytes of live memory, aligned to `size`.
unsafe fn cas(p: usize, size: usize, f: impl Fn(u64) -> u64) -> u64 {
    macro_rules! cas_loop {
        ($atomic:ty, $t:ty) => {{
            // SAFETY: the caller guarantees `p` is live and aligned for this width.
            let a = unsafe { &*(p as *const $atomic) };
            let mut cur = a.load(Ordering::SeqCst);
            loop {
                // Guest memory is little-endian, and so is the x86-64 host.
                let new = f(u64::from(cur)) as $t;
                match a.compare_exchange_weak(cur, new, Ordering::SeqCst, Ordering::SeqCst) {
                    Ok(_) => return u64::from(cur),
                    Err(now) => cur = now,
                }
            }
        }};
    }
    match size {
        1 => cas_loop!(AtomicU8, u8),
        2 => cas_loop!(AtomicU16, u16),
        4 => cas_loop!(AtomicU32, u32),
        _ => cas_loop!(AtomicU64, u64),
    }
}

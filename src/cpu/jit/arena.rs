//! Executable memory for translated blocks: one anonymous mapping per vCPU, filled front to
//! back.
//!
//! Code enters through [`Arena::put`], which copies finished machine code in and returns a
//! [`CodeRef`] stamped with the arena's generation. When the mapping is full the arena starts
//! again at its beginning in a new generation: every older `CodeRef` stops resolving
//! ([`Arena::entry`] returns `None`), so blocks translated earlier run interpreted until they
//! are hot again. QEMU's TCG flushes its whole code buffer the same way; it is simpler than
//! freeing per block and costs little, since a kernel's hot code fits many times over.
//! Only the run loop calls `put`, between blocks, so no translated code is running when the
//! arena starts over.

use std::ptr::NonNull;

/// Bytes of executable memory per vCPU (reserved, not committed: pages fill as code lands).
pub const ARENA_BYTES: usize = 32 << 20;

/// Where a block's code lives: offset + 1 in the low 32 bits (0: none), generation above.
pub type CodeRef = u64;

/// The code of a block, callable with the `Cpu` it was translated for.
pub type Entry = unsafe extern "sysv64" fn(*mut crate::cpu::Cpu) -> u64;

/// A read-write-execute mapping and its fill level.
pub struct Arena {
    base: NonNull<u8>,
    size: usize,
    used: usize,
    gen: u32,
}

// SAFETY: the mapping is owned by this value alone (no other pointer to it escapes except
// into code that only the owning `Cpu` runs), so moving it to another thread is sound.
unsafe impl Send for Arena {}

/// Why executable memory could not be had.
#[derive(Debug, thiserror::Error)]
#[error("cannot map {size} bytes of executable memory for the JIT: {source}")]
pub struct ArenaError {
    size: usize,
    source: std::io::Error,
}

impl Arena {
    /// Map `size` bytes.
    pub fn new(size: usize) -> Result<Self, ArenaError> {
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing touches
        // no existing memory; the result is checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(ArenaError {
                size,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(Arena {
            base: NonNull::new(p.cast()).expect("mmap returned a null mapping"),
            size,
            used: 0,
            gen: 1,
        })
    }

    /// Copy `code` in; starts a new generation first if it does not fit. `None` if it could
    /// never fit.
    pub fn put(&mut self, code: &[u8]) -> Option<CodeRef> {
        // Entries start on 16-byte boundaries, as compilers align functions.
        let len = code.len().next_multiple_of(16);
        if len >= self.size || len >= u32::MAX as usize {
            return None;
        }
        if self.used + len > self.size {
            self.used = 0;
            self.gen = self.gen.wrapping_add(1).max(1);
        }
        let at = self.used;
        // SAFETY: `at + code.len() <= size` (checked above), so the copy stays inside the
        // mapping; no translated code runs while `put` does (module doc), so nothing executes
        // the bytes being replaced.
        unsafe {
            std::ptr::copy_nonoverlapping(code.as_ptr(), self.base.as_ptr().add(at), code.len());
        }
        self.used += len;
        Some(u64::from(self.gen) << 32 | (at as u64 + 1))
    }

    /// The entry point of `r`, if it is from the current generation.
    #[inline]
    pub fn entry(&self, r: CodeRef) -> Option<Entry> {
        let off = (r & 0xffff_ffff) as usize;
        if off == 0 || (r >> 32) as u32 != self.gen {
            return None;
        }
        // SAFETY: a current-generation `CodeRef` names the start of a finished translation
        // inside the mapping (`put`), which follows the `Entry` calling convention
        // (`compile` builds every translation with that prologue and epilogue).
        Some(unsafe { std::mem::transmute::<*mut u8, Entry>(self.base.as_ptr().add(off - 1)) })
    }

    /// Generations started so far (1 + times the arena filled up).
    pub fn generation(&self) -> u32 {
        self.gen
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: `base`/`size` are the mapping `new` made, unmapped once, here; the owning
        // `Cpu` is going away, so no translated code can run any more.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.size);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_runs_and_old_generations_stop_resolving() {
        let mut a = Arena::new(64).unwrap();
        // mov eax, 42; ret
        let r = a.put(&[0xb8, 42, 0, 0, 0, 0xc3]).unwrap();
        let f = a.entry(r).unwrap();
        // SAFETY: the code ignores its argument and returns 42 in rax.
        assert_eq!(unsafe { f(std::ptr::null_mut()) } & 0xffff_ffff, 42);
        let r2 = a.put(&[0xc3; 40]).unwrap();
        let r3 = a.put(&[0xc3; 20]).unwrap();
        assert!(a.entry(r).is_none(), "the arena started over");
        assert!(a.entry(r2).is_none());
        assert!(a.entry(r3).is_some());
        assert!(a.put(&[0xc3; 64]).is_none());
        assert!(a.entry(0).is_none());
    }
}

//! Kicking a vCPU thread out of `KVM_RUN`.
//!
//! A kick sets a flag and sends the vCPU thread a real-time signal. The signal handler writes 1
//! into the thread's `kvm_run.immediate_exit`, so a signal that lands just before `KVM_RUN`
//! still makes it return at once (`EINTR`), and one that lands during it interrupts the guest.
//! The run loop clears `immediate_exit` before it checks the flag, so no kick is lost between
//! the check and the ioctl.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Once;

use vmm_sys_util::signal::{register_signal_handler, SIGRTMIN};

use crate::accel::Kicker;

thread_local! {
    /// `&mut kvm_run.immediate_exit` of the vCPU that runs on this thread (null elsewhere).
    static IMMEDIATE_EXIT: Cell<*mut u8> = const { Cell::new(std::ptr::null_mut()) };
}

/// The signal used for kicks.
pub fn kick_signal() -> libc::c_int {
    SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let p = IMMEDIATE_EXIT.with(|c| c.get());
    if !p.is_null() {
        // SAFETY: the pointer was set by `bind_thread` on this very thread to the
        // `immediate_exit` byte of a kvm_run mapping that lives until `unbind_thread`, which the
        // same thread calls before dropping the vCPU; a volatile byte store is async-signal-safe.
        unsafe { std::ptr::write_volatile(p, 1) };
    }
}

/// Install the process-wide kick handler (once).
pub fn install_handler() -> Result<(), std::io::Error> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        if let Err(e) = register_signal_handler(kick_signal(), on_kick) {
            result = Err(std::io::Error::from_raw_os_error(e.errno()));
        }
    });
    result
}

/// Tie the calling thread to `immediate_exit` of the vCPU it runs.
pub fn bind_thread(immediate_exit: *mut u8) {
    IMMEDIATE_EXIT.with(|c| c.set(immediate_exit));
}

/// Forget the binding (before the vCPU's kvm_run mapping goes away).
pub fn unbind_thread() {
    IMMEDIATE_EXIT.with(|c| c.set(std::ptr::null_mut()));
}

/// The kick handle of one KVM vCPU.
#[derive(Debug, Default)]
pub struct KvmKicker {
    pending: AtomicBool,
    /// `pthread_t` of the vCPU thread, 0 until it first runs.
    thread: AtomicU64,
}

impl KvmKicker {
    /// Record the calling thread as the vCPU's thread.
    pub fn set_thread(&self) {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        self.thread.store(me as u64, Ordering::Release);
    }

    /// Take a pending kick, if any.
    pub fn take(&self) -> bool {
        self.pending.swap(false, Ordering::AcqRel)
    }
}

impl Kicker for KvmKicker {
    fn kick(&self) {
        self.pending.store(true, Ordering::Release);
        let t = self.thread.load(Ordering::Acquire);
        if t != 0 {
            // SAFETY: `t` is the pthread_t of the vCPU thread, which the machine joins only after
            // it stopped kicking; pthread_kill with a valid thread id and a handled signal has no
            // other preconditions. ESRCH (thread gone) is harmless and ignored.
            unsafe { libc::pthread_kill(t as libc::pthread_t, kick_signal()) };
        }
    }
}

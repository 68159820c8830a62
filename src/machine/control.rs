//! The machine's control block: what the devices and vCPU threads ask the machine to do, and
//! the means to stop every vCPU promptly.
//!
//! Devices reach it as `SystemEvents`; vCPU threads report crashes and CPU shutdowns to it. The
//! first event that ends the run wins; every vCPU is then kicked out of `run()` and its thread
//! sees [`Control::stopping`].
//!
//! It also holds the power cycle's [`VcpuGate`]: the monitor pauses every vCPU at a `run()`
//! boundary ([`Control::pause_all`]) and runs jobs on a vCPU's thread ([`Control::run_on_vcpu`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::pause::VcpuGate;
use crate::accel::{CrashReport, Kicker, Vcpu};
use crate::devices::{SystemEvent, SystemEvents};

/// How a run of the machine ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A device asked to exit with this status (isa-debug-exit).
    Exit(i32),
    /// The guest powered off (status 0).
    PowerOff,
    /// The guest asked for a reset, or a CPU shut down (triple fault).
    Reset,
    /// A vCPU cannot go on.
    Crash(Box<CrashReport>),
    /// The accelerator failed for a reason that is not the guest's.
    Failed(String),
    /// The user quit (Ctrl-A X).
    Quit,
}

/// Shared between the machine, its devices and its vCPU threads.
#[derive(Default)]
pub struct Control {
    outcome: Mutex<Option<Outcome>>,
    stopping: AtomicBool,
    kickers: Mutex<Vec<Arc<dyn Kicker>>>,
    wake: Condvar,
    wake_lock: Mutex<u64>,
    /// Pause flag and per-vCPU job queues.
    gate: VcpuGate,
}

impl Control {
    /// A fresh control block.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Register a vCPU's kicker, so [`Control::finish`] can stop it.
    pub fn add_kicker(&self, k: Arc<dyn Kicker>) {
        let mut kickers = self.kickers.lock().unwrap_or_else(|e| e.into_inner());
        kickers.push(k);
        self.gate.add_vcpu(kickers.len() - 1);
    }

    /// Called by vCPU `id`'s thread before each `run()`: serve the monitor's jobs and park
    /// while the machine is paused.
    pub fn vcpu_boundary(&self, id: usize, vcpu: &mut dyn Vcpu) {
        self.gate.boundary(id, vcpu, &|| self.stopping());
    }

    /// The pause gate (thread ids, pause state).
    pub fn gate(&self) -> &VcpuGate {
        &self.gate
    }

    /// Pause every vCPU at its next `run()` boundary and wait up to `timeout` until all are
    /// parked; returns whether they all are (false if the run ended first).
    pub fn pause_all(&self, timeout: Duration) -> bool {
        self.gate.pause();
        self.kick_all();
        self.gate.wait_parked(timeout, &|| self.stopping())
    }

    /// Let every paused vCPU run again.
    pub fn resume_all(&self) {
        self.gate.resume();
        self.kick_all();
    }

    /// Run `f` on vCPU `id`'s thread (kicking it out of `run()` or a halt) and wait up to
    /// `timeout`; `None` if there is no such vCPU or it did not answer.
    pub fn run_on_vcpu<R: Send + 'static>(
        &self,
        id: usize,
        timeout: Duration,
        f: impl FnOnce(&mut dyn Vcpu) -> R + Send + 'static,
    ) -> Option<R> {
        self.gate.run_on(id, timeout, || self.kick_vcpu(id), f)
    }

    /// End the run with `outcome` (the first call wins) and kick every vCPU.
    pub fn finish(&self, outcome: Outcome) {
        {
            let mut o = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
            if o.is_none() {
                *o = Some(outcome);
            }
        }
        self.stopping.store(true, Ordering::Release);
        self.kick_all();
    }

    /// Kick every vCPU out of `run()` and wake halted ones.
    pub fn kick_all(&self) {
        for k in self
            .kickers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            k.kick();
        }
        let mut gen = self.wake_lock.lock().unwrap_or_else(|e| e.into_inner());
        *gen += 1;
        self.wake.notify_all();
    }

    /// Kick vCPU `id` (its index, the order kickers were added in) out of `run()` and wake
    /// halted vCPUs: an interrupt for it arrived.
    pub fn kick_vcpu(&self, id: usize) {
        if let Some(k) = self
            .kickers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
        {
            k.kick();
        }
        let mut gen = self.wake_lock.lock().unwrap_or_else(|e| e.into_inner());
        *gen += 1;
        self.wake.notify_all();
    }

    /// The wake-up count: read it before asking a vCPU whether it is halted, and pass it to
    /// [`Control::wait_halted_since`], so a wake-up in between is not lost.
    pub fn wake_generation(&self) -> u64 {
        *self.wake_lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the run is ending.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// How the run ended (None while it goes on).
    pub fn outcome(&self) -> Option<Outcome> {
        self.outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Block the calling thread until the run ends.
    pub fn wait_finished(&self) {
        let mut gen = self.wake_lock.lock().unwrap_or_else(|e| e.into_inner());
        while !self.stopping() {
            gen = self.wake.wait(gen).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Sleep up to `timeout`, returning early when the run ends.
    pub fn sleep(&self, timeout: Duration) {
        let gen = self.wake_lock.lock().unwrap_or_else(|e| e.into_inner());
        if self.stopping() {
            return;
        }
        let _ = self
            .wake
            .wait_timeout_while(gen, timeout, |_| !self.stopping());
    }

    /// Block a halted vCPU until something may have woken it (a kick, an interrupt) or
    /// `timeout` passes.
    pub fn wait_halted(&self, timeout: Duration) {
        let start = self.wake_generation();
        self.wait_halted_since(start, timeout);
    }

    /// Like [`Control::wait_halted`], but return at once if anything woke vCPUs since the
    /// wake generation was `start`.
    pub fn wait_halted_since(&self, start: u64, timeout: Duration) {
        let gen = self.wake_lock.lock().unwrap_or_else(|e| e.into_inner());
        if self.stopping() {
            return;
        }
        let _ = self
            .wake
            .wait_timeout_while(gen, timeout, |g| *g == start && !self.stopping());
    }
}

impl SystemEvents for Control {
    fn request(&self, event: SystemEvent) {
        self.finish(match event {
            SystemEvent::Exit(code) => Outcome::Exit(code),
            SystemEvent::PowerOff => Outcome::PowerOff,
            SystemEvent::Reset => Outcome::Reset,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[derive(Default)]
    struct Count(AtomicUsize);
    impl Kicker for Count {
        fn kick(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn first_event_wins_and_kicks() {
        let c = Control::new();
        let k = Arc::new(Count::default());
        c.add_kicker(k.clone());
        c.request(SystemEvent::Exit(3));
        c.request(SystemEvent::PowerOff);
        assert!(c.stopping());
        assert!(matches!(c.outcome(), Some(Outcome::Exit(3))));
        assert_eq!(k.0.load(Ordering::SeqCst), 2);
        c.wait_halted(Duration::from_secs(5)); // returns at once: stopping
    }

    #[test]
    fn a_wake_before_the_wait_is_not_lost() {
        let c = Control::new();
        let k = Arc::new(Count::default());
        c.add_kicker(k.clone());
        let gen = c.wake_generation();
        c.kick_vcpu(0);
        c.kick_vcpu(5); // no such vCPU: only wakes
        assert_eq!(k.0.load(Ordering::SeqCst), 1);
        let t = std::time::Instant::now();
        c.wait_halted_since(gen, Duration::from_secs(5));
        assert!(t.elapsed() < Duration::from_secs(1));
    }
}

//! Stopping every vCPU at a `run()` boundary and running jobs on a vCPU's own thread: the
//! monitor's `stop`/`cont` and its register reads.
//!
//! Only the thread that owns a `Vcpu` may touch it, so the monitor posts a job
//! ([`VcpuGate::run_on`]) and kicks that vCPU; the vCPU thread serves its jobs in
//! [`VcpuGate::boundary`], which it calls before every `run()`. While the machine is paused the
//! vCPU parks in `boundary` (still serving jobs) until [`VcpuGate::resume`].
//!
//! The gdb hub has its own hold (`monitor::gdb::hub`): a vCPU held by gdb does not reach this
//! gate, so a monitor job for it waits until gdb lets it go (or times out).

use std::collections::VecDeque;
use std::sync::{mpsc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::accel::Vcpu;

/// How long a parked vCPU sleeps before it looks at the machine's stop flag again.
const PARK_POLL: Duration = Duration::from_millis(50);

/// A job for one vCPU's thread.
pub type VcpuJob = Box<dyn FnOnce(&mut dyn Vcpu) + Send>;

#[derive(Default)]
struct State {
    /// The machine is paused: vCPUs park at their boundary.
    paused: bool,
    /// Which vCPUs are parked now.
    parked: Vec<bool>,
    /// Jobs waiting for each vCPU.
    jobs: Vec<VecDeque<VcpuJob>>,
    /// Each vCPU thread's host thread id (0 until it started).
    thread_ids: Vec<i64>,
}

/// The pause flag and job queues of one power cycle's vCPUs.
#[derive(Default)]
pub struct VcpuGate {
    state: Mutex<State>,
    cond: Condvar,
}

impl VcpuGate {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Make room for vCPU `id` (called once per vCPU when it is created).
    pub fn add_vcpu(&self, id: usize) {
        let mut s = self.lock();
        if s.parked.len() <= id {
            s.parked.resize(id + 1, false);
            s.jobs.resize_with(id + 1, VecDeque::new);
            s.thread_ids.resize(id + 1, 0);
        }
    }

    /// Number of vCPUs registered.
    pub fn vcpus(&self) -> usize {
        self.lock().parked.len()
    }

    /// Called by vCPU `id`'s thread before each `run()`: serve jobs, and park while the machine
    /// is paused and `stopping()` is false.
    pub fn boundary(&self, id: usize, vcpu: &mut dyn Vcpu, stopping: &dyn Fn() -> bool) {
        let mut s = self.lock();
        loop {
            if let Some(job) = s.jobs.get_mut(id).and_then(VecDeque::pop_front) {
                drop(s);
                job(vcpu);
                s = self.lock();
                continue;
            }
            if s.paused && !stopping() {
                if let Some(p) = s.parked.get_mut(id) {
                    if !*p {
                        *p = true;
                        self.cond.notify_all();
                    }
                }
                s = self
                    .cond
                    .wait_timeout(s, PARK_POLL)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                continue;
            }
            break;
        }
        if let Some(p) = s.parked.get_mut(id) {
            *p = false;
        }
    }

    /// Record the calling thread as vCPU `id`'s host thread.
    pub fn set_thread_id(&self, id: usize) {
        // SAFETY: gettid has no arguments and cannot fail.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) };
        if let Some(t) = self.lock().thread_ids.get_mut(id) {
            *t = tid;
        }
    }

    /// vCPU `id`'s host thread id (0 if it has not started).
    pub fn thread_id(&self, id: usize) -> i64 {
        self.lock().thread_ids.get(id).copied().unwrap_or(0)
    }

    /// Ask every vCPU to park. The caller kicks them out of `run()`.
    pub fn pause(&self) {
        self.lock().paused = true;
    }

    /// Whether the machine is paused.
    pub fn paused(&self) -> bool {
        self.lock().paused
    }

    /// Wait until every vCPU is parked, the machine ends (`stopping`) or `timeout` passes;
    /// returns whether all are parked.
    pub fn wait_parked(&self, timeout: Duration, stopping: &dyn Fn() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        loop {
            if s.parked.iter().all(|&p| p) {
                return true;
            }
            let now = Instant::now();
            if stopping() || now >= deadline {
                return false;
            }
            let wait = (deadline - now).min(PARK_POLL);
            s = self
                .cond
                .wait_timeout(s, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Let every vCPU run again.
    pub fn resume(&self) {
        self.lock().paused = false;
        self.cond.notify_all();
    }

    /// Queue `job` for vCPU `id` (false if there is no such vCPU). The caller kicks it.
    pub fn post(&self, id: usize, job: VcpuJob) -> bool {
        let mut s = self.lock();
        match s.jobs.get_mut(id) {
            Some(q) => {
                q.push_back(job);
                drop(s);
                self.cond.notify_all();
                true
            }
            None => false,
        }
    }

    /// Run `f` on vCPU `id`'s thread and wait up to `timeout` for its result; `kick` gets the
    /// vCPU out of `run()` (or out of a halt) so it reaches its boundary.
    pub fn run_on<R: Send + 'static>(
        &self,
        id: usize,
        timeout: Duration,
        kick: impl Fn(),
        f: impl FnOnce(&mut dyn Vcpu) -> R + Send + 'static,
    ) -> Option<R> {
        let (tx, rx) = mpsc::channel();
        let job: VcpuJob = Box::new(move |v| {
            let _ = tx.send(f(v));
        });
        if !self.post(id, job) {
            return None;
        }
        kick();
        rx.recv_timeout(timeout).ok()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::accel::{AccelError, Kicker, VcpuExit, VcpuState};

    struct Fake(VcpuState);
    struct NoKick;
    impl Kicker for NoKick {
        fn kick(&self) {}
    }
    impl Vcpu for Fake {
        fn id(&self) -> usize {
            0
        }
        fn run(&mut self) -> Result<VcpuExit, AccelError> {
            Ok(VcpuExit::Interrupted)
        }
        fn state(&mut self) -> Result<VcpuState, AccelError> {
            Ok(self.0.clone())
        }
        fn set_state(&mut self, s: &VcpuState) -> Result<(), AccelError> {
            self.0 = s.clone();
            Ok(())
        }
        fn kicker(&self) -> Arc<dyn Kicker> {
            Arc::new(NoKick)
        }
    }

    #[test]
    fn pause_parks_serves_jobs_and_resumes() {
        let gate = Arc::new(VcpuGate::default());
        gate.add_vcpu(0);
        gate.pause();
        let stop = Arc::new(AtomicBool::new(false));
        let (g, st) = (gate.clone(), stop.clone());
        let t = std::thread::spawn(move || {
            let mut v = Fake(VcpuState {
                rip: 0x1234,
                ..VcpuState::default()
            });
            g.set_thread_id(0);
            let mut loops = 0;
            while !st.load(Ordering::SeqCst) {
                g.boundary(0, &mut v, &|| st.load(Ordering::SeqCst));
                loops += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            loops
        });
        assert!(gate.wait_parked(Duration::from_secs(5), &|| false));
        let rip = gate.run_on(0, Duration::from_secs(5), || {}, |v| v.state().unwrap().rip);
        assert_eq!(rip, Some(0x1234));
        assert!(gate.thread_id(0) > 0);
        assert!(gate.paused());
        gate.resume();
        std::thread::sleep(Duration::from_millis(20));
        stop.store(true, Ordering::SeqCst);
        assert!(t.join().unwrap() > 1);
        assert_eq!(
            gate.run_on(3, Duration::from_millis(1), || {}, |_| ()),
            None
        );
    }
}

//! The meeting point of the vCPU threads and the gdb thread: all-stop mode.
//!
//! Every vCPU thread passes [`DebugHub::gate`] before each `run()`: while the debugger holds
//! the machine it parks there and runs the jobs the gdb thread posts for it (read registers,
//! write them), because only the owning thread may touch its `Vcpu`. When a vCPU returns
//! `VcpuExit::Debug` it calls [`DebugHub::debug_exit`]: the first such stop since the last
//! resume is sent to the gdb thread as a [`HubEvent`], and every vCPU is held and kicked.
//! The gdb thread resumes with [`DebugHub::resume`]; breakpoints and single-step requests reach
//! each vCPU through `Vcpu::set_debug` at its next gate.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::accel::{DebugConfig, GuestRam, Vcpu, VcpuState};

/// How long a parked vCPU sleeps before looking at the machine's stop flag again.
const PARK_POLL: Duration = Duration::from_millis(50);
/// How long the gdb thread waits for a vCPU to serve a job before giving up.
const JOB_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a vCPU stopped, as gdb is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopKind {
    /// A single step finished.
    Step,
    /// At a software breakpoint.
    SwBreak,
    /// At a hardware breakpoint.
    HwBreak,
    /// A debug event the debugger did not ask for (reported as SIGTRAP).
    Trap,
}

/// What the hub tells the gdb thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubEvent {
    /// vCPU `vcpu` stopped; every other vCPU is being held.
    Stopped {
        /// The vCPU index.
        vcpu: usize,
        /// Why.
        kind: StopKind,
    },
    /// The machine ended with this process exit status.
    Exited(i32),
}

/// What the debugger wants one vCPU to do on resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeAction {
    /// Run.
    Continue,
    /// Execute one instruction, then stop.
    Step,
}

type Job = Box<dyn FnOnce(&mut dyn Vcpu) + Send>;
type KickAll = Arc<dyn Fn() + Send + Sync>;
/// Where stop events go: the connected gdb thread's input queue.
pub type EventSink = Arc<dyn Fn(HubEvent) + Send + Sync>;

#[derive(Default)]
struct State {
    /// Number of vCPUs of the current power cycle.
    cpus: usize,
    /// The vCPU must park at its gate.
    hold: Vec<bool>,
    /// The vCPU single-steps when it runs.
    step: Vec<bool>,
    /// Breakpoints by linear address.
    sw: Vec<u64>,
    hw: Vec<u64>,
    /// Software breakpoints kept in free debug registers instead of INT3 bytes (a subset of
    /// `sw`; see [`DebugHub::sw_breakpoint_in_debug_register`]).
    sw_in_dr: Vec<u64>,
    /// Bumped when breakpoints or steps change; `applied[i]` is what vCPU i has loaded.
    generation: u64,
    applied: Vec<u64>,
    /// Jobs waiting for each vCPU.
    jobs: Vec<VecDeque<Job>>,
    /// A debugger is connected.
    attached: bool,
    /// The debugger waits for a stop (set by resume, cleared by the stop it gets).
    running: bool,
    /// Hold every vCPU when the next power cycle starts (`-S`).
    start_held: bool,
    /// The current machine has ended: jobs are refused.
    finished: bool,
    /// Where stop events go (the connected gdb thread).
    events: Option<EventSink>,
    kick_all: Option<KickAll>,
    /// Ends the machine (gdb's `kill`).
    quit: Option<KickAll>,
    ram: Option<Arc<GuestRam>>,
}

/// Shared between the machine's vCPU threads and the gdb thread.
#[derive(Default)]
pub struct DebugHub {
    state: Mutex<State>,
    cond: Condvar,
}

/// A job could not be served: the vCPU is gone or did not park in time.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("vCPU {0} did not answer the debugger")]
pub struct NoAnswer(pub usize);

impl DebugHub {
    /// A hub; with `start_stopped` (`-S`) the vCPUs wait for the debugger before the first
    /// instruction.
    pub fn new(start_stopped: bool) -> Arc<Self> {
        let hub = DebugHub::default();
        hub.lock().start_held = start_stopped;
        Arc::new(hub)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn kick(kick_all: Option<KickAll>) {
        if let Some(k) = kick_all {
            k();
        }
    }

    /// A new power cycle: `cpus` vCPUs over `ram`; `kick_all` forces every vCPU out of `run()`,
    /// `quit` ends the machine (gdb's `kill`).
    pub fn start_machine(
        &self,
        cpus: usize,
        ram: Arc<GuestRam>,
        kick_all: impl Fn() + Send + Sync + 'static,
        quit: impl Fn() + Send + Sync + 'static,
    ) {
        let mut s = self.lock();
        let held = s.start_held || (s.attached && !s.running);
        s.start_held = false;
        s.cpus = cpus;
        s.hold = vec![held; cpus];
        s.step = vec![false; cpus];
        s.applied = vec![0; cpus];
        s.generation += 1;
        s.jobs = (0..cpus).map(|_| VecDeque::new()).collect();
        s.finished = false;
        s.kick_all = Some(Arc::new(kick_all));
        s.quit = Some(Arc::new(quit));
        s.ram = Some(ram);
    }

    /// The machine ended with process status `status`: tell the debugger (`W` packet) and give
    /// it up to `linger` to take the news and hang up.
    pub fn finish(&self, status: i32, linger: Duration) {
        let mut s = self.lock();
        s.finished = true;
        s.running = false;
        if let Some(sink) = s.events.clone() {
            sink(HubEvent::Exited(status));
        }
        self.cond.notify_all();
        let _ = self
            .cond
            .wait_timeout_while(s, linger, |s| s.attached)
            .unwrap_or_else(|e| e.into_inner());
    }

    /// End the machine for the debugger (`kill`).
    pub fn quit(&self) {
        let quit = self.lock().quit.clone();
        Self::kick(quit);
    }

    /// Number of vCPUs.
    pub fn cpus(&self) -> usize {
        self.lock().cpus
    }

    /// Guest RAM of the current power cycle.
    pub fn ram(&self) -> Option<Arc<GuestRam>> {
        self.lock().ram.clone()
    }

    // ---- the vCPU side ----

    /// Called by vCPU `id`'s thread before each `run()`: serve jobs and park while held (until
    /// `stopping()` says the machine ends), then load changed debug settings.
    pub fn gate(&self, id: usize, vcpu: &mut dyn Vcpu, stopping: &dyn Fn() -> bool) {
        let mut s = self.lock();
        loop {
            if let Some(job) = s.jobs.get_mut(id).and_then(VecDeque::pop_front) {
                drop(s);
                job(vcpu);
                s = self.lock();
                continue;
            }
            if s.hold.get(id).copied().unwrap_or(false) && !stopping() {
                s = self
                    .cond
                    .wait_timeout(s, PARK_POLL)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                continue;
            }
            break;
        }
        if s.applied.get(id).copied() != Some(s.generation) {
            let cfg = DebugConfig {
                single_step: s.step.get(id).copied().unwrap_or(false),
                sw_breakpoints: s
                    .sw
                    .iter()
                    .filter(|a| !s.sw_in_dr.contains(a))
                    .copied()
                    .collect(),
                hw_breakpoints: s.hw.iter().chain(&s.sw_in_dr).copied().collect(),
            };
            let generation = s.generation;
            if let Some(a) = s.applied.get_mut(id) {
                *a = generation;
            }
            drop(s);
            if let Err(e) = vcpu.set_debug(&cfg) {
                log::warn!("gdbstub: vCPU {id}: {e}");
            }
        }
    }

    /// Called by vCPU `id`'s thread when `run()` returned `VcpuExit::Debug`.
    pub fn debug_exit(&self, id: usize, vcpu: &mut dyn Vcpu) {
        let linear = vcpu.state().map(|st| linear_pc(&st)).ok();
        let mut s = self.lock();
        if !s.attached || !s.running {
            // Nobody waits for this stop, or another vCPU's stop was reported first; the
            // vCPU parks at its gate (held) and meets its breakpoint again after the resume.
            return;
        }
        let kind = if s.step.get(id).copied().unwrap_or(false) {
            StopKind::Step
        } else {
            match linear {
                Some(a) if s.sw.contains(&a) => StopKind::SwBreak,
                Some(a) if s.hw.contains(&a) => StopKind::HwBreak,
                _ => StopKind::Trap,
            }
        };
        s.running = false;
        s.hold.iter_mut().for_each(|h| *h = true);
        if let Some(sink) = &s.events {
            sink(HubEvent::Stopped { vcpu: id, kind });
        }
        let kick = s.kick_all.clone();
        drop(s);
        Self::kick(kick);
    }

    // ---- the gdb side ----

    /// A debugger connected: stop the machine (gdb assumes a stopped target) and send stop
    /// events to `events` from now on.
    pub fn attach(&self, events: impl Fn(HubEvent) + Send + Sync + 'static) {
        let mut s = self.lock();
        s.attached = true;
        s.running = false;
        s.events = Some(Arc::new(events));
        s.hold.iter_mut().for_each(|h| *h = true);
        let kick = s.kick_all.clone();
        drop(s);
        Self::kick(kick);
    }

    /// The debugger went away: drop breakpoints and steps and let the machine run on.
    pub fn detach(&self) {
        let mut s = self.lock();
        s.attached = false;
        s.running = false;
        s.events = None;
        s.sw.clear();
        s.hw.clear();
        s.sw_in_dr.clear();
        s.step.iter_mut().for_each(|x| *x = false);
        s.hold.iter_mut().for_each(|h| *h = false);
        s.generation += 1;
        self.cond.notify_all();
    }

    /// Ctrl-C: hold every vCPU. Returns whether the debugger still waited for a stop (if not,
    /// a stop event is already on its way).
    pub fn interrupt(&self) -> bool {
        let mut s = self.lock();
        let was_running = s.running;
        s.running = false;
        s.hold.iter_mut().for_each(|h| *h = true);
        let kick = s.kick_all.clone();
        drop(s);
        Self::kick(kick);
        was_running
    }

    /// Resume: `actions[i]` for vCPU i; vCPUs without an action continue when
    /// `others_continue`, else stay held (gdb's scheduler locking).
    pub fn resume(&self, actions: &[Option<ResumeAction>], others_continue: bool) {
        let mut s = self.lock();
        for id in 0..s.cpus {
            let action = actions.get(id).copied().flatten();
            let (hold, step) = match action {
                Some(ResumeAction::Step) => (false, true),
                Some(ResumeAction::Continue) => (false, false),
                None => (!others_continue, false),
            };
            s.hold[id] = hold;
            s.step[id] = step;
        }
        s.generation += 1;
        s.running = true;
        self.cond.notify_all();
    }

    /// Add (`on`) or remove a breakpoint at linear `addr`; `hw` picks the kind. Adding a fifth
    /// hardware breakpoint fails (returns false).
    pub fn set_breakpoint(&self, addr: u64, hw: bool, on: bool) -> bool {
        let mut s = self.lock();
        let used = s.hw.len() + s.sw_in_dr.len();
        if !hw && !on {
            s.sw_in_dr.retain(|&a| a != addr);
        }
        let list = if hw { &mut s.hw } else { &mut s.sw };
        if on {
            if hw && used >= crate::accel::MAX_HW_BREAKPOINTS {
                return false;
            }
            list.push(addr);
        } else if let Some(i) = list.iter().position(|&a| a == addr) {
            list.remove(i);
        } else {
            return false;
        }
        s.generation += 1;
        true
    }

    /// Add a software breakpoint at `addr` that a free debug register implements, if one is
    /// free (returns false otherwise: the caller patches an INT3). Under KVM this keeps
    /// `break` working where INT3 cannot run (PVM cannot execute INT3 at CPL 0) and leaves
    /// guest memory untouched; hardware breakpoints still get the registers first.
    pub fn sw_breakpoint_in_debug_register(&self, addr: u64) -> bool {
        let mut s = self.lock();
        if s.hw.len() + s.sw_in_dr.len() >= crate::accel::MAX_HW_BREAKPOINTS {
            return false;
        }
        s.sw.push(addr);
        s.sw_in_dr.push(addr);
        s.generation += 1;
        true
    }

    /// Run `f` on vCPU `id`'s thread (where it is parked) and return its result.
    pub fn with_vcpu<R: Send + 'static>(
        &self,
        id: usize,
        f: impl FnOnce(&mut dyn Vcpu) -> R + Send + 'static,
    ) -> Result<R, NoAnswer> {
        let (tx, rx) = mpsc::channel();
        {
            let mut s = self.lock();
            if s.finished {
                return Err(NoAnswer(id));
            }
            let queue = s.jobs.get_mut(id).ok_or(NoAnswer(id))?;
            queue.push_back(Box::new(move |v| {
                let _ = tx.send(f(v));
            }));
        }
        self.cond.notify_all();
        rx.recv_timeout(JOB_TIMEOUT).map_err(|_| NoAnswer(id))
    }
}

/// The linear address of the next instruction, as breakpoints name it.
pub fn linear_pc(s: &VcpuState) -> u64 {
    if s.code_bitness() == 64 {
        s.rip
    } else {
        s.cs.base.wrapping_add(s.rip) & 0xffff_ffff
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use vm_memory::GuestAddress;

    use super::*;
    use crate::accel::{AccelError, Kicker, VcpuExit};

    /// A vCPU that records what the hub loads into it.
    struct Probe {
        state: VcpuState,
        debug: Arc<Mutex<DebugConfig>>,
    }

    struct NoKick;
    impl Kicker for NoKick {
        fn kick(&self) {}
    }

    impl Vcpu for Probe {
        fn id(&self) -> usize {
            0
        }
        fn run(&mut self) -> Result<VcpuExit, AccelError> {
            Ok(VcpuExit::Debug)
        }
        fn state(&mut self) -> Result<VcpuState, AccelError> {
            Ok(self.state.clone())
        }
        fn set_state(&mut self, s: &VcpuState) -> Result<(), AccelError> {
            self.state = s.clone();
            Ok(())
        }
        fn kicker(&self) -> Arc<dyn Kicker> {
            Arc::new(NoKick)
        }
        fn set_debug(&mut self, c: &DebugConfig) -> Result<(), AccelError> {
            *self.debug.lock().unwrap() = c.clone();
            Ok(())
        }
    }

    fn ram() -> Arc<GuestRam> {
        Arc::new(GuestRam::from_ranges(&[(GuestAddress(0), 1 << 16)]).unwrap())
    }

    #[test]
    fn stop_is_reported_once_and_holds_everyone() {
        let hub = DebugHub::new(true);
        let kicks = Arc::new(AtomicUsize::new(0));
        let k = kicks.clone();
        hub.start_machine(
            2,
            ram(),
            move || {
                k.fetch_add(1, Ordering::SeqCst);
            },
            || {},
        );
        let (tx, rx) = mpsc::channel();
        hub.attach(move |e| {
            let _ = tx.send(e);
        });
        hub.set_breakpoint(0x1000, false, true);
        hub.resume(&[None, Some(ResumeAction::Step)], true);
        let debug = Arc::new(Mutex::new(DebugConfig::default()));
        let mut probe = Probe {
            state: VcpuState {
                rip: 0x1000,
                ..VcpuState::default()
            },
            debug: debug.clone(),
        };
        hub.gate(1, &mut probe, &|| false);
        assert!(debug.lock().unwrap().single_step);
        assert_eq!(debug.lock().unwrap().sw_breakpoints, vec![0x1000]);
        hub.debug_exit(1, &mut probe);
        hub.debug_exit(0, &mut probe); // a second stop in the same run is not reported
        assert_eq!(
            rx.try_recv(),
            Ok(HubEvent::Stopped {
                vcpu: 1,
                kind: StopKind::Step
            })
        );
        assert!(rx.try_recv().is_err());
        assert!(kicks.load(Ordering::SeqCst) >= 2);
    }

    #[test]
    fn jobs_run_on_the_parked_vcpu_thread() {
        let hub = DebugHub::new(true);
        hub.start_machine(1, ram(), || {}, || {});
        hub.attach(|_| {});
        let h = hub.clone();
        let vcpu_thread = std::thread::spawn(move || {
            let mut probe = Probe {
                state: VcpuState::reset(),
                debug: Arc::default(),
            };
            h.gate(0, &mut probe, &|| false);
            probe.state.rip
        });
        let rip = hub
            .with_vcpu(0, |v| {
                let mut s = v.state().unwrap();
                s.rip = 0x1234;
                v.set_state(&s).unwrap();
                s.rip
            })
            .unwrap();
        assert_eq!(rip, 0x1234);
        hub.resume(&[Some(ResumeAction::Continue)], true);
        assert_eq!(vcpu_thread.join().unwrap(), 0x1234);
        hub.detach();
        hub.finish(1, Duration::from_secs(1));
        assert_eq!(hub.with_vcpu(0, |_| ()), Err(NoAnswer(0)));
    }
}

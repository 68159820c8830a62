//! The machine as its monitors see it: one [`MachineHandle`] for the whole run, across power
//! cycles, through which HMP and QMP stop, continue, reset, power down and quit the machine and
//! reach what they inspect (vCPU state, exit counters, RAM, buses, PCI).
//!
//! The machine's run loop calls [`MachineHandle::attach_cycle`] when a power cycle has built its
//! devices and vCPUs, and [`MachineHandle::cycle_ended`] with the outcome when it ends; the
//! handle turns lifecycle changes into [`MachineEvent`]s for its subscribers (QMP's events).
//! Whether the machine is paused belongs to the handle, not to a power cycle: a paused machine
//! that is reset stays paused, as under QEMU.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::control::{Control, Outcome};
use super::io::MachineIo;
use crate::accel::{AccelError, ExitStats, GuestRam, Vcpu, VcpuState};
use crate::devices::acpi_pm::AcpiPm;
use crate::devices::pci_host::PciHost;
use crate::monitor::gdb::DebugHub;

/// How long `stop` waits for every vCPU to park.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a job on a vCPU thread may take before the monitor gives up on it.
const JOB_TIMEOUT: Duration = Duration::from_secs(2);

/// What the monitor can do with a power cycle: its parts, shared.
pub struct CycleView {
    /// The cycle's control block (stop, kick, jobs on vCPU threads).
    pub control: Arc<Control>,
    /// The exit counters.
    pub stats: Arc<ExitStats>,
    /// Guest RAM.
    pub ram: Arc<GuestRam>,
    /// Both buses.
    pub io: Arc<MachineIo>,
    /// The PCI host (for `info pci`).
    pub pci: Arc<Mutex<PciHost>>,
    /// The ACPI PM block (for the power button).
    pub pm: Arc<Mutex<AcpiPm>>,
    /// Number of vCPUs.
    pub cpus: usize,
    /// The accelerator's name.
    pub accel: &'static str,
}

/// A change of the machine's state, as QMP reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MachineEvent {
    /// The vCPUs were paused.
    Stop,
    /// The vCPUs run again.
    Resume,
    /// The machine reset; `guest` tells whether the guest asked for it.
    Reset {
        /// The guest asked (else the monitor).
        guest: bool,
        /// QEMU's `ShutdownCause` spelling.
        reason: &'static str,
    },
    /// The machine is going away.
    Shutdown {
        /// The guest asked (else the host).
        guest: bool,
        /// QEMU's `ShutdownCause` spelling.
        reason: &'static str,
    },
    /// The power button was pressed.
    Powerdown,
}

/// Whether the vCPUs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Running.
    Running,
    /// Stopped by the monitor.
    Paused,
    /// Between power cycles or after the end.
    Shutdown,
}

impl RunStatus {
    /// QMP's `RunState` name.
    pub fn name(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Paused => "paused",
            RunStatus::Shutdown => "shutdown",
        }
    }
}

/// Why a monitor request could not be served.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandleError {
    /// No power cycle is running (the machine is being rebuilt or has ended).
    #[error("the machine is not running")]
    NoMachine,
    /// There is no such vCPU.
    #[error("no vCPU {0}")]
    NoVcpu(usize),
    /// The vCPU did not come to its boundary in time (gdb may hold it).
    #[error("vCPU {0} did not answer")]
    NoAnswer(usize),
    /// The accelerator could not read the vCPU.
    #[error("vCPU {vcpu}: {why}")]
    Accel {
        /// The vCPU.
        vcpu: usize,
        /// What the accelerator said.
        why: String,
    },
}

type Subscriber = Arc<dyn Fn(&MachineEvent) + Send + Sync>;

#[derive(Default)]
struct Inner {
    cycle: Option<Arc<CycleView>>,
    paused: bool,
    /// The monitor asked for the reset / quit that is under way.
    host_reset: bool,
    host_quit: bool,
    /// Quit was asked while no cycle ran: end the next one at once.
    quit_pending: bool,
    /// The run is over: no power cycle will come.
    ended: bool,
    subscribers: Vec<(u64, Subscriber)>,
    next_subscriber: u64,
}

/// The monitors' handle on the machine.
#[derive(Default)]
pub struct MachineHandle {
    inner: Mutex<Inner>,
    /// Signalled when a power cycle attaches or the run ends.
    changed: Condvar,
    debug: Mutex<Option<Arc<DebugHub>>>,
}

impl MachineHandle {
    /// A handle; with `start_paused` (`-S` without gdb) the vCPUs wait for `cont`.
    pub fn new(start_paused: bool) -> Arc<Self> {
        let h = MachineHandle::default();
        h.lock().paused = start_paused;
        Arc::new(h)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The gdb hub, if gdb is configured: vCPUs gdb holds serve register reads through it.
    pub fn set_debug_hub(&self, hub: Option<Arc<DebugHub>>) {
        *self.debug.lock().unwrap_or_else(|e| e.into_inner()) = hub;
    }

    /// Call `f` on every event from now on; returns an id for [`MachineHandle::unsubscribe`].
    pub fn subscribe(&self, f: impl Fn(&MachineEvent) + Send + Sync + 'static) -> u64 {
        let mut s = self.lock();
        s.next_subscriber += 1;
        let id = s.next_subscriber;
        s.subscribers.push((id, Arc::new(f)));
        id
    }

    /// Stop calling subscriber `id`.
    pub fn unsubscribe(&self, id: u64) {
        self.lock().subscribers.retain(|(i, _)| *i != id);
    }

    fn emit(&self, event: MachineEvent) {
        let subs: Vec<Subscriber> = self
            .lock()
            .subscribers
            .iter()
            .map(|(_, f)| f.clone())
            .collect();
        for f in subs {
            f(&event);
        }
    }

    // ---- the machine's side ----

    /// A power cycle built `control`: pause it before its vCPUs start if the machine is paused,
    /// end it at once if quit was asked in between.
    pub fn prepare_cycle(&self, control: &Control) {
        let s = self.lock();
        if s.paused {
            control.gate().pause();
        }
        if s.quit_pending {
            control.finish(Outcome::Quit);
        }
    }

    /// The power cycle `view` runs.
    pub fn attach_cycle(&self, view: CycleView) {
        self.lock().cycle = Some(Arc::new(view));
        self.changed.notify_all();
    }

    /// The run is over (no more power cycles).
    pub fn end(&self) {
        let mut s = self.lock();
        s.ended = true;
        s.cycle = None;
        drop(s);
        self.changed.notify_all();
    }

    /// Wait up to `timeout` for a power cycle to be running (the machine is being built or
    /// rebuilt); returns at once when one runs or the run is over. Monitors call it before a
    /// command, so a command typed (or piped) right at start-up finds the machine.
    pub fn wait_for_cycle(&self, timeout: Duration) {
        let s = self.lock();
        let _ = self
            .changed
            .wait_timeout_while(s, timeout, |s| s.cycle.is_none() && !s.ended)
            .unwrap_or_else(|e| e.into_inner());
    }

    /// The current power cycle ended with `outcome`; `rebooting` if the machine is rebuilt.
    pub fn cycle_ended(&self, outcome: &Outcome, rebooting: bool) {
        let (host_reset, host_quit) = {
            let mut s = self.lock();
            s.cycle = None;
            let flags = (s.host_reset, s.host_quit);
            s.host_reset = false;
            flags
        };
        match outcome {
            Outcome::Reset => {
                let reason = if host_reset {
                    "host-qmp-system-reset"
                } else {
                    "guest-reset"
                };
                self.emit(MachineEvent::Reset {
                    guest: !host_reset,
                    reason,
                });
                if !rebooting {
                    self.emit(MachineEvent::Shutdown {
                        guest: !host_reset,
                        reason,
                    });
                }
            }
            Outcome::PowerOff => self.emit(MachineEvent::Shutdown {
                guest: true,
                reason: "guest-shutdown",
            }),
            Outcome::Quit => self.emit(MachineEvent::Shutdown {
                guest: false,
                reason: if host_quit {
                    "host-qmp-quit"
                } else {
                    "host-ui"
                },
            }),
            Outcome::Exit(_) | Outcome::Crash(_) | Outcome::Failed(_) => {}
        }
    }

    // ---- the monitors' side ----

    /// The running power cycle.
    pub fn cycle(&self) -> Result<Arc<CycleView>, HandleError> {
        self.lock().cycle.clone().ok_or(HandleError::NoMachine)
    }

    /// Running or paused.
    pub fn status(&self) -> RunStatus {
        let s = self.lock();
        match (&s.cycle, s.paused) {
            (None, _) => RunStatus::Shutdown,
            (Some(_), true) => RunStatus::Paused,
            (Some(_), false) => RunStatus::Running,
        }
    }

    /// Pause every vCPU at a `run()` boundary (a no-op when paused already).
    pub fn stop(&self) {
        let cycle = {
            let mut s = self.lock();
            if s.paused {
                return;
            }
            s.paused = true;
            s.cycle.clone()
        };
        if let Some(c) = cycle {
            if !c.control.pause_all(PAUSE_TIMEOUT) {
                log::warn!("monitor: not every vCPU paused in {PAUSE_TIMEOUT:?}");
            }
        }
        self.emit(MachineEvent::Stop);
    }

    /// Let the vCPUs run again (a no-op when running).
    pub fn cont(&self) {
        let cycle = {
            let mut s = self.lock();
            if !s.paused {
                return;
            }
            s.paused = false;
            s.cycle.clone()
        };
        if let Some(c) = cycle {
            c.control.resume_all();
        }
        self.emit(MachineEvent::Resume);
    }

    /// Reset the machine (it is rebuilt, unless `-no-reboot`).
    pub fn system_reset(&self) -> Result<(), HandleError> {
        let c = self.cycle()?;
        self.lock().host_reset = true;
        c.control.finish(Outcome::Reset);
        Ok(())
    }

    /// Press the ACPI power button.
    pub fn system_powerdown(&self) -> Result<(), HandleError> {
        let c = self.cycle()?;
        c.pm.lock()
            .unwrap_or_else(|e| e.into_inner())
            .press_power_button();
        self.emit(MachineEvent::Powerdown);
        Ok(())
    }

    /// End the run (process status 0).
    pub fn quit(&self) {
        let cycle = {
            let mut s = self.lock();
            s.host_quit = true;
            if s.cycle.is_none() {
                s.quit_pending = true;
            }
            s.cycle.clone()
        };
        if let Some(c) = cycle {
            c.control.finish(Outcome::Quit);
        }
    }

    /// Run `f` on vCPU `id`'s thread (through gdb's hub when gdb holds it).
    pub fn with_vcpu<R: Send + 'static>(
        &self,
        id: usize,
        f: impl FnOnce(&mut dyn Vcpu) -> R + Send + Clone + 'static,
    ) -> Result<R, HandleError> {
        let c = self.cycle()?;
        if id >= c.cpus {
            return Err(HandleError::NoVcpu(id));
        }
        if let Some(r) = c.control.run_on_vcpu(id, JOB_TIMEOUT, f.clone()) {
            return Ok(r);
        }
        let hub = self.debug.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match hub {
            Some(h) => h.with_vcpu(id, f).map_err(|_| HandleError::NoAnswer(id)),
            None => Err(HandleError::NoAnswer(id)),
        }
    }

    /// vCPU `id`'s registers.
    pub fn vcpu_state(&self, id: usize) -> Result<VcpuState, HandleError> {
        self.with_vcpu(id, |v| v.state().map_err(|e: AccelError| e.to_string()))?
            .map_err(|why| HandleError::Accel { vcpu: id, why })
    }

    /// vCPU `id`'s host thread id (0 if unknown).
    pub fn thread_id(&self, id: usize) -> i64 {
        self.cycle()
            .map(|c| c.control.gate().thread_id(id))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_follow_outcomes_and_who_asked() {
        let h = MachineHandle::new(false);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let id = h.subscribe(move |e| log.lock().unwrap().push(e.clone()));
        h.cycle_ended(&Outcome::Reset, true);
        h.lock().host_reset = true;
        h.cycle_ended(&Outcome::Reset, false);
        h.cycle_ended(&Outcome::PowerOff, false);
        h.unsubscribe(id);
        h.cycle_ended(&Outcome::PowerOff, false);
        let seen = seen.lock().unwrap();
        assert_eq!(
            *seen,
            vec![
                MachineEvent::Reset {
                    guest: true,
                    reason: "guest-reset"
                },
                MachineEvent::Reset {
                    guest: false,
                    reason: "host-qmp-system-reset"
                },
                MachineEvent::Shutdown {
                    guest: false,
                    reason: "host-qmp-system-reset"
                },
                MachineEvent::Shutdown {
                    guest: true,
                    reason: "guest-shutdown"
                },
            ]
        );
    }

    #[test]
    fn stop_and_cont_without_a_cycle_only_flip_the_flag_once() {
        let h = MachineHandle::new(true);
        let count = Arc::new(Mutex::new(0));
        let c = count.clone();
        h.subscribe(move |_| *c.lock().unwrap() += 1);
        assert_eq!(h.status(), RunStatus::Shutdown);
        h.stop(); // already paused: nothing
        h.cont();
        h.cont(); // already running: nothing
        assert_eq!(*count.lock().unwrap(), 1);
        assert_eq!(h.system_reset(), Err(HandleError::NoMachine));
        let control = Control::new();
        h.quit();
        h.prepare_cycle(&control);
        assert!(control.stopping());
    }
}

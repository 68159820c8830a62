//! The run loop of one vCPU thread, the same for both accelerators (see DESIGN.md): I/O is
//! served inside `run()`, so only halts, kicks, debug events, shutdowns and failures come back
//! here. With a debugger ([`DebugHub`]) every `run()` is preceded by the hub's gate, where the
//! vCPU parks while gdb holds the machine, and by the control block's boundary, where it serves
//! the monitor's jobs and parks while the monitor has paused the machine.

use std::sync::Arc;
use std::time::Duration;

use super::control::{Control, Outcome};
use crate::accel::{AccelError, Vcpu, VcpuExit};
use crate::monitor::gdb::DebugHub;

/// How long a halted vCPU sleeps before looking again when nothing wakes it (every interrupt
/// source wakes it through `Control`, so this is only a safety net).
pub(super) const HALT_POLL: Duration = Duration::from_millis(10);

/// Run `vcpu` until the machine stops; `debug` is the gdbstub's hub when one is configured.
pub fn run_vcpu(mut vcpu: Box<dyn Vcpu>, control: Arc<Control>, debug: Option<Arc<DebugHub>>) {
    let id = vcpu.id();
    control.gate().set_thread_id(id);
    while !control.stopping() {
        control.vcpu_boundary(id, &mut *vcpu);
        if control.stopping() {
            break;
        }
        if let Some(hub) = &debug {
            hub.gate(id, &mut *vcpu, &|| control.stopping());
            if control.stopping() {
                break;
            }
        }
        // Read before `run`, so an interrupt that arrives between the HLT and the wait below
        // ends the wait at once instead of after HALT_POLL.
        let gen = control.wake_generation();
        match vcpu.run() {
            Ok(VcpuExit::Halt) => control.wait_halted_since(gen, HALT_POLL),
            other => handle_exit(other, &mut *vcpu, &control, debug.as_ref()),
        }
    }
}

/// Act on what `run()` returned, except a halt (whose wait depends on the loop): a debug event
/// goes to the gdbstub, a shutdown, reset, crash or failure ends the run.
pub(super) fn handle_exit(
    exit: Result<VcpuExit, AccelError>,
    vcpu: &mut dyn Vcpu,
    control: &Control,
    debug: Option<&Arc<DebugHub>>,
) {
    let id = vcpu.id();
    match exit {
        Ok(VcpuExit::Halt) | Ok(VcpuExit::Interrupted) => {}
        Ok(VcpuExit::Debug) => {
            if let Some(hub) = debug {
                hub.debug_exit(id, vcpu);
            }
        }
        Ok(VcpuExit::Shutdown) => {
            let report = vcpu.report("triple fault (CPU shutdown)");
            eprintln!("kemu: {report}");
            log::debug!("registers at the triple fault: {:x?}", report.state);
            control.finish(Outcome::Reset);
        }
        Ok(VcpuExit::Reset) => control.finish(Outcome::Reset),
        Err(AccelError::Guest(report)) => control.finish(Outcome::Crash(report)),
        Err(e) => control.finish(Outcome::Failed(format!("vCPU {id}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::accel::{Kicker, VcpuState};

    /// A vCPU that returns scripted exits.
    struct Scripted(VecDeque<Result<VcpuExit, AccelError>>);

    struct NoKick;
    impl Kicker for NoKick {
        fn kick(&self) {}
    }

    impl Vcpu for Scripted {
        fn id(&self) -> usize {
            0
        }
        fn run(&mut self) -> Result<VcpuExit, AccelError> {
            self.0
                .pop_front()
                .unwrap_or_else(|| Err(AccelError::Other("script ran out".into())))
        }
        fn state(&mut self) -> Result<VcpuState, AccelError> {
            Ok(VcpuState::reset())
        }
        fn set_state(&mut self, _: &VcpuState) -> Result<(), AccelError> {
            Ok(())
        }
        fn kicker(&self) -> Arc<dyn Kicker> {
            Arc::new(NoKick)
        }
    }

    fn outcome_of(script: Vec<Result<VcpuExit, AccelError>>) -> Outcome {
        let control = Control::new();
        run_vcpu(Box::new(Scripted(script.into())), control.clone(), None);
        control
            .outcome()
            .expect("the loop ends only with an outcome")
    }

    #[test]
    fn halts_and_kicks_resume_then_shutdown_resets() {
        let o = outcome_of(vec![
            Ok(VcpuExit::Halt),
            Ok(VcpuExit::Interrupted),
            Ok(VcpuExit::Shutdown),
        ]);
        assert!(matches!(o, Outcome::Reset));
    }

    #[test]
    fn guest_crash_and_accelerator_failure_are_kept_apart() {
        let report = Box::new(crate::accel::CrashReport {
            reason: "test".into(),
            vcpu: 0,
            state: None,
            bytes: Vec::new(),
        });
        assert!(matches!(
            outcome_of(vec![Err(AccelError::Guest(report))]),
            Outcome::Crash(_)
        ));
        assert!(matches!(
            outcome_of(vec![Ok(VcpuExit::Reset), Ok(VcpuExit::Halt)]),
            Outcome::Reset
        ));
        assert!(matches!(outcome_of(vec![]), Outcome::Failed(_)));
    }
}

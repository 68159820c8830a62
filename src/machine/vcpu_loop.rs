//! The run loop of one vCPU thread, the same for both accelerators (see DESIGN.md): I/O is
//! served inside `run()`, so only halts, kicks, shutdowns and failures come back here.

use std::sync::Arc;
use std::time::Duration;

use super::control::{Control, Outcome};
use crate::accel::{AccelError, Vcpu, VcpuExit};

/// How long a halted vCPU sleeps before looking again when nothing wakes it.
const HALT_POLL: Duration = Duration::from_millis(10);

/// Run `vcpu` until the machine stops.
pub fn run_vcpu(mut vcpu: Box<dyn Vcpu>, control: Arc<Control>) {
    while !control.stopping() {
        match vcpu.run() {
            Ok(VcpuExit::Halt) => control.wait_halted(HALT_POLL),
            Ok(VcpuExit::Interrupted) | Ok(VcpuExit::Debug) => {}
            Ok(VcpuExit::Shutdown) => {
                let report = vcpu.report("triple fault (CPU shutdown)");
                eprintln!("kemu: {report}");
                log::debug!("registers at the triple fault: {:x?}", report.state);
                control.finish(Outcome::Reset);
            }
            Ok(VcpuExit::Reset) => control.finish(Outcome::Reset),
            Err(AccelError::Guest(report)) => control.finish(Outcome::Crash(report)),
            Err(e) => control.finish(Outcome::Failed(format!("vCPU {}: {e}", vcpu.id()))),
        }
    }
}

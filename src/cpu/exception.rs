//! Exceptions: turning a fault into a delivery, with the SDM's double-fault rules (contributory
//! after contributory, anything but benign after #PF → #DF; a fault while delivering #DF → triple
//! fault → shutdown). The delivery mechanics per mode are in `super::interrupt`.

use super::fault::{vec, Fault};
use super::run::CpuExit;
use super::Cpu;

/// What kind of event is being delivered (changes the error-code EXT bit, the gate DPL check
/// and the return address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A fault or abort raised by an instruction.
    Exception,
    /// INT n, INT3, INTO: gate DPL checked, returns after the instruction.
    Software,
    /// An external interrupt or NMI.
    External,
}

fn contributory(v: u8) -> bool {
    matches!(v, vec::DE | vec::TS | vec::NP | vec::SS | vec::GP)
}

impl Cpu {
    /// Deliver exception `vector` for the instruction at the current RIP, escalating to #DF and
    /// shutdown as the SDM's table says.
    pub(crate) fn raise_exception(&mut self, vector: u8, code: Option<u32>) -> Result<(), CpuExit> {
        let (mut v, mut c) = (vector, code);
        loop {
            let rip = self.state.rip;
            match self.deliver(v, c, Kind::Exception, rip) {
                Ok(()) => return Ok(()),
                Err(Fault::Exception(e)) => {
                    let (v2, c2) = (e.vector(), e.code());
                    if v == vec::DF {
                        return Err(CpuExit::Shutdown);
                    }
                    let double = (contributory(v) && contributory(v2))
                        || (v == vec::PF && (contributory(v2) || v2 == vec::PF));
                    if double {
                        v = vec::DF;
                        c = Some(0);
                    } else {
                        v = v2;
                        c = c2;
                    }
                }
                Err(_) => return Err(CpuExit::Shutdown),
            }
        }
    }

    /// Deliver an external interrupt or NMI at the current instruction boundary; a fault during
    /// delivery is raised as an exception.
    pub(crate) fn deliver_event(
        &mut self,
        vector: u8,
        code: Option<u32>,
        kind: Kind,
    ) -> Result<(), CpuExit> {
        let rip = self.state.rip;
        match self.deliver(vector, code, kind, rip) {
            Ok(()) => Ok(()),
            Err(Fault::Exception(e)) => self.raise_exception(e.vector(), e.code()),
            Err(_) => Err(CpuExit::Shutdown),
        }
    }
}

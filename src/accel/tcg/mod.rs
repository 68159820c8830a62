//! The software-CPU accelerator: drives `crate::cpu` behind the `Accelerator`/`Vcpu` seam.
//! (Placeholder until the software CPU lands: creating a vCPU fails with a clear error.)

use std::sync::Arc;

use super::{AccelError, Accelerator, GuestRam, IrqChip, Vcpu, VcpuContext};

/// The software CPU accelerator.
#[derive(Default)]
pub struct Tcg;

impl Tcg {
    /// A new software-CPU accelerator.
    pub fn new() -> Self {
        Tcg
    }
}

struct NoChip;
impl IrqChip for NoChip {
    fn set_irq(&self, _gsi: u32, _level: bool) {}
}

impl Accelerator for Tcg {
    fn name(&self) -> &'static str {
        "tcg"
    }
    fn map_ram(&self, _ram: &Arc<GuestRam>) -> Result<(), AccelError> {
        Ok(())
    }
    fn irq_chip(&self) -> Arc<dyn IrqChip> {
        Arc::new(NoChip)
    }
    fn create_vcpu(&self, _id: usize, _ctx: VcpuContext) -> Result<Box<dyn Vcpu>, AccelError> {
        Err(AccelError::Other(
            "the software CPU (-accel tcg) is not available yet".into(),
        ))
    }
}

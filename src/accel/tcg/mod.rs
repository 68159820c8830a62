//! The software-CPU accelerator: drives `crate::cpu` behind the `Accelerator`/`Vcpu` seam.

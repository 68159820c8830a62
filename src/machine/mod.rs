//! The PC machine model: wires memory, devices, interrupt controllers and vCPUs together.

pub mod acpi;
pub mod boot;
pub mod console;
pub mod memory;

//! kemu: an x86-64 PC emulator. One machine model whose vCPUs run on our software CPU (`tcg`)
//! or on the host's `/dev/kvm`, with one device model behind both. See `DESIGN.md` in the
//! project's shared folder and `README.md` for the tour.

#![warn(clippy::undocumented_unsafe_blocks)]

pub mod accel;
pub mod bench;
pub mod block;
pub mod cli;
pub mod cpu;
pub mod devices;
pub mod difftest;
pub mod guests;
pub mod machine;
pub mod monitor;

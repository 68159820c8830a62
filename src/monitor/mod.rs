//! The machine's monitors: ways a person or a tool inspects and steers a running guest.
//!
//! - [`gdb`]: the GDB remote stub (`-s`, `-gdb`).
//! - [`hmp`]: the human monitor, `-monitor stdio` or `Ctrl-A c` on the serial console; its
//!   commands live in [`commands`] (with `info` texts in `info` and `pci_info`, `x`/`xp` in `memdump`).
//! - [`qmp`]: QMP, the JSON protocol tools speak (`-qmp unix:PATH,server=on,wait=off`).
//!
//! All of them act on the machine through [`crate::machine::handle::MachineHandle`].

pub mod commands;
pub mod gdb;
pub mod hmp;
mod info;
mod memdump;
mod pci_info;
pub mod qmp;

pub use info::linear_pc;

//! The machine's monitors: ways a person or a tool inspects and steers a running guest.
//! For now the GDB remote stub ([`gdb`]).

pub mod gdb;

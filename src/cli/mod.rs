//! The command line.

/// Run kemu with `args` (argv including the program name); returns the process exit status.
pub fn main_with_args(_args: Vec<std::ffi::OsString>) -> i32 {
    0
}

//! The `kemu` command: QEMU-style flags in, a running machine out. Errors become one line on
//! stderr and a non-zero status.

fn main() {
    std::process::exit(kemu::cli::main_with_args(std::env::args_os().collect()));
}

//! The GDB remote stub (`-s`, `-gdb tcp::PORT`, `-S`), built on the `gdbstub` crate.
//!
//! [`GdbServer::start`] binds the TCP listener and starts the gdb thread, which serves one
//! connection at a time. The machine creates one [`DebugHub`] per run, calls
//! [`DebugHub::start_machine`] each power cycle, passes every vCPU thread through
//! [`DebugHub::gate`] before `run()` and reports `VcpuExit::Debug` to
//! [`DebugHub::debug_exit`]; at the end it calls [`DebugHub::finish`] so gdb sees the exit
//! status. All-stop mode: when one vCPU stops, all do.
//!
//! What gdb sees: one thread per vCPU; x86-64 registers (general, rip, eflags, selectors,
//! x87, SSE, fs_base/gs_base, cr0/2/3/4/8, efer; architecture `i386:x86-64` even when the guest
//! runs 16/32-bit code: use gdb's `set architecture i8086` or `i386` to disassemble it);
//! memory by guest-virtual address through the stopped thread's page tables; software (Z0) and
//! hardware (Z1) breakpoints by linear address (CS base + RIP); single step; continue; Ctrl-C.
//!
//! `monitor phys` / `monitor virt` switch gdb's memory addresses between guest-physical and
//! guest-virtual; `monitor mode` prints each vCPU's mode, CPL and CS:RIP.
//!
//! Files: `arch` (register layout and target XML), `hub` (vCPU ↔ gdb all-stop meeting point),
//! `target` (gdbstub's Target), `monitor` (monitor commands), `conn` (socket + event loop),
//! `walk` (page-table walk).

mod arch;
mod conn;
mod hub;
mod monitor;
mod target;
pub mod walk;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{mpsc, Arc};

use gdbstub::stub::{DisconnectReason, GdbStub};
pub use hub::{DebugHub, HubEvent, NoAnswer, ResumeAction, StopKind};

use self::conn::{spawn_reader, EventLoop, GdbConn, Input};
use self::target::MachineTarget;

/// Why the gdb server could not start.
#[derive(Debug, thiserror::Error)]
pub enum GdbError {
    /// The `-gdb` value is not `tcp::PORT`, `tcp:HOST:PORT` or `:PORT`.
    #[error("-gdb {0}: expected tcp::PORT or tcp:HOST:PORT")]
    BadAddress(String),
    /// The listening socket could not be opened.
    #[error("gdb server on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The gdb thread could not be started.
    #[error("cannot start the gdb thread: {0}")]
    Thread(std::io::Error),
}

/// The port `-s` listens on.
pub const DEFAULT_PORT: u16 = 1234;

/// `-gdb` spelling to a `host:port` to bind: `tcp::1234` and `:1234` listen on 127.0.0.1
/// (QEMU listens on every interface; kemu keeps the debugger local), `tcp:HOST:PORT` on HOST.
pub fn parse_address(spec: &str) -> Result<String, GdbError> {
    let rest = spec.strip_prefix("tcp:").unwrap_or(spec);
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| GdbError::BadAddress(spec.to_string()))?;
    let port: u16 = port
        .parse()
        .map_err(|_| GdbError::BadAddress(spec.to_string()))?;
    let host = if host.is_empty() { "127.0.0.1" } else { host };
    Ok(format!("{host}:{port}"))
}

/// The gdb server: a listening socket and the thread that serves it.
pub struct GdbServer {
    local: SocketAddr,
}

impl GdbServer {
    /// Listen on `addr` (`host:port`) and serve gdb connections for `hub`'s machine.
    /// `patch_int3`: software breakpoints are INT3s written into guest memory (KVM).
    pub fn start(addr: &str, hub: Arc<DebugHub>, patch_int3: bool) -> Result<Self, GdbError> {
        let bind_err = |source| GdbError::Bind {
            addr: addr.to_string(),
            source,
        };
        let listener = TcpListener::bind(addr).map_err(bind_err)?;
        let local = listener.local_addr().map_err(bind_err)?;
        std::thread::Builder::new()
            .name("gdbstub".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    match stream {
                        Ok(s) => serve(s, &hub, patch_int3),
                        Err(e) => log::warn!("gdbstub: accept: {e}"),
                    }
                }
            })
            .map_err(GdbError::Thread)?;
        log::info!("gdbstub: listening on {local}");
        Ok(GdbServer { local })
    }

    /// The address actually bound (port 0 picks a free one).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

/// Serve one gdb connection until it ends.
fn serve(stream: TcpStream, hub: &Arc<DebugHub>, patch_int3: bool) {
    let peer = stream.peer_addr().ok();
    log::info!("gdbstub: connection from {peer:?}");
    let (tx, rx) = mpsc::channel();
    let reader = stream.try_clone().and_then(|s| spawn_reader(s, tx.clone()));
    if let Err(e) = reader {
        log::warn!("gdbstub: {e}");
        return;
    }
    hub.attach(move |e| {
        let _ = tx.send(Input::Event(e));
    });
    let mut target = MachineTarget::new(hub.clone(), patch_int3);
    let result = GdbStub::new(GdbConn::new(stream, rx)).run_blocking::<EventLoop>(&mut target);
    target.unpatch_all();
    match result {
        Ok(DisconnectReason::Kill) => {
            hub.detach();
            hub.quit();
        }
        Ok(reason) => {
            log::info!("gdbstub: session ended ({reason:?})");
            hub.detach();
        }
        Err(e) => {
            log::info!("gdbstub: session ended: {e}");
            hub.detach();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(parse_address("tcp::1234").unwrap(), "127.0.0.1:1234");
        assert_eq!(parse_address("tcp:0.0.0.0:99").unwrap(), "0.0.0.0:99");
        assert_eq!(parse_address(":5").unwrap(), "127.0.0.1:5");
        assert!(parse_address("tcp::x").is_err());
        assert!(parse_address("1234").is_err());
    }
}

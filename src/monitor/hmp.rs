//! The human monitor (HMP) on the terminal: a `(kemu) ` prompt, one command per line.
//!
//! Two ways in, as QEMU has them:
//! - `-monitor stdio` ([`spawn_stdio`]): a thread reads stdin line by line (the terminal stays
//!   in its normal, line-edited mode) and prints each reply and a new prompt on stdout.
//! - `Ctrl-A c` on the serial console (`-nographic`, `-serial stdio`): the console's stdin
//!   reader hands the raw bytes to a [`MuxMonitor`], which echoes them, edits the line
//!   (backspace) and runs it on Enter; `Ctrl-A c` again gives the terminal back to the guest.

use std::io::{self, BufRead, Write};
use std::sync::Arc;

use super::commands::HmpSession;
use crate::machine::handle::MachineHandle;

/// The prompt.
pub const PROMPT: &str = "(kemu) ";

/// The banner printed when the monitor starts.
pub fn banner() -> String {
    format!(
        "kemu {} monitor - type 'help' for more information\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// Serve HMP on stdin/stdout until end of input or `quit`, on a thread named `hmp`.
pub fn spawn_stdio(handle: Arc<MachineHandle>) -> io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("hmp".into())
        .spawn(move || {
            let stdin = io::stdin();
            serve_lines(handle, stdin.lock(), io::stdout());
        })
}

/// The `-monitor stdio` loop over any input and output; returns whether it ended on `quit`.
pub fn serve_lines(handle: Arc<MachineHandle>, input: impl BufRead, mut out: impl Write) -> bool {
    let mut session = HmpSession::new(handle);
    let _ = write!(out, "{}{PROMPT}", banner());
    let _ = out.flush();
    for line in input.lines() {
        let Ok(line) = line else { return false };
        let reply = session.execute(&line);
        let _ = out.write_all(reply.text.as_bytes());
        if reply.quit {
            let _ = out.flush();
            return true;
        }
        let _ = write!(out, "{PROMPT}");
        let _ = out.flush();
    }
    false
}

/// The monitor behind `Ctrl-A c`: raw terminal bytes in, echo and replies out.
pub struct MuxMonitor {
    session: HmpSession,
    line: Vec<u8>,
    greeted: bool,
}

impl MuxMonitor {
    /// A monitor on `handle`.
    pub fn new(handle: Arc<MachineHandle>) -> Self {
        MuxMonitor {
            session: HmpSession::new(handle),
            line: Vec::new(),
            greeted: false,
        }
    }

    /// The terminal switched to the monitor: what to print (banner the first time, a prompt).
    pub fn enter(&mut self) -> String {
        let mut o = String::from("\r\n");
        if !self.greeted {
            self.greeted = true;
            o.push_str(&banner());
        }
        o.push_str(PROMPT);
        o.push_str(&String::from_utf8_lossy(&self.line));
        o
    }

    /// Raw input bytes: returns what to print (echo, replies, prompts).
    pub fn feed(&mut self, bytes: &[u8]) -> String {
        let mut o = String::new();
        for &b in bytes {
            match b {
                b'\r' | b'\n' => {
                    o.push_str("\r\n");
                    let line = String::from_utf8_lossy(&self.line).into_owned();
                    self.line.clear();
                    let reply = self.session.execute(&line);
                    o.push_str(&reply.text.replace('\n', "\r\n"));
                    if reply.quit {
                        return o;
                    }
                    o.push_str(PROMPT);
                }
                0x7f | 0x08 if !self.line.is_empty() => {
                    self.line.pop();
                    o.push_str("\x08 \x08");
                }
                0x20..=0x7e => {
                    self.line.push(b);
                    o.push(char::from(b));
                }
                _ => {}
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdio_loop_prompts_runs_and_quits() {
        let handle = MachineHandle::new(false);
        handle.end();
        let mut out = Vec::new();
        let quit = serve_lines(
            handle,
            &b"help stop\ninfo status\nquit\nnot run\n"[..],
            &mut out,
        );
        assert!(quit);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("kemu "));
        assert!(text.contains("(kemu) stop -- stop emulation\n(kemu) VM status: shutdown\n"));
        assert!(!text.contains("not run"));
    }

    #[test]
    fn mux_echoes_edits_and_runs_lines() {
        let handle = MachineHandle::new(false);
        handle.end();
        let mut m = MuxMonitor::new(handle);
        assert!(m.enter().contains(PROMPT));
        assert_eq!(m.feed(b"inf"), "inf");
        assert_eq!(m.feed(b"x\x7f"), "x\x08 \x08");
        let out = m.feed(b"o status\r");
        assert_eq!(out, "o status\r\nVM status: shutdown\r\n(kemu) ");
        assert_eq!(m.enter(), "\r\n(kemu) ");
    }
}

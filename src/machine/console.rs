//! The host side of the serial console, as QEMU's `-nographic`/`-serial stdio` does it.
//!
//! - [`RawTerminal`]: while it lives, a terminal on stdin is in raw mode (no line editing, no echo,
//!   no signals from Ctrl-C/Ctrl-Z, which go to the guest), with output processing kept so the
//!   guest's `\n` still returns the carriage. The original settings come back when it is dropped,
//!   when the process panics (a panic hook installed once) and when it exits through
//!   `std::process::exit`/`exit(3)` (an `atexit` handler installed once). A kill by a signal that
//!   is not caught (SIGKILL, SIGTERM) leaves the terminal raw: `stty sane` repairs it.
//! - [`spawn_stdin_reader`]: a thread that reads stdin and hands the guest its bytes; the escape
//!   `Ctrl-A x` quits (as QEMU), `Ctrl-A Ctrl-A` sends one Ctrl-A, `Ctrl-A h` prints help, and
//!   any other `Ctrl-A` escape (`Ctrl-A c`: switch to the monitor) goes to its caller. Escapes
//!   are recognised whether or not stdin is a terminal, like QEMU's mux. End of input just stops
//!   the reader (a guest fed from a pipe keeps running).
//! - [`ConsoleOutput`]: where the guest's serial output goes (`-serial stdio|file:PATH|none`),
//!   a [`Write`] the UART writes to byte by byte.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::{Mutex, Once};
use std::thread::JoinHandle;

use super::config::SerialConfig;

/// Errors setting up the console.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// A terminal call on stdin failed.
    #[error("terminal {op} on stdin: {source}")]
    Terminal {
        /// The call (`tcgetattr`, `tcsetattr`).
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The `file:` output could not be created.
    #[error("serial output file {path}: {source}")]
    OpenFile {
        /// The path given.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The reader thread could not be started.
    #[error("starting the stdin reader: {0}")]
    Thread(io::Error),
}

/// The byte that starts an escape: Ctrl-A.
pub const ESCAPE: u8 = 0x01;

/// The help `Ctrl-A h` prints (raw mode keeps output processing, so `\n` is enough).
pub const ESCAPE_HELP: &str = "\nC-a h    print this help\nC-a x    exit emulator\n\
     C-a c    switch between console and monitor\nC-a C-a  send C-a to the guest\n";

/// The settings to put back, shared with the panic hook and the `atexit` handler.
static SAVED: Mutex<Option<libc::termios>> = Mutex::new(None);
static INSTALL_RESTORERS: Once = Once::new();

fn restore_saved() {
    let saved = SAVED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(t) = saved.as_ref() {
        // SAFETY: fd 0 is a descriptor number (a closed one only makes the call fail) and `t` is
        // a termios that tcgetattr filled in.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, t) };
    }
}

extern "C" fn restore_at_exit() {
    restore_saved();
}

fn install_restorers() {
    INSTALL_RESTORERS.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_saved();
            previous(info);
        }));
        // SAFETY: registers a plain `extern "C" fn()` that only calls tcsetattr; atexit has no
        // other preconditions.
        unsafe { libc::atexit(restore_at_exit) };
    });
}

/// The raw-mode settings QEMU's stdio backend uses, applied to `t`.
fn make_raw(t: &mut libc::termios) {
    t.c_iflag &= !(libc::IGNBRK
        | libc::BRKINT
        | libc::PARMRK
        | libc::ISTRIP
        | libc::INLCR
        | libc::IGNCR
        | libc::ICRNL
        | libc::IXON);
    t.c_oflag |= libc::OPOST;
    t.c_lflag &= !(libc::ECHO | libc::ECHONL | libc::ICANON | libc::IEXTEN | libc::ISIG);
    t.c_cflag &= !(libc::CSIZE | libc::PARENB);
    t.c_cflag |= libc::CS8;
    t.c_cc[libc::VMIN] = 1;
    t.c_cc[libc::VTIME] = 0;
}

/// Stdin in raw mode for as long as this lives (see the module doc for how it is undone).
pub struct RawTerminal {
    _private: (),
}

impl RawTerminal {
    /// Put stdin in raw mode if it is a terminal; `Ok(None)` if it is not, or if another guard
    /// already holds it raw (nothing to do).
    pub fn enter() -> Result<Option<Self>, ConsoleError> {
        // SAFETY: isatty only inspects the descriptor number.
        if unsafe { libc::isatty(libc::STDIN_FILENO) } != 1 {
            return Ok(None);
        }
        if SAVED.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
            return Ok(None);
        }
        // SAFETY: termios is plain old data; all-zero is a valid value to be overwritten.
        let mut original: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `original` is a valid, writable termios for the call to fill.
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut original) } != 0 {
            return Err(ConsoleError::Terminal {
                op: "tcgetattr",
                source: io::Error::last_os_error(),
            });
        }
        let mut raw = original;
        make_raw(&mut raw);
        *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = Some(original);
        install_restorers();
        // SAFETY: `raw` is a termios derived from the one tcgetattr returned.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw) } != 0 {
            let source = io::Error::last_os_error();
            *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = None;
            return Err(ConsoleError::Terminal {
                op: "tcsetattr",
                source,
            });
        }
        Ok(Some(Self { _private: () }))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        restore_saved();
        *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// What a piece of console input means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleEvent {
    /// Bytes for the guest.
    Data(Vec<u8>),
    /// `Ctrl-A x`: quit the emulator.
    Quit,
    /// `Ctrl-A h`: show the escape help.
    Help,
    /// `Ctrl-A` followed by a byte with no meaning yet (kept for the monitor, `Ctrl-A c`).
    Escape(u8),
}

/// Splits console input into guest bytes and `Ctrl-A` escapes; an escape may span two reads.
#[derive(Debug, Default)]
pub struct EscapeParser {
    after_escape: bool,
}

impl EscapeParser {
    /// A parser not in the middle of an escape.
    pub fn new() -> Self {
        Self::default()
    }

    /// The events in `input`, in order.
    pub fn feed(&mut self, input: &[u8]) -> Vec<ConsoleEvent> {
        let mut events = Vec::new();
        let mut data = Vec::new();
        for &b in input {
            if self.after_escape {
                self.after_escape = false;
                let event = match b {
                    ESCAPE => {
                        data.push(ESCAPE);
                        continue;
                    }
                    b'x' | b'X' => ConsoleEvent::Quit,
                    b'h' | b'H' | b'?' => ConsoleEvent::Help,
                    other => ConsoleEvent::Escape(other),
                };
                if !data.is_empty() {
                    events.push(ConsoleEvent::Data(std::mem::take(&mut data)));
                }
                events.push(event);
            } else if b == ESCAPE {
                self.after_escape = true;
            } else {
                data.push(b);
            }
        }
        if !data.is_empty() {
            events.push(ConsoleEvent::Data(data));
        }
        events
    }
}

/// Read stdin on a thread named `stdin-reader`: guest bytes go to `on_input`, `Ctrl-A x` calls
/// `on_quit` and ends the thread, `Ctrl-A h` prints [`ESCAPE_HELP`] on stderr, other escapes
/// (`Ctrl-A c`) go to `on_escape`. End of input or a read error ends the thread without
/// quitting.
pub fn spawn_stdin_reader(
    on_input: impl FnMut(&[u8]) + Send + 'static,
    on_quit: impl FnOnce() + Send + 'static,
    on_escape: impl FnMut(u8) + Send + 'static,
) -> Result<JoinHandle<()>, ConsoleError> {
    std::thread::Builder::new()
        .name("stdin-reader".into())
        .spawn(move || {
            pump(io::stdin().lock(), on_input, on_quit, on_escape);
        })
        .map_err(ConsoleError::Thread)
}

/// The reader loop of [`spawn_stdin_reader`], over any input; returns whether it quit.
pub fn pump(
    mut input: impl Read,
    mut on_input: impl FnMut(&[u8]),
    on_quit: impl FnOnce(),
    mut on_escape: impl FnMut(u8),
) -> bool {
    let mut parser = EscapeParser::new();
    let mut buf = [0u8; 256];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::warn!("console: reading input: {e}");
                return false;
            }
        };
        for event in parser.feed(&buf[..n]) {
            match event {
                ConsoleEvent::Data(d) => on_input(&d),
                ConsoleEvent::Quit => {
                    on_quit();
                    return true;
                }
                ConsoleEvent::Help => {
                    let _ = io::stderr().write_all(ESCAPE_HELP.as_bytes());
                }
                ConsoleEvent::Escape(b) => on_escape(b),
            }
        }
    }
}

/// The guest's serial output stream.
pub enum ConsoleOutput {
    /// Our stdout.
    Stdout(io::Stdout),
    /// A file.
    File(File),
    /// Nowhere.
    Null,
}

impl ConsoleOutput {
    /// Open the output for `target`.
    pub fn open(target: &SerialConfig) -> Result<Self, ConsoleError> {
        Ok(match target {
            SerialConfig::Stdio => Self::Stdout(io::stdout()),
            SerialConfig::File(path) => {
                Self::File(File::create(path).map_err(|source| ConsoleError::OpenFile {
                    path: path.clone(),
                    source,
                })?)
            }
            SerialConfig::None => Self::Null,
        })
    }
}

impl Write for ConsoleOutput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Stdout(s) => s.write(buf),
            Self::File(f) => f.write(buf),
            Self::Null => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Stdout(s) => s.flush(),
            Self::File(f) => f.flush(),
            Self::Null => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_bytes_pass_through() {
        let mut p = EscapeParser::new();
        assert_eq!(
            p.feed(b"ls\r\x03"),
            [ConsoleEvent::Data(b"ls\r\x03".to_vec())]
        );
        assert!(p.feed(b"").is_empty());
    }

    #[test]
    fn ctrl_a_x_quits_and_ctrl_a_ctrl_a_sends_one() {
        let mut p = EscapeParser::new();
        assert_eq!(
            p.feed(b"a\x01\x01b\x01xc"),
            [
                ConsoleEvent::Data(b"a\x01b".to_vec()),
                ConsoleEvent::Quit,
                ConsoleEvent::Data(b"c".to_vec())
            ]
        );
    }

    #[test]
    fn escape_spans_reads() {
        let mut p = EscapeParser::new();
        assert_eq!(p.feed(b"q\x01"), [ConsoleEvent::Data(b"q".to_vec())]);
        assert_eq!(p.feed(b"X"), [ConsoleEvent::Quit]);
        assert_eq!(p.feed(b"\x01"), []);
        assert_eq!(p.feed(b"h"), [ConsoleEvent::Help]);
        assert_eq!(p.feed(b"\x01c"), [ConsoleEvent::Escape(b'c')]);
    }

    #[test]
    fn pump_stops_at_eof_without_quitting_and_at_ctrl_a_x_with() {
        let mut got = Vec::new();
        let quit = pump(
            &b"echo hi\r"[..],
            |d| got.extend_from_slice(d),
            || panic!("no quit"),
            |_| {},
        );
        assert!(!quit);
        assert_eq!(got, b"echo hi\r");

        let mut got = Vec::new();
        let mut quits = 0;
        let mut escapes = Vec::new();
        let quit = pump(
            &b"a\x01cb\x01xnot read"[..],
            |d| got.extend_from_slice(d),
            || quits += 1,
            |e| escapes.push(e),
        );
        assert!(quit);
        assert_eq!((got.as_slice(), quits), (&b"ab"[..], 1));
        assert_eq!(escapes, b"c");
    }

    #[test]
    fn file_output_is_byte_exact() {
        let path = std::env::temp_dir().join(format!("kemu-console-{}.log", std::process::id()));
        let mut out = ConsoleOutput::open(&SerialConfig::File(path.clone())).unwrap();
        for &b in b"boot\r\n\0\xff" {
            out.write_all(&[b]).unwrap();
            out.flush().unwrap();
        }
        drop(out);
        assert_eq!(std::fs::read(&path).unwrap(), b"boot\r\n\0\xff");
        let _ = std::fs::remove_file(&path);
        let mut null = ConsoleOutput::open(&SerialConfig::None).unwrap();
        assert_eq!(null.write(b"abc").unwrap(), 3);
    }

    #[test]
    fn raw_mode_keeps_output_processing_and_drops_signals() {
        // SAFETY: termios is plain old data.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        t.c_lflag = libc::ISIG | libc::ICANON | libc::ECHO;
        t.c_iflag = libc::ICRNL;
        make_raw(&mut t);
        assert_eq!(t.c_lflag & (libc::ISIG | libc::ICANON | libc::ECHO), 0);
        assert_eq!(t.c_iflag & libc::ICRNL, 0);
        assert_ne!(t.c_oflag & libc::OPOST, 0);
        assert_eq!(t.c_cc[libc::VMIN], 1);
    }

    fn stdin_lflag() -> Option<libc::tcflag_t> {
        // SAFETY: termios is plain old data, filled by tcgetattr on success.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `t` is a valid, writable termios.
        (unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut t) } == 0).then_some(t.c_lflag)
    }

    #[test]
    fn enter_is_raw_inside_and_restored_after() {
        // Under plain `cargo test` stdin is usually not a terminal and this checks only that
        // nothing is left saved; run under `script -qec "cargo test ..." /dev/null` to check the
        // terminal itself.
        let before = stdin_lflag();
        let guard = RawTerminal::enter().unwrap();
        if guard.is_some() {
            assert_eq!(
                stdin_lflag().unwrap() & (libc::ICANON | libc::ISIG | libc::ECHO),
                0
            );
            assert!(
                RawTerminal::enter().unwrap().is_none(),
                "nested guard is a no-op"
            );
        }
        drop(guard);
        assert!(SAVED.lock().unwrap().is_none());
        assert_eq!(stdin_lflag(), before);
    }
}

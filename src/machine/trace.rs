//! Where `-d` output goes (stderr, or the `-D` file), with timestamps from machine start.
//!
//! Text enters from the devices (boot stages), the exit counters (one line per exit) and the
//! software CPU (through [`TraceSink`]); it leaves as lines on stderr or in the log file. A log
//! file is buffered (a `-d in_asm,cpu` run writes a lot) and flushed when the trace is dropped.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::{MachineConfig, MachineError};
use crate::accel::ExitReason;
use crate::cpu::trace::TraceSink;

/// The trace sink of a machine.
pub struct Trace {
    out: Mutex<Box<dyn Write + Send>>,
    start: Instant,
    /// Flush after every record (stderr: lines appear as they happen).
    flush_each: bool,
}

impl Trace {
    /// Open the sink `config` asks for.
    pub fn open(config: &MachineConfig) -> Result<Arc<Self>, MachineError> {
        let (out, flush_each): (Box<dyn Write + Send>, bool) = match &config.log_file {
            Some(path) => (
                Box::new(BufWriter::new(File::create(path).map_err(|source| {
                    MachineError::File {
                        what: "cannot create log file",
                        path: path.clone(),
                        source,
                    }
                })?)),
                false,
            ),
            None => (Box::new(std::io::stderr()), true),
        };
        Ok(Arc::new(Trace {
            out: Mutex::new(out),
            start: Instant::now(),
            flush_each,
        }))
    }

    /// Write `text` (a newline is added if missing).
    pub fn write(&self, text: &str) {
        let mut out = super::lock(&self.out);
        let _ = out.write_all(text.as_bytes());
        if !text.ends_with('\n') {
            let _ = out.write_all(b"\n");
        }
        if self.flush_each {
            let _ = out.flush();
        }
    }

    /// `[   1.000123]`: the time since the machine started.
    fn stamp(&self) -> String {
        let t = self.start.elapsed();
        format!("[{:>4}.{:06}]", t.as_secs(), t.subsec_micros())
    }

    /// Log a port-0x80 boot stage with the time since the machine started.
    pub fn stage(&self, code: u8) {
        self.write(&format!("{} boot stage {code:#04x}", self.stamp()));
    }

    /// Log one exit of `reason` on `vcpu` (`-d exits`).
    pub fn exit(&self, vcpu: usize, reason: ExitReason) {
        self.write(&format!(
            "{} cpu{vcpu} exit {}",
            self.stamp(),
            reason.name()
        ));
    }
}

impl TraceSink for Trace {
    fn record(&self, _vcpu: usize, text: &str) {
        self.write(text);
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        let _ = super::lock(&self.out).flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::{AccelKind, KernelSource};

    #[test]
    fn log_file_gets_every_line_after_drop() {
        let path = std::env::temp_dir().join(format!("kemu-trace-{}.log", std::process::id()));
        let mut cfg = MachineConfig::new(
            AccelKind::Tcg,
            KernelSource::Embedded {
                name: "none",
                image: &[],
            },
        );
        cfg.log_file = Some(path.clone());
        let t = Trace::open(&cfg).unwrap();
        t.exit(1, ExitReason::PioWrite);
        t.record(0, "IN: x");
        t.stage(0x42);
        drop(t);
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].ends_with("] cpu1 exit io-out"), "{}", lines[0]);
        assert_eq!(lines[1], "IN: x");
        assert!(lines[2].ends_with("] boot stage 0x42"), "{}", lines[2]);
    }
}

//! Where `-d` output goes (stderr, or the `-D` file), with timestamps from machine start.

use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::{MachineConfig, MachineError};

/// The trace sink of a machine.
pub struct Trace {
    out: Mutex<Box<dyn Write + Send>>,
    start: Instant,
}

impl Trace {
    /// Open the sink `config` asks for.
    pub fn open(config: &MachineConfig) -> Result<Arc<Self>, MachineError> {
        let out: Box<dyn Write + Send> = match &config.log_file {
            Some(path) => Box::new(File::create(path).map_err(|source| MachineError::File {
                what: "cannot create log file",
                path: path.clone(),
                source,
            })?),
            None => Box::new(std::io::stderr()),
        };
        Ok(Arc::new(Trace {
            out: Mutex::new(out),
            start: Instant::now(),
        }))
    }

    /// Write `text` (a newline is added if missing).
    pub fn write(&self, text: &str) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = out.write_all(text.as_bytes());
        if !text.ends_with('\n') {
            let _ = out.write_all(b"\n");
        }
        let _ = out.flush();
    }

    /// Log a port-0x80 boot stage with the time since the machine started.
    pub fn stage(&self, code: u8) {
        let t = self.start.elapsed();
        self.write(&format!(
            "[{:>4}.{:06}] boot stage {code:#04x}",
            t.as_secs(),
            t.subsec_micros()
        ));
    }
}

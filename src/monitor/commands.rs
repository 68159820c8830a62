//! The monitor's commands, in one place: a line of HMP text in, the text QEMU's human monitor
//! would print out. HMP (`-monitor stdio`, `Ctrl-A c`) and QMP's `human-monitor-command` both
//! run lines through [`HmpSession::execute`]; QMP's own commands call the same
//! [`MachineHandle`] methods.
//!
//! Commands: `help`, `info status|cpus|exits|registers|mtree|pci`, `cpu N`, `x/FMT ADDR`,
//! `xp/FMT ADDR`, `stop`, `cont`/`c`, `system_reset`, `system_powerdown`, `quit`/`q`.

use std::fmt::Write as _;
use std::sync::Arc;

use super::info;
use super::memdump::{self, DumpFormat};
use crate::machine::firmware::{LOW_ALIAS_END, LOW_ALIAS_MAX, ROM_END, ROM_MAX};
use crate::machine::handle::{HandleError, MachineHandle, RunStatus};

/// One line per command, as `help` prints it.
pub const HELP: &str = "\
cont|c -- resume emulation
cpu index -- set the default CPU
help|? [cmd] -- show the help
info status -- show the VM status (running|paused)
info cpus -- show infos for each CPU
info exits -- show the exit counters per reason and vCPU
info registers [-a] -- show the cpu registers (-a: all CPUs)
info mtree -- show the memory map: RAM, ROM, MMIO and port ranges
info pci -- show PCI info
quit|q -- quit the emulator
stop -- stop emulation
system_powerdown -- send system power down event
system_reset -- reset the system
x /fmt addr -- virtual memory dump starting at 'addr'
xp /fmt addr -- physical memory dump starting at 'addr'
  fmt: /[count][x|d|u|o|c|i][b|h|w|g], addr: a number or $reg ($rip, $rsp, $pc, ...)
";

/// How long a command waits for the machine to come up (start-up, a reset's rebuild).
const CYCLE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What a command line did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    /// The text to show (may be empty; ends with a newline when not).
    pub text: String,
    /// The line asked kemu to quit.
    pub quit: bool,
}

impl Reply {
    fn text(text: impl Into<String>) -> Self {
        Reply {
            text: text.into(),
            quit: false,
        }
    }
}

/// A monitor session: the machine and the session's selected vCPU (`cpu N`).
pub struct HmpSession {
    handle: Arc<MachineHandle>,
    cpu: usize,
}

impl HmpSession {
    /// A session on `handle`, vCPU 0 selected.
    pub fn new(handle: Arc<MachineHandle>) -> Self {
        HmpSession { handle, cpu: 0 }
    }

    /// The selected vCPU.
    pub fn cpu(&self) -> usize {
        self.cpu
    }

    /// Run one command line.
    pub fn execute(&mut self, line: &str) -> Reply {
        let line = line.trim();
        if line.is_empty() {
            return Reply::default();
        }
        let (cmd, rest) = split_command(line);
        let rest = rest.trim();
        if !matches!(cmd, "help" | "?" | "h") {
            self.handle.wait_for_cycle(CYCLE_WAIT);
        }
        let result = match cmd {
            "help" | "?" | "h" => Ok(help(rest)),
            "info" | "i" => self.info(rest),
            "cpu" => self.select_cpu(rest),
            "x" | "xp" => self.dump(cmd == "xp", rest),
            "stop" => {
                self.handle.stop();
                Ok(String::new())
            }
            "cont" | "c" => {
                self.handle.cont();
                Ok(String::new())
            }
            "system_reset" => self
                .handle
                .system_reset()
                .map(|_| String::new())
                .map_err(err),
            "system_powerdown" => self
                .handle
                .system_powerdown()
                .map(|_| String::new())
                .map_err(err),
            "quit" | "q" => {
                self.handle.quit();
                return Reply {
                    text: String::new(),
                    quit: true,
                };
            }
            other => Err(format!("unknown command: '{other}'")),
        };
        match result {
            Ok(t) => Reply::text(t),
            Err(e) => Reply::text(format!("Error: {e}\n")),
        }
    }

    fn info(&mut self, what: &str) -> Result<String, String> {
        let (item, args) = split_command(what);
        let args = args.trim();
        match item {
            "status" => Ok(format!("VM status: {}\n", self.handle.status().name())),
            "cpus" => self.info_cpus(),
            "exits" => {
                let c = self.handle.cycle().map_err(err)?;
                Ok(format!(
                    "exit counters ({} accelerator):\n{}",
                    c.accel,
                    c.stats.table()
                ))
            }
            "registers" | "r" => {
                let c = self.handle.cycle().map_err(err)?;
                let cpus: Vec<usize> = match args {
                    "-a" => (0..c.cpus).collect(),
                    "" => vec![self.cpu],
                    _ => return Err(format!("info registers: unknown argument '{args}'")),
                };
                let mut out = String::new();
                for id in cpus {
                    let s = self.handle.vcpu_state(id).map_err(err)?;
                    if c.cpus > 1 || args == "-a" {
                        let _ = writeln!(out, "\nCPU#{id}");
                    }
                    out.push_str(&info::registers(&s));
                }
                Ok(out)
            }
            "mtree" => {
                let c = self.handle.cycle().map_err(err)?;
                Ok(info::mtree(&c))
            }
            "pci" => {
                let c = self.handle.cycle().map_err(err)?;
                // Sizing a BAR writes it for a moment: do it with the vCPUs stopped.
                let was_running = self.handle.status() == RunStatus::Running;
                if was_running {
                    c.control.pause_all(std::time::Duration::from_secs(2));
                }
                let text = super::pci_info::pci(&c.pci);
                if was_running && self.handle.status() == RunStatus::Running {
                    c.control.resume_all();
                }
                Ok(text)
            }
            "" => Ok(INFO_HELP.to_string()),
            other => Err(format!("info {other}: unknown item (try 'info')")),
        }
    }

    fn info_cpus(&self) -> Result<String, String> {
        let c = self.handle.cycle().map_err(err)?;
        let mut out = String::new();
        for id in 0..c.cpus {
            let mark = if id == self.cpu { '*' } else { ' ' };
            let pc = match self.handle.vcpu_state(id) {
                Ok(s) => format!("pc=0x{:016x}", super::info::linear_pc(&s)),
                Err(HandleError::NoAnswer(_)) => "pc=? (not answering)".to_string(),
                Err(e) => return Err(err(e)),
            };
            let _ = writeln!(
                out,
                "{mark} CPU #{id}: {pc} thread_id={}",
                self.handle.thread_id(id)
            );
        }
        Ok(out)
    }

    fn select_cpu(&mut self, arg: &str) -> Result<String, String> {
        let c = self.handle.cycle().map_err(err)?;
        let id: usize = arg
            .parse()
            .map_err(|_| format!("cpu: '{arg}' is not a CPU index"))?;
        if id >= c.cpus {
            return Err(format!("cpu: no CPU {id} (the machine has {})", c.cpus));
        }
        self.cpu = id;
        Ok(String::new())
    }

    fn dump(&self, physical: bool, args: &str) -> Result<String, String> {
        let c = self.handle.cycle().map_err(err)?;
        let (fmt, addr) = match args.strip_prefix('/') {
            Some(r) => {
                let (f, a) = split_command(r);
                (DumpFormat::parse(f).map_err(|e| e.to_string())?, a.trim())
            }
            None => (DumpFormat::default(), args),
        };
        if addr.is_empty() {
            return Err("x/xp: missing address".into());
        }
        // The vCPU's state: for `$reg` addresses, the page walk and the code size of `/i`.
        let state = self.handle.vcpu_state(self.cpu).map_err(err)?;
        let addr = memdump::parse_address(addr, &state).map_err(|e| e.to_string())?;
        // The firmware ROM is a device under the software CPU: read it through the MMIO bus
        // (a ROM read has no side effect; other devices are not read).
        let rom = |pa: u64, buf: &mut [u8]| {
            let end = pa.saturating_add(buf.len() as u64);
            let in_rom = (pa >= ROM_END - ROM_MAX && end <= ROM_END)
                || (pa >= LOW_ALIAS_END - LOW_ALIAS_MAX && end <= LOW_ALIAS_END);
            in_rom && c.io.mmio.read(pa, buf)
        };
        memdump::dump(&c.ram, &rom, &state, physical, addr, &fmt).map_err(|e| e.to_string())
    }
}

const INFO_HELP: &str = "\
info status -- show the VM status (running|paused)
info cpus -- show infos for each CPU
info exits -- show the exit counters per reason and vCPU
info registers [-a] -- show the cpu registers
info mtree -- show the memory map
info pci -- show PCI info
";

fn help(topic: &str) -> String {
    if topic.is_empty() {
        return HELP.to_string();
    }
    let lines: String = HELP
        .lines()
        .filter(|l| {
            l.split(" --").next().is_some_and(|head| {
                head.split(|c: char| c == '|' || c.is_whitespace())
                    .any(|w| w == topic)
            })
        })
        .map(|l| format!("{l}\n"))
        .collect();
    if lines.is_empty() {
        format!("unknown command: '{topic}'\n")
    } else {
        lines
    }
}

fn err(e: HandleError) -> String {
    e.to_string()
}

/// `x/4xg $rsp` → (`x`, `/4xg $rsp`); `info cpus` → (`info`, ` cpus`).
fn split_command(line: &str) -> (&str, &str) {
    let end = line
        .find(|c: char| c.is_whitespace() || c == '/')
        .unwrap_or(line.len());
    (&line[..end], &line[end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_split_like_qemu() {
        assert_eq!(split_command("x/4xg $rsp"), ("x", "/4xg $rsp"));
        assert_eq!(split_command("info cpus"), ("info", " cpus"));
        assert_eq!(split_command("stop"), ("stop", ""));
    }

    #[test]
    fn help_and_errors_without_a_machine() {
        let handle = MachineHandle::new(false);
        handle.end(); // no machine will come: commands answer at once
        let mut s = HmpSession::new(handle);
        assert!(s.execute("help").text.contains("info registers"));
        assert_eq!(s.execute("help stop").text, "stop -- stop emulation\n");
        assert_eq!(s.execute("frob").text, "Error: unknown command: 'frob'\n");
        assert_eq!(s.execute("info status").text, "VM status: shutdown\n");
        assert!(s.execute("info registers").text.starts_with("Error: "));
        assert!(s.execute("x/4x 0").text.starts_with("Error: "));
        assert_eq!(s.execute(""), Reply::default());
        assert!(s.execute("quit").quit);
    }
}

//! gdb's `monitor` commands for kemu: how gdb's memory addresses are read (`phys` / `virt`)
//! and where the CPU is (`mode`). Each command is one word; output goes to gdb's console.

use gdbstub::target::ext::monitor_cmd::{outputln, ConsoleOutput, MonitorCmd};

use super::hub::{linear_pc, NoAnswer};
use super::target::MachineTarget;

const HELP: &str = "kemu monitor commands:
  phys   gdb's memory addresses are guest-physical (x/, set var, dump)
  virt   gdb's memory addresses are guest-virtual, through the thread's page tables (default)
  mode   CPU mode, CPL, CS:RIP and its linear address of every vCPU";

impl MonitorCmd for MachineTarget {
    fn handle_monitor_cmd(
        &mut self,
        cmd: &[u8],
        mut out: ConsoleOutput<'_>,
    ) -> Result<(), NoAnswer> {
        match std::str::from_utf8(cmd).unwrap_or("").trim() {
            "phys" => {
                self.set_physical(true);
                outputln!(out, "memory addresses are guest-physical");
            }
            "virt" => {
                self.set_physical(false);
                outputln!(out, "memory addresses are guest-virtual");
            }
            "mode" => {
                for id in 0..self.hub().cpus() {
                    match self.hub().with_vcpu(id, |v| v.state()) {
                        Ok(Ok(s)) => outputln!(
                            out,
                            "vCPU {id} (thread {}): {}, CPL {}, CS:RIP {:04x}:{:#x} (linear {:#x})",
                            id + 1,
                            s.mode_name(),
                            s.cpl(),
                            s.cs.selector,
                            s.rip,
                            linear_pc(&s)
                        ),
                        _ => outputln!(out, "vCPU {id}: no answer"),
                    }
                }
            }
            _ => outputln!(out, "{HELP}"),
        }
        Ok(())
    }
}

//! The report printed when a guest cannot go on: what happened, where, and the instruction there.

use std::fmt;

use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};

use super::VcpuState;

/// Where and why a vCPU stopped for good.
#[derive(Debug, Clone)]
pub struct CrashReport {
    /// What happened, e.g. "KVM internal error (emulation failure)".
    pub reason: String,
    /// The vCPU index.
    pub vcpu: usize,
    /// Register state at the stop, when it could be read.
    pub state: Option<VcpuState>,
    /// Up to 15 instruction bytes fetched at RIP (empty if unreadable).
    pub bytes: Vec<u8>,
}

impl CrashReport {
    /// The instruction at RIP decoded with iced-x86, or a note why not.
    pub fn instruction(&self) -> String {
        let Some(state) = &self.state else {
            return "(registers unavailable)".into();
        };
        if self.bytes.is_empty() {
            return "(instruction bytes unreadable)".into();
        }
        let mut decoder = Decoder::with_ip(
            state.code_bitness(),
            &self.bytes,
            state.rip,
            DecoderOptions::NONE,
        );
        let insn = decoder.decode();
        if insn.is_invalid() {
            return format!("(invalid encoding) {}", hex(&self.bytes));
        }
        let mut text = String::new();
        IntelFormatter::new().format(&insn, &mut text);
        let len = insn.len().min(self.bytes.len());
        format!("{text}  [{}]", hex(&self.bytes[..len]))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

impl fmt::Display for CrashReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on vCPU {}", self.reason, self.vcpu)?;
        if let Some(s) = &self.state {
            write!(
                f,
                ": RIP={:#x} CPL={} in {}, instruction: {}",
                s.rip,
                s.cpl(),
                s.mode_name(),
                self.instruction()
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accel::Segment;

    #[test]
    fn decodes_the_instruction_at_rip() {
        let mut state = VcpuState {
            rip: 0x1000,
            cr0: 1,
            efer: 1 << 10,
            ..VcpuState::default()
        };
        state.cs = Segment::flat(8, 0xb, true);
        let r = CrashReport {
            reason: "KVM internal error".into(),
            vcpu: 0,
            state: Some(state),
            bytes: vec![0x48, 0x0f, 0xc7, 0x0f, 0x90],
        };
        let text = r.to_string();
        assert!(text.contains("cmpxchg16b"), "{text}");
        assert!(text.contains("RIP=0x1000"), "{text}");
        assert!(text.contains("64-bit"), "{text}");
    }
}

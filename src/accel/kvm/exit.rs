//! What to do with one `KVM_RUN` exit: serve I/O through the machine's [`IoHandler`], count it,
//! and tell the run loop whether to go on, return to the machine, or stop with a report.
//!
//! A free function over `kvm_ioctls::VcpuExit` so it is unit-tested with a mock handler and no
//! `/dev/kvm`.

use kvm_ioctls::VcpuExit as KvmExit;

use crate::accel::{ExitReason, ExitStats, IoHandler, VcpuExit};

/// The run loop's next step after an exit.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Re-enter the guest.
    Resume,
    /// Return this to the machine.
    Return(VcpuExit),
    /// The vCPU cannot go on; the string names why (the caller adds registers and the
    /// instruction).
    Fatal(String),
}

/// Serve one exit. `io_size` is the access width of a port I/O exit (`kvm_run.io.size`), needed
/// to split string I/O (`REP INS/OUTS`) into its elements.
pub fn handle(
    exit: KvmExit<'_>,
    io_size: usize,
    vcpu: usize,
    io: &dyn IoHandler,
    stats: &ExitStats,
) -> Next {
    match exit {
        KvmExit::IoIn(port, data) => {
            for chunk in data.chunks_mut(io_size.max(1)) {
                stats.count(vcpu, ExitReason::PioRead);
                io.pio_read(vcpu, port, chunk);
            }
            Next::Resume
        }
        KvmExit::IoOut(port, data) => {
            for chunk in data.chunks(io_size.max(1)) {
                stats.count(vcpu, ExitReason::PioWrite);
                io.pio_write(vcpu, port, chunk);
            }
            Next::Resume
        }
        KvmExit::MmioRead(addr, data) => {
            stats.count(vcpu, ExitReason::MmioRead);
            io.mmio_read(vcpu, addr, data);
            Next::Resume
        }
        KvmExit::MmioWrite(addr, data) => {
            stats.count(vcpu, ExitReason::MmioWrite);
            io.mmio_write(vcpu, addr, data);
            Next::Resume
        }
        KvmExit::Hlt => {
            stats.count(vcpu, ExitReason::Halt);
            Next::Return(VcpuExit::Halt)
        }
        KvmExit::Intr => {
            stats.count(vcpu, ExitReason::Interrupted);
            Next::Return(VcpuExit::Interrupted)
        }
        KvmExit::Debug(_) => {
            stats.count(vcpu, ExitReason::Debug);
            Next::Return(VcpuExit::Debug)
        }
        KvmExit::Shutdown => {
            stats.count(vcpu, ExitReason::Shutdown);
            Next::Return(VcpuExit::Shutdown)
        }
        // Without an in-kernel APIC: the guest can take an interrupt now (the run loop injects
        // it before re-entering), or lowered CR8. CR8 is its own register here, as in the
        // software CPU; the machine's APIC keeps its memory-mapped TPR.
        KvmExit::IrqWindowOpen | KvmExit::SetTpr => {
            stats.count(vcpu, ExitReason::IrqWindow);
            Next::Resume
        }
        KvmExit::SystemEvent(kind, _) => {
            stats.count(vcpu, ExitReason::Other);
            match kind {
                kvm_bindings::KVM_SYSTEM_EVENT_RESET => Next::Return(VcpuExit::Reset),
                kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN => Next::Return(VcpuExit::Shutdown),
                other => Next::Fatal(format!("KVM system event {other}")),
            }
        }
        KvmExit::InternalError => {
            stats.count(vcpu, ExitReason::InternalError);
            Next::Fatal("KVM internal error".into())
        }
        KvmExit::FailEntry(reason, cpu) => {
            stats.count(vcpu, ExitReason::FailEntry);
            Next::Fatal(format!(
                "KVM entry failed (hardware reason {reason:#x}, host cpu {cpu})"
            ))
        }
        other => {
            stats.count(vcpu, ExitReason::Other);
            Next::Fatal(format!("unexpected KVM exit {other:?}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(u16, Vec<u8>)>>);

    impl IoHandler for Recorder {
        fn pio_read(&self, _: usize, port: u16, data: &mut [u8]) {
            data.fill(port as u8);
        }
        fn pio_write(&self, _: usize, port: u16, data: &[u8]) {
            self.0.lock().unwrap().push((port, data.to_vec()));
        }
        fn mmio_read(&self, _: usize, _: u64, data: &mut [u8]) {
            data.fill(0xab);
        }
        fn mmio_write(&self, _: usize, _: u64, _: &[u8]) {}
    }

    #[test]
    fn string_out_is_split_and_counted() {
        let io = Recorder::default();
        let stats = ExitStats::new(1);
        let next = handle(KvmExit::IoOut(0x3f8, b"hi!"), 1, 0, &io, &stats);
        assert_eq!(next, Next::Resume);
        assert_eq!(io.0.lock().unwrap().len(), 3);
        assert_eq!(stats.get(0, ExitReason::PioWrite), 3);
    }

    #[test]
    fn reads_are_filled_and_halts_return() {
        let io = Recorder::default();
        let stats = ExitStats::new(1);
        let mut buf = [0u8; 4];
        handle(KvmExit::IoIn(0x71, &mut buf), 2, 0, &io, &stats);
        assert_eq!(buf, [0x71; 4]);
        assert_eq!(stats.get(0, ExitReason::PioRead), 2);
        let next = handle(KvmExit::Hlt, 0, 0, &io, &stats);
        assert_eq!(next, Next::Return(VcpuExit::Halt));
        let next = handle(KvmExit::InternalError, 0, 0, &io, &stats);
        assert!(matches!(next, Next::Fatal(_)));
    }

    #[test]
    fn irqchip_exits_of_a_userspace_apic_resume() {
        let io = Recorder::default();
        let stats = ExitStats::new(1);
        for e in [KvmExit::IrqWindowOpen, KvmExit::SetTpr] {
            assert_eq!(handle(e, 0, 0, &io, &stats), Next::Resume);
        }
        assert_eq!(stats.get(0, ExitReason::IrqWindow), 2);
    }
}

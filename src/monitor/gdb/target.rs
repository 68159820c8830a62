//! The machine as gdbstub's multi-threaded `Target`: one gdb thread per vCPU (thread id =
//! vCPU index + 1), registers and memory through the [`DebugHub`], breakpoints and resume
//! actions handed to the hub.
//!
//! Memory addresses from gdb are guest-virtual (linear) and translated with the page tables of
//! the thread gdb names ([`super::walk`]). Breakpoints are linear addresses too. Under the
//! software CPU both breakpoint kinds are checked by the CPU before each instruction. Under
//! KVM a hardware breakpoint is a debug register; a software one also takes a free debug
//! register while one is left (PVM cannot execute INT3 at CPL 0, and memory stays untouched),
//! and beyond that is an INT3 this module writes into guest memory (and takes out again on
//! removal).

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;

use gdbstub::common::Tid;
use gdbstub::target::ext::base::multithread::{
    MultiThreadBase, MultiThreadResume, MultiThreadResumeOps, MultiThreadSchedulerLocking,
    MultiThreadSchedulerLockingOps, MultiThreadSingleStep, MultiThreadSingleStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{
    Breakpoints, BreakpointsOps, HwBreakpoint, HwBreakpointOps, SwBreakpoint, SwBreakpointOps,
};
use gdbstub::target::ext::monitor_cmd::MonitorCmdOps;
use gdbstub::target::{Target, TargetError, TargetResult};
use vm_memory::{Bytes, GuestAddress};

use super::arch::{KemuX86_64, X86Regs, GDB_GPR_ORDER};
use super::hub::{DebugHub, NoAnswer, ResumeAction};
use super::walk;
use crate::accel::{FpuRegs, VcpuState};

/// The INT3 opcode.
const INT3: u8 = 0xcc;

/// What gdb debugs: the machine behind a [`DebugHub`].
pub struct MachineTarget {
    hub: Arc<DebugHub>,
    /// Software breakpoints are INT3 bytes in guest memory (KVM) rather than a list the CPU
    /// checks (software CPU).
    patch_int3: bool,
    /// Patched INT3s: linear address → (physical address, original byte).
    patched: HashMap<u64, (u64, u8)>,
    /// Resume actions being collected for the next `resume`.
    actions: Vec<Option<ResumeAction>>,
    scheduler_locked: bool,
    /// `monitor phys`: gdb's memory addresses are guest-physical.
    physical: bool,
}

impl MachineTarget {
    /// A target over `hub`; `patch_int3` for accelerators that run guest code natively (KVM).
    pub fn new(hub: Arc<DebugHub>, patch_int3: bool) -> Self {
        MachineTarget {
            hub,
            patch_int3,
            patched: HashMap::new(),
            actions: Vec::new(),
            scheduler_locked: false,
            physical: false,
        }
    }

    /// The hub (the event loop needs it for Ctrl-C).
    pub fn hub(&self) -> &Arc<DebugHub> {
        &self.hub
    }

    /// Whether gdb's memory addresses are guest-physical (else guest-virtual).
    pub fn set_physical(&mut self, on: bool) {
        self.physical = on;
    }

    /// Take every patched INT3 out of memory (on detach).
    pub fn unpatch_all(&mut self) {
        let Some(ram) = self.hub.ram() else { return };
        for (_, (phys, orig)) in self.patched.drain() {
            let _ = ram.write_obj(orig, GuestAddress(phys));
        }
    }

    fn state(&self, tid: Tid) -> Result<VcpuState, TargetError<NoAnswer>> {
        let id = vcpu_of(tid);
        match self.hub.with_vcpu(id, |v| v.state()) {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => {
                log::warn!("gdbstub: vCPU {id} state: {e}");
                Err(TargetError::NonFatal)
            }
            Err(e) => Err(TargetError::NonFatal).inspect_err(|_| log::warn!("gdbstub: {e}")),
        }
    }

    /// Copy between gdb and guest memory page by page; returns the bytes done.
    fn access(
        &self,
        tid: Tid,
        start: u64,
        len: usize,
        mut op: impl FnMut(u64, usize, usize) -> bool,
    ) -> Result<usize, TargetError<NoAnswer>> {
        let state = if self.physical {
            None
        } else {
            Some(self.state(tid)?)
        };
        let ram = self.hub.ram().ok_or(TargetError::NonFatal)?;
        let mut done = 0usize;
        while done < len {
            let addr = start.wrapping_add(done as u64);
            let in_page = (0x1000 - (addr & 0xfff)) as usize;
            let n = in_page.min(len - done);
            let phys = match &state {
                None => addr,
                Some(s) => match walk::translate(&ram, s, addr) {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            if !op(phys, done, n) {
                break;
            }
            done += n;
        }
        Ok(done)
    }
}

fn vcpu_of(tid: Tid) -> usize {
    tid.get() - 1
}

fn tid_of(vcpu: usize) -> Option<Tid> {
    NonZeroUsize::new(vcpu + 1)
}

/// The registers gdb sees for a vCPU in `s` with FPU `f`.
pub fn regs_from(s: &VcpuState, f: &FpuRegs) -> X86Regs {
    let mut gpr = [0u64; 16];
    for (slot, &enc) in gpr.iter_mut().zip(GDB_GPR_ORDER.iter()) {
        *slot = s.gpr[enc];
    }
    X86Regs {
        gpr,
        rip: s.rip,
        eflags: s.rflags as u32,
        seg: [s.cs, s.ss, s.ds, s.es, s.fs, s.gs].map(|x| u32::from(x.selector)),
        st: f.st,
        x87: [
            u32::from(f.fcw),
            u32::from(f.fsw),
            u32::from(f.ftw),
            u32::from(f.fcs),
            f.fip as u32,
            u32::from(f.fds),
            f.fdp as u32,
            u32::from(f.fop),
        ],
        xmm: f.xmm,
        mxcsr: f.mxcsr,
        fs_base: s.fs.base,
        gs_base: s.gs.base,
        cr: [s.cr0, s.cr2, s.cr3, s.cr4, s.cr8],
        efer: s.efer,
    }
}

/// Apply gdb's registers to `s` and `f`. A changed selector changes only the visible
/// selector, except in real mode where the base follows it (selector × 16).
pub fn regs_into(r: &X86Regs, s: &mut VcpuState, f: &mut FpuRegs) {
    for (&v, &enc) in r.gpr.iter().zip(GDB_GPR_ORDER.iter()) {
        s.gpr[enc] = v;
    }
    s.rip = r.rip;
    s.rflags = (s.rflags & !0xffff_ffff) | u64::from(r.eflags) | 2;
    let real = s.cr0 & 1 == 0;
    for (seg, &sel) in [
        &mut s.cs, &mut s.ss, &mut s.ds, &mut s.es, &mut s.fs, &mut s.gs,
    ]
    .into_iter()
    .zip(r.seg.iter())
    {
        let sel = sel as u16;
        if seg.selector != sel {
            seg.selector = sel;
            if real {
                seg.base = u64::from(sel) << 4;
            }
        }
    }
    s.fs.base = r.fs_base;
    s.gs.base = r.gs_base;
    [s.cr0, s.cr2, s.cr3, s.cr4, s.cr8] = r.cr;
    s.efer = r.efer;
    f.st = r.st;
    f.fcw = r.x87[0] as u16;
    f.fsw = r.x87[1] as u16;
    f.ftw = r.x87[2] as u16;
    f.fcs = r.x87[3] as u16;
    f.fip = (f.fip & !0xffff_ffff) | u64::from(r.x87[4]);
    f.fds = r.x87[5] as u16;
    f.fdp = (f.fdp & !0xffff_ffff) | u64::from(r.x87[6]);
    f.fop = (r.x87[7] & 0x7ff) as u16;
    f.xmm = r.xmm;
    f.mxcsr = r.mxcsr;
}

impl Target for MachineTarget {
    type Arch = KemuX86_64;
    type Error = NoAnswer;

    fn base_ops(&mut self) -> BaseOps<'_, KemuX86_64, NoAnswer> {
        BaseOps::MultiThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }

    fn support_monitor_cmd(&mut self) -> Option<MonitorCmdOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadBase for MachineTarget {
    fn read_registers(&mut self, regs: &mut X86Regs, tid: Tid) -> TargetResult<(), Self> {
        let read = self.hub.with_vcpu(vcpu_of(tid), |v| {
            let s = v.state()?;
            // A vCPU without FPU access still shows its integer registers.
            let f = v.fpu().unwrap_or_else(|_| FpuRegs::reset());
            Ok::<_, crate::accel::AccelError>(regs_from(&s, &f))
        });
        match read {
            Ok(Ok(r)) => {
                *regs = r;
                Ok(())
            }
            _ => Err(TargetError::NonFatal),
        }
    }

    fn write_registers(&mut self, regs: &X86Regs, tid: Tid) -> TargetResult<(), Self> {
        let regs = regs.clone();
        let wrote = self.hub.with_vcpu(vcpu_of(tid), move |v| {
            let old_s = v.state()?;
            let old_f = v.fpu().ok();
            let mut s = old_s.clone();
            let mut f = old_f.unwrap_or_else(FpuRegs::reset);
            regs_into(&regs, &mut s, &mut f);
            // Write only what changed: setting the whole state resets more than registers
            // in some accelerators (the software CPU's TLB and halt state).
            if s != old_s {
                v.set_state(&s)?;
            }
            if old_f.is_some() && (Some(f) != old_f || s != old_s) {
                v.set_fpu(&f)?;
            }
            Ok::<_, crate::accel::AccelError>(())
        });
        match wrote {
            Ok(Ok(())) => Ok(()),
            _ => Err(TargetError::NonFatal),
        }
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8], tid: Tid) -> TargetResult<usize, Self> {
        let ram = self.hub.ram().ok_or(TargetError::NonFatal)?;
        let len = data.len();
        let done = self.access(tid, start, len, |phys, at, n| {
            ram.read_slice(&mut data[at..at + n], GuestAddress(phys))
                .is_ok()
        })?;
        if done == 0 && len > 0 {
            return Err(TargetError::NonFatal);
        }
        Ok(done)
    }

    fn write_addrs(&mut self, start: u64, data: &[u8], tid: Tid) -> TargetResult<(), Self> {
        let ram = self.hub.ram().ok_or(TargetError::NonFatal)?;
        let done = self.access(tid, start, data.len(), |phys, at, n| {
            ram.write_slice(&data[at..at + n], GuestAddress(phys))
                .is_ok()
        })?;
        if done < data.len() {
            return Err(TargetError::NonFatal);
        }
        Ok(())
    }

    fn list_active_threads(&mut self, active: &mut dyn FnMut(Tid)) -> Result<(), NoAnswer> {
        (0..self.hub.cpus()).filter_map(tid_of).for_each(active);
        Ok(())
    }

    fn support_resume(&mut self) -> Option<MultiThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadResume for MachineTarget {
    fn resume(&mut self) -> Result<(), NoAnswer> {
        self.hub.resume(&self.actions, !self.scheduler_locked);
        Ok(())
    }

    fn clear_resume_actions(&mut self) -> Result<(), NoAnswer> {
        self.actions = vec![None; self.hub.cpus()];
        self.scheduler_locked = false;
        Ok(())
    }

    fn set_resume_action_continue(
        &mut self,
        tid: Tid,
        _signal: Option<gdbstub::common::Signal>,
    ) -> Result<(), NoAnswer> {
        if let Some(a) = self.actions.get_mut(vcpu_of(tid)) {
            *a = Some(ResumeAction::Continue);
        }
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<MultiThreadSingleStepOps<'_, Self>> {
        Some(self)
    }

    fn support_scheduler_locking(&mut self) -> Option<MultiThreadSchedulerLockingOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadSingleStep for MachineTarget {
    fn set_resume_action_step(
        &mut self,
        tid: Tid,
        _signal: Option<gdbstub::common::Signal>,
    ) -> Result<(), NoAnswer> {
        if let Some(a) = self.actions.get_mut(vcpu_of(tid)) {
            *a = Some(ResumeAction::Step);
        }
        Ok(())
    }
}

impl MultiThreadSchedulerLocking for MachineTarget {
    fn set_resume_action_scheduler_lock(&mut self) -> Result<(), NoAnswer> {
        self.scheduler_locked = true;
        Ok(())
    }
}

impl Breakpoints for MachineTarget {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_breakpoint(&mut self) -> Option<HwBreakpointOps<'_, Self>> {
        Some(self)
    }
}

impl SwBreakpoint for MachineTarget {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        if self.patch_int3 && self.hub.sw_breakpoint_in_debug_register(addr) {
            return Ok(true);
        }
        if self.patch_int3 && !self.patched.contains_key(&addr) {
            let tid = tid_of(0).ok_or(TargetError::NonFatal)?;
            let ram = self.hub.ram().ok_or(TargetError::NonFatal)?;
            let state = self.state(tid)?;
            let Ok(phys) = walk::translate(&ram, &state, addr) else {
                return Ok(false);
            };
            let Ok(orig) = ram.read_obj::<u8>(GuestAddress(phys)) else {
                return Ok(false);
            };
            if ram.write_obj(INT3, GuestAddress(phys)).is_err() {
                return Ok(false);
            }
            self.patched.insert(addr, (phys, orig));
        }
        Ok(self.hub.set_breakpoint(addr, false, true))
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        if let Some((phys, orig)) = self.patched.remove(&addr) {
            let ram = self.hub.ram().ok_or(TargetError::NonFatal)?;
            let _ = ram.write_obj(orig, GuestAddress(phys));
        }
        Ok(self.hub.set_breakpoint(addr, false, false))
    }
}

impl HwBreakpoint for MachineTarget {
    fn add_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.hub.set_breakpoint(addr, true, true))
    }

    fn remove_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.hub.set_breakpoint(addr, true, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accel::Segment;

    #[test]
    fn registers_map_both_ways() {
        let mut s = VcpuState::reset();
        s.gpr[3] = 0xb; // rbx is gdb's register 1
        s.gpr[4] = 0x5; // rsp is gdb's register 7
        s.fs = Segment::flat(0x10, 3, false);
        s.fs.base = 0x7000;
        let f = FpuRegs::reset();
        let r = regs_from(&s, &f);
        assert_eq!(r.gpr[1], 0xb);
        assert_eq!(r.gpr[7], 0x5);
        assert_eq!(r.seg[0], 0xf000);
        assert_eq!(r.fs_base, 0x7000);
        assert_eq!(r.x87[0], 0x37f);
        let mut s2 = s.clone();
        let mut f2 = f;
        regs_into(&r, &mut s2, &mut f2);
        assert_eq!((s2.clone(), f2), (s.clone(), f));
        // Real mode: a new DS selector moves the base.
        let mut r2 = r.clone();
        r2.seg[2] = 0x1234;
        regs_into(&r2, &mut s2, &mut f2);
        assert_eq!(s2.ds.base, 0x12340);
    }
}

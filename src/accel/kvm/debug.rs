//! The debugger's requests in KVM's terms: a [`DebugConfig`] becomes a `kvm_guest_debug`
//! (`KVM_SET_GUEST_DEBUG`: single-step through TF, #BP interception for INT3 breakpoints the
//! debugger patched into memory, DR0..DR3 + DR7 for hardware breakpoints), and `kvm_fpu`
//! converts to and from the neutral [`FpuRegs`].

use kvm_bindings::{
    kvm_fpu, kvm_guest_debug, KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP, KVM_GUESTDBG_USE_HW_BP,
    KVM_GUESTDBG_USE_SW_BP,
};

use crate::accel::{DebugConfig, FpuRegs, MAX_HW_BREAKPOINTS};

/// DR7 bits that are always set for us: GE (exact breakpoints) and the reserved bit 10.
const DR7_FIXED: u64 = 0x600;

/// The `kvm_guest_debug` for `cfg` (control 0 = debugging off).
pub fn guest_debug(cfg: &DebugConfig) -> kvm_guest_debug {
    let mut dbg = kvm_guest_debug::default();
    if !cfg.active() {
        return dbg;
    }
    dbg.control = KVM_GUESTDBG_ENABLE;
    if cfg.single_step {
        dbg.control |= KVM_GUESTDBG_SINGLESTEP;
    }
    if !cfg.sw_breakpoints.is_empty() {
        dbg.control |= KVM_GUESTDBG_USE_SW_BP;
    }
    if !cfg.hw_breakpoints.is_empty() {
        dbg.control |= KVM_GUESTDBG_USE_HW_BP;
        let mut dr7 = DR7_FIXED;
        for (n, &addr) in cfg
            .hw_breakpoints
            .iter()
            .take(MAX_HW_BREAKPOINTS)
            .enumerate()
        {
            dbg.arch.debugreg[n] = addr;
            // Gn = 1; R/Wn = 00 (instruction fetch) and LENn = 00 (one byte) stay zero.
            dr7 |= 2 << (2 * n);
        }
        dbg.arch.debugreg[7] = dr7;
    }
    dbg
}

/// KVM's FXSAVE-shaped FPU state as the debugger sees it.
pub fn fpu_from_kvm(f: &kvm_fpu) -> FpuRegs {
    let mut st = [[0u8; 10]; 8];
    for (slot, fpr) in st.iter_mut().zip(f.fpr.iter()) {
        slot.copy_from_slice(&fpr[..10]);
    }
    let mut xmm = [0u128; 16];
    for (x, bytes) in xmm.iter_mut().zip(f.xmm.iter()) {
        *x = u128::from_le_bytes(*bytes);
    }
    FpuRegs {
        ftw: FpuRegs::full_tag(f.ftwx, f.fsw, &st),
        st,
        fcw: f.fcw,
        fsw: f.fsw,
        fcs: 0,
        fip: f.last_ip,
        fds: 0,
        fdp: f.last_dp,
        fop: f.last_opcode,
        xmm,
        mxcsr: f.mxcsr,
    }
}

/// The debugger's FPU registers in KVM's form (the selectors are not kept by KVM_SET_FPU).
pub fn fpu_to_kvm(r: &FpuRegs) -> kvm_fpu {
    let mut f = kvm_fpu {
        fcw: r.fcw,
        fsw: r.fsw,
        ftwx: r.abridged_tag(),
        last_opcode: r.fop,
        last_ip: r.fip,
        last_dp: r.fdp,
        mxcsr: r.mxcsr,
        ..Default::default()
    };
    for (fpr, st) in f.fpr.iter_mut().zip(r.st.iter()) {
        fpr[..10].copy_from_slice(st);
    }
    for (bytes, x) in f.xmm.iter_mut().zip(r.xmm.iter()) {
        *bytes = x.to_le_bytes();
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_bits_and_dr7() {
        assert_eq!(guest_debug(&DebugConfig::default()).control, 0);
        let cfg = DebugConfig {
            single_step: true,
            sw_breakpoints: vec![0x10],
            hw_breakpoints: vec![0x1000, 0x2000],
        };
        let d = guest_debug(&cfg);
        assert_eq!(
            d.control,
            KVM_GUESTDBG_ENABLE
                | KVM_GUESTDBG_SINGLESTEP
                | KVM_GUESTDBG_USE_SW_BP
                | KVM_GUESTDBG_USE_HW_BP
        );
        assert_eq!(d.arch.debugreg[0], 0x1000);
        assert_eq!(d.arch.debugreg[1], 0x2000);
        assert_eq!(d.arch.debugreg[7], 0x600 | 0b1010);
    }

    #[test]
    fn fpu_round_trip() {
        let mut r = FpuRegs::reset();
        r.xmm[3] = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210;
        r.st[0] = [0, 0, 0, 0, 0, 0, 0, 0x80, 0xff, 0x3f];
        r.fsw = 7 << 11;
        r.ftw = 0x3fff; // R7 = ST(0) valid
        let back = fpu_from_kvm(&fpu_to_kvm(&r));
        assert_eq!(back, r);
    }
}

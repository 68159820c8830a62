//! Conversions between our [`VcpuState`] and KVM's `kvm_regs`/`kvm_sregs`.

use kvm_bindings::{kvm_dtable, kvm_regs, kvm_segment, kvm_sregs};

use crate::accel::{DescriptorTable, Segment, VcpuState};

fn seg_to_kvm(s: &Segment) -> kvm_segment {
    kvm_segment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: s.type_,
        present: s.present.into(),
        dpl: s.dpl,
        db: s.db.into(),
        s: s.s.into(),
        l: s.l.into(),
        g: s.g.into(),
        avl: s.avl.into(),
        unusable: s.unusable.into(),
        padding: 0,
    }
}

fn seg_from_kvm(k: &kvm_segment) -> Segment {
    Segment {
        selector: k.selector,
        base: k.base,
        limit: k.limit,
        type_: k.type_,
        s: k.s != 0,
        dpl: k.dpl,
        present: k.present != 0,
        avl: k.avl != 0,
        l: k.l != 0,
        db: k.db != 0,
        g: k.g != 0,
        unusable: k.unusable != 0,
    }
}

fn dt_to_kvm(d: &DescriptorTable) -> kvm_dtable {
    kvm_dtable {
        base: d.base,
        limit: d.limit,
        padding: [0; 3],
    }
}

fn dt_from_kvm(d: &kvm_dtable) -> DescriptorTable {
    DescriptorTable {
        base: d.base,
        limit: d.limit,
    }
}

/// Our general registers as KVM's.
pub fn regs_to_kvm(s: &VcpuState) -> kvm_regs {
    let g = &s.gpr;
    kvm_regs {
        rax: g[0],
        rcx: g[1],
        rdx: g[2],
        rbx: g[3],
        rsp: g[4],
        rbp: g[5],
        rsi: g[6],
        rdi: g[7],
        r8: g[8],
        r9: g[9],
        r10: g[10],
        r11: g[11],
        r12: g[12],
        r13: g[13],
        r14: g[14],
        r15: g[15],
        rip: s.rip,
        rflags: s.rflags | 2,
    }
}

/// Our system registers written over `base` (which keeps KVM's interrupt bitmap).
pub fn sregs_to_kvm(s: &VcpuState, base: &kvm_sregs) -> kvm_sregs {
    kvm_sregs {
        cs: seg_to_kvm(&s.cs),
        ds: seg_to_kvm(&s.ds),
        es: seg_to_kvm(&s.es),
        fs: seg_to_kvm(&s.fs),
        gs: seg_to_kvm(&s.gs),
        ss: seg_to_kvm(&s.ss),
        tr: seg_to_kvm(&s.tr),
        ldt: seg_to_kvm(&s.ldt),
        gdt: dt_to_kvm(&s.gdt),
        idt: dt_to_kvm(&s.idt),
        cr0: s.cr0,
        cr2: s.cr2,
        cr3: s.cr3,
        cr4: s.cr4,
        cr8: s.cr8,
        efer: s.efer,
        apic_base: s.apic_base,
        interrupt_bitmap: base.interrupt_bitmap,
    }
}

/// KVM's registers as our state.
pub fn state_from_kvm(r: &kvm_regs, sr: &kvm_sregs) -> VcpuState {
    VcpuState {
        gpr: [
            r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi, r.r8, r.r9, r.r10, r.r11,
            r.r12, r.r13, r.r14, r.r15,
        ],
        rip: r.rip,
        rflags: r.rflags,
        cs: seg_from_kvm(&sr.cs),
        ds: seg_from_kvm(&sr.ds),
        es: seg_from_kvm(&sr.es),
        fs: seg_from_kvm(&sr.fs),
        gs: seg_from_kvm(&sr.gs),
        ss: seg_from_kvm(&sr.ss),
        tr: seg_from_kvm(&sr.tr),
        ldt: seg_from_kvm(&sr.ldt),
        gdt: dt_from_kvm(&sr.gdt),
        idt: dt_from_kvm(&sr.idt),
        cr0: sr.cr0,
        cr2: sr.cr2,
        cr3: sr.cr3,
        cr4: sr.cr4,
        cr8: sr.cr8,
        efer: sr.efer,
        apic_base: sr.apic_base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let mut s = VcpuState::reset();
        s.gpr = std::array::from_fn(|i| i as u64 * 0x1111);
        s.cs = Segment::flat(0x10, 0xb, true);
        s.efer = 0x500;
        let back = state_from_kvm(&regs_to_kvm(&s), &sregs_to_kvm(&s, &kvm_sregs::default()));
        assert_eq!(back, s);
    }
}

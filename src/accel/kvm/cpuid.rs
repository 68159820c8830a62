//! The CPUID a KVM guest sees: what the host KVM supports, narrowed to what the machine model
//! offers, with the topology of this machine (APIC IDs, CPU count). Without the in-kernel
//! irqchip the local APIC is the machine's (`devices/lapic.rs`: xAPIC MMIO only), so what only
//! KVM's APIC offers is hidden too.

use kvm_bindings::CpuId;

/// CPUID.1:ECX bits the machine model does not offer: VMX (5), SMX (6), MONITOR/MWAIT (3).
const LEAF1_ECX_HIDDEN: u32 = (1 << 3) | (1 << 5) | (1 << 6);
/// CPUID.1:ECX bit 31: running under a hypervisor.
const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
/// CPUID.1:EDX bit 28: the package reports more than one logical processor.
const LEAF1_EDX_HTT: u32 = 1 << 28;
/// CPUID.1:EDX bit 9: the CPU has a local APIC (ours or KVM's).
const LEAF1_EDX_APIC: u32 = 1 << 9;
/// CPUID.1:ECX bits of KVM's APIC that ours lacks: x2APIC (21) and the TSC-deadline timer
/// mode (24).
const LEAF1_ECX_KVM_APIC_ONLY: u32 = (1 << 21) | (1 << 24);
/// KVM's paravirtual features (CPUID 0x4000_0001 EAX) that go through the in-kernel APIC:
/// async page faults (4) and their interrupt (14), PV EOI (6), PV unhalt (7, its kick is an
/// APIC message) and PV IPIs (11).
const KVM_FEATURES_NEED_KERNEL_APIC: u32 = (1 << 4) | (1 << 6) | (1 << 7) | (1 << 11) | (1 << 14);

/// Adjust `cpuid` (from `KVM_GET_SUPPORTED_CPUID`) for vCPU `id` of `count`;
/// `userspace_apic`: the machine's local APIC serves this vCPU, not KVM's.
pub fn filter(cpuid: &mut CpuId, id: usize, count: usize, userspace_apic: bool) {
    let apic_id = id as u32;
    for e in cpuid.as_mut_slice() {
        match e.function {
            1 => {
                e.ecx &= !LEAF1_ECX_HIDDEN;
                e.ecx |= LEAF1_ECX_HYPERVISOR;
                if userspace_apic {
                    e.ecx &= !LEAF1_ECX_KVM_APIC_ONLY;
                    e.edx |= LEAF1_EDX_APIC;
                }
                e.ebx = (e.ebx & 0x0000_ffff) | (apic_id << 24) | ((count as u32).min(255) << 16);
                if count > 1 {
                    e.edx |= LEAF1_EDX_HTT;
                }
            }
            // Extended topology: each vCPU is one core of one package.
            0xb | 0x1f => {
                e.edx = apic_id;
                match e.index {
                    0 => {
                        e.eax = 0;
                        e.ebx = 1;
                        e.ecx = 0x100; // level 0: SMT
                    }
                    1 => {
                        e.eax = 32 - (count as u32).max(1).saturating_sub(1).leading_zeros();
                        e.ebx = count as u32;
                        e.ecx = 0x201; // level 1: core
                    }
                    _ => {
                        e.eax = 0;
                        e.ebx = 0;
                        e.ecx = e.index;
                    }
                }
            }
            0x4000_0001 if userspace_apic => e.eax &= !KVM_FEATURES_NEED_KERNEL_APIC,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use kvm_bindings::kvm_cpuid_entry2;

    use super::*;

    #[test]
    fn sets_apic_id_and_hides_vmx() {
        let entries = [kvm_cpuid_entry2 {
            function: 1,
            ecx: 1 << 5,
            ebx: 0xff00_0800,
            ..Default::default()
        }];
        let mut c = CpuId::from_entries(&entries).unwrap();
        filter(&mut c, 1, 2, false);
        let e = c.as_slice()[0];
        assert_eq!(e.ebx >> 24, 1);
        assert_eq!((e.ebx >> 16) & 0xff, 2);
        assert_eq!(e.ecx & (1 << 5), 0);
        assert_ne!(e.ecx & (1 << 31), 0);
    }

    #[test]
    fn userspace_apic_hides_what_only_kvms_apic_has() {
        let entries = [
            kvm_cpuid_entry2 {
                function: 1,
                ecx: (1 << 21) | (1 << 24) | 1,
                edx: 1 << 9,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 0x4000_0001,
                eax: (1 << 3) | (1 << 7) | (1 << 11),
                ..Default::default()
            },
        ];
        let mut kernel = CpuId::from_entries(&entries).unwrap();
        filter(&mut kernel, 0, 1, false);
        assert_eq!(kernel.as_slice()[0].ecx & (1 << 21), 1 << 21);
        assert_eq!(kernel.as_slice()[1].eax, entries[1].eax);
        let mut user = CpuId::from_entries(&entries).unwrap();
        filter(&mut user, 0, 1, true);
        let leaf1 = user.as_slice()[0];
        assert_eq!(leaf1.ecx & ((1 << 21) | (1 << 24)), 0);
        assert_eq!(leaf1.ecx & 1, 1, "other features stay");
        assert_ne!(leaf1.edx & (1 << 9), 0, "the APIC itself stays");
        assert_eq!(
            user.as_slice()[1].eax,
            1 << 3,
            "kvmclock stays, PV unhalt/IPI go"
        );
    }
}

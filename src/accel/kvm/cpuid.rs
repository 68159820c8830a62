//! The CPUID a KVM guest sees: what the host KVM supports, narrowed to what the machine model
//! offers, with the topology of this machine (APIC IDs, CPU count).

use kvm_bindings::CpuId;

/// CPUID.1:ECX bits the machine model does not offer: VMX (5), SMX (6), MONITOR/MWAIT (3).
const LEAF1_ECX_HIDDEN: u32 = (1 << 3) | (1 << 5) | (1 << 6);
/// CPUID.1:ECX bit 31: running under a hypervisor.
const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
/// CPUID.1:EDX bit 28: the package reports more than one logical processor.
const LEAF1_EDX_HTT: u32 = 1 << 28;

/// Adjust `cpuid` (from `KVM_GET_SUPPORTED_CPUID`) for vCPU `id` of `count`.
pub fn filter(cpuid: &mut CpuId, id: usize, count: usize) {
    let apic_id = id as u32;
    for e in cpuid.as_mut_slice() {
        match e.function {
            1 => {
                e.ecx &= !LEAF1_ECX_HIDDEN;
                e.ecx |= LEAF1_ECX_HYPERVISOR;
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
        filter(&mut c, 1, 2);
        let e = c.as_slice()[0];
        assert_eq!(e.ebx >> 24, 1);
        assert_eq!((e.ebx >> 16) & 0xff, 2);
        assert_eq!(e.ecx & (1 << 5), 0);
        assert_ne!(e.ecx & (1 << 31), 0);
    }
}

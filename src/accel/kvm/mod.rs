//! The KVM accelerator: guest code runs on the host CPU through `/dev/kvm`.
//!
//! [`KvmAccel::open`] creates the VM, by default with the in-kernel irqchip (PIC + IOAPIC +
//! LAPICs) and PIT; without them (`-machine kernel-irqchip=off`) the machine's userspace
//! controllers serve instead: their ports and pages arrive as exits like any device's, and each
//! vCPU gets its local APIC through `set_interrupt_source` and injects its interrupts itself
//! (`userspace_irq.rs`). `map_ram` registers the shared guest RAM as memory slots; each
//! [`KvmVcpu`] runs on its own thread, serving `KVM_EXIT_IO`/`KVM_EXIT_MMIO` through the
//! machine's `IoHandler` inside `run()` and returning only what the machine must decide. This
//! module never imports `crate::cpu`.

mod cpuid;
mod debug;
mod exit;
mod irq_routing;
mod kick;
mod regs;
mod userspace_irq;
mod vcpu;

use std::sync::{Arc, Mutex};

use kvm_bindings::{kvm_pit_config, kvm_userspace_memory_region, CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VmFd};
pub use vcpu::KvmVcpu;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

use super::{AccelError, Accelerator, GuestRam, InterruptSource, IrqChip, Vcpu, VcpuContext};

/// Where KVM puts the three pages of its real-mode TSS (Intel only): just below the firmware
/// at the top of 4 GiB, inside the PCI hole where no RAM lives.
const TSS_ADDRESS: usize = 0xfffb_d000;

/// `KVM_PIT_SPEAKER_DUMMY`: the in-kernel PIT also answers port 0x61.
const PIT_SPEAKER_DUMMY: u32 = 1;

fn setup_err(what: &str) -> impl FnOnce(kvm_ioctls::Error) -> AccelError + '_ {
    move |e| AccelError::Setup {
        what: what.to_string(),
        source: std::io::Error::from_raw_os_error(e.errno()),
    }
}

/// A KVM virtual machine, with or without its in-kernel interrupt controllers.
pub struct KvmAccel {
    kvm: Kvm,
    vm: Arc<VmFd>,
    supported_cpuid: CpuId,
    /// Whether KVM's irqchip and PIT exist; without them `interrupts` feeds each vCPU.
    in_kernel_irqchip: bool,
    /// Each vCPU's input from the machine's userspace interrupt controllers, by vCPU index.
    interrupts: Mutex<Vec<Option<Arc<dyn InterruptSource>>>>,
}

impl KvmAccel {
    /// The KVM device: `/dev/kvm`, or `$KEMU_KVM_DEVICE` where set (tests, odd hosts).
    fn device_path() -> String {
        std::env::var("KEMU_KVM_DEVICE").unwrap_or_else(|_| "/dev/kvm".to_string())
    }

    fn open_device() -> Result<Kvm, AccelError> {
        let path = Self::device_path();
        let cpath = std::ffi::CString::new(path.clone()).map_err(|_| {
            AccelError::Other(format!("KVM device path {path:?} contains a NUL byte"))
        })?;
        Kvm::new_with_path(&cpath).map_err(|e| AccelError::Setup {
            what: format!("cannot open {path} (is KVM available and accessible? try -accel tcg)"),
            source: std::io::Error::from_raw_os_error(e.errno()),
        })
    }

    /// Open the KVM device and create a VM; with `in_kernel_irqchip`, KVM's irqchip (with the
    /// GSI routing of a PC) and PIT serve the interrupt hardware, without it the machine must
    /// bring its own and connect each vCPU ([`Accelerator::set_interrupt_source`]).
    pub fn open(in_kernel_irqchip: bool) -> Result<Self, AccelError> {
        let kvm = Self::open_device()?;
        let vm = kvm.create_vm().map_err(setup_err("KVM_CREATE_VM"))?;
        vm.set_tss_address(TSS_ADDRESS)
            .map_err(setup_err("KVM_SET_TSS_ADDR"))?;
        if in_kernel_irqchip {
            vm.create_irq_chip()
                .map_err(setup_err("KVM_CREATE_IRQCHIP"))?;
            let routing = irq_routing::table()
                .map_err(|e| AccelError::Other(format!("GSI routing table: {e:?}")))?;
            vm.set_gsi_routing(&routing)
                .map_err(setup_err("KVM_SET_GSI_ROUTING"))?;
            let pit = kvm_pit_config {
                flags: PIT_SPEAKER_DUMMY,
                ..Default::default()
            };
            vm.create_pit2(pit).map_err(setup_err("KVM_CREATE_PIT2"))?;
        }
        let supported_cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(setup_err("KVM_GET_SUPPORTED_CPUID"))?;
        Ok(KvmAccel {
            kvm,
            vm: Arc::new(vm),
            supported_cpuid,
            in_kernel_irqchip,
            interrupts: Mutex::new(Vec::new()),
        })
    }

    /// Whether the KVM device can be opened by this process.
    pub fn available() -> bool {
        Self::open_device().is_ok()
    }

    /// The host KVM API handle.
    pub fn kvm(&self) -> &Kvm {
        &self.kvm
    }
}

struct KvmIrqChip {
    vm: Arc<VmFd>,
}

impl IrqChip for KvmIrqChip {
    fn set_irq(&self, gsi: u32, level: bool) {
        if let Err(e) = self.vm.set_irq_line(gsi, level) {
            log::warn!("KVM_IRQ_LINE gsi {gsi} level {level}: {e}");
        }
    }
}

impl Accelerator for KvmAccel {
    fn name(&self) -> &'static str {
        "kvm"
    }

    fn map_ram(&self, ram: &Arc<GuestRam>) -> Result<(), AccelError> {
        for (slot, region) in ram.iter().enumerate() {
            let host = ram
                .get_host_address(region.start_addr())
                .map_err(|e| AccelError::Other(format!("guest RAM region: {e}")))?;
            let mem = kvm_userspace_memory_region {
                slot: slot as u32,
                flags: 0,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: host as u64,
            };
            // SAFETY: `host` is the start of a live mmap of `region.len()` bytes owned by `ram`,
            // which the machine keeps alive (an Arc held by every vCPU and the machine) for as
            // long as the VM exists; the regions do not overlap (vm-memory checks that).
            unsafe { self.vm.set_user_memory_region(mem) }
                .map_err(setup_err("KVM_SET_USER_MEMORY_REGION"))?;
        }
        Ok(())
    }

    /// The in-kernel irqchip's lines (`KVM_IRQ_LINE`). Without one, the machine raises its
    /// lines on its own controllers instead; a line raised here would only log KVM's refusal.
    fn irq_chip(&self) -> Arc<dyn IrqChip> {
        Arc::new(KvmIrqChip {
            vm: self.vm.clone(),
        })
    }

    fn set_interrupt_source(
        &self,
        id: usize,
        source: Arc<dyn InterruptSource>,
    ) -> Result<(), AccelError> {
        if self.in_kernel_irqchip {
            return Err(AccelError::Other(
                "the in-kernel irqchip serves this VM's interrupts (kernel-irqchip=on)".into(),
            ));
        }
        let mut v = self.interrupts.lock().unwrap_or_else(|e| e.into_inner());
        if v.len() <= id {
            v.resize(id + 1, None);
        }
        v[id] = Some(source);
        Ok(())
    }

    fn create_vcpu(&self, id: usize, ctx: VcpuContext) -> Result<Box<dyn Vcpu>, AccelError> {
        let interrupts = if self.in_kernel_irqchip {
            None
        } else {
            let v = self.interrupts.lock().unwrap_or_else(|e| e.into_inner());
            let source = v.get(id).cloned().flatten().ok_or_else(|| {
                AccelError::Other(format!(
                    "vCPU {id}: no interrupt controller connected (kernel-irqchip=off)"
                ))
            })?;
            Some(source)
        };
        let fd = self
            .vm
            .create_vcpu(id as u64)
            .map_err(setup_err("KVM_CREATE_VCPU"))?;
        let mut cpuid = self.supported_cpuid.clone();
        cpuid::filter(&mut cpuid, id, ctx.cpu_count, interrupts.is_some());
        let vcpu = KvmVcpu::new(id, fd, ctx, &cpuid, interrupts)?;
        Ok(Box::new(vcpu))
    }
}

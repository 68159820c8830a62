//! The GSI routing table of the in-kernel irqchip, made to match our MADT: KVM's default routes
//! GSI n to IOAPIC pin n, but a PC (and our MADT's interrupt source override) puts the PIT's
//! ISA IRQ 0 on IOAPIC pin 2. Without this a guest that follows the MADT (Linux, our `ioapic`
//! guest) waits on pin 2 for a timer that arrives on pin 0. The table is QEMU's: ISA IRQs 0-15
//! on the two 8259s (except the cascade, IRQ 2), and on the IOAPIC with IRQ 0 moved to pin 2.

use kvm_bindings::{
    kvm_irq_routing_entry, KvmIrqRouting, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE, KVM_IRQ_ROUTING_IRQCHIP,
};

/// IOAPIC pins (= GSIs) of the machine.
pub const IOAPIC_PINS: u32 = 24;

fn entry(gsi: u32, chip: u32, pin: u32) -> kvm_irq_routing_entry {
    let mut e = kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_IRQCHIP,
        ..Default::default()
    };
    e.u.irqchip.irqchip = chip;
    e.u.irqchip.pin = pin;
    e
}

/// (GSI, irqchip, pin) for every route.
pub fn routes() -> Vec<(u32, u32, u32)> {
    let mut r = Vec::new();
    for gsi in 0..16 {
        if gsi == 2 {
            continue; // the cascade input: nothing raises it
        }
        let chip = if gsi < 8 {
            KVM_IRQCHIP_PIC_MASTER
        } else {
            KVM_IRQCHIP_PIC_SLAVE
        };
        r.push((gsi, chip, gsi % 8));
    }
    for gsi in 0..IOAPIC_PINS {
        match gsi {
            0 => r.push((0, KVM_IRQCHIP_IOAPIC, 2)),
            2 => {}
            _ => r.push((gsi, KVM_IRQCHIP_IOAPIC, gsi)),
        }
    }
    r
}

/// The table for `KVM_SET_GSI_ROUTING`.
pub fn table() -> Result<KvmIrqRouting, vmm_sys_util::fam::Error> {
    let routes = routes();
    let mut t = KvmIrqRouting::new(0)?;
    for (gsi, chip, pin) in routes {
        t.push(entry(gsi, chip, pin))?;
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pit_goes_to_ioapic_pin_2_and_the_cascade_nowhere() {
        let r = routes();
        assert!(r.contains(&(0, KVM_IRQCHIP_IOAPIC, 2)));
        assert!(r.contains(&(0, KVM_IRQCHIP_PIC_MASTER, 0)));
        assert!(!r.iter().any(|&(g, _, _)| g == 2));
        assert!(r.contains(&(11, KVM_IRQCHIP_PIC_SLAVE, 3)));
        assert!(r.contains(&(11, KVM_IRQCHIP_IOAPIC, 11)));
        assert!(r.contains(&(23, KVM_IRQCHIP_IOAPIC, 23)));
        assert_eq!(table().unwrap().as_slice().len(), r.len());
    }
}

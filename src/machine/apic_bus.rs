//! The APIC bus of the machine's userspace interrupt controllers (the software CPU's, and KVM's
//! with `kernel-irqchip=off`): one local APIC per vCPU, the IOAPIC, and the messages between
//! them.
//!
//! Data enters as each vCPU's MMIO accesses to its APIC page ([`ApicBus::mmio_read`],
//! [`ApicBus::mmio_write`], called by `MachineIo` with the vCPU index), as device interrupt lines
//! ([`ApicBus::irq_chip`]: ISA lines go to both the 8259 pair and the IOAPIC, as on a PC), as
//! IOAPIC redirection messages and as timer expiries ([`ApicBus::poll_timers`], from the
//! machine's timer thread). It leaves through each vCPU's [`InterruptSource`]
//! ([`ApicBus::interrupt_source`]: the APIC's vectors, the 8259's through LINT0 in ExtINT mode,
//! and INIT/STARTUP/NMI) and a kick that wakes or interrupts the target vCPU's thread.
//!
//! APIC IDs are vCPU indexes (as the MADT says); a guest that rewrites an ID register changes
//! what it reads back and how the APIC matches destinations, while the shorthands and the
//! sender stay by index. Locks: an IOAPIC delivery holds the IOAPIC and takes APIC locks; a
//! CPU-side APIC access releases its APIC before sending an IPI or an EOI to the IOAPIC, so
//! no two paths take the same pair of locks in opposite orders.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use super::control::Control;
use super::lock;
use crate::accel::{CpuSignal, InterruptSource, IrqChip};
use crate::devices::clock::Clock;
use crate::devices::ioapic::{Delivery, IoApic};
use crate::devices::lapic::{mode, Ipi, Lapic, LapicOutput, LapicSignal, Shorthand};
use crate::devices::pic::Pic8259Pair;

/// The ISA IRQ the PIT uses, which the MADT overrides to IOAPIC input 2.
const PIT_ISA_IRQ: u32 = 0;
/// The IOAPIC input the PIT is wired to (MADT interrupt source override 0 → 2).
const PIT_IOAPIC_PIN: u32 = 2;

/// Wakes the machine's timer thread when a guest reprograms an APIC timer, so a deadline that
/// moved closer is not slept past.
#[derive(Default)]
pub struct TimerWake {
    gen: Mutex<u64>,
    cv: Condvar,
}

impl TimerWake {
    /// Tell the timer thread to look again.
    pub fn notify(&self) {
        *lock(&self.gen) += 1;
        self.cv.notify_all();
    }

    /// The current notification count.
    pub fn generation(&self) -> u64 {
        *lock(&self.gen)
    }

    /// Sleep up to `timeout` unless notified since `start`.
    pub fn wait(&self, start: u64, timeout: Duration) {
        let g = lock(&self.gen);
        let _ = self.cv.wait_timeout_while(g, timeout, |g| *g == start);
    }
}

/// The local APICs, the IOAPIC and the 8259 pair of one power cycle.
pub struct ApicBus {
    lapics: Vec<Arc<Mutex<Lapic>>>,
    ioapic: Arc<Mutex<IoApic>>,
    pic: Arc<Mutex<Pic8259Pair>>,
    control: Arc<Control>,
    timer_wake: Arc<TimerWake>,
    /// `-icount`: a vCPU that reprograms its APIC timer is kicked, so its instruction budget
    /// (which ends at the old deadline) is recomputed at the next block boundary.
    kick_on_timer_write: AtomicBool,
}

impl ApicBus {
    /// `cpus` local APICs (IDs 0..cpus, vCPU 0 the boot CPU) timed by `clock`, an IOAPIC with
    /// ID `cpus` (as the MADT describes it), the 8259 pair `pic` behind LINT0, and `control`
    /// to wake vCPU threads.
    pub fn new(
        cpus: usize,
        clock: Arc<dyn Clock>,
        pic: Arc<Mutex<Pic8259Pair>>,
        control: Arc<Control>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me: &Weak<ApicBus>| {
            let me = me.clone();
            let sink = Arc::new(move |d: Delivery| {
                if let Some(bus) = me.upgrade() {
                    bus.deliver_from_ioapic(d);
                }
            });
            // The MADT limits the CPU count to 254, so the IDs fit a byte.
            let lapics = (0..cpus)
                .map(|id| Arc::new(Mutex::new(Lapic::new(id as u8, id == 0, clock.clone()))))
                .collect();
            ApicBus {
                lapics,
                ioapic: Arc::new(Mutex::new(IoApic::new(cpus as u8, sink))),
                pic,
                control,
                timer_wake: Arc::new(TimerWake::default()),
                kick_on_timer_write: AtomicBool::new(false),
            }
        })
    }

    /// The IOAPIC, for the MMIO bus.
    pub fn ioapic(&self) -> Arc<Mutex<IoApic>> {
        self.ioapic.clone()
    }

    /// Kick the writing vCPU whenever it reprograms its APIC timer (`-icount`, where no timer
    /// thread watches the deadlines and the vCPU loop must look again).
    pub fn kick_on_timer_write(&self) {
        self.kick_on_timer_write.store(true, Ordering::Relaxed);
    }

    /// What wakes the timer thread.
    pub fn timer_wake(&self) -> Arc<TimerWake> {
        self.timer_wake.clone()
    }

    /// The interrupt lines devices raise: ISA IRQs 0-15 reach the 8259 input of the same number
    /// and the IOAPIC input the MADT gives them (IRQ 0 → 2, the rest identity); 16 and up are
    /// IOAPIC inputs only.
    pub fn irq_chip(self: &Arc<Self>) -> Arc<dyn IrqChip> {
        Arc::new(PcIrqChip { bus: self.clone() })
    }

    /// vCPU `id`'s interrupt input: its local APIC.
    pub fn interrupt_source(self: &Arc<Self>, id: usize) -> Arc<dyn InterruptSource> {
        Arc::new(LapicInput {
            bus: self.clone(),
            id,
        })
    }

    /// vCPU `vcpu` reads its APIC page at `offset`.
    pub fn mmio_read(&self, vcpu: usize, offset: u64, data: &mut [u8]) {
        match self.lapics.get(vcpu) {
            Some(l) => lock(l).read(offset, data),
            None => data.fill(0xff),
        }
    }

    /// vCPU `vcpu` writes its APIC page at `offset`; IPIs and EOIs go out after the APIC's
    /// lock is released.
    pub fn mmio_write(&self, vcpu: usize, offset: u64, data: &[u8]) {
        let Some(l) = self.lapics.get(vcpu) else {
            return;
        };
        let out = lock(l).write(offset, data);
        match out {
            Some(LapicOutput::Ipi(ipi)) => self.route_ipi(vcpu, ipi),
            Some(LapicOutput::LevelEoi(v)) => lock(&self.ioapic).eoi(v),
            None => {}
        }
        use crate::devices::lapic::reg;
        if matches!(
            offset,
            reg::LVT_TIMER | reg::TIMER_INITIAL | reg::TIMER_DIVIDE
        ) {
            self.timer_wake.notify();
            if self.kick_on_timer_write.load(Ordering::Relaxed) {
                self.control.kick_vcpu(vcpu);
            }
        }
    }

    /// Account for every APIC timer up to now, waking the vCPUs whose timer interrupt became
    /// pending; returns the earliest next deadline (clock ns).
    pub fn poll_timers(&self) -> Option<u64> {
        let mut next: Option<u64> = None;
        for (id, l) in self.lapics.iter().enumerate() {
            let mut a = lock(l);
            let fired = a.poll_timer();
            let pending = a.has_interrupt();
            if let Some(d) = a.timer_deadline_ns() {
                next = Some(next.map_or(d, |n| n.min(d)));
            }
            drop(a);
            if fired && pending {
                self.control.kick_vcpu(id);
            }
        }
        next
    }

    /// The vCPUs an interrupt message for `dest` reaches.
    fn targets(&self, logical: bool, dest: u8) -> Vec<usize> {
        (0..self.lapics.len())
            .filter(|&i| {
                let a = lock(&self.lapics[i]);
                if logical {
                    a.matches_logical(dest)
                } else {
                    a.matches_physical(dest)
                }
            })
            .collect()
    }

    fn route_ipi(&self, sender: usize, ipi: Ipi) {
        let targets: Vec<usize> = match ipi.shorthand {
            Shorthand::None => self.targets(ipi.logical, ipi.dest),
            Shorthand::SelfOnly => vec![sender],
            Shorthand::All => (0..self.lapics.len()).collect(),
            Shorthand::AllButSelf => (0..self.lapics.len()).filter(|&i| i != sender).collect(),
        };
        if ipi.mode == mode::INIT && !ipi.assert && ipi.level {
            // INIT level de-assert: only re-synchronises arbitration IDs.
            return;
        }
        self.deliver(&targets, ipi.mode, ipi.vector, false);
    }

    fn deliver_from_ioapic(&self, d: Delivery) {
        let targets = self.targets(d.dest_mode_logical, d.dest);
        self.deliver(&targets, d.delivery_mode, d.vector, d.level);
    }

    /// Hand a message to each target APIC and wake its vCPU.
    fn deliver(&self, targets: &[usize], delivery_mode: u8, vector: u8, level: bool) {
        let chosen: Vec<usize> = if delivery_mode == mode::LOWEST {
            // Lowest priority: the target with the lowest processor priority.
            targets
                .iter()
                .copied()
                .min_by_key(|&i| lock(&self.lapics[i]).ppr())
                .into_iter()
                .collect()
        } else {
            targets.to_vec()
        };
        for &i in &chosen {
            let mut a = lock(&self.lapics[i]);
            match delivery_mode {
                mode::FIXED | mode::LOWEST => a.accept_fixed(vector, level),
                mode::NMI => a.accept_signal(LapicSignal::Nmi),
                mode::INIT => {
                    if i != 0 {
                        a.init_reset();
                    }
                    a.accept_signal(LapicSignal::Init);
                }
                mode::STARTUP => a.accept_signal(LapicSignal::Startup(vector)),
                other => {
                    log::debug!("APIC message with delivery mode {other} to CPU {i} ignored");
                    continue;
                }
            }
            drop(a);
            self.control.kick_vcpu(i);
        }
    }
}

/// ISA and PCI interrupt lines into the 8259 pair and the IOAPIC.
struct PcIrqChip {
    bus: Arc<ApicBus>,
}

impl IrqChip for PcIrqChip {
    fn set_irq(&self, gsi: u32, level: bool) {
        if gsi < 16 {
            lock(&self.bus.pic).set_irq(gsi as u8, level);
        }
        let pin = if gsi == PIT_ISA_IRQ {
            PIT_IOAPIC_PIN
        } else {
            gsi
        };
        lock(&self.bus.ioapic).set_irq(pin, level);
    }
}

/// One vCPU's view of the interrupt hardware: its local APIC, and through LINT0 the 8259.
struct LapicInput {
    bus: Arc<ApicBus>,
    id: usize,
}

impl LapicInput {
    fn lapic(&self) -> std::sync::MutexGuard<'_, Lapic> {
        lock(&self.bus.lapics[self.id])
    }
}

impl InterruptSource for LapicInput {
    fn pending(&self) -> bool {
        let mut a = self.lapic();
        // The timer thread polls too; polling here as well catches an expiry at the next slice
        // boundary even before it wakes.
        a.poll_timer();
        a.has_interrupt() || (a.accepts_extint() && lock(&self.bus.pic).has_interrupt())
    }

    fn acknowledge(&self) -> u8 {
        let mut a = self.lapic();
        if let Some(v) = a.acknowledge() {
            return v;
        }
        if a.accepts_extint() {
            return lock(&self.bus.pic).acknowledge();
        }
        a.spurious_vector()
    }

    fn take_signal(&self) -> Option<CpuSignal> {
        self.lapic().take_signal().map(|s| match s {
            LapicSignal::Init => CpuSignal::Init,
            LapicSignal::Startup(v) => CpuSignal::Startup(v),
            LapicSignal::Nmi => CpuSignal::Nmi,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::clock::ManualClock;
    use crate::devices::lapic::reg;
    use crate::devices::BusDevice;

    fn bus(cpus: usize) -> (Arc<ApicBus>, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(0));
        let pic = Arc::new(Mutex::new(Pic8259Pair::new(Arc::new(|_| {}))));
        (
            ApicBus::new(cpus, clock.clone(), pic, Control::new()),
            clock,
        )
    }

    fn wr(b: &ApicBus, cpu: usize, r: u64, v: u32) {
        b.mmio_write(cpu, r, &v.to_le_bytes());
    }

    fn ioapic_write(b: &ApicBus, index: u8, v: u32) {
        let io = b.ioapic();
        let mut io = lock(&io);
        io.write(0, &[index]);
        io.write(0x10, &v.to_le_bytes());
    }

    #[test]
    fn fixed_ipi_reaches_the_destination_only() {
        let (b, _) = bus(3);
        for c in 0..3 {
            wr(&b, c, reg::SVR, 0x1ff);
        }
        wr(&b, 0, reg::ICR_HI, 2 << 24);
        wr(&b, 0, reg::ICR_LO, 0x4040);
        let (s1, s2) = (b.interrupt_source(1), b.interrupt_source(2));
        assert!(!s1.pending());
        assert!(s2.pending());
        assert_eq!(s2.acknowledge(), 0x40);
        // All-but-self from CPU 2.
        wr(&b, 2, reg::ICR_LO, 0xc_4041);
        assert!(s1.pending() && b.interrupt_source(0).pending() && !s2.pending());
    }

    #[test]
    fn init_and_startup_become_signals() {
        let (b, _) = bus(2);
        wr(&b, 0, reg::ICR_LO, 0xc_4500);
        wr(&b, 0, reg::ICR_LO, 0xc_4608);
        let s1 = b.interrupt_source(1);
        assert_eq!(s1.take_signal(), Some(CpuSignal::Init));
        assert_eq!(s1.take_signal(), Some(CpuSignal::Startup(8)));
        assert_eq!(s1.take_signal(), None);
        assert_eq!(b.interrupt_source(0).take_signal(), None);
        // Self NMI.
        wr(&b, 0, reg::ICR_LO, 0x4_4400);
        assert_eq!(b.interrupt_source(0).take_signal(), Some(CpuSignal::Nmi));
    }

    #[test]
    fn isa_irq_through_the_ioapic_and_level_eoi() {
        let (b, _) = bus(2);
        wr(&b, 1, reg::SVR, 0x1ff);
        // PIT (ISA IRQ 0) → pin 2 → vector 0x30 on CPU 1, edge.
        ioapic_write(&b, 0x10 + 4, 0x30);
        ioapic_write(&b, 0x11 + 4, 1 << 24);
        let chip = b.irq_chip();
        chip.set_irq(0, true);
        chip.set_irq(0, false);
        let s1 = b.interrupt_source(1);
        assert!(s1.pending());
        assert_eq!(s1.acknowledge(), 0x30);
        wr(&b, 1, reg::EOI, 0);
        // COM1 (IRQ 4) level-triggered to vector 0x34: remote IRR until the EOI.
        ioapic_write(&b, 0x10 + 8, 0x34 | 1 << 15);
        ioapic_write(&b, 0x11 + 8, 1 << 24);
        chip.set_irq(4, true);
        assert_eq!(s1.acknowledge(), 0x34);
        assert!(!s1.pending());
        wr(&b, 1, reg::EOI, 0); // still asserted: delivered again
        assert!(s1.pending());
        assert_eq!(s1.acknowledge(), 0x34);
        chip.set_irq(4, false);
        wr(&b, 1, reg::EOI, 0);
        assert!(!s1.pending());
    }

    #[test]
    fn pic_reaches_the_boot_cpu_through_lint0() {
        let (b, _) = bus(2);
        {
            let mut pic = lock(&b.pic);
            for (port, v) in [(0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, 0x01)] {
                pic.write_port(port, v);
            }
            pic.write_port(0x21, 0xfe);
        }
        b.irq_chip().set_irq(0, true);
        let (s0, s1) = (b.interrupt_source(0), b.interrupt_source(1));
        assert!(s0.pending(), "virtual wire: LINT0 ExtINT on the BSP");
        assert!(!s1.pending());
        assert_eq!(s0.acknowledge(), 0x20);
    }

    #[test]
    fn timer_expiry_is_found_by_polling() {
        let (b, clock) = bus(1);
        wr(&b, 0, reg::SVR, 0x1ff);
        wr(&b, 0, reg::TIMER_DIVIDE, 0xb);
        wr(&b, 0, reg::LVT_TIMER, 0x50);
        wr(&b, 0, reg::TIMER_INITIAL, 500);
        assert_eq!(b.poll_timers(), Some(500));
        clock.set(600);
        assert_eq!(b.poll_timers(), None);
        assert_eq!(b.interrupt_source(0).acknowledge(), 0x50);
    }
}

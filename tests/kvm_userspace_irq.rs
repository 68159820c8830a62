//! Our interrupt guests under `-accel kvm -machine kernel-irqchip=off`: KVM runs the guest code,
//! and kemu's own 8259s, PIT, IOAPIC and local APICs (the software CPU's) serve the interrupts
//! in userspace. The serial output must be byte-exact against the same expected files as under
//! KVM's in-kernel irqchip and under tcg; the exit statistics must show the controllers' exits
//! the in-kernel irqchip hides.

mod common;

use std::time::Duration;

use common::{guest, kemu, kvm_or_skip};

const OFF: &[&str] = &["-machine", "kernel-irqchip=off"];

fn run_guest(file: &str, expected: &str, status: i32, smp: &str) {
    common::run_guest_with("kvm", OFF, file, expected, status, smp);
}

#[test]
fn pit_and_pic_interrupts_wake_hlt() {
    run_guest("pit_irq.bin", "pit_irq", 1, "1");
}

#[test]
fn lapic_timer_periodic_and_one_shot() {
    run_guest("lapic_timer.bin", "lapic_timer", 1, "1");
}

/// A running vCPU is kicked out of KVM_RUN for the timer interrupt; one that arrives while
/// IF = 0 waits for the interrupt-window exit after STI.
#[test]
fn interrupts_reach_a_spinning_cpu_and_wait_for_sti() {
    run_guest("irq_window.bin", "irq_window", 1, "1");
}

#[test]
fn ioapic_routes_the_pit() {
    run_guest("ioapic.bin", "ioapic", 1, "1");
}

#[test]
fn ipi_init_startup_fixed_and_nmi() {
    run_guest("ipi.bin", "ipi", 1, "2");
}

#[test]
fn smp2_both_cpus_report_in() {
    run_guest("smp.bin", "smp", 1, "2");
}

/// Both vCPUs halted for ~0.5 s of APIC one-shot timers: every HLT comes back to kemu, the
/// vCPU threads sleep until the timer thread wakes them, and the interrupt is injected.
#[test]
fn halted_cpus_idle_and_wake_on_the_apic_timer() {
    if !kvm_or_skip("hlt_wake") {
        return;
    }
    let path = guest("hlt_wake.bin");
    let mut args = vec![
        "-accel",
        "kvm",
        "-smp",
        "2",
        "-kernel",
        path.to_str().unwrap(),
        "-nographic",
        "-no-reboot",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
    ];
    args.extend_from_slice(OFF);
    let (run, cpu) = common::kemu_cpu_time(&args, Duration::from_secs(60));
    assert_eq!(run.stdout, common::expected("hlt_wake"), "{}", run.stderr);
    assert_eq!(run.status, Some(1), "{}", run.stderr);
    assert!(
        run.elapsed >= Duration::from_millis(500),
        "20 x 25 ms timers took {:?}",
        run.elapsed
    );
    assert!(
        cpu < Duration::from_millis(300),
        "kemu used {cpu:?} of CPU for {:?} of mostly halted guest",
        run.elapsed
    );
}

/// One `-d exits` table row's total, 0 when the row is absent.
fn total(table: &str, reason: &str) -> u64 {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(reason))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .unwrap_or(0)
}

/// The same guest with KVM's controllers and with ours: only ours make the APIC page and HLT
/// exit to kemu.
#[test]
fn exit_statistics_show_the_userspace_controllers() {
    if !kvm_or_skip("exit statistics") {
        return;
    }
    let path = guest("lapic_timer.bin");
    let stats = |irqchip: &str| {
        let machine = format!("kernel-irqchip={irqchip}");
        let r = kemu(
            &[
                "-accel",
                "kvm",
                "-machine",
                &machine,
                "-kernel",
                path.to_str().unwrap(),
                "-nographic",
                "-no-reboot",
                "-device",
                "isa-debug-exit,iobase=0xf4,iosize=0x04",
                "-d",
                "exits",
            ],
            Duration::from_secs(60),
        );
        assert_eq!(r.stdout, common::expected("lapic_timer"), "{}", r.stderr);
        r.stderr
    };
    let (on, off) = (stats("on"), stats("off"));
    // The guest programs its APIC timer (LVT, divide, initial count, EOIs) and halts 7 times.
    assert_eq!(total(&on, "mmio-write"), 0, "{on}");
    assert_eq!(total(&on, "hlt"), 0, "{on}");
    assert!(total(&off, "mmio-write") >= 10, "{off}");
    assert!(total(&off, "hlt") >= 5, "{off}");
}

#[test]
fn split_is_refused_with_a_clear_error() {
    let path = guest("hello.bin");
    let r = kemu(
        &[
            "-accel",
            "kvm",
            "-machine",
            "kernel-irqchip=split",
            "-kernel",
            path.to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    assert_ne!(r.status, Some(0));
    assert!(
        r.stderr.contains("kernel-irqchip=split is not supported"),
        "{}",
        r.stderr
    );
}

/// `kemu bench --accel kvm,kvm-userirq` sets KVM's controllers against kemu's in one table:
/// only the userspace column has the APIC's MMIO exits and the HLT exits.
#[test]
fn bench_compares_the_in_kernel_and_userspace_controllers() {
    if !kvm_or_skip("bench kvm,kvm-userirq") {
        return;
    }
    let path = guest("lapic_timer.bin");
    let r = kemu(
        &[
            "bench",
            "--runs",
            "1",
            "--accel",
            "kvm,kvm-userirq",
            "-kernel",
            path.to_str().unwrap(),
            "-no-reboot",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
        ],
        Duration::from_secs(120),
    );
    assert_eq!(r.status, Some(0), "{}", r.stderr);
    let head: Vec<&str> = r
        .stdout
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(head, ["metric", "kvm", "kvm-userirq", "kvm/kvm-userirq"]);
    let row = |name: &str| -> Vec<String> {
        r.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} row: {}", r.stdout))
            .split_whitespace()
            .skip(1)
            .map(str::to_string)
            .collect()
    };
    assert_eq!(row("exit:hlt")[..2], ["0", "7"], "{}", r.stdout);
    assert_eq!(row("exit:mmio-write")[..2], ["0", "17"], "{}", r.stdout);
}

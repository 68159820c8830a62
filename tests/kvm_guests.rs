//! Our test guests under `-accel kvm`: serial output byte-exact against the expected files,
//! exit status through isa-debug-exit or ACPI power-off, `-smp 2` bring-up, both multiboot forms.

mod common;

use std::time::Duration;

use common::{guest, kemu, kvm_or_skip};

const LIMIT: Duration = Duration::from_secs(120);

fn run_guest(file: &str, expected: &str, status: i32, smp: &str) {
    common::run_guest("kvm", file, expected, status, smp);
}

#[test]
fn hello_flat_multiboot() {
    run_guest("hello.bin", "hello", 1, "1");
}

#[test]
fn hello_elf32_multiboot() {
    run_guest("hello.elf", "hello", 1, "1");
}

#[test]
fn exit_status_reaches_the_shell() {
    run_guest("exit_code.bin", "exit_code", 85, "1");
}

#[test]
fn cpl3_workload_on_the_host_cpu() {
    run_guest("cpl3.bin", "cpl3", 1, "1");
}

/// The SSE guest's arithmetic runs at CPL 3, natively on the host CPU under PVM.
#[test]
fn sse_results_on_the_host_cpu() {
    run_guest("sse.bin", "sse", 1, "1");
}

/// The x87 work runs at CPL 3 (natively on the host CPU under PVM): x87.expected is its output.
#[test]
fn x87_on_the_host_cpu() {
    run_guest("x87.bin", "x87", 1, "1");
}

#[test]
fn smp2_both_cpus_report_in() {
    run_guest("smp.bin", "smp", 1, "2");
}

#[test]
fn demo_guest_under_kvm_exits_0() {
    if !kvm_or_skip("demo") {
        return;
    }
    // No kernel: the embedded demo, here on KVM (direct boot, no firmware).
    let r = kemu(&["-accel", "kvm"], LIMIT);
    assert_eq!(r.status, Some(0), "stderr: {}", r.stderr);
    let want = common::expected("demo");
    // The demo reports the MADT's CPU count; with no -smp that is 1.
    assert_eq!(r.stdout, want.replace("lists 2 enabled", "lists 1 enabled"));
}

#[test]
fn exit_statistics_count_the_guests_port_io() {
    if !kvm_or_skip("exit statistics") {
        return;
    }
    let path = guest("pio_bench.bin");
    let r = kemu(
        &[
            "-accel",
            "kvm",
            "-kernel",
            path.to_str().unwrap(),
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-d",
            "exits",
        ],
        LIMIT,
    );
    assert_eq!(r.status, Some(1), "stderr: {}", r.stderr);
    let row = r
        .stderr
        .lines()
        .find(|l| l.starts_with("io-out"))
        .unwrap_or_else(|| panic!("no io-out row in: {}", r.stderr));
    let total: u64 = row.split_whitespace().last().unwrap().parse().unwrap();
    // 200000 OUTs to port 0x80, plus the serial output and the final debug-exit write.
    assert!(total >= 200_000, "{row}");
}

#[test]
fn i8042_reset_with_no_reboot_exits_0() {
    run_guest("reset_kbc.bin", "reset_kbc", 0, "1");
}

#[test]
fn cf9_reset_with_no_reboot_exits_0() {
    run_guest("reset_cf9.bin", "reset_cf9", 0, "1");
}

#[test]
fn reset_without_no_reboot_boots_again() {
    if !kvm_or_skip("reset") {
        return;
    }
    let path = guest("reset_cf9.bin");
    let r = kemu(
        &["-accel", "kvm", "-kernel", path.to_str().unwrap()],
        Duration::from_secs(5),
    );
    assert_eq!(
        r.status, None,
        "a resetting guest runs until killed: {}",
        r.stderr
    );
    let boots = r.stdout.matches("reset_cf9: writing").count();
    assert!(boots >= 2, "booted {boots} time(s): {}", r.stderr);
    assert!(!r.stdout.contains("still running"));
}

#[test]
fn triple_fault_is_reported() {
    if !common::run_guest("kvm", "triple_fault.bin", "triple_fault", 0, "1") {
        return;
    }
    let path = guest("triple_fault.bin");
    let r = kemu(
        &[
            "-accel",
            "kvm",
            "-no-reboot",
            "-kernel",
            path.to_str().unwrap(),
        ],
        LIMIT,
    );
    let line = r.stderr.lines().next().unwrap_or_default();
    assert!(
        line.contains("triple fault") && line.contains("ud2"),
        "{}",
        r.stderr
    );
}

#[test]
fn host_input_reaches_the_guest_serial_port() {
    if !kvm_or_skip("echo") {
        return;
    }
    let path = guest("echo.bin");
    let r = common::kemu_with_input(
        &[
            "-accel",
            "kvm",
            "-nographic",
            "-kernel",
            path.to_str().unwrap(),
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
        ],
        Some(b"hello kemu\n"),
        LIMIT,
    );
    assert_eq!(r.stdout, common::expected("echo"), "{}", r.stderr);
    assert_eq!(r.status, Some(1), "{}", r.stderr);
}

#[test]
fn pit_and_pic_interrupts_wake_hlt() {
    run_guest("pit_irq.bin", "pit_irq", 1, "1");
}

#[test]
fn lapic_timer_periodic_and_one_shot() {
    run_guest("lapic_timer.bin", "lapic_timer", 1, "1");
}

#[test]
fn interrupts_reach_a_spinning_cpu_and_wait_for_sti() {
    run_guest("irq_window.bin", "irq_window", 1, "1");
}

#[test]
fn ipi_init_startup_fixed_and_nmi() {
    run_guest("ipi.bin", "ipi", 1, "2");
}

#[test]
fn hlt_wakes_on_the_apic_timer() {
    run_guest("hlt_wake.bin", "hlt_wake", 1, "2");
}

/// The in-kernel PIT reaches IOAPIC input 2, as the MADT's interrupt source override says
/// (kemu sets KVM's GSI routing the way QEMU does).
#[test]
fn ioapic_routes_the_pit() {
    run_guest("ioapic.bin", "ioapic", 1, "1");
}

//! Our test guests under `-accel tcg` (the software CPU): the same expected outputs as under
//! KVM, and for the CPL 3 workload the same result as the host CPU computes under KVM.

mod common;

use std::time::Duration;

use common::{guest, kemu, kvm_or_skip, run_guest};

#[test]
fn hello_flat_and_elf32() {
    run_guest("tcg", "hello.bin", "hello", 1, "1");
    run_guest("tcg", "hello.elf", "hello", 1, "1");
}

#[test]
fn exit_status() {
    run_guest("tcg", "exit_code.bin", "exit_code", 85, "1");
}

#[test]
fn cpl3_workload() {
    run_guest("tcg", "cpl3.bin", "cpl3", 1, "1");
}

/// SSE/SSE2 results (rounding modes, MXCSR flags, NaNs, FTZ/DAZ, integer ops) computed at
/// CPL 3; `sse.expected` is what the host CPU computes (the same guest under KVM).
#[test]
fn sse_results() {
    run_guest("tcg", "sse.bin", "sse", 1, "1");
}

#[test]
fn x87_results_match_the_real_cpu() {
    run_guest("tcg", "x87.bin", "x87", 1, "1");
}

#[test]
fn resets_with_no_reboot() {
    run_guest("tcg", "reset_kbc.bin", "reset_kbc", 0, "1");
    run_guest("tcg", "reset_cf9.bin", "reset_cf9", 0, "1");
}

#[test]
fn triple_fault_is_reported() {
    run_guest("tcg", "triple_fault.bin", "triple_fault", 0, "1");
    let path = guest("triple_fault.bin");
    let r = kemu(
        &[
            "-accel",
            "tcg",
            "-no-reboot",
            "-kernel",
            path.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert!(
        r.stderr.contains("triple fault") && r.stderr.contains("ud2"),
        "{}",
        r.stderr
    );
}

#[test]
fn demo_guest_runs_on_the_software_cpu() {
    let path = guest("demo.bin");
    let r = kemu(
        &[
            "-accel",
            "tcg",
            "-smp",
            "2",
            "-kernel",
            path.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(r.status, Some(0), "{}", r.stderr);
    assert_eq!(r.stdout, common::expected("demo"));
}

/// The host CPU is the oracle: the CPL 3 workload's output under KVM (real silicon) and under
/// our CPU must be identical.
#[test]
fn cpl3_matches_the_host_cpu() {
    if !kvm_or_skip("cpl3 oracle") {
        return;
    }
    let path = guest("cpl3.bin");
    let run = |accel: &str| {
        kemu(
            &[
                "-accel",
                accel,
                "-kernel",
                path.to_str().unwrap(),
                "-device",
                "isa-debug-exit,iobase=0xf4,iosize=0x04",
            ],
            Duration::from_secs(60),
        )
    };
    let (k, t) = (run("kvm"), run("tcg"));
    assert_eq!(k.status, Some(1), "{}", k.stderr);
    assert_eq!(t.stdout, k.stdout);
    assert_eq!(t.status, k.status);
}

#[test]
fn serial_to_a_file() {
    let out = std::env::temp_dir().join(format!("kemu-serial-{}.txt", std::process::id()));
    let path = guest("hello.bin");
    let serial = format!("file:{}", out.display());
    let r = kemu(
        &[
            "-accel",
            "tcg",
            "-serial",
            &serial,
            "-kernel",
            path.to_str().unwrap(),
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(r.status, Some(1), "{}", r.stderr);
    assert_eq!(r.stdout, "");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        common::expected("hello")
    );
    let _ = std::fs::remove_file(out);
}

#[test]
fn boot_stages_are_traced() {
    let log = std::env::temp_dir().join(format!("kemu-stages-{}.log", std::process::id()));
    // pio_bench writes 0 to port 0x80, the POST port, 200000 times.
    let r = kemu(
        &[
            "-accel",
            "tcg",
            "-d",
            "stages,exits",
            "-D",
            log.to_str().unwrap(),
            "-kernel",
            guest("pio_bench.bin").to_str().unwrap(),
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(r.status, Some(1), "{}", r.stderr);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("boot stage 0x00").count(), 200_000);
    assert!(text.contains("exit statistics (tcg accelerator"));
    let _ = std::fs::remove_file(log);
}

#[test]
fn pit_and_pic_interrupts_wake_hlt() {
    run_guest("tcg", "pit_irq.bin", "pit_irq", 1, "1");
}

/// SYSCALL/SYSRETQ round trips (PVM cannot run this one, so it is a tcg-only guest).
#[test]
fn syscall_and_sysret() {
    run_guest("tcg", "syscall.bin", "syscall", 1, "1");
}

#[test]
fn host_input_reaches_the_guest() {
    let path = guest("echo.bin");
    let r = common::kemu_with_input(
        &[
            "-accel",
            "tcg",
            "-nographic",
            "-kernel",
            path.to_str().unwrap(),
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
        ],
        Some(b"hello kemu\n"),
        Duration::from_secs(60),
    );
    assert_eq!(r.stdout, common::expected("echo"), "{}", r.stderr);
    assert_eq!(r.status, Some(1));
}

#[test]
fn lapic_timer_periodic_and_one_shot() {
    run_guest("tcg", "lapic_timer.bin", "lapic_timer", 1, "1");
}

#[test]
fn interrupts_reach_a_spinning_cpu_and_wait_for_sti() {
    run_guest("tcg", "irq_window.bin", "irq_window", 1, "1");
}

#[test]
fn ioapic_routes_the_pit() {
    run_guest("tcg", "ioapic.bin", "ioapic", 1, "1");
}

/// INIT/STARTUP by physical destination, then a fixed IPI and an NMI back to the boot CPU.
#[test]
fn ipi_init_startup_fixed_and_nmi() {
    run_guest("tcg", "ipi.bin", "ipi", 1, "2");
}

/// The OS-style bring-up (INIT + 2 x SIPI to all-but-self) now reaches the APs.
#[test]
fn smp_brings_up_the_application_processors() {
    run_guest("tcg", "smp.bin", "smp", 1, "2");
}

/// With every vCPU halted for ~0.5 s of APIC one-shot timers, the timer still fires and the
/// host threads sleep: the run takes at least the guest's time and little CPU.
#[test]
fn halted_cpus_idle_and_wake_on_the_apic_timer() {
    let path = guest("hlt_wake.bin");
    let (run, cpu) = common::kemu_cpu_time(
        &[
            "-accel",
            "tcg",
            "-smp",
            "2",
            "-kernel",
            path.to_str().unwrap(),
            "-nographic",
            "-no-reboot",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
        ],
        Duration::from_secs(60),
    );
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

/// fw_cfg, isa-debugcon to a `-chardev file`, pc-testdev and isa-debug-exit, as QEMU's test
/// kernels use them; under tcg directly and through the firmware, under KVM where it exists.
#[test]
fn fw_cfg_debugcon_and_pc_testdev() {
    for (accel, bios) in [
        ("tcg", "none"),
        ("tcg", "kemu"),
        ("kvm", "none"),
        ("kvm", "kemu"),
    ] {
        if accel == "kvm" && !kvm_or_skip("fwcfg_testdev") {
            continue;
        }
        let dbg = std::env::temp_dir().join(format!(
            "kemu-debugcon-{}-{accel}-{bios}.txt",
            std::process::id()
        ));
        let chardev = format!("file,id=dbg,path={}", dbg.display());
        let r = kemu(
            &[
                "-accel",
                accel,
                "-bios",
                bios,
                "-m",
                "128",
                "-smp",
                "2",
                "-nodefaults",
                "-serial",
                "stdio",
                "-monitor",
                "none",
                "-global",
                "kvm-pit.lost_tick_policy=discard",
                "-chardev",
                &chardev,
                "-device",
                "isa-debugcon,iobase=0x402,chardev=dbg",
                "-device",
                "pc-testdev",
                "-device",
                "pci-testdev",
                "-device",
                "isa-debug-exit,iobase=0xf4,iosize=0x04",
                "-kernel",
                guest("fwcfg_testdev.bin").to_str().unwrap(),
            ],
            Duration::from_secs(60),
        );
        let out = match r.stdout.find("fwcfg_testdev:") {
            Some(i) if bios == "kemu" => {
                assert!(r.stdout.starts_with("kemu firmware: real mode"));
                &r.stdout[i..]
            }
            _ => r.stdout.as_str(),
        };
        assert_eq!(
            out,
            common::expected("fwcfg_testdev"),
            "{accel}/{bios}: {}",
            r.stderr
        );
        assert_eq!(r.status, Some(1), "{accel}/{bios}: {}", r.stderr);
        assert_eq!(
            std::fs::read_to_string(&dbg).unwrap_or_default(),
            "fwcfg_testdev: hello on isa-debugcon\n",
            "{accel}/{bios}"
        );
        let _ = std::fs::remove_file(dbg);
    }
}

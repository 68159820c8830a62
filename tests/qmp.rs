//! QMP end to end with a real client: `tests/qmp/client.py` (the `qemu.qmp` package from PyPI,
//! which `scripts/test.sh` installs) connects to `kemu -qmp ...` running the `powerbtn` guest,
//! then: query-status, stop (STOP, paused), cont (RESUME, running), human-monitor-command,
//! query-cpus-fast, an unknown command's error, system_powerdown (POWERDOWN; the guest sees the
//! ACPI power button and powers off: SHUTDOWN) — and kemu exits 0. Issue 7, done-when 2.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn qemu_qmp_available(test: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import qemu.qmp"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        // CI (scripts/test.sh) installs the client and sets KEMU_REQUIRE_QMP: there a missing
        // client is a failure, not a skip.
        assert!(
            std::env::var_os("KEMU_REQUIRE_QMP").is_none(),
            "{test}: python3 -c 'import qemu.qmp' fails (pip install qemu.qmp)"
        );
        eprintln!("{test}: SKIPPED (python3 -c 'import qemu.qmp' fails; pip install qemu.qmp)");
    }
    ok
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("kemu-qmp-{}-{name}", std::process::id()))
}

/// Run kemu (`accel`, QMP on `qmp`) and the client (`address`) side by side; both must end 0.
fn run(accel: &str, qmp: &str, address: &str, serial: &Path) {
    let guest = common::guest("powerbtn.bin");
    let mut kemu = Command::new(env!("CARGO_BIN_EXE_kemu"))
        .args([
            "-accel",
            accel,
            "-kernel",
            guest.to_str().unwrap(),
            "-serial",
            &format!("file:{}", serial.display()),
            "-display",
            "none",
            "-qmp",
            qmp,
        ])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn kemu");
    let client = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/qmp/client.py"))
        .args([address, serial.to_str().unwrap()])
        .output()
        .expect("run the QMP client");
    let out = String::from_utf8_lossy(&client.stdout);
    let err = String::from_utf8_lossy(&client.stderr);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = kemu.try_wait().expect("wait") {
            break st.code();
        }
        if Instant::now() > deadline {
            let _ = kemu.kill();
            let _ = kemu.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        client.status.success() && out.contains("qmp client: all checks passed"),
        "client failed:\n{out}\n{err}"
    );
    assert_eq!(status, Some(0), "kemu's exit status; client said:\n{out}");
    let serial_out = std::fs::read_to_string(serial).unwrap_or_default();
    assert_eq!(serial_out, common::expected("powerbtn"));
    let _ = std::fs::remove_file(serial);
}

#[test]
fn qmp_client_over_unix_socket_tcg() {
    if !qemu_qmp_available("qmp_client_over_unix_socket_tcg") {
        return;
    }
    let sock = temp("tcg.sock");
    run(
        "tcg",
        &format!("unix:{},server=on,wait=off", sock.display()),
        sock.to_str().unwrap(),
        &temp("tcg-serial.log"),
    );
    assert!(!sock.exists(), "kemu removes its socket at exit");
}

#[test]
fn qmp_client_over_tcp_kvm() {
    if !common::kvm_or_skip("qmp_client_over_tcp_kvm")
        || !qemu_qmp_available("qmp_client_over_tcp_kvm")
    {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    run(
        "kvm",
        &format!("tcp:127.0.0.1:{port},server,wait=off"),
        &format!("127.0.0.1:{port}"),
        &temp("kvm-serial.log"),
    );
}

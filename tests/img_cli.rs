//! `kemu img` from the command line, with Debian's `qemu-img` as the peer that must accept what
//! we write.

use std::process::Command;

fn kemu_img(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kemu"))
        .arg("img")
        .args(args)
        .output()
        .expect("run kemu img");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn create_info_check_and_qemu_img_agrees() {
    let dir = std::env::temp_dir().join(format!("kemu-img-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("disk.qcow2");
    let p = img.to_str().unwrap();
    let (st, _, err) = kemu_img(&["create", "-f", "qcow2", p, "64M"]);
    assert_eq!(st, 0, "{err}");
    let (st, out, err) = kemu_img(&["info", p]);
    assert_eq!(st, 0, "{err}");
    assert!(
        out.contains("virtual size: 64 MiB (67108864 bytes)"),
        "{out}"
    );
    let (st, out, _) = kemu_img(&["check", p]);
    assert_eq!(st, 0);
    assert!(out.contains("No errors were found on the image."), "{out}");
    match Command::new("qemu-img").args(["check", p]).output() {
        Ok(o) => assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout)),
        Err(_) => eprintln!("qemu-img check: SKIPPED (no qemu-img)"),
    }
    let (st, _, err) = kemu_img(&["frobnicate"]);
    assert_ne!(st, 0);
    assert!(err.starts_with("kemu img: "), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

//! Block layer tests: round trips through our qcow2 writer, peers (`qemu-img`, `qemu-io`) reading
//! our images and making images we read, corrupt images refused without a single write, locking,
//! and `kemu img` itself. Peer tests print `SKIPPED (no qemu-img)` when the tools are missing.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use super::qcow2::Qcow2;
use super::*;

mod cli;
mod corrupt;
mod crash;
mod own;
mod peers;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("kemu-block-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        // Straight to fd 2, past the test harness's capture of eprintln!, so it is seen.
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "SKIPPED (no {tool})");
    }
    ok
}

fn run(tool: &str, args: &[&str]) -> (i32, String) {
    let o = Command::new(tool).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code().unwrap_or(-1), text)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn hash_file(p: &Path) -> u64 {
    let mut h = DefaultHasher::new();
    std::fs::read(p).unwrap().hash(&mut h);
    h.finish()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
        .collect()
}

fn read_all(d: &mut dyn BlockDevice) -> Vec<u8> {
    let mut v = vec![0u8; d.size() as usize];
    d.read_at(0, &mut v).unwrap();
    v
}

/// Writes a set of patterns (sub-cluster, straddling, multi-cluster) to `d` and to `model`.
fn scribble(d: &mut dyn BlockDevice, model: &mut [u8], seed: u8) {
    let size = model.len() as u64;
    let writes: [(u64, usize); 6] = [
        (0, 512),
        (65536 - 100, 200),
        (1 << 20 | 3, 70000),
        (3 << 20, 65536),
        (size - 4096, 4096),
        (2 << 20, 1),
    ];
    for (i, (off, len)) in writes.iter().enumerate() {
        let p = pattern(*len, seed.wrapping_add(i as u8));
        d.write_at(*off, &p).unwrap();
        model[*off as usize..*off as usize + len].copy_from_slice(&p);
    }
}

fn qemu_check_clean(p: &Path) {
    let (code, out) = run("qemu-img", &["check", s(p)]);
    assert_eq!(code, 0, "qemu-img check {}:\n{out}", p.display());
    // Our check agrees on the statistics qemu prints.
    let r = qcow2::check::check(p).unwrap();
    assert_eq!((r.corruptions, r.leaks), (0, 0), "{:?}", r.messages);
    let ours = format!("{}/{} = ", r.allocated, r.total);
    assert_eq!(
        out.contains(&ours),
        r.allocated > 0,
        "qemu: {out}\nours: {ours}"
    );
    let compressed = if r.allocated == 0 {
        0.0
    } else {
        r.compressed as f64 * 100.0 / r.allocated as f64
    };
    let c = format!("{compressed:.2}% compressed");
    assert_eq!(
        out.contains(&c),
        r.allocated > 0,
        "qemu: {out}\nours: {r:?}"
    );
    assert!(
        out.contains(&format!("Image end offset: {}", r.image_end)),
        "qemu: {out}\nours: {r:?}"
    );
}

fn qemu_to_raw(dir: &TempDir, p: &Path) -> Vec<u8> {
    let out = dir.path("qemu-out.raw");
    let (code, text) = run("qemu-img", &["convert", "-O", "raw", s(p), s(&out)]);
    assert_eq!(code, 0, "{text}");
    std::fs::read(out).unwrap()
}

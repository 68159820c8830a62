//! Killed mid-write: every prefix of our metadata writes leaves a consistent image.

use super::*;

/// Opens writable, retrying while the lock is busy: a child process that other tests spawn
/// (qemu-img) briefly shares our file descriptors, and so our flock, between fork and exec.
fn open_writable_retry(p: &Path) -> Qcow2 {
    for _ in 0..100 {
        match Qcow2::open(p, false) {
            Err(BlockError::Locked { .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            r => return r.unwrap(),
        }
    }
    Qcow2::open(p, false).unwrap()
}

/// Runs `write` on copies of `template` with the process "dying" after n file writes, for
/// every n (stepping by `step`) until the write completes; each result must check clean apart
/// from leaks and read back either the old or the new data.
fn crash_points(template: &Path, dir: &TempDir, off: u64, data: &[u8], step: u64) {
    let old = {
        let mut d = Qcow2::open(template, true).unwrap();
        let mut b = vec![0u8; data.len()];
        d.read_at(off, &mut b).unwrap();
        b
    };
    let p = dir.path("crash.qcow2");
    let mut n = 0;
    let t0 = std::time::Instant::now();
    loop {
        std::fs::copy(template, &p).unwrap();
        let done = {
            let mut d = open_writable_retry(&p);
            d.set_write_budget(n);
            d.write_at(off, data).is_ok()
        };
        let r = qcow2::check::check(&p).unwrap();
        assert_eq!(r.corruptions, 0, "after {n} writes: {:?}", r.messages);
        let mut d = Qcow2::open(&p, true).unwrap();
        let mut b = vec![0u8; data.len()];
        d.read_at(off, &mut b).unwrap();
        // Cluster by cluster the data is either all old or all new.
        let cs = d.header().cluster_size() as usize;
        let first = (cs - (off as usize % cs)) % cs;
        let mut start = 0;
        let mut bounds = vec![];
        let mut end = if first == 0 { cs } else { first };
        while start < data.len() {
            end = end.min(data.len());
            bounds.push((start, end));
            start = end;
            end += cs;
        }
        for (a, z) in bounds {
            assert!(
                b[a..z] == old[a..z] || b[a..z] == data[a..z],
                "after {n} writes: bytes {a}..{z} are mixed"
            );
        }
        if done {
            assert!(b == data);
            eprintln!(
                "crash points {}: {n} in {:?}",
                template.display(),
                t0.elapsed()
            );
            break;
        }
        n += step;
    }
}

#[test]
fn killed_mid_write_stays_consistent() {
    let dir = TempDir::new("crash");
    // A fresh image: new L2 table + data clusters.
    let t = dir.path("fresh.qcow2");
    create_qcow2(&t, 4 << 20, 16, None).unwrap();
    crash_points(&t, &dir, 60000, &pattern(140_000, 1), 1);
    // Copy-on-write from a backing file.
    std::fs::write(dir.path("base.raw"), pattern(4 << 20, 9)).unwrap();
    let o = dir.path("overlay.qcow2");
    create_qcow2(&o, 4 << 20, 16, Some(("base.raw", Format::Raw))).unwrap();
    crash_points(&o, &dir, 70000, &pattern(5000, 4), 1);
    // Copy-on-write out of compressed clusters made by qemu-img.
    if have("qemu-img") {
        let c = dir.path("comp.qcow2");
        let (code, out) = run(
            "qemu-img",
            &[
                "convert",
                "-c",
                "-O",
                "qcow2",
                s(&dir.path("base.raw")),
                s(&c),
            ],
        );
        assert_eq!(code, 0, "{out}");
        crash_points(&c, &dir, 70000, &pattern(100_000, 5), 1);
    }
    // The refcount table must move (512-byte clusters, ~8 MiB of file).
    let g = dir.path("grow.qcow2");
    create_qcow2(&g, 16 << 20, 9, None).unwrap();
    {
        let mut d = Qcow2::open(&g, false).unwrap();
        let chunk = pattern(64 << 10, 2);
        let mut off = 0;
        // Fill until the file is just short of the 8 MiB one refcount table cluster covers.
        while std::fs::metadata(&g).unwrap().len() < (8 << 20) - (40 << 10) {
            d.write_at(off, &chunk).unwrap();
            off += 64 << 10;
        }
        assert_eq!(d.header().refcount_table_clusters, 1);
    }
    crash_points(&g, &dir, 12 << 20, &pattern(100_000, 3), 5);
    let mut d = Qcow2::open(&dir.path("crash.qcow2"), true).unwrap();
    assert!(d.header().refcount_table_clusters > 1);
    let mut b = [0u8; 1];
    d.read_at(0, &mut b).unwrap();
}

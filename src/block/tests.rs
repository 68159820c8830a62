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
        eprintln!("SKIPPED (no {tool})");
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

#[test]
fn qcow2_round_trip_and_reopen() {
    let dir = TempDir::new("rt");
    let p = dir.path("a.qcow2");
    let size = 8 << 20;
    create_qcow2(&p, size, 16, None).unwrap();
    let mut model = vec![0u8; size as usize];
    {
        let mut d = open_image(&p, None, false).unwrap();
        assert_eq!(d.format(), Format::Qcow2);
        assert_eq!(d.size(), size);
        scribble(d.as_mut(), &mut model, 7);
        // Overwrite in place (allocated, COPIED) with a second pattern.
        scribble(d.as_mut(), &mut model, 99);
        assert!(read_all(d.as_mut()) == model);
        d.flush().unwrap();
        let mut b = [0u8; 16];
        assert!(matches!(
            d.read_at(size - 8, &mut b),
            Err(BlockError::OutOfRange { .. })
        ));
        assert!(d.write_at(u64::MAX - 4, &b).is_err());
    }
    let mut d = open_image(&p, None, true).unwrap();
    assert!(read_all(d.as_mut()) == model);
    assert!(d.write_at(0, &[1]).is_err());
    drop(d);
    let r = qcow2::check::check(&p).unwrap();
    assert_eq!((r.corruptions, r.leaks), (0, 0), "{:?}", r.messages);
    if have("qemu-img") {
        qemu_check_clean(&p);
        assert!(qemu_to_raw(&dir, &p) == model);
    }
}

#[test]
fn small_clusters_grow_refcount_table() {
    // 512-byte clusters: one refcount table cluster covers 8 MiB of file, so 12 MiB of data
    // forces new refcount blocks and a move of the refcount table.
    let dir = TempDir::new("grow");
    let p = dir.path("small.qcow2");
    let size = 16 << 20;
    create_qcow2(&p, size, 9, None).unwrap();
    let mut model = vec![0u8; size as usize];
    {
        let mut d = Qcow2::open(&p, false).unwrap();
        let chunk = pattern(1 << 20, 3);
        for i in 0..12u64 {
            let off = i * (1 << 20) + 77;
            d.write_at(off, &chunk).unwrap();
            model[off as usize..off as usize + chunk.len()].copy_from_slice(&chunk);
        }
        assert!(d.header().refcount_table_clusters > 1);
        assert!(read_all(&mut d) == model);
    }
    let mut d = Qcow2::open(&p, true).unwrap();
    assert!(read_all(&mut d) == model);
    drop(d);
    let r = qcow2::check::check(&p).unwrap();
    assert_eq!((r.corruptions, r.leaks), (0, 0), "{:?}", r.messages);
    if have("qemu-img") {
        qemu_check_clean(&p);
        assert!(qemu_to_raw(&dir, &p) == model);
    }
}

#[test]
fn resize_grows_l1() {
    let dir = TempDir::new("resize");
    let p = dir.path("r.qcow2");
    create_qcow2(&p, 1 << 20, 9, None).unwrap();
    let mut d = Qcow2::open(&p, false).unwrap();
    d.write_at(1000, &[5; 3000]).unwrap();
    d.resize(64 << 20).unwrap();
    assert!(d.resize(1 << 20).is_err());
    d.write_at((64 << 20) - 10, &[6; 10]).unwrap();
    drop(d);
    let mut d = Qcow2::open(&p, true).unwrap();
    assert_eq!(d.size(), 64 << 20);
    let mut b = vec![0u8; 3000];
    d.read_at(1000, &mut b).unwrap();
    assert!(b.iter().all(|x| *x == 5));
    drop(d);
    let r = qcow2::check::check(&p).unwrap();
    assert_eq!((r.corruptions, r.leaks), (0, 0), "{:?}", r.messages);
    if have("qemu-img") {
        qemu_check_clean(&p);
    }
}

#[test]
fn raw_bounds_and_zero_fill() {
    let dir = TempDir::new("raw");
    let p = dir.path("d.raw");
    create_raw(&p, 1 << 20).unwrap();
    let mut d = open_image(&p, None, false).unwrap();
    assert_eq!(d.format(), Format::Raw);
    d.write_at(4090, &[9; 10]).unwrap();
    let mut b = [1u8; 12];
    d.read_at(4089, &mut b).unwrap();
    assert_eq!(b, [0, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 0]);
    assert!(d.read_at((1 << 20) - 4, &mut b).is_err());
    assert!(d.write_at(u64::MAX, &b).is_err());
}

#[test]
fn second_writer_is_locked_out() {
    let dir = TempDir::new("lock");
    let p = dir.path("l.qcow2");
    create_qcow2(&p, 1 << 20, 16, None).unwrap();
    let _a = open_image(&p, None, false).unwrap();
    let e = open_image(&p, None, false).unwrap_err();
    assert!(matches!(e, BlockError::Locked { .. }), "{e}");
    assert!(e.to_string().contains("in use by another process"), "{e}");
    assert!(open_image(&p, None, true).is_err());
    // Re-creating an image in use must not truncate it.
    let before = hash_file(&p);
    assert!(matches!(
        create_raw(&p, 4096),
        Err(BlockError::Locked { .. })
    ));
    assert_eq!(hash_file(&p), before);
    drop(_a);
    let _r1 = open_image(&p, None, true).unwrap();
    let _r2 = open_image(&p, None, true).unwrap();
    assert!(open_image(&p, None, false).is_err());
}

// ---- images made by qemu, read (and written) by us ----

fn qemu_io(p: &Path, cmds: &[&str]) {
    let mut args = Vec::new();
    for c in cmds {
        args.push("-c");
        args.push(c);
    }
    args.push(s(p));
    let (code, out) = run("qemu-io", &args);
    assert_eq!(code, 0, "qemu-io: {out}");
}

#[test]
fn reads_qemu_images_v2_and_v3() {
    if !have("qemu-img") || !have("qemu-io") {
        return;
    }
    let dir = TempDir::new("qemu");
    for compat in ["0.10", "1.1"] {
        let p = dir.path(&format!("q{compat}.qcow2"));
        let (code, out) = run(
            "qemu-img",
            &[
                "create",
                "-f",
                "qcow2",
                "-o",
                &format!("compat={compat}"),
                s(&p),
                "4M",
            ],
        );
        assert_eq!(code, 0, "{out}");
        qemu_io(
            &p,
            &[
                "write -P 0xab 0 64k",
                "write -P 0xcd 100k 3k",
                "write -z 70k 2k",
            ],
        );
        let mut d = open_image(&p, None, false).unwrap();
        let all = read_all(d.as_mut());
        assert!(all[..65536].iter().all(|b| *b == 0xab), "compat {compat}");
        assert!(all[100 * 1024..103 * 1024].iter().all(|b| *b == 0xcd));
        assert!(all[65536..100 * 1024].iter().all(|b| *b == 0));
        // Our writes on top of qemu's image stay consistent for qemu.
        let mut model = all.clone();
        scribble(d.as_mut(), &mut model, 40);
        drop(d);
        qemu_check_clean(&p);
        assert!(qemu_to_raw(&dir, &p) == model, "compat {compat}");
    }
}

#[test]
fn reads_through_backing_file_and_copies_on_write() {
    if !have("qemu-img") || !have("qemu-io") {
        return;
    }
    let dir = TempDir::new("backing");
    let base = dir.path("base.raw");
    let size = 4 << 20;
    let base_data = pattern(size, 5);
    std::fs::write(&base, &base_data).unwrap();
    let ov = dir.path("ov.qcow2");
    let (code, out) = run(
        "qemu-img",
        &[
            "create",
            "-f",
            "qcow2",
            "-b",
            "base.raw",
            "-F",
            "raw",
            s(&ov),
        ],
    );
    assert_eq!(code, 0, "{out}");
    qemu_io(&ov, &["write -P 0x11 4k 1k"]);
    let mut model = base_data.clone();
    model[4096..5120].fill(0x11);
    let mut d = open_image(&ov, None, false).unwrap();
    assert!(read_all(d.as_mut()) == model);
    // Partial-cluster writes into unallocated clusters copy the rest from the backing file.
    scribble(d.as_mut(), &mut model, 60);
    assert!(read_all(d.as_mut()) == model);
    drop(d);
    assert_eq!(hash_file(&base), {
        let mut h = DefaultHasher::new();
        base_data.hash(&mut h);
        h.finish()
    });
    qemu_check_clean(&ov);
    assert!(qemu_to_raw(&dir, &ov) == model);

    // A qcow2 overlay of our own over a qcow2 base.
    let ov2 = dir.path("ov2.qcow2");
    create_qcow2(&ov2, size as u64, 16, Some(("ov.qcow2", Format::Qcow2))).unwrap();
    let mut d = open_image(&ov2, None, false).unwrap();
    assert!(read_all(d.as_mut()) == model);
    d.write_at(12345, &[0x77; 100]).unwrap();
    model[12345..12445].fill(0x77);
    drop(d);
    qemu_check_clean(&ov2);
    assert!(qemu_to_raw(&dir, &ov2) == model);
}

#[test]
fn reads_compressed_images() {
    if !have("qemu-img") {
        return;
    }
    let dir = TempDir::new("comp");
    let raw = dir.path("src.raw");
    let size = 4 << 20;
    let mut data = vec![0u8; size];
    for (i, b) in data.iter_mut().enumerate().take(size / 2) {
        *b = ((i / 97) % 13) as u8;
    }
    data[size - 70000..].copy_from_slice(&pattern(70000, 9));
    std::fs::write(&raw, &data).unwrap();
    let c = dir.path("c.qcow2");
    let (code, out) = run(
        "qemu-img",
        &["convert", "-c", "-O", "qcow2", s(&raw), s(&c)],
    );
    assert_eq!(code, 0, "{out}");
    let mut d = open_image(&c, None, false).unwrap();
    assert!(read_all(d.as_mut()) == data);
    // Writing into a compressed cluster copies it out and drops its references.
    let mut model = data.clone();
    scribble(d.as_mut(), &mut model, 80);
    assert!(read_all(d.as_mut()) == model);
    drop(d);
    qemu_check_clean(&c);
    assert!(qemu_to_raw(&dir, &c) == model);
}

#[test]
fn writes_leave_snapshots_alone() {
    if !have("qemu-img") {
        return;
    }
    let dir = TempDir::new("snap");
    let p = dir.path("s.qcow2");
    create_qcow2(&p, 4 << 20, 16, None).unwrap();
    let mut model = vec![0u8; 4 << 20];
    {
        let mut d = open_image(&p, None, false).unwrap();
        scribble(d.as_mut(), &mut model, 1);
    }
    let (code, out) = run("qemu-img", &["snapshot", "-c", "s1", s(&p)]);
    assert_eq!(code, 0, "{out}");
    let before = model.clone();
    {
        let mut d = open_image(&p, None, false).unwrap();
        scribble(d.as_mut(), &mut model, 2);
        assert!(read_all(d.as_mut()) == model);
    }
    let r = qcow2::check::check(&p).unwrap();
    assert_eq!((r.corruptions, r.leaks), (0, 0), "{:?}", r.messages);
    qemu_check_clean(&p);
    assert!(qemu_to_raw(&dir, &p) == model);
    let snap = dir.path("snap.raw");
    let (code, out) = run(
        "qemu-img",
        &[
            "convert",
            "-l",
            "snapshot.name=s1",
            "-O",
            "raw",
            s(&p),
            s(&snap),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(std::fs::read(&snap).unwrap() == before);
}

// ---- corrupt images: a clear error and not one byte written ----

fn put(p: &Path, off: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
    f.write_all_at(bytes, off).unwrap();
}

fn corrupt_case(tag: &str, damage: impl Fn(&Path, &Qcow2), expect: &str) {
    eprintln!("corrupt case {tag}");
    let dir = TempDir::new("corrupt");
    let p = dir.path(&format!("{tag}.qcow2"));
    create_qcow2(&p, 4 << 20, 16, None).unwrap();
    let (l1_off, rt_off) = {
        let mut d = Qcow2::open(&p, false).unwrap();
        d.write_at(0, &[1; 4096]).unwrap();
        d.write_at(3 << 20, &[2; 4096]).unwrap();
        let h = d.header();
        (h.l1_table_offset, h.refcount_table_offset)
    };
    {
        let d = Qcow2::open(&p, true).unwrap();
        damage(&p, &d);
    }
    let _ = (l1_off, rt_off);
    let before = hash_file(&p);
    let msg = match Qcow2::open(&p, false) {
        Err(e) => e.to_string(),
        Ok(mut d) => {
            let mut b = [0u8; 4096];
            let r = d.read_at(0, &mut b).err().map(|e| e.to_string());
            let w = d.write_at(0, &[3; 100]).unwrap_err().to_string();
            let w2 = d.write_at(1 << 20, &[3; 100]).unwrap_err().to_string();
            assert!(w2.contains("corrupt"), "{tag}: {w2}");
            r.unwrap_or(w)
        }
    };
    assert!(msg.contains(expect), "{tag}: {msg}");
    assert!(msg.contains(&format!("{tag}.qcow2")), "{tag}: {msg}");
    assert_eq!(hash_file(&p), before, "{tag}: the image was modified");
}

#[test]
fn corrupt_images_are_refused_untouched() {
    corrupt_case(
        "truncated",
        |p, _| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(p)
                .unwrap()
                .set_len(50)
                .unwrap()
        },
        "too short",
    );
    corrupt_case(
        "l1past",
        |p, _| put(p, 40, &0x1000_0000u64.to_be_bytes()),
        "L1 table at 0x10000000 is past the end",
    );
    corrupt_case(
        "l1unaligned",
        |p, d| put(p, 40, &(d.header().l1_table_offset + 8).to_be_bytes()),
        "not aligned",
    );
    corrupt_case(
        "l2past",
        |p, d| {
            put(
                p,
                d.header().l1_table_offset,
                &(0x8000_0000_0500_0000u64).to_be_bytes(),
            )
        },
        "L2 table at 0x5000000 for L1 index 0 is past the end of the file",
    );
    corrupt_case(
        "l2unaligned",
        |p, d| {
            let mut b = [0u8; 8];
            std::fs::read(p).unwrap()[d.header().l1_table_offset as usize..][..8]
                .iter()
                .enumerate()
                .for_each(|(i, x)| b[i] = *x);
            let e = u64::from_be_bytes(b) + 0x200;
            put(p, d.header().l1_table_offset, &e.to_be_bytes())
        },
        "not aligned to a cluster",
    );
    corrupt_case(
        "refcount_order",
        |p, _| put(p, 96, &7u32.to_be_bytes()),
        "refcount_order 7",
    );
    corrupt_case(
        "incompat",
        |p, _| put(p, 72, &(1u64 << 40).to_be_bytes()),
        "unknown incompatible feature bit 40",
    );
    corrupt_case(
        "l1size",
        |p, _| put(p, 36, &0x0100_0000u32.to_be_bytes()),
        "L1 table of",
    );
    corrupt_case(
        "rtpast",
        |p, _| put(p, 48, &0x7000_0000u64.to_be_bytes()),
        "refcount table at 0x70000000",
    );
    // A data cluster pointer past EOF is found on first use, before any write.
    corrupt_case(
        "datapast",
        |p, d| {
            let data = std::fs::read(p).unwrap();
            let l1e = u64::from_be_bytes(
                data[d.header().l1_table_offset as usize..][..8]
                    .try_into()
                    .unwrap(),
            );
            let l2 = l1e & table_mask();
            put(p, l2, &(0x8000_0000_0900_0000u64).to_be_bytes())
        },
        "data cluster at 0x9000000 for guest offset 0x0",
    );
    // A data cluster aliasing the header (COPIED, so writable in place) must not be written.
    corrupt_case(
        "alias",
        |p, d| {
            let data = std::fs::read(p).unwrap();
            let l1e = u64::from_be_bytes(
                data[d.header().l1_table_offset as usize..][..8]
                    .try_into()
                    .unwrap(),
            );
            put(
                p,
                l1e & table_mask(),
                &(0x8000_0000_0000_0000u64 | 0x10000).to_be_bytes(),
            )
        },
        "overlaps the refcount table",
    );
    corrupt_case(
        "l2alias",
        |p, d| {
            let e = 0x8000_0000_0001_0000u64;
            put(p, d.header().l1_table_offset, &e.to_be_bytes())
        },
        "L2 table at 0x10000 for L1 index 0 overlaps the refcount table",
    );
}

fn table_mask() -> u64 {
    qcow2::table::OFFSET_MASK
}

#[test]
fn check_counts_leaks_and_errors() {
    let dir = TempDir::new("check");
    let p = dir.path("c.qcow2");
    create_qcow2(&p, 4 << 20, 16, None).unwrap();
    let l2 = {
        let mut d = Qcow2::open(&p, false).unwrap();
        d.write_at(0, &[1; 4096]).unwrap();
        d.write_at(65536, &[1; 4096]).unwrap();
        let data = std::fs::read(&p).unwrap();
        let l1e = u64::from_be_bytes(
            data[d.header().l1_table_offset as usize..][..8]
                .try_into()
                .unwrap(),
        );
        l1e & table_mask()
    };
    let leak = dir.path("leak.qcow2");
    std::fs::copy(&p, &leak).unwrap();
    put(&leak, l2 + 8, &0u64.to_be_bytes());
    let r = qcow2::check::check(&leak).unwrap();
    assert_eq!((r.corruptions, r.leaks), (0, 1), "{:?}", r.messages);
    let args = |a: &[&str]| a.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(img::img_main(&args(&["check", s(&leak)])), 3);
    // Point the second entry at the first data cluster too: a reference without a refcount.
    let bad = dir.path("bad.qcow2");
    std::fs::copy(&p, &bad).unwrap();
    let data = std::fs::read(&bad).unwrap();
    let e0: [u8; 8] = data[l2 as usize..][..8].try_into().unwrap();
    put(&bad, l2 + 8, &e0);
    let r = qcow2::check::check(&bad).unwrap();
    assert!(r.corruptions > 0, "{:?}", r.messages);
    assert_eq!(img::img_main(&args(&["check", s(&bad)])), 2);
    if have("qemu-img") {
        assert_eq!(run("qemu-img", &["check", s(&leak)]).0, 3);
        assert_eq!(run("qemu-img", &["check", s(&bad)]).0, 2);
    }
}

#[test]
fn img_commands() {
    let dir = TempDir::new("img");
    let args = |a: &[&str]| a.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let q = dir.path("d.qcow2");
    let r = dir.path("d.raw");
    assert_eq!(
        img::img_main(&args(&["create", "-f", "qcow2", s(&q), "64M"])),
        0
    );
    assert_eq!(img::img_main(&args(&["info", s(&q)])), 0);
    assert_eq!(img::img_main(&args(&["check", s(&q)])), 0);
    {
        let mut d = open_image(&q, None, false).unwrap();
        d.write_at(5 << 20, &pattern(100_000, 4)).unwrap();
    }
    assert_eq!(
        img::img_main(&args(&["convert", "-O", "raw", s(&q), s(&r)])),
        0
    );
    let raw = std::fs::read(&r).unwrap();
    assert_eq!(raw.len(), 64 << 20);
    assert!(raw[5 << 20..(5 << 20) + 100_000] == pattern(100_000, 4)[..]);
    let q2 = dir.path("back.qcow2");
    assert_eq!(
        img::img_main(&args(&[
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            s(&r),
            s(&q2)
        ])),
        0
    );
    let mut d = open_image(&q2, None, true).unwrap();
    assert!(read_all(d.as_mut()) == raw);
    drop(d);
    // Sparse: two data clusters (100 000 bytes at 5 MiB straddle 3 clusters) plus metadata.
    assert!(std::fs::metadata(&q2).unwrap().len() < 1 << 20);
    let ov = dir.path("ov.qcow2");
    assert_eq!(
        img::img_main(&args(&[
            "create",
            "-f",
            "qcow2",
            "-b",
            "d.raw",
            "-F",
            "raw",
            s(&ov)
        ])),
        0
    );
    assert_eq!(open_image(&ov, None, true).unwrap().size(), 64 << 20);
    assert_eq!(img::img_main(&args(&["info", s(&ov)])), 0);
    assert_eq!(img::img_main(&args(&["resize", s(&q), "128M"])), 0);
    assert_eq!(open_image(&q, None, true).unwrap().size(), 128 << 20);
    assert_ne!(img::img_main(&args(&["resize", s(&q), "1M"])), 0);
    assert_eq!(img::img_main(&args(&["resize", s(&r), "+1M"])), 0);
    assert_eq!(std::fs::metadata(&r).unwrap().len(), 65 << 20);
    assert_ne!(img::img_main(&args(&["info", s(&dir.path("missing"))])), 0);
    assert_ne!(
        img::img_main(&args(&["create", "-f", "vmdk", s(&q), "1M"])),
        0
    );
    assert_ne!(img::img_main(&args(&["frobnicate"])), 0);
    let small = dir.path("small.qcow2");
    let cmd = [
        "create",
        "-f",
        "qcow2",
        "-o",
        "cluster_size=4k",
        s(&small),
        "1G",
    ];
    assert_eq!(img::img_main(&args(&cmd)), 0);
    assert_eq!(
        qcow2::Qcow2::open(&small, true)
            .unwrap()
            .header()
            .cluster_bits,
        12
    );
    let cmd = [
        "create",
        "-f",
        "qcow2",
        "-o",
        "cluster_size=3000",
        s(&small),
        "1G",
    ];
    assert_ne!(img::img_main(&args(&cmd)), 0);
    assert_eq!(img::parse_size("64M"), Ok(64 << 20));
    assert_eq!(img::parse_size("1.5G"), Ok(3 << 29));
    assert!(img::parse_size("12Q").is_err());
    assert_eq!(img::human_size(64 << 20), "64 MiB");
    assert_eq!(img::human_size(196 << 10), "196 KiB");
    assert_eq!(img::human_size(3 << 29), "1.5 GiB");
    assert_eq!(img::human_size(500), "500 B");
    if have("qemu-img") {
        qemu_check_clean(&q);
        qemu_check_clean(&q2);
        qemu_check_clean(&ov);
    }
}

// ---- killed mid-write: every prefix of our metadata writes leaves a consistent image ----

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

#[test]
fn writes_images_with_other_refcount_widths() {
    if !have("qemu-img") {
        return;
    }
    let dir = TempDir::new("rcbits");
    for (bits, cs) in [
        ("1", "512"),
        ("2", "4096"),
        ("8", "65536"),
        ("32", "65536"),
        ("64", "512"),
    ] {
        let p = dir.path(&format!("r{bits}.qcow2"));
        let opts = format!("refcount_bits={bits},cluster_size={cs}");
        let (code, out) = run(
            "qemu-img",
            &["create", "-f", "qcow2", "-o", &opts, s(&p), "4M"],
        );
        assert_eq!(code, 0, "{out}");
        let mut model = vec![0u8; 4 << 20];
        {
            let mut d = open_image(&p, None, false).unwrap();
            scribble(d.as_mut(), &mut model, 20);
            assert!(read_all(d.as_mut()) == model, "refcount_bits {bits}");
        }
        qemu_check_clean(&p);
        assert!(qemu_to_raw(&dir, &p) == model, "refcount_bits {bits}");
    }
}

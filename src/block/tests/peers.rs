//! Images made by qemu-img/qemu-io read and written by us, and ours checked by qemu-img.

use super::*;

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
                "write -P 0xee 256k 64k",
                "write -z 256k 64k",
            ],
        );
        let mut d = open_image(&p, None, false).unwrap();
        let all = read_all(d.as_mut());
        assert!(all[..65536].iter().all(|b| *b == 0xab), "compat {compat}");
        assert!(all[100 * 1024..103 * 1024].iter().all(|b| *b == 0xcd));
        assert!(all[65536..100 * 1024].iter().all(|b| *b == 0));
        assert!(all[256 * 1024..320 * 1024].iter().all(|b| *b == 0));
        // Our writes on top of qemu's image stay consistent for qemu, including a partial write
        // into the zeroed (v3: zero flag, cluster kept allocated) cluster.
        let mut model = all.clone();
        scribble(d.as_mut(), &mut model, 40);
        d.write_at(260 * 1024, &[0x42; 1000]).unwrap();
        model[260 * 1024..260 * 1024 + 1000].fill(0x42);
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

#[test]
fn write_zeroes_flags_and_releases_clusters() {
    let dir = TempDir::new("wz");
    let base = dir.path("base.raw");
    std::fs::write(&base, pattern(2 << 20, 3)).unwrap();
    for backing in [false, true] {
        let p = dir.path(&format!("z{backing}.qcow2"));
        let b = backing.then_some(("base.raw", Format::Raw));
        create_qcow2(&p, 2 << 20, 16, b).unwrap();
        let mut d = open_image(&p, None, false).unwrap();
        let mut model = read_all(d.as_mut());
        let data = pattern(300_000, 8);
        d.write_at(10_000, &data).unwrap();
        model[10_000..310_000].copy_from_slice(&data);
        // Partial clusters at both ends, whole clusters (allocated or not) in between.
        d.write_zeroes(20_000, 900_000).unwrap();
        model[20_000..920_000].fill(0);
        assert!(read_all(d.as_mut()) == model);
        assert!(d.write_zeroes(2 << 20, 1).is_err());
        drop(d);
        let r = qcow2::check::check(&p).unwrap();
        assert_eq!((r.corruptions, r.leaks), (0, 0), "{:?}", r.messages);
        if have("qemu-img") {
            qemu_check_clean(&p);
            assert!(qemu_to_raw(&dir, &p) == model);
        }
    }
    let r = dir.path("r.raw");
    create_raw(&r, 1 << 20).unwrap();
    let mut d = open_image(&r, None, false).unwrap();
    d.write_at(0, &[7; 5000]).unwrap();
    d.write_zeroes(100, 4000).unwrap();
    let all = read_all(d.as_mut());
    assert!(all[..100].iter().all(|b| *b == 7) && all[100..4100].iter().all(|b| *b == 0));
    assert!(all[4100..5000].iter().all(|b| *b == 7));
}

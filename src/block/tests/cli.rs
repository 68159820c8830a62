//! `kemu img` on temporary files.

use super::*;

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

#[test]
fn convert_compressed() {
    let dir = TempDir::new("convc");
    let raw = dir.path("in.raw");
    let size = (3 << 20) + 4096;
    let mut data = vec![0u8; size];
    for (i, b) in data.iter_mut().enumerate().skip(100_000).take(2 << 20) {
        *b = ((i / 300) % 7) as u8;
    }
    data[size - 5000..].copy_from_slice(&pattern(5000, 1));
    // An incompressible cluster is stored plainly.
    data[(2 << 20) + 200_000..(2 << 20) + 265_536].copy_from_slice(&pattern(65536, 2));
    std::fs::write(&raw, &data).unwrap();
    let out = dir.path("out.qcow2");
    let args = |a: &[&str]| a.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let cmd = [
        "convert",
        "-c",
        "-f",
        "raw",
        "-O",
        "qcow2",
        s(&raw),
        s(&out),
    ];
    assert_eq!(img::img_main(&args(&cmd)), 0);
    let mut d = open_image(&out, None, true).unwrap();
    assert!(read_all(d.as_mut()) == data);
    drop(d);
    let r = qcow2::check::check(&out).unwrap();
    assert_eq!((r.corruptions, r.leaks), (0, 0), "{:?}", r.messages);
    assert!(r.compressed > 20, "{r:?}");
    assert!(std::fs::metadata(&out).unwrap().len() < 1 << 20);
    let x = dir.path("x.raw");
    let bad = ["convert", "-c", "-O", "raw", s(&raw), s(&x)];
    assert_ne!(img::img_main(&args(&bad)), 0);
    if have("qemu-img") {
        qemu_check_clean(&out);
        assert!(qemu_to_raw(&dir, &out) == data);
    }
    // Writing over compressed clusters later stays consistent.
    let mut d = open_image(&out, None, false).unwrap();
    d.write_at(150_000, &[9; 100_000]).unwrap();
    data[150_000..250_000].fill(9);
    drop(d);
    if have("qemu-img") {
        qemu_check_clean(&out);
        assert!(qemu_to_raw(&dir, &out) == data);
    }
}

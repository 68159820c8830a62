//! Round trips through our own writer, raw images and locking.

use super::*;

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

#[test]
fn empty_and_odd_sized_images() {
    let dir = TempDir::new("odd");
    for size in [0u64, 512, 65536 + 512, (1 << 30) + 4096] {
        let p = dir.path(&format!("e{size}.qcow2"));
        create_qcow2(&p, size, 16, None).unwrap();
        let mut d = open_image(&p, None, false).unwrap();
        assert_eq!(d.size(), size);
        if size > 0 {
            d.write_at(size - 1, &[0x5a]).unwrap();
            let mut b = [0u8; 1];
            d.read_at(size - 1, &mut b).unwrap();
            assert_eq!(b, [0x5a]);
        }
        assert!(d.write_at(size, &[1]).is_err());
        drop(d);
        if have("qemu-img") {
            qemu_check_clean(&p);
        }
    }
}

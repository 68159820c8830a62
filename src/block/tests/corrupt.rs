//! Corrupt images: a clear error and not one byte written; check counts leaks and errors.

use super::*;

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

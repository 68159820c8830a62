//! `check`: an independent consistency walk of a qcow2 image, as `qemu-img check` does. It counts
//! the references every structure (header, refcount table and blocks, L1/L2 tables, data and
//! compressed clusters, snapshot table and snapshots' tables) makes to each host cluster and
//! compares them with the stored refcounts. It only reads; problems are collected, not fatal.

use std::path::Path;

use super::header::Header;
use super::refcount::get_entry;
use super::table::{compressed_clusters, decode_l2, decode_table, Mapping, COPIED, OFFSET_MASK};
use crate::block::{BlockError, ImageFile};

/// What `check` found.
#[derive(Debug, Default, Clone)]
pub struct CheckReport {
    /// One line per problem, qemu-img style.
    pub messages: Vec<String>,
    /// Corruptions (references without refcount, bad offsets, wrong COPIED flags).
    pub corruptions: u64,
    /// Clusters with a refcount but no reference.
    pub leaks: u64,
    /// Guest clusters allocated in the active L1/L2.
    pub allocated: u64,
    /// Guest clusters of the virtual disk.
    pub total: u64,
    /// Allocated guest clusters stored compressed.
    pub compressed: u64,
    /// Allocated guest clusters not contiguous with the previous one.
    pub fragmented: u64,
    /// End of the last referenced host cluster.
    pub image_end: u64,
}

struct Walk<'a> {
    f: &'a ImageFile,
    h: &'a Header,
    refs: Vec<u64>,
    r: CheckReport,
}

impl Walk<'_> {
    fn cs(&self) -> u64 {
        self.h.cluster_size()
    }

    fn error(&mut self, msg: String) {
        self.r.corruptions += 1;
        self.r.messages.push(msg);
    }

    /// Counts a reference to `[off, off+len)`; false when the range is bad.
    fn reference(&mut self, what: &str, off: u64, len: u64, aligned: bool) -> bool {
        let cs = self.cs();
        if aligned && off & (cs - 1) != 0 {
            self.error(format!(
                "ERROR {what} offset=0x{off:x} is not cluster aligned"
            ));
            return false;
        }
        let end = off.saturating_add(len.max(1));
        if end > self.f.len.div_ceil(cs) * cs {
            self.error(format!(
                "ERROR {what} offset=0x{off:x} is past the end of the file (0x{:x})",
                self.f.len
            ));
            return false;
        }
        for c in (off >> self.h.cluster_bits)..=((end - 1) >> self.h.cluster_bits) {
            self.refs[c as usize] += 1;
        }
        self.r.image_end = self.r.image_end.max(end.div_ceil(cs) * cs);
        true
    }

    fn read_table(&mut self, what: &str, off: u64, entries: u64) -> Option<Vec<u64>> {
        let mut b = vec![0u8; (entries * 8) as usize];
        match self.f.read_exact(off, &mut b, what) {
            Ok(()) => Some(decode_table(&b)),
            Err(e) => {
                self.error(format!("ERROR {e}"));
                None
            }
        }
    }

    /// Walks an L1 table; `active` also collects statistics and COPIED flags to check.
    fn walk_l1(&mut self, l1_off: u64, l1_size: u64, active: bool, copied: &mut Vec<(u64, bool)>) {
        let cs = self.cs();
        if l1_size == 0 {
            return;
        }
        if !self.reference("L1 table", l1_off, l1_size * 8, true) {
            return;
        }
        let Some(l1) = self.read_table("L1 table", l1_off, l1_size) else {
            return;
        };
        let mut prev_end = 0u64;
        for (i, e) in l1.iter().enumerate() {
            let l2_off = e & OFFSET_MASK;
            if l2_off == 0 {
                continue;
            }
            if !self.reference(&format!("L2 table (L1 index {i})"), l2_off, cs, true) {
                continue;
            }
            if active {
                copied.push((*e, true));
            }
            let Some(l2) = self.read_table("L2 table", l2_off, cs / 8) else {
                continue;
            };
            for (j, le) in l2.iter().enumerate() {
                let m = decode_l2(*le, self.h.version, self.h.cluster_bits);
                let what = format!("data cluster (L1 index {i}, L2 index {j})");
                match m {
                    Mapping::Unallocated | Mapping::Zero { host: None } => {}
                    Mapping::Data { host, .. } | Mapping::Zero { host: Some(host) } => {
                        if self.reference(&what, host, cs, true) && active {
                            copied.push((*le, false));
                            if matches!(m, Mapping::Data { .. }) {
                                self.r.allocated += 1;
                                if prev_end != 0 && host != prev_end {
                                    self.r.fragmented += 1;
                                }
                                prev_end = host + cs;
                            }
                        }
                    }
                    Mapping::Compressed { host, len } => {
                        let (first, n) = compressed_clusters(host, len, self.h.cluster_bits);
                        let ok = self.reference(&what, first * cs, n * cs, false);
                        if ok && active {
                            self.r.allocated += 1;
                            self.r.compressed += 1;
                        }
                    }
                }
            }
        }
    }

    fn walk_snapshots(&mut self, copied: &mut Vec<(u64, bool)>) {
        let mut off = self.h.snapshots_offset;
        let start = off;
        for _ in 0..self.h.nb_snapshots {
            let mut fixed = [0u8; 40];
            if let Err(e) = self.f.read_exact(off, &mut fixed, "snapshot table entry") {
                self.error(format!("ERROR {e}"));
                return;
            }
            let be = |a: usize, n: usize| {
                fixed[a..a + n]
                    .iter()
                    .fold(0u64, |x, b| (x << 8) | u64::from(*b))
            };
            let (l1_off, l1_size) = (be(0, 8), be(8, 4));
            let (id_len, name_len, extra) = (be(12, 2), be(14, 2), be(36, 4));
            self.walk_l1(l1_off, l1_size, false, copied);
            off += (40 + extra + id_len + name_len).div_ceil(8) * 8;
        }
        self.reference("snapshot table", start, off - start, true);
    }
}

/// Checks the qcow2 image at `path` (opened read-only, shared lock).
pub fn check(path: &Path) -> Result<CheckReport, BlockError> {
    let f = ImageFile::open(path, true)?;
    let h = Header::read(&f)?;
    let cs = h.cluster_size();
    let nclusters = f.len.div_ceil(cs);
    let mut w = Walk {
        f: &f,
        h: &h,
        refs: vec![0; nclusters as usize],
        r: CheckReport {
            total: h.size.div_ceil(cs),
            ..Default::default()
        },
    };
    w.reference("header", 0, cs, true);
    let rt_len = u64::from(h.refcount_table_clusters) * cs;
    w.reference("refcount table", h.refcount_table_offset, rt_len, true);
    let rt = w
        .read_table("refcount table", h.refcount_table_offset, rt_len / 8)
        .unwrap_or_default();
    let mut rbs: Vec<Option<Vec<u8>>> = Vec::with_capacity(rt.len());
    for (i, rb) in rt.iter().enumerate() {
        if *rb == 0 || !w.reference(&format!("refcount block (index {i})"), *rb, cs, true) {
            rbs.push(None);
            continue;
        }
        let mut b = vec![0u8; cs as usize];
        match f.read_exact(*rb, &mut b, "refcount block") {
            Ok(()) => rbs.push(Some(b)),
            Err(e) => {
                w.error(format!("ERROR {e}"));
                rbs.push(None);
            }
        }
    }
    let mut copied = Vec::new();
    w.walk_l1(h.l1_table_offset, u64::from(h.l1_size), true, &mut copied);
    if h.nb_snapshots > 0 {
        w.walk_snapshots(&mut copied);
    }
    let epb = (cs * 8) >> h.refcount_order;
    let stored = |c: u64| -> u64 {
        match rbs.get((c / epb) as usize) {
            Some(Some(b)) => get_entry(b, h.refcount_order, c % epb),
            _ => 0,
        }
    };
    // Clusters of the file, then those past its end that an existing refcount block covers.
    let past_end = rbs
        .iter()
        .enumerate()
        .filter(|(_, b)| b.is_some())
        .flat_map(|(i, _)| (i as u64 * epb)..((i as u64 + 1) * epb))
        .filter(|c| *c >= nclusters);
    for c in (0..nclusters).chain(past_end) {
        let refc = stored(c);
        let reference = w.refs.get(c as usize).copied().unwrap_or(0);
        if refc == reference {
            continue;
        }
        if reference > refc {
            w.error(format!(
                "ERROR cluster {c} refcount={refc} reference={reference}"
            ));
        } else {
            w.r.leaks += 1;
            w.r.messages.push(format!(
                "Leaked cluster {c} refcount={refc} reference={reference}"
            ));
        }
    }
    for (e, is_l2) in copied {
        let host = e & OFFSET_MASK;
        let refc = stored(host >> h.cluster_bits);
        if (e & COPIED != 0) != (refc == 1) {
            let what = if is_l2 { "L2 table" } else { "data cluster" };
            w.error(format!(
                "ERROR OFLAG_COPIED {what}: entry=0x{e:x} refcount={refc}"
            ));
        }
    }
    Ok(w.r)
}

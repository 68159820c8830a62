//! Creating an empty qcow2 v3 image: header (+ backing format extension, feature name table,
//! backing file name) in cluster 0, then the refcount table, refcount blocks and the L1 table,
//! all with refcount 1, laid out so `qemu-img check` finds nothing to say.

use std::os::unix::fs::FileExt;
use std::path::Path;

use super::header::{
    Header, EXT_BACKING_FORMAT, EXT_FEATURE_TABLE, MAX_L1_BYTES, MAX_VIRTUAL_SIZE, V3_HEADER_LEN,
};
use super::refcount::set_entry;
use super::table::encode_table;
use crate::block::{BlockError, Format, ImageFile};

const REFCOUNT_ORDER: u32 = 4;

fn push_ext(b: &mut Vec<u8>, ty: u32, data: &[u8]) {
    b.extend_from_slice(&ty.to_be_bytes());
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend_from_slice(data);
    b.resize(b.len().div_ceil(8) * 8, 0);
}

fn feature_table() -> Vec<u8> {
    let names: [(u8, u8, &str); 7] = [
        (0, 0, "dirty bit"),
        (0, 1, "corrupt bit"),
        (0, 2, "external data file"),
        (0, 3, "compression type"),
        (0, 4, "extended L2 entries"),
        (1, 0, "lazy refcounts"),
        (2, 0, "bitmaps"),
    ];
    let mut t = Vec::new();
    for (ty, bit, name) in names {
        let mut e = [0u8; 48];
        e[0] = ty;
        e[1] = bit;
        e[2..2 + name.len()].copy_from_slice(name.as_bytes());
        t.extend_from_slice(&e);
    }
    t
}

/// Creates (or truncates) `path` as an empty qcow2 v3 image of `size` bytes with
/// 2^`cluster_bits`-byte clusters and an optional backing file (name stored as given, format).
pub fn create(
    path: &Path,
    size: u64,
    cluster_bits: u32,
    backing: Option<(&str, Format)>,
) -> Result<(), BlockError> {
    let name = path.display().to_string();
    if !(9..=21).contains(&cluster_bits) {
        return Err(BlockError::Invalid(format!(
            "Cluster size must be a power of two between 512 and 2M (cluster_bits {cluster_bits})"
        )));
    }
    if size > MAX_VIRTUAL_SIZE {
        return Err(BlockError::Invalid(format!(
            "Image size {size} is too large"
        )));
    }
    let cs = 1u64 << cluster_bits;
    let mut h = Header {
        version: 3,
        backing_file_offset: 0,
        backing_file_size: 0,
        cluster_bits,
        size,
        l1_size: 0,
        l1_table_offset: 0,
        refcount_table_offset: 0,
        refcount_table_clusters: 0,
        nb_snapshots: 0,
        snapshots_offset: 0,
        incompatible: 0,
        compatible: 0,
        autoclear: 0,
        refcount_order: REFCOUNT_ORDER,
        header_length: V3_HEADER_LEN,
        backing_file: None,
        backing_format: None,
        feature_names: Vec::new(),
    };
    let l1_entries = h.l1_entries_for(size);
    if l1_entries * 8 > MAX_L1_BYTES {
        return Err(BlockError::Invalid(format!(
            "Image size {size} needs an L1 table larger than 32 MiB with {cs}-byte clusters"
        )));
    }
    h.l1_size = l1_entries as u32;
    let l1_clusters = (l1_entries * 8).div_ceil(cs);

    // Cluster 0 holds the header; then the refcount table, refcount blocks and the L1 table.
    let epb = (cs * 8) >> REFCOUNT_ORDER;
    let (mut rt_clusters, mut rb_count) = (1u64, 1u64);
    loop {
        let total = 1 + rt_clusters + rb_count + l1_clusters;
        let rb_need = total.div_ceil(epb);
        let rt_need = (rb_need * 8).div_ceil(cs);
        if rb_need == rb_count && rt_need == rt_clusters {
            break;
        }
        rb_count = rb_need;
        rt_clusters = rt_need;
    }
    h.refcount_table_offset = cs;
    h.refcount_table_clusters = rt_clusters as u32;
    let rb_off = cs * (1 + rt_clusters);
    h.l1_table_offset = rb_off + rb_count * cs;
    let total = 1 + rt_clusters + rb_count + l1_clusters;

    let mut exts = Vec::new();
    if let Some((_, fmt)) = backing {
        push_ext(&mut exts, EXT_BACKING_FORMAT, fmt.name().as_bytes());
    }
    push_ext(&mut exts, EXT_FEATURE_TABLE, &feature_table());
    exts.extend_from_slice(&[0u8; 8]);
    if let Some((b, _)) = backing {
        if b.len() > 1023 {
            return Err(BlockError::Invalid("backing file name is too long".into()));
        }
        h.backing_file_offset = u64::from(V3_HEADER_LEN) + exts.len() as u64;
        h.backing_file_size = b.len() as u32;
    }
    let mut cluster0 = h.encode_v3();
    cluster0.extend_from_slice(&exts);
    if let Some((b, _)) = backing {
        cluster0.extend_from_slice(b.as_bytes());
    }
    if cluster0.len() as u64 > cs {
        return Err(BlockError::Invalid(
            "header and backing file name do not fit in one cluster".into(),
        ));
    }

    let rt: Vec<u64> = (0..rt_clusters * cs / 8)
        .map(|i| if i < rb_count { rb_off + i * cs } else { 0 })
        .collect();
    let mut rbs = vec![0u8; (rb_count * cs) as usize];
    for c in 0..total {
        set_entry(&mut rbs, REFCOUNT_ORDER, c, 1);
    }

    let f = ImageFile::create_locked(path)?;
    let w = |off: u64, b: &[u8], what: &str| {
        f.write_all_at(b, off)
            .map_err(|e| BlockError::io(&name, format!("writing {what} at 0x{off:x}"), e))
    };
    w(0, &cluster0, "header")?;
    w(cs, &encode_table(&rt), "refcount table")?;
    w(rb_off, &rbs, "refcount blocks")?;
    f.set_len(total * cs)
        .map_err(|e| BlockError::io(&name, "setting the file length", e))?;
    f.sync_all()
        .map_err(|e| BlockError::io(&name, "flushing (fsync)", e))
}

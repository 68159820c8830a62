//! The qcow2 header (versions 2 and 3) and its extensions: parsed from the first cluster and
//! validated before any other structure is trusted. Every offset is checked for alignment and
//! for lying inside the file; sizes are checked against qemu's own limits.

use super::super::{BlockError, ImageFile};

/// "QFI\xfb".
pub const MAGIC: [u8; 4] = *b"QFI\xfb";
/// Header length of a version 2 image (and the fixed part of version 3's).
pub const V2_HEADER_LEN: u32 = 72;
/// Minimum version 3 header length.
pub const V3_MIN_HEADER_LEN: u32 = 104;
/// Header length we write (with the compression type byte and padding).
pub const V3_HEADER_LEN: u32 = 112;

/// Incompatible feature: refcounts may be stale (lazy refcounts, unclean shutdown).
pub const INCOMPAT_DIRTY: u64 = 1 << 0;
/// Incompatible feature: qemu found the image corrupt.
pub const INCOMPAT_CORRUPT: u64 = 1 << 1;
/// Incompatible feature: guest data lives in an external file.
pub const INCOMPAT_DATA_FILE: u64 = 1 << 2;
/// Incompatible feature: the compression type field is not zlib.
pub const INCOMPAT_COMPRESSION: u64 = 1 << 3;
/// Incompatible feature: L2 entries with subcluster bitmaps.
pub const INCOMPAT_EXTL2: u64 = 1 << 4;
/// Incompatible features we know.
pub const INCOMPAT_KNOWN: u64 = 0x1f;

/// Header extension: backing file format name.
pub const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
/// Header extension: feature name table.
pub const EXT_FEATURE_TABLE: u32 = 0x6803_f857;

/// qemu's limit on the L1 table (32 MiB).
pub const MAX_L1_BYTES: u64 = 32 << 20;
/// qemu's limit on the refcount table (8 MiB).
pub const MAX_REFTABLE_BYTES: u64 = 8 << 20;
/// Largest virtual size we accept (qemu's limit is 2^61 bytes as well, within an i64).
pub const MAX_VIRTUAL_SIZE: u64 = 1 << 61;

/// A parsed and validated qcow2 header.
#[derive(Debug, Clone)]
pub struct Header {
    /// 2 or 3.
    pub version: u32,
    /// Offset of the backing file name (0: none).
    pub backing_file_offset: u64,
    /// Length of the backing file name.
    pub backing_file_size: u32,
    /// log2 of the cluster size (9..=21).
    pub cluster_bits: u32,
    /// Virtual disk size.
    pub size: u64,
    /// Entries in the active L1 table.
    pub l1_size: u32,
    /// Offset of the active L1 table.
    pub l1_table_offset: u64,
    /// Offset of the refcount table.
    pub refcount_table_offset: u64,
    /// Clusters of the refcount table.
    pub refcount_table_clusters: u32,
    /// Internal snapshots.
    pub nb_snapshots: u32,
    /// Offset of the snapshot table.
    pub snapshots_offset: u64,
    /// v3 incompatible feature bits.
    pub incompatible: u64,
    /// v3 compatible feature bits.
    pub compatible: u64,
    /// v3 autoclear feature bits.
    pub autoclear: u64,
    /// log2 of the refcount width in bits (0..=6; 4 for v2).
    pub refcount_order: u32,
    /// Header length (72 for v2).
    pub header_length: u32,
    /// Backing file name, if any.
    pub backing_file: Option<String>,
    /// Backing format from the header extension, if any.
    pub backing_format: Option<String>,
    /// Names from the feature name table: (type, bit, name).
    pub feature_names: Vec<(u8, u8, String)>,
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

impl Header {
    /// Cluster size in bytes.
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Bytes of guest data one L1 entry (one L2 table) covers.
    pub fn l2_coverage(&self) -> u64 {
        self.cluster_size() * (self.cluster_size() / 8)
    }

    /// L1 entries needed for a virtual size of `size` bytes.
    pub fn l1_entries_for(&self, size: u64) -> u64 {
        size.div_ceil(self.l2_coverage())
    }

    /// Reads and validates the header of `f`.
    pub fn read(f: &ImageFile) -> Result<Header, BlockError> {
        let name = &f.name;
        let corrupt = |m: String| BlockError::corrupt(name, m);
        if f.len < u64::from(V2_HEADER_LEN) {
            return Err(corrupt(format!(
                "file is too short for a qcow2 header ({} bytes, need {V2_HEADER_LEN})",
                f.len
            )));
        }
        let mut b = [0u8; V2_HEADER_LEN as usize];
        f.read_exact(0, &mut b, "qcow2 header")?;
        if b[0..4] != MAGIC {
            return Err(corrupt("not a qcow2 image (bad magic)".into()));
        }
        let version = be32(&b, 4);
        if version != 2 && version != 3 {
            return Err(BlockError::unsupported(
                name,
                format!("qcow2 version {version}"),
            ));
        }
        let cluster_bits = be32(&b, 20);
        if !(9..=21).contains(&cluster_bits) {
            return Err(corrupt(format!(
                "header: cluster_bits {cluster_bits} is outside 9..=21"
            )));
        }
        let crypt = be32(&b, 32);
        if crypt != 0 {
            return Err(BlockError::unsupported(
                name,
                format!("encryption method {crypt}"),
            ));
        }
        let mut h = Header {
            version,
            backing_file_offset: be64(&b, 8),
            backing_file_size: be32(&b, 16),
            cluster_bits,
            size: be64(&b, 24),
            l1_size: be32(&b, 36),
            l1_table_offset: be64(&b, 40),
            refcount_table_offset: be64(&b, 48),
            refcount_table_clusters: be32(&b, 56),
            nb_snapshots: be32(&b, 60),
            snapshots_offset: be64(&b, 64),
            incompatible: 0,
            compatible: 0,
            autoclear: 0,
            refcount_order: 4,
            header_length: V2_HEADER_LEN,
            backing_file: None,
            backing_format: None,
            feature_names: Vec::new(),
        };
        let cs = h.cluster_size();
        if version == 3 {
            let mut v3 = [0u8; (V3_MIN_HEADER_LEN - V2_HEADER_LEN) as usize];
            if f.len < u64::from(V3_MIN_HEADER_LEN) {
                return Err(corrupt(format!(
                    "file is too short for a qcow2 v3 header ({} bytes)",
                    f.len
                )));
            }
            f.read_exact(u64::from(V2_HEADER_LEN), &mut v3, "qcow2 v3 header")?;
            h.incompatible = be64(&v3, 0);
            h.compatible = be64(&v3, 8);
            h.autoclear = be64(&v3, 16);
            h.refcount_order = be32(&v3, 24);
            h.header_length = be32(&v3, 28);
            if h.header_length < V3_MIN_HEADER_LEN || u64::from(h.header_length) > cs {
                return Err(corrupt(format!(
                    "header: header_length {} is outside {V3_MIN_HEADER_LEN}..=cluster size {cs}",
                    h.header_length
                )));
            }
            if h.header_length > V3_MIN_HEADER_LEN {
                let mut ct = [0u8; 1];
                f.read_exact(u64::from(V3_MIN_HEADER_LEN), &mut ct, "compression type")?;
                if ct[0] != 0 {
                    return Err(BlockError::unsupported(
                        name,
                        format!("compression type {} (only zlib is supported)", ct[0]),
                    ));
                }
            }
        }
        if h.refcount_order > 6 {
            return Err(corrupt(format!(
                "header: refcount_order {} is larger than 6",
                h.refcount_order
            )));
        }
        h.read_extensions(f)?;
        h.check_features(name)?;
        h.check_tables(f)?;
        h.read_backing_name(f)?;
        Ok(h)
    }

    fn read_extensions(&mut self, f: &ImageFile) -> Result<(), BlockError> {
        let cs = self.cluster_size();
        let mut end = cs.min(f.len);
        if self.backing_file_offset != 0 && self.backing_file_offset < end {
            end = self.backing_file_offset;
        }
        let mut off = u64::from(self.header_length);
        while off + 8 <= end {
            let mut hd = [0u8; 8];
            f.read_exact(off, &mut hd, "header extension")?;
            let (ty, len) = (be32(&hd, 0), u64::from(be32(&hd, 4)));
            if ty == 0 {
                break;
            }
            let data_off = off + 8;
            if data_off + len > end {
                return Err(BlockError::corrupt(
                    &f.name,
                    format!(
                        "header extension 0x{ty:08x} at 0x{off:x} ({len} bytes) runs past the header area (0x{end:x})"
                    ),
                ));
            }
            let mut data = vec![0u8; len as usize];
            f.read_exact(data_off, &mut data, "header extension data")?;
            match ty {
                EXT_BACKING_FORMAT => {
                    self.backing_format = Some(String::from_utf8_lossy(&data).into_owned());
                }
                EXT_FEATURE_TABLE => {
                    for e in data.chunks_exact(48) {
                        let nm = &e[2..];
                        let n = nm.iter().position(|&c| c == 0).unwrap_or(nm.len());
                        let s = String::from_utf8_lossy(&nm[..n]).into_owned();
                        self.feature_names.push((e[0], e[1], s));
                    }
                }
                _ => {}
            }
            off = data_off + len.div_ceil(8) * 8;
        }
        Ok(())
    }

    fn check_features(&self, name: &str) -> Result<(), BlockError> {
        let unknown = self.incompatible & !INCOMPAT_KNOWN;
        if unknown != 0 {
            let mut names = Vec::new();
            for bit in 0..64u8 {
                if unknown & (1 << bit) != 0 {
                    let n = self
                        .feature_names
                        .iter()
                        .find(|(t, b, _)| *t == 0 && *b == bit)
                        .map(|(_, _, n)| n.clone())
                        .unwrap_or_else(|| format!("unknown incompatible feature bit {bit}"));
                    names.push(n);
                }
            }
            return Err(BlockError::unsupported(name, names.join(", ")));
        }
        if self.incompatible & INCOMPAT_DATA_FILE != 0 {
            return Err(BlockError::unsupported(name, "external data file"));
        }
        if self.incompatible & INCOMPAT_EXTL2 != 0 {
            return Err(BlockError::unsupported(
                name,
                "extended L2 entries (subclusters)",
            ));
        }
        Ok(())
    }

    /// Checks that `[off, off+len)` is cluster aligned and inside the file.
    /// `ctx` follows the offset in the message (e.g. " for L1 index 3").
    pub fn check_region(
        &self,
        f: &ImageFile,
        what: &str,
        off: u64,
        len: u64,
        ctx: &str,
    ) -> Result<(), BlockError> {
        if off & (self.cluster_size() - 1) != 0 {
            return Err(BlockError::corrupt(
                &f.name,
                format!("{what} at 0x{off:x}{ctx} is not aligned to a cluster"),
            ));
        }
        match off.checked_add(len) {
            Some(end) if end <= f.len => Ok(()),
            _ => Err(BlockError::corrupt(
                &f.name,
                format!(
                    "{what} at 0x{off:x}{ctx} is past the end of the file (0x{:x})",
                    f.len
                ),
            )),
        }
    }

    fn check_tables(&self, f: &ImageFile) -> Result<(), BlockError> {
        let corrupt = |m: String| BlockError::corrupt(&f.name, m);
        let cs = self.cluster_size();
        if self.size > MAX_VIRTUAL_SIZE {
            return Err(corrupt(format!(
                "header: virtual size {} is too large",
                self.size
            )));
        }
        let l1_bytes = u64::from(self.l1_size) * 8;
        if l1_bytes > MAX_L1_BYTES {
            return Err(corrupt(format!(
                "header: L1 table of {} entries is larger than {MAX_L1_BYTES} bytes",
                self.l1_size
            )));
        }
        let need = self.l1_entries_for(self.size);
        if u64::from(self.l1_size) < need {
            return Err(corrupt(format!(
                "header: L1 table has {} entries but the virtual size {} needs {need}",
                self.l1_size, self.size
            )));
        }
        if self.l1_size > 0 {
            self.check_region(f, "L1 table", self.l1_table_offset, l1_bytes, "")?;
        }
        let rt_bytes = u64::from(self.refcount_table_clusters) * cs;
        if self.refcount_table_clusters == 0 || rt_bytes > MAX_REFTABLE_BYTES {
            return Err(corrupt(format!(
                "header: refcount table of {} clusters is empty or too large",
                self.refcount_table_clusters
            )));
        }
        if self.refcount_table_offset == 0 {
            return Err(corrupt("header: refcount table offset is 0".into()));
        }
        self.check_region(
            f,
            "refcount table",
            self.refcount_table_offset,
            rt_bytes,
            "",
        )?;
        if self.nb_snapshots > 0 {
            self.check_region(f, "snapshot table", self.snapshots_offset, 0, "")?;
        }
        Ok(())
    }

    fn read_backing_name(&mut self, f: &ImageFile) -> Result<(), BlockError> {
        if self.backing_file_offset == 0 {
            return Ok(());
        }
        let (off, len) = (self.backing_file_offset, u64::from(self.backing_file_size));
        let end = off.saturating_add(len);
        if len > 1023 || end > self.cluster_size() || end > f.len {
            return Err(BlockError::corrupt(
                &f.name,
                format!("backing file name at 0x{off:x} ({len} bytes) is outside the first cluster or the file"),
            ));
        }
        let mut b = vec![0u8; len as usize];
        f.read_exact(off, &mut b, "backing file name")?;
        self.backing_file = Some(String::from_utf8_lossy(&b).into_owned());
        Ok(())
    }

    /// Serializes the fixed fields as a v3 header of `V3_HEADER_LEN` bytes.
    pub fn encode_v3(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(V3_HEADER_LEN as usize);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&3u32.to_be_bytes());
        b.extend_from_slice(&self.backing_file_offset.to_be_bytes());
        b.extend_from_slice(&self.backing_file_size.to_be_bytes());
        b.extend_from_slice(&self.cluster_bits.to_be_bytes());
        b.extend_from_slice(&self.size.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&self.l1_size.to_be_bytes());
        b.extend_from_slice(&self.l1_table_offset.to_be_bytes());
        b.extend_from_slice(&self.refcount_table_offset.to_be_bytes());
        b.extend_from_slice(&self.refcount_table_clusters.to_be_bytes());
        b.extend_from_slice(&self.nb_snapshots.to_be_bytes());
        b.extend_from_slice(&self.snapshots_offset.to_be_bytes());
        b.extend_from_slice(&self.incompatible.to_be_bytes());
        b.extend_from_slice(&self.compatible.to_be_bytes());
        b.extend_from_slice(&self.autoclear.to_be_bytes());
        b.extend_from_slice(&self.refcount_order.to_be_bytes());
        b.extend_from_slice(&V3_HEADER_LEN.to_be_bytes());
        b.resize(V3_HEADER_LEN as usize, 0);
        b
    }
}

//! qcow2 images (versions 2 and 3): guest offsets go through the L1 table (in memory) and L2
//! tables (read on demand, cached) to host clusters; holes read from the backing image or as
//! zeros; compressed clusters are inflated. Writes allocate clusters at the end of the file in an
//! order that survives the process being killed at any point (refcount, then data, then L2, then
//! L1: the worst case is a leaked cluster). Every offset read from the file is validated before
//! use; once corruption is seen the image is never written again.
//!
//! The ordering holds for the process dying (writes reach the host page cache in order). There
//! is no fsync between the steps, so after a host crash or power loss only what `flush()` made
//! durable is guaranteed; qemu orders its metadata caches with flushes, we do not (yet).

pub mod check;
mod compress_write;
mod compressed;
pub mod create;
pub mod header;
mod refcount;
mod resize;
pub mod table;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use self::header::{Header, INCOMPAT_CORRUPT, INCOMPAT_DIRTY};
use self::table::{decode_l2, decode_table, encode_table, Mapping, COPIED, OFFSET_MASK};
use super::{check_range, open_image_depth, BlockDevice, BlockError, Format, ImageFile};

pub use self::compressed::{deflate_cluster, inflate_cluster};

/// L2 tables kept in memory at once.
const L2_CACHE_TABLES: usize = 32;

/// An open qcow2 image.
#[derive(Debug)]
pub struct Qcow2 {
    f: ImageFile,
    h: Header,
    l1: Vec<u64>,
    /// Refcount table entries (offsets of refcount blocks).
    rt: Vec<u64>,
    /// Offsets of the refcount blocks and of the active L2 tables: a data cluster pointing at
    /// one of them is corruption that an in-place write would turn into destruction.
    rb_set: HashSet<u64>,
    l2_set: HashSet<u64>,
    l2_cache: HashMap<u64, Vec<u64>>,
    backing: Option<Box<dyn BlockDevice>>,
    /// Why writes are refused (corruption found), if they are.
    broken: Option<String>,
    /// Next host offset to allocate at (cluster aligned, at or past the end of the file).
    end: u64,
    /// True while the refcount table is being moved (its entries live only in memory).
    growing_rt: bool,
    /// Last inflated compressed cluster: (L2 entry host offset, data).
    inflated: Option<(u64, Vec<u8>)>,
    /// Where the next compressed cluster may be packed: (host byte offset, end of its cluster).
    pack: Option<(u64, u64)>,
}

impl Qcow2 {
    /// Opens and locks a qcow2 image; its backing image (if any) is opened read-only.
    pub fn open(path: &Path, read_only: bool) -> Result<Self, BlockError> {
        Self::open_depth(path, read_only, 0)
    }

    pub(crate) fn open_depth(path: &Path, read_only: bool, depth: u32) -> Result<Self, BlockError> {
        let f = ImageFile::open(path, read_only)?;
        let h = Header::read(&f)?;
        if !read_only {
            if h.incompatible & INCOMPAT_DIRTY != 0 {
                return Err(BlockError::ReadOnly {
                    file: f.name.clone(),
                    why: "the image is marked dirty (refcounts may be stale); repair it with 'qemu-img check -r all' or open it read-only".into(),
                });
            }
            if h.incompatible & INCOMPAT_CORRUPT != 0 {
                return Err(BlockError::ReadOnly {
                    file: f.name.clone(),
                    why: "the image is marked corrupt; repair it with 'qemu-img check -r all' or open it read-only".into(),
                });
            }
        }
        let cs = h.cluster_size();
        let mut l1_bytes = vec![0u8; h.l1_size as usize * 8];
        f.read_exact(h.l1_table_offset, &mut l1_bytes, "L1 table")?;
        let l1 = decode_table(&l1_bytes);
        for (i, e) in l1.iter().enumerate() {
            let off = e & OFFSET_MASK;
            if off != 0 {
                h.check_region(&f, "L2 table", off, cs, &format!(" for L1 index {i}"))?;
            }
        }
        let mut rt_bytes = vec![0u8; (u64::from(h.refcount_table_clusters) * cs) as usize];
        f.read_exact(h.refcount_table_offset, &mut rt_bytes, "refcount table")?;
        let rt = decode_table(&rt_bytes);
        for (i, e) in rt.iter().enumerate() {
            if *e != 0 {
                let ctx = format!(" for refcount table index {i}");
                h.check_region(&f, "refcount block", *e, cs, &ctx)?;
            }
        }
        let backing = match &h.backing_file {
            Some(name) => Some(open_backing(
                path,
                name,
                h.backing_format.as_deref(),
                depth,
            )?),
            None => None,
        };
        let end = f.len.div_ceil(cs) * cs;
        let rb_set = rt.iter().copied().filter(|e| *e != 0).collect();
        let mut img = Qcow2 {
            f,
            h,
            l1,
            rt,
            rb_set,
            l2_set: HashSet::new(),
            l2_cache: HashMap::new(),
            backing,
            broken: None,
            end,
            growing_rt: false,
            inflated: None,
            pack: None,
        };
        img.index_l2_tables()?;
        if !read_only && img.h.autoclear != 0 {
            // We do not maintain the structures autoclear bits vouch for (e.g. bitmaps).
            img.f
                .write_all(88, &0u64.to_be_bytes(), "header autoclear features")?;
            img.h.autoclear = 0;
        }
        Ok(img)
    }

    /// Tests: let only `n` more writes reach the file (simulated crash after that).
    #[cfg(test)]
    pub(crate) fn set_write_budget(&mut self, n: u64) {
        self.f.write_budget = Some(n);
    }

    /// Names the metadata structure holding the cluster at `host`, if any.
    fn metadata_at(&self, host: u64) -> Option<&'static str> {
        let cs = self.cs();
        let c = host & !(cs - 1);
        let within = |start: u64, bytes: u64| c >= start && c < start + bytes.div_ceil(cs) * cs;
        let rt_bytes = u64::from(self.h.refcount_table_clusters) * cs;
        if c == 0 {
            Some("the header")
        } else if within(self.h.l1_table_offset, self.l1.len() as u64 * 8) {
            Some("the L1 table")
        } else if within(self.h.refcount_table_offset, rt_bytes) {
            Some("the refcount table")
        } else if self.rb_set.contains(&c) {
            Some("a refcount block")
        } else if self.l2_set.contains(&c) {
            Some("an L2 table")
        } else {
            None
        }
    }

    /// Records the active L2 tables, refusing ones that overlap other metadata or each other.
    fn index_l2_tables(&mut self) -> Result<(), BlockError> {
        for i in 0..self.l1.len() {
            let off = self.l1[i] & OFFSET_MASK;
            if off == 0 {
                continue;
            }
            if let Some(what) = self.metadata_at(off) {
                let msg = format!("L2 table at 0x{off:x} for L1 index {i} overlaps {what}");
                return Err(BlockError::corrupt(&self.f.name, msg));
            }
            self.l2_set.insert(off);
        }
        Ok(())
    }

    /// The validated header.
    pub fn header(&self) -> &Header {
        &self.h
    }

    /// Host bytes the file occupies.
    pub fn disk_usage(&self) -> u64 {
        self.f.disk_usage()
    }

    fn cs(&self) -> u64 {
        self.h.cluster_size()
    }

    fn corrupt(&mut self, msg: String) -> BlockError {
        self.broken = Some(msg.clone());
        BlockError::corrupt(&self.f.name, msg)
    }

    fn l1_index(&self, pos: u64) -> usize {
        (pos >> (2 * self.h.cluster_bits - 3)) as usize
    }

    fn l2_index(&self, pos: u64) -> usize {
        ((pos >> self.h.cluster_bits) & (self.cs() / 8 - 1)) as usize
    }

    /// Evicts one cached L2 table when the cache is full (tables are written through, so
    /// any one may go).
    fn make_cache_room(&mut self) {
        if self.l2_cache.len() >= L2_CACHE_TABLES {
            if let Some(k) = self.l2_cache.keys().next().copied() {
                self.l2_cache.remove(&k);
            }
        }
    }

    /// Loads (or finds in the cache) the L2 table at `off`, already validated as a cluster.
    fn l2_table(&mut self, off: u64) -> Result<&mut Vec<u64>, BlockError> {
        if !self.l2_cache.contains_key(&off) {
            self.make_cache_room();
            let mut b = vec![0u8; self.cs() as usize];
            self.f.read_exact(off, &mut b, "L2 table")?;
            self.l2_cache.insert(off, decode_table(&b));
        }
        self.l2_cache
            .get_mut(&off)
            .ok_or_else(|| BlockError::corrupt(&self.f.name, "L2 cache lost a table"))
    }

    /// Finds and validates where the guest cluster holding `pos` lives.
    fn lookup(&mut self, pos: u64) -> Result<Mapping, BlockError> {
        let l1_idx = self.l1_index(pos);
        let Some(&l1e) = self.l1.get(l1_idx) else {
            let msg = format!("guest offset 0x{pos:x} needs L1 index {l1_idx} past the L1 table");
            return Err(self.corrupt(msg));
        };
        let l2_off = l1e & OFFSET_MASK;
        if l2_off == 0 {
            return Ok(Mapping::Unallocated);
        }
        let l2_idx = self.l2_index(pos);
        let entry = self.l2_table(l2_off)?[l2_idx];
        let m = decode_l2(entry, self.h.version, self.h.cluster_bits);
        self.validate(m, pos, l2_off, l2_idx)?;
        Ok(m)
    }

    fn validate(
        &mut self,
        m: Mapping,
        pos: u64,
        l2_off: u64,
        idx: usize,
    ) -> Result<(), BlockError> {
        let ctx = format!(" for guest offset 0x{pos:x} (L2 table 0x{l2_off:x} index {idx})");
        let r = match m {
            // Only the start must lie in the file: a last cluster may be short (reads zeros).
            Mapping::Data { host, .. } => {
                self.h.check_region(&self.f, "data cluster", host, 1, &ctx)
            }
            Mapping::Zero { host: Some(host) } => {
                self.h.check_region(&self.f, "zero cluster", host, 0, &ctx)
            }
            Mapping::Compressed { host, .. } if host >= self.f.len => Err(BlockError::corrupt(
                &self.f.name,
                format!(
                    "compressed cluster at 0x{host:x}{ctx} is past the end of the file (0x{:x})",
                    self.f.len
                ),
            )),
            _ => Ok(()),
        };
        let host = match m {
            Mapping::Data { host, .. } | Mapping::Zero { host: Some(host) } => Some(host),
            _ => None,
        };
        let r = r.and_then(|()| match host.and_then(|h| self.metadata_at(h)) {
            Some(what) => Err(BlockError::corrupt(
                &self.f.name,
                format!(
                    "data cluster at 0x{:x}{ctx} overlaps {what}",
                    host.unwrap_or(0)
                ),
            )),
            None => Ok(()),
        });
        if let Err(BlockError::Corrupt { msg, .. }) = &r {
            self.broken = Some(msg.clone());
        }
        r
    }

    fn read_backing(&mut self, pos: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let Some(b) = self.backing.as_mut() else {
            buf.fill(0);
            return Ok(());
        };
        let n = b.size().saturating_sub(pos).min(buf.len() as u64) as usize;
        if n > 0 {
            b.read_at(pos, &mut buf[..n])?;
        }
        buf[n..].fill(0);
        Ok(())
    }

    fn inflate(&mut self, host: u64, len: u64) -> Result<&[u8], BlockError> {
        if self.inflated.as_ref().map(|(h, _)| *h) != Some(host) {
            let avail = len.min(self.f.len - host) as usize;
            let mut z = vec![0u8; avail];
            self.f.read_exact(host, &mut z, "compressed cluster")?;
            let data = inflate_cluster(&z, self.cs() as usize)
                .map_err(|e| self.corrupt(format!("compressed cluster at 0x{host:x}: {e}")))?;
            self.inflated = Some((host, data));
        }
        Ok(self
            .inflated
            .as_ref()
            .map(|(_, d)| d.as_slice())
            .unwrap_or(&[]))
    }

    /// Reads a piece of one guest cluster.
    fn read_in_cluster(&mut self, pos: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let in_c = (pos & (self.cs() - 1)) as usize;
        match self.lookup(pos)? {
            Mapping::Unallocated => self.read_backing(pos, buf),
            Mapping::Zero { .. } => {
                buf.fill(0);
                Ok(())
            }
            Mapping::Data { host, .. } => {
                self.f
                    .read_zero_fill(host + in_c as u64, buf, "data cluster")
            }
            Mapping::Compressed { host, len } => {
                let data = self.inflate(host, len)?;
                buf.copy_from_slice(&data[in_c..in_c + buf.len()]);
                Ok(())
            }
        }
    }

    /// Splits `[offset, offset+len)` into per-cluster pieces: (guest pos, start in buf, len).
    fn pieces(&self, offset: u64, len: usize) -> Vec<(u64, usize, usize)> {
        let cs = self.cs();
        let mut v = Vec::new();
        let mut done = 0usize;
        while done < len {
            let pos = offset + done as u64;
            let n = ((cs - (pos & (cs - 1))) as usize).min(len - done);
            v.push((pos, done, n));
            done += n;
        }
        v
    }

    fn write_l1_entry(&mut self, idx: usize, val: u64) -> Result<(), BlockError> {
        let off = self.h.l1_table_offset + idx as u64 * 8;
        self.f.write_all(off, &val.to_be_bytes(), "L1 entry")?;
        self.l1[idx] = val;
        Ok(())
    }

    fn write_l2_entry(&mut self, l2_off: u64, idx: usize, val: u64) -> Result<(), BlockError> {
        self.l2_table(l2_off)?[idx] = val;
        self.f
            .write_all(l2_off + idx as u64 * 8, &val.to_be_bytes(), "L2 entry")
    }

    /// Returns an L2 table for `l1_idx` that may be modified in place: a new one when there is
    /// none, a copy when the current one is shared with a snapshot.
    fn writable_l2(&mut self, l1_idx: usize) -> Result<u64, BlockError> {
        let l1e = self.l1[l1_idx];
        let old = l1e & OFFSET_MASK;
        if old != 0 && l1e & COPIED != 0 {
            return Ok(old);
        }
        let table = if old == 0 {
            vec![0u64; (self.cs() / 8) as usize]
        } else {
            self.l2_table(old)?.clone()
        };
        let new = self.alloc_clusters(1)?;
        self.f
            .write_all(new, &encode_table(&table), "new L2 table")?;
        self.make_cache_room();
        self.l2_cache.insert(new, table);
        self.write_l1_entry(l1_idx, new | COPIED)?;
        self.l2_set.insert(new);
        if old != 0 {
            self.l2_set.remove(&old);
            self.l2_cache.remove(&old);
            self.update_refcount(old >> self.h.cluster_bits, -1)?;
        }
        Ok(new)
    }

    /// Drops the references an L2 entry held on host clusters.
    fn release(&mut self, m: Mapping) -> Result<(), BlockError> {
        let cb = self.h.cluster_bits;
        match m {
            Mapping::Data { host, .. } | Mapping::Zero { host: Some(host) } => {
                self.update_refcount(host >> cb, -1)
            }
            Mapping::Compressed { host, len } => {
                let (first, n) = table::compressed_clusters(host, len, cb);
                for c in first..first + n {
                    self.update_refcount(c, -1)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Writes a piece of one guest cluster, allocating (copy-on-write) as needed.
    fn write_in_cluster(&mut self, pos: u64, data: &[u8]) -> Result<(), BlockError> {
        let cs = self.cs();
        let in_c = (pos & (cs - 1)) as usize;
        let old = self.lookup(pos)?;
        if let Mapping::Data { host, copied: true } = old {
            return self.f.write_all(host + in_c as u64, data, "data cluster");
        }
        let mut cluster = vec![0u8; cs as usize];
        if data.len() != cs as usize {
            self.read_in_cluster(pos - in_c as u64, &mut cluster)?;
        }
        cluster[in_c..in_c + data.len()].copy_from_slice(data);
        let l1_idx = self.l1_index(pos);
        let l2_off = self.writable_l2(l1_idx)?;
        let new = self.alloc_clusters(1)?;
        self.f.write_all(new, &cluster, "data cluster")?;
        let l2_idx = self.l2_index(pos);
        self.write_l2_entry(l2_off, l2_idx, new | COPIED)?;
        if matches!(old, Mapping::Compressed { .. }) {
            self.inflated = None;
        }
        self.release(old)
    }

    /// Zeroes `[offset, offset+len)` (inside the disk): whole clusters by the zero flag (v3)
    /// or not at all when they already read as zeros, the rest by writing zeros.
    fn zero_batch(&mut self, offset: u64, len: usize) -> Result<(), BlockError> {
        let cs = self.cs();
        let pieces = self.pieces(offset, len);
        // Validate every table the batch touches before the first byte is written.
        for (pos, _, _) in &pieces {
            self.lookup(*pos)?;
        }
        for (pos, _, n) in pieces {
            let whole = n as u64 == cs;
            let old = self.lookup(pos)?;
            if whole && old == (Mapping::Zero { host: None }) {
                continue;
            }
            if whole && old == Mapping::Unallocated && self.backing.is_none() {
                continue;
            }
            if whole && self.h.version >= 3 {
                // The zero flag, then the old clusters' references dropped: a crash in between
                // leaks at worst.
                let l2_off = self.writable_l2(self.l1_index(pos))?;
                let idx = self.l2_index(pos);
                self.write_l2_entry(l2_off, idx, table::ZERO)?;
                if matches!(old, Mapping::Compressed { .. }) {
                    self.inflated = None;
                }
                self.release(old)?;
            } else {
                self.write_in_cluster(pos, &vec![0u8; n])?;
            }
        }
        Ok(())
    }

    fn check_writable(&self) -> Result<(), BlockError> {
        if self.f.read_only {
            return Err(BlockError::ReadOnly {
                file: self.f.name.clone(),
                why: "the image is open read-only".into(),
            });
        }
        if let Some(why) = &self.broken {
            return Err(BlockError::ReadOnly {
                file: self.f.name.clone(),
                why: format!("refusing to write to a corrupt image ({why})"),
            });
        }
        Ok(())
    }
}

/// Opens the backing image named in an overlay's header, relative to the overlay's directory.
fn open_backing(
    overlay: &Path,
    name: &str,
    format: Option<&str>,
    depth: u32,
) -> Result<Box<dyn BlockDevice>, BlockError> {
    let p = PathBuf::from(name);
    let path = if p.is_absolute() {
        p
    } else {
        overlay.parent().unwrap_or(Path::new("")).join(p)
    };
    let fmt = format.map(Format::parse).transpose()?;
    open_image_depth(&path, fmt, true, depth + 1)
}

impl BlockDevice for Qcow2 {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_range(&self.f.name, offset, buf.len(), self.h.size)?;
        for (pos, start, n) in self.pieces(offset, buf.len()) {
            self.read_in_cluster(pos, &mut buf[start..start + n])?;
        }
        Ok(())
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), BlockError> {
        check_range(&self.f.name, offset, buf.len(), self.h.size)?;
        self.check_writable()?;
        let pieces = self.pieces(offset, buf.len());
        // Validate every table the request touches before the first byte is written.
        for (pos, _, _) in &pieces {
            self.lookup(*pos)?;
        }
        for (pos, start, n) in pieces {
            self.write_in_cluster(pos, &buf[start..start + n])?;
        }
        Ok(())
    }

    fn write_zeroes(&mut self, offset: u64, len: u64) -> Result<(), BlockError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.h.size => {}
            _ => {
                return Err(BlockError::OutOfRange {
                    file: self.f.name.clone(),
                    offset,
                    len,
                    size: self.h.size,
                })
            }
        }
        self.check_writable()?;
        // In batches, so a whole-disk request does not build a whole-disk plan in memory.
        let batch = self.cs() * 4096;
        let mut done = 0;
        while done < len {
            let n = batch.min(len - done);
            self.zero_batch(offset + done, n as usize)?;
            done += n;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        self.f.sync()
    }

    fn size(&self) -> u64 {
        self.h.size
    }

    fn read_only(&self) -> bool {
        self.f.read_only
    }

    fn format(&self) -> Format {
        Format::Qcow2
    }
}

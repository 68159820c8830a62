//! Refcounts: reading and updating entries of refcount blocks (1 to 64 bits wide), allocating
//! clusters at the end of the file, adding refcount blocks and moving the refcount table to a
//! larger one when it is full. A refcount is always raised before anything points at the cluster.

use super::header::MAX_REFTABLE_BYTES;
use super::table::encode_table;
use super::Qcow2;
use crate::block::BlockError;

/// Reads entry `idx` of a refcount block held in `block` (order = log2 of the entry width).
pub fn get_entry(block: &[u8], order: u32, idx: u64) -> u64 {
    let bits = 1u64 << order;
    if bits >= 8 {
        let w = (bits / 8) as usize;
        let at = idx as usize * w;
        block[at..at + w]
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    } else {
        let bit = idx * bits;
        let byte = block[(bit / 8) as usize];
        (u64::from(byte) >> (bit % 8)) & ((1 << bits) - 1)
    }
}

/// Writes entry `idx` into `block`; returns the byte range that changed.
pub fn set_entry(block: &mut [u8], order: u32, idx: u64, val: u64) -> (usize, usize) {
    let bits = 1u64 << order;
    if bits >= 8 {
        let w = (bits / 8) as usize;
        let at = idx as usize * w;
        let be = val.to_be_bytes();
        block[at..at + w].copy_from_slice(&be[8 - w..]);
        (at, at + w)
    } else {
        let bit = idx * bits;
        let at = (bit / 8) as usize;
        let mask = (((1u64 << bits) - 1) << (bit % 8)) as u8;
        block[at] = (block[at] & !mask) | (((val << (bit % 8)) as u8) & mask);
        (at, at + 1)
    }
}

impl Qcow2 {
    /// Refcount entries per refcount block.
    pub(super) fn rb_entries(&self) -> u64 {
        (self.cs() * 8) >> self.h.refcount_order
    }

    fn max_refcount(&self) -> u64 {
        let bits = 1u32 << self.h.refcount_order;
        if bits == 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        }
    }

    fn entry_bytes(&self, idx: u64) -> (u64, usize) {
        let bits = 1u64 << self.h.refcount_order;
        let first_bit = idx * bits;
        let len = bits.div_ceil(8) as usize;
        (first_bit / 8, len)
    }

    /// The refcount of host cluster `cluster` (0 when no refcount block covers it).
    pub(super) fn refcount(&self, cluster: u64) -> Result<u64, BlockError> {
        let epb = self.rb_entries();
        let rb = self.rt.get((cluster / epb) as usize).copied().unwrap_or(0);
        if rb == 0 {
            return Ok(0);
        }
        let idx = cluster % epb;
        let (at, len) = self.entry_bytes(idx);
        let mut b = vec![0u8; len];
        self.f.read_exact(rb + at, &mut b, "refcount block entry")?;
        let order = self.h.refcount_order;
        // Re-index inside the few bytes we read.
        let local = if order >= 3 { 0 } else { idx % (8 >> order) };
        Ok(get_entry(&b, order, local))
    }

    fn write_refcount(&mut self, rb: u64, idx: u64, val: u64) -> Result<(), BlockError> {
        let (at, len) = self.entry_bytes(idx);
        let mut b = vec![0u8; len];
        self.f.read_exact(rb + at, &mut b, "refcount block entry")?;
        let order = self.h.refcount_order;
        let local = if order >= 3 { 0 } else { idx % (8 >> order) };
        set_entry(&mut b, order, local, val);
        self.f.write_all(rb + at, &b, "refcount block entry")
    }

    /// Adds `delta` to the refcount of host cluster `cluster`.
    pub(super) fn update_refcount(&mut self, cluster: u64, delta: i64) -> Result<(), BlockError> {
        let rb = self.refblock_for(cluster)?;
        let idx = cluster % self.rb_entries();
        let cur = self.refcount(cluster)?;
        let new = i128::from(cur) + i128::from(delta);
        if new < 0 || new > i128::from(self.max_refcount()) {
            let msg = format!(
                "refcount of cluster {cluster} (offset 0x{:x}) would go from {cur} to {new}",
                cluster << self.h.cluster_bits
            );
            return Err(self.corrupt(msg));
        }
        self.write_refcount(rb, idx, new as u64)
    }

    /// The refcount block covering `cluster`, created (and the table grown) when missing.
    fn refblock_for(&mut self, cluster: u64) -> Result<u64, BlockError> {
        let epb = self.rb_entries();
        let rt_idx = (cluster / epb) as usize;
        if rt_idx >= self.rt.len() {
            self.grow_reftable(rt_idx + 1)?;
        }
        if self.rt[rt_idx] != 0 {
            return Ok(self.rt[rt_idx]);
        }
        let cs = self.cs();
        let rb = self.end;
        self.end += cs;
        let rb_cluster = rb >> self.h.cluster_bits;
        let mut block = vec![0u8; cs as usize];
        let self_covered = (rb_cluster / epb) as usize == rt_idx;
        if self_covered {
            set_entry(&mut block, self.h.refcount_order, rb_cluster % epb, 1);
        }
        self.f.write_all(rb, &block, "new refcount block")?;
        if !self.growing_rt {
            let at = self.h.refcount_table_offset + rt_idx as u64 * 8;
            self.f
                .write_all(at, &rb.to_be_bytes(), "refcount table entry")?;
        }
        self.rt[rt_idx] = rb;
        self.rb_set.insert(rb);
        if !self_covered {
            self.update_refcount(rb_cluster, 1)?;
        }
        Ok(rb)
    }

    /// Allocates `n` contiguous free clusters past the end of the file, refcount 1 each.
    pub(super) fn alloc_clusters(&mut self, n: u64) -> Result<u64, BlockError> {
        let cs = self.cs();
        let cb = self.h.cluster_bits;
        'search: loop {
            let start = self.end;
            for i in 0..n {
                if self.refcount((start >> cb) + i)? != 0 {
                    // Referenced past EOF (odd but legal): skip over it.
                    self.end = start + (i + 1) * cs;
                    continue 'search;
                }
            }
            self.end = start + n * cs;
            for i in 0..n {
                self.update_refcount((start >> cb) + i, 1)?;
            }
            return Ok(start);
        }
    }

    /// Moves the refcount table to a new, larger place with at least `min_entries` entries.
    fn grow_reftable(&mut self, min_entries: usize) -> Result<(), BlockError> {
        if self.growing_rt {
            return Err(BlockError::corrupt(
                &self.f.name,
                "refcount table growth needed while already growing it",
            ));
        }
        let cs = self.cs();
        let per_cluster = (cs / 8) as usize;
        let entries = min_entries.max(self.rt.len() * 2).div_ceil(per_cluster) * per_cluster;
        let clusters = (entries / per_cluster) as u64;
        if clusters * cs > MAX_REFTABLE_BYTES {
            return Err(BlockError::unsupported(
                &self.f.name,
                "the refcount table would exceed 8 MiB",
            ));
        }
        let old_off = self.h.refcount_table_offset;
        let old_clusters = u64::from(self.h.refcount_table_clusters);
        let new_off = self.end;
        self.end += clusters * cs;
        self.growing_rt = true;
        self.rt.resize(entries, 0);
        let res = (|| {
            for i in 0..clusters {
                self.update_refcount((new_off >> self.h.cluster_bits) + i, 1)?;
            }
            Ok(())
        })();
        self.growing_rt = false;
        res?;
        self.f
            .write_all(new_off, &encode_table(&self.rt), "new refcount table")?;
        let mut hdr = Vec::with_capacity(12);
        hdr.extend_from_slice(&new_off.to_be_bytes());
        hdr.extend_from_slice(&(clusters as u32).to_be_bytes());
        self.f.write_all(48, &hdr, "header refcount table fields")?;
        self.h.refcount_table_offset = new_off;
        self.h.refcount_table_clusters = clusters as u32;
        for i in 0..old_clusters {
            self.update_refcount((old_off >> self.h.cluster_bits) + i, -1)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refcount that would pass its width's maximum (or go below zero) is corruption: a
    /// clear error naming the cluster, and nothing written.
    #[test]
    fn refcount_overflow_is_refused_without_a_write() {
        let p = std::env::temp_dir().join(format!("kemu-rc-overflow-{}.qcow2", std::process::id()));
        super::super::create::create(&p, 1 << 20, 16, None).unwrap();
        let before = std::fs::read(&p).unwrap();
        let mut d = super::super::Qcow2::open(&p, false).unwrap();
        // The header cluster has refcount 1; 16-bit refcounts stop at 65535.
        let e = d.update_refcount(0, 65535).unwrap_err().to_string();
        assert!(
            e.contains("refcount of cluster 0") && e.contains("from 1 to 65536"),
            "{e}"
        );
        let e = d.update_refcount(0, -2).unwrap_err().to_string();
        assert!(e.contains("from 1 to -1"), "{e}");
        drop(d);
        assert!(std::fs::read(&p).unwrap() == before, "the image changed");
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn entries_of_every_width() {
        for order in 0..=6u32 {
            let mut b = vec![0u8; 64];
            let max = if order == 6 {
                u64::MAX
            } else {
                (1u64 << (1 << order)) - 1
            };
            set_entry(&mut b, order, 3, max);
            set_entry(&mut b, order, 2, 1);
            assert_eq!(get_entry(&b, order, 3), max, "order {order}");
            assert_eq!(get_entry(&b, order, 2), 1, "order {order}");
            assert_eq!(get_entry(&b, order, 4), 0, "order {order}");
        }
    }
}

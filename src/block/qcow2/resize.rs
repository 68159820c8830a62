//! Growing a qcow2 image: a larger L1 table when the new size needs one (written, then the
//! header switched to it, then the old one freed), then the new virtual size in the header.

use super::table::encode_table;
use super::Qcow2;
use crate::block::BlockError;

impl Qcow2 {
    /// Grows the virtual size to `new_size`; shrinking is refused.
    pub fn resize(&mut self, new_size: u64) -> Result<(), BlockError> {
        self.check_writable()?;
        if new_size < self.h.size {
            return Err(BlockError::unsupported(
                &self.f.name,
                "shrinking a qcow2 image is not supported",
            ));
        }
        if new_size > super::header::MAX_VIRTUAL_SIZE {
            return Err(BlockError::Invalid(format!("size {new_size} is too large")));
        }
        let need = self.h.l1_entries_for(new_size);
        if need * 8 > super::header::MAX_L1_BYTES {
            return Err(BlockError::Invalid(format!(
                "size {new_size} needs an L1 table larger than 32 MiB at this cluster size"
            )));
        }
        if need > self.l1.len() as u64 {
            let cs = self.cs();
            let clusters = (need * 8).div_ceil(cs);
            let new_off = self.alloc_clusters(clusters)?;
            let mut table = self.l1.clone();
            table.resize((clusters * cs / 8) as usize, 0);
            self.f
                .write_all(new_off, &encode_table(&table), "new L1 table")?;
            let mut hdr = Vec::with_capacity(12);
            hdr.extend_from_slice(&(need as u32).to_be_bytes());
            hdr.extend_from_slice(&new_off.to_be_bytes());
            self.f.write_all(36, &hdr, "header L1 fields")?;
            let (old_off, old_len) = (self.h.l1_table_offset, self.l1.len() as u64);
            self.h.l1_table_offset = new_off;
            self.h.l1_size = need as u32;
            table.truncate(need as usize);
            self.l1 = table;
            if old_len > 0 {
                let first = old_off >> self.h.cluster_bits;
                for c in 0..(old_len * 8).div_ceil(cs) {
                    self.update_refcount(first + c, -1)?;
                }
            }
        }
        self.f
            .write_all(24, &new_size.to_be_bytes(), "header virtual size")?;
        self.h.size = new_size;
        Ok(())
    }
}

//! Writing compressed clusters (`kemu img convert -c`): a whole guest cluster, deflated, packed
//! after the previous compressed cluster when it fits in that host cluster (each host cluster's
//! refcount counts the compressed clusters in it), as qemu does for images it compresses.

use super::table::{Mapping, COMPRESSED};
use super::{deflate_cluster, Qcow2};
use crate::block::BlockError;

impl Qcow2 {
    /// Stores the whole guest cluster at `pos` (cluster aligned, currently unallocated or zero)
    /// compressed; writes it plainly when deflate does not save at least a sector.
    pub fn write_compressed(&mut self, pos: u64, data: &[u8]) -> Result<(), BlockError> {
        let cs = self.cs();
        if pos & (cs - 1) != 0 || data.len() as u64 != cs {
            return Err(BlockError::Invalid(format!(
                "{}: compressed writes take one whole, aligned cluster (0x{pos:x}, {} bytes)",
                self.f.name,
                data.len()
            )));
        }
        crate::block::check_range(&self.f.name, pos, data.len(), self.h.size)?;
        self.check_writable()?;
        let old = self.lookup(pos)?;
        if !matches!(old, Mapping::Unallocated | Mapping::Zero { host: None }) {
            return Err(BlockError::Invalid(format!(
                "{}: cluster at guest offset 0x{pos:x} is already allocated",
                self.f.name
            )));
        }
        let z = match deflate_cluster(data) {
            Some(z) if (z.len() as u64) <= cs - 512 => z,
            _ => return crate::block::BlockDevice::write_at(self, pos, data),
        };
        let len = z.len() as u64;
        let host = match self.pack {
            Some((at, end)) if at + len <= end && at < self.f.len => {
                self.update_refcount(at >> self.h.cluster_bits, 1)?;
                at
            }
            _ => self.alloc_clusters(1)?,
        };
        self.f.write_all(host, &z, "compressed cluster")?;
        let cluster_end = (host | (cs - 1)) + 1;
        self.pack = Some((host + len, cluster_end));
        let x = 62 - (self.h.cluster_bits - 8);
        let sectors = (host + len).div_ceil(512) - host / 512;
        let entry = COMPRESSED | ((sectors - 1) << x) | host;
        let l2_off = self.writable_l2(self.l1_index(pos))?;
        let idx = self.l2_index(pos);
        self.write_l2_entry(l2_off, idx, entry)
    }
}

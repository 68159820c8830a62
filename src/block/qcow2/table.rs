//! L1 and L2 table entries: bit layouts and what a guest cluster maps to.

/// Bits 9..=55 of an L1 entry or a standard L2 entry: the host offset.
pub const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// The cluster's refcount is exactly 1: it may be written in place.
pub const COPIED: u64 = 1 << 63;
/// The L2 entry describes a compressed cluster.
pub const COMPRESSED: u64 = 1 << 62;
/// (v3, standard L2 entry) the cluster reads as zeros.
pub const ZERO: u64 = 1;

/// Where a guest cluster's data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// Not allocated here: read from the backing file, or zeros.
    Unallocated,
    /// Reads as zeros; `host` is a preallocated cluster, if any.
    Zero {
        /// Preallocated host cluster (still holds a reference).
        host: Option<u64>,
    },
    /// A host cluster.
    Data {
        /// Host offset of the cluster.
        host: u64,
        /// Refcount is 1: writable in place.
        copied: bool,
    },
    /// Deflate-compressed data at `host`, `len` bytes (may spill into the next cluster).
    Compressed {
        /// Host byte offset of the stream.
        host: u64,
        /// Bytes the stream may occupy.
        len: u64,
    },
}

/// Decodes an L2 entry of an image with `version` and `cluster_bits`.
pub fn decode_l2(entry: u64, version: u32, cluster_bits: u32) -> Mapping {
    if entry & COMPRESSED != 0 {
        let x = 62 - (cluster_bits - 8);
        let host = entry & ((1u64 << x) - 1);
        let extra = (entry >> x) & ((1u64 << (cluster_bits - 8)) - 1);
        let end = (host & !511) + (extra + 1) * 512;
        return Mapping::Compressed {
            host,
            len: end - host,
        };
    }
    let host = entry & OFFSET_MASK;
    if version >= 3 && entry & ZERO != 0 {
        return Mapping::Zero {
            host: (host != 0).then_some(host),
        };
    }
    if host == 0 {
        Mapping::Unallocated
    } else {
        Mapping::Data {
            host,
            copied: entry & COPIED != 0,
        }
    }
}

/// Host clusters (first, count) a compressed stream at `host` of `len` bytes touches.
pub fn compressed_clusters(host: u64, len: u64, cluster_bits: u32) -> (u64, u64) {
    let first = (host & !511) >> cluster_bits;
    let last = (host + len - 1) >> cluster_bits;
    (first, last - first + 1)
}

/// Big-endian table bytes to entries.
pub fn decode_table(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|c| {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            u64::from_be_bytes(a)
        })
        .collect()
}

/// Entries to big-endian table bytes.
pub fn encode_table(entries: &[u64]) -> Vec<u8> {
    entries.iter().flat_map(|e| e.to_be_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_entries() {
        assert_eq!(decode_l2(0, 3, 16), Mapping::Unallocated);
        assert_eq!(decode_l2(1, 3, 16), Mapping::Zero { host: None });
        assert_eq!(decode_l2(1, 2, 16), Mapping::Unallocated);
        assert_eq!(
            decode_l2(COPIED | 0x50000, 3, 16),
            Mapping::Data {
                host: 0x50000,
                copied: true
            }
        );
        // cluster_bits 16: x = 54; 2 extra sectors, stream at 0x50100.
        let e = COMPRESSED | (2 << 54) | 0x50100;
        assert_eq!(
            decode_l2(e, 3, 16),
            Mapping::Compressed {
                host: 0x50100,
                len: 3 * 512 - 0x100
            }
        );
        assert_eq!(compressed_clusters(0xfff0, 0x20, 16), (0, 2));
    }
}

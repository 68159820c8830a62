//! Compressed clusters: a raw deflate stream (no zlib header, as qemu writes with
//! `qemu-img convert -c`) that inflates to exactly one cluster.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Inflates `input` into one cluster of `cluster_size` bytes; the error says what went wrong.
pub fn inflate_cluster(input: &[u8], cluster_size: usize) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8; cluster_size];
    let mut d = Decompress::new(false);
    match d.decompress(input, &mut out, FlushDecompress::Finish) {
        Ok(Status::StreamEnd) | Ok(Status::Ok) | Ok(Status::BufError) => {}
        Err(e) => return Err(format!("bad deflate stream: {e}")),
    }
    if d.total_out() != cluster_size as u64 {
        return Err(format!(
            "deflate stream inflates to {} bytes, not one cluster ({cluster_size})",
            d.total_out()
        ));
    }
    Ok(out)
}

/// Deflates one cluster; `None` when compression would not save space.
pub fn deflate_cluster(data: &[u8]) -> Option<Vec<u8>> {
    let mut c = Compress::new(Compression::default(), false);
    let mut out = vec![0u8; data.len()];
    match c.compress(data, &mut out, FlushCompress::Finish) {
        Ok(Status::StreamEnd) => {
            out.truncate(c.total_out() as usize);
            Some(out)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut data = vec![0u8; 65536];
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i % 7) as u8;
        }
        let z = deflate_cluster(&data).unwrap();
        assert!(z.len() < data.len());
        assert_eq!(inflate_cluster(&z, 65536).unwrap(), data);
        // Like qemu, a stream that fills the cluster is accepted even if it goes on.
        assert!(inflate_cluster(&z, 4096).is_ok());
        let short = deflate_cluster(&data[..4096]).unwrap();
        assert!(inflate_cluster(&short, 65536).is_err());
        assert!(inflate_cluster(&[0xff, 0xff, 0xff], 4096).is_err());
    }
}

//! The block layer: disk images behind one `BlockDevice` trait, for virtio-blk and `kemu img`.
//!
//! Data enters as guest byte offsets and buffers (`read_at`/`write_at`) and leaves as positioned
//! reads and writes on a host file: `raw` maps offsets one to one, `qcow2` through its L1/L2
//! tables, reading holes from a backing image. `open_image` probes the format (qcow2 magic, else
//! raw) and takes an advisory `flock` so two kemu processes never write one image. `create`
//! makes new images and `img` is the `kemu img` command line.

mod error;
mod file;
pub mod img;
mod lock;
pub mod qcow2;
pub mod raw;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use error::BlockError;
pub use file::ImageFile;

/// Backing chains deeper than this are refused (also stops a loop of images naming each other).
pub const MAX_BACKING_DEPTH: u32 = 16;

/// An image file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A flat file, byte for byte the disk.
    Raw,
    /// QEMU copy-on-write v2/v3.
    Qcow2,
}

impl Format {
    /// Parses a format name as qemu spells it ("raw", "qcow2").
    pub fn parse(s: &str) -> Result<Format, BlockError> {
        match s {
            "raw" => Ok(Format::Raw),
            "qcow2" => Ok(Format::Qcow2),
            _ => Err(BlockError::Invalid(format!("Unknown file format '{s}'"))),
        }
    }

    /// The qemu name of the format.
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
        }
    }
}

/// A virtual disk: byte-addressed reads and writes inside `size()`.
pub trait BlockDevice: Send + std::fmt::Debug {
    /// Fills `buf` from the disk at `offset`; a request past `size()` is an error.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError>;
    /// Writes `buf` at `offset`; a request past `size()` or on a read-only disk is an error.
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), BlockError>;
    /// Makes `[offset, offset+len)` read as zeros (virtio-blk WRITE_ZEROES / DISCARD). The
    /// default writes zero buffers; formats that can drop or flag clusters override it.
    fn write_zeroes(&mut self, offset: u64, len: u64) -> Result<(), BlockError> {
        const CHUNK: u64 = 64 * 1024;
        let zeros = vec![0u8; CHUNK.min(len) as usize];
        let mut done = 0;
        while done < len {
            let n = CHUNK.min(len - done);
            self.write_at(offset + done, &zeros[..n as usize])?;
            done += n;
        }
        Ok(())
    }
    /// Makes every completed write durable (fsync).
    fn flush(&mut self) -> Result<(), BlockError>;
    /// Virtual disk size in bytes.
    fn size(&self) -> u64;
    /// True when writes are refused.
    fn read_only(&self) -> bool;
    /// The image format.
    fn format(&self) -> Format;
}

/// Checks that `[offset, offset+len)` lies inside a device of `size` bytes.
pub(crate) fn check_range(
    file: &str,
    offset: u64,
    len: usize,
    size: u64,
) -> Result<(), BlockError> {
    let len = len as u64;
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(BlockError::OutOfRange {
            file: file.to_string(),
            offset,
            len,
            size,
        }),
    }
}

/// Guesses an image's format from its first bytes: the qcow2 magic, otherwise raw.
pub fn probe_format(path: &Path) -> Result<Format, BlockError> {
    use std::io::Read;
    let name = path.display().to_string();
    let mut f =
        std::fs::File::open(path).map_err(|e| BlockError::io(&name, "opening the image", e))?;
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match f.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(BlockError::io(&name, "reading the magic", e)),
        }
    }
    Ok(if got == 4 && magic == qcow2::header::MAGIC {
        Format::Qcow2
    } else {
        Format::Raw
    })
}

/// Opens an image, probing the format when `format` is `None`. A qcow2 backing file is opened
/// read-only (path relative to the overlay's directory).
pub fn open_image(
    path: &Path,
    format: Option<Format>,
    read_only: bool,
) -> Result<Box<dyn BlockDevice>, BlockError> {
    open_image_depth(path, format, read_only, 0)
}

pub(crate) fn open_image_depth(
    path: &Path,
    format: Option<Format>,
    read_only: bool,
    depth: u32,
) -> Result<Box<dyn BlockDevice>, BlockError> {
    if depth > MAX_BACKING_DEPTH {
        return Err(BlockError::unsupported(
            &path.display().to_string(),
            format!("backing chain deeper than {MAX_BACKING_DEPTH} images"),
        ));
    }
    let format = match format {
        Some(f) => f,
        None => probe_format(path)?,
    };
    Ok(match format {
        Format::Raw => Box::new(raw::RawImage::open(path, read_only)?),
        Format::Qcow2 => Box::new(qcow2::Qcow2::open_depth(path, read_only, depth)?),
    })
}

/// Creates an empty raw image of `size` bytes (sparse).
pub fn create_raw(path: &Path, size: u64) -> Result<(), BlockError> {
    raw::create(path, size)
}

/// Creates an empty qcow2 v3 image; see [`qcow2::create`].
pub fn create_qcow2(
    path: &Path,
    size: u64,
    cluster_bits: u32,
    backing: Option<(&str, Format)>,
) -> Result<(), BlockError> {
    qcow2::create::create(path, size, cluster_bits, backing)
}

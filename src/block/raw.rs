//! Raw images: the file is the disk, byte for byte. Reads past the file's end but inside the
//! device read zeros (a sparse or short file); every request is checked against the size.

use std::path::Path;

use super::{check_range, BlockDevice, BlockError, Format, ImageFile};

/// An open raw image.
#[derive(Debug)]
pub struct RawImage {
    file: ImageFile,
    size: u64,
}

impl RawImage {
    /// Opens and locks a raw image; its size is the file's length.
    pub fn open(path: &Path, read_only: bool) -> Result<Self, BlockError> {
        let file = ImageFile::open(path, read_only)?;
        let size = file.len;
        Ok(RawImage { file, size })
    }

    /// Grows or shrinks the image to `size` bytes.
    pub fn resize(&mut self, size: u64) -> Result<(), BlockError> {
        self.file.set_len(size)?;
        self.size = size;
        Ok(())
    }

    /// Host bytes the file occupies.
    pub fn disk_usage(&self) -> u64 {
        self.file.disk_usage()
    }
}

impl BlockDevice for RawImage {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_range(&self.file.name, offset, buf.len(), self.size)?;
        self.file.read_zero_fill(offset, buf, "data")
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), BlockError> {
        check_range(&self.file.name, offset, buf.len(), self.size)?;
        self.file.write_all(offset, buf, "data")
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        self.file.sync()
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn read_only(&self) -> bool {
        self.file.read_only
    }

    fn format(&self) -> Format {
        Format::Raw
    }
}

/// Creates (or truncates) a sparse raw image of `size` bytes.
pub fn create(path: &Path, size: u64) -> Result<(), BlockError> {
    let name = path.display().to_string();
    let f = ImageFile::create_locked(path)?;
    f.set_len(size)
        .map_err(|e| BlockError::io(&name, format!("setting the length to {size}"), e))
}

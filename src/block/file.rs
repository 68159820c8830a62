//! `ImageFile`: a host file plus its display name and current length, with positioned reads and
//! writes whose errors say which structure at which offset was being accessed.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::lock::lock_file;
use super::BlockError;

/// An open, locked image file.
#[derive(Debug)]
pub struct ImageFile {
    file: File,
    /// Name used in error messages (the path as the user gave it).
    pub name: String,
    /// Current length in bytes (kept up to date by our own writes).
    pub len: u64,
    /// Opened without write access.
    pub read_only: bool,
    /// Tests: writes left before every write fails, to simulate the process dying mid-update.
    #[cfg(test)]
    pub write_budget: Option<u64>,
}

impl ImageFile {
    /// Opens and locks `path` (exclusive lock when writable, shared otherwise).
    pub fn open(path: &Path, read_only: bool) -> Result<Self, BlockError> {
        let name = path.display().to_string();
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(|e| BlockError::io(&name, "opening the image", e))?;
        lock_file(&file, &name, !read_only)?;
        let len = file
            .metadata()
            .map_err(|e| BlockError::io(&name, "reading the file size", e))?
            .len();
        Ok(ImageFile {
            file,
            name,
            len,
            read_only,
            #[cfg(test)]
            write_budget: None,
        })
    }

    /// Creates `path` (or empties it) under an exclusive lock, so an image in use by another
    /// kemu is never truncated under it. The lock is held until the returned file is closed.
    pub fn create_locked(path: &Path) -> Result<File, BlockError> {
        let name = path.display().to_string();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| BlockError::io(&name, "creating the image", e))?;
        lock_file(&file, &name, true)?;
        file.set_len(0)
            .map_err(|e| BlockError::io(&name, "truncating the image", e))?;
        Ok(file)
    }

    /// Reads exactly `buf.len()` bytes at `off`; short reads (past EOF) are errors.
    pub fn read_exact(&self, off: u64, buf: &mut [u8], what: &str) -> Result<(), BlockError> {
        self.file
            .read_exact_at(buf, off)
            .map_err(|e| BlockError::io(&self.name, format!("reading {what} at 0x{off:x}"), e))
    }

    /// Reads at `off`, filling whatever lies past EOF with zeros.
    pub fn read_zero_fill(&self, off: u64, buf: &mut [u8], what: &str) -> Result<(), BlockError> {
        let avail = self.len.saturating_sub(off).min(buf.len() as u64) as usize;
        let (head, tail) = buf.split_at_mut(avail);
        if !head.is_empty() {
            self.read_exact(off, head, what)?;
        }
        tail.fill(0);
        Ok(())
    }

    /// Writes all of `buf` at `off`, growing the known length.
    pub fn write_all(&mut self, off: u64, buf: &[u8], what: &str) -> Result<(), BlockError> {
        if self.read_only {
            return Err(BlockError::ReadOnly {
                file: self.name.clone(),
                why: "the image is open read-only".into(),
            });
        }
        #[cfg(test)]
        if let Some(b) = self.write_budget.as_mut() {
            if *b == 0 {
                return Err(BlockError::io(
                    &self.name,
                    format!("writing {what} at 0x{off:x}"),
                    std::io::Error::other("injected crash"),
                ));
            }
            *b -= 1;
        }
        self.file
            .write_all_at(buf, off)
            .map_err(|e| BlockError::io(&self.name, format!("writing {what} at 0x{off:x}"), e))?;
        self.len = self.len.max(off + buf.len() as u64);
        Ok(())
    }

    /// Sets the file length (sparse when growing).
    pub fn set_len(&mut self, len: u64) -> Result<(), BlockError> {
        self.file
            .set_len(len)
            .map_err(|e| BlockError::io(&self.name, format!("setting the length to {len}"), e))?;
        self.len = len;
        Ok(())
    }

    /// fsync: data and metadata reach stable storage.
    pub fn sync(&self) -> Result<(), BlockError> {
        if self.read_only {
            return Ok(());
        }
        self.file
            .sync_all()
            .map_err(|e| BlockError::io(&self.name, "flushing (fsync)", e))
    }

    /// Bytes the file really occupies on the host (allocated blocks).
    pub fn disk_usage(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        self.file.metadata().map(|m| m.blocks() * 512).unwrap_or(0)
    }
}

//! Disk images behind `-drive`/`-hda`: opened once per kemu run (so a guest reboot keeps the
//! same images, locks and `-snapshot` overlay), then handed to each power cycle's virtio-blk.
//!
//! Data enters as [`DriveConfig`]s; it leaves as [`SharedDisk`]s, `BlockDevice`s every power
//! cycle can use in turn. With `snapshot`, the image is opened read-only under a throw-away
//! qcow2 overlay in the temporary directory (unlinked as soon as it is open, so nothing is left
//! behind even after a SIGKILL): the guest's writes land there and the image is never written.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::config::DriveConfig;
use super::{lock, MachineError};
use crate::block::{self, BlockDevice, BlockError, Format};

/// Cluster size of the `-snapshot` overlay (64 KiB, qemu-img's default).
const OVERLAY_CLUSTER_BITS: u32 = 16;

/// A disk shared by the power cycles of one run.
#[derive(Debug, Clone)]
pub struct SharedDisk(Arc<Mutex<Box<dyn BlockDevice>>>);

impl BlockDevice for SharedDisk {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        lock(&self.0).read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), BlockError> {
        lock(&self.0).write_at(offset, buf)
    }
    fn write_zeroes(&mut self, offset: u64, len: u64) -> Result<(), BlockError> {
        lock(&self.0).write_zeroes(offset, len)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        lock(&self.0).flush()
    }
    fn size(&self) -> u64 {
        lock(&self.0).size()
    }
    fn read_only(&self) -> bool {
        lock(&self.0).read_only()
    }
    fn format(&self) -> Format {
        lock(&self.0).format()
    }
}

fn drive_err(path: &Path) -> impl FnOnce(BlockError) -> MachineError + '_ {
    move |source| MachineError::Drive {
        path: path.to_path_buf(),
        source,
    }
}

/// Open every drive of the run, in order.
pub fn open_drives(drives: &[DriveConfig]) -> Result<Vec<SharedDisk>, MachineError> {
    drives.iter().map(open_drive).collect()
}

fn open_drive(d: &DriveConfig) -> Result<SharedDisk, MachineError> {
    let format = match d.format {
        Some(f) => f,
        None => {
            let f = block::probe_format(&d.path).map_err(drive_err(&d.path))?;
            if f == Format::Raw {
                log::warn!(
                    "image '{}' was probed as raw (give format=raw to silence this)",
                    d.path.display()
                );
            }
            f
        }
    };
    let disk = if d.snapshot {
        open_overlay(&d.path, format)?
    } else {
        block::open_image(&d.path, Some(format), d.read_only).map_err(drive_err(&d.path))?
    };
    Ok(SharedDisk(Arc::new(Mutex::new(disk))))
}

/// A temporary qcow2 overlay over `path` (opened read-only through the overlay's backing
/// link), already unlinked.
fn open_overlay(path: &Path, format: Format) -> Result<Box<dyn BlockDevice>, MachineError> {
    let size = block::open_image(path, Some(format), true)
        .map_err(drive_err(path))?
        .size();
    let backing = std::fs::canonicalize(path).map_err(|e| MachineError::File {
        what: "cannot resolve disk image",
        path: path.to_path_buf(),
        source: e,
    })?;
    let backing_name = backing.to_str().ok_or_else(|| MachineError::Drive {
        path: path.to_path_buf(),
        source: BlockError::Invalid("-snapshot needs a UTF-8 image path".into()),
    })?;
    let overlay = overlay_path();
    block::create_qcow2(
        &overlay,
        size,
        OVERLAY_CLUSTER_BITS,
        Some((backing_name, format)),
    )
    .map_err(drive_err(&overlay))?;
    let opened = block::open_image(&overlay, Some(Format::Qcow2), false);
    // Whatever happened, the file goes: an open overlay lives on as an unlinked file.
    let _ = std::fs::remove_file(&overlay);
    opened.map_err(drive_err(path))
}

fn overlay_path() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!(
        "kemu-snapshot-{}-{n}-{nanos}.qcow2",
        std::process::id()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::blk::CacheMode;

    fn cfg(path: &Path, snapshot: bool) -> DriveConfig {
        DriveConfig {
            path: path.to_path_buf(),
            format: None,
            read_only: false,
            snapshot,
            cache: CacheMode::default(),
        }
    }

    #[test]
    fn snapshot_overlay_leaves_the_image_alone() {
        let dir = std::env::temp_dir().join(format!("kemu-drive-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("a.raw");
        std::fs::write(&img, vec![0x11u8; 1 << 20]).unwrap();
        {
            let mut disks = open_drives(&[cfg(&img, true)]).unwrap();
            disks[0].write_at(512, &[0xee; 512]).unwrap();
            let mut b = [0u8; 1024];
            disks[0].read_at(0, &mut b).unwrap();
            assert_eq!(b[0], 0x11);
            assert_eq!(b[600], 0xee);
            disks[0].flush().unwrap();
        }
        assert!(std::fs::read(&img).unwrap().iter().all(|&b| b == 0x11));
        // Without -snapshot the write lands.
        {
            let mut disks = open_drives(&[cfg(&img, false)]).unwrap();
            disks[0].write_at(512, &[0xee; 512]).unwrap();
            disks[0].flush().unwrap();
        }
        assert_eq!(std::fs::read(&img).unwrap()[512], 0xee);
        let missing = open_drives(&[cfg(&dir.join("nope.img"), false)]).unwrap_err();
        assert!(missing.to_string().contains("nope.img"), "{missing}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

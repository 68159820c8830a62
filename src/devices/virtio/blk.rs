//! virtio-blk (device type 2) over a [`BlockDevice`]: IN, OUT, FLUSH and GET_ID requests,
//! served synchronously when the driver rings the doorbell.
//!
//! Data enters as descriptor chains: a 16-byte header `{type: u32, reserved: u32, sector: u64}`
//! in the device-readable part, then data (readable for OUT, writable for IN), then one
//! writable status byte at the very end. Framing is free: the header and data may share or
//! split descriptors any way the driver likes. It leaves as disk reads/writes at `sector * 512`,
//! data copied into guest buffers, the status byte (OK, IOERR, UNSUPP) and the used ring.
//!
//! Every guest range is checked against guest RAM *before* the request touches the disk: an
//! OUT whose data lies outside RAM fails with IOERR and leaves the image untouched; an IN into
//! such a buffer fails with IOERR. A chain whose status byte itself is not in RAM gets a used
//! entry of length 0 and nothing else. Host memory stays bounded: data moves in
//! [`CHUNK`]-byte pieces whatever lengths the guest claims.

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use super::{
    read_config_image, Queue, QueueFault, QueueOwnedT, QueueT, VirtioDevice, F_RING_EVENT_IDX,
    F_RING_INDIRECT_DESC, F_VERSION_1,
};
use std::sync::Arc;

use crate::accel::{CodeWatch, GuestRam};
use crate::block::BlockDevice;

/// virtio device type of a block device.
pub const DEVICE_TYPE: u16 = 2;
/// PCI class: mass storage, SCSI (what QEMU's virtio-blk-pci reports).
pub const PCI_CLASS: u32 = 0x01_0000;

/// Feature: `seg_max` is valid.
pub const F_SEG_MAX: u64 = 1 << 2;
/// Feature: the device is read-only.
pub const F_RO: u64 = 1 << 5;
/// Feature: `blk_size` is valid.
pub const F_BLK_SIZE: u64 = 1 << 6;
/// Feature: FLUSH is supported.
pub const F_FLUSH: u64 = 1 << 9;

/// Request type: read sectors.
pub const T_IN: u32 = 0;
/// Request type: write sectors.
pub const T_OUT: u32 = 1;
/// Request type: make completed writes durable.
pub const T_FLUSH: u32 = 4;
/// Request type: the device ID string (20 bytes, NUL-padded).
pub const T_GET_ID: u32 = 8;

/// Status: success.
pub const S_OK: u8 = 0;
/// Status: the request failed.
pub const S_IOERR: u8 = 1;
/// Status: unknown request type.
pub const S_UNSUPP: u8 = 2;

/// Sector size of the request header's `sector` field.
pub const SECTOR_SIZE: u64 = 512;
/// The one queue's maximum size.
pub const QUEUE_SIZE: u16 = 256;
/// Largest piece of data copied at once between guest and disk.
pub const CHUNK: usize = 128 * 1024;
/// Length of the GET_ID string.
pub const ID_LEN: usize = 20;
/// Size of the request header.
const HEADER_LEN: u64 = 16;

/// How the guest's flushes and writes reach the host disk (`-drive cache=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// Writes go to the host page cache; FLUSH syncs (`writeback`, `none`: the default).
    #[default]
    Writeback,
    /// Every write is synced before it completes (`writethrough`, `directsync`).
    Writethrough,
    /// FLUSH does nothing: fast, and unsafe if the host crashes (`unsafe`).
    Unsafe,
}

/// A virtio block device.
pub struct VirtioBlk {
    disk: Box<dyn BlockDevice>,
    read_only: bool,
    cache: CacheMode,
    id: [u8; ID_LEN],
    buf: Vec<u8>,
    /// Told about every guest-RAM range a request may have written (translated code there
    /// must be checked again).
    dma: Option<Arc<CodeWatch>>,
}

impl std::fmt::Debug for VirtioBlk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioBlk")
            .field("disk", &self.disk)
            .field("read_only", &self.read_only)
            .finish()
    }
}

/// A guest range: address and length.
type Seg = (u64, u64);

impl VirtioBlk {
    /// A device over `disk`; `read_only` also refuses writes the image would allow. `id` is what
    /// GET_ID returns (truncated to 20 bytes).
    pub fn new(disk: Box<dyn BlockDevice>, read_only: bool, cache: CacheMode, id: &str) -> Self {
        let mut idb = [0u8; ID_LEN];
        let n = id.len().min(ID_LEN);
        idb[..n].copy_from_slice(&id.as_bytes()[..n]);
        let read_only = read_only || disk.read_only();
        Self {
            disk,
            read_only,
            cache,
            id: idb,
            buf: Vec::new(),
            dma: None,
        }
    }

    /// Announce the guest RAM each request writes to `watch`.
    pub fn announcing_dma_to(mut self, watch: Arc<CodeWatch>) -> Self {
        self.dma = Some(watch);
        self
    }

    fn config_image(&self) -> [u8; 0x24] {
        let mut b = [0u8; 0x24];
        b[0..8].copy_from_slice(&(self.disk.size() / SECTOR_SIZE).to_le_bytes());
        // seg_max: the chain also carries the header and the status.
        b[0x0c..0x10].copy_from_slice(&u32::from(QUEUE_SIZE - 2).to_le_bytes());
        b[0x14..0x18].copy_from_slice(&(SECTOR_SIZE as u32).to_le_bytes());
        b[0x20] = u8::from(self.cache != CacheMode::Writethrough);
        b
    }

    /// Serve one chain; returns the bytes written into its writable part.
    fn serve(&mut self, descs: &[virtio_queue::desc::split::Descriptor], mem: &GuestRam) -> u32 {
        let mut readable = Vec::new();
        let mut writable: Vec<Seg> = Vec::new();
        let mut misordered = false;
        for d in descs {
            let seg = (d.addr().0, u64::from(d.len()));
            if d.is_write_only() {
                writable.push(seg);
            } else {
                misordered |= !writable.is_empty();
                readable.push(seg);
            }
        }
        // The status byte: the last byte of the writable part.
        while writable.last().is_some_and(|s| s.1 == 0) {
            writable.pop();
        }
        let Some(last) = writable.last_mut() else {
            log::debug!("virtio-blk: request without a status byte");
            return 0;
        };
        last.1 -= 1;
        let status_addr = last.0.wrapping_add(last.1);
        if !in_ram(mem, (status_addr, 1)) {
            log::debug!("virtio-blk: status byte at {status_addr:#x} is outside RAM");
            return 0;
        }
        let (status, written) = if misordered {
            (S_IOERR, 0)
        } else {
            self.execute(&readable, &writable, mem)
        };
        if let Some(watch) = &self.dma {
            for &(addr, len) in &writable {
                watch.wrote(addr, len);
            }
        }
        if mem.write_obj(status, GuestAddress(status_addr)).is_err() {
            return 0;
        }
        (written + 1).min(u64::from(u32::MAX)) as u32
    }

    /// Run the request; returns its status and the data bytes written to the guest.
    fn execute(&mut self, readable: &[Seg], writable: &[Seg], mem: &GuestRam) -> (u8, u64) {
        let (header, out_data) = split(readable, HEADER_LEN);
        if total(&header) < HEADER_LEN || !header.iter().all(|&s| in_ram(mem, s)) {
            return (S_IOERR, 0);
        }
        let mut h = [0u8; HEADER_LEN as usize];
        if gather(mem, &header, &mut h).is_err() {
            return (S_IOERR, 0);
        }
        let kind = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let sector = u64::from_le_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]]);
        match kind {
            T_IN => self.read(sector, writable, mem),
            T_OUT => (self.write(sector, &out_data, mem), 0),
            T_FLUSH => (self.flush(), 0),
            T_GET_ID => self.get_id(writable, mem),
            _ => (S_UNSUPP, 0),
        }
    }

    /// The byte range a data transfer of `len` bytes at `sector` covers, if valid.
    fn disk_range(&self, sector: u64, len: u64) -> Option<u64> {
        let start = sector.checked_mul(SECTOR_SIZE)?;
        let end = start.checked_add(len)?;
        (len.is_multiple_of(SECTOR_SIZE) && end <= self.disk.size()).then_some(start)
    }

    fn read(&mut self, sector: u64, segs: &[Seg], mem: &GuestRam) -> (u8, u64) {
        let Some(mut pos) = self.disk_range(sector, total(segs)) else {
            return (S_IOERR, 0);
        };
        if !segs.iter().all(|&s| in_ram(mem, s)) {
            return (S_IOERR, 0);
        }
        let mut written = 0;
        for &(addr, len) in segs {
            let mut done = 0;
            while done < len {
                let n = (len - done).min(CHUNK as u64) as usize;
                self.buf.resize(n, 0);
                if let Err(e) = self.disk.read_at(pos, &mut self.buf[..n]) {
                    log::warn!("virtio-blk: read at {pos:#x}: {e}");
                    return (S_IOERR, written);
                }
                if mem
                    .write_slice(&self.buf[..n], GuestAddress(addr + done))
                    .is_err()
                {
                    return (S_IOERR, written);
                }
                done += n as u64;
                pos += n as u64;
                written += n as u64;
            }
        }
        (S_OK, written)
    }

    fn write(&mut self, sector: u64, segs: &[Seg], mem: &GuestRam) -> u8 {
        if self.read_only {
            return S_IOERR;
        }
        let Some(mut pos) = self.disk_range(sector, total(segs)) else {
            return S_IOERR;
        };
        // All data must be readable before the first byte reaches the disk.
        if !segs.iter().all(|&s| in_ram(mem, s)) {
            return S_IOERR;
        }
        for &(addr, len) in segs {
            let mut done = 0;
            while done < len {
                let n = (len - done).min(CHUNK as u64) as usize;
                self.buf.resize(n, 0);
                if mem
                    .read_slice(&mut self.buf[..n], GuestAddress(addr + done))
                    .is_err()
                {
                    return S_IOERR;
                }
                if let Err(e) = self.disk.write_at(pos, &self.buf[..n]) {
                    log::warn!("virtio-blk: write at {pos:#x}: {e}");
                    return S_IOERR;
                }
                done += n as u64;
                pos += n as u64;
            }
        }
        if self.cache == CacheMode::Writethrough {
            return self.flush();
        }
        S_OK
    }

    fn flush(&mut self) -> u8 {
        if self.cache == CacheMode::Unsafe {
            return S_OK;
        }
        match self.disk.flush() {
            Ok(()) => S_OK,
            Err(e) => {
                log::warn!("virtio-blk: flush: {e}");
                S_IOERR
            }
        }
    }

    fn get_id(&mut self, segs: &[Seg], mem: &GuestRam) -> (u8, u64) {
        let (dest, _) = split(segs, ID_LEN as u64);
        if !dest.iter().all(|&s| in_ram(mem, s)) {
            return (S_IOERR, 0);
        }
        let mut off = 0usize;
        for &(addr, len) in &dest {
            let len = len as usize;
            if mem
                .write_slice(&self.id[off..off + len], GuestAddress(addr))
                .is_err()
            {
                return (S_IOERR, off as u64);
            }
            off += len;
        }
        (S_OK, off as u64)
    }
}

/// Whether a whole guest range is RAM (no overflow, no gap between regions).
fn in_ram(mem: &GuestRam, (addr, len): Seg) -> bool {
    if len == 0 {
        return true;
    }
    addr.checked_add(len).is_some()
        && usize::try_from(len)
            .is_ok_and(|l| GuestMemoryBackend::check_range(mem, GuestAddress(addr), l))
}

fn total(segs: &[Seg]) -> u64 {
    segs.iter().fold(0u64, |a, s| a.saturating_add(s.1))
}

/// The first `n` bytes of a segment list and the rest.
fn split(segs: &[Seg], n: u64) -> (Vec<Seg>, Vec<Seg>) {
    let (mut head, mut rest) = (Vec::new(), Vec::new());
    let mut need = n;
    for &(addr, len) in segs {
        if need == 0 {
            rest.push((addr, len));
        } else if len <= need {
            head.push((addr, len));
            need -= len;
        } else {
            head.push((addr, need));
            rest.push((addr.wrapping_add(need), len - need));
            need = 0;
        }
    }
    (head, rest)
}

/// Copy a (checked, small) segment list out of guest RAM into `out`.
fn gather(mem: &GuestRam, segs: &[Seg], out: &mut [u8]) -> Result<(), vm_memory::GuestMemoryError> {
    let mut off = 0usize;
    for &(addr, len) in segs {
        let len = len as usize;
        mem.read_slice(&mut out[off..off + len], GuestAddress(addr))?;
        off += len;
    }
    Ok(())
}

impl VirtioDevice for VirtioBlk {
    fn device_type(&self) -> u16 {
        DEVICE_TYPE
    }

    fn pci_class(&self) -> u32 {
        PCI_CLASS
    }

    fn features(&self) -> u64 {
        let ro = if self.read_only { F_RO } else { 0 };
        F_VERSION_1
            | F_RING_INDIRECT_DESC
            | F_RING_EVENT_IDX
            | F_SEG_MAX
            | F_BLK_SIZE
            | F_FLUSH
            | ro
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE]
    }

    fn config_read(&self, offset: u64, data: &mut [u8]) {
        read_config_image(&self.config_image(), offset, data);
    }

    fn process_queue(
        &mut self,
        index: usize,
        queue: &mut Queue,
        mem: &GuestRam,
    ) -> Result<bool, QueueFault> {
        let fault = |what: String| QueueFault { queue: index, what };
        let mut used = false;
        loop {
            queue
                .disable_notification(mem)
                .map_err(|e| fault(format!("disabling notifications: {e}")))?;
            loop {
                let chain = queue
                    .iter(mem)
                    .map_err(|e| fault(format!("reading the available ring: {e}")))?
                    .next();
                let Some(chain) = chain else { break };
                let head = chain.head_index();
                let descs: Vec<_> = chain.collect();
                let len = self.serve(&descs, mem);
                queue
                    .add_used(mem, head, len)
                    .map_err(|e| fault(format!("adding to the used ring: {e}")))?;
                used = true;
            }
            let more = queue
                .enable_notification(mem)
                .map_err(|e| fault(format!("enabling notifications: {e}")))?;
            if !more {
                break;
            }
        }
        if !used {
            return Ok(false);
        }
        queue
            .needs_notification(mem)
            .map_err(|e| fault(format!("reading used_event: {e}")))
    }
}

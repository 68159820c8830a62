//! virtio-blk through the whole PCI transport, with a driver written in the test: rings and
//! buffers in a small guest RAM, register accesses through the BAR, a disk in memory.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use vm_memory::{Bytes, GuestAddress};

use super::blk::{CacheMode, VirtioBlk, S_IOERR, S_OK, S_UNSUPP, T_FLUSH, T_GET_ID, T_IN, T_OUT};
use super::pci::{VirtioPci, COMMON_OFFSET, DEVICE_OFFSET, ISR_OFFSET, NOTIFY_OFFSET};
use super::{STATUS_DEVICE_NEEDS_RESET, STATUS_DRIVER_OK, STATUS_FEATURES_OK};
use crate::accel::GuestRam;
use crate::block::{BlockDevice, BlockError, Format};
use crate::devices::IrqLine;

const RAM: u64 = 0x10000;
const DESC: u64 = 0x1000;
const AVAIL: u64 = 0x2000;
const USED: u64 = 0x3000;
const HDR: u64 = 0x4000;
const STATUS: u64 = 0x4100;
const BUF: u64 = 0x5000;
const QSIZE: u16 = 8;
const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;

#[derive(Debug, Clone)]
struct MemDisk {
    data: Arc<Mutex<Vec<u8>>>,
    ro: bool,
}

impl BlockDevice for MemDisk {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let d = self.data.lock().unwrap();
        buf.copy_from_slice(&d[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), BlockError> {
        let mut d = self.data.lock().unwrap();
        d[offset as usize..offset as usize + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(())
    }
    fn size(&self) -> u64 {
        self.data.lock().unwrap().len() as u64
    }
    fn read_only(&self) -> bool {
        self.ro
    }
    fn format(&self) -> Format {
        Format::Raw
    }
}

#[derive(Default)]
struct Line(AtomicBool);

impl IrqLine for Line {
    fn set_level(&self, level: bool) {
        self.0.store(level, Ordering::SeqCst);
    }
}

struct Rig {
    dev: VirtioPci,
    mem: Arc<GuestRam>,
    irq: Arc<Line>,
    disk: Arc<Mutex<Vec<u8>>>,
    avail_idx: u16,
}

impl Rig {
    fn new(read_only: bool) -> Self {
        let mem = Arc::new(GuestRam::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap());
        let disk = Arc::new(Mutex::new(
            (0..8192u32).map(|i| i as u8).collect::<Vec<_>>(),
        ));
        let blk = VirtioBlk::new(
            Box::new(MemDisk {
                data: disk.clone(),
                ro: false,
            }),
            read_only,
            CacheMode::Writeback,
            "test-disk",
        );
        let irq = Arc::new(Line::default());
        let dev = VirtioPci::new(Box::new(blk), irq.clone(), 11, mem.clone()).unwrap();
        Rig {
            dev,
            mem,
            irq,
            disk,
            avail_idx: 0,
        }
    }

    fn w(&mut self, off: u64, v: &[u8]) {
        self.dev.bar_write(COMMON_OFFSET + off, v);
    }

    fn status(&mut self) -> u8 {
        let mut b = [0u8];
        self.dev.bar_read(COMMON_OFFSET + 0x14, &mut b);
        b[0]
    }

    /// Negotiate VERSION_1 (+ `low` feature bits) and set up queue 0 at `used`.
    fn start(&mut self, low: u32, used: u64) {
        self.w(0x14, &[0]);
        self.w(0x14, &[3]);
        self.w(0x08, &1u32.to_le_bytes());
        self.w(0x0c, &1u32.to_le_bytes());
        self.w(0x08, &0u32.to_le_bytes());
        self.w(0x0c, &low.to_le_bytes());
        self.w(0x14, &[3 | STATUS_FEATURES_OK]);
        assert_ne!(self.status() & STATUS_FEATURES_OK, 0);
        self.w(0x16, &0u16.to_le_bytes());
        self.w(0x18, &QSIZE.to_le_bytes());
        self.w(0x20, &DESC.to_le_bytes());
        self.w(0x28, &AVAIL.to_le_bytes());
        self.w(0x30, &used.to_le_bytes());
        self.w(0x1c, &1u16.to_le_bytes());
        self.w(0x14, &[3 | STATUS_FEATURES_OK | STATUS_DRIVER_OK]);
    }

    /// Put a chain in descriptors 0.. and ring the doorbell; returns the used length.
    fn submit(&mut self, chain: &[(u64, u32, u16)]) -> u32 {
        for (i, &(addr, len, flags)) in chain.iter().enumerate() {
            let mut d = [0u8; 16];
            d[..8].copy_from_slice(&addr.to_le_bytes());
            d[8..12].copy_from_slice(&len.to_le_bytes());
            let flags = if i + 1 < chain.len() {
                flags | F_NEXT
            } else {
                flags
            };
            d[12..14].copy_from_slice(&flags.to_le_bytes());
            d[14..16].copy_from_slice(&(i as u16 + 1).to_le_bytes());
            self.mem
                .write_slice(&d, GuestAddress(DESC + 16 * i as u64))
                .unwrap();
        }
        let slot = u64::from(self.avail_idx % QSIZE);
        self.mem
            .write_obj(0u16, GuestAddress(AVAIL + 4 + 2 * slot))
            .unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.mem
            .write_obj(self.avail_idx, GuestAddress(AVAIL + 2))
            .unwrap();
        self.dev.bar_write(NOTIFY_OFFSET, &0u16.to_le_bytes());
        let used_idx: u16 = self.mem.read_obj(GuestAddress(USED + 2)).unwrap();
        assert_eq!(used_idx, self.avail_idx, "request not completed");
        let slot = u64::from((used_idx.wrapping_sub(1)) % QSIZE);
        self.mem
            .read_obj(GuestAddress(USED + 4 + 8 * slot + 4))
            .unwrap()
    }

    fn header(&self, kind: u32, sector: u64) {
        let mut h = [0u8; 16];
        h[..4].copy_from_slice(&kind.to_le_bytes());
        h[8..].copy_from_slice(&sector.to_le_bytes());
        self.mem.write_slice(&h, GuestAddress(HDR)).unwrap();
        self.mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
    }

    fn req_status(&self) -> u8 {
        self.mem.read_obj(GuestAddress(STATUS)).unwrap()
    }

    fn isr(&mut self) -> u8 {
        let mut b = [0u8];
        self.dev.bar_read(ISR_OFFSET, &mut b);
        b[0]
    }
}

#[test]
fn read_write_flush_and_id() {
    let mut r = Rig::new(false);
    r.start(0, USED);
    let mut cap = [0u8; 8];
    r.dev.bar_read(DEVICE_OFFSET, &mut cap);
    assert_eq!(u64::from_le_bytes(cap), 16);

    // OUT with the header and the data in one descriptor (free framing).
    let data: Vec<u8> = (0..512).map(|i| (i * 3) as u8).collect();
    r.header(T_OUT, 3);
    r.mem.write_slice(&data, GuestAddress(HDR + 16)).unwrap();
    let n = r.submit(&[(HDR, 16 + 512, 0), (STATUS, 1, F_WRITE)]);
    assert_eq!((n, r.req_status()), (1, S_OK));
    assert_eq!(&r.disk.lock().unwrap()[3 * 512..4 * 512], &data[..]);
    assert!(r.irq.0.load(Ordering::SeqCst));
    assert_eq!(r.isr(), 1);
    assert!(
        !r.irq.0.load(Ordering::SeqCst),
        "reading the ISR lowers INTx"
    );
    assert_eq!(r.isr(), 0);

    // IN split over two buffers, data and status in one descriptor.
    r.header(T_IN, 2);
    let n = r.submit(&[(HDR, 16, 0), (BUF, 700, F_WRITE), (BUF + 700, 325, F_WRITE)]);
    assert_eq!(n, 1025);
    let status: u8 = r.mem.read_obj(GuestAddress(BUF + 1024)).unwrap();
    assert_eq!(status, S_OK);
    let mut got = vec![0u8; 1024];
    r.mem.read_slice(&mut got, GuestAddress(BUF)).unwrap();
    assert_eq!(got, r.disk.lock().unwrap()[1024..2048]);

    r.header(T_FLUSH, 0);
    assert_eq!(r.submit(&[(HDR, 16, 0), (STATUS, 1, F_WRITE)]), 1);
    assert_eq!(r.req_status(), S_OK);

    r.header(T_GET_ID, 0);
    assert_eq!(
        r.submit(&[(HDR, 16, 0), (BUF, 20, F_WRITE), (STATUS, 1, F_WRITE)]),
        21
    );
    let mut id = [0u8; 9];
    r.mem.read_slice(&mut id, GuestAddress(BUF)).unwrap();
    assert_eq!(&id, b"test-disk");
}

#[test]
fn bad_requests_fail_without_touching_the_disk() {
    let mut r = Rig::new(false);
    r.start(0, USED);
    let before = r.disk.lock().unwrap().clone();
    let cases: [(u32, u64, u64, u32, u8); 5] = [
        (T_OUT, 0, 0x4_0000_0000, 512, S_IOERR), // data outside RAM
        (T_OUT, 0, RAM - 256, 512, S_IOERR),     // data straddling the end of RAM
        (T_OUT, 16, BUF, 512, S_IOERR),          // past the capacity
        (T_OUT, 0, BUF, 100, S_IOERR),           // not whole sectors
        (99, 0, BUF, 512, S_UNSUPP),             // unknown type
    ];
    for (kind, sector, addr, len, want) in cases {
        r.header(kind, sector);
        r.submit(&[(HDR, 16, 0), (addr, len, 0), (STATUS, 1, F_WRITE)]);
        assert_eq!(
            r.req_status(),
            want,
            "type {kind} sector {sector} {addr:#x}+{len}"
        );
    }
    // IN into a wild buffer, and a header outside RAM.
    r.header(T_IN, 0);
    r.submit(&[
        (HDR, 16, 0),
        (0x4_0000_0000, 512, F_WRITE),
        (STATUS, 1, F_WRITE),
    ]);
    assert_eq!(r.req_status(), S_IOERR);
    r.header(T_IN, 0);
    r.submit(&[
        (u64::MAX - 8, 16, 0),
        (BUF, 512, F_WRITE),
        (STATUS, 1, F_WRITE),
    ]);
    assert_eq!(r.req_status(), S_IOERR);
    // A writable descriptor before a readable one.
    r.header(T_OUT, 0);
    r.submit(&[
        (HDR, 16, 0),
        (BUF, 512, F_WRITE),
        (BUF, 512, 0),
        (STATUS, 1, F_WRITE),
    ]);
    assert_eq!(r.req_status(), S_IOERR);
    // A status byte outside RAM: completed with length 0, nothing else.
    r.header(T_OUT, 0);
    let n = r.submit(&[(HDR, 16, 0), (BUF, 512, 0), (RAM + 5, 1, F_WRITE)]);
    assert_eq!(n, 0);
    assert_eq!(*r.disk.lock().unwrap(), before);
}

#[test]
fn read_only_refuses_writes_and_says_so() {
    let mut r = Rig::new(true);
    let mut f = [0u8; 4];
    r.dev.bar_read(COMMON_OFFSET + 4, &mut f);
    assert_ne!(
        u32::from_le_bytes(f) & (1 << 5),
        0,
        "VIRTIO_BLK_F_RO offered"
    );
    r.start(0, USED);
    let before = r.disk.lock().unwrap().clone();
    r.header(T_OUT, 0);
    r.submit(&[(HDR, 16, 0), (BUF, 512, 0), (STATUS, 1, F_WRITE)]);
    assert_eq!(r.req_status(), S_IOERR);
    assert_eq!(*r.disk.lock().unwrap(), before);
}

#[test]
fn event_idx_keeps_notifications_flowing() {
    let mut r = Rig::new(false);
    r.start(1 << 29, USED);
    for _ in 0..20 {
        r.header(T_FLUSH, 0);
        r.submit(&[(HDR, 16, 0), (STATUS, 1, F_WRITE)]);
        assert_eq!(r.req_status(), S_OK);
        // The device asks to hear about the next buffer (avail_event = next index).
        let avail_event: u16 = r
            .mem
            .read_obj(GuestAddress(USED + 4 + 8 * u64::from(QSIZE)))
            .unwrap();
        assert_eq!(avail_event, r.avail_idx);
    }
}

#[test]
fn rings_outside_ram_need_a_reset() {
    let mut r = Rig::new(false);
    r.start(0, RAM - 8);
    assert_ne!(r.status() & STATUS_DEVICE_NEEDS_RESET, 0);
    assert_eq!(r.isr() & super::ISR_CONFIG, super::ISR_CONFIG);
    // A reset clears it and the device works again.
    r.start(0, USED);
    assert_eq!(r.status() & STATUS_DEVICE_NEEDS_RESET, 0);
    r.header(T_FLUSH, 0);
    r.submit(&[(HDR, 16, 0), (STATUS, 1, F_WRITE)]);
    assert_eq!(r.req_status(), S_OK);
}

#[test]
fn state_survives_a_snapshot_round_trip() {
    let mut r = Rig::new(false);
    r.start(0, USED);
    r.header(T_FLUSH, 0);
    r.submit(&[(HDR, 16, 0), (STATUS, 1, F_WRITE)]);
    let saved = r.dev.state();
    assert_eq!(saved.isr, 1);
    // A new device over the same RAM and disk (a restored machine) goes on from there.
    let blk = VirtioBlk::new(
        Box::new(MemDisk {
            data: r.disk.clone(),
            ro: false,
        }),
        false,
        CacheMode::Writeback,
        "x",
    );
    let irq = Arc::new(Line::default());
    let mut dev = VirtioPci::new(Box::new(blk), irq.clone(), 11, r.mem.clone()).unwrap();
    dev.restore(&saved).unwrap();
    assert!(
        irq.0.load(Ordering::SeqCst),
        "INTx follows the restored ISR"
    );
    let mut r2 = Rig {
        dev,
        mem: r.mem.clone(),
        irq,
        disk: r.disk.clone(),
        avail_idx: r.avail_idx,
    };
    assert_eq!(r2.status() & STATUS_DRIVER_OK, STATUS_DRIVER_OK);
    r2.header(T_FLUSH, 0);
    r2.submit(&[(HDR, 16, 0), (STATUS, 1, F_WRITE)]);
    assert_eq!(r2.req_status(), S_OK);
    // A state with another queue count is refused.
    let mut bad = saved.clone();
    bad.common.queues.clear();
    assert!(r2.dev.restore(&bad).is_err());
}

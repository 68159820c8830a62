//! QEMU's firmware configuration device (fw_cfg), the I/O-port interface: a 16-bit selector at
//! [`FW_CFG_PORT_SEL`] (0x510) and a byte-wide data port at [`FW_CFG_PORT_DATA`] (0x511).
//!
//! The machine fills the device before the guest runs ([`FwCfg::add_bytes`],
//! [`FwCfg::add_file`], ...). The guest writes a key to the selector (this rewinds the read
//! position to 0) and then reads the item's bytes one at a time from the data port; reading
//! past the end returns 0, as QEMU does. Writes to the data port are ignored (QEMU only accepts
//! them through DMA). Numeric items are little-endian; the file directory (key
//! [`FW_CFG_FILE_DIR`]) is big-endian, both as in QEMU. The DMA interface (port 0x514) is not
//! implemented, and [`FW_CFG_ID`] says so (bit 1 clear).

use std::collections::BTreeMap;

use super::BusDevice;

/// The selector port.
pub const FW_CFG_PORT_SEL: u16 = 0x510;
/// The data port.
pub const FW_CFG_PORT_DATA: u16 = 0x511;
/// Ports the device decodes (selector and data).
pub const FW_CFG_LEN: u64 = 2;

/// "QEMU".
pub const FW_CFG_SIGNATURE: u16 = 0x00;
/// Interface bits: 1 = traditional I/O interface, 2 = DMA.
pub const FW_CFG_ID: u16 = 0x01;
/// Guest RAM size in bytes (u64).
pub const FW_CFG_RAM_SIZE: u16 = 0x03;
/// Graphics off (u16).
pub const FW_CFG_NOGRAPHIC: u16 = 0x04;
/// Number of CPUs at boot (u16).
pub const FW_CFG_NB_CPUS: u16 = 0x05;
/// Load address of the kernel (u32).
pub const FW_CFG_KERNEL_ADDR: u16 = 0x07;
/// Size of the kernel (u32).
pub const FW_CFG_KERNEL_SIZE: u16 = 0x08;
/// Address of the kernel command line (u32, legacy name `KERNEL_CMDLINE`).
pub const FW_CFG_KERNEL_CMDLINE: u16 = 0x09;
/// Load address of the initrd (u32).
pub const FW_CFG_INITRD_ADDR: u16 = 0x0a;
/// Size of the initrd (u32).
pub const FW_CFG_INITRD_SIZE: u16 = 0x0b;
/// Boot device (u16).
pub const FW_CFG_BOOT_DEVICE: u16 = 0x0c;
/// Maximum number of CPUs (u16).
pub const FW_CFG_MAX_CPUS: u16 = 0x0f;
/// The kernel entry point (u32).
pub const FW_CFG_KERNEL_ENTRY: u16 = 0x10;
/// The kernel image.
pub const FW_CFG_KERNEL_DATA: u16 = 0x11;
/// The initrd.
pub const FW_CFG_INITRD_DATA: u16 = 0x12;
/// Address of the command line (u32).
pub const FW_CFG_CMDLINE_ADDR: u16 = 0x13;
/// Size of the command line including its NUL (u32).
pub const FW_CFG_CMDLINE_SIZE: u16 = 0x14;
/// The command line, NUL-terminated.
pub const FW_CFG_CMDLINE_DATA: u16 = 0x15;
/// The file directory.
pub const FW_CFG_FILE_DIR: u16 = 0x19;
/// The first key handed to files.
pub const FW_CFG_FILE_FIRST: u16 = 0x20;
/// Keys past this are not files (QEMU's `FW_CFG_FILE_SLOTS` default).
const FW_CFG_FILE_LAST: u16 = 0x3fff;
/// x86: the e820 table (`struct e820_entry[]`, legacy key; modern guests use `etc/e820`).
pub const FW_CFG_E820_TABLE: u16 = 0x8003;
/// Selector bit asking for write access (masked off on selection).
const FW_CFG_WRITE_CHANNEL: u16 = 0x4000;
/// Bytes a file name may take in a directory entry, NUL included.
pub const FILE_NAME_LEN: usize = 56;

/// Errors filling the device.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FwCfgError {
    /// A file name that does not fit a directory entry.
    #[error("fw_cfg file name '{0}' is empty or longer than 55 bytes")]
    BadName(String),
    /// Two files with one name.
    #[error("fw_cfg file '{0}' already exists")]
    Duplicate(String),
    /// Every file key is taken.
    #[error("no fw_cfg file key left for '{0}'")]
    Full(String),
    /// An item larger than the 32-bit size field of a directory entry.
    #[error("fw_cfg item '{name}' is {len} bytes, more than a 32-bit size")]
    TooLarge {
        /// The item.
        name: String,
        /// Its size.
        len: usize,
    },
}

/// The fw_cfg device: its items and the guest's read position.
#[derive(Debug, Clone, Default)]
pub struct FwCfg {
    items: BTreeMap<u16, Vec<u8>>,
    /// Named files, in the order they were added: (name, key).
    files: Vec<(String, u16)>,
    selected: u16,
    offset: usize,
}

impl FwCfg {
    /// A device with the signature and interface ID items, no others.
    pub fn new() -> Self {
        let mut d = FwCfg::default();
        d.items.insert(FW_CFG_SIGNATURE, b"QEMU".to_vec());
        d.items.insert(FW_CFG_ID, 1u32.to_le_bytes().to_vec());
        d.rebuild_dir();
        d
    }

    /// Set item `key` to `data` (replacing what it held).
    pub fn add_bytes(&mut self, key: u16, data: Vec<u8>) {
        self.items.insert(key, data);
    }

    /// Set item `key` to a little-endian u16.
    pub fn add_u16(&mut self, key: u16, v: u16) {
        self.add_bytes(key, v.to_le_bytes().to_vec());
    }

    /// Set item `key` to a little-endian u32.
    pub fn add_u32(&mut self, key: u16, v: u32) {
        self.add_bytes(key, v.to_le_bytes().to_vec());
    }

    /// Set item `key` to a little-endian u64.
    pub fn add_u64(&mut self, key: u16, v: u64) {
        self.add_bytes(key, v.to_le_bytes().to_vec());
    }

    /// Add a named file (e.g. `etc/e820`); returns its key.
    pub fn add_file(&mut self, name: &str, data: Vec<u8>) -> Result<u16, FwCfgError> {
        if name.is_empty() || name.len() >= FILE_NAME_LEN || name.contains('\0') {
            return Err(FwCfgError::BadName(name.to_string()));
        }
        if u32::try_from(data.len()).is_err() {
            return Err(FwCfgError::TooLarge {
                name: name.to_string(),
                len: data.len(),
            });
        }
        if self.files.iter().any(|(n, _)| n == name) {
            return Err(FwCfgError::Duplicate(name.to_string()));
        }
        let key = FW_CFG_FILE_FIRST + self.files.len() as u16;
        if key > FW_CFG_FILE_LAST {
            return Err(FwCfgError::Full(name.to_string()));
        }
        self.items.insert(key, data);
        self.files.push((name.to_string(), key));
        self.rebuild_dir();
        Ok(key)
    }

    /// The bytes of item `key`, if it exists.
    pub fn item(&self, key: u16) -> Option<&[u8]> {
        self.items.get(&key).map(Vec::as_slice)
    }

    /// The key of file `name`, if it exists.
    pub fn file_key(&self, name: &str) -> Option<u16> {
        self.files.iter().find(|(n, _)| n == name).map(|(_, k)| *k)
    }

    /// The directory: a big-endian count, then per file its size (be32), key (be16), two
    /// reserved bytes and its NUL-padded name. QEMU sorts it by name; so do we.
    fn rebuild_dir(&mut self) {
        let mut files = self.files.clone();
        files.sort();
        let mut dir = (files.len() as u32).to_be_bytes().to_vec();
        for (name, key) in &files {
            let size = self.items.get(key).map_or(0, Vec::len) as u32;
            dir.extend_from_slice(&size.to_be_bytes());
            dir.extend_from_slice(&key.to_be_bytes());
            dir.extend_from_slice(&[0, 0]);
            let mut n = [0u8; FILE_NAME_LEN];
            n[..name.len()].copy_from_slice(name.as_bytes());
            dir.extend_from_slice(&n);
        }
        self.items.insert(FW_CFG_FILE_DIR, dir);
    }

    /// Select item `key` and rewind (a selector write).
    pub fn select(&mut self, key: u16) {
        self.selected = key & !FW_CFG_WRITE_CHANNEL;
        self.offset = 0;
    }

    /// The next data byte of the selected item (0 past its end or for an absent item).
    pub fn read_byte(&mut self) -> u8 {
        let b = self
            .items
            .get(&self.selected)
            .and_then(|d| d.get(self.offset).copied());
        if b.is_some() {
            self.offset += 1;
        }
        b.unwrap_or(0)
    }
}

impl BusDevice for FwCfg {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match offset {
            // The data port: wider reads take consecutive bytes (QEMU's data port is byte-wide;
            // a word read there is the guest's mistake, served generously).
            1 => data.iter_mut().for_each(|b| *b = self.read_byte()),
            _ => data.fill(0),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        // Only a 16-bit write to the selector selects; QEMU rejects other widths there.
        if offset == 0 && data.len() == 2 {
            self.select(u16::from_le_bytes([data[0], data[1]]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_item(d: &mut FwCfg, key: u16, len: usize) -> Vec<u8> {
        d.write(0, &key.to_le_bytes());
        let mut out = vec![0u8; len];
        for b in &mut out {
            let mut one = [0u8];
            d.read(1, &mut one);
            *b = one[0];
        }
        out
    }

    #[test]
    fn signature_id_and_numbers() {
        let mut d = FwCfg::new();
        d.add_u64(FW_CFG_RAM_SIZE, 128 << 20);
        d.add_u16(FW_CFG_NB_CPUS, 2);
        assert_eq!(read_item(&mut d, FW_CFG_SIGNATURE, 4), b"QEMU");
        assert_eq!(read_item(&mut d, FW_CFG_ID, 4), [1, 0, 0, 0]);
        assert_eq!(
            read_item(&mut d, FW_CFG_RAM_SIZE, 8),
            (128u64 << 20).to_le_bytes()
        );
        assert_eq!(read_item(&mut d, FW_CFG_NB_CPUS, 2), [2, 0]);
        // Past the end, and an absent key: zeros.
        assert_eq!(read_item(&mut d, FW_CFG_NB_CPUS, 4), [2, 0, 0, 0]);
        assert_eq!(read_item(&mut d, 0x1234, 2), [0, 0]);
        // Reselecting rewinds; the write-channel bit is ignored for reads.
        assert_eq!(read_item(&mut d, FW_CFG_SIGNATURE | 0x4000, 2), b"QE");
        // A byte write to the selector does nothing.
        d.write(0, &[0x05]);
        let mut b = [0u8; 2];
        d.read(1, &mut b);
        assert_eq!(&b, b"MU");
    }

    #[test]
    fn files_and_directory() {
        let mut d = FwCfg::new();
        let k1 = d.add_file("etc/zz", vec![1, 2, 3]).unwrap();
        let k2 = d.add_file("etc/e820", vec![9; 40]).unwrap();
        assert_eq!((k1, k2), (0x20, 0x21));
        assert_eq!(d.file_key("etc/e820"), Some(0x21));
        assert_eq!(
            d.add_file("etc/zz", vec![]),
            Err(FwCfgError::Duplicate("etc/zz".into()))
        );
        assert!(d.add_file(&"x".repeat(56), vec![]).is_err());
        let dir = read_item(&mut d, FW_CFG_FILE_DIR, 4 + 2 * 64);
        assert_eq!(&dir[..4], &2u32.to_be_bytes());
        // Sorted by name: etc/e820 first.
        assert_eq!(&dir[4..8], &40u32.to_be_bytes());
        assert_eq!(&dir[8..10], &0x21u16.to_be_bytes());
        assert_eq!(&dir[12..20], b"etc/e820");
        assert_eq!(dir[20], 0);
        assert_eq!(&dir[68..72], &3u32.to_be_bytes());
        assert_eq!(&dir[76..82], b"etc/zz");
        assert_eq!(read_item(&mut d, k1, 3), [1, 2, 3]);
    }
}

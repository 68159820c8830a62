//! Booting through firmware: which ROM the boot CPU starts in, where the ROM is mapped, and
//! what the machine tells the firmware through fw_cfg.
//!
//! Data enters as the [`MachineConfig`] (`-bios`, accelerator), the kernel the Rust loaders put
//! in RAM ([`BootSetup`]) and the raw kernel/initrd bytes. It leaves as
//! - a ROM image ([`rom_image`]): kemu's own firmware (`bios/kemu-bios.S`, embedded as
//!   [`KEMU_BIOS`]) or the user's `-bios FILE`, or none for direct kernel boot;
//! - the ROM at `4 GiB - size` (under tcg a read-only device on the MMIO bus; under KVM a
//!   memory slot of its own) and its last 128 KiB copied into RAM just below 1 MiB, as a PC's
//!   low alias ([`map_rom`]);
//! - the fw_cfg device's items ([`fw_cfg`]), among them the boot descriptor
//!   [`BOOT_DESCRIPTOR_FILE`] that kemu's firmware hands over with ([`boot_descriptor`]).
//!
//! The handover contract (also in `bios/README.md`): the machine loads the kernel exactly as
//! for direct boot and describes the entry state in `etc/kemu/boot`, 144 bytes, little-endian:
//!
//! | offset | size | field                                                             |
//! |--------|------|-------------------------------------------------------------------|
//! | 0      | 4    | magic "KBD1" (0x3144424b)                                         |
//! | 4      | 4    | entry mode: 32 (protected mode, paging off) or 64 (long mode)     |
//! | 8      | 8    | entry point (RIP)                                                 |
//! | 16     | 64   | RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI                            |
//! | 80     | 8    | CR3 (64-bit entry; the machine's identity map)                   |
//! | 88     | 2    | CS selector                                                       |
//! | 90     | 2    | data selector (DS, ES, FS, GS, SS)                                |
//! | 92     | 2    | reserved, 0                                                       |
//! | 94     | 10   | GDTR: limit (u16), base (u64), the GDT the loader wrote in RAM    |
//! | 104    | 40   | what is booted, NUL-terminated ASCII, for the firmware's message  |
//!
//! The firmware loads that GDT and those selectors, so the segment caches come out as the
//! direct-boot state has them (the loader encodes the GDT from the same values). What differs
//! from direct boot: TR and LDTR keep their reset values, CR0 lacks nothing the kernels need
//! (PE, ET, NE and, for 64-bit, PG), R8-R15 are zero.

use vm_memory::{Bytes, GuestAddress};

use super::boot::{BootMethod, BootSetup};
use super::config::{AccelKind, FirmwareChoice, KernelSource, MachineConfig};
use crate::accel::{reg, GuestRam};
use crate::devices::fw_cfg::{self as fc, FwCfg, FwCfgError};
use crate::devices::rom::Rom;
use crate::devices::{Bus, BusError};

/// kemu's own firmware, assembled by build.rs from `bios/kemu-bios.S` (64 KiB).
pub const KEMU_BIOS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/bios/kemu-bios.bin"));

/// The fw_cfg file holding the boot descriptor.
pub const BOOT_DESCRIPTOR_FILE: &str = "etc/kemu/boot";
/// The descriptor's magic number ("KBD1").
pub const DESCRIPTOR_MAGIC: u32 = 0x3144_424b;
/// The descriptor's size in bytes.
pub const DESCRIPTOR_LEN: usize = 144;
/// Bytes for the name at the descriptor's end, NUL included.
const NAME_LEN: usize = 40;

/// The ROM ends at 4 GiB.
pub const ROM_END: u64 = 1 << 32;
/// The low alias ends at 1 MiB.
pub const LOW_ALIAS_END: u64 = 0x10_0000;
/// The most of the ROM the low alias shows (0xE0000..0x100000).
pub const LOW_ALIAS_MAX: u64 = 128 << 10;
/// ROM sizes must be a multiple of this (as QEMU asks of `-bios`).
pub const ROM_ALIGN: u64 = 64 << 10;
/// The largest ROM accepted: 8 MiB keeps it clear of the pc-testdev window at 0xFF000000.
pub const ROM_MAX: u64 = 8 << 20;

/// Why the firmware could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    /// The `-bios` file could not be read.
    #[error("cannot read firmware '{path}': {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The ROM has a size the machine cannot map.
    #[error(
        "firmware '{what}' is {len} bytes: it must be a non-zero multiple of 64 KiB, at most 8 MiB"
    )]
    Size {
        /// The ROM's name.
        what: String,
        /// Its size.
        len: u64,
    },
    /// The kernel's entry state is one the descriptor cannot express.
    #[error("boot descriptor: {0}")]
    Descriptor(String),
    /// A fw_cfg item could not be added.
    #[error(transparent)]
    FwCfg(#[from] FwCfgError),
    /// The ROM overlaps another MMIO device.
    #[error("mapping the firmware ROM: {0}")]
    Bus(#[from] BusError),
    /// The low alias could not be written to RAM.
    #[error("copying the firmware to {addr:#x}: {source}")]
    Ram {
        /// Where.
        addr: u64,
        /// What vm-memory said.
        source: vm_memory::GuestMemoryError,
    },
}

/// The ROM to start from for `config`, or `None` for direct kernel boot.
pub fn rom_image(config: &MachineConfig) -> Result<Option<Vec<u8>>, FirmwareError> {
    let (name, bytes) = match &config.firmware {
        FirmwareChoice::None => return Ok(None),
        // The demo guest under tcg goes through the firmware; `-kernel` boots directly unless
        // asked (`-bios kemu`), so its serial output stays what it is under KVM (the
        // differential tests compare the two).
        FirmwareChoice::Auto
            if config.accel == AccelKind::Kvm
                || !matches!(config.kernel, KernelSource::Embedded { .. }) =>
        {
            return Ok(None)
        }
        FirmwareChoice::Auto | FirmwareChoice::Kemu => ("kemu".to_string(), KEMU_BIOS.to_vec()),
        FirmwareChoice::File(path) => {
            let bytes = std::fs::read(path).map_err(|source| FirmwareError::Read {
                path: path.clone(),
                source,
            })?;
            (path.display().to_string(), bytes)
        }
    };
    let len = bytes.len() as u64;
    if len == 0 || !len.is_multiple_of(ROM_ALIGN) || len > ROM_MAX {
        return Err(FirmwareError::Size { what: name, len });
    }
    Ok(Some(bytes))
}

/// Map `rom` at `4 GiB - len`, and copy its last 128 KiB (all of it if smaller) into RAM so
/// that it ends at 1 MiB: the real-mode alias at 0xE0000/0xF0000. The copy is ordinary RAM (as
/// after a BIOS has shadowed itself): guest writes there stick.
///
/// With `in_ram` false (tcg) the top copy is a read-only device on `mmio`: writes are ignored.
/// With `in_ram` true (KVM) it goes into the memory slot [`super::memory::create_ram_with_rom`]
/// made for it: kemu's KVM backend has no read-only slots yet, so writes there stick too.
pub fn map_rom(
    ram: &GuestRam,
    mmio: &mut Bus,
    rom: &[u8],
    in_ram: bool,
) -> Result<(), FirmwareError> {
    let len = rom.len() as u64;
    let top = ROM_END - len;
    if in_ram {
        ram.write_slice(rom, GuestAddress(top))
            .map_err(|source| FirmwareError::Ram { addr: top, source })?;
    } else {
        mmio.insert(
            std::sync::Arc::new(std::sync::Mutex::new(Rom::new(rom.to_vec()))),
            top,
            len,
        )?;
    }
    let alias = len.min(LOW_ALIAS_MAX);
    let addr = LOW_ALIAS_END - alias;
    ram.write_slice(&rom[(len - alias) as usize..], GuestAddress(addr))
        .map_err(|source| FirmwareError::Ram { addr, source })
}

/// What the firmware says it hands over to.
fn method_name(method: BootMethod) -> &'static str {
    match method {
        BootMethod::Linux => "Linux kernel (64-bit boot protocol)",
        BootMethod::Pvh => "PVH kernel",
        BootMethod::Multiboot => "multiboot kernel",
    }
}

/// The boot descriptor for the entry state in `setup` (layout in the module docs).
pub fn boot_descriptor(setup: &BootSetup) -> Result<Vec<u8>, FirmwareError> {
    let s = &setup.bsp;
    const CR0_PG: u64 = 1 << 31;
    let mode: u32 = match (s.code_bitness(), s.cr0 & CR0_PG != 0) {
        (64, _) => 64,
        (32, false) => 32,
        _ => {
            return Err(FirmwareError::Descriptor(format!(
                "the {:?} entry is in {} (paging {}), which the firmware cannot enter",
                setup.method,
                s.mode_name(),
                if s.cr0 & CR0_PG != 0 { "on" } else { "off" }
            )))
        }
    };
    let data = s.ds.selector;
    if [s.es, s.fs, s.gs, s.ss].iter().any(|x| x.selector != data) {
        return Err(FirmwareError::Descriptor(
            "the entry state uses different data selectors in DS/ES/FS/GS/SS".into(),
        ));
    }
    let mut d = Vec::with_capacity(DESCRIPTOR_LEN);
    d.extend_from_slice(&DESCRIPTOR_MAGIC.to_le_bytes());
    d.extend_from_slice(&mode.to_le_bytes());
    d.extend_from_slice(&s.rip.to_le_bytes());
    for r in [
        reg::RAX,
        reg::RCX,
        reg::RDX,
        reg::RBX,
        reg::RSP,
        reg::RBP,
        reg::RSI,
        reg::RDI,
    ] {
        d.extend_from_slice(&s.gpr[r].to_le_bytes());
    }
    d.extend_from_slice(&s.cr3.to_le_bytes());
    d.extend_from_slice(&s.cs.selector.to_le_bytes());
    d.extend_from_slice(&data.to_le_bytes());
    d.extend_from_slice(&0u16.to_le_bytes());
    d.extend_from_slice(&s.gdt.limit.to_le_bytes());
    d.extend_from_slice(&s.gdt.base.to_le_bytes());
    let mut name = [0u8; NAME_LEN];
    let text = method_name(setup.method).as_bytes();
    name[..text.len().min(NAME_LEN - 1)].copy_from_slice(&text[..text.len().min(NAME_LEN - 1)]);
    d.extend_from_slice(&name);
    debug_assert_eq!(d.len(), DESCRIPTOR_LEN);
    Ok(d)
}

/// What the machine knows about the kernel, for fw_cfg.
pub struct KernelInfo<'a> {
    /// The image as given (`-kernel`, or the embedded demo).
    pub image: &'a [u8],
    /// The initrd, if any.
    pub initrd: Option<&'a [u8]>,
    /// Where the loaders put things and how to enter (None: the loader did not run).
    pub setup: Option<&'a BootSetup>,
}

/// The fw_cfg device for `config`: signature, RAM size, CPU counts, e820, the kernel items and,
/// when the machine loaded a kernel, the boot descriptor.
pub fn fw_cfg(config: &MachineConfig, kernel: Option<KernelInfo>) -> Result<FwCfg, FirmwareError> {
    let mut d = FwCfg::new();
    d.add_u64(fc::FW_CFG_RAM_SIZE, config.ram_size);
    let cpus = u16::try_from(config.cpus).unwrap_or(u16::MAX);
    d.add_u16(fc::FW_CFG_NB_CPUS, cpus);
    d.add_u16(fc::FW_CFG_MAX_CPUS, cpus);
    d.add_u16(fc::FW_CFG_NOGRAPHIC, 1);
    let e820: Vec<u8> = super::memory::e820_map(config.ram_size)
        .iter()
        .flat_map(|e| {
            let mut b = e.addr.to_le_bytes().to_vec();
            b.extend_from_slice(&e.size.to_le_bytes());
            b.extend_from_slice(&e.kind.code().to_le_bytes());
            b
        })
        .collect();
    d.add_file("etc/e820", e820)?;
    let Some(k) = kernel else {
        return Ok(d);
    };
    let u32_of = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    d.add_u32(fc::FW_CFG_KERNEL_SIZE, u32_of(k.image.len() as u64));
    d.add_bytes(fc::FW_CFG_KERNEL_DATA, k.image.to_vec());
    let mut cmdline = config.cmdline.as_bytes().to_vec();
    cmdline.push(0);
    d.add_u32(fc::FW_CFG_CMDLINE_SIZE, u32_of(cmdline.len() as u64));
    d.add_bytes(fc::FW_CFG_CMDLINE_DATA, cmdline);
    if let Some(initrd) = k.initrd {
        d.add_u32(fc::FW_CFG_INITRD_SIZE, u32_of(initrd.len() as u64));
        d.add_bytes(fc::FW_CFG_INITRD_DATA, initrd.to_vec());
    }
    if let Some(setup) = k.setup {
        d.add_u32(fc::FW_CFG_KERNEL_ADDR, u32_of(setup.kernel.0));
        d.add_u32(fc::FW_CFG_KERNEL_ENTRY, u32_of(setup.entry));
        d.add_u32(fc::FW_CFG_CMDLINE_ADDR, u32_of(super::memory::CMDLINE_ADDR));
        if let Some((addr, _)) = setup.initrd {
            d.add_u32(fc::FW_CFG_INITRD_ADDR, u32_of(addr));
        }
        d.add_file(BOOT_DESCRIPTOR_FILE, boot_descriptor(setup)?)?;
    }
    Ok(d)
}

/// Whether `config` boots with no kernel at all (`-bios` alone).
pub fn no_kernel(config: &MachineConfig) -> bool {
    config.kernel == KernelSource::None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::boot::{load_kernel, BootConfig};
    use crate::machine::memory::create_ram;

    #[test]
    fn the_embedded_rom_has_its_reset_vector_where_the_cpu_looks() {
        assert_eq!(KEMU_BIOS.len(), 64 << 10);
        // ljmp $0xf000, $0 at offset 0xfff0 (0xFFFFFFF0 once mapped).
        assert_eq!(&KEMU_BIOS[0xfff0..0xfff5], &[0xea, 0x00, 0x00, 0x00, 0xf0]);
    }

    #[test]
    fn auto_picks_the_firmware_for_the_demo_under_tcg_only() {
        let demo = KernelSource::Embedded {
            name: "demo",
            image: crate::guests::demo(),
        };
        let tcg = MachineConfig::new(AccelKind::Tcg, demo.clone());
        assert_eq!(rom_image(&tcg).unwrap().unwrap().len(), 64 << 10);
        let file = MachineConfig::new(AccelKind::Tcg, KernelSource::File("k".into()));
        assert!(rom_image(&file).unwrap().is_none());
        let mut file_kemu = file.clone();
        file_kemu.firmware = FirmwareChoice::Kemu;
        assert!(rom_image(&file_kemu).unwrap().is_some());
        let kvm = MachineConfig::new(AccelKind::Kvm, demo);
        assert!(rom_image(&kvm).unwrap().is_none());
        let mut kvm_bios = kvm.clone();
        kvm_bios.firmware = FirmwareChoice::Kemu;
        assert!(rom_image(&kvm_bios).unwrap().is_some());
        let mut direct = tcg.clone();
        direct.firmware = FirmwareChoice::None;
        assert!(rom_image(&direct).unwrap().is_none());
    }

    #[test]
    fn user_roms_are_size_checked() {
        let dir = std::env::temp_dir().join(format!("kemu-fw-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.rom");
        std::fs::write(&bad, vec![0u8; 1000]).unwrap();
        let mut c = MachineConfig::new(AccelKind::Tcg, KernelSource::None);
        c.firmware = FirmwareChoice::File(bad);
        assert!(matches!(
            rom_image(&c),
            Err(FirmwareError::Size { len: 1000, .. })
        ));
        let good = dir.join("good.rom");
        std::fs::write(&good, vec![0u8; 128 << 10]).unwrap();
        c.firmware = FirmwareChoice::File(good);
        assert_eq!(rom_image(&c).unwrap().unwrap().len(), 128 << 10);
        c.firmware = FirmwareChoice::File(dir.join("missing.rom"));
        assert!(matches!(rom_image(&c), Err(FirmwareError::Read { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn rom_maps_at_the_top_and_below_1_mib() {
        let ram = create_ram(16 << 20).unwrap();
        let mut mmio = Bus::new();
        let mut rom = vec![0u8; 256 << 10];
        rom[0] = 0x11;
        *rom.last_mut().unwrap() = 0x22;
        rom[(128 << 10) - 1] = 0x33;
        rom[128 << 10] = 0x44;
        map_rom(&ram, &mut mmio, &rom, false).unwrap();
        let mut b = [0u8; 1];
        assert!(mmio.read(ROM_END - (256 << 10), &mut b));
        assert_eq!(b[0], 0x11);
        assert!(mmio.read(ROM_END - 1, &mut b));
        assert_eq!(b[0], 0x22);
        // Writes are ignored.
        mmio.write(ROM_END - 1, &[0]);
        mmio.read(ROM_END - 1, &mut b);
        assert_eq!(b[0], 0x22);
        // The last 128 KiB at 0xE0000..0x100000.
        assert_eq!(ram.read_obj::<u8>(GuestAddress(0xe0000)).unwrap(), 0x44);
        assert_eq!(ram.read_obj::<u8>(GuestAddress(0xfffff)).unwrap(), 0x22);
        assert_eq!(ram.read_obj::<u8>(GuestAddress(0xdffff)).unwrap(), 0);

        // The KVM way: a memory slot below 4 GiB holds the top copy.
        let ram = crate::machine::memory::create_ram_with_rom(16 << 20, rom.len() as u64).unwrap();
        let mut mmio = Bus::new();
        map_rom(&ram, &mut mmio, &rom, true).unwrap();
        assert_eq!(ram.read_obj::<u8>(GuestAddress(ROM_END - 1)).unwrap(), 0x22);
        assert_eq!(
            ram.read_obj::<u8>(GuestAddress(ROM_END - (256 << 10)))
                .unwrap(),
            0x11
        );
        assert!(!mmio.read(ROM_END - 1, &mut b));
    }

    #[test]
    fn descriptor_of_a_multiboot_entry() {
        let ram = create_ram(128 << 20).unwrap();
        let cfg = BootConfig {
            ram_size: 128 << 20,
            cpus: 1,
            ..BootConfig::default()
        };
        let setup = load_kernel(&ram, crate::guests::demo(), &cfg).unwrap();
        let d = boot_descriptor(&setup).unwrap();
        assert_eq!(d.len(), DESCRIPTOR_LEN);
        let u32_at = |o: usize| u32::from_le_bytes(d[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(d[o..o + 8].try_into().unwrap());
        let u16_at = |o: usize| u16::from_le_bytes(d[o..o + 2].try_into().unwrap());
        assert_eq!(u32_at(0), DESCRIPTOR_MAGIC);
        assert_eq!(&d[0..4], b"KBD1");
        assert_eq!(u32_at(4), 32);
        assert_eq!(u64_at(8), setup.entry);
        assert_eq!(u64_at(16), 0x2bad_b002, "EAX = the multiboot magic");
        assert_eq!(u64_at(40), setup.bsp.gpr[reg::RBX]);
        assert_eq!(u64_at(48), setup.bsp.gpr[reg::RSP]);
        assert_eq!(u16_at(88), setup.bsp.cs.selector);
        assert_eq!(u16_at(90), setup.bsp.ds.selector);
        assert_eq!(u16_at(94), setup.bsp.gdt.limit);
        assert_eq!(u64_at(96), setup.bsp.gdt.base);
        assert!(d[104..].starts_with(b"multiboot kernel\0"));
    }

    #[test]
    fn fw_cfg_carries_the_machine_and_the_kernel() {
        let ram = create_ram(128 << 20).unwrap();
        let mut config = MachineConfig::new(AccelKind::Tcg, KernelSource::None);
        config.cpus = 3;
        config.cmdline = "hello".into();
        let cfg = BootConfig {
            ram_size: config.ram_size,
            cpus: 3,
            ..BootConfig::default()
        };
        let image = crate::guests::demo();
        let setup = load_kernel(&ram, image, &cfg).unwrap();
        let d = fw_cfg(
            &config,
            Some(KernelInfo {
                image,
                initrd: None,
                setup: Some(&setup),
            }),
        )
        .unwrap();
        assert_eq!(d.item(fc::FW_CFG_NB_CPUS), Some(&[3u8, 0][..]));
        assert_eq!(
            d.item(fc::FW_CFG_RAM_SIZE),
            Some(&(128u64 << 20).to_le_bytes()[..])
        );
        assert_eq!(d.item(fc::FW_CFG_CMDLINE_DATA), Some(&b"hello\0"[..]));
        assert_eq!(
            d.item(fc::FW_CFG_KERNEL_DATA).map(<[u8]>::len),
            Some(image.len())
        );
        let key = d.file_key(BOOT_DESCRIPTOR_FILE).unwrap();
        assert_eq!(d.item(key).map(<[u8]>::len), Some(DESCRIPTOR_LEN));
        let e820 = d.item(d.file_key("etc/e820").unwrap()).unwrap();
        assert_eq!(e820.len() % 20, 0);
        // Without a kernel: no descriptor.
        let bare = fw_cfg(&config, None).unwrap();
        assert!(bare.file_key(BOOT_DESCRIPTOR_FILE).is_none());
    }
}

//! The Linux 64-bit boot protocol for bzImages (Documentation/arch/x86/boot.rst).
//!
//! In: a bzImage (setup sectors + protected-mode kernel) and the boot config. Out: the kernel at
//! 1 MiB, the zero page (`boot_params`) at `ZERO_PAGE_ADDR` with the image's setup header copied
//! in and the loader fields filled (type_of_loader, heap, command line, initrd, e820, RSDP), and
//! the BSP in 64-bit mode at the kernel's 64-bit entry (load address + 0x200) with RSI pointing
//! at the zero page, on an identity map of the first 4 GiB.
//!
//! The setup header is parsed and checked here (to give precise errors); linux-loader's
//! `BzImage` copies the protected-mode kernel, and its `boot_params` type is the zero page.

use std::io::Cursor;

use linux_loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use linux_loader::loader::{bzimage::BzImage, KernelLoader};
use vm_memory::{ByteValued, GuestAddress};

use super::{entry, guest, image, BootConfig, BootError, BootMethod, BootSetup};
use crate::accel::GuestRam;
use crate::machine::memory::{e820_map, low_ram_end, KERNEL_LOAD_ADDR, ZERO_PAGE_ADDR};

/// Offset of the setup header in the image and in the zero page.
const HDR_OFFSET: u64 = 0x1f1;
/// `boot_flag` must hold this.
const BOOT_FLAG: u16 = 0xaa55;
/// Oldest protocol with `xloadflags` (2.12), which is how a kernel says it has a 64-bit entry.
const MIN_VERSION: u16 = 0x020c;
/// loadflags: protected-mode code is loaded at 0x100000 (bzImage).
const LOADED_HIGH: u8 = 0x01;
/// loadflags: `heap_end_ptr` is valid.
const CAN_USE_HEAP: u8 = 0x80;
/// xloadflags: the kernel has the 64-bit entry at +0x200.
const XLF_KERNEL_64: u16 = 0x01;
/// type_of_loader: "undefined" boot loader.
const LOADER_TYPE_UNDEFINED: u8 = 0xff;
/// Offset of the 64-bit entry from the protected-mode kernel's start.
const ENTRY_64_OFFSET: u64 = 0x200;
/// heap_end_ptr: end of the setup heap, relative to the real-mode code (the usual 0xfe00).
const HEAP_END: u16 = 0xfe00;
/// vid_mode: "normal" (80x25), no mode change.
const VID_MODE_NORMAL: u16 = 0xffff;
/// initrd_addr_max for kernels that do not state one (protocol < 2.03).
const DEFAULT_INITRD_ADDR_MAX: u64 = 0x37ff_ffff;

/// The setup header as found in the image, zero past its end (0x202 + jump offset).
struct Header {
    hdr: setup_header,
}

/// Reads and checks the setup header.
fn parse_header(img: &[u8]) -> Result<Header, BootError> {
    let size = std::mem::size_of::<setup_header>() as u64;
    image::bytes(img, HDR_OFFSET, size, "Linux setup header")?;
    // The header ends at 0x202 + the byte at 0x201 (the jump's displacement); what follows is
    // setup code, not header, and must read as zero.
    let end = 0x202 + u64::from(image::bytes(img, 0x201, 1, "Linux setup header jump")?[0]);
    let len = (end - HDR_OFFSET).min(size) as usize;
    let mut hdr = setup_header::default();
    hdr.as_mut_slice()[..len].copy_from_slice(image::bytes(
        img,
        HDR_OFFSET,
        len as u64,
        "Linux setup header",
    )?);
    let invalid = |detail: String| BootError::Invalid {
        what: "Linux setup header".into(),
        detail,
    };
    let boot_flag = hdr.boot_flag;
    if boot_flag != BOOT_FLAG {
        return Err(invalid(format!(
            "boot_flag at 0x1fe is {boot_flag:#06x}, expected 0xaa55"
        )));
    }
    let version = hdr.version;
    if version < MIN_VERSION {
        return Err(BootError::Unsupported(format!(
            "Linux boot protocol {}.{:02} is older than 2.12: kemu enters kernels through the \
             64-bit entry point, which older headers cannot announce (xloadflags)",
            version >> 8,
            version & 0xff
        )));
    }
    let xloadflags = hdr.xloadflags;
    if xloadflags & XLF_KERNEL_64 == 0 {
        return Err(BootError::Unsupported(
            "the kernel has no 64-bit entry point (XLF_KERNEL_64 clear in xloadflags): \
             32-bit kernels are not supported"
                .into(),
        ));
    }
    if hdr.loadflags & LOADED_HIGH == 0 {
        return Err(BootError::Unsupported(
            "zImage (LOADED_HIGH clear in loadflags): only bzImages are supported".into(),
        ));
    }
    Ok(Header { hdr })
}

/// Builds the zero page from the image's header plus the loader's fields.
fn zero_page(
    header: &Header,
    cmdline_addr: u64,
    initrd: Option<(u64, u64)>,
    cfg: &BootConfig,
    rsdp: u64,
) -> Result<boot_params, BootError> {
    let mut params = boot_params {
        hdr: header.hdr,
        ..boot_params::default()
    };
    params.hdr.type_of_loader = LOADER_TYPE_UNDEFINED;
    params.hdr.loadflags |= CAN_USE_HEAP;
    params.hdr.heap_end_ptr = HEAP_END;
    params.hdr.vid_mode = VID_MODE_NORMAL;
    params.hdr.code32_start = KERNEL_LOAD_ADDR as u32;
    // Both sit below 4 GiB (cmdline at 0x20000, the initrd in low RAM), so the ext_ high
    // halves stay 0.
    params.hdr.cmd_line_ptr = cmdline_addr as u32;
    if let Some((addr, size)) = initrd {
        params.hdr.ramdisk_image = addr as u32;
        params.hdr.ramdisk_size = size as u32;
        params.ext_ramdisk_size = (size >> 32) as u32;
    }
    params.acpi_rsdp_addr = rsdp;
    let map = e820_map(cfg.ram_size);
    let mut table =
        [boot_e820_entry::default(); linux_loader::bootparam::E820_MAX_ENTRIES_ZEROPAGE];
    for (slot, e) in table.iter_mut().zip(&map) {
        *slot = boot_e820_entry {
            addr: e.addr,
            size: e.size,
            r#type: e.kind.code(),
        };
    }
    params.e820_table = table;
    params.e820_entries = map.len().min(table.len()) as u8;
    Ok(params)
}

/// Where the kernel will decompress itself: (buffer start, end of everything the kernel
/// occupies). The 64-bit entry moves the decompression buffer to the load address rounded up
/// to `kernel_alignment`, but no lower than `pref_address` (LOAD_PHYSICAL_ADDR, usually
/// 16 MiB), and uses `init_size` bytes from there; the compressed image stays at 1 MiB until
/// then. Nothing else (the initrd) may sit below the returned end.
fn footprint(hdr: &setup_header, kernel_size: u64) -> (u64, u64) {
    let align = u64::from(hdr.kernel_alignment);
    let aligned_load = if align.is_power_of_two() {
        KERNEL_LOAD_ADDR.next_multiple_of(align)
    } else {
        KERNEL_LOAD_ADDR
    };
    // pref_address comes from the file: saturate rather than overflow on nonsense.
    let buf_start = aligned_load.max(hdr.pref_address);
    let buf_end = buf_start.saturating_add(u64::from(hdr.init_size));
    (buf_start, buf_end.max(KERNEL_LOAD_ADDR + kernel_size))
}

/// Loads a bzImage with the 64-bit boot protocol.
pub(super) fn load(
    ram: &GuestRam,
    img: &[u8],
    cfg: &BootConfig,
    rsdp: u64,
) -> Result<BootSetup, BootError> {
    let header = parse_header(img)?;
    let hdr = header.hdr;
    let setup_sects = match hdr.setup_sects {
        0 => 4,
        n => u64::from(n),
    };
    let setup_size = (setup_sects + 1) * 512;
    let kernel_size = (img.len() as u64).saturating_sub(setup_size);
    if kernel_size == 0 {
        return Err(BootError::Truncated {
            what: "protected-mode kernel after the setup sectors".into(),
            offset: setup_size,
            need: 1,
            len: img.len() as u64,
        });
    }
    let low_end = low_ram_end(cfg.ram_size);
    let (buf_start, kernel_end) = footprint(&hdr, kernel_size);
    if kernel_end > low_end {
        return Err(BootError::DoesNotFit {
            what: "Linux kernel".into(),
            addr: KERNEL_LOAD_ADDR,
            size: kernel_end - KERNEL_LOAD_ADDR,
            detail: format!(
                "the compressed kernel ({kernel_size} bytes) sits at 1 MiB and decompresses into \
                 {buf_start:#x}..{kernel_end:#x} (init_size {}), but RAM below the PCI hole ends \
                 at {low_end:#x} ({} bytes of RAM)",
                { hdr.init_size },
                cfg.ram_size
            ),
        });
    }
    guest::check_placement(ram, "Linux kernel", KERNEL_LOAD_ADDR, kernel_size, low_end)?;

    let cmdline_addr = guest::write_cmdline(ram, &cfg.cmdline, u64::from(hdr.cmdline_size))?;
    let initrd = match &cfg.initrd {
        Some(data) => {
            let max = match u64::from(hdr.initrd_addr_max) {
                0 => DEFAULT_INITRD_ADDR_MAX,
                m => m,
            };
            let top = (max + 1).min(low_end);
            let lowest = (kernel_end + 0xfff) & !0xfff;
            Some(guest::place_initrd(ram, data, lowest, top)?)
        }
        None => None,
    };

    BzImage::load(
        ram,
        Some(GuestAddress(KERNEL_LOAD_ADDR)),
        &mut Cursor::new(img),
        None,
    )
    .map_err(|source| BootError::Loader {
        what: "bzImage protected-mode kernel",
        source,
    })?;

    let params = zero_page(&header, cmdline_addr, initrd, cfg, rsdp)?;
    guest::write(ram, ZERO_PAGE_ADDR, params.as_slice(), "Linux zero page")?;

    let entry = KERNEL_LOAD_ADDR + ENTRY_64_OFFSET;
    let bsp = entry::long_mode(ram, entry, ZERO_PAGE_ADDR)?;
    Ok(BootSetup {
        bsp,
        method: BootMethod::Linux,
        entry,
        kernel: (KERNEL_LOAD_ADDR, kernel_end),
        initrd,
        rsdp,
    })
}

#[cfg(test)]
mod tests {
    use vm_memory::{Bytes, GuestAddress};

    use super::*;
    use crate::accel::reg;
    use crate::machine::boot::testimg;
    use crate::machine::boot::{load_kernel, BootConfig};
    use crate::machine::memory::{create_ram, CMDLINE_ADDR, PML4_ADDR};

    const RAM: u64 = 64 << 20;

    fn cfg(cmdline: &str, initrd: Option<Vec<u8>>) -> BootConfig {
        BootConfig {
            cmdline: cmdline.into(),
            initrd,
            ram_size: RAM,
            cpus: 2,
        }
    }

    #[test]
    fn boots_a_fake_bzimage() {
        let ram = create_ram(RAM).unwrap();
        let img = testimg::bzimage(0x20f, 0x1000);
        let initrd = vec![0x5a; 10_000];
        let setup = load_kernel(&ram, &img, &cfg("console=ttyS0 quiet", Some(initrd))).unwrap();
        assert_eq!(setup.method, BootMethod::Linux);
        assert_eq!(setup.entry, 0x100200);
        let s = &setup.bsp;
        assert_eq!(s.rip, 0x100200);
        assert_eq!(s.gpr[reg::RSI], ZERO_PAGE_ADDR);
        assert_eq!(s.cr3, PML4_ADDR);
        assert_eq!(s.code_bitness(), 64);
        assert_eq!((s.cs.selector, s.ds.selector), (0x10, 0x18));

        // The protected-mode kernel landed at 1 MiB.
        let mut k = [0u8; 4];
        ram.read_slice(&mut k, GuestAddress(KERNEL_LOAD_ADDR))
            .unwrap();
        assert_eq!(k, [0xaa, 0xbb, 0xcc, 0xdd]);

        let p: boot_params = ram.read_obj(GuestAddress(ZERO_PAGE_ADDR)).unwrap();
        assert_eq!({ p.hdr.header }, 0x5372_6448);
        assert_eq!(p.hdr.type_of_loader, 0xff);
        assert_ne!(p.hdr.loadflags & CAN_USE_HEAP, 0);
        assert_eq!({ p.hdr.heap_end_ptr }, 0xfe00);
        assert_eq!({ p.hdr.cmd_line_ptr } as u64, CMDLINE_ADDR);
        assert_eq!({ p.acpi_rsdp_addr }, setup.rsdp);
        let mut line = [0u8; 20];
        ram.read_slice(&mut line, GuestAddress(CMDLINE_ADDR))
            .unwrap();
        assert_eq!(&line, b"console=ttyS0 quiet\0");

        let (addr, size) = setup.initrd.unwrap();
        assert_eq!({ p.hdr.ramdisk_image } as u64, addr);
        assert_eq!({ p.hdr.ramdisk_size } as u64, size);
        assert_eq!(addr % 4096, 0);
        assert!(
            addr + size <= RAM && addr + size > RAM - 8192,
            "placed high"
        );
        assert_eq!(
            ram.read_obj::<u8>(GuestAddress(addr + 9_999)).unwrap(),
            0x5a
        );

        let map = e820_map(RAM);
        assert_eq!(p.e820_entries as usize, map.len());
        let e = p.e820_table[map.len() - 1];
        assert_eq!(
            ({ e.addr }, { e.size }, { e.r#type }),
            (0x100000, RAM - 0x100000, 1)
        );
    }

    #[test]
    fn header_bytes_past_its_end_are_not_copied() {
        let ram = create_ram(RAM).unwrap();
        // Protocol 2.12 header: the jump at 0x200 says the header ends at 0x248; junk after.
        let mut img = testimg::bzimage(0x20c, 0);
        img[0x201] = 0x46;
        img[0x260..0x264].copy_from_slice(&[0xff; 4]); // "init_size" beyond the header
        load_kernel(&ram, &img, &cfg("", None)).unwrap();
        let p: boot_params = ram.read_obj(GuestAddress(ZERO_PAGE_ADDR)).unwrap();
        assert_eq!({ p.hdr.init_size }, 0);
    }

    #[test]
    fn rejects_what_it_cannot_boot() {
        let ram = create_ram(RAM).unwrap();
        let old = testimg::bzimage(0x20a, 0);
        let e = load_kernel(&ram, &old, &cfg("", None)).unwrap_err();
        assert!(e.to_string().contains("older than 2.12"), "{e}");

        let mut no64 = testimg::bzimage(0x20f, 0);
        no64[0x236] = 0;
        let e = load_kernel(&ram, &no64, &cfg("", None)).unwrap_err();
        assert!(e.to_string().contains("XLF_KERNEL_64"), "{e}");

        let mut noflag = testimg::bzimage(0x20f, 0);
        noflag[0x1fe] = 0;
        let e = load_kernel(&ram, &noflag, &cfg("", None)).unwrap_err();
        assert!(e.to_string().contains("boot_flag"), "{e}");

        let huge = testimg::bzimage(0x20f, 200 << 20);
        let e = load_kernel(&ram, &huge, &cfg("", None)).unwrap_err();
        assert!(matches!(e, BootError::DoesNotFit { .. }), "{e}");
        assert!(e.to_string().contains("init_size"), "{e}");

        let img = testimg::bzimage(0x20f, 0);
        let e = load_kernel(&ram, &img, &cfg("", Some(vec![0; 70 << 20]))).unwrap_err();
        assert!(e.to_string().contains("initrd"), "{e}");

        let long = "x".repeat(300);
        let e = load_kernel(&ram, &img, &cfg(&long, None)).unwrap_err();
        assert!(e.to_string().contains("256 bytes"), "{e}");
    }

    /// Loads a real Debian kernel: `$KEMU_TEST_BZIMAGE` or the host's `/boot/vmlinuz-*`
    /// (`cargo test --lib machine -- --ignored`).
    #[test]
    #[ignore]
    fn loads_a_real_kernel() {
        let path = std::env::var_os("KEMU_TEST_BZIMAGE")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::fs::read_dir("/boot").ok().and_then(|d| {
                    d.filter_map(|e| e.ok())
                        .map(|e| e.path())
                        .find(|p| p.to_string_lossy().contains("vmlinuz-"))
                })
            });
        let Some(path) = path else {
            eprintln!("no $KEMU_TEST_BZIMAGE and no /boot/vmlinuz-* on this machine");
            return;
        };
        let ram_size = 256 << 20;
        let ram = create_ram(ram_size).unwrap();
        let cfg = BootConfig {
            cmdline: "console=ttyS0".into(),
            initrd: Some(vec![0x42; 4 << 20]),
            ram_size,
            cpus: 2,
        };
        let setup = super::super::load_kernel_file(&ram, &path, &cfg).unwrap();
        assert_eq!(setup.method, BootMethod::Linux);
        assert_eq!(setup.entry, 0x100200);
        let p: boot_params = ram.read_obj(GuestAddress(ZERO_PAGE_ADDR)).unwrap();
        let (initrd, _) = setup.initrd.unwrap();
        // The initrd sits above the decompression buffer (pref_address + init_size).
        let (pref, init_size) = (p.hdr.pref_address, p.hdr.init_size);
        assert!(initrd >= pref + u64::from(init_size));
        assert!(setup.kernel.1 <= initrd);
        // 64 MiB is too small for a distro kernel's decompression buffer: a clear error.
        let small = create_ram(64 << 20).unwrap();
        let cfg = BootConfig {
            ram_size: 64 << 20,
            ..cfg
        };
        let e = super::super::load_kernel_file(&small, &path, &cfg).unwrap_err();
        assert!(e.to_string().contains("init_size"), "{e}");
    }
}

//! Direct kernel boot: puts a kernel image (and an initrd) into guest RAM and returns the state
//! the boot CPU must start in, the way QEMU's `-kernel` does, without firmware.
//!
//! Data enters as the image bytes plus a [`BootConfig`] (command line, initrd, RAM size, CPU
//! count); it leaves as guest RAM filled in (kernel, command line, initrd, boot information,
//! boot GDT, page tables, ACPI tables) and a [`BootSetup`] whose `bsp` the machine loads into
//! vCPU 0 as is. Application processors start the normal way (INIT/SIPI), so nothing is
//! prepared for them.
//!
//! Three formats are recognised, in this order:
//! - a Linux bzImage (`"HdrS"` at 0x202): the 64-bit Linux boot protocol ([`linux`]);
//! - an ELF64 vmlinux with a `XEN_ELFNOTE_PHYS32_ENTRY` note: PVH ([`pvh`]);
//! - a multiboot v1 kernel (header in the first 8 KiB): ELF or a.out kludge ([`multiboot`]).
//!
//! Every read of the image is bounds-checked ([`image`]); every write to RAM is checked against
//! the RAM map first ([`guest`]). Where things go in RAM is fixed by `machine::memory`.

pub mod elf;
mod entry;
mod guest;
mod image;
mod linux;
mod multiboot;
mod pvh;

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::accel::GuestRam;
use crate::accel::VcpuState;
use crate::machine::acpi::{self, AcpiError};

/// What the user asked for, besides the kernel image.
#[derive(Debug, Clone, Default)]
pub struct BootConfig {
    /// Kernel command line (`-append`).
    pub cmdline: String,
    /// Initial RAM disk contents (`-initrd`).
    pub initrd: Option<Vec<u8>>,
    /// Guest RAM size in bytes, as given to `machine::memory::create_ram`.
    pub ram_size: u64,
    /// Number of vCPUs (for the ACPI MADT).
    pub cpus: usize,
}

/// Which boot protocol the image was started with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootMethod {
    /// Linux 64-bit boot protocol (bzImage).
    Linux,
    /// PVH (ELF vmlinux with a PHYS32_ENTRY note), 32-bit protected mode entry.
    Pvh,
    /// Multiboot v1, 32-bit protected mode entry.
    Multiboot,
}

/// The result of loading a kernel: the boot CPU's entry state and what was placed where.
#[derive(Debug, Clone)]
pub struct BootSetup {
    /// Register state of the bootstrap processor at the kernel's entry, fully consistent
    /// (segment caches, control registers, EFER, GDTR) so it can be loaded as is.
    pub bsp: VcpuState,
    /// The protocol used.
    pub method: BootMethod,
    /// The entry point (same as `bsp.rip`).
    pub entry: u64,
    /// Guest-physical range (start, end exclusive) the kernel occupies.
    pub kernel: (u64, u64),
    /// Guest-physical (start, size) of the initrd, if one was given.
    pub initrd: Option<(u64, u64)>,
    /// Guest-physical address of the ACPI RSDP.
    pub rsdp: u64,
}

/// Why a kernel could not be loaded. Messages name the structure, offset or address involved.
#[derive(Debug, Error)]
pub enum BootError {
    /// The image is none of the formats kemu boots.
    #[error(
        "unrecognised kernel image ({found}): not a Linux bzImage, an ELF vmlinux with a PVH \
         note, or a multiboot kernel"
    )]
    UnknownFormat {
        /// What the image looked like.
        found: String,
    },
    /// The image ends inside a structure.
    #[error("kernel image truncated: {what} at offset {offset:#x} needs {need} bytes, the image has {len}")]
    Truncated {
        /// The structure being read.
        what: String,
        /// Its offset in the image.
        offset: u64,
        /// Bytes it needs from that offset.
        need: u64,
        /// Image length.
        len: u64,
    },
    /// A structure in the image is malformed.
    #[error("invalid kernel image: {what}: {detail}")]
    Invalid {
        /// The structure.
        what: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The image asks for something kemu does not provide.
    #[error("unsupported kernel image: {0}")]
    Unsupported(String),
    /// Something does not fit where it must go in guest RAM.
    #[error("{what} ({size} bytes at {addr:#x}) does not fit in guest RAM: {detail}")]
    DoesNotFit {
        /// What was being placed.
        what: String,
        /// Where.
        addr: u64,
        /// How big it is.
        size: u64,
        /// Why it does not fit.
        detail: String,
    },
    /// The command line is too long or contains a NUL.
    #[error("kernel command line: {0}")]
    Cmdline(String),
    /// The configuration itself is inconsistent (no CPUs, RAM size mismatch).
    #[error("boot configuration: {0}")]
    Config(String),
    /// Writing guest RAM failed although the range was checked.
    #[error("writing {what} to guest RAM at {addr:#x}: {source}")]
    GuestWrite {
        /// What was being written.
        what: String,
        /// Where.
        addr: u64,
        /// What vm-memory said.
        #[source]
        source: vm_memory::GuestMemoryError,
    },
    /// linux-loader refused the image.
    #[error("loading {what}: {source}")]
    Loader {
        /// What was being loaded.
        what: &'static str,
        /// What linux-loader said.
        #[source]
        source: linux_loader::loader::Error,
    },
    /// The ACPI tables could not be written.
    #[error(transparent)]
    Acpi(#[from] AcpiError),
    /// A file could not be read.
    #[error("cannot read {what} {path}: {source}")]
    Io {
        /// "kernel image" or "initrd".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
}

/// The image formats, as detected.
enum Format {
    Linux,
    Pvh(elf::ElfFile, u64),
    Multiboot(multiboot::Header),
}

/// Works out which protocol boots `image`.
fn detect(image: &[u8]) -> Result<Format, BootError> {
    if image.get(0x202..0x206) == Some(b"HdrS".as_slice()) {
        return Ok(Format::Linux);
    }
    let is_elf = image.starts_with(elf::ELF_MAGIC);
    let parsed = if is_elf {
        Some(elf::ElfFile::parse(image))
    } else {
        None
    };
    if let Some(Ok(file)) = &parsed {
        if file.class64 {
            if let Some(entry) = file.pvh_entry(image)? {
                let file = file.clone();
                return Ok(Format::Pvh(file, entry));
            }
        }
    }
    if let Some(header) = multiboot::Header::find(image)? {
        return Ok(Format::Multiboot(header));
    }
    let found = match parsed {
        Some(Err(e)) => return Err(e),
        Some(Ok(file)) if file.class64 => {
            "an ELF64 file without a PVH note (XEN_ELFNOTE_PHYS32_ENTRY) or multiboot header"
        }
        Some(Ok(_)) => "an ELF32 file without a multiboot header",
        None => "no bzImage \"HdrS\" signature, no ELF magic, no multiboot header",
    };
    Err(BootError::UnknownFormat {
        found: found.to_string(),
    })
}

/// Loads `image` into `ram` with the protocol its format calls for, writes the ACPI tables, and
/// returns the boot CPU's entry state.
pub fn load_kernel(ram: &GuestRam, image: &[u8], cfg: &BootConfig) -> Result<BootSetup, BootError> {
    if cfg.cpus == 0 {
        return Err(BootError::Config("at least one CPU is needed".into()));
    }
    crate::machine::memory::check_ram_size(cfg.ram_size)
        .map_err(|e| BootError::Config(e.to_string()))?;
    for (start, len) in crate::machine::memory::ram_regions(cfg.ram_size) {
        if !guest::is_ram(ram, start, len) {
            return Err(BootError::Config(format!(
                "RAM size {} bytes does not match the guest RAM mapping",
                cfg.ram_size
            )));
        }
    }
    let format = detect(image)?;
    let rsdp = acpi::write_acpi_tables(ram, cfg.cpus, cfg.ram_size)?;
    match format {
        Format::Linux => linux::load(ram, image, cfg, rsdp),
        Format::Pvh(file, entry) => pvh::load(ram, image, &file, entry, cfg, rsdp),
        Format::Multiboot(header) => multiboot::load(ram, image, &header, cfg, rsdp),
    }
}

/// Reads the kernel image at `path` and loads it with [`load_kernel`].
pub fn load_kernel_file(
    ram: &GuestRam,
    path: &Path,
    cfg: &BootConfig,
) -> Result<BootSetup, BootError> {
    let image = std::fs::read(path).map_err(|source| BootError::Io {
        what: "kernel image",
        path: path.to_path_buf(),
        source,
    })?;
    load_kernel(ram, &image, cfg)
}

/// Reads an initrd file, for [`BootConfig::initrd`].
pub fn read_initrd(path: &Path) -> Result<Vec<u8>, BootError> {
    std::fs::read(path).map_err(|source| BootError::Io {
        what: "initrd",
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod testimg;
#[cfg(test)]
mod tests;

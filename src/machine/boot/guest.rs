//! Checked writes into guest RAM for the loaders: every range is checked against the RAM map and
//! against the machine's own boot structures before a byte is written.

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use super::BootError;
use crate::accel::GuestRam;
use crate::machine::memory::{ACPI_START, BOOT_AREA_END, CMDLINE_ADDR, CMDLINE_MAX, HIMEM_START};

/// Page size used for initrd alignment.
const PAGE: u64 = 4096;

/// Whether `addr..addr + len` is entirely RAM (one region).
pub(super) fn is_ram(ram: &GuestRam, addr: u64, len: u64) -> bool {
    let Ok(len) = usize::try_from(len) else {
        return false;
    };
    len == 0 || GuestMemoryBackend::check_range(ram, GuestAddress(addr), len)
}

/// Checks that `what` may occupy `addr..addr + size`: inside RAM, below `limit`, and clear of
/// the boot structures (below [`BOOT_AREA_END`]) and the ACPI/BIOS area (0xE0000..1 MiB).
pub(super) fn check_placement(
    ram: &GuestRam,
    what: &str,
    addr: u64,
    size: u64,
    limit: u64,
) -> Result<(), BootError> {
    let fail = |detail: String| BootError::DoesNotFit {
        what: what.to_string(),
        addr,
        size,
        detail,
    };
    let end = addr
        .checked_add(size)
        .ok_or_else(|| fail("the range wraps around the address space".into()))?;
    if end > limit {
        return Err(fail(format!("it must end below {limit:#x}")));
    }
    if addr < BOOT_AREA_END && end > 0 && size > 0 {
        return Err(fail(format!(
            "it overlaps kemu's boot structures at 0x0..{BOOT_AREA_END:#x}"
        )));
    }
    if addr < HIMEM_START && end > ACPI_START {
        return Err(fail(format!(
            "it overlaps the ACPI tables and BIOS area at {ACPI_START:#x}..{HIMEM_START:#x}"
        )));
    }
    if !is_ram(ram, addr, size) {
        return Err(fail(
            "the range is not all RAM (past the end of RAM or in the PCI hole)".into(),
        ));
    }
    Ok(())
}

/// Writes `data` at `addr`, which must be RAM.
pub(super) fn write(ram: &GuestRam, addr: u64, data: &[u8], what: &str) -> Result<(), BootError> {
    if !is_ram(ram, addr, data.len() as u64) {
        return Err(BootError::DoesNotFit {
            what: what.to_string(),
            addr,
            size: data.len() as u64,
            detail: "the range is not all RAM".into(),
        });
    }
    ram.write_slice(data, GuestAddress(addr))
        .map_err(|source| BootError::GuestWrite {
            what: what.to_string(),
            addr,
            source,
        })
}

/// Zeroes `len` bytes at `addr` (an ELF segment's BSS), in chunks to bound the buffer.
pub(super) fn zero(ram: &GuestRam, addr: u64, len: u64, what: &str) -> Result<(), BootError> {
    const CHUNK: u64 = 1 << 16;
    let zeros = [0u8; CHUNK as usize];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(CHUNK);
        write(ram, addr + done, &zeros[..n as usize], what)?;
        done += n;
    }
    Ok(())
}

/// Writes the NUL-terminated command line at [`CMDLINE_ADDR`]; `max_len` is the longest line
/// (without the NUL) the kernel accepts. Returns the address.
pub(super) fn write_cmdline(ram: &GuestRam, cmdline: &str, max_len: u64) -> Result<u64, BootError> {
    if cmdline.as_bytes().contains(&0) {
        return Err(BootError::Cmdline("it contains a NUL byte".into()));
    }
    let max_len = max_len.min(CMDLINE_MAX - 1);
    let len = cmdline.len() as u64;
    if len > max_len {
        return Err(BootError::Cmdline(format!(
            "{len} bytes is longer than the {max_len} bytes the kernel accepts"
        )));
    }
    let mut bytes = Vec::with_capacity(cmdline.len() + 1);
    bytes.extend_from_slice(cmdline.as_bytes());
    bytes.push(0);
    write(ram, CMDLINE_ADDR, &bytes, "kernel command line")?;
    Ok(CMDLINE_ADDR)
}

/// Places `data` (the initrd) as high as possible, page-aligned, ending at or below `top`, and
/// not below `lowest` (the end of the kernel). Returns (address, size).
pub(super) fn place_initrd(
    ram: &GuestRam,
    data: &[u8],
    lowest: u64,
    top: u64,
) -> Result<(u64, u64), BootError> {
    let size = data.len() as u64;
    let fail = |addr: u64, detail: String| BootError::DoesNotFit {
        what: "initrd".into(),
        addr,
        size,
        detail,
    };
    let start = top
        .checked_sub(size)
        .map(|s| s & !(PAGE - 1))
        .filter(|&s| s >= lowest)
        .ok_or_else(|| {
            fail(
                lowest,
                format!(
                    "only {} bytes are free between the kernel's end {lowest:#x} and {top:#x}",
                    top.saturating_sub(lowest)
                ),
            )
        })?;
    check_placement(ram, "initrd", start, size, top)?;
    write(ram, start, data, "initrd")?;
    Ok((start, size))
}

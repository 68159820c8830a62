//! A small, bounds-checked ELF reader for kernels: the file header, the program headers, the
//! PVH entry note, and loading `PT_LOAD` segments at their physical addresses.
//!
//! Both classes are read (ELF64 for PVH vmlinux, ELF32 or ELF64 for multiboot). linux-loader's
//! `Elf` loader reads ELF64 only, leaves BSS to chance and reports errors without offsets, so
//! kernels go through this reader instead.

use super::{guest, image, BootError};
use crate::accel::GuestRam;

/// The four bytes every ELF file starts with.
pub const ELF_MAGIC: &[u8] = b"\x7fELF";
/// Program header type of a loadable segment.
pub const PT_LOAD: u32 = 1;
/// Program header type of a note segment.
pub const PT_NOTE: u32 = 4;
/// Note type of the PVH 32-bit entry point (`XEN_ELFNOTE_PHYS32_ENTRY`).
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// Most program headers we accept (Linux has a handful; this bounds the work a bad file causes).
const MAX_PHDRS: u16 = 256;

/// One program header, widened to 64 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgramHeader {
    /// Index in the table (for error messages).
    pub index: usize,
    /// `p_type`.
    pub p_type: u32,
    /// File offset of the segment's bytes.
    pub offset: u64,
    /// Physical load address.
    pub paddr: u64,
    /// Bytes in the file.
    pub filesz: u64,
    /// Bytes in memory (the rest is zeroed).
    pub memsz: u64,
}

/// What the loaders need from an ELF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfFile {
    /// ELFCLASS64 (true) or ELFCLASS32.
    pub class64: bool,
    /// `e_machine`.
    pub machine: u16,
    /// `e_entry`.
    pub entry: u64,
    /// The program headers.
    pub phdrs: Vec<ProgramHeader>,
}

fn invalid(what: &str, detail: impl Into<String>) -> BootError {
    BootError::Invalid {
        what: what.to_string(),
        detail: detail.into(),
    }
}

impl ElfFile {
    /// Parses the ELF header and program headers of `img`.
    pub fn parse(img: &[u8]) -> Result<ElfFile, BootError> {
        let ident = image::bytes(img, 0, 16, "ELF identification")?;
        if &ident[..4] != ELF_MAGIC {
            return Err(invalid("ELF header", "no \\x7fELF magic"));
        }
        let class64 = match ident[4] {
            1 => false,
            2 => true,
            c => return Err(invalid("ELF header", format!("unknown class {c}"))),
        };
        if ident[5] != 1 {
            return Err(invalid(
                "ELF header",
                "not little-endian (EI_DATA != ELFDATA2LSB)",
            ));
        }
        let hdr_len = if class64 { 64 } else { 52 };
        image::bytes(img, 0, hdr_len, "ELF header")?;
        let machine = image::u16_at(img, 18, "ELF header")?;
        let (entry, phoff, phentsize, phnum) = if class64 {
            (
                image::u64_at(img, 24, "ELF header")?,
                image::u64_at(img, 32, "ELF header")?,
                image::u16_at(img, 54, "ELF header")?,
                image::u16_at(img, 56, "ELF header")?,
            )
        } else {
            (
                u64::from(image::u32_at(img, 24, "ELF header")?),
                u64::from(image::u32_at(img, 28, "ELF header")?),
                image::u16_at(img, 42, "ELF header")?,
                image::u16_at(img, 44, "ELF header")?,
            )
        };
        let want = if class64 { 56 } else { 32 };
        if phnum > 0 && phentsize != want {
            return Err(invalid(
                "ELF header",
                format!("e_phentsize is {phentsize}, expected {want}"),
            ));
        }
        if phnum > MAX_PHDRS {
            return Err(invalid(
                "ELF header",
                format!("{phnum} program headers (at most {MAX_PHDRS} accepted)"),
            ));
        }
        let mut phdrs = Vec::with_capacity(usize::from(phnum));
        for index in 0..usize::from(phnum) {
            let off = phoff
                .checked_add(index as u64 * u64::from(want))
                .ok_or_else(|| invalid("ELF header", "e_phoff overflows"))?;
            let what = format!("ELF program header {index}");
            image::bytes(img, off, u64::from(want), &what)?;
            let ph = if class64 {
                ProgramHeader {
                    index,
                    p_type: image::u32_at(img, off, &what)?,
                    offset: image::u64_at(img, off + 8, &what)?,
                    paddr: image::u64_at(img, off + 24, &what)?,
                    filesz: image::u64_at(img, off + 32, &what)?,
                    memsz: image::u64_at(img, off + 40, &what)?,
                }
            } else {
                ProgramHeader {
                    index,
                    p_type: image::u32_at(img, off, &what)?,
                    offset: u64::from(image::u32_at(img, off + 4, &what)?),
                    paddr: u64::from(image::u32_at(img, off + 12, &what)?),
                    filesz: u64::from(image::u32_at(img, off + 16, &what)?),
                    memsz: u64::from(image::u32_at(img, off + 20, &what)?),
                }
            };
            phdrs.push(ph);
        }
        Ok(ElfFile {
            class64,
            machine,
            entry,
            phdrs,
        })
    }

    /// The PVH entry point from a `PT_NOTE` segment holding a `"Xen"` note of type
    /// `XEN_ELFNOTE_PHYS32_ENTRY`, if there is one.
    pub fn pvh_entry(&self, img: &[u8]) -> Result<Option<u64>, BootError> {
        for ph in self.phdrs.iter().filter(|p| p.p_type == PT_NOTE) {
            let what = format!("ELF note segment (program header {})", ph.index);
            let notes = image::bytes(img, ph.offset, ph.filesz, &what)?;
            let mut pos = 0u64;
            while pos + 12 <= notes.len() as u64 {
                let namesz = u64::from(image::u32_at(notes, pos, &what)?);
                let descsz = u64::from(image::u32_at(notes, pos + 4, &what)?);
                let n_type = image::u32_at(notes, pos + 8, &what)?;
                let name_off = pos + 12;
                let desc_off = name_off + align4(namesz);
                let name = image::bytes(notes, name_off, namesz, &what)?;
                let desc = image::bytes(notes, desc_off, descsz, &what)?;
                if n_type == XEN_ELFNOTE_PHYS32_ENTRY && name == b"Xen\0" {
                    let entry = match desc.len() {
                        4 => u64::from(image::u32_at(desc, 0, &what)?),
                        8 => image::u64_at(desc, 0, &what)?,
                        n => {
                            return Err(invalid(
                                &what,
                                format!(
                                    "PVH entry note has a {n}-byte descriptor, expected 4 or 8"
                                ),
                            ))
                        }
                    };
                    return Ok(Some(entry));
                }
                pos = desc_off + align4(descsz);
            }
        }
        Ok(None)
    }

    /// Copies every `PT_LOAD` segment to its physical address (zeroing the BSS part), each
    /// checked to lie in RAM below `limit` and clear of kemu's structures. Returns the lowest
    /// start and highest end of what was loaded.
    pub fn load(&self, ram: &GuestRam, img: &[u8], limit: u64) -> Result<(u64, u64), BootError> {
        let mut lo = u64::MAX;
        let mut hi = 0;
        for ph in self
            .phdrs
            .iter()
            .filter(|p| p.p_type == PT_LOAD && p.memsz > 0)
        {
            let what = format!("ELF segment {} (program header {})", ph.index, ph.index);
            if ph.filesz > ph.memsz {
                return Err(invalid(
                    &what,
                    format!("p_filesz {:#x} > p_memsz {:#x}", ph.filesz, ph.memsz),
                ));
            }
            let data = image::bytes(img, ph.offset, ph.filesz, &what)?;
            guest::check_placement(ram, &what, ph.paddr, ph.memsz, limit)?;
            guest::write(ram, ph.paddr, data, &what)?;
            guest::zero(ram, ph.paddr + ph.filesz, ph.memsz - ph.filesz, &what)?;
            lo = lo.min(ph.paddr);
            hi = hi.max(ph.paddr + ph.memsz);
        }
        if hi == 0 {
            return Err(invalid(
                "ELF program headers",
                "no loadable (PT_LOAD) segment",
            ));
        }
        Ok((lo, hi))
    }
}

/// Rounds up to a multiple of 4 (note fields are 4-byte aligned).
fn align4(v: u64) -> u64 {
    (v + 3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::boot::testimg;
    use crate::machine::memory::create_ram;

    #[test]
    fn parses_both_classes() {
        let f64 = ElfFile::parse(&testimg::pvh_elf(0x100_0000)).unwrap();
        assert!(f64.class64);
        assert_eq!(f64.machine, 62);
        assert_eq!(f64.phdrs.len(), 2);
        assert_eq!(f64.phdrs[0].paddr, 0x100_0000);
        let f32 = ElfFile::parse(&testimg::multiboot_elf32()).unwrap();
        assert!(!f32.class64);
        assert_eq!(f32.entry, 0x100010);
        assert_eq!(
            (f32.phdrs[0].offset, f32.phdrs[0].filesz, f32.phdrs[0].memsz),
            (0x60, 0x20, 0x1000)
        );
    }

    #[test]
    fn pvh_note_with_an_8_byte_descriptor() {
        let mut img = testimg::pvh_elf(0);
        img[0xb4] = 8; // descsz
        img[0xc0..0xc8].copy_from_slice(&0x0123_4567u64.to_le_bytes());
        img[120 + 32] = 24; // p_filesz of the note segment
        let f = ElfFile::parse(&img).unwrap();
        assert_eq!(f.pvh_entry(&img).unwrap(), Some(0x0123_4567));
        img[0xb4] = 2;
        let e = f.pvh_entry(&img).unwrap_err().to_string();
        assert!(e.contains("2-byte descriptor"), "{e}");
    }

    #[test]
    fn malformed_segments_are_errors() {
        let ram = create_ram(32 << 20).unwrap();
        let mut img = testimg::pvh_elf(0);
        // p_filesz > p_memsz
        img[64 + 40..64 + 48].copy_from_slice(&0x10u64.to_le_bytes());
        let f = ElfFile::parse(&img).unwrap();
        let e = f.load(&ram, &img, 32 << 20).unwrap_err().to_string();
        assert!(e.contains("p_filesz"), "{e}");
        // Segment data past the end of the file.
        let mut img = testimg::pvh_elf(0);
        img[64 + 8..64 + 16].copy_from_slice(&0x1f0u64.to_le_bytes());
        let f = ElfFile::parse(&img).unwrap();
        let e = f.load(&ram, &img, 32 << 20).unwrap_err().to_string();
        assert!(e.contains("ELF segment 0") && e.contains("0x1f0"), "{e}");
        // Wrong program header entry size.
        let mut img = testimg::pvh_elf(0);
        img[54] = 40;
        assert!(ElfFile::parse(&img).is_err());
        // Big-endian.
        let mut img = testimg::pvh_elf(0);
        img[5] = 2;
        assert!(ElfFile::parse(&img)
            .unwrap_err()
            .to_string()
            .contains("little-endian"));
    }
}

//! `x/FMT ADDR` and `xp/FMT ADDR`: QEMU's memory dump. `x` reads guest-virtual addresses
//! through the selected vCPU's page tables (the gdbstub's walk), `xp` guest-physical ones.
//!
//! FMT is `/[count][format][size]` (format and size in either order): format `x` hex, `d`
//! signed, `u` unsigned, `o` octal, `c` char, `i` instructions (iced-x86, Intel syntax, in the
//! vCPU's current code size); size `b` 1, `h` 2, `w` 4, `g` 8 bytes. The defaults are QEMU's:
//! count 1, format `x`, size `w`.

use std::fmt::Write as _;

use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};
use vm_memory::{Bytes, GuestAddress};

use crate::accel::{reg, GuestRam, VcpuState};
use crate::monitor::gdb::walk;

/// Reads guest-physical memory that is not RAM (the firmware ROM, which the software CPU serves
/// as a device): fills the buffer and returns true, or false if nothing is there to read.
pub type RomReader<'a> = &'a dyn Fn(u64, &mut [u8]) -> bool;

/// The most bytes one command dumps (QEMU has no limit; a monitor line should stay readable).
const MAX_BYTES: u64 = 64 << 10;

/// Why a dump failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DumpError {
    /// The `/FMT` part is not understood.
    #[error("invalid format '/{0}': expected /[count][x|d|u|o|c|i][b|h|w|g]")]
    Format(String),
    /// The address is not a number or known register.
    #[error("invalid address '{0}': expected a number (0x.. hex) or $register")]
    Address(String),
    /// Nothing can be read there.
    #[error("cannot access memory at {kind} address 0x{addr:x}{why}")]
    Access {
        /// `virtual` or `physical`.
        kind: &'static str,
        /// The address.
        addr: u64,
        /// Why (for a failed page walk).
        why: String,
    },
    /// count × size is past [`MAX_BYTES`].
    #[error("dump of {0} bytes is too large (at most 65536)")]
    TooLarge(u64),
}

/// A parsed `/FMT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpFormat {
    /// Number of units.
    pub count: u64,
    /// `x`, `d`, `u`, `o`, `c` or `i`.
    pub format: char,
    /// Unit size in bytes: 1, 2, 4 or 8.
    pub size: u64,
}

impl Default for DumpFormat {
    fn default() -> Self {
        DumpFormat {
            count: 1,
            format: 'x',
            size: 4,
        }
    }
}

impl DumpFormat {
    /// Parse the text after `/`.
    pub fn parse(s: &str) -> Result<Self, DumpError> {
        let bad = || DumpError::Format(s.to_string());
        let digits = s.chars().take_while(char::is_ascii_digit).count();
        let mut f = DumpFormat::default();
        if digits > 0 {
            f.count = s[..digits].parse().map_err(|_| bad())?;
        }
        let mut size = None;
        for c in s[digits..].chars() {
            match c {
                'x' | 'd' | 'u' | 'o' | 'c' | 'i' => f.format = c,
                'b' => size = Some(1),
                'h' => size = Some(2),
                'w' => size = Some(4),
                'g' => size = Some(8),
                _ => return Err(bad()),
            }
        }
        f.size = match (f.format, size) {
            ('c', _) => 1,
            (_, Some(n)) => n,
            _ => 4,
        };
        Ok(f)
    }
}

/// `0x1000`, `4096`, `$rip`, `$pc`, `$esp`...: an address for the dump.
pub fn parse_address(s: &str, state: &VcpuState) -> Result<u64, DumpError> {
    let bad = || DumpError::Address(s.to_string());
    if let Some(name) = s.strip_prefix('$') {
        let names = [
            ("rax", reg::RAX),
            ("rcx", reg::RCX),
            ("rdx", reg::RDX),
            ("rbx", reg::RBX),
            ("rsp", reg::RSP),
            ("rbp", reg::RBP),
            ("rsi", reg::RSI),
            ("rdi", reg::RDI),
        ];
        let lower = name.to_ascii_lowercase();
        if lower == "pc" {
            return Ok(super::info::linear_pc(state));
        }
        if lower == "rip" || lower == "eip" {
            return Ok(state.rip);
        }
        for (n, i) in names {
            if lower == n {
                return Ok(state.gpr[i]);
            }
            if lower == format!("e{}", &n[1..]) {
                return Ok(state.gpr[i] & 0xffff_ffff);
            }
        }
        if let Some(n) = lower.strip_prefix('r') {
            if let Ok(i @ 8..=15) = n.parse::<usize>() {
                return Ok(state.gpr[i]);
            }
        }
        return Err(bad());
    }
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => (h, 16),
        None => (s, 10),
    };
    u64::from_str_radix(digits, radix).map_err(|_| bad())
}

/// Read `buf.len()` bytes at `addr`, page by page through the page tables when `!physical`.
fn read(
    ram: &GuestRam,
    rom: RomReader,
    state: &VcpuState,
    physical: bool,
    addr: u64,
    buf: &mut [u8],
) -> Result<(), DumpError> {
    let kind = if physical { "physical" } else { "virtual" };
    let mut done = 0usize;
    while done < buf.len() {
        let va = addr.wrapping_add(done as u64);
        let page_left = (0x1000 - (va & 0xfff)) as usize;
        let n = page_left.min(buf.len() - done);
        let pa = if physical {
            va
        } else {
            walk::translate(ram, state, va).map_err(|e| DumpError::Access {
                kind,
                addr: va,
                why: format!(": {e}"),
            })?
        };
        let dst = &mut buf[done..done + n];
        if ram.read_slice(dst, GuestAddress(pa)).is_err() && !rom(pa, dst) {
            return Err(DumpError::Access {
                kind,
                addr: va,
                why: if physical {
                    String::new()
                } else {
                    format!(" (physical 0x{pa:x} is not RAM)")
                },
            });
        }
        done += n;
    }
    Ok(())
}

/// The dump text for `count` units of `fmt` at `addr`.
pub fn dump(
    ram: &GuestRam,
    rom: RomReader,
    state: &VcpuState,
    physical: bool,
    addr: u64,
    fmt: &DumpFormat,
) -> Result<String, DumpError> {
    if fmt.format == 'i' {
        return disassemble(ram, rom, state, physical, addr, fmt.count);
    }
    let total = fmt.count.saturating_mul(fmt.size);
    if total > MAX_BYTES {
        return Err(DumpError::TooLarge(total));
    }
    let mut bytes = vec![0u8; total as usize];
    read(ram, rom, state, physical, addr, &mut bytes)?;
    let line_size = if fmt.size == 1 { 8 } else { 16 };
    let bits = fmt.size * 8;
    let mut o = String::new();
    for (l, line) in bytes.chunks(line_size).enumerate() {
        let _ = write!(o, "{:016x}:", addr.wrapping_add((l * line_size) as u64));
        for unit in line.chunks(fmt.size as usize) {
            let mut le = [0u8; 8];
            le[..unit.len()].copy_from_slice(unit);
            let v = u64::from_le_bytes(le);
            let _ = match fmt.format {
                'x' => write!(o, " 0x{v:0w$x}", w = (fmt.size * 2) as usize),
                'o' => write!(
                    o,
                    " {:>w$}",
                    format!("{v:#o}"),
                    w = bits.div_ceil(3) as usize + 1
                ),
                'u' => write!(o, " {v:>w$}", w = (bits * 10).div_ceil(33) as usize),
                'd' => {
                    let shift = 64 - bits;
                    let s = ((v << shift) as i64) >> shift;
                    write!(o, " {s:>w$}", w = (bits * 10).div_ceil(33) as usize + 1)
                }
                _ => write!(o, " {}", printable(unit[0])),
            };
        }
        o.push('\n');
    }
    Ok(o)
}

/// QEMU's `monitor_printc`: a quoted printable character or an escape.
fn printable(b: u8) -> String {
    match b {
        b'\'' => "'\\''".into(),
        b'\\' => "'\\\\'".into(),
        b'\n' => "'\\n'".into(),
        b'\r' => "'\\r'".into(),
        0x20..=0x7e => format!("'{}'", char::from(b)),
        _ => format!("'\\x{b:02x}'"),
    }
}

fn disassemble(
    ram: &GuestRam,
    rom: RomReader,
    state: &VcpuState,
    physical: bool,
    addr: u64,
    count: u64,
) -> Result<String, DumpError> {
    // At most 15 bytes per instruction; read what is there, stopping at the first hole.
    let want = count.saturating_mul(15).min(MAX_BYTES) as usize;
    let mut bytes = Vec::with_capacity(want);
    let mut chunk = [0u8; 1];
    for i in 0..want {
        if read(
            ram,
            rom,
            state,
            physical,
            addr.wrapping_add(i as u64),
            &mut chunk,
        )
        .is_err()
        {
            break;
        }
        bytes.push(chunk[0]);
    }
    if bytes.is_empty() {
        read(ram, rom, state, physical, addr, &mut chunk)?;
    }
    let mut decoder = Decoder::with_ip(state.code_bitness(), &bytes, addr, DecoderOptions::NONE);
    let mut formatter = IntelFormatter::new();
    let mut o = String::new();
    let mut text = String::new();
    for _ in 0..count {
        if !decoder.can_decode() {
            break;
        }
        let insn = decoder.decode();
        text.clear();
        formatter.format(&insn, &mut text);
        let _ = writeln!(o, "0x{:016x}:  {text}", insn.ip());
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_rom(_: u64, _: &mut [u8]) -> bool {
        false
    }

    fn ram() -> GuestRam {
        let ram = GuestRam::from_ranges(&[(GuestAddress(0), 0x2000)]).unwrap();
        ram.write_slice(b"\x48\x31\xc0\xf4kemu\n\x01\x02\x03", GuestAddress(0x1000))
            .unwrap();
        ram
    }

    #[test]
    fn formats_parse_like_qemu() {
        assert_eq!(DumpFormat::parse("").unwrap(), DumpFormat::default());
        let f = DumpFormat::parse("4xg").unwrap();
        assert_eq!((f.count, f.format, f.size), (4, 'x', 8));
        let f = DumpFormat::parse("2bu").unwrap();
        assert_eq!((f.count, f.format, f.size), (2, 'u', 1));
        assert_eq!(DumpFormat::parse("3c").unwrap().size, 1);
        assert!(DumpFormat::parse("4z").is_err());
    }

    #[test]
    fn hex_words_and_chars_from_physical_memory() {
        let s = VcpuState::reset();
        let f = DumpFormat::parse("2x").unwrap();
        assert_eq!(
            dump(&ram(), &no_rom, &s, true, 0x1000, &f).unwrap(),
            "0000000000001000: 0xf4c03148 0x756d656b\n"
        );
        let f = DumpFormat::parse("5c").unwrap();
        assert_eq!(
            dump(&ram(), &no_rom, &s, true, 0x1004, &f).unwrap(),
            "0000000000001004: 'k' 'e' 'm' 'u' '\\n'\n"
        );
        let f = DumpFormat::parse("1bd").unwrap();
        assert_eq!(
            dump(&ram(), &no_rom, &s, true, 0x1003, &f).unwrap(),
            "0000000000001003:  -12\n"
        );
        assert!(matches!(
            dump(&ram(), &no_rom, &s, true, 0x5000, &f),
            Err(DumpError::Access { .. })
        ));
    }

    #[test]
    fn instructions_in_the_vcpus_code_size() {
        let mut s = VcpuState::reset();
        s.cr0 = 0x8000_0011;
        s.efer = 0x500;
        s.cs.l = true;
        let f = DumpFormat::parse("2i").unwrap();
        let text = dump(&ram(), &no_rom, &s, true, 0x1000, &f).unwrap();
        assert_eq!(
            text,
            "0x0000000000001000:  xor rax,rax\n0x0000000000001003:  hlt\n"
        );
    }

    #[test]
    fn addresses_and_registers() {
        let mut s = VcpuState::reset();
        s.gpr[reg::RSP] = 0x1_0000_7000;
        assert_eq!(parse_address("0x10", &s), Ok(0x10));
        assert_eq!(parse_address("16", &s), Ok(16));
        assert_eq!(parse_address("$rsp", &s), Ok(0x1_0000_7000));
        assert_eq!(parse_address("$esp", &s), Ok(0x7000));
        assert_eq!(parse_address("$pc", &s), Ok(0xffff_fff0));
        assert!(parse_address("$foo", &s).is_err());
    }
}

//! Parsers for QEMU-style option values: sizes, `-smp`, `key=value` lists, `-device`,
//! `-serial`, `-d`. Each returns a [`ValueError`] that names the option and the bad part.

use std::path::PathBuf;

use crate::block::Format;
use crate::devices::virtio::blk::CacheMode;
use crate::machine::{DebugExitConfig, DriveConfig, SerialConfig, TraceFlags};

/// A bad option value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("-{option} {value}: {problem}")]
pub struct ValueError {
    /// The option (without dash).
    pub option: &'static str,
    /// The value given.
    pub value: String,
    /// What is wrong with it.
    pub problem: String,
}

fn bad(option: &'static str, value: &str, problem: impl Into<String>) -> ValueError {
    ValueError {
        option,
        value: value.to_string(),
        problem: problem.into(),
    }
}

/// Split `a,b=c,d=e` into the leading bare word (if any) and `key=value` pairs.
pub fn split_props(value: &str) -> (Option<&str>, Vec<(&str, &str)>) {
    let mut head = None;
    let mut props = Vec::new();
    for (i, part) in value.split(',').enumerate() {
        match part.split_once('=') {
            Some((k, v)) => props.push((k, v)),
            None if i == 0 => head = Some(part),
            None => props.push((part, "")),
        }
    }
    (head, props)
}

/// Parse a size with an optional K/M/G/T suffix; a bare number is in `default_unit` bytes.
pub fn parse_size(s: &str, default_unit: u64) -> Option<u64> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let n: u64 = num.parse().ok()?;
    let mult = match unit.to_ascii_uppercase().trim_end_matches('B') {
        "" if unit.is_empty() => default_unit,
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Parse a number in decimal or `0x` hex.
pub fn parse_int(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// `-m 512`, `-m 1G`, `-m size=512M`: RAM bytes (at least 1 MiB).
pub fn parse_mem(value: &str) -> Result<u64, ValueError> {
    let (head, props) = split_props(value);
    let mut size = head;
    for (k, v) in props {
        match k {
            "size" => size = Some(v),
            "slots" | "maxmem" => {}
            _ => return Err(bad("m", value, format!("unknown property '{k}'"))),
        }
    }
    let size = size.ok_or_else(|| bad("m", value, "no size given"))?;
    let bytes = parse_size(size, 1 << 20)
        .ok_or_else(|| bad("m", value, "not a size (examples: 512, 512M, 2G)"))?;
    if bytes < 1 << 20 {
        return Err(bad("m", value, "RAM size must be at least 1 MiB"));
    }
    if bytes > 1 << 40 {
        return Err(bad("m", value, "RAM size must be at most 1 TiB"));
    }
    Ok(bytes)
}

/// The most vCPUs the machine model describes (xAPIC IDs fit in 8 bits; the IOAPIC takes one).
pub const MAX_CPUS: usize = 254;

/// `-smp 2`, `-smp cpus=2,sockets=1,...`: the vCPU count.
pub fn parse_smp(value: &str) -> Result<usize, ValueError> {
    let (head, props) = split_props(value);
    let mut cpus = head.map(str::to_string);
    let mut product = 1u64;
    let mut topo = false;
    for (k, v) in props {
        let n = parse_int(v).ok_or_else(|| bad("smp", value, format!("'{k}' is not a number")))?;
        match k {
            "cpus" => cpus = Some(v.to_string()),
            "sockets" | "cores" | "threads" | "dies" => {
                topo = true;
                product = product.saturating_mul(n);
            }
            "maxcpus" => {}
            _ => return Err(bad("smp", value, format!("unknown property '{k}'"))),
        }
    }
    let n = match cpus {
        Some(c) => parse_int(&c).ok_or_else(|| bad("smp", value, "not a CPU count"))?,
        None if topo => product,
        None => return Err(bad("smp", value, "no CPU count given")),
    };
    if n == 0 {
        return Err(bad("smp", value, "the CPU count must be at least 1"));
    }
    if n > MAX_CPUS as u64 {
        return Err(bad(
            "smp",
            value,
            format!("at most {MAX_CPUS} CPUs are supported"),
        ));
    }
    Ok(n as usize)
}

/// `-serial stdio|mon:stdio|none|null|file:PATH`.
pub fn parse_serial(value: &str) -> Result<SerialConfig, ValueError> {
    match value {
        "stdio" | "mon:stdio" => Ok(SerialConfig::Stdio),
        "none" | "null" => Ok(SerialConfig::None),
        _ => match value.strip_prefix("file:") {
            Some(p) if !p.is_empty() => Ok(SerialConfig::File(PathBuf::from(p))),
            _ => Err(bad(
                "serial",
                value,
                "supported: stdio, mon:stdio, none, null, file:PATH",
            )),
        },
    }
}

/// A `-device` kemu knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSpec {
    /// `isa-debug-exit[,iobase=N][,iosize=N]`.
    DebugExit(DebugExitConfig),
}

/// Parse one `-device` value.
pub fn parse_device(value: &str) -> Result<DeviceSpec, ValueError> {
    let (head, props) = split_props(value);
    let mut driver = head;
    let mut rest = Vec::new();
    for (k, v) in props {
        if k == "driver" {
            driver = Some(v);
        } else {
            rest.push((k, v));
        }
    }
    match driver {
        Some("isa-debug-exit") => {
            let mut cfg = DebugExitConfig {
                iobase: 0x501,
                iosize: 2,
            };
            for (k, v) in rest {
                let n = parse_int(v)
                    .filter(|&n| n <= 0xffff)
                    .ok_or_else(|| bad("device", value, format!("'{k}={v}' is not a port")))?;
                match k {
                    "iobase" => cfg.iobase = n as u16,
                    "iosize" => cfg.iosize = n as u16,
                    _ => return Err(bad("device", value, format!("unknown property '{k}'"))),
                }
            }
            if cfg.iosize == 0 || u32::from(cfg.iobase) + u32::from(cfg.iosize) > 0x1_0000 {
                return Err(bad("device", value, "port range out of bounds"));
            }
            Ok(DeviceSpec::DebugExit(cfg))
        }
        Some(other) => Err(bad(
            "device",
            value,
            format!("unsupported device '{other}' (supported: isa-debug-exit)"),
        )),
        None => Err(bad("device", value, "no device name given")),
    }
}

/// Split `key=value,key=value` where a doubled comma stands for a comma inside a value (QEMU's
/// escaping for file names).
fn split_escaped(value: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ',' if chars.peek() == Some(&',') => {
                chars.next();
                if let Some(p) = parts.last_mut() {
                    p.push(',');
                }
            }
            ',' => parts.push(String::new()),
            _ => {
                if let Some(p) = parts.last_mut() {
                    p.push(c);
                }
            }
        }
    }
    parts
}

fn on_off(option: &'static str, value: &str, k: &str, v: &str) -> Result<bool, ValueError> {
    match v {
        "on" | "yes" | "true" | "" => Ok(true),
        "off" | "no" | "false" => Ok(false),
        _ => Err(bad(option, value, format!("'{k}={v}': expected on or off"))),
    }
}

/// `-drive file=F[,format=raw|qcow2][,if=virtio][,cache=..][,readonly=on|off][,snapshot=on|off]`.
/// `if=` defaults to virtio (kemu has no IDE controller).
pub fn parse_drive(value: &str) -> Result<DriveConfig, ValueError> {
    let mut file = None;
    let mut cfg = DriveConfig {
        path: PathBuf::new(),
        format: None,
        read_only: false,
        snapshot: false,
        cache: CacheMode::default(),
    };
    for part in split_escaped(value) {
        if part.is_empty() {
            continue;
        }
        let (k, v) = part.split_once('=').unwrap_or((part.as_str(), ""));
        match k {
            "file" if !v.is_empty() => file = Some(PathBuf::from(v)),
            "format" => {
                cfg.format = Some(Format::parse(v).map_err(|_| {
                    bad(
                        "drive",
                        value,
                        format!("unknown format '{v}' (supported: raw, qcow2)"),
                    )
                })?)
            }
            "if" => match v {
                "virtio" => {}
                "ide" => return Err(bad("drive", value, "no IDE controller; use if=virtio")),
                _ => {
                    return Err(bad(
                        "drive",
                        value,
                        format!("unsupported interface '{v}' (supported: virtio)"),
                    ))
                }
            },
            "cache" => {
                cfg.cache = match v {
                    "writeback" | "none" => CacheMode::Writeback,
                    "writethrough" | "directsync" => CacheMode::Writethrough,
                    "unsafe" => CacheMode::Unsafe,
                    _ => {
                        return Err(bad(
                            "drive",
                            value,
                            format!(
                                "unknown cache mode '{v}' (supported: writeback, none, \
                                 writethrough, directsync, unsafe)"
                            ),
                        ))
                    }
                }
            }
            "readonly" => cfg.read_only = on_off("drive", value, k, v)?,
            "snapshot" => cfg.snapshot = on_off("drive", value, k, v)?,
            "media" if v == "disk" => {}
            "id" | "index" | "discard" | "aio" => {}
            _ => {
                return Err(bad(
                    "drive",
                    value,
                    format!("unsupported property '{part}'"),
                ))
            }
        }
    }
    cfg.path = file.ok_or_else(|| bad("drive", value, "no file= given"))?;
    Ok(cfg)
}

/// `-d exits,stages`.
pub fn parse_trace(value: &str) -> Result<TraceFlags, ValueError> {
    let mut t = TraceFlags::default();
    for item in value.split(',') {
        match item {
            "exits" => t.exits = true,
            "stages" => t.stages = true,
            _ => {
                return Err(bad(
                    "d",
                    value,
                    format!("unknown trace item '{item}' (supported: exits, stages)"),
                ))
            }
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_mem("512").unwrap(), 512 << 20);
        assert_eq!(parse_mem("1G").unwrap(), 1 << 30);
        assert_eq!(parse_mem("size=64M").unwrap(), 64 << 20);
        assert!(parse_mem("0")
            .unwrap_err()
            .to_string()
            .contains("at least 1 MiB"));
        assert!(parse_mem("lots").is_err());
        assert!(parse_mem("99999999999999999999").is_err());
    }

    #[test]
    fn smp() {
        assert_eq!(parse_smp("2").unwrap(), 2);
        assert_eq!(parse_smp("cpus=4,sockets=1").unwrap(), 4);
        assert_eq!(parse_smp("sockets=2,cores=2").unwrap(), 4);
        assert!(parse_smp("0")
            .unwrap_err()
            .to_string()
            .contains("at least 1"));
        assert!(parse_smp("9999").is_err());
    }

    #[test]
    fn devices_and_serial() {
        assert_eq!(
            parse_device("isa-debug-exit,iobase=0xf4,iosize=0x04").unwrap(),
            DeviceSpec::DebugExit(DebugExitConfig {
                iobase: 0xf4,
                iosize: 4
            })
        );
        assert!(parse_device("e1000")
            .unwrap_err()
            .to_string()
            .contains("unsupported device"));
        assert!(parse_device("isa-debug-exit,iobase=0xfffff").is_err());
        assert_eq!(
            parse_serial("file:/tmp/x").unwrap(),
            SerialConfig::File("/tmp/x".into())
        );
        assert!(parse_serial("tcp::4444").is_err());
        assert!(parse_trace("exits,bogus").is_err());
    }

    #[test]
    fn drives() {
        let d =
            parse_drive("file=a,,b.img,format=qcow2,if=virtio,cache=unsafe,readonly=on").unwrap();
        assert_eq!(d.path, PathBuf::from("a,b.img"));
        assert_eq!(d.format, Some(Format::Qcow2));
        assert_eq!(d.cache, CacheMode::Unsafe);
        assert!(d.read_only && !d.snapshot);
        let d = parse_drive("file=x.raw,snapshot=on").unwrap();
        assert_eq!(d.format, None);
        assert!(d.snapshot);
        let e = parse_drive("file=x,if=ide").unwrap_err().to_string();
        assert!(e.contains("no IDE controller; use if=virtio"), "{e}");
        assert!(parse_drive("format=raw").is_err());
        assert!(parse_drive("file=x,format=vmdk").is_err());
        assert!(parse_drive("file=x,cache=fast").is_err());
        assert!(parse_drive("file=x,readonly=maybe").is_err());
    }
}

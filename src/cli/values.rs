//! Parsers for QEMU-style option values: sizes, `-smp`, `key=value` lists, `-device`,
//! `-serial`, `-d`. Each returns a [`ValueError`] that names the option and the bad part.

use std::path::PathBuf;

use crate::machine::{CharBackend, DebugExitConfig, SerialConfig, TraceFlags};

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

pub(super) fn bad(option: &'static str, value: &str, problem: impl Into<String>) -> ValueError {
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

/// `-chardev stdio,id=X`, `-chardev file,id=X,path=P`, `-chardev null,id=X`: (id, backend).
pub fn parse_chardev(value: &str) -> Result<(String, CharBackend), ValueError> {
    let (head, props) = split_props(value);
    let mut id = None;
    let mut path = None;
    for (k, v) in props {
        match k {
            "id" => id = Some(v),
            "path" => path = Some(v),
            // Terminal and logging options that change nothing here.
            "signal" | "mux" | "logfile" | "logappend" | "append" => {}
            _ => return Err(bad("chardev", value, format!("unknown property '{k}'"))),
        }
    }
    let id = id
        .filter(|i| !i.is_empty())
        .ok_or_else(|| bad("chardev", value, "an id=NAME is needed"))?;
    let backend = match head {
        Some("stdio") => CharBackend::Stdio,
        Some("null") => CharBackend::Null,
        Some("file") => CharBackend::File(PathBuf::from(
            path.filter(|p| !p.is_empty())
                .ok_or_else(|| bad("chardev", value, "file needs path=FILE"))?,
        )),
        Some(other) => {
            return Err(bad(
                "chardev",
                value,
                format!("unsupported backend '{other}' (supported: stdio, file, null)"),
            ))
        }
        None => return Err(bad("chardev", value, "no backend given")),
    };
    Ok((id.to_string(), backend))
}

/// A `-device` kemu knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSpec {
    /// `isa-debug-exit[,iobase=N][,iosize=N]`.
    DebugExit(DebugExitConfig),
    /// `isa-debugcon[,iobase=N],chardev=ID`.
    Debugcon {
        /// The port.
        iobase: u16,
        /// The `-chardev` id it writes to.
        chardev: String,
    },
    /// `pc-testdev`.
    PcTestdev,
    /// `pci-testdev`.
    PciTestdev,
    /// `virtio-blk-pci,drive=ID`: the `-drive if=none,id=ID` disk on a virtio-blk function.
    VirtioBlk {
        /// The drive's id.
        drive: String,
    },
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
        Some("isa-debugcon") => {
            let mut iobase = 0xe9u16;
            let mut chardev = None;
            for (k, v) in rest {
                match k {
                    "iobase" => {
                        iobase = parse_int(v)
                            .and_then(|n| u16::try_from(n).ok())
                            .ok_or_else(|| bad("device", value, format!("'{v}' is not a port")))?
                    }
                    "chardev" => chardev = Some(v.to_string()),
                    "readback" => {}
                    _ => return Err(bad("device", value, format!("unknown property '{k}'"))),
                }
            }
            let chardev =
                chardev.ok_or_else(|| bad("device", value, "isa-debugcon needs chardev=ID"))?;
            Ok(DeviceSpec::Debugcon { iobase, chardev })
        }
        Some(name @ ("pc-testdev" | "pci-testdev")) => {
            if let Some((k, _)) = rest
                .iter()
                .find(|(k, _)| !matches!(*k, "id" | "addr" | "bus"))
            {
                return Err(bad("device", value, format!("unknown property '{k}'")));
            }
            Ok(if name == "pc-testdev" {
                DeviceSpec::PcTestdev
            } else {
                DeviceSpec::PciTestdev
            })
        }
        Some("virtio-blk-pci" | "virtio-blk") => {
            let mut drive = None;
            for (k, v) in rest {
                match k {
                    "drive" => drive = Some(v.to_string()),
                    // Modern-only is all kemu has; ids and bus addresses are not modelled.
                    "id" | "disable-legacy" | "bus" | "addr" => {}
                    "disable-modern" if v == "off" || v == "false" => {}
                    _ => return Err(bad("device", value, format!("unsupported property '{k}'"))),
                }
            }
            let drive = drive.ok_or_else(|| bad("device", value, "no drive= given"))?;
            Ok(DeviceSpec::VirtioBlk { drive })
        }
        Some(other) => Err(bad(
            "device",
            value,
            format!(
                "unsupported device '{other}' (supported: isa-debug-exit, isa-debugcon, \
                 pc-testdev, pci-testdev, virtio-blk-pci)"
            ),
        )),
        None => Err(bad("device", value, "no device name given")),
    }
}

/// `-d exits,stages,in_asm,int,cpu` (the last three with QEMU's spelling and meaning).
pub fn parse_trace(value: &str) -> Result<TraceFlags, ValueError> {
    let mut t = TraceFlags::default();
    for item in value.split(',') {
        match item {
            "exits" => t.exits = true,
            "stages" => t.stages = true,
            "in_asm" => t.in_asm = true,
            "int" => t.int = true,
            "cpu" => t.cpu = true,
            _ => {
                return Err(bad(
                    "d",
                    value,
                    format!(
                        "unknown trace item '{item}' (supported: exits, stages, in_asm, int, cpu)"
                    ),
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
    fn chardevs_and_test_devices() {
        assert_eq!(
            parse_chardev("file,id=dbg,path=/tmp/d.log").unwrap(),
            ("dbg".into(), CharBackend::File("/tmp/d.log".into()))
        );
        assert_eq!(
            parse_chardev("stdio,id=s0,signal=off").unwrap(),
            ("s0".into(), CharBackend::Stdio)
        );
        assert!(parse_chardev("file,id=x").is_err());
        assert!(parse_chardev("stdio").is_err());
        assert!(parse_chardev("socket,id=x,path=/s").is_err());
        assert_eq!(
            parse_device("isa-debugcon,iobase=0x402,chardev=dbg").unwrap(),
            DeviceSpec::Debugcon {
                iobase: 0x402,
                chardev: "dbg".into()
            }
        );
        assert_eq!(
            parse_device("isa-debugcon,chardev=d").unwrap(),
            DeviceSpec::Debugcon {
                iobase: 0xe9,
                chardev: "d".into()
            }
        );
        assert!(parse_device("isa-debugcon").is_err());
        assert_eq!(parse_device("pc-testdev").unwrap(), DeviceSpec::PcTestdev);
        assert_eq!(
            parse_device("pci-testdev,addr=5").unwrap(),
            DeviceSpec::PciTestdev
        );
        assert!(parse_device("pc-testdev,bogus=1").is_err());
    }

    #[test]
    fn trace_items() {
        let t = parse_trace("in_asm,int,cpu").unwrap();
        assert!(t.in_asm && t.int && t.cpu && !t.exits && !t.stages);
        assert!(t.needs_tcg());
        let t = parse_trace("exits,stages").unwrap();
        assert!(t.exits && t.stages && !t.needs_tcg());
        assert!(parse_trace("in_asm,")
            .unwrap_err()
            .to_string()
            .contains("in_asm, int, cpu"));
    }
}

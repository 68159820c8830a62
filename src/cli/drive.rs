//! `-drive` values: QEMU's `key=value` list (a doubled comma escapes a comma in a file name)
//! into a [`DriveSpec`], with one-line errors naming the bad part.

use std::path::PathBuf;

use super::values::{bad, ValueError};
use crate::block::Format;
use crate::devices::virtio::blk::CacheMode;
use crate::machine::DriveConfig;

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

/// One `-drive`: the disk, its id, and whether it waits for a `-device virtio-blk-pci,drive=ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveSpec {
    /// The disk.
    pub config: DriveConfig,
    /// `id=`.
    pub id: Option<String>,
    /// `if=none`: not attached until a `-device` names it.
    pub detached: bool,
}

/// `-drive file=F[,format=raw|qcow2][,if=virtio|none][,id=ID][,cache=..][,readonly=on|off]
/// [,snapshot=on|off]`. `if=` defaults to virtio (kemu has no IDE controller).
pub fn parse_drive(value: &str) -> Result<DriveSpec, ValueError> {
    let mut file = None;
    let mut id = None;
    let mut detached = false;
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
                "virtio" => detached = false,
                "none" => detached = true,
                "ide" => return Err(bad("drive", value, "no IDE controller; use if=virtio")),
                _ => {
                    return Err(bad(
                        "drive",
                        value,
                        format!("unsupported interface '{v}' (supported: virtio, none)"),
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
            "id" if !v.is_empty() => id = Some(v.to_string()),
            "index" | "discard" | "aio" => {}
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
    Ok(DriveSpec {
        config: cfg,
        id,
        detached,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drives() {
        let s =
            parse_drive("file=a,,b.img,format=qcow2,if=virtio,cache=unsafe,readonly=on").unwrap();
        assert!(!s.detached && s.id.is_none());
        let d = s.config;
        assert_eq!(d.path, PathBuf::from("a,b.img"));
        assert_eq!(d.format, Some(Format::Qcow2));
        assert_eq!(d.cache, CacheMode::Unsafe);
        assert!(d.read_only && !d.snapshot);
        let s = parse_drive("file=x.raw,snapshot=on,if=none,id=d0").unwrap();
        assert!(s.detached);
        assert_eq!(s.id.as_deref(), Some("d0"));
        let d = s.config;
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

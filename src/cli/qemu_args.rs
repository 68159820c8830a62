//! QEMU spells long options with one dash (`-kernel`, `-no-reboot`) and lets values start with a
//! dash (`-append "-v"`). This module rewrites such an argv into clap's `--name=value` form,
//! knowing which options take a value, and rejects unknown options with a one-line error.

use std::ffi::OsString;

/// Options that take a value, as QEMU spells them (without the dash).
pub const VALUE_OPTIONS: &[&str] = &[
    "accel", "m", "smp", "kernel", "initrd", "append", "display", "serial", "device", "machine",
    "M", "cpu", "d", "D", "gdb", "bios", "chardev", "global", "monitor", "qmp", "drive", "hda",
    "icount", "rtc",
];

/// Options that are flags.
pub const FLAG_OPTIONS: &[&str] = &[
    "nographic",
    "no-reboot",
    "nodefaults",
    "enable-kvm",
    "snapshot",
    "help",
    "h",
    "version",
    "s",
    "S",
    "demo",
];

/// Value options not shown in `-help` (kemu's own plumbing, such as `kemu bench`'s).
pub const HIDDEN_VALUE_OPTIONS: &[&str] = &["stats-file"];

/// A command-line error, printed as one line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgError {
    /// An option kemu does not know.
    #[error("unknown option '{0}' (see kemu -help)")]
    Unknown(String),
    /// A value-taking option at the end of the line.
    #[error("option '-{0}' needs a value")]
    MissingValue(String),
    /// A bare word where an option was expected.
    #[error("unexpected argument '{0}' (options start with '-'; see kemu -help)")]
    Stray(String),
    /// An argument that is not valid UTF-8.
    #[error("argument is not valid UTF-8: {0}")]
    NotUtf8(String),
}

/// Rewrite `args` (without the program name) into `--name=value` / `--flag` form.
pub fn normalize(args: &[OsString]) -> Result<Vec<String>, ArgError> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(raw) = it.next() {
        let arg = raw
            .to_str()
            .ok_or_else(|| ArgError::NotUtf8(raw.to_string_lossy().into_owned()))?;
        let Some(body) = arg.strip_prefix('-').filter(|b| !b.is_empty()) else {
            return Err(ArgError::Stray(arg.to_string()));
        };
        let body = body.strip_prefix('-').unwrap_or(body);
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        if VALUE_OPTIONS.contains(&name) || HIDDEN_VALUE_OPTIONS.contains(&name) {
            let value = match inline {
                Some(v) => v.to_string(),
                None => it
                    .next()
                    .ok_or_else(|| ArgError::MissingValue(name.to_string()))?
                    .to_str()
                    .ok_or_else(|| ArgError::NotUtf8(name.to_string()))?
                    .to_string(),
            };
            out.push(format!("--{name}={value}"));
        } else if FLAG_OPTIONS.contains(&name) && inline.is_none() {
            out.push(format!("--{name}"));
        } else {
            return Err(ArgError::Unknown(arg.to_string()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(args: &[&str]) -> Result<Vec<String>, ArgError> {
        normalize(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn single_and_double_dash_and_dash_values() {
        assert_eq!(
            n(&[
                "-kernel",
                "bz",
                "--m",
                "1G",
                "-append",
                "-v quiet",
                "-no-reboot",
                "-smp=2"
            ])
            .unwrap(),
            vec![
                "--kernel=bz",
                "--m=1G",
                "--append=-v quiet",
                "--no-reboot",
                "--smp=2"
            ]
        );
    }

    #[test]
    fn errors_are_named() {
        assert_eq!(
            n(&["-frobnicate"]),
            Err(ArgError::Unknown("-frobnicate".into()))
        );
        assert_eq!(
            n(&["-kernel"]),
            Err(ArgError::MissingValue("kernel".into()))
        );
        assert_eq!(n(&["disk.img"]), Err(ArgError::Stray("disk.img".into())));
        assert_eq!(
            n(&["-nographic=1"]),
            Err(ArgError::Unknown("-nographic=1".into()))
        );
    }
}

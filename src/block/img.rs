//! `kemu img`: create, info, check, convert and resize disk images, spelled and worded like
//! qemu-img. Arguments come in as strings; results leave on stdout, errors as one line
//! `kemu img: ...` on stderr, and the exit status (check: 0 clean, 2 corrupt, 3 leaks).

use std::path::Path;

use super::qcow2::{self, Qcow2};
use super::raw::RawImage;
use super::{open_image, probe_format, BlockDevice, BlockError, Format};

const USAGE: &str =
    "usage: kemu img create -f raw|qcow2 [-o cluster_size=N] [-b BACKING -F FMT] FILE [SIZE]
       kemu img info [-f FMT] FILE
       kemu img check [-f FMT] FILE
       kemu img convert [-c] [-f FMT] [-O raw|qcow2] IN OUT
       kemu img resize [-f FMT] FILE [+]SIZE";

/// Runs `kemu img` with `args` (the words after `img`); returns the process exit status.
pub fn img_main(args: &[String]) -> i32 {
    match run(args) {
        Ok(status) => status,
        Err(msg) => {
            eprintln!("kemu img: {msg}");
            1
        }
    }
}

/// Parses sizes as qemu-img does: bytes, or a number with a k/K, M, G, T, P, E suffix (binary).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || {
        format!("Invalid image size specified. You may use k, M, G, T, P or E suffixes for kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes. ('{s}')")
    };
    let (num, shift) = match s.chars().last() {
        Some('b') | Some('B') => (&s[..s.len() - 1], 0),
        Some('k') | Some('K') => (&s[..s.len() - 1], 10),
        Some('m') | Some('M') => (&s[..s.len() - 1], 20),
        Some('g') | Some('G') => (&s[..s.len() - 1], 30),
        Some('t') | Some('T') => (&s[..s.len() - 1], 40),
        Some('p') | Some('P') => (&s[..s.len() - 1], 50),
        Some('e') | Some('E') => (&s[..s.len() - 1], 60),
        Some(_) => (s, 0),
        None => return Err(bad()),
    };
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(1u64 << shift).ok_or_else(bad);
    }
    let f: f64 = num.parse().map_err(|_| bad())?;
    let v = f * (1u64 << shift) as f64;
    if !(0.0..9.2e18).contains(&v) {
        return Err(bad());
    }
    Ok(v as u64)
}

/// qemu's human size: three significant digits and a binary unit ("64 MiB", "1.5 GiB").
pub fn human_size(v: u64) -> String {
    const UNITS: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let mut i = 0;
    // Switch to the next unit once the value reaches 1000 of the current one, as qemu does.
    while i + 1 < UNITS.len() && (v as f64) >= 1000.0 * (1u64 << (10 * i)) as f64 {
        i += 1;
    }
    let x = v as f64 / (1u64 << (10 * i)) as f64;
    let digits = if x >= 100.0 {
        0
    } else if x >= 10.0 {
        1
    } else {
        2
    };
    let mut s = format!("{x:.digits$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s} {}B", UNITS[i])
}

struct Opts {
    fmt: Option<String>,
    out_fmt: Option<String>,
    backing: Option<String>,
    backing_fmt: Option<String>,
    options: Vec<String>,
    compress: bool,
    pos: Vec<String>,
}

fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        fmt: None,
        out_fmt: None,
        backing: None,
        backing_fmt: None,
        options: Vec::new(),
        compress: false,
        pos: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("option '{name}' requires an argument\n{USAGE}"))
        };
        match a.as_str() {
            "-f" => o.fmt = Some(val("-f")?),
            "-O" => o.out_fmt = Some(val("-O")?),
            "-b" => o.backing = Some(val("-b")?),
            "-F" => o.backing_fmt = Some(val("-F")?),
            "-o" => o.options.push(val("-o")?),
            "-c" => o.compress = true,
            "-q" | "-p" => {}
            s if s.starts_with('-') && s.len() > 1 && !s.starts_with("-0") => {
                return Err(format!("unknown option '{s}'\n{USAGE}"))
            }
            _ => o.pos.push(a.clone()),
        }
    }
    Ok(o)
}

fn fmt_of(name: &Option<String>) -> Result<Option<Format>, String> {
    name.as_deref()
        .map(Format::parse)
        .transpose()
        .map_err(|e| e.to_string())
}

fn open_err(path: &str, e: BlockError) -> String {
    format!("Could not open '{path}': {e}")
}

fn run(args: &[String]) -> Result<i32, String> {
    let Some((cmd, rest)) = args.split_first() else {
        return Err(format!("Not enough arguments\n{USAGE}"));
    };
    let o = parse_opts(rest)?;
    match cmd.as_str() {
        "create" => create(&o),
        "info" => info(&o),
        "check" => check(&o),
        "convert" => convert(&o),
        "resize" => resize(&o),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(0)
        }
        c => Err(format!("Command not found: {c}\n{USAGE}")),
    }
}

fn one_file(o: &Opts) -> Result<&str, String> {
    match o.pos.as_slice() {
        [f] => Ok(f),
        [] => Err("Expecting one image file name".into()),
        _ => Err(format!("Invalid argument: {}", o.pos[1])),
    }
}

/// log2 of `-o cluster_size=N` (default 64 KiB); other `-o` keys are refused.
fn cluster_bits(o: &Opts) -> Result<u32, String> {
    let mut bits = 16;
    for kv in o.options.iter().flat_map(|s| s.split(',')) {
        match kv.split_once('=') {
            Some(("cluster_size", v)) => {
                let n = parse_size(v)?;
                if !n.is_power_of_two() || !(512..=2 << 20).contains(&n) {
                    return Err("Cluster size must be a power of two between 512 and 2048k".into());
                }
                bits = n.trailing_zeros();
            }
            _ => {
                return Err(format!(
                    "Invalid parameter '{kv}' (only cluster_size is supported)"
                ))
            }
        }
    }
    Ok(bits)
}

fn create(o: &Opts) -> Result<i32, String> {
    let fmt = fmt_of(&o.fmt)?.unwrap_or(Format::Raw);
    let bits = cluster_bits(o)?;
    let (file, size) = match o.pos.as_slice() {
        [f] => (f.as_str(), None),
        [f, s] => (f.as_str(), Some(parse_size(s)?)),
        _ => return Err(format!("Expecting image file name\n{USAGE}")),
    };
    let backing = match &o.backing {
        Some(b) => {
            if fmt != Format::Qcow2 {
                return Err(format!("'{}' does not support backing files", fmt.name()));
            }
            let bpath = Path::new(file).parent().unwrap_or(Path::new("")).join(b);
            let bfmt = match fmt_of(&o.backing_fmt)? {
                Some(f) => f,
                None => probe_format(&bpath).map_err(|e| open_err(b, e))?,
            };
            Some((b.as_str(), bfmt, bpath))
        }
        None => None,
    };
    let size = match (size, &backing) {
        (Some(s), _) => s,
        (None, Some((b, bfmt, bpath))) => open_image(bpath, Some(*bfmt), true)
            .map_err(|e| open_err(b, e))?
            .size(),
        (None, None) => return Err("Image creation needs a size parameter".into()),
    };
    match fmt {
        Format::Raw => {
            println!("Formatting '{file}', fmt=raw size={size}");
            super::create_raw(Path::new(file), size).map_err(|e| e.to_string())?;
        }
        Format::Qcow2 => {
            let bdesc = backing
                .as_ref()
                .map(|(b, f, _)| format!(" backing_file={b} backing_fmt={}", f.name()))
                .unwrap_or_default();
            let cs = 1u64 << bits;
            println!("Formatting '{file}', fmt=qcow2 cluster_size={cs} extended_l2=off compression_type=zlib size={size}{bdesc} lazy_refcounts=off refcount_bits=16");
            let b = backing.as_ref().map(|(b, f, _)| (*b, *f));
            super::create_qcow2(Path::new(file), size, bits, b).map_err(|e| e.to_string())?;
        }
    }
    Ok(0)
}

fn info(o: &Opts) -> Result<i32, String> {
    let file = one_file(o)?;
    let path = Path::new(file);
    let fmt = match fmt_of(&o.fmt)? {
        Some(f) => f,
        None => probe_format(path).map_err(|e| open_err(file, e))?,
    };
    println!("image: {file}");
    println!("file format: {}", fmt.name());
    match fmt {
        Format::Raw => {
            let r = RawImage::open(path, true).map_err(|e| open_err(file, e))?;
            println!(
                "virtual size: {} ({} bytes)",
                human_size(r.size()),
                r.size()
            );
            println!("disk size: {}", human_size(r.disk_usage()));
        }
        Format::Qcow2 => {
            let q = Qcow2::open(path, true).map_err(|e| open_err(file, e))?;
            let h = q.header();
            println!("virtual size: {} ({} bytes)", human_size(h.size), h.size);
            println!("disk size: {}", human_size(q.disk_usage()));
            println!("cluster_size: {}", h.cluster_size());
            if let Some(b) = &h.backing_file {
                println!("backing file: {b}");
                if let Some(bf) = &h.backing_format {
                    println!("backing file format: {bf}");
                }
            }
            println!("Format specific information:");
            println!(
                "    compat: {}",
                if h.version == 2 { "0.10" } else { "1.1" }
            );
            println!("    compression type: zlib");
            println!("    lazy refcounts: {}", h.compatible & 1 != 0);
            println!("    refcount bits: {}", 1u32 << h.refcount_order);
            println!("    corrupt: {}", h.incompatible & 2 != 0);
            println!("    extended l2: false");
        }
    }
    Ok(0)
}

fn check(o: &Opts) -> Result<i32, String> {
    let file = one_file(o)?;
    let path = Path::new(file);
    let fmt = match fmt_of(&o.fmt)? {
        Some(f) => f,
        None => probe_format(path).map_err(|e| open_err(file, e))?,
    };
    if fmt != Format::Qcow2 {
        eprintln!("kemu img: This image format does not support checks");
        return Ok(63);
    }
    let r = qcow2::check::check(path).map_err(|e| format!("Check failed: {e}"))?;
    for m in &r.messages {
        println!("{m}");
    }
    if r.corruptions == 0 && r.leaks == 0 {
        println!("No errors were found on the image.");
    }
    if r.corruptions > 0 {
        println!(
            "\n{} errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.",
            r.corruptions
        );
    }
    if r.leaks > 0 {
        println!(
            "\n{} leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.",
            r.leaks
        );
    }
    let pct = |n: u64| {
        if r.total == 0 {
            0.0
        } else {
            n as f64 * 100.0 / r.total as f64
        }
    };
    let frac = |n: u64| {
        if r.allocated == 0 {
            0.0
        } else {
            n as f64 * 100.0 / r.allocated as f64
        }
    };
    // Like qemu-img, the statistics line only when something is allocated.
    if r.allocated > 0 {
        println!(
            "{}/{} = {:.2}% allocated, {:.2}% fragmented, {:.2}% compressed clusters",
            r.allocated,
            r.total,
            pct(r.allocated),
            frac(r.fragmented),
            frac(r.compressed)
        );
    }
    println!("Image end offset: {}", r.image_end);
    Ok(if r.corruptions > 0 {
        2
    } else if r.leaks > 0 {
        3
    } else {
        0
    })
}

/// Copies `input` into a new image `out` of format `out_fmt`, skipping all-zero clusters.
/// With `compress` (qcow2 output only) every data cluster is stored deflated.
pub fn convert_image(
    input: &Path,
    in_fmt: Option<Format>,
    out: &Path,
    out_fmt: Format,
    compress: bool,
) -> Result<(), BlockError> {
    let mut src = open_image(input, in_fmt, true)?;
    let size = src.size();
    const CHUNK: u64 = 64 * 1024;
    let mut dst: Box<dyn BlockDevice> = match out_fmt {
        Format::Raw if compress => {
            return Err(BlockError::Invalid(
                "Compression not supported for this file format".into(),
            ))
        }
        Format::Raw => {
            super::create_raw(out, size)?;
            open_image(out, Some(Format::Raw), false)?
        }
        Format::Qcow2 => {
            // 64 KiB clusters, so each chunk below is one whole cluster.
            super::create_qcow2(out, size, 16, None)?;
            let q = Qcow2::open(out, false)?;
            if compress {
                return copy_compressed(src.as_mut(), q, CHUNK);
            }
            Box::new(q)
        }
    };
    let mut buf = vec![0u8; CHUNK as usize];
    let mut pos = 0;
    while pos < size {
        let n = CHUNK.min(size - pos) as usize;
        src.read_at(pos, &mut buf[..n])?;
        if buf[..n].iter().any(|b| *b != 0) {
            dst.write_at(pos, &buf[..n])?;
        }
        pos += n as u64;
    }
    dst.flush()
}

fn copy_compressed(src: &mut dyn BlockDevice, mut q: Qcow2, cs: u64) -> Result<(), BlockError> {
    let size = src.size();
    let mut buf = vec![0u8; cs as usize];
    let mut pos = 0;
    while pos < size {
        let n = cs.min(size - pos) as usize;
        src.read_at(pos, &mut buf[..n])?;
        if buf[..n].iter().any(|b| *b != 0) {
            if n as u64 == cs {
                q.write_compressed(pos, &buf)?;
            } else {
                // The tail of a disk that is not a whole number of clusters.
                q.write_at(pos, &buf[..n])?;
            }
        }
        pos += n as u64;
    }
    q.flush()
}

fn convert(o: &Opts) -> Result<i32, String> {
    let [input, out] = o.pos.as_slice() else {
        return Err(format!(
            "Expecting one input and one output file name\n{USAGE}"
        ));
    };
    let out_fmt = fmt_of(&o.out_fmt)?.unwrap_or(Format::Raw);
    convert_image(
        Path::new(input),
        fmt_of(&o.fmt)?,
        Path::new(out),
        out_fmt,
        o.compress,
    )
    .map_err(|e| e.to_string())?;
    Ok(0)
}

fn resize(o: &Opts) -> Result<i32, String> {
    let [file, size] = o.pos.as_slice() else {
        return Err(format!("Expecting image file name and size\n{USAGE}"));
    };
    let path = Path::new(file.as_str());
    let fmt = match fmt_of(&o.fmt)? {
        Some(f) => f,
        None => probe_format(path).map_err(|e| open_err(file, e))?,
    };
    let current = open_image(path, Some(fmt), true)
        .map_err(|e| open_err(file, e))?
        .size();
    let new = if let Some(s) = size.strip_prefix('+') {
        current.saturating_add(parse_size(s)?)
    } else if let Some(s) = size.strip_prefix('-') {
        current.saturating_sub(parse_size(s)?)
    } else {
        parse_size(size)?
    };
    match fmt {
        Format::Raw => RawImage::open(path, false)
            .and_then(|mut r| r.resize(new))
            .map_err(|e| e.to_string())?,
        Format::Qcow2 => {
            if new < current {
                return Err(
                    "qcow2 doesn't support shrinking images yet (use a raw image or grow only)"
                        .into(),
                );
            }
            Qcow2::open(path, false)
                .and_then(|mut q| q.resize(new))
                .map_err(|e| e.to_string())?
        }
    }
    println!("Image resized.");
    Ok(0)
}

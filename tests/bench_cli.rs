//! `kemu bench` end to end on the demo guest: one run per accelerator, a table whose header
//! names the accelerators and whose cells are numbers (or `-`), and an SVG that is well-formed
//! XML (checked by `xmllint` when installed, and always by a small checker here).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::kemu;

/// A small well-formedness check: every tag closes in order, attributes are quoted, `&` starts
/// an entity, and there is one root element.
fn well_formed(xml: &str) -> Result<(), String> {
    let mut stack: Vec<String> = Vec::new();
    let mut roots = 0;
    let mut rest = xml;
    while let Some(lt) = rest.find('<') {
        check_text(&rest[..lt])?;
        let after = &rest[lt + 1..];
        let gt = after.find('>').ok_or("unclosed '<'")?;
        let tag = &after[..gt];
        rest = &after[gt + 1..];
        if tag.starts_with('?') {
            if !tag.ends_with('?') {
                return Err(format!("bad declaration <{tag}>"));
            }
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            match stack.pop() {
                Some(open) if open == name.trim() => continue,
                other => return Err(format!("</{name}> closes {other:?}")),
            }
        }
        let self_closing = tag.ends_with('/');
        let body = tag.trim_end_matches('/');
        let name = body.split_whitespace().next().ok_or("empty tag")?;
        check_attrs(&body[name.len()..])?;
        if stack.is_empty() {
            roots += 1;
        }
        if !self_closing {
            stack.push(name.to_string());
        }
    }
    check_text(rest)?;
    if !stack.is_empty() {
        return Err(format!("unclosed {stack:?}"));
    }
    if roots != 1 {
        return Err(format!("{roots} root elements"));
    }
    Ok(())
}

fn check_text(t: &str) -> Result<(), String> {
    for (i, _) in t.match_indices('&') {
        let ent = &t[i..t[i..].find(';').map_or(t.len(), |e| i + e + 1)];
        if !["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].contains(&ent) {
            return Err(format!("bad entity {ent:?}"));
        }
    }
    Ok(())
}

fn check_attrs(mut a: &str) -> Result<(), String> {
    loop {
        a = a.trim_start();
        if a.is_empty() {
            return Ok(());
        }
        let eq = a
            .find('=')
            .ok_or_else(|| format!("attribute without value: {a:?}"))?;
        let v = &a[eq + 1..];
        let q = v.chars().next().filter(|c| *c == '"' || *c == '\'');
        let q = q.ok_or_else(|| format!("unquoted attribute: {a:?}"))?;
        let end = v[1..].find(q).ok_or("unterminated attribute")?;
        check_text(&v[1..1 + end])?;
        a = &v[end + 2..];
    }
}

#[test]
fn the_checker_rejects_broken_xml() {
    assert!(well_formed(r#"<?xml version="1.0"?><a x="1"><b/>t &amp; u</a>"#).is_ok());
    for bad in [
        "<a><b></a></b>",
        "<a x=1></a>",
        "<a>&</a>",
        "<a>",
        "<a/><b/>",
    ] {
        assert!(well_formed(bad).is_err(), "{bad}");
    }
}

#[test]
fn bench_prints_a_table_and_writes_an_svg() {
    let dir = std::env::temp_dir().join(format!("kemu-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("out.svg");
    let r = kemu(
        &["bench", "--runs", "1", "--svg", svg.to_str().unwrap()],
        Duration::from_secs(300),
    );
    assert_eq!(r.status, Some(0), "stderr: {}", r.stderr);
    let kvm = Path::new("/dev/kvm").exists();
    if !kvm {
        assert!(
            r.stderr.contains("kvm SKIPPED (no /dev/kvm)"),
            "{}",
            r.stderr
        );
        eprintln!("bench_prints_a_table_and_writes_an_svg: kvm SKIPPED (no /dev/kvm)");
    }
    // Progress: one line per run.
    let runs = r
        .stderr
        .lines()
        .filter(|l| l.contains(": run 1/1 "))
        .count();
    assert_eq!(runs, if kvm { 2 } else { 1 }, "{}", r.stderr);

    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines[0].starts_with("kemu bench: demo guest (-bios kemu), 1 run per accelerator"));
    let head: Vec<&str> = lines[1].split_whitespace().collect();
    let want: &[&str] = if kvm {
        &["metric", "kvm", "tcg", "kvm/tcg"]
    } else {
        &["metric", "tcg"]
    };
    assert_eq!(head, want, "{}", r.stdout);
    let mut metrics = Vec::new();
    for l in lines[2..].iter().take_while(|l| !l.is_empty()) {
        let w: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(w.len(), head.len(), "{l}");
        for cell in &w[1..] {
            assert!(
                *cell == "-" || cell.parse::<f64>().is_ok_and(|v| v.is_finite() && v >= 0.0),
                "{l}: {cell:?} is not a number"
            );
        }
        metrics.push(w[0]);
    }
    for m in [
        "wall-ms",
        "run-ms",
        "vcpu-ms",
        "instructions",
        "MIPS",
        "exits",
        "exits-per-s",
        "exit:io-out",
    ] {
        assert!(metrics.contains(&m), "no {m} row in {}", r.stdout);
    }
    // The demo retires the same number of instructions every time under tcg.
    let tcg_col = head.iter().position(|h| *h == "tcg").unwrap();
    let insns = lines
        .iter()
        .find(|l| l.starts_with("instructions"))
        .unwrap()
        .split_whitespace()
        .nth(tcg_col)
        .unwrap();
    assert!(insns.parse::<u64>().unwrap() > 1000, "{insns}");

    let text = std::fs::read_to_string(&svg).unwrap();
    well_formed(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(text.contains("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(text.contains(">wall-ms<"));
    match Command::new("xmllint").arg("--noout").arg(&svg).output() {
        Ok(out) => assert!(
            out.status.success(),
            "xmllint: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) => eprintln!("bench_prints_a_table_and_writes_an_svg: xmllint not installed"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bench_rejects_bad_options_in_one_line() {
    let r = kemu(&["bench", "--runs", "0"], Duration::from_secs(30));
    assert_eq!(r.status, Some(1));
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.starts_with("kemu bench: --runs 0"), "{}", r.stderr);
}

//! The bench result as an SVG bar chart, written by hand: one panel per metric with a
//! horizontal bar per accelerator, each panel scaled to its own largest value (the metrics have
//! different units). A [`Summary`] enters; the SVG document leaves as a `String`.

use std::fmt::Write as _;

use super::table::Summary;

/// Chart width in pixels.
const WIDTH: u32 = 720;
/// Left margin, where the metric and accelerator names go.
const LABEL_W: u32 = 150;
/// Room right of the longest bar for its value.
const VALUE_W: u32 = 110;
/// Height of one bar.
const BAR_H: u32 = 18;
/// Height of a panel title.
const TITLE_H: u32 = 22;
/// Bar colours, by accelerator column.
const COLOURS: [&str; 4] = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759"];

/// Escape text for an SVG text node or attribute.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

/// Draw `summary` with `title` on top.
pub fn chart(summary: &Summary, title: &str) -> String {
    let n = summary.accels.len() as u32;
    let panel_h = TITLE_H + n * (BAR_H + 4) + 10;
    let rows: Vec<_> = summary
        .rows
        .iter()
        .filter(|r| r.values.iter().any(|v| v.is_some_and(|v| v > 0.0)))
        .collect();
    let height = 40 + rows.len() as u32 * panel_h;
    let bar_max = f64::from(WIDTH - LABEL_W - VALUE_W);
    let mut s = String::new();
    let _ = writeln!(s, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="10" y="24" font-size="16" font-weight="bold">{}</text>"#,
        esc(title)
    );
    for (k, row) in rows.iter().enumerate() {
        let top = 40 + k as u32 * panel_h;
        let max = row.values.iter().flatten().fold(0.0f64, |m, &v| m.max(v));
        let _ = writeln!(
            s,
            r##"<text x="10" y="{}" font-weight="bold">{}</text><text x="{LABEL_W}" y="{}" fill="#555">{}</text>"##,
            top + 15,
            esc(&row.name),
            top + 15,
            esc(row.about)
        );
        for (i, (accel, v)) in summary.accels.iter().zip(&row.values).enumerate() {
            let y = top + TITLE_H + i as u32 * (BAR_H + 4);
            let _ = writeln!(
                s,
                r#"<text x="20" y="{}">{}</text>"#,
                y + BAR_H - 5,
                esc(accel.name())
            );
            let (w, label) = match v {
                Some(v) if max > 0.0 => (
                    (v / max * bar_max).max(1.0),
                    format!("{v:.*}", row.decimals),
                ),
                Some(v) => (1.0, format!("{v:.*}", row.decimals)),
                None => (0.0, "n/a".to_string()),
            };
            let _ = writeln!(
                s,
                r#"<rect x="{LABEL_W}" y="{y}" width="{w:.1}" height="{BAR_H}" fill="{}"><title>{}: {}</title></rect>"#,
                COLOURS[i % COLOURS.len()],
                esc(accel.name()),
                esc(&label)
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{}">{}</text>"#,
                f64::from(LABEL_W) + w + 6.0,
                y + BAR_H - 5,
                esc(&label)
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::super::table::Row;
    use super::*;
    use crate::bench::BenchAccel;

    #[test]
    fn panels_bars_and_escaping() {
        let summary = Summary {
            accels: vec![BenchAccel::Kvm, BenchAccel::Tcg],
            runs: 1,
            rows: vec![
                Row {
                    name: "wall-ms".into(),
                    about: "time <&> \"quoted\"",
                    values: vec![Some(10.0), Some(40.0)],
                    decimals: 1,
                },
                Row {
                    name: "MIPS".into(),
                    about: "rate",
                    values: vec![None, Some(50.0)],
                    decimals: 2,
                },
                Row {
                    name: "exit:hlt".into(),
                    about: "never",
                    values: vec![Some(0.0), Some(0.0)],
                    decimals: 0,
                },
            ],
        };
        let svg = chart(&summary, "demo & co");
        assert!(svg.starts_with("<?xml"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("demo &amp; co"));
        assert!(svg.contains("time &lt;&amp;&gt; &quot;quoted&quot;"));
        assert!(!svg.contains("exit:hlt"), "all-zero rows are left out");
        // The longest bar of a panel is full width; the other is to scale.
        let full = f64::from(WIDTH - LABEL_W - VALUE_W);
        assert!(svg.contains(&format!(r#"width="{full:.1}""#)));
        assert!(svg.contains(&format!(r#"width="{:.1}""#, full / 4.0)));
        assert!(svg.contains(">n/a<"));
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
        assert_eq!(svg.matches("<rect").count(), 1 + 4);
    }
}

//! `--plot FILE.svg`: throughput and p99 latency per 1-second bucket, one line per operation.
//! Hand-written SVG: two panels, a polyline each, no plotting dependency.

use crate::s3_mode::Report;
use std::collections::BTreeMap;
use std::fmt::Write;

const W: f64 = 900.0;
const PANEL_H: f64 = 220.0;
const LEFT: f64 = 70.0;
const TOP: f64 = 30.0;
const GAP: f64 = 60.0;
const COLOURS: [&str; 7] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2"];

fn panel(out: &mut String, y0: f64, title: &str, series: &BTreeMap<&str, Vec<(usize, f64)>>, secs: usize) {
    let max = series.values().flatten().map(|p| p.1).fold(0.0f64, f64::max).max(1e-9);
    let pw = W - LEFT - 20.0;
    let _ = writeln!(out, r#"<text x="{LEFT}" y="{}" font-size="13">{title}</text>"#, y0 - 8.0);
    let _ = writeln!(out, r##"<rect x="{LEFT}" y="{y0}" width="{pw}" height="{PANEL_H}" fill="none" stroke="#999"/>"##);
    for i in 0..=4 {
        let v = max * f64::from(i) / 4.0;
        let y = y0 + PANEL_H - PANEL_H * f64::from(i) / 4.0;
        let _ =
            writeln!(out, r#"<text x="{}" y="{}" font-size="10" text-anchor="end">{v:.1}</text>"#, LEFT - 4.0, y + 3.0);
    }
    let xs = |s: usize| LEFT + pw * (s as f64 + 0.5) / secs.max(1) as f64;
    for (j, (name, pts)) in series.iter().enumerate() {
        let c = COLOURS[j % COLOURS.len()];
        let path: Vec<String> =
            pts.iter().map(|(s, v)| format!("{:.1},{:.1}", xs(*s), y0 + PANEL_H - PANEL_H * v / max)).collect();
        let _ = writeln!(out, r#"<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{}"/>"#, path.join(" "));
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" font-size="11" fill="{c}">{name}</text>"#,
            LEFT + 10.0 + 90.0 * j as f64,
            y0 + 14.0
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" font-size="10" text-anchor="middle">seconds (0..{secs})</text>"#,
        LEFT + pw / 2.0,
        y0 + PANEL_H + 14.0
    );
}

pub fn svg(r: &Report) -> String {
    let secs = r.timeline.iter().map(|t| t.second + 1).max().unwrap_or(1);
    let by_bytes = r.timeline.iter().any(|t| t.mb_per_s > 0.0);
    let mut tput: BTreeMap<&str, Vec<(usize, f64)>> = BTreeMap::new();
    let mut p99: BTreeMap<&str, Vec<(usize, f64)>> = BTreeMap::new();
    for t in &r.timeline {
        let v = if by_bytes { t.mb_per_s } else { t.ops as f64 };
        tput.entry(t.op).or_default().push((t.second, v));
        p99.entry(t.op).or_default().push((t.second, t.p99_us as f64 / 1000.0));
    }
    let h = TOP + 2.0 * PANEL_H + GAP + 30.0;
    let mut out = String::new();
    let _ =
        writeln!(out, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" font-family="sans-serif">"#);
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let title = format!(
        "tessera-bench {} {} conc {} payload {:?}: {} per second",
        r.workload,
        r.size,
        r.concurrency,
        r.payload,
        if by_bytes { "MB/s" } else { "ops/s" }
    );
    panel(&mut out, TOP, &title, &tput, secs);
    panel(&mut out, TOP + PANEL_H + GAP, "p99 latency per second (ms)", &p99, secs);
    out.push_str("</svg>\n");
    out
}

//! A self-contained SVG of a run (or of several targets run on the same workload): answers per
//! second against the offered rate on top, latency percentiles per second on a log scale below.
//! Written by hand so the tool needs no plotting or font libraries.

use crate::record::SecondView;
use std::fmt::Write;

/// One target's timeline.
pub struct Series<'a> {
    pub name: &'a str,
    pub timeline: &'a [SecondView],
}

const W: f64 = 900.0;
const PANEL_H: f64 = 220.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 160.0;
const TOP: f64 = 40.0;
const GAP: f64 = 50.0;
const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// Renders the chart.
pub fn svg(title: &str, series: &[Series]) -> String {
    let secs = series
        .iter()
        .map(|s| s.timeline.len())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let plot_w = W - LEFT - RIGHT;
    let x = |t: f64| LEFT + plot_w * t / secs;
    let h = TOP + 2.0 * PANEL_H + GAP + 40.0;
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
<text x="{LEFT}" y="20" font-size="14" font-weight="bold">{}</text>
"#,
        escape(title)
    );
    // Throughput panel.
    let rate_max = series
        .iter()
        .flat_map(|s| s.timeline.iter().map(|p| p.offered.max(p.done)))
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.1;
    let y1 = |v: f64| TOP + PANEL_H - PANEL_H * v / rate_max;
    axes(
        &mut out,
        TOP,
        "answers / s",
        &[
            (0.0, "0".into()),
            (rate_max / 1.1, fmt_count(rate_max / 1.1)),
        ]
        .map(|(v, l)| (y1(v), l)),
    );
    let mut legend = Vec::new();
    for (i, s) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        if i == 0 {
            poly(
                &mut out,
                s.timeline
                    .iter()
                    .map(|p| (x(p.t as f64 + 0.5), y1(p.offered as f64))),
                "#888",
                "4 3",
            );
            legend.push(("#888", "4 3", "offered / s".to_string()));
        }
        poly(
            &mut out,
            s.timeline
                .iter()
                .map(|p| (x(p.t as f64 + 0.5), y1(p.done as f64))),
            c,
            "",
        );
        legend.push((c, "", format!("{}: answered / s", s.name)));
        if s.timeline.iter().any(|p| p.shed > 0) {
            poly(
                &mut out,
                s.timeline
                    .iter()
                    .map(|p| (x(p.t as f64 + 0.5), y1(p.shed as f64))),
                c,
                "1 2",
            );
            legend.push((c, "1 2", format!("{}: shed (429) / s", s.name)));
        }
    }
    legend_box(&mut out, TOP, &legend);
    // Latency panel, log scale from 0.01 ms to the highest max.
    let top2 = TOP + PANEL_H + GAP;
    let lat_max_ms = series
        .iter()
        .flat_map(|s| s.timeline.iter().map(|p| p.max_us))
        .max()
        .unwrap_or(1)
        .max(1) as f64
        / 1_000.0;
    let (lo, hi) = (0.01f64.log10(), lat_max_ms.max(0.1).log10().ceil());
    let y2 = |ms: f64| top2 + PANEL_H - PANEL_H * (ms.max(0.01).log10() - lo) / (hi - lo);
    let ticks: Vec<(f64, String)> = (lo as i32..=hi as i32)
        .map(|e| (y2(10f64.powi(e)), fmt_ms(10f64.powi(e))))
        .collect();
    axes(&mut out, top2, "latency (ms, log)", &ticks);
    let mut legend = Vec::new();
    for (i, s) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        for (name, dash, pick) in [("p50", "2 2", 0usize), ("p99", "", 1), ("max", "6 2", 2)] {
            let v = |p: &SecondView| [p.p50_us, p.p99_us, p.max_us][pick] as f64 / 1_000.0;
            poly(
                &mut out,
                s.timeline
                    .iter()
                    .filter(|p| p.done > 0)
                    .map(|p| (x(p.t as f64 + 0.5), y2(v(p)))),
                c,
                dash,
            );
            legend.push((c, dash, format!("{}: {name}", s.name)));
        }
    }
    legend_box(&mut out, top2, &legend);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">seconds into the run (0 - {secs})</text>"#,
        LEFT + plot_w / 2.0,
        top2 + PANEL_H + 30.0
    );
    out.push_str("</svg>\n");
    out
}

fn axes(out: &mut String, top: f64, label: &str, ticks: &[(f64, String)]) {
    let plot_w = W - LEFT - RIGHT;
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL_H}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        out,
        r#"<text x="12" y="{}" transform="rotate(-90 12 {})" text-anchor="middle">{label}</text>"#,
        top + PANEL_H / 2.0,
        top + PANEL_H / 2.0
    );
    for (y, l) in ticks {
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{l}</text>"##,
            LEFT + plot_w,
            LEFT - 4.0,
            y + 4.0
        );
    }
}

fn poly(out: &mut String, pts: impl Iterator<Item = (f64, f64)>, color: &str, dash: &str) {
    let pts: Vec<String> = pts.map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    if pts.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" stroke-dasharray="{dash}" points="{}"/>"#,
        pts.join(" ")
    );
}

fn legend_box(out: &mut String, top: f64, items: &[(&str, &str, String)]) {
    let x = W - RIGHT + 10.0;
    for (i, (c, dash, label)) in items.iter().enumerate() {
        let y = top + 12.0 + 14.0 * i as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{x}" x2="{}" y1="{y}" y2="{y}" stroke="{c}" stroke-width="2" stroke-dasharray="{dash}"/><text x="{}" y="{}">{}</text>"#,
            x + 18.0,
            x + 22.0,
            y + 4.0,
            escape(label)
        );
    }
}

fn fmt_count(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn fmt_ms(ms: f64) -> String {
    if ms >= 1.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

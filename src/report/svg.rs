//! Server-side SVG charts for the HTML report: plain strings, no dependency, no script. Every
//! chart is an `<svg class="chart">` with a `<title>`, scaled to its container by its viewBox;
//! every mark carries a `<title>` with its value (the browser shows it on hover).

use std::fmt::Write as _;

use crate::output::grouped;

/// Okabe-Ito: distinguishable with the common colour-vision deficiencies.
const PALETTE: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#999999", "#F0E442",
];

pub fn color(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

const W: f64 = 760.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 44.0;

/// How a value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fmt {
    Count,
    Money,
    Pct,
    Days,
    Ratio,
}

impl Fmt {
    /// In full, for tiles, tables and hover titles.
    pub fn full(self, v: f64) -> String {
        match self {
            Fmt::Count => grouped(v.round(), 0),
            Fmt::Money => grouped(v, 0),
            Fmt::Pct => format!("{:.1}%", v * 100.0),
            Fmt::Days => format!("{v:.1} d"),
            Fmt::Ratio => format!("{v:.3}"),
        }
    }

    /// Short, for axes.
    pub fn short(self, v: f64) -> String {
        match self {
            Fmt::Pct => format!("{:.0}%", v * 100.0),
            Fmt::Ratio => format!("{v:.2}"),
            Fmt::Days => format!("{v:.0}"),
            Fmt::Count | Fmt::Money => {
                let a = v.abs();
                if a >= 1e9 {
                    format!("{:.1}B", v / 1e9)
                } else if a >= 1e6 {
                    format!("{:.1}M", v / 1e6)
                } else if a >= 1e4 {
                    format!("{:.0}k", v / 1e3)
                } else if a >= 1e3 {
                    format!("{:.1}k", v / 1e3)
                } else {
                    format!("{v:.0}")
                }
            }
        }
    }
}

/// Escapes text for HTML and SVG.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

/// A series of values over the x categories (None: no value there, a gap).
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub values: Vec<Option<f64>>,
    pub dashed: bool,
    pub color: usize,
}

/// "Nice" axis ticks covering [lo, hi].
fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= n as f64)
        .unwrap_or(10.0 * mag);
    let start = (lo / step).floor() * step;
    let mut out = Vec::new();
    let mut t = start;
    while t <= hi + step * 1e-9 {
        out.push(t);
        t += step;
        if out.len() > 50 {
            break;
        }
    }
    out
}

/// The y range of some values, starting at 0 unless they go below.
fn y_range<'a>(values: impl Iterator<Item = &'a f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (0.0f64, 0.0f64);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(*v);
        hi = hi.max(*v);
    }
    if hi <= lo {
        hi = lo + 1.0;
    }
    (lo, hi)
}

struct Frame {
    h: f64,
    lo: f64,
    hi: f64,
}

impl Frame {
    fn y(&self, v: f64) -> f64 {
        TOP + (self.h - TOP - BOTTOM) * (1.0 - (v - self.lo) / (self.hi - self.lo))
    }
    fn plot_w(&self) -> f64 {
        W - LEFT - RIGHT
    }
}

fn open(s: &mut String, title: &str, h: f64) {
    let _ = write!(
        s,
        r#"<svg class="chart" role="img" viewBox="0 0 {W} {h}" xmlns="http://www.w3.org/2000/svg"><title>{}</title>"#,
        esc(title)
    );
}

/// The y axis: grid lines and labels.
fn y_axis(s: &mut String, f: &Frame, fmt: Fmt) {
    for t in ticks(f.lo, f.hi, 5) {
        if t < f.lo - 1e-9 || t > f.hi + 1e-9 {
            continue;
        }
        let y = f.y(t);
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#e3e3e3"/><text x="{:.1}" y="{:.1}" text-anchor="end" class="ax">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            esc(&fmt.short(t))
        );
    }
}

/// Category labels under the plot, thinned to about 12 (counted back from the last one).
fn x_labels(s: &mut String, f: &Frame, labels: &[String], x: impl Fn(usize) -> f64) {
    let every = labels.len().div_ceil(12).max(1);
    for (i, l) in labels.iter().enumerate() {
        if !(labels.len() - 1 - i).is_multiple_of(every) {
            continue;
        }
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" class="ax">{}</text>"#,
            x(i),
            f.h - BOTTOM + 16.0,
            esc(l)
        );
    }
}

/// Where each legend item goes: (x, row), wrapping to a new row at the right edge.
fn legend_layout(items: &[(String, usize, bool)]) -> Vec<(f64, usize)> {
    let mut out = Vec::new();
    let (mut x, mut row) = (LEFT, 0);
    for (name, _, _) in items {
        let w = 34.0 + 6.5 * name.chars().count() as f64;
        if x > LEFT && x + w > W - RIGHT {
            x = LEFT;
            row += 1;
        }
        out.push((x, row));
        x += w;
    }
    out
}

/// The height the legend adds below a chart of height `h` (its first row is inside it).
fn legend_extra(items: &[(String, usize, bool)]) -> f64 {
    legend_layout(items).last().map_or(0.0, |(_, r)| 18.0 * *r as f64)
}

fn legend(s: &mut String, items: &[(String, usize, bool)], h: f64) {
    for ((name, c, dashed), (x, row)) in items.iter().zip(legend_layout(items)) {
        let y = h - 10.0 + 18.0 * row as f64;
        let dash = if *dashed { r#" stroke-dasharray="5 3""# } else { "" };
        let _ = write!(
            s,
            r#"<line x1="{x:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{}" stroke-width="3"{dash}/><text x="{:.1}" y="{:.1}" class="lg">{}</text>"#,
            x + 18.0,
            color(*c),
            x + 22.0,
            y + 4.0,
            esc(name)
        );
    }
}

/// The legend items of `series` (dashed only where the chart draws dashes).
fn items(series: &[Series], dashes: bool) -> Vec<(String, usize, bool)> {
    series
        .iter()
        .map(|s| (s.name.clone(), s.color, dashes && s.dashed))
        .collect()
}

/// Opens a chart over categories (`labels`) of height `h` (plus its legend's extra rows) with
/// values in [lo, hi]: its y axis and its category labels, each at the middle of its slot.
/// Returns the chart so far, its frame and the width of a category's slot.
fn categorical(
    title: &str,
    h: f64,
    (lo, hi): (f64, f64),
    labels: &[String],
    legend_items: &[(String, usize, bool)],
    fmt: Fmt,
) -> (String, Frame, f64) {
    let f = Frame { h, lo, hi };
    let step = f.plot_w() / labels.len().max(1) as f64;
    let mut s = String::new();
    open(&mut s, title, h + legend_extra(legend_items));
    y_axis(&mut s, &f, fmt);
    x_labels(&mut s, &f, labels, |i| LEFT + step * (i as f64 + 0.5));
    (s, f, step)
}

/// Closes a chart: its legend, under a plot of height `h`.
fn close(mut s: String, legend_items: &[(String, usize, bool)], h: f64) -> String {
    legend(&mut s, legend_items, h);
    s.push_str("</svg>");
    s
}

/// A bar (x, y, width, height) with its hover title.
fn bar(s: &mut String, (x, y, w, h): (f64, f64, f64, f64), c: usize, tip: &str) {
    let _ = write!(
        s,
        r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{}"><title>{}</title></rect>"#,
        color(c),
        esc(tip)
    );
}

/// Lines over categorical x (periods); a dashed series is drawn thinner (e.g. last year).
pub fn line_chart(title: &str, labels: &[String], series: &[Series], fmt: Fmt) -> String {
    let h = 260.0;
    let range = y_range(series.iter().flat_map(|s| s.values.iter().flatten()));
    let legend_items = items(series, true);
    let (mut s, f, step) = categorical(title, h, range, labels, &legend_items, fmt);
    let x = |i: usize| LEFT + step * (i as f64 + 0.5);
    for se in series {
        let mut d = String::new();
        let mut pen = false;
        for (i, v) in se.values.iter().enumerate() {
            match v {
                Some(v) if v.is_finite() => {
                    let _ = write!(d, "{}{:.1},{:.1}", if pen { "L" } else { "M" }, x(i), f.y(*v));
                    pen = true;
                }
                _ => pen = false,
            }
        }
        let dash = if se.dashed {
            r#" stroke-dasharray="5 3" stroke-width="1.5""#
        } else {
            r#" stroke-width="2.5""#
        };
        let _ = write!(
            s,
            r#"<path d="{d}" fill="none" stroke="{}"{dash}><title>{}</title></path>"#,
            color(se.color),
            esc(&se.name)
        );
        for (i, v) in se.values.iter().enumerate() {
            if let Some(v) = v.filter(|v| v.is_finite()) {
                let _ = write!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="{}" fill="{}"><title>{} {}: {}</title></circle>"#,
                    x(i),
                    f.y(v),
                    if se.dashed { 2 } else { 3 },
                    color(se.color),
                    esc(&se.name),
                    esc(&labels[i]),
                    esc(&fmt.full(v))
                );
            }
        }
    }
    close(s, &legend_items, h)
}

/// Bars side by side per category, one per series.
pub fn grouped_bars(title: &str, labels: &[String], series: &[Series], fmt: Fmt) -> String {
    let h = 260.0;
    let range = y_range(series.iter().flat_map(|s| s.values.iter().flatten()));
    let legend_items = items(series, false);
    let (mut s, f, step) = categorical(title, h, range, labels, &legend_items, fmt);
    let bw = (step * 0.8) / series.len().max(1) as f64;
    for (k, se) in series.iter().enumerate() {
        for (i, v) in se.values.iter().enumerate() {
            let Some(v) = v.filter(|v| v.is_finite()) else {
                continue;
            };
            let (y0, y1) = (f.y(0.0f64.max(range.0)), f.y(v));
            let rect = (
                LEFT + step * i as f64 + step * 0.1 + bw * k as f64,
                y0.min(y1),
                bw.max(1.0),
                (y0 - y1).abs().max(0.5),
            );
            bar(
                &mut s,
                rect,
                se.color,
                &format!("{} {}: {}", se.name, labels[i], fmt.full(v)),
            );
        }
    }
    close(s, &legend_items, h)
}

/// Bars stacked per category, one layer per series (values >= 0).
pub fn stacked_bars(title: &str, labels: &[String], series: &[Series], fmt: Fmt) -> String {
    let h = 280.0;
    let totals: Vec<f64> = (0..labels.len())
        .map(|i| series.iter().filter_map(|s| s.values[i]).filter(|v| *v > 0.0).sum())
        .collect();
    let legend_items = items(series, false);
    let (mut s, f, step) = categorical(title, h, y_range(totals.iter()), labels, &legend_items, fmt);
    for (i, label) in labels.iter().enumerate() {
        let mut base = 0.0;
        for se in series {
            let Some(v) = se.values[i].filter(|v| *v > 0.0) else {
                continue;
            };
            let (y0, y1) = (f.y(base), f.y(base + v));
            let rect = (LEFT + step * i as f64 + step * 0.15, y1, step * 0.7, (y0 - y1).max(0.5));
            bar(&mut s, rect, se.color, &format!("{label} {}: {}", se.name, fmt.full(v)));
            base += v;
        }
    }
    close(s, &legend_items, h)
}

/// Horizontal bars, one per row: (label, value, text written after the bar).
pub fn hbars(title: &str, rows: &[(String, f64, String)], fmt: Fmt, c: usize) -> String {
    let row_h = 24.0;
    let label_w = 190.0;
    let h = TOP + row_h * rows.len().max(1) as f64 + 10.0;
    let max = rows.iter().map(|r| r.1).fold(0.0f64, f64::max).max(1e-12);
    // Room for the text after the longest bar (about 36 characters).
    let avail = W - label_w - RIGHT - 240.0;
    let mut s = String::new();
    open(&mut s, title, h);
    for (i, (label, v, text)) in rows.iter().enumerate() {
        let y = TOP + row_h * i as f64;
        let w = (v.max(0.0) / max * avail).max(if *v > 0.0 { 1.0 } else { 0.0 });
        let short: String = label.chars().take(28).collect();
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end" class="lb">{}</text><rect x="{label_w}" y="{:.1}" width="{w:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect><text x="{:.1}" y="{:.1}" class="lb">{}</text>"#,
            label_w - 8.0,
            y + row_h * 0.65,
            esc(&short),
            y + 3.0,
            row_h - 6.0,
            color(c),
            esc(label),
            esc(&fmt.full(*v)),
            label_w + w + 6.0,
            y + row_h * 0.65,
            esc(text)
        );
    }
    s.push_str("</svg>");
    s
}

/// A Kaplan-Meier step: t, S(t), and its confidence band (ci_low, ci_high).
pub type Step = (f64, f64, Option<f64>, Option<f64>);

/// A Kaplan-Meier curve: its steps, t ascending.
pub struct Curve {
    pub name: String,
    pub steps: Vec<Step>,
    pub color: usize,
}

/// Survival curves as steps from S(0) = 1, each with its confidence band, up to `x_max` days.
pub fn survival_chart(title: &str, curves: &[Curve], x_max: f64) -> String {
    let h = 300.0;
    let f = Frame { h, lo: 0.0, hi: 1.0 };
    let x_max = x_max.max(1.0);
    let x = |t: f64| LEFT + f.plot_w() * (t.min(x_max) / x_max);
    let legend_items: Vec<_> = curves.iter().map(|c| (c.name.clone(), c.color, false)).collect();
    let mut s = String::new();
    open(&mut s, title, h + legend_extra(&legend_items));
    y_axis(&mut s, &f, Fmt::Pct);
    for t in ticks(0.0, x_max, 8) {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" class="ax">{}</text>"#,
            x(t),
            h - BOTTOM + 16.0,
            esc(&format!("{t:.0} d"))
        );
    }
    let _ = write!(
        s,
        r##"<line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#bbb" stroke-dasharray="2 3"/>"##,
        W - RIGHT,
        f.y(0.5),
        f.y(0.5)
    );
    for c in curves {
        let steps: Vec<_> = c.steps.iter().filter(|p| p.0 <= x_max).collect();
        // The band: upper edge forwards, lower edge backwards, both as steps.
        let (mut up, mut down) = (vec![(0.0, 1.0)], vec![(0.0, 1.0)]);
        for p in &steps {
            let (hi, lo) = (p.3.unwrap_or(p.1), p.2.unwrap_or(p.1));
            up.push((p.0, up.last().map_or(1.0, |q| q.1)));
            up.push((p.0, hi));
            down.push((p.0, down.last().map_or(1.0, |q| q.1)));
            down.push((p.0, lo));
        }
        let end = steps.last().map_or(0.0, |p| p.0);
        up.push((end, up.last().map_or(1.0, |q| q.1)));
        let mut band = String::new();
        for (i, (t, v)) in up.iter().chain(down.iter().rev()).enumerate() {
            let _ = write!(band, "{}{:.1},{:.1}", if i == 0 { "M" } else { "L" }, x(*t), f.y(*v));
        }
        let _ = write!(
            s,
            r#"<path d="{band}Z" fill="{}" fill-opacity="0.15" stroke="none"/>"#,
            color(c.color)
        );
        let mut d = format!("M{:.1},{:.1}", x(0.0), f.y(1.0));
        for p in &steps {
            let _ = write!(d, "H{:.1}V{:.1}", x(p.0), f.y(p.1));
        }
        let _ = write!(
            s,
            r#"<path d="{d}" fill="none" stroke="{}" stroke-width="2"><title>{}</title></path>"#,
            color(c.color),
            esc(&c.name)
        );
        // A few points to hover: S at each tenth of the steps.
        let every = steps.len().div_ceil(10).max(1);
        for p in steps.iter().step_by(every) {
            let _ = write!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{}"><title>{} at {:.1} d: S = {:.3}</title></circle>"#,
                x(p.0),
                f.y(p.1),
                color(c.color),
                esc(&c.name),
                p.0,
                p.1
            );
        }
    }
    close(s, &legend_items, h)
}

/// A heatmap cell: its value (None: not observable, left blank) and whether its period is only
/// partly observed (as_of falls inside it).
#[derive(Debug, Clone, Copy)]
pub struct Cell {
    pub value: Option<f64>,
    pub partial: bool,
}

/// Rows x columns of rates in [0, 1], darker for higher; partly observed cells hatched.
pub fn heatmap(title: &str, rows: &[String], cols: &[String], cells: &[Vec<Cell>], fmt: Fmt) -> String {
    let label_w = 90.0;
    let cell_h = 20.0;
    let cw = (W - label_w - RIGHT) / cols.len().max(1) as f64;
    let h = TOP + 18.0 + cell_h * rows.len() as f64 + 30.0;
    let max = cells
        .iter()
        .flatten()
        .filter_map(|c| c.value)
        .fold(0.0f64, f64::max)
        .max(1e-12);
    let mut s = String::new();
    open(&mut s, title, h);
    s.push_str(r##"<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="6" stroke="#fff" stroke-width="2"/></pattern></defs>"##);
    for (j, c) in cols.iter().enumerate() {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" class="ax">{}</text>"#,
            label_w + cw * (j as f64 + 0.5),
            TOP + 10.0,
            esc(c)
        );
    }
    for (i, r) in rows.iter().enumerate() {
        let y = TOP + 18.0 + cell_h * i as f64;
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end" class="ax">{}</text>"#,
            label_w - 6.0,
            y + cell_h * 0.7,
            esc(r)
        );
        for (j, cell) in cells[i].iter().enumerate() {
            let Some(v) = cell.value else { continue };
            let x = label_w + cw * j as f64;
            let a = (v / max).clamp(0.0, 1.0);
            let note = if cell.partial { " (period in progress)" } else { "" };
            let _ = write!(
                s,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="rgb({},{},{})"><title>{} k={}: {}{note}</title></rect>"#,
                cw - 1.0,
                cell_h - 1.0,
                (235.0 - 235.0 * a) as u8,
                (242.0 - 128.0 * a) as u8,
                (250.0 - 72.0 * a) as u8,
                esc(r),
                esc(&cols[j]),
                esc(&fmt.full(v))
            );
            if cell.partial {
                let _ = write!(
                    s,
                    r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="url(#hatch)" pointer-events="none"/>"#,
                    cw - 1.0,
                    cell_h - 1.0
                );
            }
        }
    }
    let _ = write!(
        s,
        r#"<text x="{label_w}" y="{:.1}" class="lg">darker = higher (max {}); hatched: period in progress at as_of; blank: not observable yet</text>"#,
        h - 10.0,
        esc(&fmt.full(max))
    );
    s.push_str("</svg>");
    s
}

/// A histogram of `values` in `bins` equal bins over [0, max]; values above `cap` fall in the
/// last bin.
pub fn histogram(title: &str, values: &[f64], bins: usize, cap: f64, fmt: Fmt) -> String {
    let bins = bins.max(1);
    let cap = cap.max(1e-9);
    let width = cap / bins as f64;
    let mut counts = vec![0.0; bins];
    for v in values.iter().filter(|v| v.is_finite()) {
        let b = ((v.max(0.0) / width) as usize).min(bins - 1);
        counts[b] += 1.0;
    }
    let labels: Vec<String> = (0..bins).map(|b| fmt.short(width * b as f64)).collect();
    let series = [Series {
        name: "customers".into(),
        values: counts.into_iter().map(Some).collect(),
        dashed: false,
        color: 0,
    }];
    grouped_bars(title, &labels, &series, Fmt::Count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped() {
        // output::grouped, as the tables of `show` write numbers.
        assert_eq!(Fmt::Money.full(1234567.891), "1,234,568");
        assert_eq!(grouped(-1234.5, 1), "-1,234.5");
        assert_eq!(Fmt::Count.full(999.0), "999");
        assert_eq!(Fmt::Money.full(-0.2), "0");
        assert_eq!(Fmt::Pct.full(0.1234), "12.3%");
        assert_eq!(Fmt::Money.short(2_500_000.0), "2.5M");
    }

    #[test]
    fn ticks_cover_the_range_with_round_steps() {
        let t = ticks(0.0, 1.0, 5);
        assert_eq!(t.len(), 6);
        assert!(
            t.iter()
                .zip([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
                .all(|(a, b)| (a - b).abs() < 1e-9)
        );
        // 47,000 in about 5 steps: 10,000 each, 0 to 40,000 (the plot's top is the data's).
        assert_eq!(
            ticks(0.0, 47_000.0, 5),
            vec![0.0, 10_000.0, 20_000.0, 30_000.0, 40_000.0]
        );
    }

    #[test]
    fn a_long_legend_wraps_and_makes_room() {
        let items: Vec<_> = (0..8)
            .map(|i| (format!("pipeline_{i} / stage_name"), i, false))
            .collect();
        let rows = legend_layout(&items);
        assert_eq!(rows.first(), Some(&(LEFT, 0)));
        let last = rows.last().unwrap().1;
        assert!(last >= 1, "{rows:?}");
        assert!(rows.iter().all(|(x, _)| *x < W - RIGHT));
        assert_eq!(legend_extra(&items), 18.0 * last as f64);
        assert_eq!(legend_extra(&items[..1]), 0.0);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc("<a & 'b'>"), "&lt;a &amp; &#39;b&#39;&gt;");
        let svg = hbars("t", &[("<x>".into(), 1.0, "1".into())], Fmt::Count, 0);
        assert!(svg.contains("&lt;x&gt;") && !svg.contains("<x>"));
    }

    #[test]
    fn histogram_puts_values_over_the_cap_in_the_last_bin() {
        let svg = histogram("h", &[1.0, 2.0, 500.0], 4, 100.0, Fmt::Money);
        // bins [0, 25): 2 customers; [75, 100]: 1 (500 capped).
        assert!(svg.contains("customers 0: 2"), "{svg}");
        assert!(svg.contains("customers 75: 1"), "{svg}");
    }
}

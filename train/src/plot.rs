//! Raster charts for the results docs and training reports (loss curves, grouped bars with error
//! bars), drawn in pure Rust into an [`image::RgbImage`] and saved as PNG, so the docs show plots
//! without a plotting stack. Text uses an embedded 5×7 bitmap font (printable ASCII; a few
//! common non-ASCII signs are spelled in ASCII, the rest drawn as `?`).

use std::path::Path;

use anyhow::Context;
use image::{ImageFormat, Rgb, RgbImage};

/// One named curve.
pub struct Series<'a> {
    pub name: &'a str,
    pub points: Vec<(f64, f64)>,
}

/// One bar: a series' mean ± std in a group. A non-finite mean draws no bar (labelled "n/a"); a
/// non-finite or zero std draws no error bar.
pub struct Bar<'a> {
    pub series: &'a str,
    pub mean: f64,
    pub std: f64,
}

/// A category on the x axis with one bar per series; series are coloured (and listed in the
/// legend) in the order they first appear.
pub struct BarGroup<'a> {
    pub label: &'a str,
    pub bars: Vec<Bar<'a>>,
}

/// Size of every chart.
pub const WIDTH: u32 = 1200;
pub const HEIGHT: u32 = 720;
/// Text scale of labels, ticks and legends (glyphs of 10×14 px), and of titles.
const TEXT: i64 = 2;
const TITLE: i64 = 3;

pub const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
pub const INK: Rgb<u8> = Rgb([20, 20, 20]);
const GRID: Rgb<u8> = Rgb([228, 228, 228]);
const MUTED: Rgb<u8> = Rgb([110, 110, 110]);

/// Series colours (the "tab10" palette), distinct from ink, grid and background.
pub const PALETTE: [Rgb<u8>; 8] = [
    Rgb([31, 119, 180]),
    Rgb([214, 39, 40]),
    Rgb([44, 160, 44]),
    Rgb([255, 127, 14]),
    Rgb([148, 103, 189]),
    Rgb([140, 86, 75]),
    Rgb([227, 119, 194]),
    Rgb([23, 190, 207]),
];

/// Colour of the `i`-th series.
pub fn colour(i: usize) -> Rgb<u8> {
    PALETTE[i % PALETTE.len()]
}

/// A pixel rectangle, `x0..x1` × `y0..y1` (ends exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x0: i64,
    pub y0: i64,
    pub x1: i64,
    pub y1: i64,
}

impl Rect {
    fn contains(&self, x: i64, y: i64) -> bool {
        x >= self.x0 && x < self.x1 && y >= self.y0 && y < self.y1
    }
}

/// A line chart with axes, nice ticks, grid and a legend. Non-finite points are skipped (the
/// curve joins the finite neighbours); an empty or constant range gets a unit-wide axis.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series<'_>]) -> RgbImage {
    render_line_chart(title, x_label, y_label, series).0
}

/// A grouped vertical bar chart with error bars (mean ± std), the value above each bar, the
/// group labels (wrapped) under the bars and a legend when there are several series.
pub fn bar_chart(title: &str, y_label: &str, groups: &[BarGroup<'_>]) -> RgbImage {
    render_bar_chart(title, y_label, groups).0
}

/// Saves `image` as PNG at `path` atomically (a temporary file in the same directory, renamed).
pub fn save_png(image: &RgbImage, path: &Path) -> anyhow::Result<()> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, ImageFormat::Png)
        .with_context(|| format!("encoding {}", path.display()))?;
    vlbeit_core::fs::write_atomically(path, bytes.get_ref()).map_err(|(file, source)| {
        anyhow::Error::from(source)
            .context(file.display().to_string())
            .context(format!("writing {}", path.display()))
    })
}

fn render_line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series<'_>],
) -> (RgbImage, Rect) {
    let mut img = RgbImage::from_pixel(WIDTH, HEIGHT, WHITE);
    let finite = || {
        series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|(x, y)| x.is_finite() && y.is_finite())
    };
    let (xlo, xhi) = range(finite().map(|p| p.0));
    let (ylo, yhi) = range(finite().map(|p| p.1));
    let xt = Ticks::new(xlo, xhi);
    let yt = Ticks::new(ylo, yhi);
    let legend: Vec<&str> = series.iter().map(|s| s.name).collect();
    let legend_h = legend_height(&legend, WIDTH as i64 - 2 * MARGIN);
    let top = title_height();
    let bottom = TICK + 4 * TEXT + line_h(TEXT) + 4 * TEXT + line_h(TEXT) + legend_h + MARGIN;
    let plot = Rect {
        x0: left_margin(&yt),
        y0: top,
        x1: WIDTH as i64 - MARGIN - 6 * TEXT,
        y1: HEIGHT as i64 - bottom,
    };
    draw_title(&mut img, title);
    draw_y_axis(&mut img, plot, &yt, y_label);
    for (i, &v) in xt.values.iter().enumerate() {
        let x = xt.map(v, plot.x0, plot.x1 - 1);
        vline(&mut img, x, plot.y0, plot.y1, GRID);
        vline(&mut img, x, plot.y1, plot.y1 + TICK, INK);
        let label = xt.label(i);
        let w = text_width(&label, TEXT);
        draw_text(
            &mut img,
            x - w / 2,
            plot.y1 + TICK + 4 * TEXT,
            &label,
            TEXT,
            INK,
        );
    }
    let label_y = plot.y1 + TICK + 4 * TEXT + line_h(TEXT) + 2 * TEXT;
    let w = text_width(x_label, TEXT);
    draw_text(
        &mut img,
        (plot.x0 + plot.x1 - w) / 2,
        label_y,
        x_label,
        TEXT,
        INK,
    );
    hline(&mut img, plot.x0, plot.x1, plot.y1 - 1, INK);
    vline(&mut img, plot.x0, plot.y0, plot.y1, INK);
    for (i, s) in series.iter().enumerate() {
        let points: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|&(x, y)| {
                (
                    xt.map_f(x, plot.x0, plot.x1 - 1),
                    yt.map_f(y, plot.y1 - 1, plot.y0),
                )
            })
            .collect();
        if let [p] = points.as_slice() {
            fill_rect_clipped(
                &mut img,
                Rect {
                    x0: p.0.round() as i64 - 2,
                    y0: p.1.round() as i64 - 2,
                    x1: p.0.round() as i64 + 3,
                    y1: p.1.round() as i64 + 3,
                },
                plot,
                colour(i),
            );
        }
        for pair in points.windows(2) {
            thick_line(&mut img, pair[0], pair[1], 2, plot, colour(i));
        }
    }
    draw_legend(&mut img, &legend, HEIGHT as i64 - MARGIN - legend_h);
    (img, plot)
}

fn render_bar_chart(title: &str, y_label: &str, groups: &[BarGroup<'_>]) -> (RgbImage, Rect) {
    let mut img = RgbImage::from_pixel(WIDTH, HEIGHT, WHITE);
    let mut names: Vec<&str> = Vec::new();
    for b in groups.iter().flat_map(|g| &g.bars) {
        if !names.contains(&b.series) {
            names.push(b.series);
        }
    }
    let ends = groups.iter().flat_map(|g| &g.bars).flat_map(|b| {
        let s = if b.std.is_finite() { b.std.abs() } else { 0.0 };
        [error_low(b.mean, s), b.mean + s]
    });
    let (lo, hi) = range(ends.chain([0.0]).filter(|v| v.is_finite()));
    let yt = Ticks::new(lo, hi);
    let legend: Vec<&str> = if names.len() > 1 {
        names.clone()
    } else {
        Vec::new()
    };
    let legend_h = legend_height(&legend, WIDTH as i64 - 2 * MARGIN);
    let x0 = left_margin(&yt);
    let x1 = WIDTH as i64 - MARGIN;
    let slot = (x1 - x0) as f64 / groups.len().max(1) as f64;
    let wrapped: Vec<Vec<String>> = groups
        .iter()
        .map(|g| wrap(g.label, (slot as i64 - 4 * TEXT).max(1), TEXT, 3))
        .collect();
    let lines = wrapped.iter().map(Vec::len).max().unwrap_or(0) as i64;
    // Values above the bars at the label scale where they fit the narrowest bar, else smaller.
    let narrowest = groups
        .iter()
        .map(|g| slot * 0.8 / g.bars.len().max(1) as f64 - 2.0)
        .fold(f64::INFINITY, f64::min);
    let widest_value = groups
        .iter()
        .flat_map(|g| &g.bars)
        .map(|b| text_width(&value_label(b.mean), TEXT))
        .max()
        .unwrap_or(0);
    let vs = if widest_value as f64 <= narrowest {
        TEXT
    } else {
        1
    };
    // Room for the values written above the highest bars.
    let top = title_height() + line_h(vs) + 2;
    let bottom = TICK + 2 * TEXT + lines * line_h(TEXT) + 2 * TEXT + legend_h + MARGIN;
    let plot = Rect {
        x0,
        y0: top,
        x1,
        y1: HEIGHT as i64 - bottom,
    };
    draw_title(&mut img, title);
    draw_y_axis(&mut img, plot, &yt, y_label);
    let y = |v: f64| yt.map(v, plot.y1 - 1, plot.y0);
    let base = y(0.0);
    for (g, (group, label)) in groups.iter().zip(&wrapped).enumerate() {
        let gx = plot.x0 as f64 + slot * g as f64;
        let inner = slot * 0.8;
        let n = group.bars.len().max(1) as f64;
        let bw = inner / n;
        for (k, bar) in group.bars.iter().enumerate() {
            let bx0 = (gx + slot * 0.1 + bw * k as f64).round() as i64;
            let bx1 = ((gx + slot * 0.1 + bw * (k + 1) as f64).round() as i64 - 2).max(bx0 + 1);
            let cx = (bx0 + bx1) / 2;
            let series = names.iter().position(|n| *n == bar.series).unwrap_or(0);
            if !bar.mean.is_finite() {
                let w = text_width("n/a", vs);
                draw_text(&mut img, cx - w / 2, base - 2 - 8 * vs, "n/a", vs, MUTED);
                continue;
            }
            let ym = y(bar.mean);
            fill_rect_clipped(
                &mut img,
                Rect {
                    x0: bx0,
                    y0: ym.min(base),
                    x1: bx1,
                    y1: ym.max(base) + 1,
                },
                plot,
                colour(series),
            );
            let mut label_bottom = ym.min(base);
            if bar.std.is_finite() && bar.std > 0.0 {
                let (ya, yb) = (y(bar.mean + bar.std), y(error_low(bar.mean, bar.std)));
                let cap = ((bx1 - bx0) / 6).max(3);
                for dx in [0, 1] {
                    vline_clipped(&mut img, cx - 1 + dx, ya, yb + 1, plot, INK);
                }
                for yy in [ya, yb] {
                    hline_clipped(&mut img, cx - cap, cx + cap + 1, yy, plot, INK);
                }
                label_bottom = label_bottom.min(ya);
            }
            let value = value_label(bar.mean);
            let w = text_width(&value, vs);
            draw_text(
                &mut img,
                cx - w / 2,
                label_bottom - 3 - 7 * vs,
                &value,
                vs,
                INK,
            );
        }
        let cx = (gx + slot / 2.0).round() as i64;
        for (j, line) in label.iter().enumerate() {
            let w = text_width(line, TEXT);
            let ly = plot.y1 + TICK + 2 * TEXT + j as i64 * line_h(TEXT);
            draw_text(&mut img, cx - w / 2, ly, line, TEXT, INK);
        }
    }
    hline(&mut img, plot.x0, plot.x1, base, INK);
    hline(&mut img, plot.x0, plot.x1, plot.y1 - 1, INK);
    vline(&mut img, plot.x0, plot.y0, plot.y1, INK);
    draw_legend(&mut img, &legend, HEIGHT as i64 - MARGIN - legend_h);
    (img, plot)
}

fn value_label(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.1}")
    } else {
        "n/a".into()
    }
}

const MARGIN: i64 = 16;
const TICK: i64 = 6;

fn line_h(scale: i64) -> i64 {
    GLYPH_ROWS * scale + 3 * scale
}

fn title_height() -> i64 {
    MARGIN + line_h(TITLE) + MARGIN
}

fn draw_title(img: &mut RgbImage, title: &str) {
    let w = text_width(title, TITLE);
    draw_text(img, (WIDTH as i64 - w) / 2, MARGIN, title, TITLE, INK);
}

/// Left margin: the rotated y label, a gap, the widest tick label and the tick marks.
fn left_margin(yt: &Ticks) -> i64 {
    let widest = (0..yt.values.len())
        .map(|i| text_width(&yt.label(i), TEXT))
        .max()
        .unwrap_or(0);
    MARGIN + GLYPH_ROWS * TEXT + 4 * TEXT + widest + 3 * TEXT + TICK
}

fn draw_y_axis(img: &mut RgbImage, plot: Rect, yt: &Ticks, y_label: &str) {
    for (i, &v) in yt.values.iter().enumerate() {
        let y = yt.map(v, plot.y1 - 1, plot.y0);
        hline(img, plot.x0, plot.x1, y, GRID);
        hline(img, plot.x0 - TICK, plot.x0, y, INK);
        let label = yt.label(i);
        let w = text_width(&label, TEXT);
        draw_text(
            img,
            plot.x0 - TICK - 3 * TEXT - w,
            y - 7 * TEXT / 2,
            &label,
            TEXT,
            INK,
        );
    }
    let h = text_width(y_label, TEXT);
    draw_text_up(img, MARGIN, (plot.y0 + plot.y1 + h) / 2, y_label, TEXT, INK);
}

const SWATCH: i64 = 28;

fn legend_entry_width(name: &str) -> i64 {
    SWATCH + 3 * TEXT + text_width(name, TEXT) + 8 * TEXT
}

/// Legend entries flow left to right in rows under the chart.
fn legend_rows(names: &[&str], width: i64) -> Vec<Vec<usize>> {
    let mut rows: Vec<Vec<usize>> = Vec::new();
    let mut used = width;
    for (i, name) in names.iter().enumerate() {
        let w = legend_entry_width(name);
        if used + w > width && rows.last().is_none_or(|r| !r.is_empty()) {
            rows.push(Vec::new());
            used = 0;
        }
        rows.last_mut().expect("a row").push(i);
        used += w;
    }
    rows
}

fn legend_height(names: &[&str], width: i64) -> i64 {
    legend_rows(names, width).len() as i64 * line_h(TEXT)
}

fn draw_legend(img: &mut RgbImage, names: &[&str], y0: i64) {
    let width = WIDTH as i64 - 2 * MARGIN;
    for (r, row) in legend_rows(names, width).iter().enumerate() {
        let total: i64 = row
            .iter()
            .map(|&i| legend_entry_width(names[i]))
            .sum::<i64>()
            - 8 * TEXT;
        let mut x = MARGIN + ((width - total) / 2).max(0);
        let y = y0 + r as i64 * line_h(TEXT);
        for &i in row {
            let sy = y + 7 * TEXT / 2;
            fill_rect(img, x, sy - 3, x + SWATCH, sy + 3, colour(i));
            draw_text(img, x + SWATCH + 3 * TEXT, y, names[i], TEXT, INK);
            x += legend_entry_width(names[i]);
        }
    }
}

/// Greedy word wrap to `width` px at `scale`, at most `max_lines` lines (the last one cut with
/// "..."); words longer than a line are split.
fn wrap(text: &str, width: i64, scale: i64, max_lines: usize) -> Vec<String> {
    let per_line = ((width + scale) / (ADVANCE * scale)).max(1) as usize;
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in to_ascii(text).split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let len = line.chars().count();
            if len == 0 && word.len() > per_line {
                let rest = word.split_off(per_line);
                lines.push(word.into_iter().collect());
                word = rest;
            } else if len == 0 {
                line = word.iter().collect();
                break;
            } else if len + 1 + word.len() <= per_line {
                line.push(' ');
                line.extend(word.iter());
                break;
            } else {
                lines.push(std::mem::take(&mut line));
            }
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    if lines.len() > max_lines {
        lines.truncate(max_lines);
        let last = &mut lines[max_lines - 1];
        let keep = per_line.saturating_sub(3).min(last.chars().count());
        *last = last.chars().take(keep).collect::<String>() + "...";
    }
    lines
}

/// Finite `(min, max)` of `values`, widened when empty or constant.
/// Lower end of an error bar: `mean - std`, clipped at 0 for a non-negative mean (percentages,
/// losses and counts cannot go below zero, and the axis should not grow a negative range for
/// them).
fn error_low(mean: f64, std: f64) -> f64 {
    let low = mean - std.abs();
    if mean >= 0.0 { low.max(0.0) } else { low }
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if lo > hi {
        return (0.0, 1.0);
    }
    if hi - lo <= f64::EPSILON * lo.abs().max(hi.abs()) || !(hi - lo).is_finite() {
        let d = if lo == 0.0 {
            1.0
        } else {
            (lo.abs() * 0.1).min(f64::MAX / 4.0)
        };
        return (lo - d, hi + d);
    }
    (lo, hi)
}

/// About five "nice" ticks (1, 2, 2.5 or 5 × 10^k apart) covering `lo..hi`; the axis spans the
/// first to the last tick.
#[derive(Debug)]
struct Ticks {
    values: Vec<f64>,
    decimals: usize,
}

impl Ticks {
    fn new(lo: f64, hi: f64) -> Self {
        let raw = (hi - lo) / 4.0;
        let mag = 10f64.powf(raw.log10().floor());
        let f = raw / mag;
        let nice = [1.0, 2.0, 2.5, 5.0, 10.0]
            .into_iter()
            .find(|&n| f <= n * (1.0 + 1e-9))
            .unwrap_or(10.0);
        let step = nice * mag;
        let first = (lo / step + 1e-9).floor();
        let last = (hi / step - 1e-9).ceil();
        let n = ((last - first).round() as usize).clamp(1, 20);
        let values = (0..=n)
            .map(|k| {
                let v = (first + k as f64) * step;
                if v.abs() < step * 1e-6 { 0.0 } else { v }
            })
            .collect();
        let mut decimals = (-(step.log10() + 1e-9).floor()).max(0.0) as usize;
        if nice == 2.5 && mag < 1.5 {
            decimals += 1;
        }
        Ticks {
            values,
            decimals: decimals.min(12),
        }
    }

    fn lo(&self) -> f64 {
        self.values[0]
    }

    fn hi(&self) -> f64 {
        self.values[self.values.len() - 1]
    }

    fn label(&self, i: usize) -> String {
        format!("{:.*}", self.decimals, self.values[i])
    }

    /// `v` on the axis from pixel `a` (at the first tick) to `b` (at the last).
    fn map_f(&self, v: f64, a: i64, b: i64) -> f64 {
        a as f64 + (v - self.lo()) / (self.hi() - self.lo()) * (b - a) as f64
    }

    fn map(&self, v: f64, a: i64, b: i64) -> i64 {
        let p = self.map_f(v, a, b);
        if p.is_finite() {
            p.round().clamp(-1e9, 1e9) as i64
        } else {
            a
        }
    }
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && x < img.width() as i64 && y < img.height() as i64 {
        img.put_pixel(x as u32, y as u32, c);
    }
}

fn fill_rect(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb<u8>) {
    let r = Rect { x0, y0, x1, y1 };
    fill_rect_clipped(
        img,
        r,
        Rect {
            x0: 0,
            y0: 0,
            x1: img.width() as i64,
            y1: img.height() as i64,
        },
        c,
    );
}

fn fill_rect_clipped(img: &mut RgbImage, r: Rect, clip: Rect, c: Rgb<u8>) {
    let x0 = r.x0.max(clip.x0).max(0);
    let y0 = r.y0.max(clip.y0).max(0);
    let x1 = r.x1.min(clip.x1).min(img.width() as i64);
    let y1 = r.y1.min(clip.y1).min(img.height() as i64);
    for y in y0..y1 {
        for x in x0..x1 {
            img.put_pixel(x as u32, y as u32, c);
        }
    }
}

fn hline(img: &mut RgbImage, x0: i64, x1: i64, y: i64, c: Rgb<u8>) {
    fill_rect(img, x0, y, x1, y + 1, c);
}

fn vline(img: &mut RgbImage, x: i64, y0: i64, y1: i64, c: Rgb<u8>) {
    fill_rect(img, x, y0, x + 1, y1, c);
}

fn hline_clipped(img: &mut RgbImage, x0: i64, x1: i64, y: i64, clip: Rect, c: Rgb<u8>) {
    let r = Rect {
        x0,
        y0: y,
        x1,
        y1: y + 1,
    };
    fill_rect_clipped(img, r, clip, c);
}

fn vline_clipped(img: &mut RgbImage, x: i64, y0: i64, y1: i64, clip: Rect, c: Rgb<u8>) {
    let r = Rect {
        x0: x,
        y0,
        x1: x + 1,
        y1,
    };
    fill_rect_clipped(img, r, clip, c);
}

/// A line `width` px thick from `a` to `b`, clipped to `clip`.
fn thick_line(
    img: &mut RgbImage,
    a: (f64, f64),
    b: (f64, f64),
    width: i64,
    clip: Rect,
    c: Rgb<u8>,
) {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let n = dx.abs().max(dy.abs()).ceil().clamp(1.0, 1e5) as i64;
    let half = (width - 1) as f64 / 2.0;
    for i in 0..=n {
        let t = i as f64 / n as f64;
        let x = (a.0 + dx * t - half).round() as i64;
        let y = (a.1 + dy * t - half).round() as i64;
        for yy in y..y + width {
            for xx in x..x + width {
                if clip.contains(xx, yy) {
                    put(img, xx, yy, c);
                }
            }
        }
    }
}

/// Glyph cell: 5 columns, 7 rows above the baseline and 1 below (descenders), 1 column apart.
const GLYPH_COLS: i64 = 5;
const GLYPH_ROWS: i64 = 8;
const ADVANCE: i64 = GLYPH_COLS + 1;

/// `text` in printable ASCII: a few common signs spelled out, other characters as `?`.
pub fn to_ascii(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            ' '..='~' => out.push(ch),
            '±' => out.push_str("+/-"),
            '–' | '—' | '−' | '‐' => out.push('-'),
            '→' => out.push_str("->"),
            '←' => out.push_str("<-"),
            '≥' => out.push_str(">="),
            '≤' => out.push_str("<="),
            '×' => out.push('x'),
            '…' => out.push_str("..."),
            '·' | '•' => out.push('.'),
            '‘' | '’' => out.push('\''),
            '“' | '”' => out.push('"'),
            'µ' | 'μ' => out.push('u'),
            '°' => out.push_str("deg"),
            '\u{a0}' | '\t' => out.push(' '),
            _ => out.push('?'),
        }
    }
    out
}

/// Width in pixels of `text` drawn at `scale` (no trailing gap).
pub fn text_width(text: &str, scale: i64) -> i64 {
    let n = to_ascii(text).len() as i64;
    if n == 0 { 0 } else { (n * ADVANCE - 1) * scale }
}

/// Draws `text` with its top-left corner at `(x, y)`; glyphs are `5·scale` wide and `7·scale`
/// tall above the baseline (`8·scale` with descenders). Pixels off the image are dropped.
pub fn draw_text(img: &mut RgbImage, x: i64, y: i64, text: &str, scale: i64, c: Rgb<u8>) {
    for (i, ch) in to_ascii(text).bytes().enumerate() {
        let gx = x + i as i64 * ADVANCE * scale;
        glyph(ch, |col, row| {
            fill_rect(
                img,
                gx + col * scale,
                y + row * scale,
                gx + (col + 1) * scale,
                y + (row + 1) * scale,
                c,
            );
        });
    }
}

/// Draws `text` reading upwards (rotated 90° anticlockwise), starting at the bottom `y`, the
/// glyphs' tops towards `x`.
fn draw_text_up(img: &mut RgbImage, x: i64, y: i64, text: &str, scale: i64, c: Rgb<u8>) {
    for (i, ch) in to_ascii(text).bytes().enumerate() {
        let gy = y - i as i64 * ADVANCE * scale;
        glyph(ch, |col, row| {
            fill_rect(
                img,
                x + row * scale,
                gy - (col + 1) * scale,
                x + (row + 1) * scale,
                gy - col * scale,
                c,
            );
        });
    }
}

/// Calls `f(column, row)` for every set pixel of `ch`'s glyph.
fn glyph(ch: u8, mut f: impl FnMut(i64, i64)) {
    let index = if (32..=126).contains(&ch) {
        ch - 32
    } else {
        b'?' - 32
    };
    for (row, bits) in FONT[index as usize].iter().enumerate() {
        for col in 0..GLYPH_COLS {
            if bits & (1 << (GLYPH_COLS - 1 - col)) != 0 {
                f(col, row as i64);
            }
        }
    }
}

/// 5×7 glyphs (plus a descender row) of ASCII 32..=126, one byte per row from the top, bit 4 the
/// leftmost column.
#[rustfmt::skip]
const FONT: [[u8; 8]; 95] = [
    [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00], // ' '
    [0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04, 0x00], // '!'
    [0x0A, 0x0A, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00], // '"'
    [0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A, 0x00], // '#'
    [0x04, 0x0F, 0x14, 0x0E, 0x05, 0x1E, 0x04, 0x00], // '$'
    [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03, 0x00], // '%'
    [0x0C, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0D, 0x00], // '&'
    [0x04, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00], // '\''
    [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02, 0x00], // '('
    [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08, 0x00], // ')'
    [0x00, 0x04, 0x15, 0x0E, 0x15, 0x04, 0x00, 0x00], // '*'
    [0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00, 0x00], // '+'
    [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08], // ','
    [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00, 0x00], // '-'
    [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C, 0x00], // '.'
    [0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00, 0x00], // '/'
    [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E, 0x00], // '0'
    [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00], // '1'
    [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F, 0x00], // '2'
    [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E, 0x00], // '3'
    [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02, 0x00], // '4'
    [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E, 0x00], // '5'
    [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E, 0x00], // '6'
    [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08, 0x00], // '7'
    [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E, 0x00], // '8'
    [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C, 0x00], // '9'
    [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00, 0x00], // ':'
    [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x04, 0x08, 0x00], // ';'
    [0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02, 0x00], // '<'
    [0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00, 0x00], // '='
    [0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08, 0x00], // '>'
    [0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04, 0x00], // '?'
    [0x0E, 0x11, 0x01, 0x0D, 0x15, 0x15, 0x0E, 0x00], // '@'
    [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11, 0x00], // 'A'
    [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E, 0x00], // 'B'
    [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E, 0x00], // 'C'
    [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C, 0x00], // 'D'
    [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F, 0x00], // 'E'
    [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10, 0x00], // 'F'
    [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F, 0x00], // 'G'
    [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11, 0x00], // 'H'
    [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00], // 'I'
    [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C, 0x00], // 'J'
    [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11, 0x00], // 'K'
    [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F, 0x00], // 'L'
    [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11, 0x00], // 'M'
    [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11, 0x00], // 'N'
    [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E, 0x00], // 'O'
    [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10, 0x00], // 'P'
    [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D, 0x00], // 'Q'
    [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11, 0x00], // 'R'
    [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E, 0x00], // 'S'
    [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00], // 'T'
    [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E, 0x00], // 'U'
    [0x11, 0x11, 0x11, 0x0A, 0x0A, 0x04, 0x04, 0x00], // 'V'
    [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A, 0x00], // 'W'
    [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11, 0x00], // 'X'
    [0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, 0x04, 0x00], // 'Y'
    [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F, 0x00], // 'Z'
    [0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E, 0x00], // '['
    [0x00, 0x10, 0x08, 0x04, 0x02, 0x01, 0x00, 0x00], // '\\'
    [0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E, 0x00], // ']'
    [0x04, 0x0A, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00], // '^'
    [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F, 0x00], // '_'
    [0x08, 0x04, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00], // '`'
    [0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F, 0x00], // 'a'
    [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E, 0x00], // 'b'
    [0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E, 0x00], // 'c'
    [0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F, 0x00], // 'd'
    [0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E, 0x00], // 'e'
    [0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08, 0x00], // 'f'
    [0x00, 0x00, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x0E], // 'g'
    [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00], // 'h'
    [0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E, 0x00], // 'i'
    [0x02, 0x00, 0x06, 0x02, 0x02, 0x02, 0x12, 0x0C], // 'j'
    [0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12, 0x00], // 'k'
    [0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00], // 'l'
    [0x00, 0x00, 0x1A, 0x15, 0x15, 0x15, 0x15, 0x00], // 'm'
    [0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00], // 'n'
    [0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E, 0x00], // 'o'
    [0x00, 0x00, 0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10], // 'p'
    [0x00, 0x00, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x01], // 'q'
    [0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10, 0x00], // 'r'
    [0x00, 0x00, 0x0F, 0x10, 0x0E, 0x01, 0x1E, 0x00], // 's'
    [0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06, 0x00], // 't'
    [0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D, 0x00], // 'u'
    [0x00, 0x00, 0x11, 0x11, 0x0A, 0x0A, 0x04, 0x00], // 'v'
    [0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A, 0x00], // 'w'
    [0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x00], // 'x'
    [0x00, 0x00, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x0E], // 'y'
    [0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F, 0x00], // 'z'
    [0x02, 0x04, 0x04, 0x08, 0x04, 0x04, 0x02, 0x00], // '{'
    [0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00], // '|'
    [0x08, 0x04, 0x04, 0x02, 0x04, 0x04, 0x08, 0x00], // '}'
    [0x00, 0x00, 0x08, 0x15, 0x02, 0x00, 0x00, 0x00], // '~'
];

#[cfg(test)]
mod tests {
    use super::*;

    fn count(img: &RgbImage, r: Rect, c: Rgb<u8>) -> usize {
        let mut n = 0;
        for y in r.y0.max(0)..r.y1.min(img.height() as i64) {
            for x in r.x0.max(0)..r.x1.min(img.width() as i64) {
                if *img.get_pixel(x as u32, y as u32) == c {
                    n += 1;
                }
            }
        }
        n
    }

    fn rising() -> Vec<Series<'static>> {
        vec![Series {
            name: "rising",
            points: (0..=20)
                .map(|i| (f64::from(i), f64::from(i) * 0.5))
                .collect(),
        }]
    }

    #[test]
    fn charts_have_the_chart_size() {
        let line = line_chart("t", "x", "y", &rising());
        assert_eq!(line.dimensions(), (WIDTH, HEIGHT));
        let bars = bar_chart("t", "y", &[]);
        assert_eq!(bars.dimensions(), (WIDTH, HEIGHT));
    }

    #[test]
    fn a_rising_line_runs_from_lower_left_to_upper_right() {
        let (img, p) = render_line_chart("rising", "x", "y", &rising());
        let (mx, my) = ((p.x0 + p.x1) / 2, (p.y0 + p.y1) / 2);
        let q = |x0, y0, x1, y1| Rect { x0, y0, x1, y1 };
        let c = colour(0);
        let lower_left = count(&img, q(p.x0, my + 10, mx - 10, p.y1), c);
        let upper_right = count(&img, q(mx + 10, p.y0, p.x1, my - 10), c);
        let upper_left = count(&img, q(p.x0, p.y0, mx - 10, my - 10), c);
        let lower_right = count(&img, q(mx + 10, my + 10, p.x1, p.y1), c);
        assert!(
            lower_left > 100 && upper_right > 100,
            "{lower_left} {upper_right}"
        );
        assert_eq!((upper_left, lower_right), (0, 0));
        // 2 px thick: about twice the length of the diagonal in pixels.
        let total = count(&img, p, c) as f64;
        let diag = (((p.x1 - p.x0).pow(2) + (p.y1 - p.y0).pow(2)) as f64).sqrt();
        assert!(
            total > 1.5 * (p.x1 - p.x0) as f64 && total < 3.0 * diag,
            "{total}"
        );
        // The legend swatch is drawn outside the plot.
        assert!(count(&img, q(0, p.y1, WIDTH as i64, HEIGHT as i64), c) > 0);
    }

    #[test]
    fn ticks_are_nice_and_cover_the_range() {
        let t = Ticks::new(0.0, 0.97);
        assert_eq!(t.values, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(t.label(1), "0.25");
        let t = Ticks::new(3.2, 117.0);
        assert!(t.lo() <= 3.2 && t.hi() >= 117.0);
        assert!((4..=7).contains(&t.values.len()), "{t:?}");
        assert_eq!(t.label(1), "50");
        let (lo, hi) = range([5.0, 5.0].into_iter());
        assert!(lo < 5.0 && hi > 5.0);
        assert_eq!(range(std::iter::empty()), (0.0, 1.0));
    }

    /// Columns (inside `p`) that hold colour `c`, grouped into runs: one run per bar, with the
    /// run's pixel count.
    fn bar_runs(img: &RgbImage, p: Rect, c: Rgb<u8>) -> Vec<usize> {
        let mut runs = Vec::new();
        let mut current = 0;
        for x in p.x0..p.x1 {
            let n = count(
                img,
                Rect {
                    x0: x,
                    y0: p.y0,
                    x1: x + 1,
                    y1: p.y1,
                },
                c,
            );
            if n > 0 {
                current += n;
            } else if current > 0 {
                runs.push(current);
                current = 0;
            }
        }
        if current > 0 {
            runs.push(current);
        }
        runs
    }

    #[test]
    fn error_bars_of_non_negative_bars_stop_at_zero() {
        // R@1 of 0.9 ± 1.0: the axis starts at 0, not at a negative tick.
        assert_eq!(error_low(0.9, 1.0), 0.0);
        assert_eq!(error_low(5.0, 1.0), 4.0);
        assert_eq!(error_low(-2.0, 1.0), -3.0);
        let (lo, hi) = range([error_low(0.9, 1.0), 0.9 + 1.0, 0.0].into_iter());
        assert_eq!(Ticks::new(lo, hi).lo(), 0.0);
    }

    #[test]
    fn bar_areas_follow_the_values() {
        let group = |label, mean| BarGroup {
            label,
            bars: vec![Bar {
                series: "score",
                mean,
                std: 2.0,
            }],
        };
        let groups = [group("low", 10.0), group("high", 30.0), group("mid", 20.0)];
        let (img, p) = render_bar_chart("bars", "score", &groups);
        let runs = bar_runs(&img, p, colour(0));
        assert_eq!(runs.len(), 3, "{runs:?}");
        assert!(runs[0] < runs[2] && runs[2] < runs[1], "{runs:?}");
        let ratio = runs[1] as f64 / runs[0] as f64;
        assert!((ratio - 3.0).abs() < 0.15, "{runs:?}");

        // Two series: colours by series, the orders within groups kept.
        let two = |label, a, b| BarGroup {
            label,
            bars: vec![
                Bar {
                    series: "a",
                    mean: a,
                    std: 1.0,
                },
                Bar {
                    series: "b",
                    mean: b,
                    std: f64::NAN,
                },
            ],
        };
        let groups = [two("first group", 40.0, 10.0), two("second", 5.0, 20.0)];
        let (img, p) = render_bar_chart("bars", "score", &groups);
        let (a, b) = (bar_runs(&img, p, colour(0)), bar_runs(&img, p, colour(1)));
        assert_eq!((a.len(), b.len()), (2, 2), "{a:?} {b:?}");
        assert!(a[0] > b[0] && a[1] < b[1], "{a:?} {b:?}");
        // The legend lists both series under the plot.
        let below = Rect {
            x0: 0,
            y0: p.y1,
            x1: WIDTH as i64,
            y1: HEIGHT as i64,
        };
        assert!(count(&img, below, colour(0)) > 0 && count(&img, below, colour(1)) > 0);
    }

    #[test]
    fn text_is_drawn_inside_its_box_only() {
        let mut img = RgbImage::from_pixel(80, 40, WHITE);
        draw_text(&mut img, 10, 7, "HgH", 2, INK);
        let w = text_width("HgH", 2);
        assert_eq!(w, 2 * (3 * 6 - 1));
        let inside = Rect {
            x0: 10,
            y0: 7,
            x1: 10 + w,
            y1: 7 + 8 * 2,
        };
        let mut dark_inside = 0;
        for (x, y, px) in img.enumerate_pixels() {
            if *px != WHITE {
                assert!(inside.contains(x as i64, y as i64), "pixel at {x},{y}");
                assert_eq!(*px, INK);
                dark_inside += 1;
            }
        }
        assert!(dark_inside > 40, "{dark_inside}");
        // The first and last columns and the descender row are used ('H', 'g').
        let column = |x| (0..40).any(|y| *img.get_pixel(x, y) == INK);
        assert!(column(10) && column(10 + w as u32 - 1) && !column(9));
        assert!((10..10 + w as u32).any(|x| *img.get_pixel(x, 7 + 15) == INK));
    }

    #[test]
    fn non_ascii_text_is_spelled_in_ascii() {
        assert_eq!(to_ascii("1.0 ± 0.2 – a → b"), "1.0 +/- 0.2 - a -> b");
        assert_eq!(to_ascii("é漢"), "??");
        let mut img = RgbImage::from_pixel(200, 20, WHITE);
        draw_text(
            &mut img,
            0,
            0,
            "Tables 1–5: 3 ± 1 → é漢字\u{1F600}\n",
            1,
            INK,
        );
        assert_eq!(text_width("±", 1), text_width("+/-", 1));
        let groups = [BarGroup {
            label: "MVLM → MIM ± é",
            bars: vec![Bar {
                series: "σ – score",
                mean: 1.0,
                std: 0.5,
            }],
        }];
        bar_chart("Tables 1–5 ±", "ÿ", &groups);
        line_chart(
            "–",
            "→",
            "±",
            &[Series {
                name: "漢",
                points: vec![(0.0, 1.0)],
            }],
        );
    }

    #[test]
    fn nan_and_degenerate_values_do_not_panic() {
        let nan = f64::NAN;
        line_chart("t", "x", "y", &[]);
        line_chart(
            "t",
            "x",
            "y",
            &[Series {
                name: "nan",
                points: vec![(nan, nan), (1.0, nan)],
            }],
        );
        line_chart(
            "t",
            "x",
            "y",
            &[Series {
                name: "flat",
                points: vec![(1.0, 2.0), (1.0, 2.0)],
            }],
        );
        let huge = Series {
            name: "huge",
            points: vec![(0.0, -f64::MAX), (1.0, f64::MAX)],
        };
        line_chart("t", "x", "y", &[huge]);
        let inf = Series {
            name: "inf",
            points: vec![(0.0, f64::INFINITY), (1.0, 3.0), (2.0, 1.0)],
        };
        let (img, p) = render_line_chart("t", "x", "y", &[inf]);
        assert!(count(&img, p, colour(0)) > 0);
        let groups = [
            BarGroup {
                label: "nan",
                bars: vec![Bar {
                    series: "s",
                    mean: nan,
                    std: nan,
                }],
            },
            BarGroup {
                label: "",
                bars: vec![Bar {
                    series: "s",
                    mean: 1.0,
                    std: nan,
                }],
            },
            BarGroup {
                label: "empty",
                bars: vec![],
            },
            BarGroup {
                label: "standard Transformer (MLM + MIM + MVLM) with a_very_long_unbroken_word_indeed",
                bars: vec![Bar {
                    series: "s",
                    mean: -2.0,
                    std: 1.0,
                }],
            },
        ];
        let (img, p) = render_bar_chart("t", "y", &groups);
        assert_eq!(bar_runs(&img, p, colour(0)).len(), 2);
        bar_chart(
            "t",
            "y",
            &[BarGroup {
                label: "all nan",
                bars: vec![Bar {
                    series: "s",
                    mean: nan,
                    std: 1.0,
                }],
            }],
        );
    }

    #[test]
    fn long_labels_wrap() {
        let lines = wrap("standard Transformer (MLM + MIM + MVLM)", 16 * 12 - 2, 2, 3);
        assert_eq!(lines, ["standard", "Transformer (MLM", "+ MIM + MVLM)"]);
        let lines = wrap("abcdefghij", 4 * 6 - 1, 1, 2);
        assert_eq!(lines, ["abcd", "e..."]);
    }

    #[test]
    fn png_round_trip_keeps_the_pixels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chart.png");
        let img = line_chart("round trip", "step", "loss", &rising());
        save_png(&img, &path).unwrap();
        let back = image::open(&path).unwrap().to_rgb8();
        assert_eq!(back.dimensions(), img.dimensions());
        assert!(back == img);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["chart.png"]);
        let err = save_png(&img, &dir.path().join("missing/chart.png")).unwrap_err();
        assert!(format!("{err:#}").contains("missing/chart.png"), "{err:#}");
    }
}

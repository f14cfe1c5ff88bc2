//! padnet's charts: pure functions that draw a stacked bar chart as one
//! self-contained `<svg>` element (no script, no fonts, no external resources),
//! for the agent's spending page and the owner portal's earnings.
//!
//! Drawn with plotters' SVG backend and its font-free text layout: the SVG
//! carries `<text>` elements and the browser picks the font. Every piece of
//! text (title, bucket labels, series names) is XML-escaped by the backend.
#![forbid(unsafe_code)]

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One stacked layer of the chart (one site): a value per bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    /// Shown in the legend; comes from outside (a host name), escaped on output.
    pub name: String,
    /// Micro-units (1 EUR = 1_000_000), one per bucket; missing ones count as 0,
    /// negative ones (credits) are drawn as 0.
    pub values: Vec<i64>,
}

/// What to draw: buckets along x, series stacked in each bucket.
#[derive(Debug, Clone)]
pub struct Chart<'a> {
    pub title: &'a str,
    /// The x labels, one per bucket (e.g. "13:00" or "12-03").
    pub buckets: Vec<String>,
    pub series: Vec<Series>,
    /// The currency's name, shown after each y-axis amount (e.g. "EUR").
    pub unit: &'a str,
    /// Shown in the middle when there is nothing to draw (e.g. "no spending yet").
    pub empty_text: &'a str,
    pub width: u32,
    pub height: u32,
}

/// The smallest drawing plotters lays out without its areas overlapping.
const MIN_WIDTH: u32 = 240;
const MIN_HEIGHT: u32 = 160;

/// The tallest stack drawn (10^9 units): plotters' axis arithmetic overflows
/// near `i64::MAX`, and no real bucket comes close; taller stacks are cut.
const MAX_STACK: i64 = 1_000_000_000_000_000;

/// Distinct fills (Tableau 10), taken in order; a series past the tenth
/// reuses them from the start.
const PALETTE: [RGBColor; 10] = [
    RGBColor(0x4e, 0x79, 0xa7),
    RGBColor(0xf2, 0x8e, 0x2b),
    RGBColor(0xe1, 0x57, 0x59),
    RGBColor(0x76, 0xb7, 0xb2),
    RGBColor(0x59, 0xa1, 0x4f),
    RGBColor(0xed, 0xc9, 0x48),
    RGBColor(0xb0, 0x7a, 0xa1),
    RGBColor(0xff, 0x9d, 0xa7),
    RGBColor(0x9c, 0x75, 0x5f),
    RGBColor(0xba, 0xb0, 0xac),
];

/// The fill of the `index`th series, as `#rrggbb` (for a caller's own legend).
pub fn colour(index: usize) -> String {
    let RGBColor(r, g, b) = PALETTE[index % PALETTE.len()];
    format!("#{r:02X}{g:02X}{b:02X}")
}

/// The chart as a complete `<svg ...>...</svg>` element, safe to inline into
/// HTML. Deterministic: the same chart gives the same bytes.
pub fn stacked_bars(chart: &Chart) -> String {
    let size = (chart.width.max(MIN_WIDTH), chart.height.max(MIN_HEIGHT));
    let mut out = String::new();
    let drawn = {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        let drawn = draw(&root, chart);
        // Writing into a String cannot fail; present only closes the tags.
        drawn.and_then(|()| root.present().map_err(|e| e.to_string()))
    };
    match drawn {
        Ok(()) => out.trim_end().to_string(),
        Err(why) => fallback(size, &format!("chart not drawn: {why}")),
    }
}

/// The height of each bucket's stack, negative values clamped to 0.
fn totals(chart: &Chart) -> Vec<i64> {
    (0..chart.buckets.len())
        .map(|i| {
            chart
                .series
                .iter()
                .fold(0i64, |sum, s| {
                    sum.saturating_add(s.values.get(i).copied().unwrap_or(0).max(0))
                })
                .min(MAX_STACK)
        })
        .collect()
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    chart: &Chart,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let totals = totals(chart);
    let top = totals.iter().copied().max().unwrap_or(0);
    let n = chart.buckets.len();
    if n == 0 || top == 0 {
        let (w, h) = root.dim_in_pixel();
        let title = ("sans-serif", 16).into_font().color(&BLACK);
        let title = title.pos(Pos::new(HPos::Center, VPos::Top));
        root.draw_text(chart.title, &title, (w as i32 / 2, 8))
            .map_err(err)?;
        let note = ("sans-serif", 14)
            .into_font()
            .color(&RGBColor(0x66, 0x66, 0x66));
        let note = note.pos(Pos::new(HPos::Center, VPos::Center));
        root.draw_text(chart.empty_text, &note, (w as i32 / 2, h as i32 / 2))
            .map_err(err)?;
        return Ok(());
    }
    // The legend gets its own strip on the right, so it never hides a bar.
    let (w, _) = root.dim_in_pixel();
    let legend_width = legend_width(&chart.series).min(w / 3);
    let (plot, legend) = root.split_horizontally(w - legend_width);
    // Headroom above the tallest stack, so it does not touch the frame.
    let y_top = top.saturating_add(top / 10).max(1);
    let mut ctx = ChartBuilder::on(&plot)
        .caption(chart.title, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(label_width(y_top, chart.unit))
        .build_cartesian_2d((0..n).into_segmented(), 0i64..y_top)
        .map_err(err)?;
    let buckets = &chart.buckets;
    ctx.configure_mesh()
        .disable_x_mesh()
        .x_labels(n.min(12))
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                buckets.get(*i).cloned().unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        })
        .y_labels(6)
        .y_label_formatter(&|v| amount(*v, chart.unit))
        .label_style(("sans-serif", 11))
        .draw()
        .map_err(err)?;

    let mut base = vec![0i64; n];
    for (index, series) in chart.series.iter().enumerate() {
        let fill = PALETTE[index % PALETTE.len()];
        let mut bars = Vec::new();
        for (i, low) in base.iter_mut().enumerate() {
            let value = series.values.get(i).copied().unwrap_or(0).max(0);
            let high = low.saturating_add(value).min(MAX_STACK);
            if high == *low {
                continue;
            }
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), *low),
                    (SegmentValue::Exact(i + 1), high),
                ],
                fill.filled(),
            );
            bar.set_margin(0, 0, 2, 2);
            bars.push(bar);
            *low = high;
        }
        ctx.draw_series(bars).map_err(err)?;
    }
    let font = ("sans-serif", 11).into_font().color(&BLACK);
    let font = font.pos(Pos::new(HPos::Left, VPos::Center));
    for (index, series) in chart.series.iter().enumerate() {
        let y = 40 + 18 * index as i32;
        let fill = PALETTE[index % PALETTE.len()];
        legend
            .draw(&Rectangle::new([(4, y - 5), (14, y + 5)], fill.filled()))
            .map_err(err)?;
        legend
            .draw_text(&legend_name(&series.name), &font, (20, y))
            .map_err(err)?;
    }
    Ok(())
}

/// Legend names longer than this are cut, with an ellipsis.
const LEGEND_CHARS: usize = 32;

fn legend_name(name: &str) -> String {
    if name.chars().count() <= LEGEND_CHARS {
        return name.to_string();
    }
    let mut cut: String = name.chars().take(LEGEND_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// Room for the swatch and the longest legend name (about 6.5 px a character).
fn legend_width(series: &[Series]) -> u32 {
    let chars = series
        .iter()
        .map(|s| s.name.chars().count().min(LEGEND_CHARS))
        .max()
        .unwrap_or(0) as u32;
    if chars == 0 {
        return 0;
    }
    chars * 13 / 2 + 28
}

/// Room for the widest y label (the naive layout counts 0.7 em a character).
fn label_width(top: i64, unit: &str) -> u32 {
    let chars = amount(top, unit).chars().count() as u32;
    (chars * 7 + 12).clamp(40, 160)
}

/// Micro-units for people: at least two decimals, more only when needed
/// (50_000 → "0.05 EUR", 1_234 → "0.001234 EUR", 2_000_000 → "2.00 EUR").
pub fn amount(micros: i64, unit: &str) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let abs = micros.unsigned_abs();
    let mut frac = format!("{:06}", abs % 1_000_000);
    while frac.len() > 2 && frac.ends_with('0') {
        frac.pop();
    }
    let number = format!("{sign}{}.{frac}", abs / 1_000_000);
    if unit.is_empty() {
        number
    } else {
        format!("{number} {unit}")
    }
}

/// A minimal hand-written SVG carrying one line of text, for when plotters
/// refuses to draw (it should not, but the caller always gets an image).
fn fallback((w, h): (u32, u32), text: &str) -> String {
    format!(
        "<svg width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" xmlns=\"http://www.w3.org/2000/svg\">\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-family=\"sans-serif\" font-size=\"12\">{}</text>\n</svg>",
        w / 2,
        h / 2,
        escape(text)
    )
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests;

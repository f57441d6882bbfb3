//! The drawing toolkit every plot shares: the embedded font, the plot size, the palette and dash
//! patterns, log axes and their ticks, legends, markers and the note strip.

use super::text::short;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

/// The embedded font (DejaVu Sans, Bitstream Vera license: assets/DejaVuSans-LICENSE.txt).
const FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
/// The family the embedded font is registered as, and every text drawn asks for.
pub(super) const FAMILY: &str = "sans-serif";
/// Plot size in pixels.
pub const SIZE: (u32, u32) = (960, 600);

/// Registers the embedded font with plotters, once per process (before the first text drawn).
pub(super) fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The font is compiled in and valid; a failure here would show as missing text, not a crash.
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

/// A drawing error as text.
pub(super) fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The smallest and largest finite positive value (what a log axis can show).
pub(super) fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for v in values.filter(|v| v.is_finite() && *v > 0.0) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    (lo <= hi).then_some((lo, hi))
}

/// The Okabe–Ito colour-blind-safe palette (its yellow left out: unreadable on white), for every
/// line of every plot, in this order.
const OKABE_ITO: [(u8, u8, u8); 7] =
    [(0, 114, 178), (213, 94, 0), (0, 158, 115), (230, 159, 0), (204, 121, 167), (86, 180, 233), (0, 0, 0)];

/// The colour of the `i`-th line.
pub(super) fn palette(i: usize) -> RGBAColor {
    let (r, g, b) = OKABE_ITO[i % OKABE_ITO.len()];
    RGBColor(r, g, b).to_rgba()
}

/// The dash pattern of the `i`-th line (`None`: solid), so lines differ in greyscale too.
fn dash(i: usize) -> Option<(u32, u32)> {
    [None, Some((12, 6)), Some((3, 4)), Some((20, 6)), Some((7, 4)), Some((2, 8))][i % 6]
}

/// Draws the `i`-th line of a chart in its colour and dash pattern, with a legend entry.
pub(super) fn styled_line<DB: DrawingBackend, X, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
    pts: Vec<(f64, f64)>,
    i: usize,
    color: RGBAColor,
    width: u32,
    label: Option<String>,
) -> Result<(), String>
where
    X: plotters::coord::ranged1d::Ranged<ValueType = f64>,
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
{
    let style = color.stroke_width(width);
    let anno = match dash(i) {
        None => chart.draw_series(LineSeries::new(pts, style)).map_err(err)?,
        Some((on, off)) => chart.draw_series(DashedLineSeries::new(pts, on, off, style)).map_err(err)?,
    };
    if let Some(label) = label {
        anno.label(label).legend(move |(x, y)| match dash(i) {
            None => DashedPathElement::new(vec![(x, y), (x + 24, y)], 24, 0, style),
            Some((on, off)) => DashedPathElement::new(vec![(x, y), (x + 24, y)], on.min(10), off.min(5), style),
        });
    }
    Ok(())
}

/// Draws the `i`-th series' points with its marker (circle, triangle, square, in turn, so
/// series differ in greyscale too), filled or hollow, with a legend entry if labelled.
pub(super) fn markers<'a, DB: DrawingBackend + 'a, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    pts: &[(f64, f64)],
    i: usize,
    color: RGBAColor,
    filled: bool,
    label: Option<String>,
) -> Result<(), String>
where
    X: plotters::coord::ranged1d::Ranged<ValueType = f64>,
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
{
    let style = if filled { color.filled() } else { color.stroke_width(2) };
    // Each shape is its own element type: the macro writes the drawing and the legend per shape.
    macro_rules! draw {
        ($shape:expr) => {{
            let anno = chart.draw_series(pts.iter().map(|p| $shape(*p))).map_err(err)?;
            if let Some(label) = label {
                anno.label(label).legend(move |(x, y)| $shape((x + 10, y)));
            }
        }};
    }
    match i % 3 {
        0 => draw!(|p| Circle::new(p, 5, style)),
        1 => draw!(|p| TriangleMarker::new(p, 7, style)),
        _ => draw!(|p| EmptyElement::at(p) + Rectangle::new([(-5, -5), (5, 5)], style)),
    }
    Ok(())
}

/// Tick values for a log axis over [lo, hi] (both > 0): whole decades when the span is wide,
/// 1-2-5 steps, then denser mantissas, and evenly spaced round values for a span of less than
/// about two (so an axis always has labels); 3 to 12 of them.
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    if !(lo > 0.0 && hi > lo && hi.is_finite()) {
        return Vec::new();
    }
    let decades = |mantissas: &[f64]| -> Vec<f64> {
        let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        (first..=last)
            .flat_map(|k| mantissas.iter().map(move |m| m * 10f64.powi(k)))
            .filter(|v| *v >= lo * (1.0 - 1e-12) && *v <= hi * (1.0 + 1e-12))
            .collect()
    };
    let whole = decades(&[1.0]);
    if whole.len() > 12 {
        let every = whole.len().div_ceil(10);
        return whole.into_iter().step_by(every).collect();
    }
    for m in [&[1.0][..], &[1.0, 2.0, 5.0], &[1.0, 2.0, 3.0, 5.0, 7.0], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]]
    {
        let t = decades(m);
        if (3..=12).contains(&t.len()) {
            return t;
        }
    }
    // A short span: round values every 1, 2 or 5 × 10^k, 3 to 12 of them.
    let raw = (hi - lo) / 5.0;
    let base = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * base).find(|st| (hi - lo) / st <= 8.0).unwrap_or(10.0 * base);
    let mut v = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while v <= hi * (1.0 + 1e-12) && out.len() < 12 {
        out.push(v);
        v += step;
    }
    out
}

/// A log axis over [lo, hi] with [`log_ticks`] as its labelled points.
pub(super) fn log_axis(lo: f64, hi: f64) -> plotters::coord::combinators::WithKeyPoints<LogCoord<f64>> {
    (lo..hi).log_scale().with_key_points(log_ticks(lo, hi))
}

/// A chart with both axes logarithmic.
type LogAxis = plotters::coord::combinators::WithKeyPoints<LogCoord<f64>>;
type LogLogChart<'a, DB> = ChartContext<'a, DB, Cartesian2d<LogAxis, LogAxis>>;

/// Fills `root` white and writes `note` in a strip along its bottom; returns the area above.
pub(super) fn with_note<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    note: &str,
) -> Result<DrawingArea<DB, Shift>, String> {
    root.fill(&WHITE).map_err(err)?;
    let (area, strip) = root.split_vertically(SIZE.1 - 26);
    strip.draw(&Text::new(note.to_string(), (12, 4), (FAMILY, 14))).map_err(err)?;
    Ok(area)
}

/// A log-log chart with the report's axes style.
pub(super) fn log_chart<'a, DB: DrawingBackend + 'a>(
    area: &'a DrawingArea<DB, Shift>,
    caption: &str,
    xs: (f64, f64),
    ys: (f64, f64),
    (x_desc, y_desc): (&str, &str),
) -> Result<LogLogChart<'a, DB>, String> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FAMILY, 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(log_axis(xs.0 * 0.8, xs.1 * 1.25), log_axis(ys.0 * 0.7, ys.1 * 1.4))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_label_formatter(&|x| short(*x))
        .y_label_formatter(&|y| short(*y))
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style((FAMILY, 14))
        .draw()
        .map_err(err)?;
    Ok(chart)
}

/// The legend every chart draws, in one style.
pub(super) fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(position)
        .draw()
        .map_err(err)
}

//! Rendering a [`Report`]: the terminal table, `summary.json`, PNG and SVG plots (text drawn with
//! an embedded DejaVu Sans, so no system font is needed) and a self-contained `report.html`.

use crate::{ClassReport, Report};
use kappa_core::Verdict;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

mod analysis;

pub use analysis::analysis_lines;
use analysis::{critical_chart, lr_curves_chart, lr_exponent_chart};

/// The embedded font (DejaVu Sans, Bitstream Vera license: assets/DejaVuSans-LICENSE.txt).
const FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";
/// Plot size in pixels.
pub const SIZE: (u32, u32) = (960, 600);

/// Rendering failures.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// Writing a file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Drawing failed.
    #[error("cannot draw {what}: {reason}")]
    Draw {
        /// The plot.
        what: String,
        /// Why.
        reason: String,
    },
}

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The font is compiled in and valid; a failure here would show as missing text, not a crash.
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

fn verdict_name(v: Option<Verdict>) -> &'static str {
    v.map_or("undecided", Verdict::as_str)
}

/// The verdict table printed in the terminal.
pub fn verdict_table(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "sweep `{}`: {} of {} trials finished{} (tolerance {:.0}%)",
        r.sweep,
        r.finished,
        r.trials,
        if r.missing > 0 { format!(", {} missing: verdicts wait for them", r.missing) } else { String::new() },
        r.tolerance * 100.0
    );
    if r.rules.is_empty() {
        let _ = writeln!(s, "no [scaling] section: no rules to judge");
    } else {
        let w = r.rules.iter().map(|x| x.name.chars().count()).max().unwrap_or(4).max(4);
        let _ = writeln!(
            s,
            "{:<w$}  {:<11} {:<11} {:>14} {:>14} {:>11} {:>16}  classes (holds/late/fails/open)",
            "rule", "verdict", "expected", "plateau ratio", "max deviation", "holds from", "holds up to κ"
        );
        for rule in &r.rules {
            let _ = writeln!(
                s,
                "{:<w$}  {:<11} {:<11} {:>14} {:>14} {:>11} {:>16}  {}/{}/{}/{}",
                rule.name,
                verdict_name(rule.verdict),
                rule.expect.map_or("-", Verdict::as_str),
                rule.worst_plateau_ratio.map_or("-".into(), |x| format!("{x:.4}")),
                rule.max_deviation.map_or("-".into(), |x| format!("{:.1}%", x * 100.0)),
                rule.holds_from.map_or("-".into(), |x| format!("{:.0}%", x * 100.0)),
                match (rule.holds_up_to_kappa, rule.holds_up_to_batch) {
                    (Some(k), Some(b)) => format!("{k} (B = {b})"),
                    _ => "-".into(),
                },
                rule.classes[0],
                rule.classes[1],
                rule.classes[2],
                rule.classes[3]
            );
        }
    }
    // Many settings (a learning-rate axis gives one each): the full list is in summary.json.
    let shown = if r.noise_slopes.len() > 8 { &r.noise_slopes[..0] } else { &r.noise_slopes[..] };
    if shown.len() < r.noise_slopes.len() {
        let _ = writeln!(s, "noise slopes of {} settings: see summary.json and report.html", r.noise_slopes.len());
    }
    for f in shown {
        let _ = writeln!(
            s,
            "noise slope {}: d log L / d log σ = {:.3}{}",
            f.label,
            f.slope,
            f.theory_slope.map_or(String::new(), |t| format!(" (theory {t:.3})"))
        );
    }
    for rule in r.rules.iter().filter(|x| x.unsettled_classes > 0) {
        let _ = writeln!(
            s,
            "rule `{}`: {} classes undecided: a plateau ratio rests on trials whose loss had not settled during the \
             averaging window (kappa status lists them; raise samples or burn_in)",
            rule.name, rule.unsettled_classes
        );
    }
    s.push_str(&analysis_lines(r).join("\n"));
    if !r.lr_scaling.is_empty() {
        s.push('\n');
    }
    if !r.tracking.is_empty() {
        let rows: Vec<[String; 4]> = r
            .tracking
            .iter()
            .map(|t| [params_label(&t.params), t.sde_model.clone(), tracking_mean(t), tracking_max(t)])
            .collect();
        let head = ["SDE tracking: setting", "SDE model", "mean |ΔL|/L", "max |ΔL|/L"];
        let w: Vec<usize> = (0..4)
            .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([head[i].chars().count()]).max().unwrap_or(0))
            .collect();
        let head = head.map(String::from);
        for row in std::iter::once(&head).chain(&rows) {
            let _ = writeln!(
                s,
                "{:<a$}  {:<b$}  {:>c$}  {:>d$}",
                row[0],
                row[1],
                row[2],
                row[3],
                a = w[0],
                b = w[1],
                c = w[2],
                d = w[3]
            );
        }
    }
    s
}

/// A tracking row's mean deviation with its SE, as a percentage.
fn tracking_mean(t: &crate::Tracking) -> String {
    match (t.mean_rel_error, t.mean_rel_error_se) {
        (Some(m), Some(se)) => format!("{:.2}% ± {:.2}%", m * 100.0, se * 100.0),
        _ => "-".into(),
    }
}

/// A tracking row's largest deviation, as a percentage.
fn tracking_max(t: &crate::Tracking) -> String {
    t.max_rel_error.map_or("-".into(), |m| format!("{:.2}%", m * 100.0))
}

/// Writes summary.json, the plots and report.html into `out`; returns the files written.
pub fn write_all(report: &Report, out: &Path) -> Result<Vec<PathBuf>, RenderError> {
    register_font();
    std::fs::create_dir_all(out).map_err(|e| RenderError::Io { path: out.to_path_buf(), source: e })?;
    let mut files = Vec::new();
    let write = |name: &str, bytes: &[u8], files: &mut Vec<PathBuf>| -> Result<(), RenderError> {
        let path = out.join(name);
        std::fs::write(&path, bytes).map_err(|e| RenderError::Io { path: path.clone(), source: e })?;
        files.push(path);
        Ok(())
    };
    let json = serde_json::to_vec_pretty(report).unwrap_or_default();
    write("summary.json", &json, &mut files)?;
    let mut svgs: Vec<(String, String)> = Vec::new();
    for (name, plot) in &plots(report) {
        let svg = svg(name, plot, report)?;
        write(&format!("{name}.svg"), svg.as_bytes(), &mut files)?;
        let png = out.join(format!("{name}.png"));
        {
            let area = BitMapBackend::new(&png, SIZE).into_drawing_area();
            plot.draw(&area, report).map_err(|reason| RenderError::Draw { what: name.clone(), reason })?;
            area.present().map_err(|e| RenderError::Draw { what: name.clone(), reason: e.to_string() })?;
        }
        files.push(png);
        svgs.push((name.clone(), svg));
    }
    write("report.html", html(report, &svgs).as_bytes(), &mut files)?;
    Ok(files)
}

/// `report.html` alone, in memory (its plots inline as SVG), as the dashboard serves it.
pub fn html_report(report: &Report) -> Result<String, RenderError> {
    register_font();
    let svgs = plots(report)
        .iter()
        .map(|(name, plot)| Ok((name.clone(), svg(name, plot, report)?)))
        .collect::<Result<Vec<_>, RenderError>>()?;
    Ok(html(report, &svgs))
}

/// Every plot of a report, with its file name (without extension).
fn plots(report: &Report) -> Vec<(String, Plot<'_>)> {
    let mut plots: Vec<(String, Plot<'_>)> = Vec::new();
    let mut seen_rules = Vec::new();
    for class in &report.classes {
        if !seen_rules.contains(&class.rule) {
            seen_rules.push(class.rule.clone());
            plots.push((format!("curves-{}", slug(&class.rule)), Plot::Curves(class)));
        }
    }
    if !report.rules.is_empty() {
        plots.push(("plateau-ratio".into(), Plot::Plateau));
    }
    if !report.noise_slopes.is_empty() {
        plots.push(("noise-slope".into(), Plot::Slopes));
    }
    for (i, l) in report.lr_scaling.iter().enumerate() {
        plots.push((format!("lr-{}-{}", slug(&l.optimizer), i + 1), Plot::LrCurves(l)));
    }
    if report.lr_scaling.iter().any(|l| l.points.iter().any(|p| p.best_lr.is_some())) {
        plots.push(("lr-exponent".into(), Plot::LrExponent));
    }
    if report.critical_batch.iter().any(|c| !c.points.is_empty()) {
        plots.push(("critical-batch".into(), Plot::Critical));
    }
    for o in &report.overlays {
        let mut name = format!("overlay-{}-lr{}", o.params.hyper.optimizer, slug(&short(o.params.hyper.lr)));
        for (axis, v) in &o.params.named {
            name.push_str(&format!(
                "-{}{}",
                slug(axis.rsplit('.').next().unwrap_or(axis)),
                slug(&kappa_core::grid::display_value(v))
            ));
        }
        // Settings that differ only in what a name leaves out still get a file each.
        let taken = plots.iter().filter(|(n, _)| n == &name || n.starts_with(&format!("{name}-"))).count();
        if taken > 0 {
            name = format!("{name}-{}", taken + 1);
        }
        plots.push((name, Plot::Overlay(o)));
    }
    plots
}

/// One plot drawn as SVG.
fn svg(name: &str, plot: &Plot<'_>, report: &Report) -> Result<String, RenderError> {
    let mut svg = String::new();
    {
        let area = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        plot.draw(&area, report).map_err(|reason| RenderError::Draw { what: name.to_string(), reason })?;
        area.present().map_err(|e| RenderError::Draw { what: name.to_string(), reason: e.to_string() })?;
    }
    Ok(svg)
}

/// The plots a report draws.
enum Plot<'a> {
    /// Loss vs samples for one class, one line per κ.
    Curves(&'a ClassReport),
    /// Plateau ratio vs κ per rule.
    Plateau,
    /// Stationary loss vs σ_B.
    Slopes,
    /// One setting across sweeps.
    Overlay(&'a crate::Overlay),
    /// The objective vs learning rate of one group, a line per batch size, optima marked.
    LrCurves(&'a crate::LrScaling),
    /// The best learning rate vs batch size, with the fitted power law.
    LrExponent,
    /// Steps vs samples to the target, with the fitted hyperbola and B_crit.
    Critical,
}

impl Plot<'_> {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>, report: &Report) -> Result<(), String> {
        match self {
            Plot::Curves(class) => curves_chart(area, class),
            Plot::Plateau => plateau_chart(area, report),
            Plot::Slopes => slope_chart(area, report),
            Plot::Overlay(o) => overlay_chart(area, o),
            Plot::LrCurves(l) => lr_curves_chart(area, l),
            Plot::LrExponent => lr_exponent_chart(area, report),
            Plot::Critical => critical_chart(area, report),
        }
    }
}

fn slug(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect()
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for v in values.filter(|v| v.is_finite() && *v > 0.0) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    (lo <= hi).then_some((lo, hi))
}

fn params_label(params: &kappa_core::Params) -> String {
    let p = &params.hyper;
    let mut label = if params.builtins.is_all() {
        format!(
            "{} B={} lr={} β=({}, {}) ε={} θ={}",
            p.optimizer,
            p.batch_size,
            short(p.lr),
            short(p.beta1),
            short(p.beta2),
            short(p.eps),
            short(p.weight_decay)
        )
    } else {
        params
            .builtins
            .axes()
            .filter(|a| *a != kappa_core::AxisName::Seed)
            .map(|a| format!("{a}={}", kappa_core::grid::display_value(&params.builtin_value(a))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    for (name, v) in &params.named {
        label.push_str(&format!(" {name}={}", kappa_core::grid::display_value(v)));
    }
    label.trim().to_string()
}

/// A number in at most 4 significant digits (`0.001414`, `2.5e-9`, `160k`).
pub fn short(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let a = x.abs();
    if (1e4..1e7).contains(&a) && (x / 1e3).fract() == 0.0 {
        return format!("{}k", x / 1e3);
    }
    if !(1e-3..1e4).contains(&a) {
        let s = format!("{x:.3e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let m = m.trim_end_matches('0').trim_end_matches('.');
        return format!("{m}e{e}");
    }
    let digits = (3 - a.log10().floor() as i32).max(0) as usize;
    let s = format!("{x:.digits$}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
}

/// One line of a loss chart.
struct Line {
    /// Legend text.
    label: String,
    /// (samples, mean, SE) points.
    curve: Vec<[f64; 3]>,
    /// The closed form's plateau, drawn as a thin dashed level.
    theory: Option<f64>,
    /// Samples from which it holds (the scaled curves of a class), marked on the line.
    holds_from: Option<f64>,
}

/// Loss against samples seen, one line per κ, for one class.
fn curves_chart<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, class: &ClassReport) -> Result<(), String> {
    let lines = class
        .kappas
        .iter()
        .map(|k| Line {
            label: format!("κ = {} (B = {}, lr = {})", k.kappa, k.params.hyper.batch_size, short(k.params.hyper.lr)),
            curve: k.curve.clone(),
            theory: k.theory,
            holds_from: k.holds_from_samples,
        })
        .collect::<Vec<_>>();
    let caption = format!("rule {}: loss vs samples seen ({})", class.rule, verdict_name(class.verdict));
    loss_chart(root, &caption, &params_label(&class.base), &lines)
}

/// One setting's curves run several ways: the optimizer and its SDEs (tracking), or across sweeps.
fn overlay_chart<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, o: &crate::Overlay) -> Result<(), String> {
    let lines = o
        .series
        .iter()
        .map(|(name, curve, stationary)| {
            let plateau = stationary.map_or(String::new(), |e| format!(" (plateau {})", short(e.mean)));
            Line { label: format!("{name}{plateau}"), curve: curve.clone(), theory: None, holds_from: None }
        })
        .collect::<Vec<_>>();
    let caption = format!("{}: one setting, run several ways", o.params.hyper.optimizer);
    loss_chart(root, &caption, &params_label(&o.params), &lines)
}

/// Loss curves on log-log axes, one labelled line each (colour and dash pattern), with a ±2 SE
/// band, the closed form's plateau as a thin dashed level, the "holds from" point marked, and a
/// subtitle strip at the bottom.
fn loss_chart<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    caption: &str,
    subtitle: &str,
    lines: &[Line],
) -> Result<(), String> {
    let area = with_note(root, subtitle)?;
    let plotted = || lines.iter().flat_map(|l| l.curve.iter().filter(|q| q[0] > 0.0 && q[1] > 0.0));
    let xs = bounds(plotted().map(|q| q[0])).unwrap_or((1.0, 2.0));
    let ys = bounds(plotted().map(|q| q[1]).chain(lines.iter().filter_map(|l| l.theory))).unwrap_or((1e-3, 1.0));
    let (y_lo, y_hi) = (ys.0 * 0.8, ys.1 * 1.25);
    let mut chart = ChartBuilder::on(&area)
        .caption(caption, (FAMILY, 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(log_axis(xs.0 * 0.9, xs.1 * 1.1), log_axis(y_lo, y_hi))
        .map_err(err)?;
    chart
        .configure_mesh()
        .y_labels(8)
        .x_label_formatter(&|x| short(*x))
        .y_label_formatter(&|y| short(*y))
        .x_desc("samples seen (log scale; the first point after the start)")
        .y_desc("loss (mean over paths and seeds; band ±2 SE)")
        .label_style((FAMILY, 14))
        .draw()
        .map_err(err)?;
    let clamp = |y: f64| y.clamp(y_lo, y_hi);
    for (i, l) in lines.iter().enumerate() {
        let color = palette(i);
        let shown: Vec<&[f64; 3]> = l.curve.iter().filter(|q| q[0] > 0.0 && q[1] > 0.0).collect();
        // ±2 SE: the upper edge out, the lower edge back (clamped to the axis: a log axis has no 0).
        let band: Vec<(f64, f64)> = shown
            .iter()
            .map(|q| (q[0], clamp(q[1] + 2.0 * q[2])))
            .chain(shown.iter().rev().map(|q| (q[0], clamp(q[1] - 2.0 * q[2]))))
            .collect();
        if shown.iter().any(|q| q[2] > 0.0) {
            chart.draw_series(std::iter::once(Polygon::new(band, color.mix(0.18).filled()))).map_err(err)?;
        }
        let pts: Vec<(f64, f64)> = shown.iter().map(|q| (q[0], q[1])).collect();
        styled_line(&mut chart, pts, i, color, 2, Some(l.label.clone()))?;
        if let Some(t) = l.theory.filter(|t| *t > 0.0) {
            let level = vec![(xs.0 * 0.9, t), (xs.1 * 1.1, t)];
            chart.draw_series(DashedLineSeries::new(level, 3, 5, color.stroke_width(1))).map_err(err)?;
        }
        if let Some(s) = l.holds_from
            && let Some((y, _)) = crate::aggregate::interpolate(&l.curve, s)
        {
            chart.draw_series(std::iter::once(Cross::new((s, y), 7, color.stroke_width(3)))).map_err(err)?;
        }
    }
    if lines.iter().any(|l| l.theory.is_some()) {
        chart
            .draw_series(std::iter::empty::<Circle<(f64, f64), u32>>())
            .map_err(err)?
            .label("closed-form plateau (THEORY §4)")
            .legend(|(x, y)| DashedPathElement::new(vec![(x, y), (x + 24, y)], 3, 5, BLACK.stroke_width(1)));
    }
    if lines.iter().any(|l| l.holds_from.is_some()) {
        chart
            .draw_series(std::iter::empty::<Circle<(f64, f64), u32>>())
            .map_err(err)?
            .label("holds from here on (within tolerance)")
            .legend(|(x, y)| Cross::new((x + 12, y), 6, BLACK.stroke_width(3)));
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    Ok(())
}

/// The dash pattern of the `i`-th line (`None`: solid), so lines differ in greyscale too.
fn dash(i: usize) -> Option<(u32, u32)> {
    [None, Some((12, 6)), Some((3, 4)), Some((20, 6)), Some((7, 4)), Some((2, 8))][i % 6]
}

/// Draws the `i`-th line of a chart in its colour and dash pattern, with a legend entry.
fn styled_line<DB: DrawingBackend, X, Y>(
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
fn markers<'a, DB: DrawingBackend + 'a, X, Y>(
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

/// Plateau ratio against κ per rule, with 95% intervals and the tolerance band.
fn plateau_chart<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, report: &Report) -> Result<(), String> {
    area.fill(&WHITE).map_err(err)?;
    let kmax = report.classes.iter().flat_map(|c| c.kappas.iter().map(|k| k.kappa)).max().unwrap_or(2) as f64;
    // The κ values themselves label the axis.
    let mut kappas: Vec<f64> = report.classes.iter().flat_map(|c| c.kappas.iter().map(|k| k.kappa as f64)).collect();
    kappas.sort_by(f64::total_cmp);
    kappas.dedup();
    let ys = report
        .classes
        .iter()
        .flat_map(|c| c.kappas.iter().flat_map(|k| k.plateau_ci95.into_iter().flatten().chain(k.theory_ratio)));
    let (mut lo, mut hi) = (1.0 - 2.0 * report.tolerance, 1.0 + 2.0 * report.tolerance);
    for y in ys.filter(|y| y.is_finite()) {
        lo = lo.min(y);
        hi = hi.max(y);
    }
    let mut chart = ChartBuilder::on(area)
        .caption("plateau ratio (stationary loss at κ ÷ at κ = 1)", (FAMILY, 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((1.0..kmax * 1.2).log_scale().with_key_points(kappas), lo - 0.02..hi + 0.02)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_label_formatter(&|x| short(*x))
        .x_desc("κ (batch multiplier)")
        .y_desc("ratio")
        .label_style((FAMILY, 14))
        .draw()
        .map_err(err)?;
    let band = report.tolerance;
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(1.0, 1.0 - band), (kmax * 1.2, 1.0 + band)],
            GREEN.mix(0.12).filled(),
        )))
        .map_err(err)?
        .label(format!("1 ± tolerance ({:.0}%)", band * 100.0))
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], GREEN.mix(0.3).filled()));
    for (i, rule) in report.rules.iter().enumerate() {
        let color = palette(i);
        let mut pts = vec![(1.0, 1.0)];
        let mut bars = Vec::new();
        let mut theory = Vec::new();
        let mut unsettled = Vec::new();
        for c in report.classes.iter().filter(|c| c.rule == rule.name).take(1) {
            for k in c.kappas.iter().skip(1) {
                if let (Some(r), Some(ci)) = (k.plateau_ratio, k.plateau_ci95) {
                    pts.push((k.kappa as f64, r.mean));
                    bars.push((k.kappa as f64, ci));
                    if k.plateau_unsettled {
                        unsettled.push((k.kappa as f64, r.mean));
                    }
                }
                if let Some(t) = k.theory_ratio.filter(|t| t.is_finite()) {
                    theory.push((k.kappa as f64, t));
                }
            }
        }
        styled_line(
            &mut chart,
            pts.clone(),
            i,
            color,
            2,
            Some(format!("{} ({})", rule.name, verdict_name(rule.verdict))),
        )?;
        // A ratio of unsettled losses: a hollow marker (no verdict rests on it).
        chart
            .draw_series(pts.iter().filter(|p| !unsettled.contains(p)).map(|p| Circle::new(*p, 4, color.filled())))
            .map_err(err)?;
        if !unsettled.is_empty() {
            chart.draw_series(unsettled.iter().map(|p| Circle::new(*p, 6, WHITE.filled()))).map_err(err)?;
            chart
                .draw_series(unsettled.iter().map(|p| Circle::new(*p, 6, color.stroke_width(2))))
                .map_err(err)?
                .label(format!("{}: not settled (hollow; no verdict rests on it)", rule.name))
                .legend(move |(x, y)| Circle::new((x + 10, y), 5, color.stroke_width(2)));
        }
        // 95% intervals as error bars, capped (caps in pixels).
        for (x, [a, b]) in bars {
            chart
                .draw_series(std::iter::once(PathElement::new(vec![(x, a), (x, b)], color.stroke_width(1))))
                .map_err(err)?;
            for end in [a, b] {
                let cap = EmptyElement::at((x, end)) + PathElement::new(vec![(-5, 0), (5, 0)], color.stroke_width(1));
                chart.draw_series(std::iter::once(cap)).map_err(err)?;
            }
        }
        // The closed forms' ratio, where THEORY.md has one: a hollow triangle.
        if !theory.is_empty() {
            chart
                .draw_series(theory.iter().map(|p| TriangleMarker::new(*p, 7, color.stroke_width(2))))
                .map_err(err)?
                .label(format!("{}: closed form", rule.name))
                .legend(move |(x, y)| TriangleMarker::new((x + 10, y), 6, color.stroke_width(2)));
        }
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    Ok(())
}

/// Stationary loss against σ_B on log-log axes, with fitted and theory slopes.
fn slope_chart<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, report: &Report) -> Result<(), String> {
    let area = with_note(root, "solid: measured; dashed: the closed forms of THEORY.md §4")?;
    let xs = bounds(report.noise_slopes.iter().flat_map(|f| f.points.iter().map(|p| p[0]))).unwrap_or((0.1, 1.0));
    let ys = bounds(report.noise_slopes.iter().flat_map(|f| f.points.iter().flat_map(|p| [p[1], p[2]])))
        .unwrap_or((1e-3, 1.0));
    let caption = "stationary loss vs minibatch noise σ_B = σ₁/√B";
    let mut chart = log_chart(&area, caption, xs, ys, ("σ_B", "stationary loss"))?;
    for (i, f) in report.noise_slopes.iter().enumerate() {
        let color = palette(i);
        let pts: Vec<(f64, f64)> = f.points.iter().map(|p| (p[0], p[1])).collect();
        chart.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2))).map_err(err)?;
        let label = format!(
            "{}: slope {:.2}{}",
            f.label.split(' ').next().unwrap_or(""),
            f.slope,
            f.theory_slope.map_or(String::new(), |t| format!(" (theory {t:.2})"))
        );
        markers(&mut chart, &pts, i, color, true, Some(label))?;
        let theory: Vec<(f64, f64)> =
            f.points.iter().filter(|p| p[2].is_finite() && p[2] > 0.0).map(|p| (p[0], p[2])).collect();
        chart.draw_series(DashedLineSeries::new(theory, 6, 4, color.stroke_width(1))).map_err(err)?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    Ok(())
}

/// The Okabe–Ito colour-blind-safe palette (its yellow left out: unreadable on white), for every
/// line of every plot, in this order.
const OKABE_ITO: [(u8, u8, u8); 7] =
    [(0, 114, 178), (213, 94, 0), (0, 158, 115), (230, 159, 0), (204, 121, 167), (86, 180, 233), (0, 0, 0)];

/// The colour of the `i`-th line.
fn palette(i: usize) -> RGBAColor {
    let (r, g, b) = OKABE_ITO[i % OKABE_ITO.len()];
    RGBColor(r, g, b).to_rgba()
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
fn log_axis(lo: f64, hi: f64) -> plotters::coord::combinators::WithKeyPoints<LogCoord<f64>> {
    (lo..hi).log_scale().with_key_points(log_ticks(lo, hi))
}

/// A chart with both axes logarithmic.
type LogAxis = plotters::coord::combinators::WithKeyPoints<LogCoord<f64>>;
type LogLogChart<'a, DB> = ChartContext<'a, DB, Cartesian2d<LogAxis, LogAxis>>;

/// Fills `root` white and writes `note` in a strip along its bottom; returns the area above.
fn with_note<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, note: &str) -> Result<DrawingArea<DB, Shift>, String> {
    root.fill(&WHITE).map_err(err)?;
    let (area, strip) = root.split_vertically(SIZE.1 - 26);
    strip.draw(&Text::new(note.to_string(), (12, 4), (FAMILY, 14))).map_err(err)?;
    Ok(area)
}

/// A log-log chart with the report's axes style.
fn log_chart<'a, DB: DrawingBackend + 'a>(
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
fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
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

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// One self-contained page: tables and the SVG plots inline.
fn html(r: &Report, svgs: &[(String, String)]) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>kappa report: {0}</title><style>\
         body{{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}\
         th{{background:#f4f4f4}}td:first-child,th:first-child{{text-align:left}}\
         .holds{{color:#1a7f37;font-weight:bold}}.fails{{color:#b3261e;font-weight:bold}}.late{{color:#9a6700;font-weight:bold}}\
         .unsettled{{color:#b3261e}}\
         </style></head><body><h1>Sweep <code>{0}</code></h1><p>{1} of {2} trials finished{3}; tolerance {4:.0}%.</p>",
        escape(&r.sweep),
        r.finished,
        r.trials,
        if r.missing > 0 { format!(", <b>{} missing</b>: verdicts wait for them", r.missing) } else { String::new() },
        r.tolerance * 100.0
    );
    if !r.rules.is_empty() {
        h.push_str("<h2>Verdicts</h2><table id=\"verdicts\"><tr><th>rule</th><th>verdict</th><th>expected</th><th>worst plateau ratio</th><th>max curve deviation</th><th>holds from</th><th>classes holds/late/fails/open</th></tr>");
        for rule in &r.rules {
            let class = match rule.verdict {
                Some(Verdict::Holds) => "holds",
                Some(Verdict::HoldsLate) => "late",
                Some(Verdict::Fails) => "fails",
                None => "",
            };
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"{class}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}/{}/{}/{}</td></tr>",
                escape(&rule.name),
                verdict_name(rule.verdict),
                rule.expect.map_or("-", Verdict::as_str),
                rule.worst_plateau_ratio.map_or("-".into(), |x| format!("{x:.4}")),
                rule.max_deviation.map_or("-".into(), |x| format!("{:.1}%", x * 100.0)),
                rule.holds_from.map_or("-".into(), |x| format!("{:.0}%", x * 100.0)),
                rule.classes[0],
                rule.classes[1],
                rule.classes[2],
                rule.classes[3]
            );
        }
        h.push_str("</table><h2>Classes</h2><table><tr><th>rule</th><th>base point</th><th>κ</th><th>plateau ratio (95% CI)</th><th>theory ratio</th><th>max deviation</th><th>holds from</th><th>verdict</th></tr>");
        for c in &r.classes {
            for k in c.kappas.iter().skip(1) {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&c.rule),
                    escape(&params_label(&c.base)),
                    k.kappa,
                    match (k.plateau_ratio, k.plateau_ci95) {
                        (Some(p), Some([a, b])) if k.plateau_unsettled => format!(
                            "{:.4} ({a:.4}–{b:.4}) <span class=\"unsettled\" title=\"the loss of a trial behind it had \
                             not settled during the averaging window\">not settled</span>",
                            p.mean
                        ),
                        (Some(p), Some([a, b])) => format!("{:.4} ({a:.4}–{b:.4})", p.mean),
                        _ => "-".into(),
                    },
                    k.theory_ratio.map_or("-".into(), |x| format!("{x:.4}")),
                    k.max_deviation.map_or("-".into(), |x| format!("{:.1}%", x * 100.0)),
                    k.holds_from.map_or("-".into(), |x| format!("{:.0}%", x * 100.0)),
                    escape(&format!("{} {}", verdict_name(c.verdict), c.note.as_deref().unwrap_or("")))
                );
            }
        }
        h.push_str("</table>");
    }
    if !r.noise_slopes.is_empty() {
        h.push_str("<h2>Stationary loss vs noise</h2><table><tr><th>setting</th><th>fitted slope</th><th>theory slope</th></tr>");
        for f in &r.noise_slopes {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{:.3}</td><td>{}</td></tr>",
                escape(&f.label),
                f.slope,
                f.theory_slope.map_or("-".into(), |t| format!("{t:.3}"))
            );
        }
        h.push_str("</table>");
    }
    let lines = analysis_lines(r);
    if !lines.is_empty() {
        h.push_str("<h2>Learning-rate scaling and critical batch size</h2><pre id=\"analysis\">");
        h.push_str(&escape(&lines.join("\n")));
        h.push_str("</pre>");
    }
    if !r.tracking.is_empty() {
        h.push_str("<h2>SDE tracking</h2><p>Relative deviation of each SDE's seed-averaged loss curve from the optimizer's, at the optimizer's record points.</p><table id=\"tracking\"><tr><th>setting</th><th>SDE model</th><th>mean |ΔL|/L (± SE)</th><th>max |ΔL|/L</th><th>points</th></tr>");
        for t in &r.tracking {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&params_label(&t.params)),
                escape(&t.sde_model),
                tracking_mean(t),
                tracking_max(t),
                t.points
            );
        }
        h.push_str("</table>");
    }
    h.push_str("<h2>Plots</h2>");
    for (name, svg) in svgs {
        let _ = write!(h, "<figure id=\"{}\">{}</figure>", escape(name), svg);
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::short;

    #[test]
    fn short_numbers() {
        assert_eq!(short(0.0014142135623730952), "0.001414");
        assert_eq!(short(160000.0), "160k");
        assert_eq!(short(2.5e-9), "2.5e-9");
        assert_eq!(short(1.0), "1");
        assert_eq!(short(0.999), "0.999");
    }
}

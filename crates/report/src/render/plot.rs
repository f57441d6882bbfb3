//! The plots of a report: which ones it draws and their file names, each drawn on any backend
//! (PNG, SVG), and the charts of the verdicts, the noise slopes and the overlays. The analysis's
//! charts are in `analysis.rs`.

use super::RenderError;
use super::analysis::{critical_chart, halving_chart, lr_curves_chart, lr_exponent_chart};
use super::chart::{FAMILY, SIZE, bounds, err, legend, log_axis, log_chart, markers, palette, styled_line, with_note};
use super::text::{params_label, short, verdict_name};
use crate::aggregate::interpolate;
use crate::analysis::LrScaling;
use crate::classes::ClassReport;
use crate::overlay::Overlay;
use crate::report::Report;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

/// Every plot of a report, with its file name (without extension).
pub(super) fn plots(report: &Report) -> Vec<(String, Plot<'_>)> {
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
    if let Some(h) = &report.halving {
        for (i, g) in h.groups.iter().enumerate() {
            plots.push((format!("halving-{}", i + 1), Plot::Halving(h, g)));
        }
    }
    for o in &report.overlays {
        let mut name = format!("overlay-{}-lr{}", o.params.hyper.optimizer, slug(&short(o.params.hyper.lr)));
        for (axis, v) in &o.params.named {
            name.push_str(&format!(
                "-{}{}",
                slug(axis.rsplit('.').next().unwrap_or(axis)),
                slug(&kappa_core::display_value(v))
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
pub(super) fn svg(name: &str, plot: &Plot<'_>, report: &Report) -> Result<String, RenderError> {
    let mut svg = String::new();
    {
        let area = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        plot.draw(&area, report).map_err(|reason| RenderError::Draw { what: name.to_string(), reason })?;
        area.present().map_err(|e| RenderError::Draw { what: name.to_string(), reason: e.to_string() })?;
    }
    Ok(svg)
}

/// The plots a report draws.
pub(super) enum Plot<'a> {
    /// Loss vs samples for one class, one line per κ.
    Curves(&'a ClassReport),
    /// Plateau ratio vs κ per rule.
    Plateau,
    /// Stationary loss vs σ_B.
    Slopes,
    /// One setting across sweeps.
    Overlay(&'a Overlay),
    /// The objective vs learning rate of one group, a line per batch size, optima marked.
    LrCurves(&'a LrScaling),
    /// The best learning rate vs batch size, with the fitted power law.
    LrExponent,
    /// Steps vs samples to the target, with the fitted hyperbola and B_crit.
    Critical,
    /// Successive halving: one group's loss curves, the stopped ones grey.
    Halving(&'a crate::halving::HalvingReport, &'a crate::halving::HalvingGroup),
}

impl Plot<'_> {
    pub(super) fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        report: &Report,
    ) -> Result<(), String> {
        match self {
            Plot::Curves(class) => curves_chart(area, class),
            Plot::Plateau => plateau_chart(area, report),
            Plot::Slopes => slope_chart(area, report),
            Plot::Overlay(o) => overlay_chart(area, o),
            Plot::LrCurves(l) => lr_curves_chart(area, l),
            Plot::LrExponent => lr_exponent_chart(area, report),
            Plot::Critical => critical_chart(area, report),
            Plot::Halving(h, g) => halving_chart(area, h, g),
        }
    }
}

/// A name as a file name's part: lowercase ASCII letters and digits, anything else `-`.
fn slug(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect()
}

/// One line of a loss chart.
struct Line {
    /// Legend text.
    label: String,
    /// (samples, mean, SE) points.
    curve: Vec<[f64; 3]>,
    /// The closed form's plateau, drawn as a thin dashed level.
    theory: Option<f64>,
    /// The theory's curve (samples, expected loss), drawn thin and dashed instead of the level
    /// where there is one.
    theory_curve: Vec<[f64; 2]>,
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
            theory_curve: k.theory_curve.clone(),
            holds_from: k.holds_from_samples,
        })
        .collect::<Vec<_>>();
    let caption = format!("rule {}: loss vs samples seen ({})", class.rule, verdict_name(class.verdict));
    loss_chart(root, &caption, &params_label(&class.base), &lines)
}

/// One setting's curves run several ways: the optimizer and its SDEs (tracking), or across sweeps.
fn overlay_chart<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, o: &Overlay) -> Result<(), String> {
    let lines = o
        .series
        .iter()
        .map(|(name, curve, stationary)| {
            let plateau = stationary.map_or(String::new(), |e| format!(" (plateau {})", short(e.mean)));
            Line {
                label: format!("{name}{plateau}"),
                curve: curve.clone(),
                theory: None,
                theory_curve: Vec::new(),
                holds_from: None,
            }
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
        let exact: Vec<(f64, f64)> =
            l.theory_curve.iter().filter(|p| p[0] > 0.0 && p[1] > 0.0).map(|p| (p[0], clamp(p[1]))).collect();
        if !exact.is_empty() {
            chart.draw_series(DashedLineSeries::new(exact, 3, 5, color.stroke_width(1))).map_err(err)?;
        } else if let Some(t) = l.theory.filter(|t| *t > 0.0) {
            let level = vec![(xs.0 * 0.9, t), (xs.1 * 1.1, t)];
            chart.draw_series(DashedLineSeries::new(level, 3, 5, color.stroke_width(1))).map_err(err)?;
        }
        if let Some(s) = l.holds_from
            && let Some((y, _)) = interpolate(&l.curve, s)
        {
            chart.draw_series(std::iter::once(Cross::new((s, y), 7, color.stroke_width(3)))).map_err(err)?;
        }
    }
    let (curves, levels) = (
        lines.iter().any(|l| !l.theory_curve.is_empty()),
        lines.iter().any(|l| l.theory_curve.is_empty() && l.theory.is_some()),
    );
    if curves || levels {
        let label = match (curves, levels) {
            (true, false) => "the theory's expected loss (THEORY §4, §7–§8)",
            (false, _) => "closed-form plateau (THEORY §4)",
            (true, true) => "theory: its expected loss, or its plateau",
        };
        chart
            .draw_series(std::iter::empty::<Circle<(f64, f64), u32>>())
            .map_err(err)?
            .label(label)
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

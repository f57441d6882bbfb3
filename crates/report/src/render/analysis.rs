//! The report's learning-rate and critical-batch analysis, rendered: its text lines (terminal and
//! HTML) and its three plots.

use super::chart::{bounds, err, legend, log_chart, markers, palette, styled_line, with_note};
use super::text::short;
use crate::report::Report;
use plotters::coord::Shift;
use plotters::prelude::*;

fn interval(ci: Option<[f64; 2]>) -> String {
    ci.map_or(String::new(), |[lo, hi]| format!(" [{}, {}]", short(lo), short(hi)))
}

/// One line per batch size's optimum: `B=64 lr*=2.1e-3 [1.9e-3, 2.4e-3]` (`at the edge` when the
/// optimum is the grid's first or last learning rate).
fn optimum(p: &crate::analysis::LrPoint) -> String {
    match p.best_lr {
        Some(lr) => format!(
            "B={} lr*={}{}{}",
            p.batch_size,
            short(lr),
            interval(p.best_lr_ci),
            if p.at_edge {
                " (at the edge of the lrs run)"
            } else if p.at_stability_edge {
                " (at the stability edge)"
            } else {
                ""
            }
        ),
        None => format!("B={} no finite objective", p.batch_size),
    }
}

/// What the best does to the objective.
fn goal(maximise: bool) -> &'static str {
    if maximise { "maximises" } else { "minimises" }
}

/// A search's groups, as text lines: each group's optimum, its bracket, its rounds and trials,
/// how it ended, and where it started against the optimum found.
fn search_lines(s: &crate::search::SearchReport) -> Vec<String> {
    let mut out = vec![format!(
        "search: bracket over {} in [{}, {}] (best {} the {}), tolerance ±{}%: {} trials of at most {}",
        s.axis,
        short(s.range[0]),
        short(s.range[1]),
        goal(s.maximise),
        s.objective,
        short(s.tolerance * 100.0),
        s.trials,
        s.at_most
    )];
    for g in &s.groups {
        let best = match g.best {
            Some(b) => {
                let edge = if g.at_edge && g.finish.as_deref() == Some(kappa_core::search::Finish::RangeEdge.as_str()) {
                    " (at the range's edge)"
                } else if g.at_edge {
                    " (at the edge of the values probed)"
                } else if g.at_stability_edge {
                    " (at a stability edge)"
                } else {
                    ""
                };
                format!("{}* = {}{edge}{}", s.axis, short(b), interval(g.interval))
            }
            None => format!("no {} trained", s.axis),
        };
        let start = match (g.start, g.start_ratio) {
            (Some(st), Some(r)) => format!("; started at {} ({}× the optimum)", short(st), short(r)),
            (Some(st), None) => format!("; started at {}", short(st)),
            _ => String::new(),
        };
        out.push(format!(
            "  {}: {best}, {} rounds, {} trials, {}{start}",
            g.label,
            g.rounds,
            g.trials,
            g.finish.as_deref().unwrap_or("still running")
        ));
    }
    out
}

/// Successive halving, as text lines: its rungs, then per group the settings that ran the whole
/// budget, and how many stopped at each rung.
fn halving_lines(h: &crate::halving::HalvingReport) -> Vec<String> {
    let rungs: Vec<String> = h.rungs.iter().map(|r| kappa_core::format_count(*r)).collect();
    let mut out = vec![format!(
        "successive halving: rungs at {} samples, the best 1/{} of each group's settings going on ({}; judged by the \
         {}): {} trials stopped at a rung",
        rungs.join(" → "),
        h.reduction,
        if h.within.is_empty() { "one group".to_string() } else { format!("within {}", h.within.join(", ")) },
        h.objective,
        h.stopped
    )];
    for g in &h.groups {
        let whole: Vec<String> = g
            .settings
            .iter()
            .filter(|s| s.status == "whole budget")
            .map(|s| format!("{} ({})", s.label, short(s.objective)))
            .collect();
        let mut tally: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
        for s in g.settings.iter().filter(|s| s.status != "whole budget") {
            *tally.entry(s.status.as_str()).or_default() += 1;
        }
        let rest: Vec<String> = tally.iter().map(|(s, n)| format!("{n} {s}")).collect();
        out.push(format!(
            "  {}: whole budget: {}{}",
            if g.label.is_empty() { "every setting" } else { g.label.as_str() },
            if whole.is_empty() { "none yet".to_string() } else { whole.join(", ") },
            if rest.is_empty() { String::new() } else { format!("; {}", rest.join(", ")) }
        ));
    }
    out
}

/// One group of successive halving: each setting's loss curve (seeds pooled), the ones that ran
/// the whole budget in colour, the stopped ones grey, ending where they stopped.
pub(super) fn halving_chart<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    h: &crate::halving::HalvingReport,
    g: &crate::halving::HalvingGroup,
) -> Result<(), String> {
    let area = with_note(root, "grey: stopped at a rung (a dot where it stopped); colour: ran the whole budget")?;
    let positive = |p: &&[f64; 2]| p[0] > 0.0 && p[1].is_finite() && p[1] > 0.0;
    let xs =
        bounds(g.settings.iter().flat_map(|s| s.curve.iter().filter(positive).map(|p| p[0]))).unwrap_or((1.0, 10.0));
    let ys =
        bounds(g.settings.iter().flat_map(|s| s.curve.iter().filter(positive).map(|p| p[1]))).unwrap_or((1e-3, 1.0));
    let caption =
        format!("successive halving{}", if g.label.is_empty() { String::new() } else { format!(": {}", g.label) });
    let mut chart = log_chart(&area, &caption, xs, ys, ("samples seen", "loss"))?;
    let grey = RGBColor(175, 175, 175).to_rgba();
    for s in g.settings.iter().filter(|s| s.status != "whole budget") {
        let pts: Vec<(f64, f64)> = s.curve.iter().filter(positive).map(|p| (p[0], p[1])).collect();
        chart.draw_series(LineSeries::new(pts.clone(), grey.stroke_width(1))).map_err(err)?;
        if let Some(end) = pts.last() {
            chart.draw_series(std::iter::once(Circle::new(*end, 3, grey.filled()))).map_err(err)?;
        }
    }
    for (i, s) in g.settings.iter().filter(|s| s.status == "whole budget").enumerate() {
        let pts: Vec<(f64, f64)> = s.curve.iter().filter(positive).map(|p| (p[0], p[1])).collect();
        styled_line(&mut chart, pts, i, palette(i), 2, Some(s.label.clone()))?;
    }
    for r in &h.rungs {
        let x = *r as f64;
        if x >= xs.0 && x <= xs.1 {
            chart
                .draw_series(std::iter::once(PathElement::new(vec![(x, ys.0), (x, ys.1)], grey.stroke_width(1))))
                .map_err(err)?;
        }
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

/// The learning-rate exponents and critical batch sizes, as text lines (terminal and HTML).
pub fn analysis_lines(r: &Report) -> Vec<String> {
    let mut out = r.search.as_ref().map(search_lines).unwrap_or_default();
    out.extend(r.halving.as_ref().map(halving_lines).unwrap_or_default());
    for l in &r.lr_scaling {
        let rules: Vec<String> = l.rule_exponents.iter().map(|(n, e)| format!("{n} {}", short(*e))).collect();
        out.push(format!(
            "learning-rate scaling {} (best lr {} the {}): exponent {}{} (theory {}; rules: {})",
            l.group,
            goal(l.maximise),
            l.objective,
            l.exponent.map_or("-".into(), |a| format!("{a:.3}")),
            interval(l.exponent_ci),
            short(l.theory_exponent),
            if rules.is_empty() { "-".into() } else { rules.join(", ") }
        ));
        out.push(format!("  {}", l.points.iter().map(optimum).collect::<Vec<_>>().join("; ")));
        if let Some(st) = &l.stable {
            let slopes: Vec<String> = l.local_slopes.iter().map(|(a, b, s)| format!("{a}→{b} {s:.2}")).collect();
            out.push(format!(
                "  the exponent changes beyond B = {}: over B = {}..{} it is {:.3}{} (local slopes: {}); the fit over \
                 every batch size mixes regimes",
                st.batch_sizes[1],
                st.batch_sizes[0],
                st.batch_sizes[1],
                st.exponent,
                interval(st.exponent_ci),
                slopes.join(", ")
            ));
        }
        if let Some(h) = &l.held_out {
            let within = match h.predicted_ci {
                Some([lo, hi]) if (lo..=hi).contains(&h.found) => ", inside the prediction's interval",
                Some(_) => ", outside the prediction's interval",
                None => "",
            };
            out.push(format!(
                "  held out: fitted without B = {b}, the exponent predicts lr* = {}{} there; found {} (miss {:+.1}%{within})",
                short(h.predicted),
                interval(h.predicted_ci),
                short(h.found),
                100.0 * h.miss,
                b = h.batch_size,
            ));
        }
        if let Some(n) = &l.note {
            out.push(format!("  note: {n}"));
        }
    }
    let breaks: Vec<String> = r
        .rules
        .iter()
        .filter_map(|rule| {
            let (k, b) = (rule.holds_up_to_kappa?, rule.holds_up_to_batch?);
            Some(format!("{} up to κ = {k} (batch {b})", rule.name))
        })
        .collect();
    for c in &r.critical_batch {
        // A B_crit outside the batch sizes measured is an extrapolation, and says so.
        let (smallest, largest) = (
            c.points.iter().map(|p| p.batch_size).min().unwrap_or(0) as f64,
            c.points.iter().map(|p| p.batch_size).max().unwrap_or(0) as f64,
        );
        let b_crit = match c.b_crit {
            Some(b) if b > largest => {
                format!(
                    "> {} (beyond the largest batch size: the fit gives {}{})",
                    short(largest),
                    short(b),
                    interval(c.b_crit_ci)
                )
            }
            Some(b) if b < smallest => {
                format!(
                    "< {} (below the smallest batch size: the fit gives {}{})",
                    short(smallest),
                    short(b),
                    interval(c.b_crit_ci)
                )
            }
            Some(b) => format!("{}{}", short(b), interval(c.b_crit_ci)),
            None => "-".into(),
        };
        out.push(format!(
            "critical batch size {} (target {}): B_crit {b_crit}, S_min {}, E_min {}{}{}",
            c.group,
            short(c.target_loss),
            c.s_min.map_or("-".into(), short),
            c.e_min.map_or("-".into(), short),
            c.noise_scale_at_target.map_or(String::new(), |b| format!(
                "; B_simple at the target {} (the gradient noise scale the trials measured; McCandlish et al.: \
                 B_crit is comparable to it, not equal)",
                short(b)
            )),
            if c.unreached.is_empty() { String::new() } else { format!("; never reached at B = {:?}", c.unreached) }
        ));
        if !breaks.is_empty() {
            out.push(format!("  the rules hold {}", breaks.join(", ")));
        }
        let pts: Vec<String> = c
            .points
            .iter()
            .map(|p| {
                let edge = if p.lr_at_edge { " (fastest lr at the edge of the lrs run)" } else { "" };
                if p.within_first_record {
                    format!(
                        "B={} S≤{} E≤{} (within the first record interval){edge}",
                        p.batch_size,
                        short(p.steps),
                        short(p.samples)
                    )
                } else {
                    format!("B={} S={} E={}{edge}", p.batch_size, short(p.steps), short(p.samples))
                }
            })
            .collect();
        out.push(format!("  {}", pts.join("; ")));
        if let Some(n) = &c.note {
            out.push(format!("  note: {n}"));
        }
    }
    out
}

pub(super) fn lr_curves_chart<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    l: &crate::analysis::LrScaling,
) -> Result<(), String> {
    root.fill(&WHITE).map_err(err)?;
    let finite = |p: &&[f64; 3]| p[1].is_finite() && p[1] > 0.0;
    let xs = bounds(l.points.iter().flat_map(|p| p.objective.iter().map(|o| o[0]))).unwrap_or((1e-3, 1.0));
    let ys =
        bounds(l.points.iter().flat_map(|p| p.objective.iter().filter(finite).map(|o| o[1]))).unwrap_or((1e-3, 1.0));
    let caption = format!("{} vs learning rate: {}", l.objective, l.group);
    let mut chart = log_chart(root, &caption, xs, ys, ("learning rate", &l.objective))?;
    for (i, p) in l.points.iter().enumerate() {
        let color = palette(i);
        let pts: Vec<(f64, f64)> = p.objective.iter().filter(finite).map(|o| (o[0], o[1])).collect();
        let label = format!(
            "B = {}: lr* {}{}",
            p.batch_size,
            p.best_lr.map_or("-".into(), short),
            if p.at_edge {
                " (edge of the lrs run)"
            } else if p.at_stability_edge {
                " (stability edge)"
            } else {
                ""
            }
        );
        styled_line(&mut chart, pts.clone(), i, color, 2, Some(label))?;
        chart.draw_series(pts.iter().map(|q| Circle::new(*q, 3, color.filled()))).map_err(err)?;
        // The optimum: a cross at the best learning rate, at the best objective (the lowest, or
        // the highest of a maximised one); the bracket (the best learning rate's neighbours,
        // between which the optimum lies) a bar under it.
        let best_y = if l.maximise {
            pts.iter().map(|q| q.1).max_by(f64::total_cmp)
        } else {
            pts.iter().map(|q| q.1).min_by(f64::total_cmp)
        };
        if let (Some(best), Some(low)) = (p.best_lr, best_y) {
            chart.draw_series(std::iter::once(Cross::new((best, low), 8, color.stroke_width(3)))).map_err(err)?;
            let at = p.objective.iter().position(|o| o[1] == low);
            if let Some(i) = at {
                let lo = p.objective[i.saturating_sub(1)][0];
                let hi = p.objective.get(i + 1).map_or(p.objective[i][0], |o| o[0]);
                let y = low * 0.9;
                let bar = vec![(lo, y), (hi, y)];
                chart.draw_series(std::iter::once(PathElement::new(bar, color.stroke_width(2)))).map_err(err)?;
            }
        }
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

pub(super) fn lr_exponent_chart<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    report: &Report,
) -> Result<(), String> {
    let area = with_note(
        root,
        "filled: optimum inside the lr grid (fitted); hollow: at its edge or a stability edge; bars: 95% bootstrap",
    )?;
    let points = || report.lr_scaling.iter().flat_map(|l| l.points.iter());
    let xs = bounds(points().map(|p| p.batch_size as f64)).unwrap_or((1.0, 10.0));
    let ys = bounds(points().flat_map(|p| p.best_lr.into_iter().chain(p.best_lr_ci.into_iter().flatten())))
        .unwrap_or((1e-3, 1.0));
    let mut chart = log_chart(&area, "best learning rate vs batch size", xs, ys, ("batch size", "best learning rate"))?;
    for (i, l) in report.lr_scaling.iter().enumerate() {
        let color = palette(i);
        let inside: Vec<(f64, f64)> = l
            .points
            .iter()
            .filter(|p| !p.at_edge && !p.at_stability_edge)
            .filter_map(|p| Some((p.batch_size as f64, p.best_lr?)))
            .collect();
        let fit = crate::analysis::linear_fit(&inside.iter().map(|(b, e)| (b.ln(), e.ln())).collect::<Vec<_>>());
        let label = format!(
            "{}: a = {}{} (theory {})",
            l.optimizer,
            l.exponent.map_or("-".into(), |a| format!("{a:.2}")),
            l.exponent_ci.map_or(String::new(), |[lo, hi]| format!(" [{lo:.2}, {hi:.2}]")),
            short(l.theory_exponent)
        );
        markers(&mut chart, &inside, i, color, true, Some(label))?;
        let edge: Vec<(f64, f64)> = l
            .points
            .iter()
            .filter(|p| p.at_edge || p.at_stability_edge)
            .filter_map(|p| Some((p.batch_size as f64, p.best_lr?)))
            .collect();
        markers(&mut chart, &edge, i, color, false, None)?;
        for p in &l.points {
            if let Some([lo, hi]) = p.best_lr_ci {
                let b = p.batch_size as f64;
                chart
                    .draw_series(std::iter::once(PathElement::new(vec![(b, lo), (b, hi)], color.stroke_width(1))))
                    .map_err(err)?;
            }
        }
        if let Some((a, slope)) = fit {
            let line: Vec<(f64, f64)> = [xs.0, xs.1].iter().map(|b| (*b, (a + slope * b.ln()).exp())).collect();
            chart.draw_series(DashedLineSeries::new(line, 6, 4, color.stroke_width(1))).map_err(err)?;
        }
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

pub(super) fn critical_chart<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, report: &Report) -> Result<(), String> {
    let area =
        with_note(root, "points: fewest steps per batch size; dashed: S = S_min(1 + B_crit/B); cross: B = B_crit")?;
    let pts = || report.critical_batch.iter().flat_map(|c| c.points.iter());
    let xs = bounds(pts().map(|p| p.samples)).unwrap_or((1.0, 10.0));
    let ys = bounds(pts().map(|p| p.steps)).unwrap_or((1.0, 10.0));
    let target = report.critical_batch.first().map_or(String::new(), |c| short(c.target_loss));
    let caption = format!("steps vs samples to the target loss {target}");
    let mut chart = log_chart(&area, &caption, xs, ys, ("samples to the target", "steps to the target"))?;
    for (i, c) in report.critical_batch.iter().enumerate() {
        let color = palette(i);
        let points: Vec<(f64, f64)> = c.points.iter().map(|p| (p.samples, p.steps)).collect();
        let label = format!(
            "{}: B_crit {}{}",
            c.optimizer,
            c.b_crit.map_or("-".into(), short),
            c.b_crit_ci.map_or(String::new(), |[lo, hi]| format!(" [{}, {}]", short(lo), short(hi)))
        );
        chart.draw_series(LineSeries::new(points.clone(), color.stroke_width(1))).map_err(err)?;
        markers(&mut chart, &points, i, color, true, Some(label))?;
        if let (Some(s_min), Some(b_crit)) = (c.s_min, c.b_crit) {
            let (b0, b1) = (
                c.points.first().map_or(1.0, |p| p.batch_size as f64),
                c.points.last().map_or(1.0, |p| p.batch_size as f64),
            );
            let curve: Vec<(f64, f64)> = (0..=60)
                .map(|k| b0 * (b1 / b0).powf(k as f64 / 60.0))
                .map(|b| (b * s_min * (1.0 + b_crit / b), s_min * (1.0 + b_crit / b)))
                .collect();
            chart.draw_series(DashedLineSeries::new(curve, 6, 4, color.stroke_width(1))).map_err(err)?;
            let at = (2.0 * b_crit * s_min, 2.0 * s_min);
            chart.draw_series(std::iter::once(Cross::new(at, 8, color.stroke_width(3)))).map_err(err)?;
        }
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

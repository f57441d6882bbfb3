//! `report.html`: one self-contained page, its tables and its plots inline as SVG.

use super::RenderError;
use super::analysis::analysis_lines;
use super::chart::register_font;
use super::plot::{plots, svg};
use super::text::{
    RULE_HEAD, TRACKING_NOTE, params_label, percent, rule_cells, tracking_max, tracking_mean, verdict_name,
};
use crate::report::Report;
use kappa_core::Verdict;
use std::fmt::Write as _;

/// `report.html` alone, in memory (its plots inline as SVG), as the dashboard serves it.
pub fn html_report(report: &Report) -> Result<String, RenderError> {
    register_font();
    let svgs = plots(report)
        .iter()
        .map(|(name, plot)| Ok((name.clone(), svg(name, plot, report)?)))
        .collect::<Result<Vec<_>, RenderError>>()?;
    Ok(html(report, &svgs))
}

/// `s` with the characters HTML gives a meaning escaped.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// One self-contained page: tables and the SVG plots inline.
pub(super) fn html(r: &Report, svgs: &[(String, String)]) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>kappa report: {0}</title><style>\
         body{{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}\
         th{{background:#f4f4f4}}td:first-child,th:first-child{{text-align:left}}\
         .holds{{color:#1a7f37;font-weight:bold}}.fails{{color:#b3261e;font-weight:bold}}.late{{color:#9a6700;font-weight:bold}}\
         .unsettled{{color:#b3261e}}\
         </style></head><body><h1>Sweep <code>{0}</code></h1><p>{1} of {2} trials finished{3}{5}; tolerance {4:.0}%.</p>",
        escape(&r.sweep),
        r.finished,
        r.trials,
        if r.missing > 0 { format!(", <b>{} missing</b>: verdicts wait for them", r.missing) } else { String::new() },
        r.tolerance * 100.0,
        if r.did_not_train + r.unstable > 0 {
            format!(" ({} did not train, {} unstable)", r.did_not_train, r.unstable)
        } else {
            String::new()
        }
    );
    if !r.rules.is_empty() {
        h.push_str("<h2>Verdicts</h2><table id=\"verdicts\"><tr>");
        for head in RULE_HEAD {
            let _ = write!(h, "<th>{}</th>", escape(head));
        }
        h.push_str("</tr>");
        for rule in &r.rules {
            let class = match rule.verdict {
                Some(Verdict::Holds) => "holds",
                Some(Verdict::HoldsLate) => "late",
                Some(Verdict::Fails) => "fails",
                None => "",
            };
            h.push_str("<tr>");
            for (i, cell) in rule_cells(rule).iter().enumerate() {
                let attr = if i == 1 { format!(" class=\"{class}\"") } else { String::new() };
                let _ = write!(h, "<td{attr}>{}</td>", escape(cell));
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");
        for line in &r.rule_notes {
            let _ = write!(h, "<p class=\"note\">{}</p>", escape(line));
        }
        h.push_str("<h2>Classes</h2><table><tr><th>rule</th><th>base point</th><th>κ</th><th>plateau ratio (95% CI)</th><th>theory ratio</th><th>deviation</th><th>holds from</th><th>verdict</th></tr>");
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
                    percent(k.deviation),
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
                "<tr><td>{}</td><td>{:.3}{}</td><td>{}</td></tr>",
                escape(&f.label),
                f.slope,
                super::text::slope_unsettled(f)
                    .map_or(String::new(), |n| format!(" <span class=\"unsettled\">({})</span>", escape(&n))),
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
        let _ = write!(
            h,
            "<h2>SDE tracking</h2><p>{}</p><table id=\"tracking\"><tr><th>setting</th><th>SDE model</th><th>mean |ΔL|/L (± SE)</th><th>max |ΔL|/L</th><th>points</th></tr>",
            escape(TRACKING_NOTE)
        );
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
    for c in &r.contrasts {
        let _ = write!(
            h,
            "<h2>Contrast along {}</h2><p>Against {} = {}. {}</p><table class=\"contrast\"><tr>",
            escape(&c.axis),
            escape(&c.axis),
            escape(&c.reference),
            escape(super::text::CONTRAST_NOTE)
        );
        for head in super::text::CONTRAST_HEAD {
            let _ = write!(h, "<th>{}</th>", escape(head));
        }
        h.push_str("</tr>");
        for row in super::text::contrast_rows(c) {
            h.push_str("<tr>");
            for cell in row {
                let _ = write!(h, "<td>{}</td>", escape(&cell));
            }
            h.push_str("</tr>");
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

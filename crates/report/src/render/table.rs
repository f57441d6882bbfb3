//! The verdict table printed in the terminal.

use super::analysis::analysis_lines;
use super::text::{RULE_HEAD, params_label, rule_cells, tracking_max, tracking_mean};
use crate::report::Report;
use std::fmt::Write as _;

/// The verdict table printed in the terminal.
pub fn verdict_table(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "sweep `{}`: {} of {} trials finished{}{}{}",
        r.sweep,
        r.finished,
        r.trials,
        if r.did_not_train + r.unstable > 0 {
            format!(" ({} did not train, {} unstable: see kappa status)", r.did_not_train, r.unstable)
        } else {
            String::new()
        },
        if r.missing > 0 { format!(", {} missing: verdicts wait for them", r.missing) } else { String::new() },
        // The rules' tolerance, where there are rules to judge.
        if r.rules.is_empty() { String::new() } else { format!(" (tolerance {:.0}%)", r.tolerance * 100.0) }
    );
    if r.rules.is_empty() {
        let _ = writeln!(s, "no [scaling] section: no rules to judge");
    } else {
        let rows: Vec<[String; 8]> = r.rules.iter().map(rule_cells).collect();
        let head = RULE_HEAD.map(String::from);
        let w: Vec<usize> =
            (0..8).map(|i| rows.iter().chain([&head]).map(|row| row[i].chars().count()).max().unwrap_or(0)).collect();
        for row in std::iter::once(&head).chain(&rows) {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let pad = w[i].saturating_sub(c.chars().count());
                    // Names and verdicts to the left, numbers to the right.
                    if i < 3 || i == 7 { format!("{c}{}", " ".repeat(pad)) } else { format!("{}{c}", " ".repeat(pad)) }
                })
                .collect();
            let _ = writeln!(s, "{}", cells.join("  ").trim_end());
        }
        for line in &r.rule_notes {
            let _ = writeln!(s, "  {line}");
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
            "noise slope {}: d log L / d log σ = {:.3}{}{}",
            f.label,
            f.slope,
            f.theory_slope.map_or(String::new(), |t| format!(" (theory {t:.3})")),
            super::text::slope_unsettled(f)
                .map_or(String::new(), |n| format!("; {n}: not a slope of stationary values"))
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
        columns(&mut s, "", &head, &rows);
        let _ = writeln!(s, "  {}", super::text::TRACKING_NOTE);
    }
    for c in &r.contrasts {
        if c.entries.len() > MAX_CONTRAST_ROWS {
            let _ = writeln!(
                s,
                "contrast along {} (against {}): {} settings, see summary.json and report.html",
                c.axis,
                c.reference,
                c.entries.len()
            );
            continue;
        }
        let _ = writeln!(s, "contrast along {} (against {} = {}):", c.axis, c.axis, c.reference);
        columns(&mut s, "  ", &super::text::CONTRAST_HEAD, &super::text::contrast_rows(c));
        let _ = writeln!(s, "  {}", super::text::CONTRAST_NOTE);
    }
    s
}

/// Writes `head` and `rows` as aligned columns, each line after `indent`: the first two left
/// aligned (names), the others right aligned (numbers).
fn columns<const N: usize>(s: &mut String, indent: &str, head: &[&str; N], rows: &[[String; N]]) {
    let head = head.map(String::from);
    let w: Vec<usize> = (0..N)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([head[i].chars().count()]).max().unwrap_or(0))
        .collect();
    for row in std::iter::once(&head).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| if i < 2 { format!("{c:<w$}", w = w[i]) } else { format!("{c:>w$}", w = w[i]) })
            .collect();
        let _ = writeln!(s, "{indent}{}", cells.join("  "));
    }
}

/// A contrast with more rows than this is summed up in one line in the terminal.
const MAX_CONTRAST_ROWS: usize = 24;

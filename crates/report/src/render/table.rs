//! The verdict table printed in the terminal.

use super::analysis::analysis_lines;
use super::text::{params_label, tracking_max, tracking_mean, verdict_name};
use crate::report::Report;
use kappa_core::Verdict;
use std::fmt::Write as _;

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

//! How numbers, settings and verdicts read, the same in the terminal table, `report.html` and
//! the plots.

use crate::tracking::Tracking;
use crate::{PlateauRatio, RuleReport};
use kappa_core::Verdict;

/// The columns of the rules' table (terminal and HTML).
pub(super) const RULE_HEAD: [&str; 8] = [
    "rule",
    "verdict",
    "expected",
    "plateau ratio [95%]",
    "deviation",
    "holds from",
    "holds up to κ",
    "classes (holds/late/fails/open)",
];

/// One rule's row of the rules' table.
pub(super) fn rule_cells(rule: &RuleReport) -> [String; 8] {
    [
        rule.name.clone(),
        verdict_name(rule.verdict).to_string(),
        rule.expect.map_or("-", Verdict::as_str).to_string(),
        rule.plateau.map_or("-".into(), |p| plateau_cell(&p)),
        percent(rule.deviation),
        rule.holds_from.map_or("-".into(), |x| format!("{:.0}%", x * 100.0)),
        match (rule.holds_up_to_kappa, rule.holds_up_to_batch) {
            (Some(k), Some(b)) => format!("{k} (B = {b})"),
            _ => "-".into(),
        },
        format!("{}/{}/{}/{}", rule.classes[0], rule.classes[1], rule.classes[2], rule.classes[3]),
    ]
}

/// A plateau ratio with its interval, `~` when it rests on unsettled trials.
pub(super) fn plateau_cell(p: &PlateauRatio) -> String {
    format!("{:.3} [{:.3}, {:.3}]{}", p.ratio, p.ci95[0], p.ci95[1], if p.unsettled { "~" } else { "" })
}

/// A fraction as a percentage with one decimal, `-` for none.
pub(super) fn percent(x: Option<f64>) -> String {
    x.map_or("-".into(), |x| format!("{:.1}%", x * 100.0))
}

/// A verdict's name (`undecided` for none).
pub(super) fn verdict_name(v: Option<Verdict>) -> &'static str {
    v.map_or("undecided", Verdict::as_str)
}

/// What the tracking table's columns measure, in one line under it.
pub(super) const TRACKING_NOTE: &str = "|ΔL|/L: the SDE's seed-mean loss against the optimizer's, relative, at the \
     optimizer's record points after the start (mean ± SE over them, and the largest); the largest is usually \
     in the fast early descent, where a small lag in time is a large relative difference";

/// How many of a noise slope's points rest on unsettled trials, in words (`None`: none do).
pub(super) fn slope_unsettled(f: &crate::SlopeFit) -> Option<String> {
    (f.unsettled > 0)
        .then(|| format!("{} of its {} points rest on trials whose loss had not settled", f.unsettled, f.points.len()))
}

/// The header of a contrast's table.
pub(super) const CONTRAST_HEAD: [&str; 6] =
    ["setting", "value", "stationary ratio", "theory", "final ratio", "samples to target (ref → value)"];

/// What a contrast's columns measure, in one line under it.
pub(super) const CONTRAST_NOTE: &str = "ratios: this value's seed-mean loss over the same setting's at the axis's \
     first value (± SE): the stationary loss (the window after the burn-in), the theory's, the final loss; samples: \
     where each seed-mean curve first reaches [analysis] target_loss";

/// A contrast's rows, in [`CONTRAST_HEAD`]'s columns.
pub(super) fn contrast_rows(c: &crate::Contrast) -> Vec<[String; 6]> {
    let est = |e: Option<kappa_core::Estimate>| e.map_or("-".into(), |e| format!("{:.3} ± {:.3}", e.mean, e.se));
    let samples = |s: Option<f64>| s.map_or("-".into(), |s| kappa_core::format_real(s.round()));
    c.entries
        .iter()
        .map(|e| {
            [
                params_label(&e.params),
                e.value.clone(),
                est(e.stationary_ratio),
                e.theory_ratio.map_or("-".into(), |t| format!("{t:.3}")),
                est(e.final_ratio),
                format!("{} → {}", samples(e.samples_to_target[0]), samples(e.samples_to_target[1])),
            ]
        })
        .collect()
}

/// A tracking row's mean deviation with its SE, as a percentage.
pub(super) fn tracking_mean(t: &Tracking) -> String {
    match (t.mean_rel_error, t.mean_rel_error_se) {
        (Some(m), Some(se)) => format!("{:.2}% ± {:.2}%", m * 100.0, se * 100.0),
        _ => "-".into(),
    }
}

/// A tracking row's largest deviation, as a percentage.
pub(super) fn tracking_max(t: &Tracking) -> String {
    t.max_rel_error.map_or("-".into(), |m| format!("{:.2}%", m * 100.0))
}

/// A trial's parameters as one line (`sgd B=64 lr=0.01 …`, named axes last), seed and the
/// hyperparameters its optimizer does not read left out.
pub(super) fn params_label(params: &kappa_core::Params) -> String {
    fn short_name(k: &str) -> &str {
        match k {
            "batch_size" => "B",
            "beta1" => "β₁",
            "beta2" => "β₂",
            "eps" => "ε",
            "weight_decay" => "θ",
            k => k,
        }
    }
    params
        .read_entries()
        .into_iter()
        .filter(|(k, _)| k != "seed")
        .map(|(k, v)| {
            let value = match kappa_core::AxisName::from_key(&k) {
                Some(a) if v.is_f64() => short(params.builtin_value(a).as_f64().unwrap_or(f64::NAN)),
                _ => kappa_core::display_value(&v),
            };
            if k == "optimizer" { value } else { format!("{}={value}", short_name(&k)) }
        })
        .collect::<Vec<_>>()
        .join(" ")
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

//! How numbers, settings and verdicts read, the same in the terminal table, `report.html` and
//! the plots.

use crate::tracking::Tracking;
use kappa_core::Verdict;

/// A verdict's name (`undecided` for none).
pub(super) fn verdict_name(v: Option<Verdict>) -> &'static str {
    v.map_or("undecided", Verdict::as_str)
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

/// A trial's parameters as one line (`sgd B=64 lr=0.01 …`, named axes last), seed left out.
pub(super) fn params_label(params: &kappa_core::Params) -> String {
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
            .map(|a| format!("{a}={}", kappa_core::display_value(&params.builtin_value(a))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    for (name, v) in &params.named {
        label.push_str(&format!(" {name}={}", kappa_core::display_value(v)));
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

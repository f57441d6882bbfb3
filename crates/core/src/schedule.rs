//! Learning-rate schedules (THEORY.md §8): `[task] lr_schedule = { kind = "cosine", … }`.
//!
//! A step's rate is `η_k = η · m(s_k)`, `s_k = k·B/N` the fraction of the sample budget N seen
//! before step k, so a κ-scaled trial (κ× the batch, 1/κ the steps) sees the same schedule per
//! sample seen. Warmup, decay and step boundaries are fractions of the budget for that reason.

use serde::{Deserialize, Serialize};

/// A learning-rate schedule: the multiplier `m(s)` of the trial's `lr` at budget fraction `s`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum LrSchedule {
    /// m = 1: the rate the grid gives, every step (the default; never written into a task's
    /// canonical form, so the ids of sweeps without a schedule are unchanged).
    #[default]
    Constant,
    /// Linear warmup to 1 over `warmup`, then a half cosine down to `min_factor` at s = 1.
    Cosine {
        /// Fraction of the budget spent warming up linearly from 0.
        warmup: f64,
        /// The multiplier at the end of the budget.
        min_factor: f64,
    },
    /// Warmup–stable–decay: linear warmup over `warmup`, 1 until `1 − decay`, then linear down to
    /// `min_factor` at s = 1.
    Wsd {
        /// Fraction of the budget spent warming up linearly from 0.
        warmup: f64,
        /// Fraction of the budget, at its end, spent decaying linearly.
        decay: f64,
        /// The multiplier at the end of the budget.
        min_factor: f64,
    },
    /// The warmup, then × `factor` at each boundary passed: `factor^(number of at_j ≤ s)`.
    Step {
        /// Boundaries, increasing, in (0, 1).
        at: Vec<f64>,
        /// The multiplier applied at each boundary.
        factor: f64,
        /// Fraction of the budget spent warming up linearly from 0.
        warmup: f64,
    },
}

impl LrSchedule {
    /// Whether this is the constant schedule (skipped in canonical forms).
    pub fn is_constant(&self) -> bool {
        *self == LrSchedule::Constant
    }

    /// The name written in sweep files.
    pub fn kind_name(&self) -> &'static str {
        match self {
            LrSchedule::Constant => "constant",
            LrSchedule::Cosine { .. } => "cosine",
            LrSchedule::Wsd { .. } => "wsd",
            LrSchedule::Step { .. } => "step",
        }
    }

    /// The multiplier `m(s)` at budget fraction `s` (THEORY.md §8).
    pub fn factor(&self, s: f64) -> f64 {
        let warm = |w: f64| (w > 0.0 && s < w).then(|| s / w);
        match self {
            LrSchedule::Constant => 1.0,
            LrSchedule::Cosine { warmup, min_factor } => warm(*warmup).unwrap_or_else(|| {
                let t = if *warmup < 1.0 { ((s - warmup) / (1.0 - warmup)).clamp(0.0, 1.0) } else { 1.0 };
                min_factor + (1.0 - min_factor) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }),
            LrSchedule::Wsd { warmup, decay, min_factor } => warm(*warmup).unwrap_or_else(|| {
                let start = 1.0 - decay;
                if s < start || *decay <= 0.0 {
                    1.0
                } else {
                    let t = ((s - start) / decay).clamp(0.0, 1.0);
                    1.0 + (min_factor - 1.0) * t
                }
            }),
            LrSchedule::Step { at, factor, warmup } => warm(*warmup).unwrap_or_else(|| {
                let passed = at.iter().filter(|&&a| a <= s).count();
                factor.powi(passed as i32)
            }),
        }
    }

    /// Checks the fields: `Err((field, problem))`.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let fraction = |field: &'static str, v: f64, hi_open: bool| {
            let ok = v.is_finite() && v >= 0.0 && if hi_open { v < 1.0 } else { v <= 1.0 };
            if ok {
                Ok(())
            } else {
                Err((field, format!("{field} must be a fraction of the budget in [0, 1), got {v}")))
            }
        };
        let min = |v: f64| {
            if v.is_finite() && (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(("min_factor", format!("min_factor must be in [0, 1], got {v}")))
            }
        };
        match self {
            LrSchedule::Constant => Ok(()),
            LrSchedule::Cosine { warmup, min_factor } => {
                fraction("warmup", *warmup, true)?;
                min(*min_factor)
            }
            LrSchedule::Wsd { warmup, decay, min_factor } => {
                fraction("warmup", *warmup, true)?;
                fraction("decay", *decay, false)?;
                if warmup + decay > 1.0 {
                    return Err((
                        "decay",
                        format!("warmup + decay must be at most 1 (the whole budget), got {warmup} + {decay}"),
                    ));
                }
                min(*min_factor)
            }
            LrSchedule::Step { at, factor, warmup } => {
                fraction("warmup", *warmup, true)?;
                if at.is_empty() {
                    return Err((
                        "at",
                        "a step schedule needs its boundaries: at = [0.5, 0.75] (fractions of the budget)".into(),
                    ));
                }
                if let Some(a) = at.iter().find(|a| !(a.is_finite() && **a > 0.0 && **a < 1.0)) {
                    return Err(("at", format!("boundaries must be fractions of the budget in (0, 1), got {a}")));
                }
                if let Some(w) = at.windows(2).find(|w| w[1] <= w[0]) {
                    return Err(("at", format!("boundaries must be increasing, got {} then {}", w[0], w[1])));
                }
                if !(factor.is_finite() && *factor > 0.0) {
                    return Err(("factor", format!("factor must be finite and > 0, got {factor}")));
                }
                Ok(())
            }
        }
    }

    /// The schedule for a command's environment and placeholders: `{"kind": "cosine",
    /// "warmup": 0.05, "min_factor": 0}` (compact JSON).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{\"kind\":\"constant\"}".into())
    }

    /// The schedule's fields as `(name, value)` for a command's placeholders and environment:
    /// `warmup`, `decay`, `min_factor`, `factor` (0 or 1 where the kind has none) and `at`
    /// (comma separated).
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let (warmup, decay, min_factor, factor, at) = match self {
            LrSchedule::Constant => (0.0, 0.0, 1.0, 1.0, Vec::new()),
            LrSchedule::Cosine { warmup, min_factor } => (*warmup, 0.0, *min_factor, 1.0, Vec::new()),
            LrSchedule::Wsd { warmup, decay, min_factor } => (*warmup, *decay, *min_factor, 1.0, Vec::new()),
            LrSchedule::Step { at, factor, warmup } => (*warmup, 0.0, 1.0, *factor, at.clone()),
        };
        let at = at.iter().map(|a| crate::format_real(*a)).collect::<Vec<_>>().join(",");
        vec![
            ("warmup", crate::format_real(warmup)),
            ("decay", crate::format_real(decay)),
            ("min_factor", crate::format_real(min_factor)),
            ("factor", crate::format_real(factor)),
            ("at", at),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipliers_follow_theory_section_8() {
        let cos = LrSchedule::Cosine { warmup: 0.1, min_factor: 0.1 };
        assert_eq!(cos.factor(0.0), 0.0);
        assert!((cos.factor(0.05) - 0.5).abs() < 1e-15);
        assert!((cos.factor(0.1) - 1.0).abs() < 1e-15);
        assert!((cos.factor(0.55) - 0.55).abs() < 1e-12, "half way down: r + (1−r)/2");
        assert!((cos.factor(1.0) - 0.1).abs() < 1e-15);
        let wsd = LrSchedule::Wsd { warmup: 0.2, decay: 0.2, min_factor: 0.0 };
        assert!((wsd.factor(0.1) - 0.5).abs() < 1e-15);
        assert_eq!(wsd.factor(0.5), 1.0);
        assert!((wsd.factor(0.9) - 0.5).abs() < 1e-12);
        let step = LrSchedule::Step { at: vec![0.5, 0.75], factor: 0.1, warmup: 0.0 };
        assert_eq!((step.factor(0.0), step.factor(0.49)), (1.0, 1.0));
        assert!((step.factor(0.5) - 0.1).abs() < 1e-15 && (step.factor(0.8) - 0.01).abs() < 1e-15);
        assert_eq!(LrSchedule::Constant.factor(0.3), 1.0);
    }

    #[test]
    fn bad_fields_are_named() {
        let err = |s: LrSchedule| s.check().unwrap_err();
        assert_eq!(err(LrSchedule::Wsd { warmup: 0.6, decay: 0.5, min_factor: 0.0 }).0, "decay");
        assert!(err(LrSchedule::Wsd { warmup: 0.6, decay: 0.5, min_factor: 0.0 }).1.contains("warmup + decay"));
        assert!(err(LrSchedule::Step { at: vec![0.5, 0.5], factor: 0.1, warmup: 0.0 }).1.contains("increasing"));
        assert_eq!(err(LrSchedule::Step { at: vec![0.5, 1.5], factor: 0.1, warmup: 0.0 }).0, "at");
        assert_eq!(err(LrSchedule::Cosine { warmup: 1.0, min_factor: 0.0 }).0, "warmup");
        assert_eq!(err(LrSchedule::Cosine { warmup: 0.0, min_factor: -1.0 }).0, "min_factor");
    }
}

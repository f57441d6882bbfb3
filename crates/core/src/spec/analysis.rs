//! The `[analysis]` table: what the report's learning-rate and batch-size analysis measures.

use super::SpecError;
use super::error::{Ctx, k};
use serde::{Deserialize, Serialize};

/// The `[analysis]` table as written (its values are checked by [`analysis`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAnalysis {
    pub(super) target_loss: Option<f64>,
    pub(super) objective: Option<AnalysisObjective>,
    pub(super) metric: Option<String>,
    pub(super) mode: Option<Mode>,
    pub(super) expect_exponent: Option<[f64; 2]>,
    pub(super) expect_b_crit: Option<[f64; 2]>,
}

/// What the best learning rate of a batch size minimises.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnalysisObjective {
    /// The mean of the metric at the end of the sample budget (the last record point).
    #[default]
    Final,
    /// The stationary estimate (time average after the burn-in; the training loss only).
    Stationary,
    /// Samples seen until the mean curve first reaches `target_loss`.
    SamplesToTarget,
}

impl AnalysisObjective {
    /// The name as the sweep file writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            AnalysisObjective::Final => "final",
            AnalysisObjective::Stationary => "stationary",
            AnalysisObjective::SamplesToTarget => "samples_to_target",
        }
    }
}

/// Whether the best learning rate has the lowest or the highest objective (`[analysis] mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Lower is better (losses; the default).
    #[default]
    Min,
    /// Higher is better (accuracy, a score).
    Max,
}

/// The `[analysis]` table (every key optional).
#[derive(Clone, Debug, PartialEq)]
pub struct Analysis {
    /// The loss the steps- and samples-to-target analysis (critical batch size) aims for.
    pub target_loss: Option<f64>,
    /// What the best learning rate minimises.
    pub objective: AnalysisObjective,
    /// The curve metric analysed: `loss` (the training loss, default) or a metric the trials
    /// record beside it (`test_loss`, a command's own key).
    pub metric: String,
    /// Whether the metric is maximised (`mode = "max"`: accuracy) rather than minimised.
    pub mode: Mode,
    /// `kappa report --check`: the fitted learning-rate exponent's interval must lie in this range.
    pub expect_exponent: Option<[f64; 2]>,
    /// `kappa report --check`: the fitted critical batch size must lie in this range.
    pub expect_b_crit: Option<[f64; 2]>,
}

impl Analysis {
    /// What the objective is, in words: `final loss`, `stationary test_loss`, `samples to loss = 0.1`.
    pub fn describe(&self) -> String {
        match self.objective {
            AnalysisObjective::SamplesToTarget => {
                format!("samples to {} = {}", self.metric, self.target_loss.unwrap_or(0.0))
            }
            o => format!("{} {}", o.as_str(), self.metric),
        }
    }

    /// A metric's value as objectives compare them, lower better: a maximised metric negated.
    pub fn signed(&self, v: f64) -> f64 {
        match self.mode {
            Mode::Min => v,
            Mode::Max => -v,
        }
    }

    /// Whether the best learning rate has the highest objective: a maximised metric's final or
    /// stationary value (samples to a target are fewest-best under either mode).
    pub fn maximises(&self) -> bool {
        self.mode == Mode::Max && self.objective != AnalysisObjective::SamplesToTarget
    }

    /// An objective as a user reads it (objectives compare lower-better inside): a maximised
    /// metric's own value, a failure (`+∞` inside) its worst, `−∞`; samples to a target as they are.
    pub fn shown(&self, y: f64) -> f64 {
        if self.maximises() { -y } else { y }
    }

    /// What the best learning rate does to the objective: `minimises` or `maximises`.
    pub fn goal(&self) -> &'static str {
        if self.maximises() { "maximises" } else { "minimises" }
    }
}

impl Default for Analysis {
    fn default() -> Self {
        Analysis {
            target_loss: None,
            objective: AnalysisObjective::Final,
            metric: "loss".into(),
            mode: Mode::Min,
            expect_exponent: None,
            expect_b_crit: None,
        }
    }
}

pub(super) fn validate_analysis(ctx: &Ctx<'_>, raw: Option<RawAnalysis>) -> Result<Analysis, SpecError> {
    let Some(raw) = raw else { return Ok(Analysis::default()) };
    let mut a = Analysis::default();
    if let Some(t) = raw.target_loss {
        if !(t.is_finite() && t > 0.0) {
            return Err(ctx.err(&[k("analysis"), k("target_loss")], format!("target_loss must be positive, got {t}")));
        }
        a.target_loss = Some(t);
    }
    if let Some(o) = raw.objective {
        if o == AnalysisObjective::SamplesToTarget && a.target_loss.is_none() {
            return Err(ctx.err(
                &[k("analysis"), k("objective")],
                "objective = \"samples_to_target\" needs a target_loss in [analysis]",
            ));
        }
        a.objective = o;
    }
    if let Some(m) = raw.metric {
        // Names as programs write them: `test_loss`, TensorBoard tags (`test/accuracy`), CSV columns.
        let ok = !m.is_empty()
            && m.len() <= 128
            && m.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '/' | '.' | '-' | ':'));
        if !ok {
            return Err(ctx.err(
                &[k("analysis"), k("metric")],
                format!(
                    "metric {m:?} must name a curve metric (`loss`, `test_loss`, a key your program prints, a \
                     TensorBoard tag such as `test/accuracy`): letters, digits and _ / . - :"
                ),
            ));
        }
        if a.objective == AnalysisObjective::Stationary && m != "loss" {
            return Err(ctx.err(
                &[k("analysis"), k("metric")],
                format!("objective = \"stationary\" is measured on the training loss only, not on {m:?}"),
            ));
        }
        a.metric = m;
    }
    if let Some(mode) = raw.mode {
        if mode == Mode::Max && a.metric == "loss" {
            return Err(ctx.err(
                &[k("analysis"), k("mode")],
                "mode = \"max\" is for a metric where higher is better (`metric = \"test/accuracy\"`); the loss is \
                 minimised",
            ));
        }
        a.mode = mode;
    }
    let range = |key: &'static str, r: [f64; 2], positive: bool| -> Result<[f64; 2], SpecError> {
        let [lo, hi] = r;
        if !(lo.is_finite() && hi.is_finite() && lo < hi) || (positive && lo <= 0.0) {
            let what = if positive { "positive numbers" } else { "numbers" };
            return Err(ctx.err(&[k("analysis"), k(key)], format!("{key} must be [low, high] with low < high, {what}")));
        }
        Ok(r)
    };
    if let Some(r) = raw.expect_exponent {
        a.expect_exponent = Some(range("expect_exponent", r, false)?);
    }
    if let Some(r) = raw.expect_b_crit {
        if a.target_loss.is_none() {
            return Err(ctx.err(
                &[k("analysis"), k("expect_b_crit")],
                "expect_b_crit needs a target_loss in [analysis] (the critical batch size is measured to a target)",
            ));
        }
        a.expect_b_crit = Some(range("expect_b_crit", r, true)?);
    }
    Ok(a)
}

//! Seeds pooled: the trials of one setting (its seeds, replicates) as one seed-averaged curve
//! and stationary loss, and the curve read between its record points. Classes, noise slopes,
//! overlays and SDE tracking all read trials through here.

use kappa_core::{Estimate, Params, TrialId, TrialResult, TrialStatus};
use serde::Serialize;
use std::collections::HashMap;

/// Every parameter but the seed (named axes included), as a key.
pub(crate) fn key_without_seed(p: &Params) -> String {
    let mut q = p.clone();
    q.hyper.seed = 0;
    serde_json::to_string(&q).unwrap_or_default()
}

/// The trials of one setting, seeds pooled.
pub(crate) struct Aggregate {
    /// Stationary loss pooled over the seeds, when every succeeded trial has one.
    pub(crate) stationary: Option<Estimate>,
    /// Whether every such stationary loss was taken after the loss settled (`None`: not checked).
    pub(crate) settled: Option<bool>,
    /// The closed form's stationary loss, from the first succeeded trial.
    pub(crate) theory: Option<f64>,
    /// Seed-averaged curve: (samples, mean loss, SE), over the points every seed has.
    pub(crate) curve: Vec<[f64; 3]>,
    /// The theory's curve (samples, expected loss), from the first succeeded trial: the exact
    /// expected loss where THEORY.md has one (SGD and momentum on quadratics, under any schedule).
    pub(crate) theory_curve: Vec<[f64; 2]>,
    /// Every trial has finished (succeeded, diverged or failed).
    pub(crate) complete: bool,
    /// A trial diverged.
    pub(crate) diverged: bool,
    /// A trial failed.
    pub(crate) failed: bool,
}

/// Pools the trials `ids`; one without a finished result leaves the aggregate incomplete.
pub(crate) fn aggregate(ids: &[TrialId], results: &HashMap<TrialId, TrialResult>) -> Aggregate {
    let mut agg = Aggregate {
        stationary: None,
        settled: None,
        theory: None,
        curve: Vec::new(),
        theory_curve: Vec::new(),
        complete: true,
        diverged: false,
        failed: false,
    };
    let mut metrics = Vec::new();
    for id in ids {
        match results.get(id) {
            Some(TrialResult { status: TrialStatus::Succeeded, metrics: Some(m), .. }) => metrics.push(m),
            Some(TrialResult { status: TrialStatus::Diverged, .. }) => agg.diverged = true,
            Some(TrialResult { status: TrialStatus::Failed, .. }) => agg.failed = true,
            _ => agg.complete = false,
        }
    }
    if metrics.is_empty() {
        return agg;
    }
    let stationary: Vec<Estimate> = metrics.iter().filter_map(|m| m.stationary_loss).collect();
    if stationary.len() == metrics.len() {
        agg.stationary = Estimate::pooled(&stationary);
        let settled: Vec<Option<bool>> = metrics.iter().map(|m| m.settled()).collect();
        agg.settled = if settled.contains(&Some(false)) {
            Some(false)
        } else if settled.iter().all(Option::is_some) {
            Some(true)
        } else {
            None
        };
    }
    agg.theory = metrics[0].theory.as_ref().and_then(|t| t.stationary_loss);
    agg.theory_curve = metrics[0]
        .theory
        .as_ref()
        .map(|t| t.curve.iter().map(|p| [p.samples as f64, p.loss]).collect())
        .unwrap_or_default();
    agg.curve = seed_curve(&metrics);
    agg
}

/// The seeds' curves as one: (samples, mean loss, SE) pooled over the seeds
/// ([`Estimate::pooled`]), over the points every seed has.
pub(crate) fn seed_curve(metrics: &[&kappa_core::TrialMetrics]) -> Vec<[f64; 3]> {
    let points = metrics.iter().map(|m| m.curve.len()).min().unwrap_or(0);
    (0..points)
        .map(|i| {
            let seeds: Vec<Estimate> =
                metrics.iter().map(|m| Estimate { mean: m.curve[i].loss_mean, se: m.curve[i].loss_se }).collect();
            let e = Estimate::pooled(&seeds).unwrap_or(Estimate { mean: f64::NAN, se: f64::NAN });
            [metrics[0].curve[i].samples as f64, e.mean, e.se]
        })
        .collect()
}

/// Linear interpolation of `curve` (samples ascending) at `s`, with its SE; `None` outside.
pub(crate) fn interpolate(curve: &[[f64; 3]], s: f64) -> Option<(f64, f64)> {
    let i = curve.partition_point(|p| p[0] < s);
    if i < curve.len() && curve[i][0] == s {
        return Some((curve[i][1], curve[i][2]));
    }
    if i == 0 || i >= curve.len() {
        return None;
    }
    let (a, b) = (curve[i - 1], curve[i]);
    let w = (s - a[0]) / (b[0] - a[0]);
    Some((a[1] + w * (b[1] - a[1]), a[2] + w * (b[2] - a[2])))
}

/// What would settle the trials whose stationary loss was taken before their loss settled
/// ([`kappa_core::TrialMetrics::settled`]): the budget and the burn-in their curves suggest
/// ([`kappa_core::TrialMetrics::settle_factor`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct SettleHint {
    /// Trials whose loss had not settled.
    pub trials: usize,
    /// How many times its budget the slowest of them would need to settle (same burn-in), where
    /// every one's curve tells (`None` if one's does not).
    pub factor: Option<f64>,
    /// The burn-in at which every one of them would settle within its budget, where one does.
    pub burn_in: Option<f64>,
}

impl SettleHint {
    /// The hint over the trials `ids` that finished, with the burn-in their task uses.
    pub(crate) fn of(ids: &[TrialId], results: &HashMap<TrialId, TrialResult>, burn_in: f64) -> SettleHint {
        SettleHint::over(ids.iter().filter_map(|id| results.get(id)?.metrics.as_ref()), burn_in)
    }

    /// The hint over the metrics of finished trials whose task uses `burn_in`.
    pub fn over<'a>(metrics: impl Iterator<Item = &'a kappa_core::TrialMetrics>, burn_in: f64) -> SettleHint {
        let mut hint = SettleHint { trials: 0, factor: Some(1.0), burn_in: Some(0.0) };
        for m in metrics.filter(|m| m.settled() == Some(false)) {
            hint.trials += 1;
            hint.factor = hint.factor.zip(m.settle_factor(burn_in)).map(|(a, b)| a.max(b));
            hint.burn_in = hint.burn_in.zip(m.burn_in_to_settle(burn_in)).map(|(a, b)| a.max(b));
        }
        if hint.trials == 0 {
            return SettleHint::default();
        }
        hint
    }

    /// Both hints together: the larger factor and burn-in, each only where both have one.
    pub fn merge(self, o: SettleHint) -> SettleHint {
        if self.trials == 0 {
            return o;
        }
        if o.trials == 0 {
            return self;
        }
        SettleHint {
            trials: self.trials + o.trials,
            factor: self.factor.zip(o.factor).map(|(a, b)| a.max(b)),
            burn_in: self.burn_in.zip(o.burn_in).map(|(a, b)| a.max(b)),
        }
    }

    /// What to change, in words, for a sweep of `samples` per trial (`None`: a command, which
    /// has no budget of kappa's): `raise samples to ~60k (now 30k) or burn_in to 0.8`.
    pub fn advice(&self, samples: Option<u64>) -> String {
        let more = match (self.factor, samples) {
            (Some(f), Some(n)) => Some(format!(
                "raise samples to ~{} (now {})",
                crate::render::short(kappa_core::health::round_up(f * n as f64) as f64),
                crate::render::short(n as f64)
            )),
            (Some(f), None) => Some(format!("run ~{:.1}× longer", f)),
            (None, _) => None,
        };
        match (more, self.burn_in) {
            (Some(m), Some(b)) => format!("{m} or burn_in to {b:.2}"),
            (Some(m), None) => m,
            (None, Some(b)) => format!("raise burn_in to {b:.2} or the budget"),
            (None, None) => "raise the budget or burn_in (the curves do not tell how far)".to_string(),
        }
    }
}

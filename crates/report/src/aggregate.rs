//! Seeds pooled: the trials of one setting (its seeds, replicates) as one seed-averaged curve
//! and stationary loss, and the curve read between its record points. Classes, noise slopes,
//! overlays and SDE tracking all read trials through here.

use kappa_core::{Estimate, Params, TrialId, TrialResult, TrialStatus};
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
    let points = metrics.iter().map(|m| m.curve.len()).min().unwrap_or(0);
    agg.curve = (0..points)
        .map(|i| {
            let seeds: Vec<Estimate> =
                metrics.iter().map(|m| Estimate { mean: m.curve[i].loss_mean, se: m.curve[i].loss_se }).collect();
            let e = Estimate::pooled(&seeds).unwrap_or(Estimate { mean: f64::NAN, se: f64::NAN });
            [metrics[0].curve[i].samples as f64, e.mean, e.se]
        })
        .collect();
    agg
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

//! SDE tracking in one sweep: with a `task.kind` axis (and perhaps a `task.sde_model` one), each
//! discrete-optimizer setting is paired with the SDE trials equal to it in everything else, and
//! the SDE's seed-averaged loss curve is compared with the optimizer's on the optimizer's record
//! points (THEORY.md §3: Compagnoni's SDEs track the optimizer, Malladi's only where the noise
//! dominates the gradient).

use crate::{Overlay, TrialResult, aggregate, interpolate};
use kappa_core::{Params, Plan, Sweep, TaskSpec, TrialId};
use serde::Serialize;
use std::collections::HashMap;

/// How closely one SDE model tracks one optimizer setting.
#[derive(Clone, Debug, Serialize)]
pub struct Tracking {
    /// The optimizer.
    pub optimizer: String,
    /// The shared parameters (seed, `task.kind` and `task.sde_model` left out).
    pub params: Params,
    /// The SDE model.
    pub sde_model: String,
    /// Mean over the optimizer's record points of |L_sde − L_opt| / L_opt (seed-averaged curves).
    pub mean_rel_error: Option<f64>,
    /// Largest of those relative deviations.
    pub max_rel_error: Option<f64>,
    /// Standard error of the mean, propagated from the curves' SEs (points taken as independent).
    pub mean_rel_error_se: Option<f64>,
    /// Record points compared.
    pub points: usize,
}

/// One optimizer setting and the trials that share it: the optimizer's, and each SDE model's.
struct Pairing {
    key: String,
    params: Params,
    optimizer: Vec<TrialId>,
    sdes: Vec<(String, Vec<TrialId>)>,
}

/// The parameters a pairing shares: everything but the seed and the kind axes.
fn shared(p: &Params) -> Params {
    let mut q = p.clone();
    q.hyper.seed = 0;
    q.named.remove("task.kind");
    q.named.remove("task.sde_model");
    q
}

/// Every pairing of the sweep's base trials (κ = 1), with its comparisons and an overlay of its
/// curves. Empty unless the grid has a `task.kind` axis.
pub(crate) fn tracking(
    sweep: &Sweep,
    plan: &Plan<'_>,
    results: &HashMap<TrialId, TrialResult>,
) -> (Vec<Tracking>, Vec<Overlay>) {
    if sweep.grid.named_axis("task.kind").is_none() {
        return (Vec::new(), Vec::new());
    }
    let per = 1 + sweep.scaling.as_ref().map_or(0, |s| s.variants());
    let mut pairings: Vec<Pairing> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for g in 0..sweep.grid.len() {
        let t = plan.trial(g * per);
        if !seen.insert(t.id) {
            continue;
        }
        let model = match &sweep.variants[t.task].task {
            TaskSpec::Optimizer(_) => None,
            TaskSpec::Sde(sim) => Some(
                serde_json::to_value(sim.sde_model).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
            ),
            _ => continue,
        };
        let params = shared(&t.params);
        let key = serde_json::to_string(&params).unwrap_or_default();
        let i = match pairings.iter().position(|p| p.key == key) {
            Some(i) => i,
            None => {
                pairings.push(Pairing { key, params, optimizer: Vec::new(), sdes: Vec::new() });
                pairings.len() - 1
            }
        };
        let p = &mut pairings[i];
        match model {
            None => p.optimizer.push(t.id),
            Some(m) => match p.sdes.iter_mut().find(|(name, _)| *name == m) {
                Some((_, ids)) => ids.push(t.id),
                None => p.sdes.push((m, vec![t.id])),
            },
        }
    }
    let mut out = Vec::new();
    let mut overlays = Vec::new();
    for p in pairings.into_iter().filter(|p| !p.optimizer.is_empty() && !p.sdes.is_empty()) {
        let opt = aggregate(&p.optimizer, results);
        let mut series = vec![("optimizer".to_string(), opt.curve.clone(), opt.stationary)];
        for (model, ids) in &p.sdes {
            let sde = aggregate(ids, results);
            let (mean, max, se, points) = compare(&opt.curve, &sde.curve);
            out.push(Tracking {
                optimizer: p.params.hyper.optimizer.to_string(),
                params: p.params.clone(),
                sde_model: model.clone(),
                mean_rel_error: mean,
                max_rel_error: max,
                mean_rel_error_se: se,
                points,
            });
            if !sde.curve.is_empty() {
                series.push((format!("SDE ({model})"), sde.curve, sde.stationary));
            }
        }
        if !opt.curve.is_empty() && series.len() >= 2 {
            overlays.push(Overlay { params: p.params, series });
        }
    }
    (out, overlays)
}

/// Relative deviation of `sde` from `opt` at `opt`'s points: (mean, max, SE of the mean, points).
fn compare(opt: &[[f64; 3]], sde: &[[f64; 3]]) -> (Option<f64>, Option<f64>, Option<f64>, usize) {
    let mut devs = Vec::new();
    let mut var = 0.0;
    for p in opt.iter().filter(|p| p[0] > 0.0 && p[1] > 0.0) {
        let Some((l, se)) = interpolate(sde, p[0]) else { continue };
        let r = (l - p[1]).abs() / p[1];
        // d r / d l = ±1/L_opt, d r / d L_opt = ∓l/L_opt²: propagate both SEs.
        var += (se / p[1]).powi(2) + (l * p[2] / (p[1] * p[1])).powi(2);
        devs.push(r);
    }
    if devs.is_empty() {
        return (None, None, None, 0);
    }
    let n = devs.len() as f64;
    let mean = devs.iter().sum::<f64>() / n;
    let max = devs.iter().copied().fold(0.0, f64::max);
    (Some(mean), Some(max), Some(var.sqrt() / n), devs.len())
}

#[cfg(test)]
mod tests {
    use super::compare;

    #[test]
    fn relative_deviations_are_taken_at_the_optimizers_points() {
        let opt = [[0.0, 9.0, 0.0], [10.0, 1.0, 0.0], [20.0, 2.0, 0.0]];
        let sde = [[0.0, 9.0, 0.0], [20.0, 2.2, 0.0]];
        // At 10 the SDE is interpolated (5.6): |5.6 − 1| / 1 = 4.6; at 20, 0.1.
        let (mean, max, se, n) = compare(&opt, &sde);
        assert_eq!(n, 2, "the point at 0 samples is left out");
        assert!((mean.unwrap() - 2.35).abs() < 1e-12 && (max.unwrap() - 4.6).abs() < 1e-12);
        assert_eq!(se, Some(0.0));
        assert_eq!(compare(&opt, &[]).3, 0);
    }
}

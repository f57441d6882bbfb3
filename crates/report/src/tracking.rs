//! SDE tracking in one sweep: with a `task.kind` axis (and perhaps a `task.sde_model` one), each
//! discrete-optimizer setting is paired with the SDE trials equal to it in everything else, and
//! the SDE's seed-averaged loss curve is compared with the optimizer's on the optimizer's record
//! points (THEORY.md §3: Compagnoni's SDEs track the optimizer, Malladi's only where the noise
//! dominates the gradient).

use crate::aggregate::{aggregate, interpolate};
use crate::overlay::Overlay;
use crate::trials::Trials;
use kappa_core::{Params, Sweep, TaskSpec, TrialId, TrialResult};
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
    /// Its parameters without the optimizer's own axes (what an SDE setting must match).
    common: String,
    params: Params,
    optimizer: Vec<TrialId>,
    sdes: Vec<(String, Vec<TrialId>)>,
}

/// `p` without the seed, the kind axes and the axes in `drop`, as a key; and the values of the
/// dropped axes, as a label (`, task.refine = 2`).
fn shared(p: &Params, drop: &[String]) -> (Params, String) {
    let mut q = p.clone();
    q.hyper.seed = 0;
    q.named.remove("task.kind");
    q.named.remove("task.sde_model");
    let mut label = String::new();
    for name in drop {
        if let Some(v) = q.named.remove(name) {
            label.push_str(&format!(", {name} = {}", kappa_core::display_value(&v)));
        }
    }
    (q, label)
}

/// The task axes left out of the sweep's tasks of one kind (`optimizer`: the SDE's own axes).
fn left_out_of(sweep: &Sweep, optimizer: bool) -> Vec<String> {
    let mut names: Vec<String> = sweep
        .variants
        .iter()
        .filter(|v| matches!(v.task, TaskSpec::Optimizer(_)) == optimizer)
        .flat_map(|v| v.left_out.iter().cloned())
        .filter(|n| n != "task.sde_model")
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Every pairing of the sweep's base trials (κ = 1), with its comparisons and an overlay of its
/// curves. Empty unless the grid has a `task.kind` axis. An optimizer setting pairs with every SDE
/// setting equal to it in everything both kinds read; axes only the SDE reads (`task.refine`)
/// label the SDE.
pub(crate) fn tracking(
    sweep: &Sweep,
    trials: &Trials<'_>,
    results: &HashMap<TrialId, TrialResult>,
) -> (Vec<Tracking>, Vec<Overlay>) {
    if sweep.grid.named_axis("task.kind").is_none() {
        return (Vec::new(), Vec::new());
    }
    let sde_only = left_out_of(sweep, true);
    let optimizer_only = left_out_of(sweep, false);
    let mut pairings: Vec<Pairing> = Vec::new();
    // SDE settings: (common key, model label) → trials.
    let mut sdes: Vec<(String, String, Vec<TrialId>)> = Vec::new();
    for t in trials.base_trials() {
        match &sweep.variants[t.task].task {
            TaskSpec::Optimizer(_) => {
                let (params, _) = shared(&t.params, &[]);
                let (common, _) = shared(&t.params, &optimizer_only);
                let common = serde_json::to_string(&common).unwrap_or_default();
                match pairings.iter_mut().find(|p| p.params == params) {
                    Some(p) => p.optimizer.push(t.id),
                    None => pairings.push(Pairing { common, params, optimizer: vec![t.id], sdes: Vec::new() }),
                }
            }
            TaskSpec::Sde(sim) => {
                let (common, extra) = shared(&t.params, &sde_only);
                let common = serde_json::to_string(&common).unwrap_or_default();
                let name = serde_json::to_value(sim.sde_model).ok().and_then(|v| v.as_str().map(String::from));
                let model = format!("{}{extra}", name.unwrap_or_default());
                match sdes.iter_mut().find(|(c, m, _)| *c == common && *m == model) {
                    Some((_, _, ids)) => ids.push(t.id),
                    None => sdes.push((common, model, vec![t.id])),
                }
            }
            _ => continue,
        }
    }
    for p in &mut pairings {
        p.sdes = sdes.iter().filter(|(c, _, _)| *c == p.common).map(|(_, m, ids)| (m.clone(), ids.clone())).collect();
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

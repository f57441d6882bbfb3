//! Contrasts along a task axis: with a `task.*` axis (other than `task.kind` and
//! `task.sde_model`, which SDE tracking reads), every setting is compared across the axis's
//! values with the first value as the reference, seeds pooled. A rotated landscape against the
//! diagonal one, a schedule against none, one noise level against another: the ratio of the
//! stationary losses (and the theory's), of the final losses, and of the samples each needs to
//! reach `[analysis] target_loss`.

use crate::aggregate::{aggregate, key_without_seed};
use crate::trials::Trials;
use kappa_core::{Estimate, Params, Sweep, TrialId, TrialResult, display_value};
use serde::Serialize;
use std::collections::HashMap;

/// One task axis's contrasts.
#[derive(Clone, Debug, Serialize)]
pub struct Contrast {
    /// The axis (`task.landscape.rotation_seed`).
    pub axis: String,
    /// Its first value: the reference every other value is compared with.
    pub reference: String,
    /// One entry per (setting, other value).
    pub entries: Vec<ContrastEntry>,
}

/// One setting at one value of the axis, against the same setting at the reference value.
#[derive(Clone, Debug, Serialize)]
pub struct ContrastEntry {
    /// The optimizer.
    pub optimizer: String,
    /// The setting: its parameters without the seed and the axis.
    pub params: Params,
    /// The axis's value.
    pub value: String,
    /// Stationary loss at this value over the reference's (seeds pooled), with its SE.
    pub stationary_ratio: Option<Estimate>,
    /// The same ratio of the theory's stationary losses, where there is one for both.
    pub theory_ratio: Option<f64>,
    /// Final loss (the last record point) at this value over the reference's.
    pub final_ratio: Option<Estimate>,
    /// Samples the seed-mean curve needs to reach `[analysis] target_loss`: the reference's and
    /// this value's (`None`: not reached, or no target).
    pub samples_to_target: [Option<f64>; 2],
}

/// A setting (its key and parameters without seed and axis) and its trials at each value of the
/// axis, in plan order.
type Setting = (String, Params, Vec<(String, Vec<TrialId>)>);

/// The contrasts of every task axis of the sweep's base trials (κ = 1).
pub(crate) fn contrasts(sweep: &Sweep, trials: &Trials<'_>, results: &HashMap<TrialId, TrialResult>) -> Vec<Contrast> {
    let axes: Vec<String> = sweep
        .grid
        .named_axes()
        .map(|(n, _)| n.to_string())
        .filter(|n| {
            n.starts_with(kappa_core::params::TASK_PREFIX) && !["task.kind", "task.sde_model"].contains(&n.as_str())
        })
        .collect();
    // The target is on the training loss curve, which is what contrasts compare: only when the
    // analysis measures the loss (a target for `test/accuracy` is not one for the loss).
    let target = sweep.analysis.target_loss.filter(|_| sweep.analysis.metric == "loss");
    let mut out = Vec::new();
    for axis in axes {
        // Settings (without seed and axis) → values in plan order → trials.
        let mut settings: Vec<Setting> = Vec::new();
        for t in trials.base_trials() {
            let mut p = t.params.clone();
            let Some(v) = p.named.remove(&axis) else { continue };
            let value = display_value(&v);
            p.hyper.seed = 0;
            let key = key_without_seed(&p);
            let at = match settings.iter().position(|s| s.0 == key) {
                Some(i) => i,
                None => {
                    settings.push((key, p, Vec::new()));
                    settings.len() - 1
                }
            };
            let values = &mut settings[at].2;
            match values.iter_mut().find(|(v, _)| *v == value) {
                Some((_, ids)) => ids.push(t.id),
                None => values.push((value, vec![t.id])),
            }
        }
        let mut entries = Vec::new();
        let mut reference = None;
        for (_, params, values) in settings {
            let Some(((ref_value, ref_ids), rest)) = values.split_first() else { continue };
            reference.get_or_insert_with(|| ref_value.clone());
            let base = aggregate(ref_ids, results);
            for (value, ids) in rest {
                let other = aggregate(ids, results);
                let last = |c: &[[f64; 3]]| c.last().map(|p| Estimate { mean: p[1], se: p[2] });
                entries.push(ContrastEntry {
                    optimizer: params.hyper.optimizer.to_string(),
                    params: params.clone(),
                    value: value.clone(),
                    stationary_ratio: ratio(other.stationary, base.stationary),
                    theory_ratio: other.theory.zip(base.theory).map(|(a, b)| a / b).filter(|r| r.is_finite()),
                    final_ratio: ratio(last(&other.curve), last(&base.curve)),
                    samples_to_target: [
                        target.and_then(|t| reach(&base.curve, t)),
                        target.and_then(|t| reach(&other.curve, t)),
                    ],
                });
            }
        }
        if let Some(reference) = reference
            && !entries.is_empty()
        {
            out.push(Contrast { axis, reference, entries });
        }
    }
    out
}

/// `a / b` with the SE of a ratio of independent estimates.
fn ratio(a: Option<Estimate>, b: Option<Estimate>) -> Option<Estimate> {
    let (a, b) = (a?, b?);
    let r = a.mean / b.mean;
    (r.is_finite() && b.mean != 0.0).then(|| Estimate { mean: r, se: r.abs() * (a.se / a.mean).hypot(b.se / b.mean) })
}

/// The samples at which the curve (samples, mean, SE) first reaches `target`, interpolated
/// linearly between the record points around it.
fn reach(curve: &[[f64; 3]], target: f64) -> Option<f64> {
    let i = curve.iter().position(|p| p[1] <= target)?;
    if i == 0 {
        return Some(curve[0][0]);
    }
    let (a, b) = (curve[i - 1], curve[i]);
    Some(a[0] + (b[0] - a[0]) * (a[1] - target) / (a[1] - b[1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_and_targets() {
        let r = ratio(Some(Estimate { mean: 2.0, se: 0.2 }), Some(Estimate { mean: 1.0, se: 0.1 })).unwrap();
        assert!((r.mean - 2.0).abs() < 1e-15 && (r.se - 2.0 * 0.02f64.sqrt()).abs() < 1e-12);
        assert!(ratio(None, Some(Estimate { mean: 1.0, se: 0.0 })).is_none());
        let curve = [[0.0, 4.0, 0.0], [10.0, 2.0, 0.0], [20.0, 1.0, 0.0]];
        assert_eq!(reach(&curve, 1.5), Some(15.0));
        assert_eq!(reach(&curve, 5.0), Some(0.0));
        assert_eq!(reach(&curve, 0.5), None);
    }
}

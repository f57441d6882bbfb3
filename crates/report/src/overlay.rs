//! Overlays: one hyperparameter setting's seed-averaged loss curve run several ways, across
//! sweeps (`kappa report --overlay`) here, or as an optimizer and its SDEs in one sweep (built by
//! `tracking`).

use crate::aggregate::{aggregate, key_without_seed};
use kappa_core::{Estimate, Params, TrialId, TrialResult};
use serde::Serialize;
use std::collections::HashMap;

/// One hyperparameter setting's loss curve in several sweeps.
#[derive(Clone, Debug, Serialize)]
pub struct Overlay {
    /// The shared parameters (seed dropped).
    pub params: Params,
    /// (sweep label, seed-averaged curve as (samples, mean, SE), stationary loss).
    pub series: Vec<(String, Vec<[f64; 3]>, Option<Estimate>)>,
}

/// Curves of the same hyperparameters (seed dropped) across sweeps, for settings present in the
/// first sweep and at least one other. Each input is (label, trials).
pub fn overlays(sweeps: &[(String, Vec<TrialResult>)]) -> Vec<Overlay> {
    let mut out: Vec<Overlay> = Vec::new();
    let Some((_, first)) = sweeps.first() else { return out };
    let mut keys: Vec<(String, Params)> = Vec::new();
    for r in first {
        let k = key_without_seed(&r.params);
        if !keys.iter().any(|(x, _)| *x == k) {
            keys.push((k, r.params.clone()));
        }
    }
    for (key, params) in keys {
        let mut series = Vec::new();
        for (label, trials) in sweeps {
            let results: HashMap<TrialId, TrialResult> = trials
                .iter()
                .filter(|r| key_without_seed(&r.params) == key)
                .enumerate()
                .map(|(i, r)| (TrialId(i as u64), r.clone()))
                .collect();
            if results.is_empty() {
                continue;
            }
            let ids: Vec<TrialId> = results.keys().copied().collect();
            let a = aggregate(&ids, &results);
            if !a.curve.is_empty() {
                series.push((label.clone(), a.curve, a.stationary));
            }
        }
        if series.len() >= 2 {
            let mut p = params;
            p.hyper.seed = 0;
            out.push(Overlay { params: p, series });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kappa_core::TrialStatus;

    #[test]
    fn overlays_match_settings_across_sweeps() {
        use kappa_core::{CurvePoint, Hyperparams, OptimizerKind, TrialMetrics};
        let params = |lr: f64, seed: u64| {
            Params::from(Hyperparams {
                optimizer: OptimizerKind::Adam,
                batch_size: 1,
                lr,
                beta1: 0.9,
                beta2: 0.99,
                eps: 1e-8,
                weight_decay: 0.0,
                seed,
            })
        };
        let result = |params: Params, loss: f64| TrialResult {
            id: TrialId(0),
            params,
            status: TrialStatus::Succeeded,
            error: None,
            origin: None,
            metrics: Some(TrialMetrics {
                curve: vec![CurvePoint::single(10, 10, loss)],
                stationary_loss: Some(Estimate { mean: loss, se: 0.0 }),
                ..TrialMetrics::default()
            }),
        };
        let optimizer = (
            "opt".to_string(),
            vec![result(params(0.1, 0), 1.0), result(params(0.1, 1), 3.0), result(params(0.2, 0), 5.0)],
        );
        let sde = ("sde".to_string(), vec![result(params(0.1, 0), 2.0)]);
        let o = overlays(&[optimizer, sde]);
        assert_eq!(o.len(), 1, "lr = 0.2 has no partner");
        assert_eq!(o[0].params.hyper.lr, 0.1);
        assert_eq!(o[0].series.len(), 2);
        assert_eq!(o[0].series[0].1[0][1], 2.0, "seeds averaged");
        assert_eq!(o[0].series[1].0, "sde");
    }
}

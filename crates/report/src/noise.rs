//! Noise slopes (THEORY.md §4): the stationary loss of the base trials (κ = 1) against each
//! trial's own minibatch noise σ_B = σ₁/√B, fitted on log-log axes per optimizer setting.

use crate::aggregate::aggregate;
use crate::analysis::log_log_slope;
use crate::trials::Trials;
use kappa_core::{Sweep, TrialId, TrialResult};
use serde::Serialize;
use std::collections::HashMap;

/// A log-log fit of stationary loss against σ_B.
#[derive(Clone, Debug, Serialize)]
pub struct SlopeFit {
    /// What the points share (optimizer and hyperparameters other than batch size and seed).
    pub label: String,
    /// (σ_B, mean stationary loss, theory) per batch size.
    pub points: Vec<[f64; 3]>,
    /// Fitted slope d log L / d log σ_B.
    pub slope: f64,
    /// The closed forms' slope over the same points, where they exist.
    pub theory_slope: Option<f64>,
    /// Points whose stationary loss rests on a trial whose loss had not settled: the slope is
    /// not one of stationary values where there are any.
    pub unsettled: usize,
}

/// The noise slopes of `sweep`: one fit per setting with at least two noise levels.
pub(crate) fn noise_slopes(
    sweep: &Sweep,
    trials: &Trials<'_>,
    results: &HashMap<TrialId, TrialResult>,
) -> Vec<SlopeFit> {
    // Base points only (κ = 1), grouped by everything but the noise level (batch size, σ) and
    // the seed; each point's noise is the trial's own σ_B = σ₁/√B, so a σ axis and a batch
    // axis both feed a fit.
    let sigma1 = |task: &kappa_core::TaskSpec| {
        task.sim().map(|sim| match sim.noise.sigma() {
            kappa_core::task::Sigma::Scalar(s) => *s,
            kappa_core::task::Sigma::PerCoordinate(v) => {
                v.iter().map(|s| s * s).sum::<f64>().sqrt() / (v.len() as f64).sqrt()
            }
        })
    };
    // label → noise points, each ((σ₁ bits, B), σ_B, trials).
    type NoisePoint = ((u64, u64), f64, Vec<TrialId>);
    let mut groups: Vec<(String, Vec<NoisePoint>)> = Vec::new();
    for t in trials.base_trials() {
        let Some(s1) = sigma1(&sweep.variants[t.task].task) else { continue };
        let mut key = t.params.clone();
        key.named.remove("task.noise.sigma");
        // What the optimizer reads, but the noise level and the seed.
        let label = key
            .read_entries()
            .into_iter()
            .filter(|(k, _)| !matches!(k.as_str(), "batch_size" | "seed"))
            .map(|(k, _)| if k == "optimizer" { key.display(&k) } else { format!("{k}={}", key.display(&k)) })
            .collect::<Vec<_>>()
            .join(" ");
        let slot = match groups.iter().position(|(l, _)| *l == label) {
            Some(i) => i,
            None => {
                groups.push((label, Vec::new()));
                groups.len() - 1
            }
        };
        let b = t.params.hyper.batch_size;
        let point = (s1.to_bits(), b);
        let sigma_b = s1 / (b as f64).sqrt();
        match groups[slot].1.iter_mut().find(|(p, _, _)| *p == point) {
            Some(entry) => entry.2.push(t.id),
            None => groups[slot].1.push((point, sigma_b, vec![t.id])),
        }
    }
    groups
        .into_iter()
        .filter(|(_, points)| points.len() >= 2)
        .filter_map(|(label, mut by_noise)| {
            by_noise.sort_by(|a, b| a.1.total_cmp(&b.1));
            let mut points = Vec::new();
            let mut unsettled = 0;
            for (_, sigma_b, ids) in &by_noise {
                let a = aggregate(ids, results);
                if let Some(st) = a.stationary {
                    points.push([*sigma_b, st.mean, a.theory.unwrap_or(f64::NAN)]);
                    unsettled += usize::from(a.settled == Some(false));
                }
            }
            let slope = log_log_slope(&points.iter().map(|p| (p[0], p[1])).collect::<Vec<_>>())?;
            let theory_slope = if points.iter().all(|p| p[2].is_finite()) {
                log_log_slope(&points.iter().map(|p| (p[0], p[2])).collect::<Vec<_>>())
            } else {
                None
            };
            Some(SlopeFit { label, points, slope, theory_slope, unsettled })
        })
        .collect()
}

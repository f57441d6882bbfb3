//! Closed-form predictions of THEORY.md §4 on the diagonal quadratic.

use crate::noise::{Family, Noise, ell};
use kappa_core::{Hyperparams, OptimizerKind, Theory, TheoryPoint};

/// Whether the trial runs the discrete optimizer (`true`) or its SDE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// The optimizer itself.
    Discrete,
    /// Its SDE.
    Sde,
}

/// The theory for a trial, plus notes for the reader. `record_steps` are the steps of the curve.
pub fn predict(
    params: &Hyperparams,
    form: Form,
    lambda: &[f64],
    noise: &Noise,
    x0: f64,
    record_steps: &[u64],
    batch_size: u64,
) -> (Option<Theory>, Vec<String>) {
    let mut notes = Vec::new();
    let stationary = stationary(params, form, lambda, noise, &mut notes);
    let curve = signsgd_phase3_curve(params, lambda, noise, x0, record_steps, batch_size);
    if stationary.is_none() && curve.is_empty() {
        return (None, notes);
    }
    (Some(Theory { stationary_loss: stationary, curve }), notes)
}

/// Predicted stationary loss, leading order in η (SGD discrete: exact).
pub fn stationary(
    params: &Hyperparams,
    form: Form,
    lambda: &[f64],
    noise: &Noise,
    notes: &mut Vec<String>,
) -> Option<f64> {
    let eta = params.lr;
    let theta = params.weight_decay;
    let sigma = &noise.sigma;
    let std = noise.std.as_deref();
    match params.optimizer {
        OptimizerKind::Sgd => {
            let Some(s) = std else {
                notes.push(
                    "no finite stationary loss: SGD under Student-t noise with nu <= 2 (infinite variance) has none"
                        .into(),
                );
                return None;
            };
            if form == Form::Discrete && lambda.iter().any(|l| eta * l >= 2.0) {
                notes.push("SGD is unstable here (eta * lambda_max >= 2): no stationary loss".into());
                return None;
            }
            Some(match form {
                Form::Discrete => lambda.iter().zip(s).map(|(l, s)| eta * s * s / (2.0 * (2.0 - eta * l))).sum(),
                Form::Sde => eta * s.iter().map(|s| s * s).sum::<f64>() / 4.0,
            })
        }
        OptimizerKind::SignSgd => Some(match &noise.family {
            Family::Gaussian => lambda
                .iter()
                .zip(sigma)
                .filter(|(_, s)| **s > 0.0)
                .map(|(l, s)| {
                    0.25 * eta * s / ((2.0 / std::f64::consts::PI).sqrt() + eta / std::f64::consts::PI * l / s)
                })
                .sum(),
            Family::StudentT { nu, .. } => eta * sigma.iter().sum::<f64>() / (4.0 * ell(Some(*nu))),
        }),
        OptimizerKind::Rmsprop | OptimizerKind::Adam => {
            let s = std?;
            Some(eta * s.iter().sum::<f64>() / 4.0)
        }
        OptimizerKind::RmspropW | OptimizerKind::AdamW => {
            let s = std?;
            let rms: f64 = lambda.iter().zip(s).map(|(l, s)| l * s / (l + theta * s)).sum::<f64>() * eta / 4.0;
            Some(if params.optimizer == OptimizerKind::AdamW {
                rms * (1.0 - params.beta1) / (1.0 - params.beta1 + eta * theta)
            } else {
                rms
            })
        }
    }
}

/// SignSGD's phase-3 transient under Gaussian noise (THEORY.md §4): per coordinate
/// `S(t) = S₀e^{−2bt} + (η/(2b))(1 − e^{−2bt})`, `a = √(2/π)λ/σ`, `b = a + (η/π)λ²/σ²`, t = kη.
pub fn signsgd_phase3_curve(
    params: &Hyperparams,
    lambda: &[f64],
    noise: &Noise,
    x0: f64,
    record_steps: &[u64],
    batch_size: u64,
) -> Vec<TheoryPoint> {
    if params.optimizer != OptimizerKind::SignSgd
        || !matches!(noise.family, Family::Gaussian)
        || noise.sigma.iter().any(|s| *s <= 0.0)
    {
        return Vec::new();
    }
    let eta = params.lr;
    let coeffs: Vec<(f64, f64)> = lambda
        .iter()
        .zip(&noise.sigma)
        .map(|(l, s)| {
            let a = (2.0 / std::f64::consts::PI).sqrt() * l / s;
            (*l, a + eta / std::f64::consts::PI * l * l / (s * s))
        })
        .collect();
    let s0 = x0 * x0;
    record_steps
        .iter()
        .map(|&k| {
            let t = k as f64 * eta;
            let loss = coeffs
                .iter()
                .map(|&(l, b)| {
                    let decay = (-2.0 * b * t).exp();
                    0.5 * l * (s0 * decay + eta / (2.0 * b) * (1.0 - decay))
                })
                .sum();
            TheoryPoint { samples: k * batch_size, step: k, loss }
        })
        .collect()
}

/// SGD's exact expected loss on the diagonal quadratic with Gaussian noise σ per coordinate,
/// batch `batch`, from x₀ in every coordinate, after `steps` steps of size `eta` (THEORY.md §7):
/// `E f_k = ½ Σ λ_i (a_i^{2k} x₀² + (η²σ²/B)(1 − a_i^{2k})/(1 − a_i²))`, `a_i = 1 − ηλ_i`.
pub fn sgd_expected_loss(eigenvalues: &[f64], sigma: f64, x0: f64, eta: f64, batch: f64, steps: f64) -> f64 {
    eigenvalues
        .iter()
        .map(|&l| {
            let a = 1.0 - eta * l;
            let a2k = (a * a).powf(steps);
            0.5 * l * (a2k * x0 * x0 + eta * eta * sigma * sigma / batch * (1.0 - a2k) / (1.0 - a * a))
        })
        .sum()
}

/// The learning rate in `range` that minimises [`sgd_expected_loss`] after a budget of `samples`
/// samples (samples/`batch` steps): golden-section search in log η, to machine precision (the
/// loss has one minimum in η between too slow and too noisy).
pub fn sgd_best_lr(eigenvalues: &[f64], sigma: f64, x0: f64, batch: f64, samples: f64, range: [f64; 2]) -> f64 {
    let loss = |log_eta: f64| sgd_expected_loss(eigenvalues, sigma, x0, log_eta.exp(), batch, samples / batch);
    let (mut lo, mut hi) = (range[0].ln(), range[1].ln());
    let g = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..200 {
        let (c, d) = (hi - g * (hi - lo), lo + g * (hi - lo));
        if loss(c) < loss(d) {
            hi = d;
        } else {
            lo = c;
        }
    }
    ((lo + hi) / 2.0).exp()
}

//! Closed-form predictions of THEORY.md §4 and §8: the diagonal quadratic, the quadratic with a
//! full Hessian (in its eigenbasis) and the double well.

use crate::landscape::{Dense, DoubleWell, Land};
use crate::noise::{Family, Noise, ell};
use crate::steps::{Rate, Steps};
use kappa_core::{Hyperparams, OptimizerKind, Theory, TheoryPoint};

/// Whether the trial runs the discrete optimizer (`true`) or its SDE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// The optimizer itself.
    Discrete,
    /// Its SDE.
    Sde,
}

/// The theory for a trial, plus notes for the reader: its steps (record points and burn-in) and
/// each step's rate.
///
/// At a constant rate: the closed forms of the stationary loss (THEORY.md §4, §8), and the
/// exact curve where there is one (SignSGD's phase-3 transient; SGD, heavy ball and Nesterov's
/// second moments; SGD's SDE). Under a schedule only the exact curves exist, and the stationary
/// prediction is their average over the steps the measured stationary loss averages (after the
/// burn-in), so the two compare like for like.
#[allow(clippy::too_many_arguments)]
pub fn predict(
    params: &Hyperparams,
    form: Form,
    land: &Land,
    noise: &Noise,
    x0: f64,
    steps: &Steps,
    rate: &Rate,
    batch_size: u64,
) -> (Option<Theory>, Vec<String>) {
    let mut notes = Vec::new();
    let coords = coordinates(land, noise, x0);
    let exact = coords.as_deref().and_then(|c| exact_curve(params, form, c, steps, batch_size, |k| rate.at(k)));
    let (stationary, curve) = if rate.is_constant() {
        let (stationary, sign) = match land {
            Land::Diagonal(q) => (
                stationary(params, form, &q.eigenvalues, noise, &mut notes),
                signsgd_phase3_curve(params, &q.eigenvalues, noise, x0, &steps.record_steps, batch_size),
            ),
            Land::Dense(h) => (dense_stationary(params, form, h, coords.as_deref(), noise, &mut notes), Vec::new()),
            Land::DoubleWell(w) => (double_well_stationary(params, form, w, noise), Vec::new()),
        };
        (stationary, if sign.is_empty() { exact.map(|e| e.0).unwrap_or_default() } else { sign })
    } else {
        match exact {
            Some((curve, window)) => (window, curve),
            None => {
                let o = params.optimizer;
                let why = if coords.is_none() {
                    match land {
                        Land::DoubleWell(_) => "the closed forms under a schedule are the quadratics'",
                        _ => "the noise has no finite variance",
                    }
                } else if matches!(o, OptimizerKind::Sgd | OptimizerKind::Momentum | OptimizerKind::Nesterov) {
                    "its exact curve would take more than 5·10⁷ coordinate-steps to compute"
                } else {
                    "the closed forms assume a constant rate"
                };
                notes.push(format!(
                    "no theory for {o}{} under the {} schedule: {why}",
                    if form == Form::Sde { "'s SDE" } else { "" },
                    rate.schedule().kind_name()
                ));
                (None, Vec::new())
            }
        }
    };
    if stationary.is_none() && curve.is_empty() {
        return (None, notes);
    }
    (Some(Theory { stationary_loss: stationary, curve }), notes)
}

/// One coordinate of a quadratic in its eigenbasis: curvature λ, gradient-noise variance
/// (Qᵀ Σ Q)_kk and the start's second moment (Qᵀx₀)_k².
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Coord {
    /// The eigenvalue λ_k.
    pub lambda: f64,
    /// The noise variance along its eigenvector.
    pub var: f64,
    /// E y_k² at the start.
    pub m0: f64,
}

/// A quadratic's coordinates in its eigenbasis (the diagonal quadratic's are its own), with the
/// noise's variance per coordinate; `None` for the double well or infinite-variance noise.
pub fn coordinates(land: &Land, noise: &Noise, x0: f64) -> Option<Vec<Coord>> {
    let std = noise.std.as_deref()?;
    match land {
        Land::Diagonal(q) => {
            Some(q.eigenvalues.iter().zip(std).map(|(l, s)| Coord { lambda: *l, var: s * s, m0: x0 * x0 }).collect())
        }
        Land::Dense(h) => {
            let var = h.eigen_variances(&std.iter().map(|s| s * s).collect::<Vec<_>>());
            let y0 = h.to_eigenbasis(&vec![x0; std.len()]);
            Some(
                h.eigenvalues
                    .iter()
                    .zip(var)
                    .zip(y0)
                    .map(|((l, v), y)| Coord { lambda: *l, var: v, m0: y * y })
                    .collect(),
            )
        }
        Land::DoubleWell(_) => None,
    }
}

/// The stationary loss on a quadratic with a full Hessian (THEORY.md §8): exact for SGD, heavy
/// ball and Nesterov (each eigen-coordinate on its own, with its noise variance (QᵀΣQ)_kk); the
/// leading order, the same for every rotation, for SGD's SDE (η tr Σ/4), SignSGD (Gaussian:
/// η Σσ_i/(4√(2/π)), the Lyapunov equation's trace) and RMSprop/Adam without weight decay
/// (η Σσ_i/4). Nothing for the others.
fn dense_stationary(
    params: &Hyperparams,
    form: Form,
    h: &Dense,
    coords: Option<&[Coord]>,
    noise: &Noise,
    notes: &mut Vec<String>,
) -> Option<f64> {
    let o = params.optimizer;
    let eta = params.lr;
    match (o, form) {
        (OptimizerKind::Sgd | OptimizerKind::Momentum | OptimizerKind::Nesterov, Form::Discrete) => {
            let Some(coords) = coords else {
                notes.push(format!("no finite stationary loss: {o} under Student-t noise with nu <= 2 has none"));
                return None;
            };
            linear_stationary(params, coords, notes)
        }
        (OptimizerKind::SignSgd, _) if matches!(noise.family, Family::Gaussian) => {
            Some(eta * noise.sigma.iter().sum::<f64>() / (4.0 * (2.0 / std::f64::consts::PI).sqrt()))
        }
        (OptimizerKind::Sgd | OptimizerKind::SignSgd | OptimizerKind::Rmsprop | OptimizerKind::Adam, _) => {
            // These diagonal forms do not involve λ: they hold for every rotation.
            stationary(params, form, &h.eigenvalues, noise, notes)
        }
        (OptimizerKind::Signum | OptimizerKind::Lion, _) if is_signsgd(params) => {
            let sign = Hyperparams { optimizer: OptimizerKind::SignSgd, ..params.clone() };
            dense_stationary(&sign, form, h, coords, noise, notes)
        }
        _ => None,
    }
}

/// The exact stationary loss of SGD, heavy ball or Nesterov from coordinates that move on their
/// own: Σ ½ λ_k C_k (THEORY.md §8), or `None` with a note where one is unstable.
fn linear_stationary(params: &Hyperparams, coords: &[Coord], notes: &mut Vec<String>) -> Option<f64> {
    let mut total = 0.0;
    for c in coords {
        let Some(m) = Momentum::of(params, c.lambda, params.lr).stationary(c.var) else {
            notes.push(format!(
                "{} is unstable here (eta = {}, beta1 = {}, lambda = {}): no stationary loss",
                params.optimizer, params.lr, params.beta1, c.lambda
            ));
            return None;
        };
        total += 0.5 * c.lambda * m[0];
    }
    Some(total)
}

/// The SGD SDE's stationary loss on the double well (THEORY.md §8): per coordinate the
/// stationary density is `p(x) ∝ exp(−2f(x)/(ηs²))`, so `E f = ∫ f p / ∫ p`, integrated
/// numerically (Simpson's rule) to about 1e-10 relative. `None` for other optimizers, for the
/// discrete optimizer (which it approximates at O(η): that gap is what the tracking table
/// measures) and without a finite noise variance.
fn double_well_stationary(params: &Hyperparams, form: Form, w: &DoubleWell, noise: &Noise) -> Option<f64> {
    if params.optimizer != OptimizerKind::Sgd || form != Form::Sde {
        return None;
    }
    let std = noise.std.as_deref()?;
    Some(w.a.iter().zip(std).map(|(a, s)| double_well_coordinate(*a, params.lr * s * s)).sum())
}

/// `∫ f p / ∫ p` for `f = a(x² − 1)²/4` and `p ∝ exp(−2f/t)` (t = η s²). f is even, so x ≥ 0
/// suffices; Simpson's rule in v ∈ [−1, 1] with x = 1 + sign(v)|v|³R (R = 1 below the minimum,
/// up to where the weight is below e^-60 of its peak above it) puts the points where the well is,
/// however narrow: relative error below 1e-8 from t/a = 1e-12 up to the hopping regime.
pub fn double_well_coordinate(a: f64, t: f64) -> f64 {
    if t <= 0.0 {
        return 0.0;
    }
    let f = |x: f64| a * (x * x - 1.0).powi(2) / 4.0;
    let above = (1.0 + (120.0 * t / a).sqrt()).sqrt() + 0.5 - 1.0;
    let n = 20_000;
    let h = 2.0 / n as f64;
    let (mut num, mut den) = (0.0, 0.0);
    for i in 0..=n {
        let v = -1.0 + i as f64 * h;
        let r = if v < 0.0 { 1.0 } else { above };
        let x = 1.0 + v.signum() * v.abs().powi(3) * r;
        let jacobian = 3.0 * v * v * r;
        let weight = if i == 0 || i == n {
            1.0
        } else if i % 2 == 1 {
            4.0
        } else {
            2.0
        };
        let fx = f(x);
        let p = (-2.0 * fx / t).exp() * jacobian;
        num += weight * fx * p;
        den += weight * p;
    }
    num / den
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
        OptimizerKind::Momentum | OptimizerKind::Nesterov => {
            let Some(s) = std else {
                notes.push(format!(
                    "no finite stationary loss: {} under Student-t noise with nu <= 2 (infinite variance) has none",
                    params.optimizer
                ));
                return None;
            };
            let coords: Vec<Coord> =
                lambda.iter().zip(s).map(|(l, s)| Coord { lambda: *l, var: s * s, m0: 0.0 }).collect();
            linear_stationary(params, &coords, notes)
        }
        OptimizerKind::Signum | OptimizerKind::Lion if is_signsgd(params) => {
            let sign = Hyperparams { optimizer: OptimizerKind::SignSgd, ..params.clone() };
            stationary(&sign, form, lambda, noise, notes)
        }
        OptimizerKind::Signum | OptimizerKind::Lion => None,
    }
}

/// Whether the optimizer is SignSGD: SignSGD itself, or Signum and Lion with β₁ = 0 and no
/// weight decay, which are SignSGD exactly (THEORY.md §8).
fn is_signsgd(params: &Hyperparams) -> bool {
    match params.optimizer {
        OptimizerKind::SignSgd => true,
        OptimizerKind::Signum | OptimizerKind::Lion => params.beta1 == 0.0 && params.weight_decay == 0.0,
        _ => false,
    }
}

/// One coordinate of SGD, heavy-ball or Nesterov momentum on the quadratic as a linear system
/// (THEORY.md §8): the state (x, b) moves as `(x, b)' = A (x, b) + v z`, z the gradient noise.
/// SGD is heavy ball with μ = 0 (and no weight decay: SGD does not read θ).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Momentum {
    /// The transition matrix A, row-major.
    pub a: [[f64; 2]; 2],
    /// The noise's direction v.
    pub v: [f64; 2],
}

impl Momentum {
    /// The system of `params.optimizer` (SGD, momentum or Nesterov) at curvature `lambda` and
    /// step `eta`.
    pub fn of(params: &Hyperparams, lambda: f64, eta: f64) -> Momentum {
        let o = params.optimizer;
        let theta = if o.uses_weight_decay() { params.weight_decay } else { 0.0 };
        let mu = if o.uses_beta1() { params.beta1 } else { 0.0 };
        let (l, d) = (lambda, eta * theta);
        if o == OptimizerKind::Nesterov {
            Momentum { a: [[1.0 - eta * l * (1.0 + mu) - d, -eta * mu * mu], [l, mu]], v: [-eta * (1.0 + mu), 1.0] }
        } else {
            Momentum { a: [[1.0 - eta * l - d, -eta * mu], [l, mu]], v: [-eta, 1.0] }
        }
    }

    /// One step of the raw second moments `M = E[(x, b)(x, b)ᵀ]` (c11, c12, c22) under noise
    /// variance `var`: `M ← A M Aᵀ + var v vᵀ` (exact: the noise is fresh and has mean 0).
    pub fn advance(&self, m: [f64; 3], var: f64) -> [f64; 3] {
        let [[a, b], [c, d]] = self.a;
        let [c11, c12, c22] = m;
        let [v1, v2] = self.v;
        [
            a * a * c11 + 2.0 * a * b * c12 + b * b * c22 + var * v1 * v1,
            a * c * c11 + (a * d + b * c) * c12 + b * d * c22 + var * v1 * v2,
            c * c * c11 + 2.0 * c * d * c12 + d * d * c22 + var * v2 * v2,
        ]
    }

    /// The stationary second moments (c11 = Var x, c12, c22): the solution of
    /// `C = A C Aᵀ + var v vᵀ`, or `None` where the system is unstable (an eigenvalue of A on or
    /// outside the unit circle).
    pub fn stationary(&self, var: f64) -> Option<[f64; 3]> {
        let [[a, b], [c, d]] = self.a;
        // Both eigenvalues inside the unit circle (Jury's criterion for a 2×2 system).
        let (tr, det) = (a + d, a * d - b * c);
        if !(det.abs() < 1.0 && tr.abs() < 1.0 + det) {
            return None;
        }
        let [v1, v2] = self.v;
        let m = [
            [1.0 - a * a, -2.0 * a * b, -b * b],
            [-a * c, 1.0 - (a * d + b * c), -b * d],
            [-c * c, -2.0 * c * d, 1.0 - d * d],
        ];
        let rhs = [var * v1 * v1, var * v1 * v2, var * v2 * v2];
        solve3(m, rhs)
    }
}

/// Solves the 3×3 system `m x = rhs` by Cramer's rule (`None` when singular).
fn solve3(m: [[f64; 3]; 3], rhs: [f64; 3]) -> Option<[f64; 3]> {
    let det = |m: [[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det(m);
    if d == 0.0 || !d.is_finite() {
        return None;
    }
    let mut out = [0.0; 3];
    for (col, o) in out.iter_mut().enumerate() {
        let mut mc = m;
        for row in 0..3 {
            mc[row][col] = rhs[row];
        }
        *o = det(mc) / d;
    }
    Some(out)
}

/// The exact expected loss on a quadratic, from its coordinates in its eigenbasis (momentum
/// buffers at 0), with step `k`'s rate `lr(k)` (THEORY.md §7–§8): the discrete SGD, heavy ball
/// and Nesterov by their second moments stepped one optimizer step at a time; SGD's SDE by its
/// own law over each step, the rate held for a time η_k:
/// `S ← S e^{−2λη_k} + η_k s² (1 − e^{−2λη_k}) / (2λ)`. Returns the curve at the steps' record
/// points and the mean over the steps after the burn-in (`None` without such steps). `None` for
/// other optimizers or more than [`CURVE_WORK`] coordinate-steps.
pub fn exact_curve(
    params: &Hyperparams,
    form: Form,
    coords: &[Coord],
    steps: &Steps,
    batch_size: u64,
    lr: impl Fn(u64) -> f64,
) -> Option<(Vec<TheoryPoint>, Option<f64>)> {
    let o = params.optimizer;
    let linear = match form {
        Form::Discrete => matches!(o, OptimizerKind::Sgd | OptimizerKind::Momentum | OptimizerKind::Nesterov),
        Form::Sde => o == OptimizerKind::Sgd,
    };
    let last = steps.total;
    if !linear || last.saturating_mul(coords.len() as u64) > CURVE_WORK {
        return None;
    }
    let mut m: Vec<[f64; 3]> = coords.iter().map(|c| [c.m0, 0.0, 0.0]).collect();
    let loss = |m: &[[f64; 3]]| coords.iter().zip(m).map(|(c, m)| 0.5 * c.lambda * m[0]).sum::<f64>();
    let mut out = Vec::with_capacity(steps.record_steps.len());
    let mut records = steps.record_steps.iter().peekable();
    let (mut window, mut counted) = (0.0, 0u64);
    for k in 0..=last {
        if k > 0 {
            let eta = lr(k - 1);
            for (mk, c) in m.iter_mut().zip(coords) {
                *mk = match form {
                    Form::Discrete => Momentum::of(params, c.lambda, eta).advance(*mk, c.var),
                    Form::Sde => {
                        let l = c.lambda;
                        let decay = (-2.0 * l * eta).exp();
                        let gain = if l > 0.0 { -(-2.0 * l * eta).exp_m1() / (2.0 * l) } else { eta };
                        [mk[0] * decay + eta * c.var * gain, 0.0, 0.0]
                    }
                };
            }
        }
        let f = if records.peek() == Some(&&k) || k > steps.burn_in_steps { loss(&m) } else { 0.0 };
        if records.next_if_eq(&&k).is_some() {
            out.push(TheoryPoint { samples: k * batch_size, step: k, loss: f });
        }
        if k > steps.burn_in_steps {
            window += f;
            counted += 1;
        }
    }
    Some((out, (counted > 0).then(|| window / counted as f64)))
}

/// The most coordinate-steps [`exact_curve`] steps through (about a second of work).
pub const CURVE_WORK: u64 = 50_000_000;

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
    if !is_signsgd(params) || !matches!(noise.family, Family::Gaussian) || noise.sigma.iter().any(|s| *s <= 0.0) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use kappa_core::task::{NoiseSpec, Sigma};

    fn hyper(optimizer: OptimizerKind, lr: f64, beta1: f64, weight_decay: f64) -> Hyperparams {
        Hyperparams { optimizer, lr, beta1, weight_decay, batch_size: 1, ..Hyperparams::defaults() }
    }

    /// THEORY.md §8's closed form for heavy ball (θ = 0) against the Lyapunov solve, and μ = 0
    /// against §4's exact SGD.
    #[test]
    fn heavy_ball_stationary_variance_is_the_closed_form() {
        for (eta, mu, l, s2) in [(0.01, 0.9, 4.0, 1.0), (0.05, 0.5, 0.5, 4.0), (0.1, 0.0, 2.0, 0.3)] {
            let c = Momentum::of(&hyper(OptimizerKind::Momentum, eta, mu, 0.0), l, eta).stationary(s2).unwrap();
            let closed = eta * s2 * (1.0 + mu) / (l * (1.0 - mu) * (2.0 * (1.0 + mu) - eta * l));
            assert!((c[0] - closed).abs() < 1e-12 * closed, "{c:?} vs {closed}");
        }
        let noise = Noise::for_batch(&NoiseSpec::Gaussian { sigma: Sigma::Scalar(1.0) }, 1, 4).unwrap();
        let lambda = [0.5, 1.0, 2.0, 4.0];
        let mut notes = Vec::new();
        let sgd = stationary(&hyper(OptimizerKind::Sgd, 0.01, 0.9, 0.0), Form::Discrete, &lambda, &noise, &mut notes);
        let hb0 =
            stationary(&hyper(OptimizerKind::Momentum, 0.01, 0.0, 0.0), Form::Discrete, &lambda, &noise, &mut notes);
        assert!((sgd.unwrap() - hb0.unwrap()).abs() < 1e-15);
        // Too large a step: unstable, said in a note.
        let big =
            stationary(&hyper(OptimizerKind::Nesterov, 1.0, 0.9, 0.0), Form::Discrete, &lambda, &noise, &mut notes);
        assert!(big.is_none() && notes.iter().any(|n| n.contains("unstable")), "{notes:?}");
    }

    /// The second-moment recursion converges to the Lyapunov solution (Nesterov, θ > 0), and its
    /// first step is the one-step variance by hand.
    #[test]
    fn the_linear_curve_steps_to_the_stationary_loss() {
        let noise = Noise::for_batch(&NoiseSpec::Gaussian { sigma: Sigma::Scalar(1.0) }, 1, 2).unwrap();
        let lambda = [1.0, 3.0];
        let p = hyper(OptimizerKind::Nesterov, 0.02, 0.8, 0.5);
        let mut notes = Vec::new();
        let st = stationary(&p, Form::Discrete, &lambda, &noise, &mut notes).unwrap();
        let steps = Steps { total: 20_000, record_steps: vec![0, 1, 20_000], burn_in_steps: 10_000 };
        let land = Land::Diagonal(crate::landscape::Quadratic { eigenvalues: lambda.to_vec() });
        let coords = coordinates(&land, &noise, 1.0).unwrap();
        let (curve, window) = exact_curve(&p, Form::Discrete, &coords, &steps, 1, |_| p.lr).unwrap();
        assert!((window.unwrap() - st).abs() < 1e-9 * st);
        assert_eq!(curve.len(), 3);
        assert!((curve[0].loss - 2.0).abs() < 1e-15);
        // Step 1: x = (1 − ηλ(1+μ) − ηθ)·1 − η(1+μ)z.
        let one: f64 = lambda
            .iter()
            .map(|l| {
                let a = 1.0 - 0.02 * l * 1.8 - 0.02 * 0.5;
                0.5 * l * (a * a + (0.02f64 * 1.8).powi(2))
            })
            .sum();
        assert!((curve[1].loss - one).abs() < 1e-14, "{} vs {one}", curve[1].loss);
        assert!((curve[2].loss - st).abs() < 1e-9 * st, "{} vs {st}", curve[2].loss);
    }

    /// THEORY.md §8's number: a = 1, η s² = 0.2 gives 0.05716; small noise the quadratic's η s²/4.
    #[test]
    fn the_double_well_integral() {
        assert!((double_well_coordinate(1.0, 0.2) - 0.05716).abs() < 5e-6, "{}", double_well_coordinate(1.0, 0.2));
        // Small noise: the quadratic's t/4 per coordinate, to the next order t/4 (1 + 3t/(4a))
        // (the well's quartic and cubic terms), down to t/a = 1e-12.
        for (a, t) in [(2.0, 1e-4), (1.0, 1e-9), (1.0, 1e-10), (1.0, 1e-12), (50.0, 1e-9)] {
            let got = double_well_coordinate(a, t);
            let expect = t / 4.0 * (1.0 + 0.75 * t / a);
            assert!((got / expect - 1.0).abs() < 1e-3 * (t / a).max(1e-5), "a = {a}, t = {t}: {got} vs {expect}");
        }
    }

    /// Signum and Lion at β₁ = 0 predict SignSGD's stationary loss; with β₁ > 0 nothing.
    #[test]
    fn sign_momentum_at_beta1_zero_is_signsgd() {
        let noise = Noise::for_batch(&NoiseSpec::Gaussian { sigma: Sigma::Scalar(1.0) }, 1, 4).unwrap();
        let lambda = [0.5, 1.0, 2.0, 4.0];
        let mut notes = Vec::new();
        let sign =
            stationary(&hyper(OptimizerKind::SignSgd, 1e-3, 0.9, 0.0), Form::Discrete, &lambda, &noise, &mut notes);
        assert!((sign.unwrap() - 0.00125238).abs() < 1e-8);
        for o in [OptimizerKind::Signum, OptimizerKind::Lion] {
            let at0 = stationary(&hyper(o, 1e-3, 0.0, 0.0), Form::Discrete, &lambda, &noise, &mut notes);
            assert_eq!(at0, sign, "{o}");
            assert_eq!(stationary(&hyper(o, 1e-3, 0.9, 0.0), Form::Discrete, &lambda, &noise, &mut notes), None);
        }
    }
}

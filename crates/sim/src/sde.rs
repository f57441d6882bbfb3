//! Euler–Maruyama for the optimizer SDEs of THEORY.md §3.
//!
//! Compagnoni et al.: SDE time t = kη, substep Δ = η/r. Malladi et al.: time τ = kη², substep
//! Δτ = η²/r, with σ₀ = ησ, ε₀ = εη, c_i = (1−β_i)/η². Per coordinate, `s_i` is the noise standard
//! deviation √Var(Z_i) (σ_i for Gaussian noise, σ_i√(ν/(ν−2)) for Student-t with ν > 2).
//!
//! Conventions the theory leaves open, chosen to match the discrete optimizer at Δ = η:
//! - Adam: M and V start at 0 and are advanced first; X then uses them with the corrections ι_i
//!   (γ_i for Malladi) evaluated at the end of the substep, so the first substep is finite.
//! - RMSprop: V starts at its conditional mean (∇f(x₀))² + s² (Compagnoni), u at 1 (Malladi),
//!   which is what a bias-corrected RMSprop's first v̂ estimates.
//! - Weight decay θ acts only for the `W` variants, at rate θ per unit of t (θ/η per unit of τ).

use crate::noise::Noise;
use crate::rng::StreamRng;
use kappa_core::task::SdeModel;
use kappa_core::{Hyperparams, OptimizerKind};

/// The SDE families of THEORY.md §3 (the optimizers the table says have one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Sgd,
    SignSgd,
    Rmsprop,
    Adam,
}

/// What one SDE needs, lowered from the trial.
#[derive(Clone, Debug)]
pub struct Sde {
    kind: Family,
    model: SdeModel,
    eta: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    theta: f64,
    /// Substep in the model's own time.
    dt: f64,
    /// SGD's fused kernel: λ_i Δ and √(ηΔ) s_i per coordinate.
    sgd_coefs: Option<(Vec<f64>, Vec<f64>)>,
}

/// Per-path auxiliary state (moments) of an SDE.
#[derive(Clone, Debug, Default)]
pub struct SdeState {
    m: Vec<f64>,
    v: Vec<f64>,
    /// Model time at the start of the next substep.
    t: f64,
}

impl SdeState {
    /// Its moments and model time (see [`crate::checkpoint`]).
    pub(crate) fn parts(&self) -> (&[f64], &[f64], f64) {
        (&self.m, &self.v, self.t)
    }

    /// A state from its parts.
    pub(crate) fn from_parts(m: Vec<f64>, v: Vec<f64>, t: f64) -> SdeState {
        SdeState { m, v, t }
    }
}

/// A path's scratch buffers for one substep, length d each: the gradient and the normals.
#[derive(Clone, Debug)]
pub struct Scratch {
    /// The gradient (drift) buffer.
    pub g: Vec<f64>,
    /// The normal variates buffer.
    pub z: Vec<f64>,
}

impl Scratch {
    /// Buffers for dimension `d`.
    pub fn new(d: usize) -> Scratch {
        Scratch { g: vec![0.0; d], z: vec![0.0; d] }
    }
}

impl Sde {
    /// The SDE of `params.optimizer` under `model`, with `refine` substeps per optimizer step, on
    /// a diagonal quadratic with Hessian diagonal `lambda` (which SGD's fused kernel needs; `None`
    /// for other landscapes: the caller then computes gradients). `Err` says
    /// why there is none (an optimizer without an SDE, or without one under `model`).
    pub fn new(
        params: &Hyperparams,
        model: SdeModel,
        refine: u32,
        lambda: Option<&[f64]>,
        noise: &Noise,
    ) -> Result<Sde, String> {
        let mut sde = Sde::generic(params, model, refine)?;
        let lambda = match lambda {
            Some(lambda) if sde.kind == Family::Sgd => lambda,
            _ => return Ok(sde),
        };
        sde.sgd_coefs = Some({
            let c = (sde.eta * sde.dt).sqrt();
            let std = noise.std.as_deref().unwrap_or(&noise.sigma);
            (lambda.iter().map(|l| l * sde.dt).collect(), std.iter().map(|s| c * s).collect())
        });
        Ok(sde)
    }

    /// The SDE of `params.optimizer` under `model`, with `refine` substeps per optimizer step, for
    /// any loss: the caller computes the gradient and calls [`Sde::substep_with_grad`].
    pub fn generic(params: &Hyperparams, model: SdeModel, refine: u32) -> Result<Sde, String> {
        let o = params.optimizer;
        let malladi = model == SdeModel::Malladi;
        if !o.has_sde() || (malladi && !o.info().malladi_sde) {
            return Err(o.no_sde(malladi));
        }
        let kind = match o {
            OptimizerKind::Sgd => Family::Sgd,
            OptimizerKind::SignSgd => Family::SignSgd,
            OptimizerKind::Rmsprop | OptimizerKind::RmspropW => Family::Rmsprop,
            OptimizerKind::Adam | OptimizerKind::AdamW => Family::Adam,
            _ => return Err(o.no_sde(false)),
        };
        let eta = params.lr;
        let unit = match model {
            SdeModel::Compagnoni => eta,
            SdeModel::Malladi => eta * eta,
        };
        let theta = if o.uses_weight_decay() { params.weight_decay } else { 0.0 };
        let dt = unit / f64::from(refine.max(1));
        Ok(Sde {
            kind,
            model,
            eta,
            beta1: params.beta1,
            beta2: params.beta2,
            eps: params.eps,
            theta,
            dt,
            sgd_coefs: None,
        })
    }

    /// Refuses a learning-rate schedule for every SDE but SGD's, which alone has its time change
    /// (THEORY.md §8); the spec refuses the others first, this holds for tasks that did not come
    /// through it.
    pub fn check_schedule(&self, rate: &crate::Rate) -> Result<(), String> {
        if rate.is_constant() || self.kind == Family::Sgd {
            return Ok(());
        }
        Err(format!(
            "under the {} learning-rate schedule kind = \"sde\" runs SGD's SDE only (its time change is THEORY.md \
             §8's); this optimizer's SDE under a time-varying rate is not derived",
            rate.schedule().kind_name()
        ))
    }

    /// SGD's substep fused with the loss: `x ← x − λx Δ + √(ηΔ) s z`, returning `½ Σ λ x²` of the
    /// new `x` (summed as [`crate::landscape::weighted_square_sum`] does). `scale` is the step's
    /// learning-rate multiplier m_k: under a schedule the substep is Δ_k = m_k Δ and the
    /// diffusion √(η_k Δ_k) = m_k √(ηΔ) (THEORY.md §8's time change).
    #[inline(always)]
    pub fn sgd_substep_with_loss(
        &self,
        x: &mut [f64],
        lambda: &[f64],
        rng: &mut StreamRng,
        z: &mut [f64],
        scale: f64,
    ) -> Option<f64> {
        let (ldt, coef) = self.sgd_coefs.as_ref()?;
        rng.normal.fill(z);
        Some(if scale == 1.0 {
            fused_sgd::<false>(x, lambda, ldt, coef, z, 1.0)
        } else {
            fused_sgd::<true>(x, lambda, ldt, coef, z, scale)
        })
    }

    /// Initial auxiliary state for a path starting at `x` (gradient `grad`).
    pub fn init(&self, grad: &[f64], noise: &Noise) -> SdeState {
        let d = grad.len();
        let s = noise.std.as_deref();
        let (m, v) = match (self.kind, self.model) {
            (Family::Adam, _) => (vec![0.0; d], vec![0.0; d]),
            (Family::Rmsprop, SdeModel::Compagnoni) => {
                let v = grad.iter().enumerate().map(|(i, g)| g * g + s.map_or(0.0, |s| s[i] * s[i])).collect();
                (Vec::new(), v)
            }
            (Family::Rmsprop, SdeModel::Malladi) => (Vec::new(), vec![1.0; d]),
            _ => (Vec::new(), Vec::new()),
        };
        SdeState { m, v, t: 0.0 }
    }

    /// One Euler–Maruyama substep of a path on the quadratic: `x`, its state, with `scratch`'s
    /// buffers. `lambda` is the Hessian diagonal. Returns the loss of the new `x` when the kernel
    /// computed it on the way (SGD built by [`Sde::new`]), so the caller need not.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn substep(
        &self,
        x: &mut [f64],
        st: &mut SdeState,
        lambda: &[f64],
        noise: &Noise,
        rng: &mut StreamRng,
        scratch: &mut Scratch,
        scale: f64,
    ) -> Option<f64> {
        let Scratch { g, z } = scratch;
        if let Some(loss) = self.sgd_substep_with_loss(x, lambda, rng, z, scale) {
            return Some(loss);
        }
        for ((gi, xi), l) in g.iter_mut().zip(x.iter()).zip(lambda) {
            *gi = l * xi;
        }
        self.substep_with_grad(x, st, g, noise, rng, z, scale);
        None
    }

    /// One Euler–Maruyama substep of a path whose drift gradient `g = ∇f(x)` the caller has
    /// computed (any loss); `z` (length d) is scratch for the normals. The diffusion uses the
    /// noise's standard deviations, as [`Sde::substep`] does. `scale` is the step's
    /// learning-rate multiplier: SGD's SDE runs in the time t_k = Σ η_j (THEORY.md §8); the
    /// others have no schedule (the spec refuses them under one), so theirs is 1.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn substep_with_grad(
        &self,
        x: &mut [f64],
        st: &mut SdeState,
        g: &[f64],
        noise: &Noise,
        rng: &mut StreamRng,
        z: &mut [f64],
        scale: f64,
    ) {
        debug_assert!(scale == 1.0 || self.kind == Family::Sgd, "only SGD's SDE has a time change");
        let dt = self.dt * scale;
        let sqrt_dt = dt.sqrt();
        rng.normal.fill(z);
        // Noise standard deviations: always finite here (spec validation keeps infinite-variance
        // noise to SignSGD, which uses the scale σ instead).
        let std = noise.std.as_deref().unwrap_or(&noise.sigma);
        match (self.kind, self.model) {
            (Family::Sgd, _) => {
                // x ← x − gΔ + √(ηΔ) s z (the quadratic's SGD uses the fused kernel instead).
                let c = (self.eta * scale * dt).sqrt();
                for i in 0..x.len() {
                    x[i] = x[i] - g[i] * dt + c * std[i] * z[i];
                }
            }
            (Family::SignSgd, _) => {
                let c = self.eta.sqrt() * sqrt_dt;
                for i in 0..x.len() {
                    let m = noise.sign_drift(g[i], noise.sigma[i]);
                    x[i] += -m * dt + c * (1.0 - m * m).max(0.0).sqrt() * z[i];
                }
            }
            (Family::Rmsprop, SdeModel::Compagnoni) => {
                let rho = (1.0 - self.beta2) / self.eta;
                let c = self.eta.sqrt() * sqrt_dt;
                for i in 0..x.len() {
                    let p = st.v[i].sqrt() + self.eps;
                    let xi = x[i];
                    x[i] += -(g[i] * dt + c * std[i] * z[i]) / p - self.theta * xi * dt;
                    st.v[i] += rho * (g[i] * g[i] + std[i] * std[i] - st.v[i]) * dt;
                }
            }
            (Family::Rmsprop, SdeModel::Malladi) => {
                let c2 = (1.0 - self.beta2) / (self.eta * self.eta);
                let decay = self.theta / self.eta;
                for i in 0..x.len() {
                    let sigma0 = self.eta * std[i];
                    let p = sigma0 * st.v[i].max(0.0).sqrt() + self.eps * self.eta;
                    let xi = x[i];
                    x[i] += -(g[i] * dt + sigma0 * sqrt_dt * z[i]) / p - decay * xi * dt;
                    st.v[i] += c2 * (1.0 - st.v[i]) * dt;
                }
            }
            (Family::Adam, model) => {
                let t_end = st.t + dt;
                let (r1, r2, sigma_unit, eps, decay) = match model {
                    SdeModel::Compagnoni => (
                        (1.0 - self.beta1) / self.eta,
                        (1.0 - self.beta2) / self.eta,
                        self.eta.sqrt(),
                        self.eps,
                        self.theta,
                    ),
                    SdeModel::Malladi => {
                        let e2 = self.eta * self.eta;
                        (
                            (1.0 - self.beta1) / e2,
                            (1.0 - self.beta2) / e2,
                            self.eta,
                            self.eps * self.eta,
                            self.theta / self.eta,
                        )
                    }
                };
                let iota1 = -(-r1 * t_end).exp_m1();
                let iota2 = -(-r2 * t_end).exp_m1();
                let scale = iota2.sqrt() / iota1;
                for i in 0..x.len() {
                    let xi = x[i];
                    st.m[i] += r1 * (g[i] - st.m[i]) * dt + sigma_unit * r1 * std[i] * sqrt_dt * z[i];
                    let target = match model {
                        SdeModel::Compagnoni => g[i] * g[i] + std[i] * std[i],
                        SdeModel::Malladi => 1.0,
                    };
                    st.v[i] += r2 * (target - st.v[i]) * dt;
                    let p = match model {
                        SdeModel::Compagnoni => st.v[i].max(0.0).sqrt() + eps * iota2.sqrt(),
                        SdeModel::Malladi => self.eta * std[i] * st.v[i].max(0.0).sqrt() + eps * iota2.sqrt(),
                    };
                    x[i] += -scale * st.m[i] / p * dt - decay * xi * dt;
                }
            }
        }
        st.t += dt;
    }
}

/// SGD's fused substep and loss (see [`Sde::sgd_substep_with_loss`]); `SCALED` multiplies the
/// drift and diffusion coefficients by `scale` (a constant rate skips the multiplications, so its
/// bits and speed are those of the unscheduled kernel).
#[inline(always)]
fn fused_sgd<const SCALED: bool>(
    x: &mut [f64],
    lambda: &[f64],
    ldt: &[f64],
    coef: &[f64],
    z: &[f64],
    scale: f64,
) -> f64 {
    let step = |x: f64, d: f64, c: f64, z: f64| {
        if SCALED { x - scale * d * x + scale * c * z } else { x - d * x + c * z }
    };
    // The loss is summed exactly as `weighted_square_sum` sums it.
    const L: usize = crate::landscape::SUM_LANES;
    let mut acc = [0.0; L];
    let n = x.len();
    let full = n - n % L;
    for base in (0..full).step_by(L) {
        let (xs, ls) = (&mut x[base..base + L], &lambda[base..base + L]);
        let (ds, cs, zs) = (&ldt[base..base + L], &coef[base..base + L], &z[base..base + L]);
        for i in 0..L {
            let xi = step(xs[i], ds[i], cs[i], zs[i]);
            xs[i] = xi;
            acc[i] += ls[i] * xi * xi;
        }
    }
    for i in full..n {
        let xi = step(x[i], ldt[i], coef[i], z[i]);
        x[i] = xi;
        acc[i - full] += lambda[i] * xi * xi;
    }
    let mut total = 0.0;
    for a in acc {
        total += a;
    }
    0.5 * total
}

#[cfg(test)]
mod tests {
    use super::*;
    use kappa_core::task::{NoiseSpec, Sigma};

    /// The generic SGD substep (caller's gradient) is the fused quadratic kernel up to rounding.
    #[test]
    fn generic_sgd_substep_matches_the_fused_kernel() {
        let lambda = [0.5, 1.0, 2.0, 4.0, 3.0];
        let noise = Noise::for_batch(&NoiseSpec::Gaussian { sigma: Sigma::Scalar(2.0) }, 4, lambda.len()).unwrap();
        let params = Hyperparams {
            optimizer: OptimizerKind::Sgd,
            batch_size: 4,
            lr: 0.05,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            seed: 0,
        };
        let (fused, generic) = (
            Sde::new(&params, SdeModel::Compagnoni, 3, Some(&lambda), &noise).unwrap(),
            Sde::generic(&params, SdeModel::Compagnoni, 3).unwrap(),
        );
        let (mut x1, mut x2) = (vec![0.5; 5], vec![0.5; 5]);
        let (mut r1, mut r2) =
            (crate::rng::stream(kappa_core::TrialId(7), 1, 0), crate::rng::stream(kappa_core::TrialId(7), 1, 0));
        let mut scratch = Scratch::new(5);
        let (mut s1, mut s2) = (fused.init(&scratch.g, &noise), generic.init(&scratch.g, &noise));
        for _ in 0..100 {
            assert!(fused.substep(&mut x1, &mut s1, &lambda, &noise, &mut r1, &mut scratch, 1.0).is_some());
            assert!(generic.substep(&mut x2, &mut s2, &lambda, &noise, &mut r2, &mut scratch, 1.0).is_none());
        }
        for (a, b) in x1.iter().zip(&x2) {
            assert!((a - b).abs() < 1e-12, "{x1:?} vs {x2:?}");
        }
    }
}

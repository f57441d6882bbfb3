//! Gradient noise. A minibatch of B samples has scale σ_B = σ₁/√B per coordinate (THEORY.md §1).

use crate::rng::StreamRng;
use kappa_core::task::NoiseSpec;
use rand_distr::{Distribution, StudentT};

/// The standardised noise family.
#[derive(Clone, Debug)]
pub enum Family {
    /// ξ ~ N(0, 1).
    Gaussian,
    /// T ~ t_ν.
    StudentT {
        /// Degrees of freedom.
        nu: f64,
        /// The sampler.
        dist: StudentT<f64>,
    },
}

/// Noise for one minibatch size: `Z_i = σ_i · (standardised draw)`.
#[derive(Clone, Debug)]
pub struct Noise {
    /// Per-coordinate scale σ_B,i.
    pub sigma: Vec<f64>,
    /// The family of the standardised draws.
    pub family: Family,
    /// Per-coordinate standard deviation √Var(Z_i), `None` when the variance is infinite.
    pub std: Option<Vec<f64>>,
}

/// Noise settings that cannot be sampled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid noise: {0}")]
pub struct NoiseError(pub String);

impl Noise {
    /// The noise of a minibatch of `batch_size` samples in dimension `dim`.
    pub fn for_batch(spec: &NoiseSpec, batch_size: u64, dim: usize) -> Result<Noise, NoiseError> {
        let scale = 1.0 / (batch_size.max(1) as f64).sqrt();
        let sigma: Vec<f64> = spec.sigma().values(dim).into_iter().map(|s| s * scale).collect();
        if sigma.len() != dim {
            return Err(NoiseError(format!("{} sigma values for dimension {dim}", sigma.len())));
        }
        let family = match spec {
            NoiseSpec::Gaussian { .. } => Family::Gaussian,
            NoiseSpec::StudentT { nu, .. } => Family::StudentT {
                nu: *nu,
                dist: StudentT::new(*nu).map_err(|e| NoiseError(format!("student_t with nu = {nu}: {e}")))?,
            },
        };
        let std = spec.variance_factor().map(|f| sigma.iter().map(|s| s * f.sqrt()).collect());
        Ok(Noise { sigma, family, std })
    }

    /// tr Σ₁, the trace of the per-sample gradient-noise covariance (B · Σ Var(Z_i) for this
    /// batch size `batch_size`); `None` when the variance is infinite.
    pub fn per_sample_trace(&self, batch_size: u64) -> Option<f64> {
        self.std.as_ref().map(|s| batch_size.max(1) as f64 * s.iter().map(|x| x * x).sum::<f64>())
    }

    /// Writes one standardised draw per coordinate into `z`.
    #[inline]
    pub fn standard(&self, rng: &mut StreamRng, z: &mut [f64]) {
        match &self.family {
            Family::Gaussian => rng.normal.fill(z),
            Family::StudentT { dist, .. } => {
                for zi in z.iter_mut() {
                    *zi = dist.sample(&mut rng.scalar);
                }
            }
        }
    }

    /// `1 − 2 P(g_i < 0)` for a gradient coordinate `grad` with noise scale `sigma`
    /// (THEORY.md §3): `erf(∇f/(√2σ))` for Gaussian noise, `2 F_ν(∇f/σ) − 1` for Student-t.
    #[inline]
    pub fn sign_drift(&self, grad: f64, sigma: f64) -> f64 {
        if sigma == 0.0 {
            return if grad > 0.0 {
                1.0
            } else if grad < 0.0 {
                -1.0
            } else {
                0.0
            };
        }
        match &self.family {
            Family::Gaussian => libm::erf(grad / (std::f64::consts::SQRT_2 * sigma)),
            Family::StudentT { nu, .. } => t_signed_mass(grad / sigma, *nu),
        }
    }
}

/// `2 F_ν(t) − 1` for the Student-t CDF F_ν (odd in t).
pub fn t_signed_mass(t: f64, nu: f64) -> f64 {
    if nu == 1.0 {
        return std::f64::consts::FRAC_2_PI * t.atan();
    }
    if nu == 2.0 {
        return t / (2.0 + t * t).sqrt();
    }
    if !t.is_finite() {
        return t.signum();
    }
    // F(t) = 1 − ½ I_{ν/(ν+t²)}(ν/2, ½) for t ≥ 0.
    let mass = 1.0 - puruspe::betai(nu / 2.0, 0.5, nu / (nu + t * t));
    mass.copysign(t)
}

/// `ℓ_ν = 2Γ((ν+1)/2)/(√(νπ)Γ(ν/2))`, the slope of `2F_ν − 1` at 0 (THEORY.md §3); ℓ_∞ = √(2/π).
pub fn ell(nu: Option<f64>) -> f64 {
    match nu {
        None => (2.0 / std::f64::consts::PI).sqrt(),
        Some(nu) => {
            let ln = puruspe::ln_gamma((nu + 1.0) / 2.0) - puruspe::ln_gamma(nu / 2.0);
            2.0 * ln.exp() / (nu * std::f64::consts::PI).sqrt()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_mass_matches_closed_forms_and_limits() {
        for &t in &[-3.0, -0.5, 0.0, 0.2, 1.0, 4.0] {
            // ν = 1 and 2 have closed forms; the general path must agree with them.
            let general = |nu: f64| {
                let mass = 1.0 - puruspe::betai(nu / 2.0, 0.5, nu / (nu + t * t));
                mass.copysign(t)
            };
            assert!((t_signed_mass(t, 1.0) - general(1.0)).abs() < 1e-10, "t={t}");
            assert!((t_signed_mass(t, 2.0) - general(2.0)).abs() < 1e-10, "t={t}");
            // Large ν approaches the Gaussian erf(t/√2).
            assert!((t_signed_mass(t, 1e6) - libm::erf(t / 2f64.sqrt())).abs() < 1e-5, "t={t}");
        }
        assert!((ell(Some(1.0)) - 2.0 / std::f64::consts::PI).abs() < 1e-12);
        assert!((ell(Some(1e7)) - ell(None)).abs() < 1e-6);
    }
}

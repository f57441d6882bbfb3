//! Loss landscapes. A landscape gives the loss and its exact gradient; noise is added separately.
//!
//! Only the diagonal quadratic exists today; the trait is what other convex losses implement.

use kappa_core::task::LandscapeSpec;

/// A differentiable loss `f: R^d → R`.
pub trait Landscape: Send + Sync {
    /// The dimension d.
    fn dim(&self) -> usize;
    /// `f(x)`.
    fn loss(&self, x: &[f64]) -> f64;
    /// Writes `∇f(x)` into `out`.
    fn grad(&self, x: &[f64], out: &mut [f64]);
    /// The diagonal of the Hessian, where it is constant (quadratics); closed forms need it.
    fn hessian_diagonal(&self) -> Option<&[f64]>;
}

/// `f(x) = ½ Σ λ_i x_i²`.
#[derive(Clone, Debug)]
pub struct Quadratic {
    /// The diagonal of H.
    pub eigenvalues: Vec<f64>,
}

impl Landscape for Quadratic {
    fn dim(&self) -> usize {
        self.eigenvalues.len()
    }

    fn loss(&self, x: &[f64]) -> f64 {
        0.5 * x.iter().zip(&self.eigenvalues).map(|(xi, l)| l * xi * xi).sum::<f64>()
    }

    fn grad(&self, x: &[f64], out: &mut [f64]) {
        for ((o, xi), l) in out.iter_mut().zip(x).zip(&self.eigenvalues) {
            *o = l * xi;
        }
    }

    fn hessian_diagonal(&self) -> Option<&[f64]> {
        Some(&self.eigenvalues)
    }
}

/// Builds the landscape a task names.
pub fn build(spec: &LandscapeSpec) -> Quadratic {
    match spec {
        LandscapeSpec::Quadratic { eigenvalues } => Quadratic { eigenvalues: eigenvalues.values() },
    }
}

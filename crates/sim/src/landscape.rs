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

    #[inline(always)]
    fn loss(&self, x: &[f64]) -> f64 {
        0.5 * weighted_square_sum(&self.eigenvalues, x)
    }

    #[inline(always)]
    fn grad(&self, x: &[f64], out: &mut [f64]) {
        for ((o, xi), l) in out.iter_mut().zip(x).zip(&self.eigenvalues) {
            *o = l * xi;
        }
    }

    fn hessian_diagonal(&self) -> Option<&[f64]> {
        Some(&self.eigenvalues)
    }
}

/// `Σ w_i x_i²`, summed in [`SUM_LANES`] interleaved partial sums combined in a fixed order: the
/// same bits on every machine, and vectorisable (a single running sum is not).
#[inline(always)]
pub fn weighted_square_sum(w: &[f64], x: &[f64]) -> f64 {
    let mut acc = [0.0; SUM_LANES];
    let mut wc = w.chunks_exact(SUM_LANES);
    let mut xc = x.chunks_exact(SUM_LANES);
    for (wk, xk) in (&mut wc).zip(&mut xc) {
        for i in 0..SUM_LANES {
            acc[i] += wk[i] * xk[i] * xk[i];
        }
    }
    for (i, (wi, xi)) in wc.remainder().iter().zip(xc.remainder()).enumerate() {
        acc[i] += wi * xi * xi;
    }
    let mut total = 0.0;
    for a in acc {
        total += a;
    }
    total
}

/// Partial sums used by [`weighted_square_sum`]; part of the simulator's definition.
pub const SUM_LANES: usize = 32;

/// Builds the landscape a task names.
pub fn build(spec: &LandscapeSpec) -> Quadratic {
    match spec {
        LandscapeSpec::Quadratic { eigenvalues } => Quadratic { eigenvalues: eigenvalues.values() },
    }
}

//! Loss landscapes (THEORY.md §1 and §8). A landscape gives the loss, its exact gradient and
//! its Hessian's action; gradient noise is added separately, per parameter coordinate.
//!
//! [`Land`] is what a simulation runs on: the diagonal quadratic (the seed paper's setting, and
//! the GPU kernel's), a quadratic with a full Hessian (given, or a seeded rotation of a
//! spectrum: H = Q diag(λ) Qᵀ), or the double well.

use kappa_core::TrialId;
use kappa_core::task::LandscapeSpec;

/// A differentiable loss `f: R^d → R`.
pub trait Landscape: Send + Sync {
    /// The dimension d.
    fn dim(&self) -> usize;
    /// `f(x)`.
    fn loss(&self, x: &[f64]) -> f64;
    /// Writes `∇f(x)` into `out`.
    fn grad(&self, x: &[f64], out: &mut [f64]);
    /// The diagonal of the Hessian, where the Hessian is constant and diagonal (the diagonal
    /// quadratic): its closed forms and fused kernels need it.
    fn hessian_diagonal(&self) -> Option<&[f64]>;
    /// Writes `H(x) v` into `out`.
    fn hess_vec(&self, x: &[f64], v: &[f64], out: &mut [f64]);
    /// `Σ_i H(x)_ii w_i` (tr(H Σ) for a diagonal Σ = diag w).
    fn hess_diag_dot(&self, x: &[f64], w: &[f64]) -> f64;
    /// Whether the Hessian is the same everywhere (a quadratic's).
    fn constant_hessian(&self) -> bool;
    /// `|∇f(x)|²` and `∇f(x)ᵀ H(x) ∇f(x)` (the gradient noise scales' denominators), with `g`
    /// and `hg` as scratch of length d.
    fn gradient_norms(&self, x: &[f64], g: &mut [f64], hg: &mut [f64]) -> (f64, f64) {
        self.grad(x, g);
        self.hess_vec(x, g, hg);
        (g.iter().map(|v| v * v).sum(), g.iter().zip(hg.iter()).map(|(a, b)| a * b).sum())
    }
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

    fn hess_vec(&self, _x: &[f64], v: &[f64], out: &mut [f64]) {
        self.grad(v, out);
    }

    fn hess_diag_dot(&self, _x: &[f64], w: &[f64]) -> f64 {
        self.eigenvalues.iter().zip(w).map(|(l, w)| l * w).sum()
    }

    fn constant_hessian(&self) -> bool {
        true
    }

    /// One pass, no scratch written: g_i = λ_i x_i.
    #[inline(always)]
    fn gradient_norms(&self, x: &[f64], _g: &mut [f64], _hg: &mut [f64]) -> (f64, f64) {
        let (mut gg, mut ghg) = (0.0, 0.0);
        for (xi, l) in x.iter().zip(&self.eigenvalues) {
            let gi = l * xi;
            gg += gi * gi;
            ghg += l * gi * gi;
        }
        (gg, ghg)
    }
}

/// `f(x) = ½ xᵀ H x` with a full symmetric positive definite H, and its eigendecomposition
/// H = Q diag(λ) Qᵀ (for the closed forms).
#[derive(Clone, Debug)]
pub struct Dense {
    d: usize,
    /// H, row-major.
    pub h: Vec<f64>,
    /// Its eigenvalues.
    pub eigenvalues: Vec<f64>,
    /// Its eigenvectors, as the columns of Q (row-major: `q[i * d + k]` is entry i of vector k).
    pub q: Vec<f64>,
}

impl Dense {
    /// H = Q diag(λ) Qᵀ for the Haar-random orthogonal Q of `seed`.
    pub fn rotated(eigenvalues: Vec<f64>, seed: u64) -> Dense {
        let d = eigenvalues.len();
        let q = random_orthogonal(d, seed);
        let mut h = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..=i {
                let v: f64 = (0..d).map(|k| q[i * d + k] * eigenvalues[k] * q[j * d + k]).sum();
                h[i * d + j] = v;
                h[j * d + i] = v;
            }
        }
        Dense { d, h, eigenvalues, q }
    }

    /// A given symmetric positive definite H (rows), decomposed by Jacobi rotations.
    pub fn given(rows: &[Vec<f64>]) -> Dense {
        let d = rows.len();
        let h: Vec<f64> = rows.iter().flatten().copied().collect();
        let (eigenvalues, q) = symmetric_eigen(&h, d);
        Dense { d, h, eigenvalues, q }
    }

    /// `Qᵀ v`: v in H's eigenbasis.
    pub fn to_eigenbasis(&self, v: &[f64]) -> Vec<f64> {
        let d = self.d;
        (0..d).map(|k| (0..d).map(|i| self.q[i * d + k] * v[i]).sum()).collect()
    }

    /// `(Qᵀ diag(w) Q)_kk` for every k: a diagonal covariance `diag w` seen in the eigenbasis.
    pub fn eigen_variances(&self, w: &[f64]) -> Vec<f64> {
        let d = self.d;
        (0..d).map(|k| (0..d).map(|i| self.q[i * d + k] * self.q[i * d + k] * w[i]).sum()).collect()
    }
}

impl Landscape for Dense {
    fn dim(&self) -> usize {
        self.d
    }

    #[inline(always)]
    fn loss(&self, x: &[f64]) -> f64 {
        let mut total = 0.0;
        for (i, xi) in x.iter().enumerate() {
            total += xi * dot(&self.h[i * self.d..(i + 1) * self.d], x);
        }
        0.5 * total
    }

    #[inline(always)]
    fn grad(&self, x: &[f64], out: &mut [f64]) {
        for (i, o) in out.iter_mut().enumerate() {
            *o = dot(&self.h[i * self.d..(i + 1) * self.d], x);
        }
    }

    fn hessian_diagonal(&self) -> Option<&[f64]> {
        None
    }

    fn hess_vec(&self, _x: &[f64], v: &[f64], out: &mut [f64]) {
        self.grad(v, out);
    }

    fn hess_diag_dot(&self, _x: &[f64], w: &[f64]) -> f64 {
        (0..self.d).map(|i| self.h[i * self.d + i] * w[i]).sum()
    }

    fn constant_hessian(&self) -> bool {
        true
    }
}

/// `Σ a_i b_i` in [`SUM_LANES`] partial sums (fixed order: the same bits everywhere).
#[inline(always)]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0; SUM_LANES];
    let mut ac = a.chunks_exact(SUM_LANES);
    let mut bc = b.chunks_exact(SUM_LANES);
    for (ak, bk) in (&mut ac).zip(&mut bc) {
        for i in 0..SUM_LANES {
            acc[i] += ak[i] * bk[i];
        }
    }
    for (i, (ai, bi)) in ac.remainder().iter().zip(bc.remainder()).enumerate() {
        acc[i] += ai * bi;
    }
    acc.iter().sum()
}

/// `f(x) = Σ a_i (x_i² − 1)²/4` (THEORY.md §8): minima at x_i = ±1 with curvature 2a_i, a
/// barrier a_i/4 at 0.
#[derive(Clone, Debug)]
pub struct DoubleWell {
    /// The scales a_i.
    pub a: Vec<f64>,
}

impl Landscape for DoubleWell {
    fn dim(&self) -> usize {
        self.a.len()
    }

    #[inline(always)]
    fn loss(&self, x: &[f64]) -> f64 {
        let mut acc = [0.0; SUM_LANES];
        for (i, (xi, ai)) in x.iter().zip(&self.a).enumerate() {
            let u = xi * xi - 1.0;
            acc[i % SUM_LANES] += ai * u * u;
        }
        0.25 * acc.iter().sum::<f64>()
    }

    #[inline(always)]
    fn grad(&self, x: &[f64], out: &mut [f64]) {
        for ((o, xi), ai) in out.iter_mut().zip(x).zip(&self.a) {
            *o = ai * xi * (xi * xi - 1.0);
        }
    }

    fn hessian_diagonal(&self) -> Option<&[f64]> {
        None
    }

    fn hess_vec(&self, x: &[f64], v: &[f64], out: &mut [f64]) {
        for (((o, xi), vi), ai) in out.iter_mut().zip(x).zip(v).zip(&self.a) {
            *o = ai * (3.0 * xi * xi - 1.0) * vi;
        }
    }

    fn hess_diag_dot(&self, x: &[f64], w: &[f64]) -> f64 {
        x.iter().zip(w).zip(&self.a).map(|((xi, wi), ai)| ai * (3.0 * xi * xi - 1.0) * wi).sum()
    }

    fn constant_hessian(&self) -> bool {
        false
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

/// A landscape a simulation runs on.
#[derive(Clone, Debug)]
pub enum Land {
    /// The diagonal quadratic.
    Diagonal(Quadratic),
    /// A quadratic with a full Hessian.
    Dense(Dense),
    /// The double well.
    DoubleWell(DoubleWell),
}

impl Land {
    /// The dimension d.
    pub fn dim(&self) -> usize {
        match self {
            Land::Diagonal(q) => q.dim(),
            Land::Dense(q) => q.dim(),
            Land::DoubleWell(w) => w.dim(),
        }
    }

    /// The diagonal quadratic's eigenvalues (its Hessian's diagonal), if it is one.
    pub fn diagonal(&self) -> Option<&[f64]> {
        match self {
            Land::Diagonal(q) => Some(&q.eigenvalues),
            _ => None,
        }
    }
}

/// Builds the landscape a task names.
pub fn build(spec: &LandscapeSpec) -> Land {
    match spec {
        LandscapeSpec::Quadratic { eigenvalues, rotation_seed: None } => {
            Land::Diagonal(Quadratic { eigenvalues: eigenvalues.values() })
        }
        LandscapeSpec::Quadratic { eigenvalues, rotation_seed: Some(seed) } => {
            Land::Dense(Dense::rotated(eigenvalues.values(), *seed))
        }
        LandscapeSpec::QuadraticHessian { hessian } => Land::Dense(Dense::given(hessian)),
        LandscapeSpec::DoubleWell { a } => Land::DoubleWell(DoubleWell { a: a.clone() }),
    }
}

/// The Haar-random d × d orthogonal matrix of `seed` (row-major): modified Gram–Schmidt on the
/// columns of a matrix of standard normals from kappa's own streams, so every machine builds the
/// same bits. (Gram–Schmidt leaves R's diagonal positive, which is what makes Q Haar-distributed.)
pub fn random_orthogonal(d: usize, seed: u64) -> Vec<f64> {
    let mut rng = crate::rng::stream(TrialId(ROTATION_STREAM), seed, 0);
    // Columns, each contiguous while we orthogonalise.
    let mut cols = vec![0.0; d * d];
    rng.normal.fill(&mut cols);
    for k in 0..d {
        for _pass in 0..2 {
            // Twice is enough (Kahan): orthogonal to working precision.
            for j in 0..k {
                let (done, rest) = cols.split_at_mut(k * d);
                let qj = &done[j * d..(j + 1) * d];
                let ck = &mut rest[..d];
                let proj = dot(qj, ck);
                for (c, q) in ck.iter_mut().zip(qj) {
                    *c -= proj * q;
                }
            }
        }
        let ck = &mut cols[k * d..(k + 1) * d];
        let norm = dot(ck, ck).sqrt();
        for c in ck.iter_mut() {
            *c /= norm;
        }
    }
    // Row-major with the vectors as columns: q[i * d + k] = cols[k * d + i].
    let mut q = vec![0.0; d * d];
    for k in 0..d {
        for i in 0..d {
            q[i * d + k] = cols[k * d + i];
        }
    }
    q
}

/// The stream rotations draw from (a constant "trial id": rotations belong to no trial).
const ROTATION_STREAM: u64 = 0x726f_7461_7469_6f6e;

/// Eigenvalues and eigenvectors (columns of Q, row-major) of the symmetric d × d matrix `h`
/// (row-major), by cyclic Jacobi rotations to machine precision.
pub fn symmetric_eigen(h: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = h.to_vec();
    let mut q = vec![0.0; d * d];
    for i in 0..d {
        q[i * d + i] = 1.0;
    }
    let norm: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    for _sweep in 0..100 {
        let off: f64 = (0..d)
            .flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * d + j].powi(2))
            .sum::<f64>()
            .sqrt();
        if off <= 1e-15 * norm {
            break;
        }
        for p in 0..d {
            for r in p + 1..d {
                let apr = a[p * d + r];
                if apr == 0.0 {
                    continue;
                }
                let theta = (a[r * d + r] - a[p * d + p]) / (2.0 * apr);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let (akp, akr) = (a[k * d + p], a[k * d + r]);
                    a[k * d + p] = c * akp - s * akr;
                    a[k * d + r] = s * akp + c * akr;
                }
                for k in 0..d {
                    let (apk, ark) = (a[p * d + k], a[r * d + k]);
                    a[p * d + k] = c * apk - s * ark;
                    a[r * d + k] = s * apk + c * ark;
                }
                for k in 0..d {
                    let (qkp, qkr) = (q[k * d + p], q[k * d + r]);
                    q[k * d + p] = c * qkp - s * qkr;
                    q[k * d + r] = s * qkp + c * qkr;
                }
            }
        }
    }
    ((0..d).map(|i| a[i * d + i]).collect(), q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotation_is_orthogonal_seeded_and_keeps_the_spectrum() {
        let d = 7;
        let q = random_orthogonal(d, 3);
        for a in 0..d {
            for b in 0..d {
                let v: f64 = (0..d).map(|i| q[i * d + a] * q[i * d + b]).sum();
                assert!((v - if a == b { 1.0 } else { 0.0 }).abs() < 1e-13, "QᵀQ[{a}][{b}] = {v}");
            }
        }
        assert_eq!(q, random_orthogonal(d, 3));
        assert_ne!(q, random_orthogonal(d, 4));
        let lambda: Vec<f64> = (1..=d).map(|i| i as f64).collect();
        let rot = Dense::rotated(lambda.clone(), 3);
        // H's trace is the spectrum's sum; H q_k = λ_k q_k.
        let trace: f64 = (0..d).map(|i| rot.h[i * d + i]).sum();
        assert!((trace - 28.0).abs() < 1e-12);
        let col: Vec<f64> = (0..d).map(|i| q[i * d + 2]).collect();
        let mut hq = vec![0.0; d];
        rot.grad(&col, &mut hq);
        for i in 0..d {
            assert!((hq[i] - 3.0 * col[i]).abs() < 1e-12);
        }
        // The loss is ½ Σ λ_k (Qᵀx)_k².
        let x: Vec<f64> = (0..d).map(|i| (i as f64 * 0.7).sin()).collect();
        let y = rot.to_eigenbasis(&x);
        let expect: f64 = 0.5 * y.iter().zip(&lambda).map(|(y, l)| l * y * y).sum::<f64>();
        assert!((rot.loss(&x) - expect).abs() < 1e-12);
    }

    #[test]
    fn jacobi_recovers_a_given_hessian() {
        let rot = Dense::rotated(vec![0.5, 1.0, 2.0, 4.0, 8.0], 11);
        let rows: Vec<Vec<f64>> = rot.h.chunks(5).map(<[f64]>::to_vec).collect();
        let given = Dense::given(&rows);
        let mut ev = given.eigenvalues.clone();
        ev.sort_by(f64::total_cmp);
        for (a, b) in ev.iter().zip([0.5, 1.0, 2.0, 4.0, 8.0]) {
            assert!((a - b).abs() < 1e-12, "{ev:?}");
        }
        // Its eigenvectors diagonalise H too: Σ λ_k (Qᵀx)_k² = xᵀHx.
        let x = [0.3, -1.0, 0.2, 0.9, -0.4];
        let y = given.to_eigenbasis(&x);
        let via: f64 = 0.5 * y.iter().zip(&given.eigenvalues).map(|(y, l)| l * y * y).sum::<f64>();
        assert!((via - given.loss(&x)).abs() < 1e-12);
    }

    #[test]
    fn the_double_well_has_its_minima_and_barrier() {
        let w = DoubleWell { a: vec![1.0, 2.0] };
        assert_eq!(w.loss(&[1.0, -1.0]), 0.0);
        assert!((w.loss(&[0.0, 0.0]) - 0.75).abs() < 1e-15);
        let mut g = [0.0; 2];
        w.grad(&[2.0, 0.5], &mut g);
        assert_eq!(g, [6.0, 2.0 * 0.5 * (0.25 - 1.0)]);
        // The Hessian at a minimum is 2a.
        let mut hv = [0.0; 2];
        w.hess_vec(&[1.0, -1.0], &[1.0, 1.0], &mut hv);
        assert_eq!(hv, [2.0, 4.0]);
    }
}

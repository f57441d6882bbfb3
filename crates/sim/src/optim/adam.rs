//! Adam(W): `m ← β₁m + (1−β₁)g`; `v ← β₂v + (1−β₂)g²`; `x ← x − η m̂/(√v̂ + ε) − ηθx` (θ for
//! AdamW only).

use super::{OptimizerConfig, State, decay};

/// One Adam(W) step.
#[inline(always)]
pub(super) fn step(c: &OptimizerConfig, s: &mut State, x: &mut [f64], g: &[f64], lr: f64) {
    let decay = decay(c, lr);
    s.beta1_pow *= c.beta1;
    s.beta2_pow *= c.beta2;
    let (corr1, corr2) =
        if c.bias_correction { (1.0 / (1.0 - s.beta1_pow), 1.0 / (1.0 - s.beta2_pow)) } else { (1.0, 1.0) };
    let (b1, b2) = (c.beta1, c.beta2);
    for (((xi, gi), mi), vi) in x.iter_mut().zip(g).zip(s.m.iter_mut()).zip(s.v.iter_mut()) {
        *mi = b1 * *mi + (1.0 - b1) * gi;
        *vi = b2 * *vi + (1.0 - b2) * gi * gi;
        let denom = (*vi * corr2).sqrt() + c.eps;
        *xi -= lr * (*mi * corr1) / denom + decay * *xi;
    }
}

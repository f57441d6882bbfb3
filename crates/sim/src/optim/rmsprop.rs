//! RMSprop(W): `v ← β₂v + (1−β₂)g²`; `x ← x − η g/(√v̂ + ε) − ηθx` (θ for RMSpropW only).

use super::{OptimizerConfig, State, decay};

/// One RMSprop(W) step.
#[inline(always)]
pub(super) fn step(c: &OptimizerConfig, s: &mut State, x: &mut [f64], g: &[f64], lr: f64) {
    let decay = decay(c, lr);
    s.beta2_pow *= c.beta2;
    let corr2 = if c.bias_correction { 1.0 / (1.0 - s.beta2_pow) } else { 1.0 };
    let b = c.beta2;
    for ((xi, gi), vi) in x.iter_mut().zip(g).zip(s.v.iter_mut()) {
        *vi = b * *vi + (1.0 - b) * gi * gi;
        let denom = (*vi * corr2).sqrt() + c.eps;
        *xi -= lr * gi / denom + decay * *xi;
    }
}

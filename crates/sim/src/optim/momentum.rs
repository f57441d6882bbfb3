//! Heavy-ball momentum (PyTorch `SGD(momentum=μ)`, dampening 0), μ = `beta1`:
//! `b ← μb + g`; `x ← x − ηb − ηθx` (THEORY.md §8).

use super::{OptimizerConfig, State, decay};

/// One heavy-ball step.
#[inline(always)]
pub(super) fn step(c: &OptimizerConfig, s: &mut State, x: &mut [f64], g: &[f64], lr: f64) {
    let decay = decay(c, lr);
    let mu = c.beta1;
    for ((xi, gi), bi) in x.iter_mut().zip(g).zip(s.m.iter_mut()) {
        *bi = mu * *bi + gi;
        *xi -= lr * *bi + decay * *xi;
    }
}

//! Nesterov momentum (PyTorch `SGD(momentum=μ, nesterov=True)`), μ = `beta1`:
//! `b ← μb + g`; `x ← x − η(g + μb) − ηθx` (THEORY.md §8).

use super::{OptimizerConfig, State, decay};

/// One Nesterov step.
#[inline(always)]
pub(super) fn step(c: &OptimizerConfig, s: &mut State, x: &mut [f64], g: &[f64], lr: f64) {
    let decay = decay(c, lr);
    let mu = c.beta1;
    for ((xi, gi), bi) in x.iter_mut().zip(g).zip(s.m.iter_mut()) {
        *bi = mu * *bi + gi;
        *xi -= lr * (gi + mu * *bi) + decay * *xi;
    }
}

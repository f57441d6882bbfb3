//! Signum (Bernstein et al. 2018): `m ← β₁m + (1−β₁)g`; `x ← x − η sign(m) − ηθx`
//! (THEORY.md §8). With β₁ = 0 it is SignSGD, bit for bit.

use super::{OptimizerConfig, State, decay, sign};

/// One Signum step.
#[inline(always)]
pub(super) fn step(c: &OptimizerConfig, s: &mut State, x: &mut [f64], g: &[f64], lr: f64) {
    let decay = decay(c, lr);
    let b1 = c.beta1;
    for ((xi, gi), mi) in x.iter_mut().zip(g).zip(s.m.iter_mut()) {
        *mi = b1 * *mi + (1.0 - b1) * gi;
        *xi -= lr * sign(*mi) + decay * *xi;
    }
}

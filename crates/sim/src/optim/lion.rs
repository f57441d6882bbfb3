//! Lion (Chen et al. 2023, arXiv 2302.06675): `c = β₁m + (1−β₁)g`; `x ← x − η(sign(c) + θx)`;
//! `m ← β₂m + (1−β₂)g` (THEORY.md §8). With β₁ = 0 it is SignSGD, bit for bit.

use super::{OptimizerConfig, State, decay, sign};

/// One Lion step.
#[inline(always)]
pub(super) fn step(c: &OptimizerConfig, s: &mut State, x: &mut [f64], g: &[f64], lr: f64) {
    let decay = decay(c, lr);
    let (b1, b2) = (c.beta1, c.beta2);
    for ((xi, gi), mi) in x.iter_mut().zip(g).zip(s.m.iter_mut()) {
        let ci = b1 * *mi + (1.0 - b1) * gi;
        *xi -= lr * sign(ci) + decay * *xi;
        *mi = b2 * *mi + (1.0 - b2) * gi;
    }
}

//! Standard normal variates: the hot spot of every simulation.

use crate::rng::StreamRng;
use rand_distr::{Distribution, StandardNormal};

/// Fills `out` with independent N(0, 1) draws from `rng`.
#[inline]
pub fn fill(rng: &mut StreamRng, out: &mut [f64]) {
    for o in out.iter_mut() {
        *o = StandardNormal.sample(rng);
    }
}

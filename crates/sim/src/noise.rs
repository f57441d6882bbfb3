//! Gradient noise models. A minibatch of B samples has σ_B = σ₁/√B (THEORY.md §1).

use crate::rng::StreamRng;
use kappa_core::task::NoiseSpec;
use rand_distr::{Distribution, StandardNormal};

/// Noise for one minibatch size.
#[derive(Clone, Debug)]
pub enum Noise {
    /// `Z_i = σ_B ξ_i`.
    Gaussian {
        /// Per-minibatch standard deviation σ_B.
        sigma: f64,
    },
}

impl Noise {
    /// The noise of a minibatch of `batch_size` samples.
    pub fn for_batch(spec: &NoiseSpec, batch_size: u64) -> Noise {
        let scale = 1.0 / (batch_size.max(1) as f64).sqrt();
        match spec {
            NoiseSpec::Gaussian { sigma } => Noise::Gaussian {
                sigma: sigma * scale,
            },
        }
    }

    /// Adds one draw of the noise to every coordinate of `g`.
    #[inline]
    pub fn add_to(&self, rng: &mut StreamRng, g: &mut [f64]) {
        match *self {
            Noise::Gaussian { sigma } => {
                if sigma == 0.0 {
                    return;
                }
                for gi in g.iter_mut() {
                    let z: f64 = StandardNormal.sample(rng);
                    *gi += sigma * z;
                }
            }
        }
    }
}

//! Hyperparameters of one trial: the point of the grid it came from.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The optimizers kappa knows (THEORY.md §2). The names are the sweep file's spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Plain stochastic gradient descent.
    Sgd,
    /// Sign of the stochastic gradient.
    SignSgd,
    /// RMSprop (no weight decay).
    Rmsprop,
    /// RMSprop with decoupled weight decay.
    RmspropW,
    /// Adam (no weight decay).
    Adam,
    /// Adam with decoupled weight decay.
    AdamW,
}

impl OptimizerKind {
    /// Every optimizer, in a fixed order.
    pub const ALL: [OptimizerKind; 6] = [
        OptimizerKind::Sgd,
        OptimizerKind::SignSgd,
        OptimizerKind::Rmsprop,
        OptimizerKind::RmspropW,
        OptimizerKind::Adam,
        OptimizerKind::AdamW,
    ];

    /// The name used in sweep files, exports and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::SignSgd => "signsgd",
            OptimizerKind::Rmsprop => "rmsprop",
            OptimizerKind::RmspropW => "rmspropw",
            OptimizerKind::Adam => "adam",
            OptimizerKind::AdamW => "adamw",
        }
    }

    /// Whether the optimizer reads `beta1` (first-moment averaging).
    pub fn uses_beta1(self) -> bool {
        matches!(self, OptimizerKind::Adam | OptimizerKind::AdamW)
    }

    /// Whether the optimizer reads `beta2` and `eps` (second-moment preconditioning).
    /// RMSprop's single β is `beta2`.
    pub fn uses_beta2(self) -> bool {
        matches!(self, OptimizerKind::Rmsprop | OptimizerKind::RmspropW | OptimizerKind::Adam | OptimizerKind::AdamW)
    }
}

impl fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Error for an optimizer name kappa does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown optimizer `{0}` (expected one of: sgd, signsgd, rmsprop, rmspropw, adam, adamw)")]
pub struct UnknownOptimizer(pub String);

impl FromStr for OptimizerKind {
    type Err = UnknownOptimizer;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OptimizerKind::ALL
            .into_iter()
            .find(|o| o.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownOptimizer(s.to_string()))
    }
}

/// One point of a sweep grid. Fields that an optimizer does not read are still part of the point
/// (and of its id), exactly as the grid produced them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hyperparams {
    /// Which optimizer runs.
    pub optimizer: OptimizerKind,
    /// Minibatch size B; in simulations σ_B = σ₁/√B.
    pub batch_size: u64,
    /// Learning rate η.
    pub lr: f64,
    /// First-moment decay β₁ (Adam family).
    pub beta1: f64,
    /// Second-moment decay β₂ (Adam and RMSprop families).
    pub beta2: f64,
    /// ε added outside the square root.
    pub eps: f64,
    /// Decoupled weight decay θ (per-step decay η·θ·x).
    pub weight_decay: f64,
    /// Replicate seed: a trial's random streams derive from this and its id only.
    pub seed: u64,
}

impl Hyperparams {
    /// Defaults for every axis a grid leaves out.
    pub const DEFAULT_BATCH_SIZE: u64 = 1;
    /// Default β₁.
    pub const DEFAULT_BETA1: f64 = 0.9;
    /// Default β₂.
    pub const DEFAULT_BETA2: f64 = 0.999;
    /// Default ε.
    pub const DEFAULT_EPS: f64 = 1e-8;
    /// Default weight decay.
    pub const DEFAULT_WEIGHT_DECAY: f64 = 0.0;
    /// Default seed.
    pub const DEFAULT_SEED: u64 = 0;
}

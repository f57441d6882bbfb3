//! The optimizers kappa knows, as one table (THEORY.md §2 and §8).
//!
//! Every fact about an optimizer that is not its update rule lives in [`OPTIMIZERS`]: which
//! hyperparameters it reads, whether it is sign-like, whether it has an SDE, its default scaling
//! rule and the theory's learning-rate exponent. Specs, scaling rules, the simulator (CPU and GPU
//! kernel), the report and the benches read it from here; the update rules themselves are one
//! file each in kappa-sim's `optim`.

use crate::params::AxisName;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The optimizers kappa knows. The names are the sweep file's spelling. New ones go at the end:
/// the order is [`OPTIMIZERS`]'s and the GPU kernel's case numbers.
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
    /// SGD with heavy-ball momentum (PyTorch `SGD(momentum=beta1)`, dampening 0).
    Momentum,
    /// SGD with Nesterov momentum (PyTorch `nesterov=True`).
    Nesterov,
    /// Sign of an exponential moving average of the gradient (Bernstein et al. 2018).
    Signum,
    /// Lion (Chen et al. 2023): the sign of an interpolation of momentum and gradient.
    Lion,
}

/// What kappa knows about one optimizer, besides its update rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptimizerInfo {
    /// Which optimizer.
    pub kind: OptimizerKind,
    /// The name in sweep files, exports and on the wire.
    pub name: &'static str,
    /// Its update, in one line (for `--help` and errors).
    pub update: &'static str,
    /// Reads `beta1` (first-moment averaging; heavy-ball and Nesterov's μ).
    pub beta1: bool,
    /// Reads `beta2` (second moments; Lion's momentum decay).
    pub beta2: bool,
    /// Reads `eps` (ε outside the square root).
    pub eps: bool,
    /// Reads `weight_decay` (decoupled θ: `x ← x − ηθx`).
    pub weight_decay: bool,
    /// Its step is a sign: its size does not depend on the gradient's scale.
    pub sign_like: bool,
    /// Has an SDE (THEORY.md §3) that `kind = "sde"` integrates.
    pub sde: bool,
    /// Has one of Malladi et al.'s SDEs (`sde_model = "malladi"`).
    pub malladi_sde: bool,
    /// The preset scaling rule that keeps it invariant when the batch grows (THEORY.md §5).
    pub default_rule: &'static str,
    /// The theory's learning-rate exponent in the noise-dominated regime (η* ∝ B^a).
    pub theory_lr_exponent: f64,
}

const fn row(kind: OptimizerKind, name: &'static str, update: &'static str) -> OptimizerInfo {
    OptimizerInfo {
        kind,
        name,
        update,
        beta1: false,
        beta2: false,
        eps: false,
        weight_decay: false,
        sign_like: false,
        sde: false,
        malladi_sde: false,
        default_rule: "sgd-linear",
        theory_lr_exponent: 1.0,
    }
}

/// The optimizer table, in [`OptimizerKind`]'s order.
pub const OPTIMIZERS: [OptimizerInfo; 10] = [
    OptimizerInfo { sde: true, ..row(OptimizerKind::Sgd, "sgd", "x ← x − η g") },
    OptimizerInfo {
        sign_like: true,
        sde: true,
        default_rule: "signsgd-sqrt",
        theory_lr_exponent: 0.5,
        ..row(OptimizerKind::SignSgd, "signsgd", "x ← x − η sign(g)")
    },
    OptimizerInfo {
        beta2: true,
        eps: true,
        sde: true,
        malladi_sde: true,
        default_rule: "adam-sqrt",
        theory_lr_exponent: 0.5,
        ..row(OptimizerKind::Rmsprop, "rmsprop", "v ← β₂v + (1−β₂)g²; x ← x − η g/(√v̂ + ε)")
    },
    OptimizerInfo {
        beta2: true,
        eps: true,
        weight_decay: true,
        sde: true,
        malladi_sde: true,
        default_rule: "adamw-sqrt",
        theory_lr_exponent: 0.5,
        ..row(OptimizerKind::RmspropW, "rmspropw", "rmsprop − ηθx")
    },
    OptimizerInfo {
        beta1: true,
        beta2: true,
        eps: true,
        sde: true,
        malladi_sde: true,
        default_rule: "adam-sqrt",
        theory_lr_exponent: 0.5,
        ..row(OptimizerKind::Adam, "adam", "m ← β₁m + (1−β₁)g; v as rmsprop; x ← x − η m̂/(√v̂ + ε)")
    },
    OptimizerInfo {
        beta1: true,
        beta2: true,
        eps: true,
        weight_decay: true,
        sde: true,
        malladi_sde: true,
        default_rule: "adamw-sqrt",
        theory_lr_exponent: 0.5,
        ..row(OptimizerKind::AdamW, "adamw", "adam − ηθx")
    },
    OptimizerInfo {
        beta1: true,
        weight_decay: true,
        ..row(OptimizerKind::Momentum, "momentum", "b ← β₁b + g; x ← x − η b − ηθx")
    },
    OptimizerInfo {
        beta1: true,
        weight_decay: true,
        ..row(OptimizerKind::Nesterov, "nesterov", "b ← β₁b + g; x ← x − η (g + β₁b) − ηθx")
    },
    OptimizerInfo {
        beta1: true,
        weight_decay: true,
        sign_like: true,
        default_rule: "signsgd-sqrt",
        theory_lr_exponent: 0.5,
        ..row(OptimizerKind::Signum, "signum", "m ← β₁m + (1−β₁)g; x ← x − η sign(m) − ηθx")
    },
    OptimizerInfo {
        beta1: true,
        beta2: true,
        weight_decay: true,
        sign_like: true,
        default_rule: "signsgd-sqrt",
        theory_lr_exponent: 0.5,
        ..row(OptimizerKind::Lion, "lion", "x ← x − η (sign(β₁m + (1−β₁)g) + θx); m ← β₂m + (1−β₂)g")
    },
];

impl OptimizerKind {
    /// Every optimizer, in a fixed order (the table's).
    pub const ALL: [OptimizerKind; 10] = {
        let mut all = [OptimizerKind::Sgd; 10];
        let mut i = 0;
        while i < OPTIMIZERS.len() {
            all[i] = OPTIMIZERS[i].kind;
            i += 1;
        }
        all
    };

    /// Its row of [`OPTIMIZERS`].
    pub fn info(self) -> &'static OptimizerInfo {
        &OPTIMIZERS[self as usize]
    }

    /// The name used in sweep files, exports and on the wire.
    pub fn as_str(self) -> &'static str {
        self.info().name
    }

    /// Whether the optimizer reads `beta1` (first-moment averaging, momentum's μ).
    pub fn uses_beta1(self) -> bool {
        self.info().beta1
    }

    /// Whether the optimizer reads `beta2` (RMSprop's single β is `beta2`; Lion's momentum decay).
    pub fn uses_beta2(self) -> bool {
        self.info().beta2
    }

    /// Whether the optimizer reads `eps`.
    pub fn uses_eps(self) -> bool {
        self.info().eps
    }

    /// Whether the optimizer reads `weight_decay` (decoupled weight decay θ).
    pub fn uses_weight_decay(self) -> bool {
        self.info().weight_decay
    }

    /// Whether its step is a sign (SignSGD, Signum, Lion).
    pub fn sign_like(self) -> bool {
        self.info().sign_like
    }

    /// Whether `kind = "sde"` can integrate its SDE.
    pub fn has_sde(self) -> bool {
        self.info().sde
    }

    /// The preset scaling rule for this optimizer (THEORY.md §5): what keeps it invariant when
    /// the batch grows.
    pub fn default_rule(self) -> &'static str {
        self.info().default_rule
    }

    /// The theory's learning-rate exponent in the noise-dominated regime (η* ∝ B^a, THEORY.md
    /// §5 and §7): 1 for SGD with or without momentum, 0.5 for the sign-like and adaptive ones.
    pub fn theory_lr_exponent(self) -> f64 {
        self.info().theory_lr_exponent
    }

    /// Whether the optimizer reads the built-in hyperparameter `axis`: tables and labels show
    /// only those (an SGD row has no β, an Adam row no weight decay).
    pub fn reads(self, axis: AxisName) -> bool {
        let i = self.info();
        match axis {
            AxisName::Beta1 => i.beta1,
            AxisName::Beta2 => i.beta2,
            AxisName::Eps => i.eps,
            AxisName::WeightDecay => i.weight_decay,
            AxisName::Optimizer | AxisName::BatchSize | AxisName::Lr | AxisName::Seed => true,
        }
    }

    /// The names of the optimizers that have an SDE under `malladi` or not, for errors.
    pub fn with_sde(malladi: bool) -> String {
        names(|i| if malladi { i.malladi_sde } else { i.sde })
    }

    /// Why `kind = "sde"` cannot run this optimizer (under Malladi et al.'s model with
    /// `malladi`): the message names the optimizers that have one.
    pub fn no_sde(self, malladi: bool) -> String {
        if malladi {
            format!("sde_model = \"malladi\" defines SDEs for {} only, not {self}", OptimizerKind::with_sde(true))
        } else {
            format!(
                "{self} has no SDE in kappa yet; the optimizers with one are {} (use kind = \"optimizer\" to run \
                 {self} itself)",
                OptimizerKind::with_sde(false)
            )
        }
    }

    /// Every optimizer's name, comma separated.
    pub fn names() -> String {
        names(|_| true)
    }
}

fn names(keep: impl Fn(&OptimizerInfo) -> bool) -> String {
    OPTIMIZERS.iter().filter(|i| keep(i)).map(|i| i.name).collect::<Vec<_>>().join(", ")
}

impl fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Error for an optimizer name kappa does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown optimizer `{0}` (expected one of: {names})", names = OptimizerKind::names())]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_the_enums_order_and_names_round_trip() {
        for (i, o) in OptimizerKind::ALL.into_iter().enumerate() {
            assert_eq!(o as usize, i);
            assert_eq!(o.info().kind, o);
            assert_eq!(o.as_str().parse::<OptimizerKind>(), Ok(o));
            // serde's spelling is the table's.
            assert_eq!(serde_json::to_value(o).unwrap(), serde_json::Value::from(o.as_str()));
        }
        assert!("momentumm".parse::<OptimizerKind>().unwrap_err().to_string().contains("signum, lion"));
    }

    #[test]
    fn rules_and_exponents_follow_the_theory() {
        for o in OptimizerKind::ALL {
            let exp = if o.sign_like() || o.uses_eps() { 0.5 } else { 1.0 };
            assert_eq!(o.theory_lr_exponent(), exp, "{o}");
            assert!(crate::ScalingRule::preset(o.default_rule()).is_some(), "{o}");
            assert!(!o.info().malladi_sde || o.has_sde());
        }
        assert_eq!(OptimizerKind::Momentum.default_rule(), "sgd-linear");
        assert_eq!(OptimizerKind::with_sde(true), "rmsprop, rmspropw, adam, adamw");
    }
}

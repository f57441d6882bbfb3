//! Scaling rules (THEORY.md §5): how hyperparameters change when the batch grows by κ.
//!
//! A rule is data, not a code path: exponents `(a, b, c, d)` with `η ∝ κ^a`, `1−β ∝ κ^b`,
//! `ε ∝ κ^c`, `θ ∝ κ^d`. The named presets are just values of this struct.

use crate::params::{Hyperparams, Params};
use serde::{Deserialize, Serialize};

/// What a sweep expects a rule to do (for `kappa report --check`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Invariant over the whole run.
    Holds,
    /// Invariant only after a transient.
    HoldsLate,
    /// Not invariant.
    Fails,
}

impl Verdict {
    /// The name used in files and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Holds => "holds",
            Verdict::HoldsLate => "holds late",
            Verdict::Fails => "fails",
        }
    }
}

/// One scaling rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScalingRule {
    /// Name shown in reports.
    pub name: String,
    /// Exponent of κ for the learning rate.
    pub lr: f64,
    /// Exponent of κ for 1 − β (both β₁ and β₂).
    pub one_minus_beta: f64,
    /// Exponent of κ for ε.
    pub eps: f64,
    /// Exponent of κ for the decoupled weight decay θ.
    pub weight_decay: f64,
    /// The verdict the sweep expects, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Verdict>,
    /// Exponents of κ for numeric named parameters and task fields, by full name
    /// (`params.warmup`, `task.samples`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub named: std::collections::BTreeMap<String, f64>,
}

/// `v × factor`: a whole number stays whole (rounded to nearest), a real is multiplied; anything
/// else is left as it is (the spec refuses exponents for non-numeric parameters).
pub fn scale_value(v: &serde_json::Value, factor: f64) -> serde_json::Value {
    match v {
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => {
            let x = n.as_f64().unwrap_or(0.0) * factor;
            serde_json::Value::from(x.round() as i64)
        }
        serde_json::Value::Number(n) => serde_json::Value::from(n.as_f64().unwrap_or(0.0) * factor),
        other => other.clone(),
    }
}

/// The presets of THEORY.md §5, plus `none` (the batch grows, nothing else changes).
pub const PRESETS: [(&str, [f64; 4]); 5] = [
    ("sgd-linear", [1.0, 0.0, 0.0, 0.0]),
    ("signsgd-sqrt", [0.5, 0.0, 0.0, 0.0]),
    ("adam-sqrt", [0.5, 1.0, -0.5, 0.0]),
    ("adamw-sqrt", [0.5, 1.0, -0.5, 0.5]),
    ("none", [0.0, 0.0, 0.0, 0.0]),
];

impl ScalingRule {
    /// A preset by name.
    pub fn preset(name: &str) -> Option<ScalingRule> {
        PRESETS.iter().find(|(n, _)| *n == name).map(|(n, [a, b, c, d])| ScalingRule {
            name: n.to_string(),
            lr: *a,
            one_minus_beta: *b,
            eps: *c,
            weight_decay: *d,
            expect: None,
            named: Default::default(),
        })
    }

    /// `1 − κ^b (1 − β)`, the scaled β.
    pub fn scaled_beta(&self, beta: f64, kappa: u64) -> f64 {
        1.0 - (kappa as f64).powf(self.one_minus_beta) * (1.0 - beta)
    }

    /// The parameters of `base` scaled by κ: [`ScalingRule::apply_hyper`] for the built-ins, and
    /// each user parameter the rule gives an exponent × κ^exponent (whole numbers rounded). Task
    /// fields the rule scales are the plan's to set: they come with the scaled trial's task.
    pub fn apply(&self, base: &Params, kappa: u64) -> Params {
        let mut p = Params { hyper: self.apply_hyper(&base.hyper, kappa), ..base.clone() };
        for (name, e) in self.named.iter().filter(|(n, _)| n.starts_with(crate::params::PARAM_PREFIX)) {
            if let Some(v) = p.named.get_mut(name) {
                *v = scale_value(v, (kappa as f64).powf(*e));
            }
        }
        p
    }

    /// Whether the rule scales a `[task]` field (its scaled trials then run tasks of their own).
    pub fn scales_task(&self) -> bool {
        self.named.keys().any(|n| n.starts_with(crate::params::TASK_PREFIX))
    }

    /// The hyperparameters of `base` scaled by κ: batch × κ and the rule's powers of κ. Only what
    /// the optimizer reads is scaled ([`crate::OptimizerKind::reads`]), so a trial never records a value
    /// its optimizer would not accept.
    pub fn apply_hyper(&self, base: &Hyperparams, kappa: u64) -> Hyperparams {
        let k = kappa as f64;
        let o = base.optimizer;
        Hyperparams {
            optimizer: o,
            batch_size: base.batch_size * kappa,
            lr: base.lr * k.powf(self.lr),
            beta1: if o.uses_beta1() { self.scaled_beta(base.beta1, kappa) } else { base.beta1 },
            beta2: if o.uses_beta2() { self.scaled_beta(base.beta2, kappa) } else { base.beta2 },
            eps: if o.uses_eps() { base.eps * k.powf(self.eps) } else { base.eps },
            weight_decay: if o.uses_weight_decay() {
                base.weight_decay * k.powf(self.weight_decay)
            } else {
                base.weight_decay
            },
            seed: base.seed,
        }
    }
}

/// The `[scaling]` table, validated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scaling {
    /// Batch multipliers, ascending, starting with 1 (the base).
    pub kappas: Vec<u64>,
    /// The rules.
    pub rules: Vec<ScalingRule>,
    /// Relative deviation from κ = 1 still counted as invariant.
    pub tolerance: f64,
}

impl Scaling {
    /// Default tolerance: 5%.
    pub const DEFAULT_TOLERANCE: f64 = 0.05;

    /// Scaled variants per base point: every rule at every κ other than 1.
    pub fn variants(&self) -> u64 {
        (self.rules.len() * (self.kappas.len() - 1)) as u64
    }

    /// Variant `v` (1-based; 0 is the base) as (rule index, κ).
    pub fn variant(&self, v: u64) -> (usize, u64) {
        let per_rule = (self.kappas.len() - 1) as u64;
        let v = v - 1;
        ((v / per_rule) as usize, self.kappas[1 + (v % per_rule) as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OptimizerKind;

    #[test]
    fn adamw_sqrt_reproduces_theory_t7() {
        let base = Hyperparams {
            optimizer: OptimizerKind::AdamW,
            batch_size: 1,
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1.0,
            seed: 0,
        };
        let s = ScalingRule::preset("adamw-sqrt").unwrap().apply_hyper(&base, 4);
        assert_eq!(s.batch_size, 4);
        assert!((s.lr - 2e-3).abs() < 1e-15);
        assert!((s.beta1 - 0.6).abs() < 1e-12 && (s.beta2 - 0.996).abs() < 1e-12);
        assert!((s.eps - 5e-9).abs() < 1e-20);
        assert!((s.weight_decay - 2.0).abs() < 1e-12);
        let fixed = ScalingRule::preset("adam-sqrt").unwrap().apply_hyper(&base, 4);
        assert_eq!(fixed.weight_decay, 1.0);
        assert_eq!(ScalingRule::preset("none").unwrap().apply_hyper(&base, 8).lr, 1e-3);
    }

    /// `sgd-linear` on momentum and Nesterov: η × κ with μ (`beta1`) and θ fixed; `adam-sqrt` on
    /// Lion scales both of its βs and leaves ε, which Lion does not read, alone.
    #[test]
    fn rules_on_the_momentum_optimizers() {
        for o in [OptimizerKind::Momentum, OptimizerKind::Nesterov] {
            let base = Hyperparams { optimizer: o, lr: 0.01, beta1: 0.9, weight_decay: 0.1, ..Hyperparams::defaults() };
            let s = ScalingRule::preset(o.default_rule()).unwrap().apply_hyper(&base, 4);
            assert_eq!((s.batch_size, s.beta1, s.weight_decay), (4 * base.batch_size, 0.9, 0.1), "{o}");
            assert!((s.lr - 0.04).abs() < 1e-15);
        }
        let lion = Hyperparams {
            optimizer: OptimizerKind::Lion,
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.99,
            ..Hyperparams::defaults()
        };
        let s = ScalingRule::preset("adam-sqrt").unwrap().apply_hyper(&lion, 4);
        assert!((s.beta1 - 0.6).abs() < 1e-12 && (s.beta2 - 0.96).abs() < 1e-12);
        assert_eq!(s.eps, lion.eps);
    }
}

//! What a trial runs: the `[task]` table of a sweep file.
//!
//! The task is the same for every trial of a sweep; the grid varies the [`crate::Hyperparams`].
//! Defaults are filled in at parse time, so the canonical form (and so the trial id) does not depend
//! on whether a default was written out in the file.

use serde::{Deserialize, Serialize};

/// The `[task]` table, tagged by `kind`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum TaskSpec {
    /// The discrete optimizer on a simulated landscape with simulated gradient noise (THEORY.md §2).
    Optimizer(SimTask),
}

impl TaskSpec {
    /// The `kind` name as written in sweep files.
    pub fn kind_name(&self) -> &'static str {
        match self {
            TaskSpec::Optimizer(_) => "optimizer",
        }
    }
}

/// A simulation over many independent paths.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimTask {
    /// The loss landscape.
    pub landscape: LandscapeSpec,
    /// Per-sample gradient noise; a minibatch of B samples has σ_B = σ₁/√B.
    pub noise: NoiseSpec,
    /// Starting point, the same in every coordinate.
    #[serde(default)]
    pub x0: f64,
    /// Independent paths (Monte Carlo replicates inside one trial).
    #[serde(default = "default_paths")]
    pub paths: u32,
    /// Budget in samples seen (steps × B), so trials with different batch sizes are comparable.
    pub samples: u64,
    /// How often a curve point is recorded: `"1%"` of the steps, or a whole number of steps.
    #[serde(default)]
    pub record_every: RecordEvery,
    /// Fraction of the run discarded before the stationary loss is averaged.
    #[serde(default = "default_burn_in")]
    pub burn_in: f64,
}

impl SimTask {
    /// Paths when the file gives none.
    pub const DEFAULT_PATHS: u32 = 1000;
    /// Burn-in fraction when the file gives none.
    pub const DEFAULT_BURN_IN: f64 = 0.5;
}

fn default_paths() -> u32 {
    SimTask::DEFAULT_PATHS
}

fn default_burn_in() -> f64 {
    SimTask::DEFAULT_BURN_IN
}

/// The loss landscape, tagged by `kind`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum LandscapeSpec {
    /// `f(x) = ½ xᵀ diag(λ) x`.
    Quadratic {
        /// The diagonal λ_i > 0; its length is the dimension d.
        eigenvalues: Vec<f64>,
    },
}

impl LandscapeSpec {
    /// Dimension d of the parameter vector.
    pub fn dim(&self) -> usize {
        match self {
            LandscapeSpec::Quadratic { eigenvalues } => eigenvalues.len(),
        }
    }
}

/// Gradient noise, tagged by `kind`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum NoiseSpec {
    /// `Z_i = σ ξ_i`, ξ standard normal.
    Gaussian {
        /// Per-sample standard deviation σ₁ ≥ 0.
        sigma: f64,
    },
}

/// How often curve points are recorded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RecordEvery {
    /// A percentage of the total number of steps (0 < p ≤ 100).
    Percent(f64),
    /// A fixed number of steps (≥ 1).
    Steps(u64),
}

impl Default for RecordEvery {
    fn default() -> Self {
        RecordEvery::Percent(1.0)
    }
}

impl RecordEvery {
    /// The record interval in steps for a run of `steps` steps (at least 1).
    pub fn interval(self, steps: u64) -> u64 {
        match self {
            RecordEvery::Percent(p) => ((steps as f64) * p / 100.0).round().max(1.0) as u64,
            RecordEvery::Steps(n) => n.max(1),
        }
    }
}

impl Serialize for RecordEvery {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RecordEvery::Percent(p) => s.serialize_str(&format!("{p}%")),
            RecordEvery::Steps(n) => s.serialize_u64(*n),
        }
    }
}

impl<'de> Deserialize<'de> for RecordEvery {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = RecordEvery;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(r#"a percentage such as "1%" or a whole number of steps"#)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RecordEvery, E> {
                if v < 1 {
                    return Err(E::custom(format!(
                        "record_every must be at least 1 step, got {v}"
                    )));
                }
                Ok(RecordEvery::Steps(v as u64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RecordEvery, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RecordEvery, E> {
                let p = v
                    .trim()
                    .strip_suffix('%')
                    .and_then(|n| n.trim().parse::<f64>().ok())
                    .ok_or_else(|| {
                        E::custom(format!(r#"record_every must look like "1%", got "{v}""#))
                    })?;
                if !(p > 0.0 && p <= 100.0) {
                    return Err(E::custom(format!(
                        "record_every must be in (0%, 100%], got {v}"
                    )));
                }
                Ok(RecordEvery::Percent(p))
            }
        }
        d.deserialize_any(V)
    }
}

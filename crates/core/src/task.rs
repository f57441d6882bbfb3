//! What a trial runs: the `[task]` table of a sweep file.
//!
//! The task is the same for every trial of a sweep; the grid varies the [`crate::Hyperparams`].
//! Defaults are filled in at parse time, so the canonical form (and so the trial id) does not depend
//! on whether a default was written out in the file.

pub use crate::schedule::LrSchedule;
use serde::{Deserialize, Serialize};

/// The `[task]` table, tagged by `kind`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum TaskSpec {
    /// The discrete optimizer on a simulated landscape with simulated gradient noise (THEORY.md §2).
    Optimizer(SimTask),
    /// The optimizer's SDE integrated by Euler–Maruyama (THEORY.md §3).
    Sde(SimTask),
    /// A network trained natively (logistic regression or an MLP) with the simulator's optimizers.
    Train(TrainTask),
    /// A user program run as a child process per trial, reporting metrics as JSON lines.
    Command(CommandTask),
    /// A trivial trial that only sleeps: for measuring dispatch.
    Noop {
        /// How long each trial sleeps, in milliseconds.
        #[serde(default)]
        sleep_ms: u64,
    },
}

impl TaskSpec {
    /// The `kind` name as written in sweep files.
    pub fn kind_name(&self) -> &'static str {
        match self {
            TaskSpec::Optimizer(_) => "optimizer",
            TaskSpec::Sde(_) => "sde",
            TaskSpec::Train(_) => "train",
            TaskSpec::Command(_) => "command",
            TaskSpec::Noop { .. } => "noop",
        }
    }

    /// The simulation settings, for the simulated kinds.
    pub fn sim(&self) -> Option<&SimTask> {
        match self {
            TaskSpec::Optimizer(s) | TaskSpec::Sde(s) => Some(s),
            TaskSpec::Train(_) | TaskSpec::Command(_) | TaskSpec::Noop { .. } => None,
        }
    }
}

impl TaskSpec {
    /// The budget in samples seen (steps × B), for the kinds that have one.
    pub fn samples(&self) -> Option<u64> {
        match self {
            TaskSpec::Optimizer(s) | TaskSpec::Sde(s) => Some(s.samples),
            TaskSpec::Train(t) => Some(t.samples),
            TaskSpec::Command(_) | TaskSpec::Noop { .. } => None,
        }
    }

    /// The learning-rate schedule, for the kinds that have one.
    pub fn lr_schedule(&self) -> Option<&LrSchedule> {
        match self {
            TaskSpec::Optimizer(s) | TaskSpec::Sde(s) => Some(&s.lr_schedule),
            TaskSpec::Train(t) => Some(&t.lr_schedule),
            TaskSpec::Command(c) => Some(&c.lr_schedule),
            TaskSpec::Noop { .. } => None,
        }
    }

    /// The fraction of the run discarded before the stationary loss is averaged, for the kinds
    /// that report one.
    pub fn burn_in(&self) -> Option<f64> {
        match self {
            TaskSpec::Optimizer(s) | TaskSpec::Sde(s) => Some(s.burn_in),
            TaskSpec::Train(t) => Some(t.burn_in),
            TaskSpec::Command(c) => Some(c.burn_in),
            TaskSpec::Noop { .. } => None,
        }
    }
}

/// Native training of a small network (`kind = "train"`).
///
/// Every trial trains `paths` independent replicates (own initialisation, own minibatch order and
/// noise) and reports their mean and standard error, like a simulation's paths.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainTask {
    /// The network.
    pub model: ModelSpec,
    /// The data set, split into a training part and a held-out part.
    pub data: DataSpec,
    /// Fraction of the data held out for the held-out loss and accuracy (0 < f < 1).
    pub holdout: f64,
    /// Budget in samples seen (steps × B).
    pub samples: u64,
    /// How often a curve point is recorded (evaluation on the whole training and held-out sets).
    pub record_every: RecordEvery,
    /// Fraction of the run discarded before the stationary (train) loss is averaged.
    pub burn_in: f64,
    /// Independent replicates per trial.
    pub paths: u32,
    /// Bias-correct the moment estimates of RMSprop and Adam.
    pub bias_correction: bool,
    /// The paper's protocol: full-batch gradients plus injected Gaussian noise of per-sample scale
    /// σ₁ (σ_B = σ₁/√B). `None`: real minibatch gradients.
    pub noise: Option<f64>,
    /// Integrate the optimizer's SDE on the network instead of running the optimizer (needs
    /// `noise`: the diffusion uses the injected covariance, the drift the full-batch gradient).
    pub sde: bool,
    /// SDE only: Euler–Maruyama substeps per optimizer step.
    pub refine: u32,
    /// SDE only: which SDE model.
    pub sde_model: SdeModel,
    /// The learning-rate schedule (THEORY.md §8). Serialised only when not constant, so the ids
    /// of sweeps without one do not change.
    #[serde(default, skip_serializing_if = "LrSchedule::is_constant")]
    pub lr_schedule: LrSchedule,
}

/// A fully connected network: inputs → hidden layers → outputs. No hidden layers is a linear
/// model (logistic regression for classification).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Widths of the hidden layers, input side first.
    pub hidden: Vec<u32>,
    /// Nonlinearity after every hidden layer.
    pub activation: Activation,
}

/// Hidden-layer nonlinearities.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// max(0, x).
    #[default]
    Relu,
    /// tanh(x).
    Tanh,
}

/// Where training data comes from, tagged by `kind`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DataSpec {
    /// The 8×8 handwritten digits (UCI, 1,797 samples, 64 features, 10 classes), shipped with kappa.
    Digits,
    /// A user's table: numeric feature columns and one target column.
    Csv {
        /// Path of the file (relative paths are relative to the worker's working directory).
        path: String,
        /// The target column: its header name, or its 0-based index when the file has no header.
        target: String,
        /// Whether the first line names the columns.
        header: bool,
        /// `classification` (integer class labels) or `regression` (a real target).
        objective: Objective,
    },
    /// A random teacher network labels random Gaussian inputs (seeded, so every trial sees the
    /// same data).
    TeacherStudent {
        /// `classification` (argmax of the teacher) or `regression` (teacher output + noise).
        objective: Objective,
        /// Input dimension.
        inputs: u32,
        /// Classes (classification) or output dimension (regression).
        outputs: u32,
        /// Hidden width of the teacher (one tanh layer); 0 for a linear teacher.
        teacher_hidden: u32,
        /// Number of samples generated.
        samples: u32,
        /// Standard deviation of the label noise added to regression targets.
        label_noise: f64,
        /// Seed of the data (not of the training run).
        seed: u64,
    },
}

/// What the network predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Class labels; softmax cross-entropy; accuracy is reported.
    Classification,
    /// Real targets; mean squared error (½‖y − ŷ‖² per sample).
    Regression,
}

/// An external program run once per attempt (`kind = "command"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandTask {
    /// Program and arguments, with `{lr}`-style placeholders; passed as argv, never to a shell.
    pub argv: Vec<String>,
    /// Extra environment variables (placeholders allowed in values).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub env: std::collections::BTreeMap<String, String>,
    /// Fraction of the curve (by step) discarded before its remaining points are averaged into
    /// the stationary loss. Left out of the canonical form at its default, so the ids of command
    /// sweeps written before it existed are unchanged.
    #[serde(default = "default_burn_in", skip_serializing_if = "is_default_burn_in")]
    pub burn_in: f64,
    /// The learning-rate schedule the program is told to follow (placeholders `{lr_schedule}`,
    /// `{lr_warmup}`, … and `KAPPA_LR_SCHEDULE`): kappa cannot apply it inside someone else's
    /// program. Serialised only when not constant.
    #[serde(default, skip_serializing_if = "LrSchedule::is_constant")]
    pub lr_schedule: LrSchedule,
    /// Where its metrics come from: stdout lines (JSON by default), TensorBoard event files or a
    /// CSV file. Serialised only when not the default, so existing sweeps keep their ids.
    #[serde(default, skip_serializing_if = "crate::metrics::MetricsSource::is_default")]
    pub metrics: crate::metrics::MetricsSource,
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
    /// Bias-correct the moment estimates of RMSprop and Adam (discrete optimizers).
    #[serde(default = "default_true")]
    pub bias_correction: bool,
    /// SDE only: Euler–Maruyama substeps per optimizer step (Δ = η / refine).
    #[serde(default = "default_refine")]
    pub refine: u32,
    /// SDE only: which SDE model.
    #[serde(default)]
    pub sde_model: SdeModel,
    /// Where the paths run. Serialised only when not `cpu`, so the ids of existing CPU trials
    /// do not change.
    #[serde(default, skip_serializing_if = "Backend::is_cpu")]
    pub backend: Backend,
    /// The learning-rate schedule (THEORY.md §8). Serialised only when not constant, so the ids
    /// of sweeps without one do not change.
    #[serde(default, skip_serializing_if = "LrSchedule::is_constant")]
    pub lr_schedule: LrSchedule,
}

/// Where a simulation runs (`backend = "cpu" | "cuda" | "auto"` in `[task]`, `--backend` on workers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The CPU simulator (rayon over blocks of paths), float64, bit-reproducible.
    #[default]
    Cpu,
    /// The CUDA kernel (float32 state, Philox random numbers): a clear error without a usable GPU.
    Cuda,
    /// The GPU when the worker has a usable one, the CPU otherwise.
    Auto,
}

impl Backend {
    /// Whether this is the default, `cpu`.
    pub fn is_cpu(&self) -> bool {
        *self == Backend::Cpu
    }

    /// The name as written in sweep files.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Cuda => "cuda",
            Backend::Auto => "auto",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Backend, String> {
        match s.trim() {
            "cpu" => Ok(Backend::Cpu),
            "cuda" => Ok(Backend::Cuda),
            "auto" => Ok(Backend::Auto),
            other => Err(format!("backend must be \"cpu\", \"cuda\" or \"auto\", got {other:?}")),
        }
    }
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

fn is_default_burn_in(b: &f64) -> bool {
    *b == SimTask::DEFAULT_BURN_IN
}

fn default_true() -> bool {
    true
}

fn default_refine() -> u32 {
    1
}

/// The SDE models (THEORY.md §3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SdeModel {
    /// Compagnoni et al. 2025: SDE time t = kη, V tracks (∇f)² + diag Σ.
    #[default]
    Compagnoni,
    /// Malladi et al. 2022 (Adam and RMSprop only): time t = kη², V tracks diag Σ only.
    Malladi,
}

/// The loss landscape, tagged by `kind` (THEORY.md §1 and §8).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LandscapeSpec {
    /// `f(x) = ½ xᵀ diag(λ) x`, or with `rotation_seed` `½ xᵀ Q diag(λ) Qᵀ x`, Q a seeded random
    /// orthogonal matrix (the same on every machine).
    Quadratic {
        /// The eigenvalues λ_i > 0 (the diagonal when not rotated); their number is the dimension d.
        eigenvalues: Eigenvalues,
        /// Rotates the eigenbasis by the Haar-random orthogonal matrix of this seed. Serialised
        /// only when set, so the ids of diagonal quadratics do not change.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rotation_seed: Option<u64>,
    },
    /// `f(x) = ½ xᵀ H x` with H given, symmetric positive definite (written `kind = "quadratic",
    /// hessian = [[…], …]` in a sweep file).
    QuadraticHessian {
        /// The rows of H.
        hessian: Vec<Vec<f64>>,
    },
    /// `f(x) = Σ a_i (x_i² − 1)²/4`: minima at ±1, barrier a_i/4 at 0 (THEORY.md §8).
    DoubleWell {
        /// The scales a_i > 0; their number is the dimension d.
        a: Vec<f64>,
    },
}

impl LandscapeSpec {
    /// Dimension d of the parameter vector.
    pub fn dim(&self) -> usize {
        match self {
            LandscapeSpec::Quadratic { eigenvalues, .. } => eigenvalues.dim(),
            LandscapeSpec::QuadraticHessian { hessian } => hessian.len(),
            LandscapeSpec::DoubleWell { a } => a.len(),
        }
    }

    /// Whether this is a diagonal quadratic (what the diagonal closed forms take).
    pub fn is_diagonal(&self) -> bool {
        matches!(self, LandscapeSpec::Quadratic { rotation_seed: None, .. })
    }

    /// Whether the GPU kernel runs it: every landscape whose coordinates move on their own (the
    /// diagonal quadratic, the double well), and a full Hessian up to d = [`MAX_GPU_DENSE_DIM`]
    /// (a path's coordinates then sit in one warp, which shares them by shuffles).
    pub fn runs_on_gpu(&self) -> bool {
        match self {
            LandscapeSpec::Quadratic { rotation_seed: None, .. } | LandscapeSpec::DoubleWell { .. } => true,
            LandscapeSpec::Quadratic { .. } | LandscapeSpec::QuadraticHessian { .. } => self.dim() <= MAX_GPU_DENSE_DIM,
        }
    }

    /// What the landscape is, in words (for errors and notes).
    pub fn describe(&self) -> &'static str {
        match self {
            LandscapeSpec::Quadratic { rotation_seed: None, .. } => "a diagonal quadratic",
            LandscapeSpec::Quadratic { .. } => "a rotated quadratic",
            LandscapeSpec::QuadraticHessian { .. } => "a quadratic with a full Hessian",
            LandscapeSpec::DoubleWell { .. } => "the double well",
        }
    }
}

/// The largest dimension of a landscape with a full Hessian (d² entries, d² work per step).
pub const MAX_DENSE_DIM: usize = 1024;

/// The largest dimension of a full Hessian the GPU kernel runs (4 coordinates per lane, 32 lanes).
pub const MAX_GPU_DENSE_DIM: usize = 128;

/// Cholesky factorisation of the symmetric matrix `h` (rows): `Err((k, pivot))` at the first
/// pivot that is not positive (so `h` is not positive definite: its leading (k+1)×(k+1) minor
/// is not), `Ok(L)` (rows, lower triangular) otherwise.
#[allow(clippy::needless_range_loop)] // matrix indices read best as indices
pub fn cholesky(h: &[Vec<f64>]) -> Result<Vec<Vec<f64>>, (usize, f64)> {
    let d = h.len();
    let mut l = vec![vec![0.0; d]; d];
    for i in 0..d {
        for j in 0..=i {
            let mut sum = h[i][j];
            for k in 0..j {
                sum -= l[i][k] * l[j][k];
            }
            if i == j {
                if !(sum > 0.0 && sum.is_finite()) {
                    return Err((i, sum));
                }
                l[i][i] = sum.sqrt();
            } else {
                l[i][j] = sum / l[j][j];
            }
        }
    }
    Ok(l)
}

/// The spectrum of a quadratic: listed, or generated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Eigenvalues {
    /// Given one by one.
    List(Vec<f64>),
    /// Generated from a rule.
    Generated(Spectrum),
}

/// A generated spectrum of `num` eigenvalues.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
pub enum Spectrum {
    /// Evenly spaced from `lo` to `hi`.
    Linspace {
        /// First eigenvalue.
        lo: f64,
        /// Last eigenvalue.
        hi: f64,
        /// Dimension.
        num: usize,
    },
    /// Evenly spaced in log from `lo` to `hi`.
    Log {
        /// First eigenvalue.
        lo: f64,
        /// Last eigenvalue.
        hi: f64,
        /// Dimension.
        num: usize,
    },
    /// `λ_i = max · i^(−alpha)`, i = 1..num.
    PowerLaw {
        /// λ₁.
        max: f64,
        /// Decay exponent α ≥ 0.
        alpha: f64,
        /// Dimension.
        num: usize,
    },
}

impl Eigenvalues {
    /// Dimension d.
    pub fn dim(&self) -> usize {
        match self {
            Eigenvalues::List(v) => v.len(),
            Eigenvalues::Generated(
                Spectrum::Linspace { num, .. } | Spectrum::Log { num, .. } | Spectrum::PowerLaw { num, .. },
            ) => *num,
        }
    }

    /// The eigenvalues, expanded.
    pub fn values(&self) -> Vec<f64> {
        match self {
            Eigenvalues::List(v) => v.clone(),
            Eigenvalues::Generated(Spectrum::Linspace { lo, hi, num }) => crate::grid::spaced(*lo, *hi, *num, false),
            Eigenvalues::Generated(Spectrum::Log { lo, hi, num }) => crate::grid::spaced(*lo, *hi, *num, true),
            Eigenvalues::Generated(Spectrum::PowerLaw { max, alpha, num }) => {
                (1..=*num).map(|i| max * (i as f64).powf(-alpha)).collect()
            }
        }
    }
}

/// Per-sample noise scale: one σ for every coordinate, or one per coordinate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Sigma {
    /// The same σ everywhere.
    Scalar(f64),
    /// σ_i per coordinate (length d).
    PerCoordinate(Vec<f64>),
}

impl Sigma {
    /// σ_i for each of `dim` coordinates.
    pub fn values(&self, dim: usize) -> Vec<f64> {
        match self {
            Sigma::Scalar(s) => vec![*s; dim],
            Sigma::PerCoordinate(v) => v.clone(),
        }
    }
}

/// Gradient noise, tagged by `kind`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum NoiseSpec {
    /// `Z_i = σ_i ξ_i`, ξ standard normal.
    Gaussian {
        /// Per-sample scale σ₁ ≥ 0.
        sigma: Sigma,
    },
    /// `Z_i = σ_i T_i`, T Student-t with ν degrees of freedom (ν ≤ 2: infinite variance).
    StudentT {
        /// Per-sample scale σ₁ ≥ 0.
        sigma: Sigma,
        /// Degrees of freedom ν > 0.
        nu: f64,
    },
}

impl NoiseSpec {
    /// The scale σ.
    pub fn sigma(&self) -> &Sigma {
        match self {
            NoiseSpec::Gaussian { sigma } | NoiseSpec::StudentT { sigma, .. } => sigma,
        }
    }

    /// Var(Z_i)/σ_i²: 1 for Gaussian, ν/(ν−2) for Student-t with ν > 2, `None` when infinite.
    pub fn variance_factor(&self) -> Option<f64> {
        match self {
            NoiseSpec::Gaussian { .. } => Some(1.0),
            NoiseSpec::StudentT { nu, .. } if *nu > 2.0 => Some(nu / (nu - 2.0)),
            NoiseSpec::StudentT { .. } => None,
        }
    }
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
                    return Err(E::custom(format!("record_every must be at least 1 step, got {v}")));
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
                    .ok_or_else(|| E::custom(format!(r#"record_every must look like "1%", got "{v}""#)))?;
                if !(p > 0.0 && p <= 100.0) {
                    return Err(E::custom(format!("record_every must be in (0%, 100%], got {v}")));
                }
                Ok(RecordEvery::Percent(p))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_spectra() {
        let p = Eigenvalues::Generated(Spectrum::PowerLaw { max: 2.0, alpha: 1.0, num: 4 });
        assert_eq!(p.values(), vec![2.0, 1.0, 2.0 / 3.0, 0.5]);
        let l = Eigenvalues::Generated(Spectrum::Log { lo: 0.1, hi: 10.0, num: 3 });
        let v = l.values();
        assert_eq!((v[0], v[2]), (0.1, 10.0));
        assert!((v[1] - 1.0).abs() < 1e-12);
        assert_eq!(l.dim(), 3);
    }

    #[test]
    fn json_round_trip_of_every_shape() {
        let t = TaskSpec::Sde(SimTask {
            landscape: LandscapeSpec::Quadratic {
                eigenvalues: Eigenvalues::Generated(Spectrum::Linspace { lo: 0.1, hi: 10.0, num: 1000 }),
                rotation_seed: None,
            },
            noise: NoiseSpec::StudentT { sigma: Sigma::PerCoordinate(vec![1.0, 2.0]), nu: 3.0 },
            x0: 0.5,
            paths: 10,
            samples: 100,
            record_every: RecordEvery::Steps(5),
            burn_in: 0.5,
            bias_correction: true,
            refine: 4,
            sde_model: SdeModel::Malladi,
            backend: Backend::Cpu,
            lr_schedule: Default::default(),
        });
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<TaskSpec>(&json).unwrap(), t);
        assert!(!json.contains("backend"), "cpu is not written: existing ids stay");
        let TaskSpec::Sde(mut sim) = t else { unreachable!() };
        sim.backend = Backend::Auto;
        let t = TaskSpec::Sde(sim);
        let json = serde_json::to_string(&t).unwrap();
        assert!(json.contains(r#""backend":"auto""#), "{json}");
        assert_eq!(serde_json::from_str::<TaskSpec>(&json).unwrap(), t);
    }
}

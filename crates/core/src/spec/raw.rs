//! The sweep file as written: serde types that catch unknown keys and wrong types with their
//! positions. Values are checked afterwards, by the other modules of `spec`.

use crate::task::{Activation, Backend, Objective, RecordEvery, SdeModel};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSweep {
    pub(super) version: u32,
    pub(super) name: String,
    #[serde(default)]
    pub(super) task: RawTask,
    pub(super) grid: toml::Table,
    #[serde(default)]
    pub(super) zip: Vec<toml::Table>,
    pub(super) scaling: Option<toml::Table>,
    #[serde(default)]
    pub(super) execution: RawExecution,
    pub(super) analysis: Option<RawAnalysis>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAnalysis {
    pub(super) target_loss: Option<f64>,
    pub(super) objective: Option<super::analysis::AnalysisObjective>,
    pub(super) metric: Option<String>,
    pub(super) expect_exponent: Option<[f64; 2]>,
    pub(super) expect_b_crit: Option<[f64; 2]>,
}

// The `[task]` table as written. Tagged enums are avoided here on purpose: serde buffers them,
// which loses the positions that errors must report. Every field of every kind is optional here
// and checked against the kind in `validate_task`, which builds the typed `TaskSpec`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTask {
    pub(super) kind: Option<TaskKind>,
    pub(super) landscape: Option<RawLandscape>,
    pub(super) noise: Option<RawNoise>,
    pub(super) x0: Option<f64>,
    pub(super) paths: Option<u32>,
    pub(super) samples: Option<u64>,
    pub(super) record_every: Option<RecordEvery>,
    pub(super) burn_in: Option<f64>,
    pub(super) bias_correction: Option<bool>,
    pub(super) refine: Option<u32>,
    pub(super) sde_model: Option<SdeModel>,
    pub(super) backend: Option<Backend>,
    pub(super) sleep: Option<String>,
    pub(super) model: Option<RawModel>,
    pub(super) data: Option<RawData>,
    pub(super) holdout: Option<f64>,
    pub(super) sde: Option<bool>,
    pub(super) argv: Option<Vec<String>>,
    pub(super) env: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub(super) enum TaskKind {
    Optimizer,
    Sde,
    Train,
    Command,
    Noop,
}

impl TaskKind {
    pub(super) const ALL: [TaskKind; 5] =
        [TaskKind::Optimizer, TaskKind::Sde, TaskKind::Train, TaskKind::Command, TaskKind::Noop];

    pub(super) fn name(self) -> &'static str {
        match self {
            TaskKind::Optimizer => "optimizer",
            TaskKind::Sde => "sde",
            TaskKind::Train => "train",
            TaskKind::Command => "command",
            TaskKind::Noop => "noop",
        }
    }

    /// Whether `[task]` of this kind reads `field`.
    pub(super) fn reads(self, field: &str) -> bool {
        const SIM: [&str; 8] = ["landscape", "noise", "x0", "paths", "samples", "record_every", "burn_in", "backend"];
        match self {
            TaskKind::Optimizer => SIM.contains(&field) || field == "bias_correction",
            TaskKind::Sde => SIM.contains(&field) || ["refine", "sde_model"].contains(&field),
            TaskKind::Train => [
                "model",
                "data",
                "holdout",
                "noise",
                "paths",
                "samples",
                "record_every",
                "burn_in",
                "bias_correction",
                "sde",
                "refine",
                "sde_model",
            ]
            .contains(&field),
            TaskKind::Command => ["argv", "env", "burn_in"].contains(&field),
            TaskKind::Noop => field == "sleep",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModel {
    pub(super) hidden: Option<Vec<u32>>,
    pub(super) activation: Option<Activation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawData {
    pub(super) kind: DataKind,
    pub(super) path: Option<String>,
    pub(super) target: Option<toml::Value>,
    pub(super) header: Option<bool>,
    pub(super) objective: Option<Objective>,
    pub(super) inputs: Option<u32>,
    pub(super) outputs: Option<u32>,
    pub(super) teacher_hidden: Option<u32>,
    pub(super) samples: Option<u32>,
    pub(super) label_noise: Option<f64>,
    pub(super) seed: Option<u64>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum DataKind {
    Digits,
    Csv,
    TeacherStudent,
}

impl DataKind {
    pub(super) fn name(self) -> &'static str {
        match self {
            DataKind::Digits => "digits",
            DataKind::Csv => "csv",
            DataKind::TeacherStudent => "teacher_student",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLandscape {
    pub(super) kind: LandscapeKind,
    pub(super) eigenvalues: Option<toml::Value>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum LandscapeKind {
    Quadratic,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNoise {
    pub(super) kind: NoiseKind,
    pub(super) sigma: Option<toml::Value>,
    pub(super) nu: Option<f64>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum NoiseKind {
    Gaussian,
    StudentT,
}

/// Largest dimension a generated spectrum may have.
pub const MAX_DIM: usize = 10_000_000;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExecution {
    pub(super) retries: Option<toml::Value>,
    pub(super) failure_budget: Option<u64>,
    pub(super) timeout: Option<String>,
    pub(super) resources: Option<RawResources>,
    pub(super) max_trials: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResources {
    #[serde(default = "one")]
    pub(super) cpus: u32,
    #[serde(default)]
    pub(super) gpus: u32,
}

pub(super) fn one() -> u32 {
    1
}

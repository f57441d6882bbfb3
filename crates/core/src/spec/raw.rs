//! The sweep file as written: serde types that catch unknown keys and wrong types with their
//! positions. Values are checked afterwards, by the other modules of `spec`.
//!
//! `[grid]`, `[[zip]]` and `[scaling]` are typed here too, but leniently: serde matches their keys
//! (keeping a key that nothing takes as unknown) and the shape of their values, which are kept as
//! written, so that their checks (`grid.rs`, `axes.rs`, `scaling.rs`) report every problem, an
//! unknown key included, in the order, words and place the sweep-file format has always given:
//! at the value, naming its whole key path. (`deny_unknown_fields` would report an unknown key
//! here, at the key, in serde's words, before any check of another table; and a table under
//! `task` or `params` is only known to be a range once all its keys are read.)

use crate::AxisName;
use crate::task::{Activation, Backend, Objective, RecordEvery, SdeModel};
use serde::Deserialize;
use serde::de::IgnoredAny;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSweep {
    pub(super) version: u32,
    pub(super) name: String,
    #[serde(default)]
    pub(super) task: RawTask,
    pub(super) grid: RawGrid,
    #[serde(default)]
    pub(super) zip: Vec<RawGrid>,
    pub(super) scaling: Option<RawScaling>,
    #[serde(default)]
    pub(super) execution: RawExecution,
    pub(super) analysis: Option<super::analysis::RawAnalysis>,
    pub(super) search: Option<super::search::RawSearch>,
}

/// A `[grid]` or `[[zip]]` table: its keys in order (the order its checks go in), each with what
/// it holds.
pub(super) struct RawGrid(pub(super) Vec<(String, RawGridEntry)>);

impl RawGrid {
    /// Whether the table has the key `key` (sets the axis of that key).
    pub(super) fn sets(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }
}

/// One key of a `[grid]` or `[[zip]]` table.
pub(super) enum RawGridEntry {
    /// A built-in axis and its value.
    Builtin(AxisName, RawAxis),
    /// `task` or `params`: the named axes under it.
    Named(RawNamed),
    /// A key that names no axis.
    Unknown,
}

impl<'de> Deserialize<'de> for RawGrid {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = RawGrid;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RawGrid, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let entry = match AxisName::from_key(&key) {
                        Some(axis) => RawGridEntry::Builtin(axis, map.next_value()?),
                        None if matches!(key.as_str(), "task" | "params") => RawGridEntry::Named(map.next_value()?),
                        None => {
                            map.next_value::<IgnoredAny>()?;
                            RawGridEntry::Unknown
                        }
                    };
                    entries.push((key, entry));
                }
                Ok(RawGrid(entries))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

/// An axis's value: a list, a range, or one value (any table is a range).
#[derive(Deserialize)]
#[serde(try_from = "toml::Value")]
pub(super) enum RawAxis {
    /// `[a, b, ...]`
    List(Vec<toml::Value>),
    /// `{ log = [lo, hi], num = n }` or `{ linspace = [lo, hi], num = n }`
    Range(RawRange),
    /// A single value.
    One(toml::Value),
}

impl TryFrom<toml::Value> for RawAxis {
    type Error = toml::de::Error;
    fn try_from(value: toml::Value) -> Result<Self, Self::Error> {
        Ok(match value {
            toml::Value::Array(items) => RawAxis::List(items),
            range @ toml::Value::Table(_) => RawAxis::Range(range.try_into::<RawRange>()?),
            one => RawAxis::One(one),
        })
    }
}

/// A range axis as written.
#[derive(Deserialize, Default)]
pub(super) struct RawRange {
    pub(super) log: Option<toml::Value>,
    pub(super) linspace: Option<toml::Value>,
    pub(super) num: Option<toml::Value>,
    /// Keys a range does not take.
    #[serde(flatten)]
    pub(super) unknown: BTreeMap<String, IgnoredAny>,
}

impl RawRange {
    /// Whether it gives its bounds (`log` or `linspace`): what makes a table under `task` or
    /// `params` a range rather than more dotted keys.
    pub(super) fn has_bounds(&self) -> bool {
        self.log.is_some() || self.linspace.is_some()
    }
}

/// What `task` or `params` holds in `[grid]` (and `task` in a custom rule): dotted keys
/// (`task.noise.sigma = [...]`) are nested tables, down to their values.
#[derive(Deserialize)]
#[serde(try_from = "toml::Value")]
pub(super) enum RawNamed {
    /// A table of more keys, in order.
    Keys(Vec<(String, RawNamed)>),
    /// A value: a list, one value, a range, or an empty table (an empty range).
    Value(RawAxis),
}

impl RawNamed {
    /// Whether it is a table with keys (`{}` has none).
    pub(super) fn has_keys(&self) -> bool {
        match self {
            RawNamed::Keys(_) => true,
            RawNamed::Value(RawAxis::Range(range)) => range.has_bounds(),
            RawNamed::Value(_) => false,
        }
    }
}

impl TryFrom<toml::Value> for RawNamed {
    type Error = toml::de::Error;
    fn try_from(value: toml::Value) -> Result<Self, Self::Error> {
        match value {
            toml::Value::Table(t)
                if !t.is_empty() && !toml::Value::Table(t.clone()).try_into::<RawRange>()?.has_bounds() =>
            {
                let keys = t.into_iter().map(|(k, v)| Ok((k, RawNamed::try_from(v)?)));
                Ok(RawNamed::Keys(keys.collect::<Result<_, Self::Error>>()?))
            }
            value => Ok(RawNamed::Value(RawAxis::try_from(value)?)),
        }
    }
}

/// The `[scaling]` table as written.
#[derive(Deserialize)]
#[serde(expecting = "a map")]
pub(super) struct RawScaling {
    pub(super) kappa: Option<toml::Value>,
    pub(super) rules: Option<RawRules>,
    pub(super) tolerance: Option<toml::Value>,
    /// Keys `[scaling]` does not take.
    #[serde(flatten)]
    pub(super) unknown: BTreeMap<String, IgnoredAny>,
}

/// `rules = [...]` as written: a list of rules, or something else.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawRules {
    List(Vec<RawRule>),
    Other(IgnoredAny),
}

/// One rule of `rules` as written.
#[derive(Deserialize)]
#[serde(try_from = "toml::Value")]
pub(super) enum RawRule {
    /// A preset by name: `"adamw-sqrt"`.
    Preset(String),
    /// A table: a custom rule, or a preset renamed or given an expectation.
    Custom(Box<RawCustomRule>),
    /// Neither.
    Other,
}

impl TryFrom<toml::Value> for RawRule {
    type Error = toml::de::Error;
    fn try_from(value: toml::Value) -> Result<Self, Self::Error> {
        Ok(match value {
            toml::Value::String(name) => RawRule::Preset(name),
            rule @ toml::Value::Table(_) => RawRule::Custom(Box::new(rule.try_into::<RawCustomRule>()?)),
            _ => RawRule::Other,
        })
    }
}

/// A rule's table as written: `{ name, lr, one_minus_beta, eps, weight_decay }` (exponents of κ),
/// or `preset` instead of those; exponents of `params.*` axes and `[task]` fields; `expect`.
#[derive(Deserialize)]
pub(super) struct RawCustomRule {
    pub(super) preset: Option<toml::Value>,
    pub(super) name: Option<toml::Value>,
    pub(super) lr: Option<toml::Value>,
    pub(super) one_minus_beta: Option<toml::Value>,
    pub(super) eps: Option<toml::Value>,
    pub(super) weight_decay: Option<toml::Value>,
    pub(super) expect: Option<toml::Value>,
    pub(super) params: Option<toml::Value>,
    pub(super) task: Option<RawNamed>,
    /// Keys a rule does not take.
    #[serde(flatten)]
    pub(super) unknown: BTreeMap<String, IgnoredAny>,
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
    pub(super) lr_schedule: Option<RawLrSchedule>,
    pub(super) metrics: Option<RawMetrics>,
}

/// `metrics = { from = "tensorboard", dir = "...", loss = "train/loss" }` as written (checked in
/// `task.rs`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) from: Option<MetricsFrom>,
    pub(super) pattern: Option<String>,
    pub(super) dir: Option<String>,
    pub(super) path: Option<String>,
    pub(super) loss: Option<String>,
    pub(super) step: Option<String>,
    pub(super) samples: Option<String>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum MetricsFrom {
    Stdout,
    Tensorboard,
    Csv,
}

/// `lr_schedule = { kind = "cosine", warmup = 0.05 }` as written (checked in `task.rs`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLrSchedule {
    pub(super) kind: ScheduleKind,
    pub(super) warmup: Option<f64>,
    pub(super) decay: Option<f64>,
    pub(super) min_factor: Option<f64>,
    pub(super) at: Option<Vec<f64>>,
    pub(super) factor: Option<f64>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum ScheduleKind {
    Constant,
    Cosine,
    Wsd,
    Step,
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
        const SIM: [&str; 9] =
            ["landscape", "noise", "x0", "paths", "samples", "record_every", "burn_in", "backend", "lr_schedule"];
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
                "lr_schedule",
            ]
            .contains(&field),
            TaskKind::Command => ["argv", "env", "burn_in", "lr_schedule", "metrics"].contains(&field),
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
    pub(super) rotation_seed: Option<u64>,
    pub(super) hessian: Option<toml::Value>,
    pub(super) a: Option<toml::Value>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum LandscapeKind {
    Quadratic,
    DoubleWell,
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

/// The keys serde reads for the struct `T`, in the order it declares them (to list them).
pub(super) fn fields_of<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    /// A deserializer that records the fields of the struct asked of it, and stops there.
    struct Fields<'a>(&'a mut &'static [&'static str]);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("the fields are recorded")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    impl<'de> serde::Deserializer<'de> for Fields<'_> {
        type Error = Stop;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            *self.0 = fields;
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Fields(&mut fields));
    fields
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

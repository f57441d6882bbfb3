//! The sweep file (version 1): parsing and validation.
//!
//! Every error names the file, the key, and the line and column of the offending value, and never
//! panics. Parsing goes in two passes over the same text: serde deserialises the typed structure
//! (so unknown keys and wrong types are caught with their position), then `validate` checks
//! values, locating each offending key through a span-preserving parse of the document.

use crate::grid::{AxisName, AxisValues, Dimension, Grid, spaced};
use crate::params::{Hyperparams, OptimizerKind};
use crate::scaling::{Scaling, ScalingRule, Verdict};
use crate::task::{
    Activation, Backend, CommandTask, DataSpec, Eigenvalues, LandscapeSpec, ModelSpec, NoiseSpec, Objective,
    RecordEvery, SdeModel, Sigma, SimTask, Spectrum, TaskSpec, TrainTask,
};
use crate::trial::{FailureClass, RetryPolicy};
use serde::Deserialize;
use std::fmt;
use std::ops::Range;
use std::time::Duration;
use toml::de::DeTable;

/// The sweep-file version this build reads.
pub const SPEC_VERSION: u32 = 1;

/// Default cap on the number of grid points (`execution.max_trials`).
pub const DEFAULT_MAX_TRIALS: u64 = 10_000_000;

/// A validated sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct Sweep {
    /// Sweep name; also the default state directory `runs/<name>`.
    pub name: String,
    /// What each trial runs.
    pub task: TaskSpec,
    /// The expanded (lazy) grid of hyperparameters.
    pub grid: Grid,
    /// Scaling rules: every grid point is a base point replicated for every κ under every rule.
    pub scaling: Option<Scaling>,
    /// How trials are executed.
    pub execution: Execution,
}

/// The `[execution]` table.
#[derive(Clone, Debug, PartialEq)]
pub struct Execution {
    /// Extra attempts after a failed one, per failure class.
    pub retries: RetryPolicy,
    /// Failed attempts the whole sweep may have before it halts (`None`: no limit).
    pub failure_budget: Option<u64>,
    /// Wall-clock limit of one attempt.
    pub timeout: Option<Duration>,
    /// CPUs a trial asks for.
    pub cpus: u32,
    /// GPUs a trial asks for.
    pub gpus: u32,
    /// Refuse grids with more points than this.
    pub max_trials: u64,
}

impl Default for Execution {
    fn default() -> Self {
        Execution {
            retries: RetryPolicy::default(),
            failure_budget: None,
            timeout: None,
            cpus: 1,
            gpus: 0,
            max_trials: DEFAULT_MAX_TRIALS,
        }
    }
}

/// A sweep-file error: where it is and what is wrong (details behind a box, so `Result`s stay
/// small; fields are reachable through `Deref`).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(Box<SpecErrorDetail>);

impl std::ops::Deref for SpecError {
    type Target = SpecErrorDetail;
    fn deref(&self) -> &SpecErrorDetail {
        &self.0
    }
}

/// Where a sweep-file error is and what is wrong.
#[derive(Clone, Debug, PartialEq)]
pub struct SpecErrorDetail {
    /// The file (as the user named it).
    pub file: String,
    /// The dotted key path, e.g. `grid.lr[2]`, where known.
    pub key: Option<String>,
    /// 1-based line, where known.
    pub line: Option<usize>,
    /// 1-based column, where known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// The source line, where known.
    pub source_line: Option<String>,
}

impl fmt::Display for SpecErrorDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, ":{l}:{c}")?;
        }
        write!(f, ": ")?;
        if let Some(k) = &self.key {
            write!(f, "`{k}`: ")?;
        }
        write!(f, "{}", self.message)?;
        if let (Some(src), Some(l), Some(c)) = (&self.source_line, self.line, self.column) {
            let gutter = l.to_string().len();
            write!(f, "\n{:gutter$} |\n{l} | {src}\n{:gutter$} | {:>c$}", "", "", "^")?;
        }
        Ok(())
    }
}

/// One step of a key path.
#[derive(Clone, Debug)]
enum Seg {
    Key(String),
    Index(usize),
}

fn path_string(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// The source text plus a span-preserving parse of it, to locate keys in errors.
struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
    doc: Option<DeTable<'a>>,
}

impl<'a> Ctx<'a> {
    fn span_of(&self, path: &[Seg]) -> Option<Range<usize>> {
        let doc = self.doc.as_ref()?;
        let (first, rest) = path.split_first()?;
        let Seg::Key(k) = first else { return None };
        let (key, mut value) = doc.get_key_value(k.as_str())?;
        let mut span = value.span();
        // A table header's value span can be empty; fall back to the key.
        if span.is_empty() {
            span = key.span();
        }
        for seg in rest {
            let next = match seg {
                Seg::Key(k) => value.get_ref().get(k.as_str()),
                Seg::Index(i) => value.get_ref().get(*i),
            };
            match next {
                Some(v) => {
                    value = v;
                    if !v.span().is_empty() {
                        span = v.span();
                    }
                }
                None => break,
            }
        }
        Some(span)
    }

    fn error_at(&self, span: Option<Range<usize>>, key: Option<String>, message: String) -> SpecError {
        let (line, column, source_line) = match span {
            Some(r) => {
                let (l, c, src) = line_col(self.text, r.start);
                (Some(l), Some(c), Some(src))
            }
            None => (None, None, None),
        };
        SpecError(Box::new(SpecErrorDetail { file: self.file.to_string(), key, line, column, message, source_line }))
    }

    fn err(&self, path: &[Seg], message: impl Into<String>) -> SpecError {
        let key = (!path.is_empty()).then(|| path_string(path));
        self.error_at(self.span_of(path), key, message.into())
    }
}

/// 1-based line and column (in characters) of byte offset `at`, and the text of that line.
fn line_col(text: &str, at: usize) -> (usize, usize, String) {
    let at = at.min(text.len());
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[start..at].chars().count() + 1;
    let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    (line, column, text[start..end].trim_end_matches('\r').to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSweep {
    version: u32,
    name: String,
    task: RawTask,
    grid: toml::Table,
    #[serde(default)]
    zip: Vec<toml::Table>,
    scaling: Option<toml::Table>,
    #[serde(default)]
    execution: RawExecution,
}

// The `[task]` table as written. Tagged enums are avoided here on purpose: serde buffers them,
// which loses the positions that errors must report. Every field of every kind is optional here
// and checked against the kind in `validate_task`, which builds the typed `TaskSpec`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    kind: TaskKind,
    landscape: Option<RawLandscape>,
    noise: Option<RawNoise>,
    x0: Option<f64>,
    paths: Option<u32>,
    samples: Option<u64>,
    record_every: Option<RecordEvery>,
    burn_in: Option<f64>,
    bias_correction: Option<bool>,
    refine: Option<u32>,
    sde_model: Option<SdeModel>,
    backend: Option<Backend>,
    sleep: Option<String>,
    model: Option<RawModel>,
    data: Option<RawData>,
    holdout: Option<f64>,
    sde: Option<bool>,
    argv: Option<Vec<String>>,
    env: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum TaskKind {
    Optimizer,
    Sde,
    Train,
    Command,
    Noop,
}

impl TaskKind {
    const ALL: [TaskKind; 5] = [TaskKind::Optimizer, TaskKind::Sde, TaskKind::Train, TaskKind::Command, TaskKind::Noop];

    fn name(self) -> &'static str {
        match self {
            TaskKind::Optimizer => "optimizer",
            TaskKind::Sde => "sde",
            TaskKind::Train => "train",
            TaskKind::Command => "command",
            TaskKind::Noop => "noop",
        }
    }

    /// Whether `[task]` of this kind reads `field`.
    fn reads(self, field: &str) -> bool {
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
            TaskKind::Command => ["argv", "env"].contains(&field),
            TaskKind::Noop => field == "sleep",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    hidden: Option<Vec<u32>>,
    activation: Option<Activation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawData {
    kind: DataKind,
    path: Option<String>,
    target: Option<toml::Value>,
    header: Option<bool>,
    objective: Option<Objective>,
    inputs: Option<u32>,
    outputs: Option<u32>,
    teacher_hidden: Option<u32>,
    samples: Option<u32>,
    label_noise: Option<f64>,
    seed: Option<u64>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum DataKind {
    Digits,
    Csv,
    TeacherStudent,
}

impl DataKind {
    fn name(self) -> &'static str {
        match self {
            DataKind::Digits => "digits",
            DataKind::Csv => "csv",
            DataKind::TeacherStudent => "teacher_student",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLandscape {
    kind: LandscapeKind,
    eigenvalues: Option<toml::Value>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum LandscapeKind {
    Quadratic,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNoise {
    kind: NoiseKind,
    sigma: Option<toml::Value>,
    nu: Option<f64>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum NoiseKind {
    Gaussian,
    StudentT,
}

/// Largest dimension a generated spectrum may have.
pub const MAX_DIM: usize = 10_000_000;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawExecution {
    retries: Option<toml::Value>,
    failure_budget: Option<u64>,
    timeout: Option<String>,
    resources: Option<RawResources>,
    max_trials: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResources {
    #[serde(default = "one")]
    cpus: u32,
    #[serde(default)]
    gpus: u32,
}

fn one() -> u32 {
    1
}

impl Sweep {
    /// Parses and validates a sweep file's text. `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Sweep, SpecError> {
        let mut ctx = Ctx { file, text, doc: None };
        let raw: RawSweep = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                let span = e.span();
                let key = span.as_ref().and_then(|r| key_at(text, r.clone()));
                return Err(ctx.error_at(span, key, e.message().trim().to_string()));
            }
        };
        ctx.doc = DeTable::parse(text).ok().map(|d| d.into_inner());
        validate(&ctx, raw)
    }
}

/// The bare key a span points at, if it points at one.
fn key_at(text: &str, r: Range<usize>) -> Option<String> {
    let s = text.get(r)?.trim();
    let bare = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    bare.then(|| s.to_string())
}

fn k(s: &str) -> Seg {
    Seg::Key(s.to_string())
}

fn validate(ctx: &Ctx<'_>, raw: RawSweep) -> Result<Sweep, SpecError> {
    if raw.version != SPEC_VERSION {
        return Err(ctx.err(
            &[k("version")],
            format!("unsupported sweep file version {} (this kappa reads version {SPEC_VERSION})", raw.version),
        ));
    }
    validate_name(ctx, &raw.name)?;
    let execution = validate_execution(ctx, raw.execution)?;
    let task = validate_task(ctx, raw.task)?;
    let grid = build_grid(ctx, &raw.grid, &raw.zip, execution.max_trials)?;
    let scaling = match &raw.scaling {
        Some(t) => Some(scaling(ctx, t, &grid, &raw.zip)?),
        None => None,
    };
    let per_point = 1 + scaling.as_ref().map_or(0, |s| s.variants());
    if grid.len().saturating_mul(per_point) > execution.max_trials {
        return Err(ctx.err(
            &[k("scaling")],
            format!(
                "the grid's {} points with {} scaled variants each make {} trials, more than the cap of {} \
                 (raise execution.max_trials to allow it)",
                grid.len(),
                per_point - 1,
                grid.len().saturating_mul(per_point),
                execution.max_trials
            ),
        ));
    }
    check_budget(ctx, &task, &grid, &raw.zip, scaling.as_ref())?;
    Ok(Sweep { name: raw.name, task, grid, scaling, execution })
}

fn validate_name(ctx: &Ctx<'_>, name: &str) -> Result<(), SpecError> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ctx.err(
            &[k("name")],
            format!(
                "sweep name {name:?} must be 1-128 characters of letters, digits, '-', '_' or '.', \
                 not starting with '.' (it names the directory runs/<name>)"
            ),
        ))
    }
}

fn validate_execution(ctx: &Ctx<'_>, raw: RawExecution) -> Result<Execution, SpecError> {
    let mut e = Execution::default();
    let path = [k("execution"), k("retries")];
    let count = |path: &[Seg], v: &toml::Value| -> Result<u32, SpecError> {
        v.as_integer()
            .and_then(|i| u32::try_from(i).ok())
            .filter(|&i| i <= 1000)
            .ok_or_else(|| ctx.err(path, format!("retries must be a whole number from 0 to 1000, got {v}")))
    };
    match &raw.retries {
        None => {}
        Some(toml::Value::Table(t)) => {
            for (class, v) in t {
                let p = [k("execution"), k("retries"), k(class)];
                let n = count(&p, v)?;
                match class.parse::<FailureClass>().map_err(|m| ctx.err(&p, m))? {
                    FailureClass::Error => e.retries.error = n,
                    FailureClass::Crash => e.retries.crash = n,
                    FailureClass::Timeout => e.retries.timeout = n,
                    FailureClass::Lost => e.retries.lost = n,
                }
            }
        }
        Some(v) => e.retries = RetryPolicy::uniform(count(&path, v)?),
    }
    if let Some(b) = raw.failure_budget {
        if b == 0 {
            return Err(ctx.err(&[k("execution"), k("failure_budget")], "failure_budget must be at least 1"));
        }
        e.failure_budget = Some(b);
    }
    if let Some(t) = raw.timeout {
        e.timeout = Some(parse_duration(&t).map_err(|m| ctx.err(&[k("execution"), k("timeout")], m))?);
    }
    if let Some(r) = raw.resources {
        if r.cpus == 0 {
            return Err(ctx.err(&[k("execution"), k("resources"), k("cpus")], "cpus must be at least 1"));
        }
        e.cpus = r.cpus;
        e.gpus = r.gpus;
    }
    if let Some(m) = raw.max_trials {
        if m == 0 {
            return Err(ctx.err(&[k("execution"), k("max_trials")], "max_trials must be at least 1"));
        }
        e.max_trials = m;
    }
    Ok(e)
}

/// Parses `"90s"`, `"10m"`, `"2h"`, `"500ms"`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!(r#"duration {s:?} must be a number with a unit, like "90s", "10m" or "2h""#))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!("unknown duration unit {other:?} in {s:?} (use ms, s, m or h)"));
        }
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("duration {s:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn validate_task(ctx: &Ctx<'_>, raw: RawTask) -> Result<TaskSpec, SpecError> {
    let at = |p: &[&str]| -> Vec<Seg> { std::iter::once(k("task")).chain(p.iter().map(|s| k(s))).collect() };
    let kind = raw.kind.name();
    // Which keys each kind reads; any other key given is an error naming the kinds that read it.
    let given = [
        ("landscape", raw.landscape.is_some()),
        ("noise", raw.noise.is_some()),
        ("x0", raw.x0.is_some()),
        ("paths", raw.paths.is_some()),
        ("samples", raw.samples.is_some()),
        ("record_every", raw.record_every.is_some()),
        ("burn_in", raw.burn_in.is_some()),
        ("bias_correction", raw.bias_correction.is_some()),
        ("refine", raw.refine.is_some()),
        ("sde_model", raw.sde_model.is_some()),
        ("backend", raw.backend.is_some()),
        ("sleep", raw.sleep.is_some()),
        ("model", raw.model.is_some()),
        ("data", raw.data.is_some()),
        ("holdout", raw.holdout.is_some()),
        ("sde", raw.sde.is_some()),
        ("argv", raw.argv.is_some()),
        ("env", raw.env.is_some()),
    ];
    for (field, is_given) in given {
        if is_given && !raw.kind.reads(field) {
            if field == "bias_correction" && raw.kind == TaskKind::Sde {
                return Err(ctx.err(
                    &at(&[field]),
                    "`bias_correction` applies to kind = \"optimizer\" (the Adam SDE builds the correction in)",
                ));
            }
            let readers: Vec<String> =
                TaskKind::ALL.iter().filter(|k| k.reads(field)).map(|k| format!("\"{}\"", k.name())).collect();
            return Err(ctx.err(
                &at(&[field]),
                format!("`{field}` does not apply to kind = \"{kind}\" (it applies to kind = {})", readers.join(", ")),
            ));
        }
    }
    match raw.kind {
        TaskKind::Noop => {
            // A trivial trial, for measuring dispatch: it only sleeps, if asked to.
            let sleep_ms = match &raw.sleep {
                Some(t) => parse_duration(t).map_err(|m| ctx.err(&at(&["sleep"]), m))?.as_millis() as u64,
                None => 0,
            };
            Ok(TaskSpec::Noop { sleep_ms })
        }
        TaskKind::Command => command_task(ctx, raw),
        TaskKind::Train => train_task(ctx, raw),
        TaskKind::Optimizer | TaskKind::Sde => sim_task(ctx, raw),
    }
}

fn command_task(ctx: &Ctx<'_>, raw: RawTask) -> Result<TaskSpec, SpecError> {
    let argv = raw.argv.ok_or_else(|| {
        ctx.err(&[k("task")], "kind = \"command\" needs `argv = [\"program\", \"arg\", ...]` (run without a shell)")
    })?;
    let path = |i: usize| vec![k("task"), k("argv"), Seg::Index(i)];
    if argv.first().is_none_or(|p| p.trim().is_empty()) {
        return Err(ctx.err(&[k("task"), k("argv")], "argv must start with the program to run"));
    }
    for (i, a) in argv.iter().enumerate() {
        crate::command::check(a).map_err(|m| ctx.err(&path(i), m))?;
        if a.contains('\0') {
            return Err(ctx.err(&path(i), "arguments cannot contain NUL characters"));
        }
    }
    let env = raw.env.unwrap_or_default();
    for (name, value) in &env {
        let p = vec![k("task"), k("env"), k(name)];
        if name.is_empty() || name.contains(['=', '\0']) || name.starts_with("KAPPA_") {
            return Err(ctx.err(
                &p,
                format!("`{name}` is not a usable variable name (no `=`, not empty, and KAPPA_* is kappa's own)"),
            ));
        }
        crate::command::check(value).map_err(|m| ctx.err(&p, m))?;
    }
    Ok(TaskSpec::Command(CommandTask { argv, env }))
}

fn train_task(ctx: &Ctx<'_>, raw: RawTask) -> Result<TaskSpec, SpecError> {
    let at = |p: &[&str]| -> Vec<Seg> { std::iter::once(k("task")).chain(p.iter().map(|s| k(s))).collect() };
    let required = |field: &str, example: &str| {
        ctx.err(&[k("task")], format!("kind = \"train\" needs `{field}` (for example {example})"))
    };
    let model = raw.model.ok_or_else(|| required("model", "model = { hidden = [128], activation = \"relu\" }"))?;
    let hidden = model.hidden.unwrap_or_default();
    if let Some(i) = hidden.iter().position(|&w| w == 0 || w > 65_536) {
        return Err(ctx.err(
            &[k("task"), k("model"), k("hidden"), Seg::Index(i)],
            format!("hidden layer widths must be from 1 to 65536, got {}", hidden[i]),
        ));
    }
    let model = ModelSpec { hidden, activation: model.activation.unwrap_or_default() };
    let data = raw.data.ok_or_else(|| required("data", "data = { kind = \"digits\" }"))?;
    let data = train_data(ctx, data)?;
    let holdout = raw.holdout.unwrap_or(0.2);
    if !(holdout > 0.0 && holdout < 1.0) {
        return Err(ctx.err(&at(&["holdout"]), format!("holdout must be a fraction in (0, 1), got {holdout}")));
    }
    let samples = raw.samples.ok_or_else(|| required("samples", "samples = 100000 (samples seen, steps × B)"))?;
    if samples == 0 {
        return Err(ctx.err(&at(&["samples"]), "samples must be at least 1"));
    }
    let burn_in = burn_in(ctx, raw.burn_in)?;
    let paths = raw.paths.unwrap_or(1);
    if !(1..=4096).contains(&paths) {
        return Err(ctx.err(&at(&["paths"]), format!("paths (replicates) must be from 1 to 4096, got {paths}")));
    }
    let noise = match raw.noise {
        None => None,
        Some(n) => {
            if n.kind != NoiseKind::Gaussian || n.nu.is_some() {
                return Err(ctx.err(
                    &at(&["noise"]),
                    "training injects Gaussian noise only: noise = { kind = \"gaussian\", sigma = 0.1 }",
                ));
            }
            let value = n.sigma.ok_or_else(|| ctx.err(&at(&["noise"]), "noise needs `sigma` (the per-sample σ₁)"))?;
            let sigma = as_f64(&value).filter(|s| s.is_finite() && *s >= 0.0).ok_or_else(|| {
                ctx.err(&at(&["noise", "sigma"]), "sigma must be one finite number ≥ 0 (the same for every parameter)")
            })?;
            Some(sigma)
        }
    };
    let sde = raw.sde.unwrap_or(false);
    if sde && noise.is_none() {
        return Err(ctx.err(
            &at(&["sde"]),
            "sde = true integrates the SDE of full-batch gradients plus injected noise: give `noise = { kind = \"gaussian\", sigma = ... }`",
        ));
    }
    if !sde {
        for (field, is_given) in [("refine", raw.refine.is_some()), ("sde_model", raw.sde_model.is_some())] {
            if is_given {
                return Err(ctx.err(&at(&[field]), format!("`{field}` applies with sde = true only")));
            }
        }
    } else if raw.bias_correction.is_some() {
        return Err(
            ctx.err(&at(&["bias_correction"]), "`bias_correction` applies to the optimizer, not with sde = true")
        );
    }
    Ok(TaskSpec::Train(TrainTask {
        model,
        data,
        holdout,
        samples,
        record_every: raw.record_every.unwrap_or_default(),
        burn_in,
        paths,
        bias_correction: raw.bias_correction.unwrap_or(true),
        noise,
        sde,
        refine: refine(ctx, raw.refine)?,
        sde_model: raw.sde_model.unwrap_or_default(),
    }))
}

fn train_data(ctx: &Ctx<'_>, d: RawData) -> Result<DataSpec, SpecError> {
    let at = |f: &str| vec![k("task"), k("data"), k(f)];
    let given = [
        ("path", d.path.is_some()),
        ("target", d.target.is_some()),
        ("header", d.header.is_some()),
        ("objective", d.objective.is_some()),
        ("inputs", d.inputs.is_some()),
        ("outputs", d.outputs.is_some()),
        ("teacher_hidden", d.teacher_hidden.is_some()),
        ("samples", d.samples.is_some()),
        ("label_noise", d.label_noise.is_some()),
        ("seed", d.seed.is_some()),
    ];
    let reads: &[&str] = match d.kind {
        DataKind::Digits => &[],
        DataKind::Csv => &["path", "target", "header", "objective"],
        DataKind::TeacherStudent => {
            &["objective", "inputs", "outputs", "teacher_hidden", "samples", "label_noise", "seed"]
        }
    };
    let kind = d.kind.name();
    if let Some((field, _)) = given.iter().find(|(f, g)| *g && !reads.contains(f)) {
        return Err(ctx.err(&at(field), format!("`{field}` does not apply to data kind = \"{kind}\"")));
    }
    let need = |field: &str| ctx.err(&[k("task"), k("data")], format!("data kind = \"{kind}\" needs `{field}`"));
    Ok(match d.kind {
        DataKind::Digits => DataSpec::Digits,
        DataKind::Csv => {
            let path = d.path.ok_or_else(|| need("path"))?;
            if path.trim().is_empty() {
                return Err(ctx.err(&at("path"), "path must name a file"));
            }
            let target = match d.target.ok_or_else(|| need("target"))? {
                toml::Value::String(s) if !s.is_empty() => s,
                toml::Value::Integer(i) if i >= 0 => i.to_string(),
                other => {
                    return Err(ctx.err(
                        &at("target"),
                        format!("target must be a column name or a 0-based column index, got {other}"),
                    ));
                }
            };
            let header = d.header.unwrap_or(true);
            if !header && target.parse::<usize>().is_err() {
                return Err(ctx.err(&at("target"), "without a header line the target must be a column index"));
            }
            DataSpec::Csv { path, target, header, objective: d.objective.unwrap_or(Objective::Classification) }
        }
        DataKind::TeacherStudent => {
            let objective = d.objective.unwrap_or(Objective::Classification);
            let inputs = d.inputs.unwrap_or(20);
            let outputs = d.outputs.unwrap_or(if objective == Objective::Classification { 2 } else { 1 });
            let samples = d.samples.unwrap_or(2000);
            for (field, v, lo, hi) in [
                ("inputs", inputs, 1, 100_000),
                ("outputs", outputs, if objective == Objective::Classification { 2 } else { 1 }, 10_000),
                ("samples", samples, 2, 10_000_000),
            ] {
                if !(lo..=hi).contains(&v) {
                    return Err(ctx.err(&at(field), format!("{field} must be from {lo} to {hi}, got {v}")));
                }
            }
            let label_noise = d.label_noise.unwrap_or(0.0);
            if !(label_noise.is_finite() && label_noise >= 0.0) {
                return Err(
                    ctx.err(&at("label_noise"), format!("label_noise must be finite and ≥ 0, got {label_noise}"))
                );
            }
            DataSpec::TeacherStudent {
                objective,
                inputs,
                outputs,
                teacher_hidden: d.teacher_hidden.unwrap_or(16),
                samples,
                label_noise,
                seed: d.seed.unwrap_or(0),
            }
        }
    })
}

fn burn_in(ctx: &Ctx<'_>, value: Option<f64>) -> Result<f64, SpecError> {
    let burn_in = value.unwrap_or(SimTask::DEFAULT_BURN_IN);
    if !(0.0..1.0).contains(&burn_in) {
        return Err(ctx.err(&[k("task"), k("burn_in")], format!("burn_in must be in [0, 1), got {burn_in}")));
    }
    Ok(burn_in)
}

fn refine(ctx: &Ctx<'_>, value: Option<u32>) -> Result<u32, SpecError> {
    let refine = value.unwrap_or(1);
    if !(1..=10_000).contains(&refine) {
        return Err(ctx.err(&[k("task"), k("refine")], format!("refine must be from 1 to 10000, got {refine}")));
    }
    Ok(refine)
}

fn sim_task(ctx: &Ctx<'_>, raw: RawTask) -> Result<TaskSpec, SpecError> {
    let at = |p: &[&str]| -> Vec<Seg> { std::iter::once(k("task")).chain(p.iter().map(|s| k(s))).collect() };
    let required = |field: &str| ctx.err(&[k("task")], format!("[task] needs `{field}`"));
    let is_sde = raw.kind == TaskKind::Sde;
    let landscape = raw.landscape.ok_or_else(|| required("landscape"))?;
    let landscape = match landscape.kind {
        LandscapeKind::Quadratic => {
            let value = landscape.eigenvalues.ok_or_else(|| {
                ctx.err(
                    &at(&["landscape"]),
                    "a quadratic landscape needs `eigenvalues = [...]` or a generated spectrum",
                )
            })?;
            LandscapeSpec::Quadratic { eigenvalues: eigenvalues(ctx, &at(&["landscape", "eigenvalues"]), &value)? }
        }
    };
    let dim = landscape.dim();
    let noise = raw.noise.ok_or_else(|| required("noise"))?;
    let sigma_value =
        noise.sigma.ok_or_else(|| ctx.err(&at(&["noise"]), "noise needs `sigma` (the per-sample scale σ₁)"))?;
    let sigma = sigma(ctx, &at(&["noise", "sigma"]), &sigma_value, dim)?;
    let noise = match noise.kind {
        NoiseKind::Gaussian => {
            if noise.nu.is_some() {
                return Err(ctx.err(&at(&["noise", "nu"]), "`nu` applies to kind = \"student_t\" noise only"));
            }
            NoiseSpec::Gaussian { sigma }
        }
        NoiseKind::StudentT => {
            let nu = noise
                .nu
                .ok_or_else(|| ctx.err(&at(&["noise"]), "student_t noise needs `nu`, the degrees of freedom"))?;
            if !(nu > 0.0 && nu.is_finite()) {
                return Err(ctx.err(&at(&["noise", "nu"]), format!("nu must be finite and > 0, got {nu}")));
            }
            NoiseSpec::StudentT { sigma, nu }
        }
    };
    let x0 = raw.x0.unwrap_or(0.0);
    if !x0.is_finite() {
        return Err(ctx.err(&at(&["x0"]), format!("x0 must be finite, got {x0}")));
    }
    let paths = raw.paths.unwrap_or(SimTask::DEFAULT_PATHS);
    if paths == 0 {
        return Err(ctx.err(&at(&["paths"]), "paths must be at least 1"));
    }
    let samples = raw.samples.ok_or_else(|| required("samples"))?;
    if samples == 0 {
        return Err(ctx.err(&at(&["samples"]), "samples must be at least 1"));
    }
    let burn_in = burn_in(ctx, raw.burn_in)?;
    let refine = refine(ctx, raw.refine)?;
    let sim = SimTask {
        landscape,
        noise,
        x0,
        paths,
        samples,
        record_every: raw.record_every.unwrap_or_default(),
        burn_in,
        bias_correction: raw.bias_correction.unwrap_or(true),
        refine,
        sde_model: raw.sde_model.unwrap_or_default(),
        backend: raw.backend.unwrap_or_default(),
    };
    Ok(if is_sde { TaskSpec::Sde(sim) } else { TaskSpec::Optimizer(sim) })
}

fn finite_positive(ctx: &Ctx<'_>, path: &[Seg], what: &str, v: &toml::Value) -> Result<f64, SpecError> {
    let x = as_f64(v).ok_or_else(|| ctx.err(path, format!("{what} must be a number")))?;
    if x > 0.0 && x.is_finite() { Ok(x) } else { Err(ctx.err(path, format!("{what} must be finite and > 0, got {x}"))) }
}

fn eigenvalues(ctx: &Ctx<'_>, path: &[Seg], value: &toml::Value) -> Result<Eigenvalues, SpecError> {
    let sub = |key: &str| {
        let mut p = path.to_vec();
        p.push(k(key));
        p
    };
    match value {
        toml::Value::Array(items) => {
            if items.is_empty() {
                return Err(ctx.err(path, "eigenvalues must not be empty"));
            }
            let mut out = Vec::with_capacity(items.len());
            for (i, v) in items.iter().enumerate() {
                let mut p = path.to_vec();
                p.push(Seg::Index(i));
                out.push(finite_positive(ctx, &p, "eigenvalues", v)?);
            }
            Ok(Eigenvalues::List(out))
        }
        toml::Value::Table(t) => {
            let rules: Vec<&str> =
                ["linspace", "log", "power_law"].into_iter().filter(|r| t.contains_key(*r)).collect();
            for key in t.keys() {
                if !matches!(key.as_str(), "linspace" | "log" | "power_law" | "num" | "max") {
                    return Err(ctx.err(
                        &sub(key),
                        format!("unknown key `{key}` in a generated spectrum (expected linspace, log or power_law, with num)"),
                    ));
                }
            }
            let [rule] = rules[..] else {
                return Err(ctx.err(
                    path,
                    "a generated spectrum needs exactly one of `linspace = [lo, hi]`, `log = [lo, hi]` or `power_law = alpha`",
                ));
            };
            let num = match t.get("num") {
                Some(toml::Value::Integer(n)) if *n >= 1 && (*n as u64) <= MAX_DIM as u64 => *n as usize,
                Some(_) => {
                    return Err(ctx.err(
                        &sub("num"),
                        format!("`num` (the dimension) must be a whole number from 1 to {MAX_DIM}"),
                    ));
                }
                None => return Err(ctx.err(path, "a generated spectrum needs `num`, the dimension")),
            };
            if rule != "power_law" && t.contains_key("max") {
                return Err(ctx.err(&sub("max"), "`max` applies to power_law spectra only"));
            }
            let spectrum = if rule == "power_law" {
                let alpha = as_f64(&t["power_law"]).filter(|a| *a >= 0.0 && a.is_finite()).ok_or_else(|| {
                    ctx.err(&sub("power_law"), "power_law takes the exponent alpha, a finite number >= 0")
                })?;
                let max = match t.get("max") {
                    Some(v) => finite_positive(ctx, &sub("max"), "max", v)?,
                    None => 1.0,
                };
                Spectrum::PowerLaw { max, alpha, num }
            } else {
                let ends = match &t[rule] {
                    toml::Value::Array(a) if a.len() == 2 => {
                        let mut e = [0.0; 2];
                        for (i, v) in a.iter().enumerate() {
                            let mut p = sub(rule);
                            p.push(Seg::Index(i));
                            e[i] = finite_positive(ctx, &p, "spectrum ends", v)?;
                        }
                        e
                    }
                    _ => return Err(ctx.err(&sub(rule), format!("`{rule}` must be a list of two numbers [lo, hi]"))),
                };
                if rule == "log" {
                    Spectrum::Log { lo: ends[0], hi: ends[1], num }
                } else {
                    Spectrum::Linspace { lo: ends[0], hi: ends[1], num }
                }
            };
            Ok(Eigenvalues::Generated(spectrum))
        }
        _ => Err(ctx.err(
            path,
            "eigenvalues must be a list of numbers or a generated spectrum such as { log = [0.1, 10.0], num = 1000 }",
        )),
    }
}

fn sigma(ctx: &Ctx<'_>, path: &[Seg], value: &toml::Value, dim: usize) -> Result<Sigma, SpecError> {
    let check = |p: &[Seg], v: &toml::Value| -> Result<f64, SpecError> {
        let x = as_f64(v).ok_or_else(|| ctx.err(p, "sigma must be a number or a list of numbers"))?;
        if x >= 0.0 && x.is_finite() {
            Ok(x)
        } else {
            Err(ctx.err(p, format!("sigma must be finite and >= 0, got {x}")))
        }
    };
    match value {
        toml::Value::Array(items) => {
            if items.len() != dim {
                return Err(ctx.err(
                    path,
                    format!(
                        "a per-coordinate sigma needs one value per coordinate: {} given, the landscape has d = {dim}",
                        items.len()
                    ),
                ));
            }
            let mut out = Vec::with_capacity(dim);
            for (i, v) in items.iter().enumerate() {
                let mut p = path.to_vec();
                p.push(Seg::Index(i));
                out.push(check(&p, v)?);
            }
            Ok(Sigma::PerCoordinate(out))
        }
        v => Ok(Sigma::Scalar(check(path, v)?)),
    }
}

fn build_grid(ctx: &Ctx<'_>, grid: &toml::Table, zips: &[toml::Table], max: u64) -> Result<Grid, SpecError> {
    let mut dims = Vec::new();
    let mut seen: Vec<(AxisName, Vec<Seg>)> = Vec::new();
    let mut claim = |axis: AxisName, path: Vec<Seg>| -> Result<(), SpecError> {
        if let Some((_, first)) = seen.iter().find(|(a, _)| *a == axis) {
            return Err(ctx.err(
                &path,
                format!("axis `{axis}` is already set at `{}`; an axis may appear once", path_string(first)),
            ));
        }
        seen.push((axis, path));
        Ok(())
    };
    for (key, value) in grid {
        let path = vec![k("grid"), k(key)];
        let axis = axis_name(ctx, &path, key)?;
        claim(axis, path.clone())?;
        let values = parse_axis(ctx, &path, axis, value)?;
        dims.push(Dimension { len: values.len(), axes: vec![(axis, values)] });
    }
    for (z, table) in zips.iter().enumerate() {
        let base = vec![k("zip"), Seg::Index(z)];
        if table.len() < 2 {
            return Err(ctx.err(&base, "a [[zip]] group needs at least two axes to zip together"));
        }
        let mut axes = Vec::new();
        let mut len: Option<(usize, String)> = None;
        for (key, value) in table {
            let mut path = base.clone();
            path.push(k(key));
            let axis = axis_name(ctx, &path, key)?;
            claim(axis, path.clone())?;
            let values = parse_axis(ctx, &path, axis, value)?;
            match &len {
                Some((n, first)) if *n != values.len() => {
                    return Err(ctx.err(
                        &path,
                        format!(
                            "zipped axes must have equal lengths: `{key}` has {} values but `{first}` has {n}",
                            values.len()
                        ),
                    ));
                }
                None => len = Some((values.len(), key.clone())),
                _ => {}
            }
            axes.push((axis, values));
        }
        let len = len.map_or(0, |(n, _)| n);
        dims.push(Dimension { axes, len });
    }
    for required in [AxisName::Optimizer, AxisName::Lr] {
        if !seen.iter().any(|(a, _)| *a == required) {
            return Err(ctx.err(&[k("grid")], format!("the grid must set `{required}` (in [grid] or a [[zip]] group)")));
        }
    }
    let grid =
        Grid::new(dims).ok_or_else(|| ctx.err(&[k("grid")], format!("the grid has more than {} points", u64::MAX)))?;
    if grid.len() > max {
        return Err(ctx.err(
            &[k("grid")],
            format!(
                "the grid has {} points, more than the cap of {max} (raise execution.max_trials to allow it)",
                grid.len()
            ),
        ));
    }
    Ok(grid)
}

fn scaling(ctx: &Ctx<'_>, t: &toml::Table, grid: &Grid, zips: &[toml::Table]) -> Result<Scaling, SpecError> {
    let at = |p: &[Seg]| -> Vec<Seg> { std::iter::once(k("scaling")).chain(p.iter().cloned()).collect() };
    for key in t.keys() {
        if !matches!(key.as_str(), "kappa" | "rules" | "tolerance") {
            return Err(
                ctx.err(&at(&[k(key)]), format!("unknown key `{key}` in [scaling] (expected kappa, rules, tolerance)"))
            );
        }
    }
    let mut kappas = Vec::new();
    match t.get("kappa") {
        Some(toml::Value::Array(items)) => {
            for (i, v) in items.iter().enumerate() {
                match v {
                    toml::Value::Integer(n) if *n >= 1 => kappas.push(*n as u64),
                    _ => {
                        return Err(ctx.err(
                            &at(&[k("kappa"), Seg::Index(i)]),
                            "κ values are batch multipliers: whole numbers >= 1",
                        ));
                    }
                }
            }
        }
        _ => return Err(ctx.err(&at(&[]), "[scaling] needs `kappa = [1, 2, 4, ...]`, the batch multipliers")),
    }
    kappas.push(1);
    kappas.sort_unstable();
    kappas.dedup();
    if kappas.len() < 2 {
        return Err(ctx.err(&at(&[k("kappa")]), "[scaling] needs at least one κ > 1"));
    }
    let tolerance = match t.get("tolerance") {
        None => Scaling::DEFAULT_TOLERANCE,
        Some(v) => match as_f64(v) {
            Some(x) if x > 0.0 && x < 1.0 => x,
            _ => return Err(ctx.err(&at(&[k("tolerance")]), "tolerance is a relative deviation in (0, 1), e.g. 0.05")),
        },
    };
    let Some(toml::Value::Array(items)) = t.get("rules") else {
        return Err(
            ctx.err(&at(&[]), "[scaling] needs `rules = [...]`: presets such as \"adamw-sqrt\" or custom exponents")
        );
    };
    if items.is_empty() {
        return Err(ctx.err(&at(&[k("rules")]), "`rules` is empty: name at least one rule"));
    }
    let presets = crate::scaling::PRESETS.map(|(n, _)| n).join(", ");
    let mut rules: Vec<ScalingRule> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = at(&[k("rules"), Seg::Index(i)]);
        let sub = |key: &str| {
            let mut p = path.clone();
            p.push(k(key));
            p
        };
        let rule = match item {
            toml::Value::String(name) => ScalingRule::preset(name)
                .ok_or_else(|| ctx.err(&path, format!("unknown scaling rule `{name}` (presets: {presets})")))?,
            toml::Value::Table(rt) => {
                for key in rt.keys() {
                    if !matches!(
                        key.as_str(),
                        "preset" | "name" | "lr" | "one_minus_beta" | "eps" | "weight_decay" | "expect"
                    ) {
                        return Err(ctx.err(
                            &sub(key),
                            format!("unknown key `{key}` in a rule (expected preset, or name, lr, one_minus_beta, eps, weight_decay; and expect)"),
                        ));
                    }
                }
                let mut rule = match rt.get("preset") {
                    Some(toml::Value::String(p)) => ScalingRule::preset(p)
                        .ok_or_else(|| ctx.err(&sub("preset"), format!("unknown preset `{p}` (presets: {presets})")))?,
                    Some(_) => return Err(ctx.err(&sub("preset"), "preset must be a rule name")),
                    None => {
                        let name = match rt.get("name") {
                            Some(toml::Value::String(n)) if !n.trim().is_empty() => n.clone(),
                            _ => return Err(ctx.err(&path, "a custom rule needs `name` (or use `preset = \"...\"`)")),
                        };
                        ScalingRule { name, lr: 0.0, one_minus_beta: 0.0, eps: 0.0, weight_decay: 0.0, expect: None }
                    }
                };
                if rt.contains_key("preset")
                    && let Some(toml::Value::String(n)) = rt.get("name")
                {
                    rule.name = n.clone();
                }
                for (key, slot) in [
                    ("lr", &mut rule.lr),
                    ("one_minus_beta", &mut rule.one_minus_beta),
                    ("eps", &mut rule.eps),
                    ("weight_decay", &mut rule.weight_decay),
                ] {
                    if let Some(v) = rt.get(key) {
                        *slot = as_f64(v).filter(|x| x.is_finite()).ok_or_else(|| {
                            ctx.err(&sub(key), format!("`{key}` is an exponent of κ: a finite number"))
                        })?;
                    }
                }
                if let Some(v) = rt.get("expect") {
                    rule.expect = Some(match v.as_str() {
                        Some("holds") => Verdict::Holds,
                        Some("holds-late" | "holds late") => Verdict::HoldsLate,
                        Some("fails") => Verdict::Fails,
                        _ => {
                            return Err(
                                ctx.err(&sub("expect"), "expect must be \"holds\", \"holds-late\" or \"fails\"")
                            );
                        }
                    });
                }
                rule
            }
            _ => {
                return Err(ctx
                    .err(&path, "a rule is a preset name or a table { name, lr, one_minus_beta, eps, weight_decay }"));
            }
        };
        if rules.iter().any(|r| r.name == rule.name) {
            return Err(ctx.err(&path, format!("rule `{}` is listed twice", rule.name)));
        }
        // Every β this rule scales must stay in (0, 1) at every κ.
        let optimizers = match grid.axis(AxisName::Optimizer) {
            Some(AxisValues::Optimizer(v)) => v.clone(),
            _ => Vec::new(),
        };
        for (axis, used) in [
            (AxisName::Beta1, optimizers.iter().any(|o| o.uses_beta1())),
            (AxisName::Beta2, optimizers.iter().any(|o| o.uses_beta2())),
        ] {
            if !used {
                continue;
            }
            let betas = match grid.axis(axis) {
                Some(AxisValues::Real(v)) => v.clone(),
                _ => {
                    vec![if axis == AxisName::Beta1 { Hyperparams::DEFAULT_BETA1 } else { Hyperparams::DEFAULT_BETA2 }]
                }
            };
            for (bi, &beta) in betas.iter().enumerate() {
                for &kappa in &kappas {
                    let scaled = rule.scaled_beta(beta, kappa);
                    if !(scaled > 0.0 && scaled < 1.0) {
                        let place = match zips.iter().position(|z| z.contains_key(axis.as_str())) {
                            Some(z) => format!("zip[{z}].{axis}[{bi}]"),
                            None if grid.axis(axis).is_some() => format!("grid.{axis}[{bi}]"),
                            None => format!("the default {axis}"),
                        };
                        return Err(ctx.err(
                            &path,
                            format!(
                                "rule `{}` at κ = {kappa} scales base point {axis} = {beta} ({place}) to \
                                 1 − κ^{}·(1 − β) = {scaled:.6}, outside (0, 1)",
                                rule.name, rule.one_minus_beta
                            ),
                        ));
                    }
                }
            }
        }
        rules.push(rule);
    }
    Ok(Scaling { kappas, rules, tolerance })
}

fn axis_name(ctx: &Ctx<'_>, path: &[Seg], key: &str) -> Result<AxisName, SpecError> {
    AxisName::from_key(key)
        .ok_or_else(|| ctx.err(path, format!("unknown grid axis `{key}` (known axes: {})", AxisName::known_keys())))
}

/// Parses one axis: a list, a single value, `{ log = [lo, hi], num = n }` or `{ linspace = [lo, hi], num = n }`.
fn parse_axis(ctx: &Ctx<'_>, path: &[Seg], axis: AxisName, value: &toml::Value) -> Result<AxisValues, SpecError> {
    let items: Vec<(Vec<Seg>, ItemValue)> = match value {
        toml::Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut p = path.to_vec();
                p.push(Seg::Index(i));
                (p, ItemValue::Toml(v.clone()))
            })
            .collect(),
        toml::Value::Table(t) => {
            spaced_axis(ctx, path, axis, t)?.into_iter().map(|x| (path.to_vec(), ItemValue::Generated(x))).collect()
        }
        other => vec![(path.to_vec(), ItemValue::Toml(other.clone()))],
    };
    if items.is_empty() {
        return Err(ctx.err(path, format!("axis `{axis}` is empty: give at least one value")));
    }
    let values = match axis {
        AxisName::Optimizer => AxisValues::Optimizer(
            items
                .iter()
                .map(|(p, v)| match v {
                    ItemValue::Toml(toml::Value::String(s)) => {
                        s.parse::<OptimizerKind>().map_err(|e| ctx.err(p, e.to_string()))
                    }
                    _ => Err(ctx.err(p, "optimizer values must be strings such as \"sgd\" or \"adamw\"")),
                })
                .collect::<Result<_, _>>()?,
        ),
        AxisName::BatchSize | AxisName::Seed => {
            AxisValues::Int(items.iter().map(|(p, v)| int_value(ctx, p, axis, v)).collect::<Result<_, _>>()?)
        }
        _ => AxisValues::Real(items.iter().map(|(p, v)| real_value(ctx, p, axis, v)).collect::<Result<_, _>>()?),
    };
    check_distinct(ctx, path, axis, &values)?;
    Ok(values)
}

enum ItemValue {
    Toml(toml::Value),
    Generated(f64),
}

fn spaced_axis(ctx: &Ctx<'_>, path: &[Seg], axis: AxisName, t: &toml::Table) -> Result<Vec<f64>, SpecError> {
    if axis == AxisName::Optimizer {
        return Err(ctx.err(path, "the optimizer axis takes a list of names, not a range"));
    }
    let sub = |key: &str| {
        let mut p = path.to_vec();
        p.push(k(key));
        p
    };
    for key in t.keys() {
        if !matches!(key.as_str(), "log" | "linspace" | "num") {
            return Err(ctx.err(
                &sub(key),
                format!("unknown key `{key}` in a range axis (expected `log` or `linspace`, and `num`)"),
            ));
        }
    }
    let (kind, log) = match (t.get("log"), t.get("linspace")) {
        (Some(_), Some(_)) => {
            return Err(ctx.err(path, "give either `log` or `linspace`, not both"));
        }
        (Some(_), None) => ("log", true),
        (None, Some(_)) => ("linspace", false),
        (None, None) => {
            return Err(ctx.err(path, "a range axis needs `log = [lo, hi]` or `linspace = [lo, hi]`, and `num`"));
        }
    };
    let ends = match t.get(kind) {
        Some(toml::Value::Array(a)) if a.len() == 2 => {
            let mut out = [0.0; 2];
            for (i, v) in a.iter().enumerate() {
                out[i] = as_f64(v).ok_or_else(|| {
                    let mut p = sub(kind);
                    p.push(Seg::Index(i));
                    ctx.err(&p, "range ends must be numbers")
                })?;
            }
            out
        }
        _ => {
            return Err(ctx.err(&sub(kind), format!("`{kind}` must be a list of two numbers [lo, hi]")));
        }
    };
    let num = match t.get("num") {
        Some(toml::Value::Integer(n)) if *n >= 1 && *n <= 1_000_000 => *n as usize,
        Some(_) => {
            return Err(ctx.err(&sub("num"), "`num` must be a whole number from 1 to 1000000"));
        }
        None => {
            return Err(ctx.err(path, format!("a `{kind}` range needs `num`, the number of values")));
        }
    };
    if !(ends[0].is_finite() && ends[1].is_finite()) {
        return Err(ctx.err(&sub(kind), "range ends must be finite"));
    }
    if log && !(ends[0] > 0.0 && ends[1] > 0.0) {
        return Err(ctx.err(&sub(kind), format!("a log range needs positive ends, got [{}, {}]", ends[0], ends[1])));
    }
    let mut values = spaced(ends[0], ends[1], num, log);
    if matches!(axis, AxisName::BatchSize | AxisName::Seed) {
        for v in &mut values {
            *v = v.round();
        }
    }
    Ok(values)
}

fn as_f64(v: &toml::Value) -> Option<f64> {
    match v {
        toml::Value::Float(f) => Some(*f),
        toml::Value::Integer(i) => Some(*i as f64),
        _ => None,
    }
}

fn int_value(ctx: &Ctx<'_>, p: &[Seg], axis: AxisName, v: &ItemValue) -> Result<u64, SpecError> {
    let x = match v {
        ItemValue::Toml(toml::Value::Integer(i)) => *i as f64,
        ItemValue::Generated(x) => *x,
        _ => return Err(ctx.err(p, format!("`{axis}` values must be whole numbers"))),
    };
    if x < 0.0 {
        return Err(ctx.err(p, format!("`{axis}` must be >= 0, got {x}")));
    }
    if axis == AxisName::BatchSize && x < 1.0 {
        return Err(ctx.err(p, "batch size must be at least 1, got 0"));
    }
    Ok(x as u64)
}

fn real_value(ctx: &Ctx<'_>, p: &[Seg], axis: AxisName, v: &ItemValue) -> Result<f64, SpecError> {
    let x = match v {
        ItemValue::Toml(t) => as_f64(t).ok_or_else(|| ctx.err(p, format!("`{axis}` values must be numbers")))?,
        ItemValue::Generated(x) => *x,
    };
    let problem = match axis {
        _ if !x.is_finite() => Some(format!("must be finite, got {x}")),
        AxisName::Lr if x <= 0.0 => Some(format!("learning rate must be > 0, got {x}")),
        AxisName::Beta1 | AxisName::Beta2 if !(0.0..1.0).contains(&x) => {
            Some(format!("{axis} must be in [0, 1), got {x}"))
        }
        AxisName::Eps | AxisName::WeightDecay if x < 0.0 => Some(format!("{axis} must be >= 0, got {x}")),
        _ => None,
    };
    match problem {
        Some(m) => Err(ctx.err(p, m)),
        None => Ok(x),
    }
}

fn check_distinct(ctx: &Ctx<'_>, path: &[Seg], axis: AxisName, values: &AxisValues) -> Result<(), SpecError> {
    // Sort indices by value and compare neighbours: O(n log n) for large generated axes.
    let mut order: Vec<usize> = (0..values.len()).collect();
    let cmp = |i: usize, j: usize| match values {
        AxisValues::Optimizer(v) => v[i].cmp(&v[j]),
        AxisValues::Int(v) => v[i].cmp(&v[j]),
        AxisValues::Real(v) => v[i].total_cmp(&v[j]),
    };
    order.sort_by(|&i, &j| cmp(i, j));
    for w in order.windows(2) {
        if cmp(w[0], w[1]).is_eq() {
            let (a, b) = (w[0].min(w[1]), w[0].max(w[1]));
            return Err(
                ctx.err(path, format!("axis `{axis}` repeats the value {} (positions {a} and {b})", values.display(a)))
            );
        }
    }
    Ok(())
}

fn check_budget(
    ctx: &Ctx<'_>,
    task: &TaskSpec,
    grid: &Grid,
    zips: &[toml::Table],
    scaling: Option<&Scaling>,
) -> Result<(), SpecError> {
    let Some(samples) = task.samples() else { return Ok(()) };
    let axis_path = |key: &str| match zips.iter().position(|z| z.contains_key(key)) {
        Some(z) => vec![k("zip"), Seg::Index(z), k(key)],
        None => vec![k("grid"), k(key)],
    };
    let batches = match grid.axis(AxisName::BatchSize) {
        Some(AxisValues::Int(v)) => v.clone(),
        _ => vec![crate::params::Hyperparams::DEFAULT_BATCH_SIZE],
    };
    if let Some(&b) = batches.iter().find(|&&b| b > samples) {
        return Err(ctx.err(
            &axis_path("batch_size"),
            format!("batch size {b} is larger than the sample budget task.samples = {samples}: no step would run"),
        ));
    }
    if let Some(s) = scaling {
        let kmax = s.kappas.last().copied().unwrap_or(1);
        if let Some(&b) = batches.iter().find(|&&b| b.saturating_mul(kmax) > samples) {
            return Err(ctx.err(
                &[k("scaling"), k("kappa")],
                format!(
                    "κ = {kmax} scales batch size {b} to {}, larger than the sample budget task.samples = {}: \
                     no step would run",
                    b.saturating_mul(kmax),
                    samples
                ),
            ));
        }
    }
    let (sde_model, noise) = match task {
        TaskSpec::Sde(sim) => (sim.sde_model, Some(&sim.noise)),
        TaskSpec::Train(t) if t.sde => (t.sde_model, None),
        _ => return Ok(()),
    };
    if let Some(AxisValues::Optimizer(opts)) = grid.axis(AxisName::Optimizer) {
        for o in opts {
            if sde_model == SdeModel::Malladi && !o.uses_beta2() {
                return Err(ctx.err(
                    &axis_path("optimizer"),
                    format!("sde_model = \"malladi\" defines SDEs for rmsprop(w) and adam(w) only, not {o}"),
                ));
            }
            if noise.is_some_and(|n| n.variance_factor().is_none()) && *o != OptimizerKind::SignSgd {
                return Err(ctx.err(
                    &axis_path("optimizer"),
                    format!(
                        "the {o} SDE needs finite noise variance, and Student-t noise with nu <= 2 has none; \
                         only signsgd has an SDE there (use kind = \"optimizer\" to run the {o} optimizer itself)"
                    ),
                ));
            }
        }
    }
    Ok(())
}

//! The sweep file (version 1): parsing and validation.
//!
//! Every error names the file, the key, and the line and column of the offending value, and never
//! panics. Parsing goes in two passes over the same text: serde deserialises the typed structure
//! (so unknown keys and wrong types are caught with their position), then `validate` checks
//! values, locating each offending key through a span-preserving parse of the document.
//! `[grid]`, `[[zip]]` and `[scaling]` are typed leniently (see `raw`): serde sorts out their
//! keys, and their checks report their unknown keys with the rest.

//!
//! Module map: `error` (errors and how they are located), `raw` (the serde types), `task` (each
//! task kind's checks), `grid` (axes and zips), `axes` (the `task.*` and `params.*` axes: their
//! names, values and each combination's task), `scaling` (`[scaling]`), `execution`
//! (`[execution]`, durations), `analysis` (`[analysis]`), `budget` (checks across tables).

mod analysis;
mod axes;
mod budget;
mod error;
mod execution;
mod grid;
mod range;
mod raw;
mod scaling;
mod search;
mod task;

pub use analysis::{Analysis, AnalysisObjective, Mode};
pub use axes::MAX_TASK_VARIANTS;
pub use error::{SpecError, SpecErrorDetail};
pub use execution::parse_duration;
pub use raw::MAX_DIM;
pub use search::{BracketSpec, HalvingSpec, SearchStart};

use crate::grid::Grid;
use crate::scaling::Scaling;
use crate::task::TaskSpec;
use crate::trial::RetryPolicy;
use error::{Ctx, k};
use raw::RawSweep;
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
    /// What each trial runs: `[task]` with the first value of every `task.*` axis applied (the
    /// first of [`Sweep::variants`]).
    pub task: TaskSpec,
    /// Every task of the sweep: one per combination of the `task.*` axes (just `[task]` without
    /// any), in the grid's order, then the tasks of trials that rules scaling task fields derive.
    pub variants: Vec<TaskVariant>,
    /// Where the task of a scaled trial is in `variants`, by (its base point's task, rule, κ),
    /// for rules that scale task fields.
    pub scaled_tasks: std::collections::BTreeMap<(usize, usize, u64), usize>,
    /// The expanded (lazy) grid of hyperparameters.
    pub grid: Grid,
    /// Scaling rules: every grid point is a base point replicated for every κ under every rule.
    pub scaling: Option<Scaling>,
    /// How trials are executed.
    pub execution: Execution,
    /// What the report's learning-rate and batch-size analysis measures (`[analysis]`).
    pub analysis: Analysis,
    /// Where the trials come from beyond the grid: a bracketing search over one axis
    /// (`[search] kind = "bracket"`; `None`: the grid's points are the trials). Its axis is in
    /// `grid` as a dimension of one value, which each probe replaces.
    pub search: Option<BracketSpec>,
    /// Asynchronous successive halving over the grid's trials (`[search] kind = "halving"`).
    pub halving: Option<HalvingSpec>,
}

/// One task of a sweep: `[task]` with one combination of the `task.*` axes applied.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskVariant {
    /// The effective task, validated.
    pub task: TaskSpec,
    /// Its canonical JSON (what trial ids hash).
    pub json: serde_json::Value,
    /// The task axes left out of its trials (their field does not apply to its kind).
    pub left_out: Vec<String>,
    /// For the task of a scaled trial: the task fields its rule set, and their values.
    pub scaled: Vec<(String, serde_json::Value)>,
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

fn validate(ctx: &Ctx<'_>, raw: RawSweep) -> Result<Sweep, SpecError> {
    if raw.version != SPEC_VERSION {
        return Err(ctx.err(
            &[k("version")],
            format!("unsupported sweep file version {} (this kappa reads version {SPEC_VERSION})", raw.version),
        ));
    }
    validate_name(ctx, &raw.name)?;
    let execution = execution::validate_execution(ctx, raw.execution)?;
    let analysis = analysis::validate_analysis(ctx, raw.analysis)?;
    let (grid, sources) = grid::build_grid(ctx, &raw.grid, &raw.zip, execution.max_trials)?;
    let (searches, grid) = search::validate_search(ctx, raw.search, grid)?;
    let search = searches.bracket;
    let scaling = match &raw.scaling {
        Some(t) => Some(scaling::scaling(ctx, t, &grid, &raw.zip)?),
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
    // The [task] table as written, for the task axes to override (the text parsed above).
    let base = toml::from_str::<toml::Table>(ctx.text)
        .ok()
        .and_then(|mut doc| match doc.remove("task") {
            Some(toml::Value::Table(t)) => Some(t),
            _ => None,
        })
        .unwrap_or_default();
    let (mut variants, tables) =
        axes::task_variants(ctx, raw.task, &base, &grid, &sources, &raw.zip, scaling.as_ref())?;
    axes::check_placeholders(ctx, &variants[0].task, &grid, searches.halving.is_some())?;
    if variants.iter().any(|v| !matches!(v.task, TaskSpec::Command(_) | TaskSpec::Noop { .. })) {
        grid::require_optimizer(ctx, &grid)?;
    }
    // A rule scales the batch size and the optimizer's hyperparameters: the trials must carry
    // them, or scaled trials would be their base trials again.
    if raw.scaling.is_some() && !grid.builtins().is_all() {
        return Err(ctx.err(
            &[k("scaling")],
            "[scaling] multiplies the batch size and scales the optimizer's hyperparameters: the grid must name \
             `optimizer` and `lr` (and `batch_size` for a base other than 1) for its rules to act on",
        ));
    }
    let scaled_tasks = axes::scaled_variants(ctx, &mut variants, &tables, &grid, &raw.zip, scaling.as_ref())?;
    if let Some(h) = &searches.halving {
        search::check_halving(ctx, h, &variants, scaling.is_some())?;
    }
    let task = variants[0].task.clone();
    let halving = searches.halving;
    Ok(Sweep { name: raw.name, task, variants, scaled_tasks, grid, scaling, execution, analysis, search, halving })
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

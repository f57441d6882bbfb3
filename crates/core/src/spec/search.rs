//! The `[search]` table: where a sweep's trials come from. The grid (the default) runs every
//! point it lists; the bracketing search looks for each group's best value of one numeric axis
//! (see [`crate::search`]).

use super::SpecError;
use super::error::{Ctx, Seg, k};
use crate::grid::{Axis, AxisValues, Dimension, Grid};
use crate::params::{AxisName, PARAM_PREFIX, TASK_PREFIX};
use serde::Deserialize;

/// The `[search]` table as written (its values are checked by [`validate_search`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSearch {
    kind: Option<String>,
    axis: Option<String>,
    range: Option<toml::Value>,
    start: Option<toml::Value>,
    factor: Option<toml::Value>,
    tolerance: Option<toml::Value>,
    max_trials: Option<toml::Value>,
    min_samples: Option<toml::Value>,
    reduction: Option<toml::Value>,
    within: Option<toml::Value>,
    max_samples: Option<toml::Value>,
}

/// Where a group's search starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SearchStart {
    /// At this value, for every group.
    Value(f64),
    /// Where the scaling of the groups already searched predicts the optimum: groups that differ
    /// only in batch size go one after another, from the smallest batch size (which starts at
    /// the geometric middle of the range); each next one starts at the previous optimum times
    /// (B'/B)^a, a fitted over the optima found so far (the theory's exponent until two are).
    Rule,
}

/// A bracketing search for each group's best value of one axis (`[search] kind = "bracket"`).
#[derive(Clone, Debug, PartialEq)]
pub struct BracketSpec {
    /// The searched axis: a real-valued built-in (`lr`, `beta1`, `beta2`, `eps`, `weight_decay`)
    /// or a parameter of the user's own (`params.*`).
    pub axis: Axis,
    /// Where the optimum is sought: `[low, high]`, 0 < low < high (probes are placed in ratio).
    pub range: [f64; 2],
    /// Where each group starts.
    pub start: SearchStart,
    /// The first step, in ratio (> 1): the first round probes start/factor, start, start·factor,
    /// and the search goes on in steps of it until the objective turns.
    pub factor: f64,
    /// Stop once the optimum is known within ±tolerance, in ratio.
    pub tolerance: f64,
    /// The most trials one group may run, seeds included.
    pub max_trials: u64,
}

impl BracketSpec {
    /// Default `factor`.
    pub const DEFAULT_FACTOR: f64 = 2.0;
    /// Default `tolerance`.
    pub const DEFAULT_TOLERANCE: f64 = 0.05;
    /// Default `max_trials`, in probes (times the seeds).
    pub const DEFAULT_PROBES: u64 = 15;
    /// Probes in the first round of a group.
    pub const FIRST_ROUND: u64 = 3;

    /// The geometric middle of the range.
    pub fn middle(&self) -> f64 {
        (self.range[0] * self.range[1]).sqrt()
    }
}

/// Asynchronous successive halving (`[search] kind = "halving"`, see [`crate::halving`]): every
/// trial of the grid starts with the first rung's budget, and only the best 1/`reduction` of
/// each comparison group go on to the next rung, continuing where they stopped.
#[derive(Clone, Debug, PartialEq)]
pub struct HalvingSpec {
    /// The first rung's budget, in samples seen.
    pub min_samples: u64,
    /// Keep the best 1/reduction at each rung; rungs at min_samples · reduction^k.
    pub reduction: u64,
    /// Trials are compared only with trials equal in these axes (and the seed is never one:
    /// a setting's seeds go on together).
    pub within: Vec<Axis>,
    /// The full budget of a command task (`max_samples`; other kinds have their task's
    /// `samples`).
    pub max_samples: Option<u64>,
}

impl HalvingSpec {
    /// Default `reduction`.
    pub const DEFAULT_REDUCTION: u64 = 3;

    /// The rungs' budgets for a task whose full budget is `full` samples: min_samples ·
    /// reduction^k below `full`, then `full` (the last rung: a trial that reaches it is complete).
    pub fn rungs(&self, full: u64) -> Vec<u64> {
        let mut out = Vec::new();
        let mut r = self.min_samples.max(1);
        while r < full {
            out.push(r);
            r = r.saturating_mul(self.reduction.max(2));
        }
        out.push(full);
        out
    }
}

/// What `[search]` holds.
#[derive(Clone, Debug, PartialEq, Default)]
pub(super) struct Searches {
    pub(super) bracket: Option<BracketSpec>,
    pub(super) halving: Option<HalvingSpec>,
}

/// The search kinds, as the sweep file names them.
const KINDS: &str = "\"grid\" (every point of [grid], the default), \"bracket\" or \"halving\"";

/// The settings of each kind, for the error that names a setting given to another kind.
const BRACKET_KEYS: [&str; 6] = ["axis", "range", "start", "factor", "tolerance", "max_trials"];
const HALVING_KEYS: [&str; 4] = ["min_samples", "reduction", "within", "max_samples"];

/// Checks `[search]` against the grid; returns the bracketing search, if that is the kind, and
/// the grid with the searched axis added as a dimension of one value (the range's middle: what
/// every check of a trial's values sees; the search sets each probe's own value).
pub(super) fn validate_search(
    ctx: &Ctx<'_>,
    raw: Option<RawSearch>,
    grid: Grid,
) -> Result<(Searches, Grid), SpecError> {
    let Some(raw) = raw else { return Ok((Searches::default(), grid)) };
    let at = |key: &str| [k("search"), k(key)];
    let kind = raw.kind.as_deref().unwrap_or("grid");
    let given = [
        ("axis", raw.axis.is_some()),
        ("range", raw.range.is_some()),
        ("start", raw.start.is_some()),
        ("factor", raw.factor.is_some()),
        ("tolerance", raw.tolerance.is_some()),
        ("max_trials", raw.max_trials.is_some()),
        ("min_samples", raw.min_samples.is_some()),
        ("reduction", raw.reduction.is_some()),
        ("within", raw.within.is_some()),
        ("max_samples", raw.max_samples.is_some()),
    ];
    let own: &[&str] = match kind {
        "grid" => &[],
        "bracket" => &BRACKET_KEYS,
        "halving" => &HALVING_KEYS,
        other => return Err(ctx.err(&at("kind"), format!("unknown search kind {other:?}: {KINDS}"))),
    };
    if let Some((key, _)) = given.iter().find(|(key, set)| *set && !own.contains(key)) {
        let of = if BRACKET_KEYS.contains(key) { "bracket" } else { "halving" };
        let has = if kind == "grid" { "the grid has none".to_string() } else { format!("kind = \"{kind}\" has none") };
        return Err(ctx.err(&at(key), format!("`{key}` is a setting of kind = \"{of}\"; {has}")));
    }
    match kind {
        "grid" => return Ok((Searches::default(), grid)),
        "halving" => return Ok((Searches { bracket: None, halving: Some(halving(ctx, &raw, &grid)?) }, grid)),
        _ => {}
    }
    let Some(name) = raw.axis else {
        return Err(ctx.err(&[k("search")], "a bracketing search needs `axis`, the axis it searches (e.g. \"lr\")"));
    };
    let axis = searched_axis(ctx, &name)?;
    let in_grid = match &axis {
        Axis::Builtin(a) => grid.axis(*a).is_some(),
        Axis::Named(n) => grid.named_axis(n).is_some(),
    };
    if in_grid {
        let path: Vec<Seg> = std::iter::once(k("grid")).chain(name.split('.').map(k)).collect();
        let line = ctx.line_of(&path).map_or(String::new(), |l| format!(", line {l}"));
        return Err(ctx.err(
            &at("axis"),
            format!(
                "`{name}` is searched, so it cannot also be a grid axis: remove it from [grid] (or its [[zip]] \
                 group{line}); `range` says where the search looks"
            ),
        ));
    }
    let number = |key: &str, v: &toml::Value| -> Result<f64, SpecError> {
        match v {
            toml::Value::Float(x) => Ok(*x),
            toml::Value::Integer(i) => Ok(*i as f64),
            other => Err(ctx.err(&at(key), format!("`{key}` must be a number, got {other}"))),
        }
    };
    let Some(range) = raw.range else {
        return Err(ctx.err(&[k("search")], "a bracketing search needs `range = [low, high]`, where it looks"));
    };
    let pair = match &range {
        toml::Value::Array(a) if a.len() == 2 => Some((number("range", &a[0])?, number("range", &a[1])?)),
        _ => None,
    };
    let range = match pair {
        Some((lo, hi)) if lo.is_finite() && hi.is_finite() && lo > 0.0 && lo < hi => [lo, hi],
        Some((lo, hi)) => {
            return Err(ctx.err(
                &at("range"),
                format!("range must be [low, high] with 0 < low < high (probes are placed in ratio), got [{lo}, {hi}]"),
            ));
        }
        None => return Err(ctx.err(&at("range"), format!("range must be [low, high], got {range}"))),
    };
    if matches!(axis, Axis::Builtin(AxisName::Beta1 | AxisName::Beta2)) && range[1] >= 1.0 {
        return Err(ctx.err(&at("range"), format!("`{name}` must stay below 1: range ends at {}", range[1])));
    }
    let has_batch = grid.axis(AxisName::BatchSize).is_some_and(|v| v.len() > 1);
    let start = match &raw.start {
        None if has_batch => SearchStart::Rule,
        None => SearchStart::Value((range[0] * range[1]).sqrt()),
        Some(toml::Value::String(s)) if s == "rule" => {
            if !has_batch {
                return Err(ctx.err(
                    &at("start"),
                    "start = \"rule\" starts each batch size where the ones before predict its optimum: the grid \
                     needs a `batch_size` axis with two or more values (or give a number)",
                ));
            }
            SearchStart::Rule
        }
        Some(v @ (toml::Value::Float(_) | toml::Value::Integer(_))) => {
            let s = number("start", v)?;
            if !(s >= range[0] && s <= range[1]) {
                return Err(
                    ctx.err(&at("start"), format!("start = {s} is outside range = [{}, {}]", range[0], range[1]))
                );
            }
            SearchStart::Value(s)
        }
        Some(v) => return Err(ctx.err(&at("start"), format!("start must be a number or \"rule\", got {v}"))),
    };
    let factor = match &raw.factor {
        Some(v) => number("factor", v)?,
        None => BracketSpec::DEFAULT_FACTOR,
    };
    if !(factor.is_finite() && factor > 1.0) {
        return Err(ctx.err(&at("factor"), format!("factor is a ratio between probes and must be > 1, got {factor}")));
    }
    let tolerance = match &raw.tolerance {
        Some(v) => number("tolerance", v)?,
        None => BracketSpec::DEFAULT_TOLERANCE,
    };
    if !(tolerance.is_finite() && tolerance > 0.0 && tolerance < 1.0) {
        return Err(ctx.err(
            &at("tolerance"),
            format!("tolerance is the ± ratio the optimum is sought to (0.05: within ±5%) and must be in (0, 1), got {tolerance}"),
        ));
    }
    let seeds = grid.axis(AxisName::Seed).map_or(1, |v| v.len() as u64);
    let first = BracketSpec::FIRST_ROUND * seeds;
    let max_trials = match &raw.max_trials {
        Some(toml::Value::Integer(n)) if *n > 0 => *n as u64,
        Some(v) => {
            return Err(ctx.err(&at("max_trials"), format!("max_trials must be a positive whole number, got {v}")));
        }
        None => BracketSpec::DEFAULT_PROBES * seeds,
    };
    if max_trials < first {
        return Err(ctx.err(
            &at("max_trials"),
            format!(
                "max_trials = {max_trials} cannot hold a group's first round: {} probes × {seeds} seed(s) = {first}",
                BracketSpec::FIRST_ROUND
            ),
        ));
    }
    let spec = BracketSpec { axis: axis.clone(), range, start, factor, tolerance, max_trials };
    // The axis's value in every check of the sweep's trials: the middle of the range.
    let middle = match &start {
        SearchStart::Value(v) => *v,
        SearchStart::Rule => spec.middle(),
    };
    let values = match &axis {
        Axis::Builtin(_) => AxisValues::Real(vec![middle]),
        Axis::Named(_) => AxisValues::Named(vec![serde_json::json!(middle)]),
    };
    let mut dims = grid.dims().to_vec();
    dims.push(Dimension { axes: vec![(axis, values)], len: 1 });
    let grid = Grid::new(dims).ok_or_else(|| ctx.err(&[k("search")], "the grid is too large"))?;
    Ok((Searches { bracket: Some(spec), halving: None }, grid))
}

/// A whole number of samples ≥ 1 (TOML integers, `20_000` included).
fn count(ctx: &Ctx<'_>, key: &str, v: &toml::Value) -> Result<u64, SpecError> {
    match v {
        toml::Value::Integer(n) if *n > 0 => Ok(*n as u64),
        other => Err(ctx.err(&[k("search"), k(key)], format!("`{key}` must be a positive whole number, got {other}"))),
    }
}

/// The halving settings that need only the grid (the budget against the task is checked by
/// [`check_halving`], once the tasks are known).
fn halving(ctx: &Ctx<'_>, raw: &RawSearch, grid: &Grid) -> Result<HalvingSpec, SpecError> {
    let at = |key: &str| [k("search"), k(key)];
    let Some(min) = &raw.min_samples else {
        return Err(ctx.err(
            &[k("search")],
            "successive halving needs `min_samples`, the first rung's budget in samples seen (e.g. min_samples = \
             20_000: every trial runs that far, the best 1/reduction of them go on)",
        ));
    };
    let min_samples = count(ctx, "min_samples", min)?;
    let reduction = match &raw.reduction {
        Some(toml::Value::Integer(n)) if *n >= 2 => *n as u64,
        Some(v) => {
            return Err(ctx.err(
                &at("reduction"),
                format!(
                    "reduction must be a whole number ≥ 2 (each rung keeps the best 1/reduction of its trials), got {v}"
                ),
            ));
        }
        None => HalvingSpec::DEFAULT_REDUCTION,
    };
    let names: Vec<String> = match &raw.within {
        None => Vec::new(),
        Some(toml::Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                toml::Value::String(s) => Ok(s.clone()),
                other => Err(ctx.err(&at("within"), format!("within lists axis names, got {other}"))),
            })
            .collect::<Result<_, _>>()?,
        Some(v) => return Err(ctx.err(&at("within"), format!("within must be a list of axis names, got {v}"))),
    };
    let mut within = Vec::new();
    for name in &names {
        let axis = match AxisName::from_key(name) {
            Some(a) => Axis::Builtin(a),
            None => Axis::Named(name.clone()),
        };
        let present = match &axis {
            Axis::Builtin(a) => grid.axis(*a).is_some(),
            Axis::Named(n) => grid.named_axis(n).is_some(),
        };
        if !present {
            let axes: Vec<String> =
                grid.dims().iter().flat_map(|d| d.axes.iter().map(|(a, _)| a.name().to_string())).collect();
            return Err(ctx.err(
                &at("within"),
                format!("within names `{name}`, which is not an axis of [grid] (its axes: {})", axes.join(", ")),
            ));
        }
        if axis == Axis::Builtin(AxisName::Seed) {
            return Err(ctx.err(
                &at("within"),
                "within cannot name `seed`: a setting's seeds are judged together (by their mean) and go on together",
            ));
        }
        if !within.contains(&axis) {
            within.push(axis);
        }
    }
    let max_samples = raw.max_samples.as_ref().map(|v| count(ctx, "max_samples", v)).transpose()?;
    if grid.named_axis("params.samples").is_some() {
        return Err(ctx.err(
            &[k("grid"), k("params"), k("samples")],
            "a parameter named `samples` would be read as {samples}, the rung's budget under successive halving: \
             give it another name",
        ));
    }
    Ok(HalvingSpec { min_samples, reduction, within, max_samples })
}

/// Checks successive halving against the sweep's tasks: each must be a kind that can stop at a
/// rung and go on, with a budget above the first rung's.
pub(super) fn check_halving(
    ctx: &Ctx<'_>,
    spec: &HalvingSpec,
    variants: &[super::TaskVariant],
    scaling: bool,
) -> Result<(), SpecError> {
    let at = |key: &str| [k("search"), k(key)];
    if scaling {
        return Err(ctx.err(
            &[k("scaling")],
            "[scaling] with successive halving is not supported yet: the rules' variants would be stopped at rungs \
             before their verdicts could judge them (run the rules as a grid, or search without [scaling])",
        ));
    }
    for v in variants {
        let full = match (&v.task, v.task.samples()) {
            (crate::TaskSpec::Noop { .. }, _) => {
                return Err(ctx.err(
                    &[k("task"), k("kind")],
                    "successive halving stops trials at rungs and continues them later: kind = \"noop\" has no \
                     budget to stop at (use sde, optimizer, train or command)",
                ));
            }
            (crate::TaskSpec::Command(_), _) => match spec.max_samples {
                Some(m) => m,
                None => {
                    return Err(ctx.err(
                        &[k("search")],
                        "a command task has no budget kappa knows: give `max_samples` in [search], the full budget \
                         in samples seen (each attempt gets its rung's budget as {samples} and KAPPA_SAMPLES)",
                    ));
                }
            },
            (_, Some(s)) => {
                if spec.max_samples.is_some() {
                    return Err(ctx.err(
                        &at("max_samples"),
                        format!("max_samples is for command tasks; this task's budget is its `samples` ({s})"),
                    ));
                }
                s
            }
            (_, None) => continue,
        };
        if spec.min_samples >= full {
            return Err(ctx.err(
                &at("min_samples"),
                format!(
                    "min_samples = {} is not below the task's budget of {full} samples: there would be nothing to stop \
                     early (the first rung must be a fraction of the budget)",
                    spec.min_samples
                ),
            ));
        }
    }
    Ok(())
}

/// The axis `name` names, if a search can search it.
fn searched_axis(ctx: &Ctx<'_>, name: &str) -> Result<Axis, SpecError> {
    let path: [Seg; 2] = [k("search"), k("axis")];
    if let Some(a) = AxisName::from_key(name) {
        return match a {
            AxisName::Lr | AxisName::Beta1 | AxisName::Beta2 | AxisName::Eps | AxisName::WeightDecay => {
                Ok(Axis::Builtin(a))
            }
            _ => Err(ctx.err(
                &path,
                format!(
                    "`{name}` is not a real-valued axis: a search looks for the best value of lr, beta1, beta2, eps, \
                     weight_decay or a params.* axis (list {name}'s values in [grid])"
                ),
            )),
        };
    }
    if let Some(field) = name.strip_prefix(PARAM_PREFIX)
        && !field.is_empty()
        && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Ok(Axis::Named(name.to_string()));
    }
    if name.starts_with(TASK_PREFIX) {
        return Err(ctx.err(
            &path,
            format!(
                "`{name}` is a [task] field: a search cannot search a task field yet (every probe would be a task of \
                 its own); search lr, beta1, beta2, eps, weight_decay or a params.* axis"
            ),
        ));
    }
    Err(ctx.err(
        &path,
        format!("unknown axis `{name}`: a search looks for the best value of lr, beta1, beta2, eps, weight_decay or a params.* axis"),
    ))
}

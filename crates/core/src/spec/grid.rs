//! `[grid]` and `[[zip]]`: axes, their values (lists, log and linear ranges), and the grid.

use super::SpecError;
use super::axes::{AxisSource, check_name, flatten, parse_named};
use super::error::{Ctx, Seg, k, path_string};
use super::range::{as_f64, spaced_values};
use super::raw::{RawAxis, RawGrid, RawGridEntry};
use crate::AxisName;
use crate::grid::{Axis, AxisValues, Dimension, Grid};
use crate::params::OptimizerKind;

/// An axis as written: its key path, the axis, and its value.
type Written<'v> = (Vec<Seg>, Axis, &'v RawAxis);

/// The axes of one `[grid]` or `[[zip]]` table: built-in keys, and the leaves under `task` and
/// `params` (named axes), each with its key path and name.
fn axes_of<'v>(ctx: &Ctx<'_>, base: &[Seg], table: &'v RawGrid) -> Result<Vec<Written<'v>>, SpecError> {
    let mut out = Vec::new();
    for (key, entry) in &table.0 {
        let mut path = base.to_vec();
        path.push(k(key));
        match entry {
            RawGridEntry::Builtin(axis, value) => out.push((path, Axis::Builtin(*axis), value)),
            RawGridEntry::Named(named) => {
                if !named.has_keys() {
                    return Err(ctx.err(
                        &path,
                        format!(
                            "`{key}` takes dotted keys: `{key}.name = [...]` (for example task.noise.sigma, \
                             params.width)"
                        ),
                    ));
                }
                let mut leaves = Vec::new();
                flatten(path, key.clone(), named, &mut leaves);
                for (p, name, v) in leaves {
                    check_name(ctx, &p, &name)?;
                    out.push((p, Axis::Named(name), v));
                }
            }
            RawGridEntry::Unknown => return Err(unknown_axis(ctx, &path, key)),
        }
    }
    Ok(out)
}

fn parse_any(
    ctx: &Ctx<'_>,
    path: &[Seg],
    axis: &Axis,
    value: &RawAxis,
    sources: &mut Vec<AxisSource>,
) -> Result<AxisValues, SpecError> {
    match axis {
        Axis::Builtin(a) => parse_axis(ctx, path, *a, value),
        Axis::Named(name) => {
            let (values, listed) = parse_named(ctx, path, name, value)?;
            sources.push(AxisSource { name: name.clone(), path: path.to_vec(), listed });
            Ok(values)
        }
    }
}

/// The grid, and where each named axis is written (for errors about its values).
pub(super) fn build_grid(
    ctx: &Ctx<'_>,
    grid: &RawGrid,
    zips: &[RawGrid],
    max: u64,
) -> Result<(Grid, Vec<AxisSource>), SpecError> {
    let mut dims = Vec::new();
    let mut sources = Vec::new();
    let mut claims = Claims::default();
    for (path, axis, value) in axes_of(ctx, &[k("grid")], grid)? {
        claims.claim(ctx, &axis, &path)?;
        let values = parse_any(ctx, &path, &axis, value, &mut sources)?;
        dims.push(Dimension { len: values.len(), axes: vec![(axis, values)] });
    }
    for (z, table) in zips.iter().enumerate() {
        dims.push(zip_dimension(ctx, z, table, &mut claims, &mut sources)?);
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
    Ok((grid, sources))
}

/// The axes set so far, each with where it is set.
#[derive(Default)]
struct Claims(Vec<(Axis, Vec<Seg>)>);

impl Claims {
    /// Records that `path` sets `axis`: an axis may be set once, and parameters may not differ
    /// only in case (they become KAPPA_PARAM_<NAME>, where they would clash).
    fn claim(&mut self, ctx: &Ctx<'_>, axis: &Axis, path: &[Seg]) -> Result<(), SpecError> {
        if let Some((_, first)) = self.0.iter().find(|(a, _)| a == axis) {
            return Err(ctx.err(
                path,
                format!("axis `{axis}` is already set at `{}`; an axis may appear once", path_string(first)),
            ));
        }
        if let Axis::Named(n) = axis
            && n.starts_with(crate::params::PARAM_PREFIX)
            && let Some((other, _)) =
                self.0.iter().find(|(a, _)| a.name() != n && a.name().to_uppercase() == n.to_uppercase())
        {
            return Err(ctx.err(
                path,
                format!(
                    "`{n}` and `{other}` differ only in case: both would be KAPPA_PARAM_{} in the environment",
                    n[crate::params::PARAM_PREFIX.len()..].to_uppercase()
                ),
            ));
        }
        self.0.push((axis.clone(), path.to_vec()));
        Ok(())
    }
}

/// The dimension of `[[zip]]` group `z`: at least two axes, of equal lengths.
fn zip_dimension(
    ctx: &Ctx<'_>,
    z: usize,
    table: &RawGrid,
    claims: &mut Claims,
    sources: &mut Vec<AxisSource>,
) -> Result<Dimension, SpecError> {
    let base = vec![k("zip"), Seg::Index(z)];
    let zipped = axes_of(ctx, &base, table)?;
    if zipped.len() < 2 {
        return Err(ctx.err(&base, "a [[zip]] group needs at least two axes to zip together"));
    }
    let mut axes = Vec::new();
    let mut len: Option<(usize, String)> = None;
    for (path, axis, value) in zipped {
        let key = axis.name().to_string();
        claims.claim(ctx, &axis, &path)?;
        let values = parse_any(ctx, &path, &axis, value, sources)?;
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
    Ok(Dimension { axes, len })
}

/// Simulations and training read the optimizer and its learning rate (a command or noop sweep
/// needs no built-in axis at all): the grid must name both when any of the sweep's tasks is one.
pub(super) fn require_optimizer(ctx: &Ctx<'_>, grid: &Grid) -> Result<(), SpecError> {
    for required in [AxisName::Optimizer, AxisName::Lr] {
        if grid.axis(required).is_none() {
            return Err(ctx.err(&[k("grid")], format!("the grid must set `{required}` (in [grid] or a [[zip]] group)")));
        }
    }
    Ok(())
}

/// The error for a key of `[grid]` or `[[zip]]` that names no axis.
fn unknown_axis(ctx: &Ctx<'_>, path: &[Seg], key: &str) -> SpecError {
    ctx.err(
        path,
        format!(
            "unknown grid axis `{key}` (known axes: {}; a [task] field is `task.<field>`, a parameter of your own \
             `params.<name>`)",
            AxisName::known_keys()
        ),
    )
}

/// Parses one axis: a list, a single value, `{ log = [lo, hi], num = n }` or `{ linspace = [lo, hi], num = n }`.
pub(super) fn parse_axis(
    ctx: &Ctx<'_>,
    path: &[Seg],
    axis: AxisName,
    value: &RawAxis,
) -> Result<AxisValues, SpecError> {
    let items: Vec<(Vec<Seg>, ItemValue)> = match value {
        RawAxis::List(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut p = path.to_vec();
                p.push(Seg::Index(i));
                (p, ItemValue::Toml(v))
            })
            .collect(),
        RawAxis::Range(range) => {
            if axis == AxisName::Optimizer {
                return Err(ctx.err(path, "the optimizer axis takes a list of names, not a range"));
            }
            let whole = matches!(axis, AxisName::BatchSize | AxisName::Seed);
            let values = spaced_values(ctx, path, range, whole)?;
            values.into_iter().map(|x| (path.to_vec(), ItemValue::Generated(x))).collect()
        }
        RawAxis::One(one) => vec![(path.to_vec(), ItemValue::Toml(one))],
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

/// One value of a built-in axis: as written, or generated by a range.
pub(super) enum ItemValue<'v> {
    Toml(&'v toml::Value),
    Generated(f64),
}

pub(super) fn int_value(ctx: &Ctx<'_>, p: &[Seg], axis: AxisName, v: &ItemValue) -> Result<u64, SpecError> {
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

pub(super) fn real_value(ctx: &Ctx<'_>, p: &[Seg], axis: AxisName, v: &ItemValue) -> Result<f64, SpecError> {
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

pub(super) fn check_distinct(
    ctx: &Ctx<'_>,
    path: &[Seg],
    axis: AxisName,
    values: &AxisValues,
) -> Result<(), SpecError> {
    // Sort indices by value and compare neighbours: O(n log n) for large generated axes.
    let mut order: Vec<usize> = (0..values.len()).collect();
    let cmp = |i: usize, j: usize| match values {
        AxisValues::Optimizer(v) => v[i].cmp(&v[j]),
        AxisValues::Int(v) => v[i].cmp(&v[j]),
        AxisValues::Real(v) => v[i].total_cmp(&v[j]),
        AxisValues::Named(v) => v[i].to_string().cmp(&v[j].to_string()),
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

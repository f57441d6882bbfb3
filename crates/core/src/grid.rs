//! Grid axes and lazy expansion.
//!
//! A grid is a list of *dimensions*; a dimension is one axis, or several axes zipped together
//! (`[[zip]]`) that vary in lockstep. The trial count is the product of the dimension lengths, and
//! point `i` is decoded in mixed radix (the last dimension varies fastest), so nothing proportional
//! to the number of points is ever materialised.

use crate::params::{
    AxisName, Builtins, Hyperparams, OptimizerKind, PARAM_PREFIX, Params, TASK_PREFIX, display_value, format_real,
};
use std::fmt;

/// A grid axis: a built-in hyperparameter, or a named axis by its full dotted name (a `[task]`
/// field override `task.noise.sigma`, a user parameter `params.width`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Axis {
    /// A built-in hyperparameter.
    Builtin(AxisName),
    /// A named axis.
    Named(String),
}

impl Axis {
    /// The axis's name as written in a sweep file's `[grid]` and in exports.
    pub fn name(&self) -> &str {
        match self {
            Axis::Builtin(a) => a.as_str(),
            Axis::Named(n) => n,
        }
    }

    /// Whether it overrides a `[task]` field.
    pub fn is_task(&self) -> bool {
        matches!(self, Axis::Named(n) if n.starts_with(TASK_PREFIX))
    }

    /// Canonical order: the built-ins but the seed, task fields, user parameters, the seed (so
    /// replicates of one point are neighbours in plan order).
    fn rank(&self) -> (u8, u8, &str) {
        match self {
            Axis::Builtin(AxisName::Seed) => (3, 0, ""),
            Axis::Builtin(a) => (0, *a as u8, ""),
            Axis::Named(n) if n.starts_with(TASK_PREFIX) => (1, 0, n),
            Axis::Named(n) => (2, 0, n),
        }
    }
}

impl PartialOrd for Axis {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Axis {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl fmt::Display for Axis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// The values of one axis, typed by the axis.
#[derive(Clone, Debug, PartialEq)]
pub enum AxisValues {
    /// Optimizer names.
    Optimizer(Vec<OptimizerKind>),
    /// Whole numbers (batch size, seed).
    Int(Vec<u64>),
    /// Real numbers (lr, β, ε, weight decay).
    Real(Vec<f64>),
    /// Values of a named axis (numbers, strings, booleans; lists and tables for task fields).
    Named(Vec<serde_json::Value>),
}

impl AxisValues {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            AxisValues::Optimizer(v) => v.len(),
            AxisValues::Int(v) => v.len(),
            AxisValues::Real(v) => v.len(),
            AxisValues::Named(v) => v.len(),
        }
    }

    /// Whether the axis has no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value `i` alone, as an axis of one value.
    pub fn pick(&self, i: usize) -> AxisValues {
        match self {
            AxisValues::Optimizer(v) => AxisValues::Optimizer(vec![v[i]]),
            AxisValues::Int(v) => AxisValues::Int(vec![v[i]]),
            AxisValues::Real(v) => AxisValues::Real(vec![v[i]]),
            AxisValues::Named(v) => AxisValues::Named(vec![v[i].clone()]),
        }
    }

    /// The values as a JSON array (optimizers by name), as exports and the dashboard write them.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            AxisValues::Optimizer(v) => v.iter().map(|o| o.as_str()).collect(),
            AxisValues::Int(v) => v.iter().copied().collect(),
            AxisValues::Real(v) => v.iter().copied().collect(),
            AxisValues::Named(v) => v.iter().cloned().collect(),
        }
    }

    /// Value `i` formatted for display.
    pub fn display(&self, i: usize) -> String {
        match self {
            AxisValues::Optimizer(v) => v[i].to_string(),
            AxisValues::Int(v) => v[i].to_string(),
            AxisValues::Real(v) => format_real(v[i]),
            AxisValues::Named(v) => display_value(&v[i]),
        }
    }
}

/// One dimension of the product: a single axis or a zip group of equal-length axes.
#[derive(Clone, Debug, PartialEq)]
pub struct Dimension {
    /// The axes of this dimension (one, or several for a zip group), all of length `len`.
    pub axes: Vec<(Axis, AxisValues)>,
    /// The common length.
    pub len: usize,
}

impl Dimension {
    /// Whether an axis of this dimension overrides a `[task]` field.
    pub fn has_task_axis(&self) -> bool {
        self.axes.iter().any(|(a, _)| a.is_task())
    }
}

/// An expanded grid: dimensions in canonical order, plus defaults for axes no dimension sets.
#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    dims: Vec<Dimension>,
    total: u64,
    builtins: Builtins,
}

impl Grid {
    /// Builds a grid; dimensions are put in canonical order (by their first axis).
    /// Returns `None` when the product overflows `u64`. A grid that names the optimizer and the
    /// learning rate carries every built-in hyperparameter (defaults for the rest); one that does
    /// not (a command sweep of its own axes), only the built-ins it names and the seed.
    pub fn new(mut dims: Vec<Dimension>) -> Option<Grid> {
        for d in &mut dims {
            d.axes.sort_by(|(a, _), (b, _)| a.cmp(b));
        }
        dims.sort_by(|a, b| a.axes.first().map(|x| &x.0).cmp(&b.axes.first().map(|x| &x.0)));
        let total = dims.iter().try_fold(1u64, |acc, d| acc.checked_mul(d.len as u64))?;
        let named: Vec<AxisName> = dims
            .iter()
            .flat_map(|d| d.axes.iter())
            .filter_map(|(a, _)| match a {
                Axis::Builtin(b) => Some(*b),
                Axis::Named(_) => None,
            })
            .collect();
        let builtins = if named.contains(&AxisName::Optimizer) && named.contains(&AxisName::Lr) {
            Builtins::ALL
        } else {
            named.into_iter().fold(Builtins::SEED, Builtins::with)
        };
        Some(Grid { dims, total, builtins })
    }

    /// The built-in hyperparameters every trial carries.
    pub fn builtins(&self) -> Builtins {
        self.builtins
    }

    /// The named axes (`task.*`, `params.*`), in canonical order.
    pub fn named_axes(&self) -> impl Iterator<Item = (&str, &AxisValues)> {
        self.dims.iter().flat_map(|d| d.axes.iter()).filter_map(|(a, v)| match a {
            Axis::Named(n) => Some((n.as_str(), v)),
            Axis::Builtin(_) => None,
        })
    }

    /// Number of distinct combinations of the task-field axes (1 without any): the number of
    /// task variants a sweep validates.
    pub fn task_combinations(&self) -> u64 {
        self.dims.iter().filter(|d| d.has_task_axis()).map(|d| d.len as u64).product()
    }

    /// Combination `c` (< [`Grid::task_combinations`]) of the task-field axes: each axis with the
    /// index of its value, in canonical order.
    pub fn task_combination(&self, c: u64) -> Vec<(&str, usize)> {
        let mut out: Vec<(&str, usize)> = self
            .task_dims(c)
            .flat_map(|(d, k)| d.axes.iter().filter(|(a, _)| a.is_task()).map(move |(a, _)| (a.name(), k)))
            .collect();
        out.reverse();
        out
    }

    /// The dimensions with task axes, last first, each with its value index in task combination `c`.
    fn task_dims(&self, c: u64) -> impl Iterator<Item = (&Dimension, usize)> {
        let mut rest = c;
        self.dims.iter().rev().filter(|d| d.has_task_axis()).map(move |d| {
            let k = (rest % d.len as u64) as usize;
            rest /= d.len as u64;
            (d, k)
        })
    }

    /// Number of points.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// Whether the grid has no point.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The dimensions, in canonical order.
    pub fn dims(&self) -> &[Dimension] {
        &self.dims
    }

    /// The values of a built-in axis, if a dimension sets it.
    pub fn axis(&self, name: AxisName) -> Option<&AxisValues> {
        self.named_axis(name.as_str())
    }

    /// The values of an axis by its name (`lr`, `task.noise.sigma`), if a dimension sets it.
    pub fn named_axis(&self, name: &str) -> Option<&AxisValues> {
        self.dims.iter().flat_map(|d| d.axes.iter()).find(|(a, _)| a.name() == name).map(|(_, v)| v)
    }

    /// The values of built-in axis `name` that occur with task combination `c`: all of them, or
    /// the one zipped with that combination's value.
    pub fn axis_in_combination(&self, name: AxisName, c: u64) -> Option<AxisValues> {
        for (d, k) in self.task_dims(c) {
            if let Some((_, v)) = d.axes.iter().find(|(a, _)| *a == Axis::Builtin(name)) {
                return Some(v.pick(k));
            }
        }
        self.axis(name).cloned()
    }

    /// Point `index` (< `len()`) and the number of its task combination. Axes no dimension sets
    /// take their defaults; the optimizer defaults to SGD only if no dimension names one. The
    /// named axes hold every value the point has, task fields included (the plan leaves out
    /// those that do not apply to the point's kind).
    pub fn point(&self, index: u64) -> (Params, u64) {
        let mut p = Params { hyper: Hyperparams::defaults(), builtins: self.builtins, named: Default::default() };
        let mut rest = index;
        let (mut combo, mut radix) = (0u64, 1u64);
        for d in self.dims.iter().rev() {
            let len = d.len as u64;
            let k = (rest % len) as usize;
            rest /= len;
            if d.has_task_axis() {
                combo += k as u64 * radix;
                radix *= len;
            }
            for (axis, values) in &d.axes {
                match (axis, values) {
                    (Axis::Named(n), AxisValues::Named(v)) => {
                        p.named.insert(n.clone(), v[k].clone());
                    }
                    (Axis::Builtin(a), values) => set_axis(&mut p.hyper, *a, values, k),
                    // The spec parser builds named values for named axes only.
                    (Axis::Named(n), _) => unreachable!("axis {n} built with built-in values"),
                }
            }
        }
        (p, combo)
    }

    /// Iterates over all points lazily, in index order.
    pub fn iter(&self) -> impl Iterator<Item = Params> + '_ {
        (0..self.total).map(|i| self.point(i).0)
    }
}

/// Whether `name` is a named axis of the user's own (`params.width`).
pub fn is_user_param(name: &str) -> bool {
    name.starts_with(PARAM_PREFIX)
}

fn set_axis(p: &mut Hyperparams, axis: AxisName, values: &AxisValues, k: usize) {
    match (axis, values) {
        (AxisName::Optimizer, AxisValues::Optimizer(v)) => p.optimizer = v[k],
        (AxisName::BatchSize, AxisValues::Int(v)) => p.batch_size = v[k],
        (AxisName::Seed, AxisValues::Int(v)) => p.seed = v[k],
        (AxisName::Lr, AxisValues::Real(v)) => p.lr = v[k],
        (AxisName::Beta1, AxisValues::Real(v)) => p.beta1 = v[k],
        (AxisName::Beta2, AxisValues::Real(v)) => p.beta2 = v[k],
        (AxisName::Eps, AxisValues::Real(v)) => p.eps = v[k],
        (AxisName::WeightDecay, AxisValues::Real(v)) => p.weight_decay = v[k],
        // The spec parser builds values of the axis's own type; no other pairing exists.
        _ => unreachable!("axis {axis} built with values of another type"),
    }
}

/// `num` points from `lo` to `hi` inclusive, evenly spaced (`log = false`) or evenly spaced in log.
pub fn spaced(lo: f64, hi: f64, num: usize, log: bool) -> Vec<f64> {
    if num == 1 {
        return vec![lo];
    }
    let (a, b) = if log { (lo.ln(), hi.ln()) } else { (lo, hi) };
    (0..num)
        .map(|i| {
            // Hit both ends exactly.
            if i == 0 {
                return lo;
            }
            if i == num - 1 {
                return hi;
            }
            let t = a + (b - a) * (i as f64) / ((num - 1) as f64);
            if log { t.exp() } else { t }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dim(axes: Vec<(AxisName, AxisValues)>) -> Dimension {
        let len = axes[0].1.len();
        Dimension { axes: axes.into_iter().map(|(a, v)| (Axis::Builtin(a), v)).collect(), len }
    }

    #[test]
    fn mixed_radix_decoding_covers_the_product() {
        let g = Grid::new(vec![
            dim(vec![(AxisName::Seed, AxisValues::Int(vec![0, 1, 2]))]),
            dim(vec![(AxisName::Lr, AxisValues::Real(vec![0.1, 0.2]))]),
        ])
        .unwrap();
        assert_eq!(g.len(), 6);
        let pts: Vec<(f64, u64)> = g.iter().map(|p| (p.hyper.lr, p.hyper.seed)).collect();
        // lr comes before seed in canonical order, so seed varies fastest.
        assert_eq!(pts, vec![(0.1, 0), (0.1, 1), (0.1, 2), (0.2, 0), (0.2, 1), (0.2, 2)]);
    }

    #[test]
    fn zip_varies_in_lockstep() {
        let g = Grid::new(vec![dim(vec![
            (AxisName::Lr, AxisValues::Real(vec![0.1, 0.2])),
            (AxisName::BatchSize, AxisValues::Int(vec![8, 16])),
        ])])
        .unwrap();
        let pts: Vec<(u64, f64)> = g.iter().map(|p| (p.hyper.batch_size, p.hyper.lr)).collect();
        assert_eq!(pts, vec![(8, 0.1), (16, 0.2)]);
    }

    #[test]
    fn overflow_is_detected() {
        let big = AxisValues::Int((0..1 << 16).collect());
        let dims = (0..5).map(|_| dim(vec![(AxisName::Seed, big.clone())])).collect();
        assert!(Grid::new(dims).is_none());
    }

    #[test]
    fn spaced_hits_both_ends() {
        let v = spaced(1e-4, 1e-1, 4, true);
        assert_eq!(v[0], 1e-4);
        assert_eq!(v[3], 1e-1);
        assert!((v[1] - 1e-3).abs() < 1e-15);
        assert_eq!(spaced(0.0, 1.0, 3, false), vec![0.0, 0.5, 1.0]);
    }
}

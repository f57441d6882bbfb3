//! The parameters of one trial: the point of the grid it came from, built-in hyperparameters
//! and named axes (task-field overrides and the user's own parameters).

use serde::{Deserialize, Serialize};
use std::fmt;

pub use crate::optimizer::{OptimizerKind, UnknownOptimizer};

/// The built-in hyperparameters, as the axes a grid may vary, in canonical order (which fixes
/// dimension order and so trial order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AxisName {
    /// `optimizer`
    Optimizer,
    /// `batch_size`
    BatchSize,
    /// `lr`
    Lr,
    /// `beta1`
    Beta1,
    /// `beta2`
    Beta2,
    /// `eps`
    Eps,
    /// `weight_decay`
    WeightDecay,
    /// `seed`
    Seed,
}

impl AxisName {
    /// Every axis, in canonical order.
    pub const ALL: [AxisName; 8] = [
        AxisName::Optimizer,
        AxisName::BatchSize,
        AxisName::Lr,
        AxisName::Beta1,
        AxisName::Beta2,
        AxisName::Eps,
        AxisName::WeightDecay,
        AxisName::Seed,
    ];

    /// The key used in sweep files.
    pub fn as_str(self) -> &'static str {
        match self {
            AxisName::Optimizer => "optimizer",
            AxisName::BatchSize => "batch_size",
            AxisName::Lr => "lr",
            AxisName::Beta1 => "beta1",
            AxisName::Beta2 => "beta2",
            AxisName::Eps => "eps",
            AxisName::WeightDecay => "weight_decay",
            AxisName::Seed => "seed",
        }
    }

    /// Looks an axis up by its sweep-file key.
    pub fn from_key(key: &str) -> Option<AxisName> {
        AxisName::ALL.into_iter().find(|a| a.as_str() == key)
    }

    /// The known keys, comma separated, for error messages.
    pub fn known_keys() -> String {
        AxisName::ALL.map(AxisName::as_str).join(", ")
    }
}

impl fmt::Display for AxisName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// One point of a sweep grid. Fields that an optimizer does not read are still part of the point
/// (and of its id), exactly as the grid produced them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hyperparams {
    /// Which optimizer runs.
    pub optimizer: OptimizerKind,
    /// Minibatch size B; in simulations σ_B = σ₁/√B.
    pub batch_size: u64,
    /// Learning rate η.
    pub lr: f64,
    /// First-moment decay β₁ (Adam family).
    pub beta1: f64,
    /// Second-moment decay β₂ (Adam and RMSprop families).
    pub beta2: f64,
    /// ε added outside the square root.
    pub eps: f64,
    /// Decoupled weight decay θ (per-step decay η·θ·x).
    pub weight_decay: f64,
    /// Replicate seed: a trial's random streams derive from this and its id only.
    pub seed: u64,
}

impl Hyperparams {
    /// Defaults for every axis a grid leaves out.
    pub const DEFAULT_BATCH_SIZE: u64 = 1;
    /// Default β₁.
    pub const DEFAULT_BETA1: f64 = 0.9;
    /// Default β₂.
    pub const DEFAULT_BETA2: f64 = 0.999;
    /// Default ε.
    pub const DEFAULT_EPS: f64 = 1e-8;
    /// Default weight decay.
    pub const DEFAULT_WEIGHT_DECAY: f64 = 0.0;
    /// Default seed.
    pub const DEFAULT_SEED: u64 = 0;

    /// Every axis at its default (the optimizer SGD, the learning rate unset: NaN).
    pub fn defaults() -> Hyperparams {
        Hyperparams {
            optimizer: OptimizerKind::Sgd,
            batch_size: Hyperparams::DEFAULT_BATCH_SIZE,
            lr: f64::NAN,
            beta1: Hyperparams::DEFAULT_BETA1,
            beta2: Hyperparams::DEFAULT_BETA2,
            eps: Hyperparams::DEFAULT_EPS,
            weight_decay: Hyperparams::DEFAULT_WEIGHT_DECAY,
            seed: Hyperparams::DEFAULT_SEED,
        }
    }
}

/// The built-in hyperparameters a trial carries: all of them, or for a sweep that names no
/// optimizer (a command sweep with axes of its own), only the ones its grid names and the seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Builtins(u8);

impl Builtins {
    /// Every built-in hyperparameter (any sweep that names an optimizer).
    pub const ALL: Builtins = Builtins(0xff);
    /// Only the seed.
    pub const SEED: Builtins = Builtins(1 << 7);

    fn bit(axis: AxisName) -> u8 {
        1 << (AxisName::ALL.iter().position(|a| *a == axis).unwrap_or(7) as u8)
    }

    /// These and `axis`.
    pub fn with(self, axis: AxisName) -> Builtins {
        Builtins(self.0 | Builtins::bit(axis))
    }

    /// Whether `axis` is carried.
    pub fn has(self, axis: AxisName) -> bool {
        self.0 & Builtins::bit(axis) != 0
    }

    /// Whether every built-in is carried.
    pub fn is_all(self) -> bool {
        self == Builtins::ALL
    }

    /// The bits, for the wire (0 is read as [`Builtins::ALL`]).
    pub fn bits(self) -> u32 {
        u32::from(self.0)
    }

    /// From the wire's bits (0: every built-in, as peers that predate the field send).
    pub fn from_bits(bits: u32) -> Builtins {
        match bits & 0xff {
            0 => Builtins::ALL,
            b => Builtins(b as u8 | Builtins::SEED.0),
        }
    }

    /// The carried axes, in canonical order.
    pub fn axes(self) -> impl Iterator<Item = AxisName> {
        AxisName::ALL.into_iter().filter(move |a| self.has(*a))
    }
}

/// Prefix of an axis that overrides a field of `[task]` (`task.noise.sigma`).
pub const TASK_PREFIX: &str = "task.";
/// Prefix of a user parameter (`params.width`).
pub const PARAM_PREFIX: &str = "params.";

/// Everything that tells the trials of a sweep apart: the built-in hyperparameters, and the named
/// axes, which are overrides of `[task]` fields (`task.noise.sigma`) and the user's own
/// parameters (`params.width`), by their full dotted names.
///
/// Written (store, JSONL exports, `summary.json`) as one flat object: the carried built-ins
/// under their names, the named axes under theirs: `{"lr": 0.01, …, "task.noise.sigma": 2.0,
/// "params.width": 512}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// The built-in hyperparameters (the ones not carried hold their defaults and are never read).
    pub hyper: Hyperparams,
    /// Which built-ins this trial carries.
    pub builtins: Builtins,
    /// The named axes, sorted by name. Task overrides that do not apply to the trial's kind are
    /// left out.
    pub named: std::collections::BTreeMap<String, serde_json::Value>,
}

impl From<Hyperparams> for Params {
    fn from(hyper: Hyperparams) -> Params {
        Params { hyper, builtins: Builtins::ALL, named: Default::default() }
    }
}

impl Params {
    /// The value of a built-in axis, as written in exports.
    pub fn builtin_value(&self, axis: AxisName) -> serde_json::Value {
        use AxisName as A;
        let h = &self.hyper;
        match axis {
            A::Optimizer => h.optimizer.as_str().into(),
            A::BatchSize => h.batch_size.into(),
            A::Lr => h.lr.into(),
            A::Beta1 => h.beta1.into(),
            A::Beta2 => h.beta2.into(),
            A::Eps => h.eps.into(),
            A::WeightDecay => h.weight_decay.into(),
            A::Seed => h.seed.into(),
        }
    }

    /// The value of a built-in axis as text, as command placeholders and CSV cells write it
    /// (Rust's shortest round-trip form: `0.001`, `0.00000001`).
    pub fn builtin_text(&self, axis: AxisName) -> String {
        use AxisName as A;
        let h = &self.hyper;
        match axis {
            A::Optimizer => h.optimizer.as_str().to_string(),
            A::BatchSize => h.batch_size.to_string(),
            A::Lr => h.lr.to_string(),
            A::Beta1 => h.beta1.to_string(),
            A::Beta2 => h.beta2.to_string(),
            A::Eps => h.eps.to_string(),
            A::WeightDecay => h.weight_decay.to_string(),
            A::Seed => h.seed.to_string(),
        }
    }

    /// The value of axis `name` (`lr`, `params.width`) as tables show it: whole numbers and names
    /// as they are, reals to 6 significant digits; empty where the trial has no such named axis.
    pub fn display(&self, name: &str) -> String {
        use AxisName as A;
        match A::from_key(name) {
            Some(a @ (A::Optimizer | A::BatchSize | A::Seed)) => self.builtin_text(a),
            Some(a) => format_real(self.builtin_value(a).as_f64().unwrap_or(f64::NAN)),
            None => self.named.get(name).map(display_value).unwrap_or_default(),
        }
    }

    /// Every carried value by name: the built-ins in canonical order, then the named axes.
    pub fn entries(&self) -> Vec<(String, serde_json::Value)> {
        self.borrowed_entries().into_iter().map(|(k, v)| (k.to_string(), v.into_owned())).collect()
    }

    /// [`Params::entries`] without the built-ins the trial's optimizer does not read (an SGD
    /// trial's β₁, β₂, ε and weight decay; [`OptimizerKind::reads`]): what labels and tables
    /// show. A trial that carries no optimizer (a command's own) keeps every entry.
    pub fn read_entries(&self) -> Vec<(String, serde_json::Value)> {
        let o = self.builtins.has(AxisName::Optimizer).then_some(self.hyper.optimizer);
        self.entries()
            .into_iter()
            .filter(|(k, _)| match (o, AxisName::from_key(k)) {
                (Some(o), Some(a)) => o.reads(a),
                _ => true,
            })
            .collect()
    }

    /// The user parameters (`params.*`), by their short names (`width`).
    pub fn user(&self) -> impl Iterator<Item = (&str, &serde_json::Value)> {
        self.named.iter().filter_map(|(k, v)| k.strip_prefix(PARAM_PREFIX).map(|n| (n, v)))
    }

    /// The part of the trial's identity its parameters give (the task's is its effective task):
    /// the carried built-ins and the user parameters. For a sweep of built-in axes only this is
    /// exactly the hyperparameters' object, so ids made before named axes existed are kept.
    pub fn identity(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (k, v) in self.entries() {
            if !k.starts_with(TASK_PREFIX) {
                m.insert(k, v);
            }
        }
        serde_json::Value::Object(m)
    }

    /// [`Params::identity`] as it serialises (keys sorted), without building it: what ids are
    /// hashed from, a few times faster.
    pub fn identity_ref(&self) -> impl Serialize + '_ {
        Entries { params: self, identity: true }
    }

    /// [`Params::entries`], the built-ins' values computed and the named ones borrowed.
    fn borrowed_entries(&self) -> Vec<(&str, std::borrow::Cow<'_, serde_json::Value>)> {
        use std::borrow::Cow;
        let builtins = self.builtins.axes().map(|a| (a.as_str(), Cow::Owned(self.builtin_value(a))));
        builtins.chain(self.named.iter().map(|(k, v)| (k.as_str(), Cow::Borrowed(v)))).collect()
    }
}

/// A trial's parameters as a JSON object: every entry in [`Params::entries`] order, or (its
/// `identity`) the entries of [`Params::identity`], sorted by key.
struct Entries<'a> {
    params: &'a Params,
    identity: bool,
}

impl Serialize for Entries<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut entries = self.params.borrowed_entries();
        if self.identity {
            entries.retain(|(k, _)| !k.starts_with(TASK_PREFIX));
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        }
        let mut m = s.serialize_map(Some(entries.len()))?;
        for (k, v) in &entries {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// A value of a named axis as text: strings bare, everything else as JSON (`512`, `0.5`,
/// `[64,64]`, `true`). Numbers are written in their shortest round-trip form.
pub fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A named axis's value for tables: numbers compact (as [`format_real`]), strings bare.
pub fn display_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Number(n) if n.is_f64() => n.as_f64().map_or_else(|| n.to_string(), format_real),
        other => value_text(other),
    }
}

/// A whole number with its thousands separated, as budgets in samples are shown: `3,240,000`.
pub fn format_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Formats a real number compactly for tables, to 6 significant digits (`0.001`, `1e-8`,
/// `0.00141421`). Exact values live in exports and the store, never in these strings.
pub fn format_real(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    if x.abs() < 1e-3 || x.abs() >= 1e6 {
        let s = format!("{x:.5e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let m = m.trim_end_matches('0').trim_end_matches('.');
        return format!("{m}e{e}");
    }
    let digits = (5 - x.abs().log10().floor() as i32).max(0) as usize;
    let s = format!("{x:.digits$}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
}

impl Serialize for Params {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Entries { params: self, identity: false }.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Params {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let mut builtins = Builtins::SEED;
        let mut hyper = serde_json::Map::new();
        let mut named = std::collections::BTreeMap::new();
        for (k, v) in map {
            if let Some(axis) = AxisName::from_key(&k) {
                builtins = builtins.with(axis);
                hyper.insert(k, v);
            } else if k.starts_with(TASK_PREFIX) || k.starts_with(PARAM_PREFIX) {
                named.insert(k, v);
            } else {
                return Err(D::Error::custom(format!("unknown parameter `{k}`")));
            }
        }
        let mut h = Hyperparams::defaults();
        let get_f = |m: &serde_json::Map<String, serde_json::Value>, k: &str, d: f64| -> Result<f64, D::Error> {
            match m.get(k) {
                None => Ok(d),
                Some(v) => v.as_f64().ok_or_else(|| D::Error::custom(format!("`{k}` must be a number"))),
            }
        };
        let get_u = |m: &serde_json::Map<String, serde_json::Value>, k: &str, d: u64| -> Result<u64, D::Error> {
            match m.get(k) {
                None => Ok(d),
                Some(v) => v.as_u64().ok_or_else(|| D::Error::custom(format!("`{k}` must be a whole number"))),
            }
        };
        if let Some(o) = hyper.get("optimizer") {
            h.optimizer = o
                .as_str()
                .ok_or_else(|| D::Error::custom("`optimizer` must be a string"))?
                .parse()
                .map_err(D::Error::custom)?;
        }
        h.batch_size = get_u(&hyper, "batch_size", h.batch_size)?;
        h.lr = get_f(&hyper, "lr", h.lr)?;
        h.beta1 = get_f(&hyper, "beta1", h.beta1)?;
        h.beta2 = get_f(&hyper, "beta2", h.beta2)?;
        h.eps = get_f(&hyper, "eps", h.eps)?;
        h.weight_decay = get_f(&hyper, "weight_decay", h.weight_decay)?;
        h.seed = get_u(&hyper, "seed", h.seed)?;
        Ok(Params { hyper: h, builtins, named })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reals_are_short_and_round_trip_where_short() {
        assert_eq!(format_real(0.001), "0.001");
        assert_eq!(format_real(1e-8), "1e-8");
        assert_eq!(format_real(0.0014142135623730952), "0.00141421");
        assert_eq!(format_real(0.6000000000000001), "0.6");
        assert_eq!(format_real(3.535533905932738e-9), "3.53553e-9");
        assert_eq!(format_real(2.0), "2");
        assert_eq!(format_real(0.0), "0");
    }
}

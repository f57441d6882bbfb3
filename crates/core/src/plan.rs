//! A plan: the trials of a sweep, with their ids, produced lazily from the grid.

use crate::id::{IdHasher, TrialId};
use crate::origin::Origin;
use crate::params::Params;
use crate::spec::Sweep;
use crate::trial::PlannedTrial;
use crate::version::CodeVersion;

/// How plans expand into trials. Bump it with any change to what a sweep file plans (which
/// trials, their positions, their parameters as stored): a store planned by an earlier format
/// is then re-synced on its next run instead of resumed as it is (see [`Plan::fingerprint`]).
pub const PLAN_FORMAT: u32 = 1;

/// The trials of one sweep, their ids made with one code version.
#[derive(Clone, Debug)]
pub struct Plan<'a> {
    sweep: &'a Sweep,
    version: CodeVersion,
    /// Whether two plan entries can be the same trial: scaled variants that agree, task axes
    /// left out of the trials whose kind does not read them, or task values that make the same
    /// task.
    repeats: bool,
    /// The id hasher of each task.
    hashers: Vec<IdHasher>,
    /// A search's first proposals, made on first use.
    initial: std::sync::OnceLock<Vec<PlannedTrial>>,
}

impl<'a> Plan<'a> {
    /// Plans `sweep` with ids made with the code version `version` (see [`crate::version`]).
    pub fn new(sweep: &'a Sweep, version: impl Into<CodeVersion>) -> Plan<'a> {
        // Two task values written differently (`1` and `1.0`) make the same task, too.
        let mut tasks = std::collections::HashSet::new();
        let same_task = !sweep.variants.iter().all(|v| tasks.insert(v.json.to_string()));
        let repeats = sweep.scaling.is_some()
            || sweep.search.is_some()
            || same_task
            || sweep.variants.iter().any(|v| !v.left_out.is_empty());
        let version = version.into();
        let hashers = sweep.variants.iter().map(|v| IdHasher::new(&v.json, &version)).collect();
        Plan { sweep, version, repeats, hashers, initial: std::sync::OnceLock::new() }
    }

    /// A digest of everything this plan's trials follow from: the sweep file's text
    /// (`sweep_text`, the text `sweep` was parsed from), the code version, the canonical form of
    /// ids, [`PLAN_FORMAT`] and this kappa's version. Two plans with the same fingerprint hold
    /// the same trials in the same order, so a store records it and resumes an unchanged sweep
    /// without planning it again.
    pub fn fingerprint(&self, sweep_text: &str) -> String {
        let text = serde_json::json!({
            "canon": crate::id::CANONICAL_FORM,
            "kappa": env!("CARGO_PKG_VERSION"),
            "plan": PLAN_FORMAT,
            "sweep": sweep_text,
            "version": self.version.to_string(),
        })
        .to_string();
        crate::id::content_hash(&text)
    }

    /// The code version its ids are made with.
    pub fn version(&self) -> &CodeVersion {
        &self.version
    }

    /// Whether plan entries can repeat a trial (then [`Plan::trials`] yields fewer than
    /// [`Plan::len`]).
    pub fn repeats(&self) -> bool {
        self.repeats
    }

    /// Distinct trials: [`Plan::len`], or (when entries repeat) a count of [`Plan::trials`].
    pub fn distinct(&self) -> u64 {
        if self.repeats { self.trials().count() as u64 } else { self.len() }
    }

    /// The canonical JSON of each of the sweep's tasks, by [`PlannedTrial::task`].
    pub fn task_jsons(&self) -> Vec<String> {
        self.sweep.variants.iter().map(|v| v.json.to_string()).collect()
    }

    /// Number of plan entries: grid points × (1 + scaled variants), or a search's first
    /// proposals. Entries can repeat a trial (two rules that agree for an optimizer, a task axis
    /// left out); [`Plan::trials`] yields each id once.
    pub fn len(&self) -> u64 {
        match self.initial() {
            Some(first) => first.len() as u64,
            None => self.sweep.grid.len() * self.per_point(),
        }
    }

    fn per_point(&self) -> u64 {
        1 + self.sweep.scaling.as_ref().map_or(0, |s| s.variants())
    }

    /// Whether the plan has no trial.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Plan entry `seq`: each grid point is followed by its scaled variants; for a search, the
    /// search's first proposals ([`crate::search::Search::start`]).
    pub fn trial(&self, seq: u64) -> PlannedTrial {
        match self.initial() {
            Some(first) => first[seq as usize].clone(),
            None => self.grid_trial(seq),
        }
    }

    /// A search's first proposals (`None`: the sweep has no search), made once.
    fn initial(&self) -> Option<&[PlannedTrial]> {
        self.sweep.search.as_ref()?;
        Some(self.initial.get_or_init(|| crate::search::Search::new(self).map(|mut s| s.start()).unwrap_or_default()))
    }

    /// Grid entry `seq`: each grid point followed by its scaled variants (for a search, the
    /// searched axis holds its placeholder: the search sets it).
    pub(crate) fn grid_trial(&self, seq: u64) -> PlannedTrial {
        let per = self.per_point();
        let (mut base, combo) = self.sweep.grid.point(seq / per);
        let combo = combo as usize;
        for name in &self.sweep.variants[combo].left_out {
            base.named.remove(name);
        }
        let v = seq % per;
        let (params, variant, task, origin) = match (&self.sweep.scaling, v) {
            (Some(s), v) if v > 0 => {
                let (rule, kappa) = s.variant(v);
                let (params, task) = self.scaled(&base, combo, rule, kappa);
                let origin = Origin::Scaled { base: self.id(combo, &base), rule: s.rules[rule].name.clone(), kappa };
                (params, Some((rule, kappa)), task, origin)
            }
            _ => (base, None, combo, Origin::Grid),
        };
        let id = self.id(task, &params);
        PlannedTrial { id, seq, params, variant, task, origin }
    }

    /// The grid points' own trials (κ = 1), in grid order, repeats included.
    pub(crate) fn grid_points(&self) -> impl Iterator<Item = PlannedTrial> + '_ {
        let per = self.per_point();
        (0..self.sweep.grid.len()).map(move |g| self.grid_trial(g * per))
    }

    /// The parameters and task of rule `rule`'s variant at `kappa` of a base point with task
    /// `combo` (a rule that scales task fields gives the trial a task of its own).
    pub fn scaled(&self, base: &Params, combo: usize, rule: usize, kappa: u64) -> (Params, usize) {
        let Some(s) = &self.sweep.scaling else { return (base.clone(), combo) };
        let mut params = s.rules[rule].apply(base, kappa);
        let task = self.sweep.scaled_tasks.get(&(combo, rule, kappa)).copied().unwrap_or(combo);
        for (name, value) in &self.sweep.variants[task].scaled {
            params.named.insert(name.clone(), value.clone());
        }
        (params, task)
    }

    /// The id of the trial with `params` running task `task`.
    pub fn id(&self, task: usize, params: &Params) -> TrialId {
        self.hashers[task].id(params)
    }

    /// The sweep planned.
    pub fn sweep(&self) -> &'a Sweep {
        self.sweep
    }

    /// Every distinct base trial (a grid point's own trial, κ = 1, or a search's first
    /// proposal), lazily, in plan order; a grid point's scaled variants follow it at `seq + 1 ..`. A grid point that repeats an earlier one (a
    /// task axis left out) is yielded once.
    pub fn base_trials(&self) -> impl Iterator<Item = PlannedTrial> + '_ {
        // A search's first proposals are all base trials.
        let (per, points) =
            if self.initial().is_some() { (1, self.len()) } else { (self.per_point(), self.sweep.grid.len()) };
        let mut seen = std::collections::HashSet::new();
        let dedupe = self.repeats;
        (0..points).map(move |g| self.trial(g * per)).filter(move |t| !dedupe || seen.insert(t.id))
    }

    /// Every distinct trial, lazily, in plan order (a repeated id keeps its first position).
    pub fn trials(&self) -> impl Iterator<Item = PlannedTrial> + '_ {
        let mut seen = std::collections::HashSet::new();
        let dedupe = self.repeats;
        (0..self.len()).map(|i| self.trial(i)).filter(move |t| !dedupe || seen.insert(t.id))
    }
}

//! A plan: the trials of a sweep, with their ids, produced lazily from the grid.

use crate::id::trial_id;
use crate::spec::Sweep;
use crate::trial::PlannedTrial;

/// The trials of one sweep for one simulator version.
#[derive(Clone, Debug)]
pub struct Plan<'a> {
    sweep: &'a Sweep,
    sim_version: String,
    /// Whether two plan entries can be the same trial: scaled variants that agree, or task
    /// axes left out of the trials whose kind does not read them.
    repeats: bool,
}

impl<'a> Plan<'a> {
    /// Plans `sweep` for the simulator version `sim_version` (part of every id).
    pub fn new(sweep: &'a Sweep, sim_version: &str) -> Plan<'a> {
        let repeats = sweep.scaling.is_some() || sweep.variants.iter().any(|v| !v.left_out.is_empty());
        Plan { sweep, sim_version: sim_version.to_string(), repeats }
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

    /// Number of plan entries: grid points × (1 + scaled variants). Entries can repeat a trial
    /// (two rules that agree for an optimizer, a task axis left out); [`Plan::trials`] yields
    /// each id once.
    pub fn len(&self) -> u64 {
        self.sweep.grid.len() * self.per_point()
    }

    fn per_point(&self) -> u64 {
        1 + self.sweep.scaling.as_ref().map_or(0, |s| s.variants())
    }

    /// Whether the plan has no trial.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Plan entry `seq`: each grid point is followed by its scaled variants.
    pub fn trial(&self, seq: u64) -> PlannedTrial {
        let per = self.per_point();
        let (mut base, combo) = self.sweep.grid.point(seq / per);
        let task = &self.sweep.variants[combo as usize];
        for name in &task.left_out {
            base.named.remove(name);
        }
        let v = seq % per;
        let (params, variant) = match (&self.sweep.scaling, v) {
            (Some(s), v) if v > 0 => {
                let (rule, kappa) = s.variant(v);
                (s.rules[rule].apply(&base, kappa), Some((rule, kappa)))
            }
            _ => (base, None),
        };
        let id = trial_id(&task.json, &params, &self.sim_version);
        PlannedTrial { id, seq, params, variant, task: combo as usize }
    }

    /// Every distinct trial, lazily, in plan order (a repeated id keeps its first position).
    pub fn trials(&self) -> impl Iterator<Item = PlannedTrial> + '_ {
        let mut seen = std::collections::HashSet::new();
        let dedupe = self.repeats;
        (0..self.len()).map(|i| self.trial(i)).filter(move |t| !dedupe || seen.insert(t.id))
    }
}

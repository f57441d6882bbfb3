//! A plan: the trials of a sweep, with their ids, produced lazily from the grid.

use crate::id::{canonical_task, trial_id};
use crate::spec::Sweep;
use crate::trial::PlannedTrial;

/// The trials of one sweep for one simulator version.
#[derive(Clone, Debug)]
pub struct Plan<'a> {
    sweep: &'a Sweep,
    task_json: serde_json::Value,
    sim_version: String,
}

impl<'a> Plan<'a> {
    /// Plans `sweep` for the simulator version `sim_version` (part of every id).
    pub fn new(sweep: &'a Sweep, sim_version: &str) -> Plan<'a> {
        Plan { sweep, task_json: canonical_task(&sweep.task), sim_version: sim_version.to_string() }
    }

    /// The canonical task JSON shared by every trial.
    pub fn task_json(&self) -> &serde_json::Value {
        &self.task_json
    }

    /// Number of plan entries: grid points × (1 + scaled variants). Scaled variants can repeat a
    /// trial (two rules that agree for an optimizer); [`Plan::trials`] yields each id once.
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
        let base = self.sweep.grid.point(seq / per);
        let v = seq % per;
        let (params, variant) = match (&self.sweep.scaling, v) {
            (Some(s), v) if v > 0 => {
                let (rule, kappa) = s.variant(v);
                (s.rules[rule].apply(&base, kappa), Some((rule, kappa)))
            }
            _ => (base, None),
        };
        let id = trial_id(&self.task_json, &params, &self.sim_version);
        PlannedTrial { id, seq, params, variant }
    }

    /// Every distinct trial, lazily, in plan order (a repeated id keeps its first position).
    pub fn trials(&self) -> impl Iterator<Item = PlannedTrial> + '_ {
        let mut seen = std::collections::HashSet::new();
        let dedupe = self.sweep.scaling.is_some();
        (0..self.len()).map(|i| self.trial(i)).filter(move |t| !dedupe || seen.insert(t.id))
    }
}

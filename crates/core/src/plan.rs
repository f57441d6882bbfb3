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

    /// Number of trials.
    pub fn len(&self) -> u64 {
        self.sweep.grid.len()
    }

    /// Whether the plan has no trial.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Trial number `seq`.
    pub fn trial(&self, seq: u64) -> PlannedTrial {
        let params = self.sweep.grid.point(seq);
        let id = trial_id(&self.task_json, &params, &self.sim_version);
        PlannedTrial { id, seq, params }
    }

    /// All trials, lazily, in plan order.
    pub fn trials(&self) -> impl Iterator<Item = PlannedTrial> + '_ {
        (0..self.len()).map(|i| self.trial(i))
    }
}

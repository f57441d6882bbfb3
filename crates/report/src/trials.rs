//! Which trials a report covers, and which is which. A grid sweep's are its plan's (planned again
//! from the stored sweep text: lazily, so a report of 10⁷ trials never holds them all); a
//! search's are the ones its recorded results lead it to, each with its origin (a probe of a
//! group, or a rule's variant of a base trial): the search's own decisions, replayed.

use kappa_core::search::Search;
use kappa_core::{Origin, Plan, PlannedTrial, TrialId, TrialResult};
use std::collections::HashMap;

/// The trials of a report.
pub enum Trials<'a> {
    /// A grid sweep: its plan.
    Planned(&'a Plan<'a>),
    /// A search: the trials its recorded results lead to.
    Recorded {
        /// Its probes (base trials), by group, value and seed.
        base: Vec<PlannedTrial>,
        /// Each base trial's scaled variants.
        scaled: HashMap<TrialId, Vec<PlannedTrial>>,
    },
}

impl<'a> Trials<'a> {
    /// The trials of `plan`'s sweep: the plan's, or for a search the recorded ones in `results`.
    pub fn new(plan: &'a Plan<'a>, results: &HashMap<TrialId, TrialResult>) -> Trials<'a> {
        let Some(mut search) = Search::new(plan) else { return Trials::Planned(plan) };
        // The recorded results walked through the search from its first round: every trial it
        // proposed, in every role (a probe of one group can be a rule's variant of another's
        // best, one trial with two origins, of which the store keeps the first).
        let axis = search.spec().axis.clone();
        let mut base = Vec::new();
        let mut scaled: HashMap<TrialId, Vec<PlannedTrial>> = HashMap::new();
        for t in search.replay(&|id| results.get(&id).cloned()) {
            match &t.origin {
                Origin::Probe { .. } => base.push(t),
                Origin::Scaled { base: of, .. } => scaled.entry(*of).or_default().push(t),
                Origin::Grid => {}
            }
        }
        let value = |t: &PlannedTrial| kappa_core::search::value_of(&t.params, &axis).unwrap_or(f64::NAN);
        base.sort_by(|a, b| {
            (a.origin.group(), value(a).to_bits(), a.params.hyper.seed).cmp(&(
                b.origin.group(),
                value(b).to_bits(),
                b.params.hyper.seed,
            ))
        });
        for (i, t) in base.iter_mut().enumerate() {
            t.seq = i as u64;
        }
        Trials::Recorded { base, scaled }
    }

    /// Every distinct base trial (κ = 1), in plan order.
    pub fn base_trials(&self) -> Box<dyn Iterator<Item = PlannedTrial> + '_> {
        match self {
            Trials::Planned(plan) => Box::new(plan.base_trials()),
            Trials::Recorded { base, .. } => Box::new(base.iter().cloned()),
        }
    }

    /// Every distinct trial.
    pub fn trials(&self) -> Box<dyn Iterator<Item = PlannedTrial> + '_> {
        match self {
            Trials::Planned(plan) => Box::new(plan.trials()),
            Trials::Recorded { base, scaled } => {
                Box::new(base.iter().cloned().chain(scaled.values().flat_map(|v| v.iter().cloned())))
            }
        }
    }

    /// The scaled variants of base trial `base` (every rule and κ the sweep has).
    pub fn variants(&self, base: &PlannedTrial) -> Vec<PlannedTrial> {
        match self {
            Trials::Planned(plan) => {
                let per = plan.sweep().scaling.as_ref().map_or(0, |s| s.variants());
                (1..=per).map(|v| plan.trial(base.seq + v)).collect()
            }
            Trials::Recorded { scaled, .. } => scaled.get(&base.id).cloned().unwrap_or_default(),
        }
    }
}

//! Which trials a report covers, and which is which. A grid sweep's are its plan's (planned again
//! from the stored sweep text: lazily, so a report of 10⁷ trials never holds them all); a
//! search's are the ones it recorded, each read through its origin (a probe of a group, or a
//! rule's variant of a base trial).

use kappa_core::search::Search;
use kappa_core::{Origin, Plan, PlannedTrial, TrialId, TrialResult};
use std::collections::HashMap;

/// The trials of a report.
pub enum Trials<'a> {
    /// A grid sweep: its plan.
    Planned(&'a Plan<'a>),
    /// A search: the recorded trials.
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
        let Some(search) = Search::new(plan) else { return Trials::Planned(plan) };
        let sweep = plan.sweep();
        let axis = search.spec().axis.clone();
        let mut base = Vec::new();
        let mut scaled_of: Vec<(TrialId, String, u64, TrialId)> = Vec::new();
        for r in results.values() {
            match &r.origin {
                Some(Origin::Probe { group, .. }) => {
                    let Some(task) = search.group_task(*group) else { continue };
                    base.push(PlannedTrial {
                        id: r.id,
                        seq: 0,
                        params: r.params.clone(),
                        variant: None,
                        task,
                        origin: r.origin.clone().unwrap_or(Origin::Grid),
                    });
                }
                Some(Origin::Scaled { base, rule, kappa }) => scaled_of.push((r.id, rule.clone(), *kappa, *base)),
                _ => {}
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
        let by_id: HashMap<TrialId, &PlannedTrial> = base.iter().map(|t| (t.id, t)).collect();
        let mut scaled: HashMap<TrialId, Vec<PlannedTrial>> = HashMap::new();
        if let Some(s) = &sweep.scaling {
            for (id, rule, kappa, of) in scaled_of {
                let (Some(b), Some(r)) = (by_id.get(&of), s.rules.iter().position(|x| x.name == rule)) else {
                    continue;
                };
                let Some(result) = results.get(&id) else { continue };
                let (_, task) = plan.scaled(&b.params, b.task, r, kappa);
                scaled.entry(of).or_default().push(PlannedTrial {
                    id,
                    seq: 0,
                    params: result.params.clone(),
                    variant: Some((r, kappa)),
                    task,
                    origin: result.origin.clone().unwrap_or(Origin::Grid),
                });
            }
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

//! Asynchronous successive halving (`[search] kind = "halving"`; Li et al., ASHA, arXiv
//! 1810.05934): every trial of the grid starts with the first rung's budget, and a setting goes
//! on to the next rung as soon as it is in the best 1/`reduction` of the settings of its
//! comparison group that have finished the rung.
//!
//! - A *setting* is a trial's parameters but the seed: its seeds go on together and are judged
//!   by their mean (the `[analysis]` objective, [`crate::objective::seed_mean`]), as the report's
//!   best-learning-rate analysis reads them. A diverged, untrained or failed seed makes its
//!   setting worse than any finite one: it is never promoted.
//! - A *group* is the settings equal in the `within` axes (every setting, without `within`).
//! - Rungs are budgets of one trial, not trials: rung k stops at min_samples · reduction^k
//!   samples (the last rung is the task's whole budget), and a promoted trial continues from
//!   where it stopped. A trial's id is its configuration at the whole budget.
//! - When no setting of a group can reach a rung any more (every one below it is decided), and
//!   fewer than `reduction` settings finished that rung, its best setting is promoted anyway: each
//!   group carries at least one setting to the whole budget.
//!
//! Decisions depend only on the recorded rung results, in the order they were recorded:
//! [`Halving::record`] is the only way in, and a replay of the stored results in their order
//! reaches exactly the state (and the promotions) of the uninterrupted run.

use crate::grid::Axis;
use crate::id::TrialId;
use crate::lease::Stop;
use crate::objective::{Obs, metric_point, observe_parts, seed_mean};
use crate::plan::Plan;
use crate::spec::{Analysis, HalvingSpec};
use crate::trial::{TrialMetrics, TrialStatus};
use std::collections::HashMap;

/// One setting: a trial's parameters but the seed.
#[derive(Clone, Debug)]
struct Setting {
    group: usize,
    /// Its trials (one per seed), in plan order.
    trials: Vec<TrialId>,
    /// Its task's rungs (budgets in samples; the last is the whole budget).
    rungs: Vec<u64>,
    /// The rung it is at (running towards, or stopped at).
    rung: usize,
    /// Whether its task continues from where a rung stopped (training, commands) rather than
    /// recomputing from step 0 (simulations).
    continues: bool,
    /// Per rung, each trial's result there.
    results: Vec<HashMap<TrialId, RungResult>>,
}

/// One trial's result at a rung.
#[derive(Clone, Debug)]
struct RungResult {
    /// The `[analysis]` objective's observation (a failed one where it is not defined at this
    /// budget: no stationary loss before the burn-in ends, a run that did not train yet).
    obs: Obs,
    /// The metric's value at the rung's last record point: what ranks settings the objective
    /// cannot tell apart (none reached the target yet, none has a stationary loss yet).
    last: f64,
    /// It diverged, failed, or its metric is not finite: its setting goes no further.
    dead: bool,
    /// It failed (a retried attempt's result at the same rung replaces it).
    failed: bool,
}

impl RungResult {
    fn new(status: TrialStatus, metrics: Option<&TrialMetrics>, a: &Analysis) -> RungResult {
        let ran = matches!(status, TrialStatus::Succeeded | TrialStatus::Stopped);
        let obs = match metrics {
            Some(m) if ran => observe_parts(TrialStatus::Succeeded, Some(m), a),
            _ => None,
        };
        let last = metrics
            .filter(|_| ran)
            // The last point with the metric (an evaluation metric may be missing from the last).
            .and_then(|m| m.curve.iter().rev().find_map(|p| metric_point(p, &a.metric)))
            .map_or(f64::NAN, |(v, _)| a.signed(v));
        RungResult {
            obs: obs.unwrap_or_else(Obs::failed),
            last,
            dead: !ran || !last.is_finite(),
            failed: status == TrialStatus::Failed,
        }
    }
}

/// How a setting ranks at a rung: a live one before a dead one, then by the objective, then by
/// the metric's last value.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Rank {
    dead: bool,
    objective: f64,
    last: f64,
}

impl Rank {
    fn cmp(&self, other: &Rank) -> std::cmp::Ordering {
        self.dead
            .cmp(&other.dead)
            .then(self.objective.total_cmp(&other.objective))
            .then(self.last.total_cmp(&other.last))
    }
}

impl Setting {
    /// How it ranks at `rung` once every seed has finished it (seed means), or dead as soon as
    /// one seed ended there for good (diverged or failed), as [`Halving::close`] takes it to be
    /// decided.
    fn rank(&self, rung: usize, a: &Analysis) -> Option<Rank> {
        let r = self.results.get(rung)?;
        if r.values().any(|o| o.dead) {
            return Some(Rank { dead: true, objective: f64::INFINITY, last: f64::INFINITY });
        }
        if r.len() < self.trials.len() {
            return None;
        }
        let results: Vec<&RungResult> = self.trials.iter().filter_map(|t| r.get(t)).collect();
        let obs: Vec<&Obs> = results.iter().map(|x| &x.obs).collect();
        let last = results.iter().map(|x| x.last).sum::<f64>() / results.len().max(1) as f64;
        Some(Rank { dead: false, objective: seed_mean(&obs, a).0, last })
    }

    /// Whether some seed ended for good at a rung up to `rung` (diverged or failed): the
    /// setting goes no further.
    fn dead_by(&self, rung: usize) -> bool {
        self.results.iter().take(rung + 1).any(|r| r.values().any(|o| o.dead))
    }
}

/// One comparison group.
#[derive(Clone, Debug)]
pub struct Group {
    /// The `within` axes' values (`batch_size=32`), empty without `within`.
    pub label: String,
    settings: Vec<usize>,
    /// Rungs whose outcome is decided (no setting can reach them any more undecided).
    closed: usize,
}

/// A trial promoted to a rung.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Promotion {
    /// The trial.
    pub id: TrialId,
    /// Where its next attempt stops.
    pub stop: Option<Stop>,
    /// The rung it goes on to.
    pub rung: u32,
}

/// Where a trial stands in the search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Standing {
    /// The rung it is at (running towards or stopped at).
    pub rung: u32,
    /// The rungs of its task.
    pub rungs: u32,
    /// Its budget there, in samples.
    pub samples: u64,
}

/// The search's state.
#[derive(Clone, Debug)]
pub struct Halving {
    spec: HalvingSpec,
    analysis: Analysis,
    settings: Vec<Setting>,
    groups: Vec<Group>,
    of_trial: HashMap<TrialId, usize>,
}

impl Halving {
    /// The search of `plan`'s sweep (`None`: it does not halve).
    pub fn new(plan: &Plan<'_>) -> Option<Halving> {
        let sweep = plan.sweep();
        let spec = sweep.halving.clone()?;
        let mut settings: Vec<Setting> = Vec::new();
        let mut groups: Vec<Group> = Vec::new();
        let mut by_key: HashMap<String, usize> = HashMap::new();
        let mut by_group: HashMap<String, usize> = HashMap::new();
        let mut of_trial = HashMap::new();
        for t in plan.trials() {
            let key = t.setting_key();
            let s = match by_key.get(&key) {
                Some(&s) => s,
                None => {
                    let label: Vec<String> =
                        spec.within.iter().map(|a| format!("{}={}", a.name(), t.params.display(a.name()))).collect();
                    let label = label.join(", ");
                    let g = *by_group.entry(label.clone()).or_insert_with(|| {
                        groups.push(Group { label, settings: Vec::new(), closed: 0 });
                        groups.len() - 1
                    });
                    let full = full_budget(&spec, &sweep.variants[t.task].task);
                    let rungs = spec.rungs(full);
                    let task = &sweep.variants[t.task].task;
                    settings.push(Setting {
                        continues: matches!(task, crate::TaskSpec::Train(_) | crate::TaskSpec::Command(_)),
                        group: g,
                        trials: Vec::new(),
                        results: vec![HashMap::new(); rungs.len()],
                        rungs,
                        rung: 0,
                    });
                    groups[g].settings.push(settings.len() - 1);
                    by_key.insert(key, settings.len() - 1);
                    settings.len() - 1
                }
            };
            if of_trial.insert(t.id, s).is_none() {
                settings[s].trials.push(t.id);
            }
        }
        Some(Halving { spec, analysis: sweep.analysis.clone(), settings, groups, of_trial })
    }

    /// The settings.
    pub fn spec(&self) -> &HalvingSpec {
        &self.spec
    }

    /// The comparison groups.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// Where every trial's first attempt stops: the first rung.
    pub fn first_stop(&self) -> Stop {
        Stop { rung: 0, samples: self.spec.min_samples, last: false }
    }

    /// Where `id` stands (`None`: not a trial of the search).
    pub fn standing(&self, id: TrialId) -> Option<Standing> {
        let s = &self.settings[*self.of_trial.get(&id)?];
        Some(Standing { rung: s.rung as u32, rungs: s.rungs.len() as u32, samples: s.rungs[s.rung] })
    }

    /// Where `id`'s next attempt stops: its rung's budget.
    pub fn stop_of(&self, id: TrialId) -> Option<Stop> {
        let s = &self.settings[*self.of_trial.get(&id)?];
        stop_at(s, s.rung)
    }

    /// The most rungs any task of the search has.
    pub fn rungs(&self) -> Vec<u64> {
        self.settings.iter().map(|s| &s.rungs).max_by_key(|r| r.len()).cloned().unwrap_or_default()
    }

    /// Trials that have finished each rung (a result recorded there).
    pub fn reached(&self) -> Vec<u64> {
        let mut out = vec![0u64; self.rungs().len()];
        for s in &self.settings {
            for (k, r) in s.results.iter().enumerate() {
                out[k] += r.len() as u64;
            }
        }
        out
    }

    /// The samples the search spends when each rung keeps exactly the best 1/reduction of each
    /// group's settings (at least one), as synchronous halving does and asynchronous halving
    /// does when results come best first: every trial through the first rung, then the kept
    /// settings through each next one. A rung costs what it adds to the one before where trials
    /// continue (training, commands), its whole budget where they recompute from step 0
    /// (simulations).
    pub fn expected_samples(&self) -> u64 {
        let r = self.spec.reduction as usize;
        self.spend(|n| (n / r).max(1))
    }

    /// The most samples the search can spend, whatever order results come in: a setting
    /// promoted early stays promoted, so of n settings that finish a rung up to n − reduction + 1
    /// go on (when results keep getting better), and the costliest of them are counted.
    pub fn most_samples(&self) -> u64 {
        let r = self.spec.reduction as usize;
        self.spend(|n| if n >= r { n - r + 1 } else { n.min(1) })
    }

    /// The samples spent when, of n settings that finish a rung, `kept(n)` go on (the costliest
    /// ones: a group's settings may have budgets of their own).
    fn spend(&self, kept: impl Fn(usize) -> usize) -> u64 {
        let mut total = 0u64;
        for g in &self.groups {
            let mut alive = g.settings.len();
            let deepest = g.settings.iter().map(|&s| self.settings[s].rungs.len()).max().unwrap_or(0);
            for k in 0..deepest {
                let mut costs: Vec<u64> = g
                    .settings
                    .iter()
                    .filter_map(|&s| {
                        let st = &self.settings[s];
                        let budget = *st.rungs.get(k)?;
                        let before = if st.continues && k > 0 { st.rungs[k - 1] } else { 0 };
                        Some(st.trials.len() as u64 * (budget - before))
                    })
                    .collect();
                costs.sort_unstable_by(|a, b| b.cmp(a));
                total += costs.iter().take(alive).sum::<u64>();
                alive = kept(alive.min(costs.len()));
            }
        }
        total
    }

    /// The samples the grid spends: every trial at its whole budget.
    pub fn grid_samples(&self) -> u64 {
        self.settings.iter().map(|s| s.trials.len() as u64 * s.rungs.last().copied().unwrap_or(0)).sum()
    }

    /// The settings (a trial's parameters but the seed).
    pub fn settings(&self) -> usize {
        self.settings.len()
    }

    /// The trials (one per seed) of each setting of group `g`, in plan order.
    pub fn members(&self, g: usize) -> Vec<&[TrialId]> {
        self.groups
            .get(g)
            .map_or_else(Vec::new, |grp| grp.settings.iter().map(|&s| &self.settings[s].trials[..]).collect())
    }

    /// Records `id`'s result at rung `rung` (its status there and metrics, as the store keeps
    /// them) and returns the trials it promotes, in order. A result for a rung the trial is not
    /// at, or a second one, changes nothing.
    pub fn record(
        &mut self,
        id: TrialId,
        rung: u32,
        status: TrialStatus,
        metrics: Option<&TrialMetrics>,
    ) -> Vec<Promotion> {
        let Some(&si) = self.of_trial.get(&id) else { return Vec::new() };
        let k = rung as usize;
        {
            let s = &mut self.settings[si];
            // A second result at the same rung counts only where it replaces a failure (the
            // trial was retried, `kappa retry --failed`).
            let replaces = |r: &RungResult| r.failed && status != TrialStatus::Failed;
            if k != s.rung || k >= s.results.len() || s.results[k].get(&id).is_some_and(|r| !replaces(r)) {
                return Vec::new();
            }
            s.results[k].insert(id, RungResult::new(status, metrics, &self.analysis));
        }
        let g = self.settings[si].group;
        let mut out = self.promote(g, k);
        out.extend(self.close(g));
        out
    }

    /// The settings of group `g` that finished rung `k` and are in its best 1/reduction, not
    /// promoted yet: promoted.
    fn promote(&mut self, g: usize, k: usize) -> Vec<Promotion> {
        let mut done: Vec<(Rank, usize)> = self.groups[g]
            .settings
            .iter()
            .filter(|&&s| self.settings[s].rungs.len() > k + 1)
            .filter_map(|&s| self.settings[s].rank(k, &self.analysis).map(|r| (r, s)))
            .collect();
        done.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        let top = done.len() / self.spec.reduction as usize;
        let chosen: Vec<usize> = done.iter().take(top).filter(|(r, _)| !r.dead).map(|&(_, s)| s).collect();
        self.lift(chosen, k)
    }

    /// Closes the rungs of group `g` that nothing can reach undecided any more, in order; a
    /// closed rung that promoted nobody promotes its best live setting.
    fn close(&mut self, g: usize) -> Vec<Promotion> {
        let mut out = Vec::new();
        loop {
            let k = self.groups[g].closed;
            let members: Vec<usize> =
                self.groups[g].settings.iter().copied().filter(|&s| self.settings[s].rungs.len() > k + 1).collect();
            if members.is_empty() {
                break;
            }
            // Every setting that can go past rung k has been promoted, stopped below it (the
            // rungs below are closed: it never gets here), or finished it.
            let decided = members.iter().all(|&s| {
                let st = &self.settings[s];
                st.rung != k || st.dead_by(k) || st.rank(k, &self.analysis).is_some()
            });
            if !decided {
                break;
            }
            self.groups[g].closed = k + 1;
            if members.iter().any(|&s| self.settings[s].rung > k) {
                continue;
            }
            let best = members
                .iter()
                .filter_map(|&s| self.settings[s].rank(k, &self.analysis).map(|r| (r, s)))
                .filter(|(r, _)| !r.dead)
                .min_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
            match best {
                Some((_, s)) => out.extend(self.lift(vec![s], k)),
                None => break,
            }
        }
        out
    }

    /// Moves settings from rung `k` to `k + 1`: every one of their trials is promoted.
    fn lift(&mut self, chosen: Vec<usize>, k: usize) -> Vec<Promotion> {
        let mut out = Vec::new();
        for s in chosen {
            let st = &mut self.settings[s];
            if st.rung != k || st.dead_by(k) {
                continue;
            }
            st.rung = k + 1;
            let stop = stop_at(st, k + 1);
            out.extend(st.trials.iter().map(|&id| Promotion { id, stop, rung: (k + 1) as u32 }));
        }
        out
    }
}

/// The stop of rung `k` of a setting: its budget (the last rung's is the whole budget).
fn stop_at(s: &Setting, k: usize) -> Option<Stop> {
    s.rungs.get(k).map(|&samples| Stop { rung: k as u32, samples, last: k + 1 == s.rungs.len() })
}

/// A task's whole budget under halving: its `samples`, or `max_samples` for a command.
pub fn full_budget(spec: &HalvingSpec, task: &crate::TaskSpec) -> u64 {
    task.samples().or(spec.max_samples).unwrap_or(spec.min_samples)
}

/// The `within` axes as a sweep file names them.
pub fn within_names(spec: &HalvingSpec) -> Vec<&str> {
    spec.within.iter().map(Axis::name).collect()
}

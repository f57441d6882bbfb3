//! A search's groups as the report shows them: each group's probes over the objective (seed
//! means, as the search decided by), its optimum (the best probe, refined by the parabola through
//! its neighbours, as the best-learning-rate analysis does), the bracket around it, where the
//! group started and how far that was from the optimum, its rounds and how it ended. Read from
//! the recorded trials and their origins.

use crate::analysis::group_label;
use crate::trials::Trials;
use kappa_core::objective::{Edge, Obs, best_lr, observe_or_failed, seed_mean};
use kappa_core::search::{Point, Step, step, value_of};
use kappa_core::{Origin, Sweep, TrialId, TrialResult};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// One group of a search.
#[derive(Clone, Debug, Serialize)]
pub struct SearchGroup {
    /// The search's number for it.
    pub group: u32,
    /// What its trials share (the optimizer's hyperparameters but the searched one and the
    /// seed, task axes, parameters).
    pub label: String,
    /// Its batch size.
    pub batch_size: u64,
    /// Where it started (the middle of its first round).
    pub start: Option<f64>,
    /// The start over the optimum found (1: started on it).
    pub start_ratio: Option<f64>,
    /// Rounds run.
    pub rounds: u32,
    /// Trials run (probes × seeds).
    pub trials: usize,
    /// (value, objective, its SE) per probe, value ascending; `+∞` diverged, did not train,
    /// unstable or failed.
    pub probes: Vec<[f64; 3]>,
    /// The optimum.
    pub best: Option<f64>,
    /// The optimum is the smallest or largest value probed (the true one may lie beyond): at the
    /// range's edge when `finish` says so, otherwise where the search stopped.
    pub at_edge: bool,
    /// The optimum is next to a probe that failed: limited by stability.
    pub at_stability_edge: bool,
    /// The best probe's neighbours: the optimum lies between them.
    pub interval: Option<[f64; 2]>,
    /// How the group ended (`None`: still running).
    pub finish: Option<String>,
}

/// A search's report.
#[derive(Clone, Debug, Serialize)]
pub struct SearchReport {
    /// The searched axis.
    pub axis: String,
    /// Where it looked.
    pub range: [f64; 2],
    /// The ± ratio it aimed for.
    pub tolerance: f64,
    /// What the objective is.
    pub objective: String,
    /// It is maximised (`[analysis] mode = "max"`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub maximise: bool,
    /// Trials run, and the most the search could run.
    pub trials: usize,
    /// The most trials the search could run.
    pub at_most: u64,
    /// Each group, in the search's order.
    pub groups: Vec<SearchGroup>,
}

/// The report of `sweep`'s search (`None`: a grid sweep).
pub(crate) fn search_report(
    sweep: &Sweep,
    plan: &kappa_core::Plan<'_>,
    trials: &Trials<'_>,
    results: &HashMap<TrialId, TrialResult>,
) -> Option<SearchReport> {
    let spec = sweep.search.as_ref()?;
    let search = kappa_core::search::Search::new(plan)?;
    let a = &sweep.analysis;
    // group → value (bits) → seeds' observations (None: not finished).
    struct Seen {
        label: String,
        batch_size: u64,
        start: Option<f64>,
        rounds: u32,
        trials: usize,
        probes: BTreeMap<u64, Vec<Option<Obs>>>,
    }
    let mut groups: BTreeMap<u32, Seen> = BTreeMap::new();
    let mut ids = std::collections::HashSet::new();
    for t in trials.trials() {
        // A trial in two roles (a probe, and a rule's variant of another group's best) ran once.
        ids.insert(t.id);
        let Origin::Probe { group, round, start, .. } = t.origin else { continue };
        let Some(value) = value_of(&t.params, &spec.axis) else { continue };
        let g = groups.entry(group).or_insert_with(|| Seen {
            label: group_label(&t.params, &["seed", spec.axis.name()]),
            batch_size: t.params.hyper.batch_size,
            start: None,
            rounds: 0,
            trials: 0,
            probes: BTreeMap::new(),
        });
        g.start = g.start.or(start);
        g.rounds = g.rounds.max(round + 1);
        g.trials += 1;
        let obs = results
            .get(&t.id)
            .filter(|r| r.status.is_terminal())
            .map(|r| observe_or_failed(r.status, r.metrics.as_ref(), a));
        g.probes.entry(value.to_bits()).or_default().push(obs);
    }
    let seeds = sweep.grid.axis(kappa_core::AxisName::Seed).map_or(1, |v| v.len()) as u64;
    let out = groups
        .into_iter()
        .map(|(group, g)| {
            let complete = g.probes.values().all(|seeds| seeds.iter().all(Option::is_some));
            let probes: Vec<[f64; 3]> = g
                .probes
                .iter()
                .filter_map(|(bits, seeds)| {
                    let obs: Vec<&Obs> = seeds.iter().map(Option::as_ref).collect::<Option<Vec<_>>>()?;
                    let (y, se) = seed_mean(&obs, a);
                    Some([f64::from_bits(*bits), y, se])
                })
                .collect();
            let pairs: Vec<(f64, f64)> = probes.iter().map(|p| (p[0], p[1])).collect();
            let opt = best_lr(&pairs);
            let best = opt.map(|o| o.0);
            let at = pairs.iter().enumerate().filter(|(_, p)| p.1.is_finite()).min_by(|x, y| x.1.1.total_cmp(&y.1.1));
            let interval = at.map(|(i, p)| {
                [pairs.get(i.wrapping_sub(1)).map_or(p.0, |q| q.0), pairs.get(i + 1).map_or(p.0, |q| q.0)]
            });
            let points: Vec<Point> = probes.iter().map(|p| Point { value: p[0], y: p[1], se: p[2] }).collect();
            let left = (spec.max_trials / seeds).saturating_sub(g.probes.len() as u64);
            // A group whose next round is decided but not recorded yet is still running.
            let finish = match step(&points, spec, left) {
                Step::Done(f) if complete => Some(f),
                _ => None,
            };
            SearchGroup {
                group,
                label: g.label,
                batch_size: g.batch_size,
                start: g.start,
                start_ratio: g.start.zip(best).map(|(s, b)| s / b),
                rounds: g.rounds,
                trials: g.trials,
                // The metric's own values (a maximised one is negated inside the search).
                probes: probes.iter().map(|&[v, y, se]| [v, a.shown(y), se]).collect(),
                best,
                at_edge: opt.is_some_and(|o| o.1 == Edge::Grid),
                at_stability_edge: opt.is_some_and(|o| o.1 == Edge::Stability),
                interval,
                finish: finish.map(|f| f.as_str().to_string()),
            }
        })
        .collect();
    let objective = a.describe();
    Some(SearchReport {
        axis: spec.axis.name().to_string(),
        range: spec.range,
        tolerance: spec.tolerance,
        objective,
        maximise: a.maximises(),
        trials: ids.len(),
        at_most: search.bound(),
        groups: out,
    })
}

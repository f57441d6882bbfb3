//! The bracketing search (`[search] kind = "bracket"`): for each group (every combination of the
//! grid's axes but the seed), the best value of one axis, found by probing rather than by a grid.
//!
//! A group goes in rounds. Each round proposes two to four probes, each run with every seed of
//! the group, and the next round is decided only once every trial of the round has a recorded
//! result, from those results alone (seed means of the `[analysis]` objective, as the report's
//! best-learning-rate analysis reads them). So a search that is interrupted and resumed makes
//! exactly the decisions an uninterrupted one makes: [`Search::replay`] walks the recorded
//! results from the first round on and proposes the same trials (the same ids) again.
//!
//! One round ([`step`]), from the probes so far (value ascending; a diverged, untrained, unstable
//! or failed probe is worse than any finite objective):
//! - first round: start/factor, start, start·factor (inside the range);
//! - the best probe has no neighbour on one side and is not at that end of the range: expand,
//!   best·factor and best·factor² that way (until the objective turns);
//! - a neighbour failed: the stability edge, two probes splitting the gap in ratio, until the
//!   gap is within ±tolerance;
//! - both neighbours finite and worse: refine, the vertex of the parabola through the three in
//!   (log value, log objective) and the vertex ×/÷ (1 + tolerance) (bisection when those are
//!   taken);
//! - stop when the neighbours are within ±tolerance of each other's geometric middle
//!   (`Finish::Tolerance`), when both differ from the best by less than their combined standard
//!   error (`Finish::Noise`: known to within the noise), at the range's end or a located
//!   stability edge, or when `max_trials` is spent.
//!
//! Groups that differ only in batch size form a chain under `start = "rule"`: they run one after
//! another from the smallest batch size, each starting at the previous optimum times
//! (B'/B)^a (a fitted over the chain's optima inside their brackets, the theory's exponent until
//! two are). With a fixed start every group starts at once. With `[scaling]`, a finished group's
//! best probe is followed by its rules' scaled variants (every κ, every seed).

use crate::grid::Axis;
use crate::id::TrialId;
use crate::objective::{Edge, Obs, best_lr, log_log_slope, observe_or_failed, seed_mean};
use crate::origin::{Origin, Reason};
use crate::params::{AxisName, OptimizerKind, Params};
use crate::plan::Plan;
use crate::spec::{BracketSpec, SearchStart};
use crate::trial::{PlannedTrial, TrialMetrics, TrialResult, TrialStatus};
use std::collections::{BTreeMap, HashMap};

/// One probe's value and objective (seed mean, `+∞` when it failed in any way) and its SE.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// The searched axis's value.
    pub value: f64,
    /// The objective (smaller is better).
    pub y: f64,
    /// Its standard error.
    pub se: f64,
}

/// Why a group's search ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// The optimum is bracketed within ±tolerance.
    Tolerance,
    /// The best probe's neighbours differ from it by less than their standard errors: the
    /// optimum is known to within the noise (the bracket is the interval).
    Noise,
    /// The best probe is at an end of the range: the optimum may lie beyond it.
    RangeEdge,
    /// The best probe is next to one that failed, within ±tolerance of it: limited by stability.
    StabilityEdge,
    /// `max_trials` is spent before any of the above.
    Budget,
    /// Every probe failed, out to both ends of the range.
    NoOptimum,
}

impl Finish {
    /// In words, for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Tolerance => "within tolerance",
            Finish::Noise => "within the noise",
            Finish::RangeEdge => "at the range's edge",
            Finish::StabilityEdge => "at a stability edge",
            Finish::Budget => "max_trials spent",
            Finish::NoOptimum => "no probe trained",
        }
    }
}

/// What a group does next.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Probe these values (every seed), for this reason.
    Probe(Vec<f64>, Reason),
    /// Done.
    Done(Finish),
}

/// A value as probes carry it: six significant digits, so ids do not depend on the last bits of
/// a logarithm (a coordinator on another machine proposes the same trials), and inside `range`.
pub fn place(v: f64, range: [f64; 2]) -> f64 {
    let rounded: f64 = format!("{v:.5e}").parse().unwrap_or(v);
    rounded.clamp(range[0], range[1])
}

/// The first round around `start`: start/factor, start, start·factor, moved inside the range
/// (or the range's ends and middle when it is narrower than factor²).
pub fn first_round(start: f64, spec: &BracketSpec) -> Vec<f64> {
    let [lo, hi] = spec.range;
    let f = spec.factor;
    let values = if hi / lo >= f * f {
        let c = start.clamp(lo * f, hi / f);
        vec![c / f, c, c * f]
    } else {
        vec![lo, (lo * hi).sqrt(), hi]
    };
    let mut out: Vec<f64> = values.into_iter().map(|v| place(v, spec.range)).collect();
    out.dedup();
    out
}

/// One side of the best probe.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Side {
    /// No probe beyond it, and the range goes on: expand.
    Open,
    /// At the end of the range.
    RangeEnd,
    /// The neighbour failed, farther than ±tolerance: locate the edge (the neighbour's value).
    Cliff(f64),
    /// The neighbour failed, within ±tolerance.
    Located,
    /// A finite neighbour, worse.
    Bracketed(Point),
}

/// The next round of a group from its probes (`points`, value ascending), with `left` probes of
/// its budget left.
pub fn step(points: &[Point], spec: &BracketSpec, left: u64) -> Step {
    let [lo, hi] = spec.range;
    let (f, tol) = (spec.factor, spec.tolerance);
    let close = (1.0 + tol).ln() / 4.0;
    let fresh = |v: &f64| points.iter().all(|p| (p.value / v).ln().abs() >= close);
    let finish = |mut values: Vec<f64>, reason: Reason, otherwise: Finish| {
        values = values.into_iter().map(|v| place(v, spec.range)).filter(fresh).collect();
        values.dedup_by(|a, b| (*a / *b).ln().abs() < close);
        values.truncate(left as usize);
        if values.is_empty() {
            Step::Done(if left == 0 { Finish::Budget } else { otherwise })
        } else {
            Step::Probe(values, reason)
        }
    };
    let Some(first) = points.first() else { return Step::Done(Finish::NoOptimum) };
    let best = points.iter().enumerate().filter(|(_, p)| p.y.is_finite()).min_by(|a, b| a.1.y.total_cmp(&b.1.y));
    let Some((i, &b)) = best else {
        // Nothing trained yet: look beyond both ends.
        let last = points[points.len() - 1];
        return finish(vec![first.value / f, last.value * f], Reason::Expand, Finish::NoOptimum);
    };
    let side = |n: Option<&Point>, end: f64, up: bool| match n {
        None if (up && b.value >= end) || (!up && b.value <= end) => Side::RangeEnd,
        None => Side::Open,
        Some(n) if !n.y.is_finite() => {
            if (n.value / b.value).ln().abs() <= 2.0 * (1.0 + tol).ln() {
                Side::Located
            } else {
                Side::Cliff(n.value)
            }
        }
        Some(n) => Side::Bracketed(*n),
    };
    let below = side(i.checked_sub(1).map(|j| &points[j]), lo, false);
    let above = side(points.get(i + 1), hi, true);
    let mut values = Vec::new();
    let mut reason = Reason::Edge;
    for (s, up) in [(below, false), (above, true)] {
        match s {
            Side::Open => {
                reason = Reason::Expand;
                let g = if up { f } else { 1.0 / f };
                values.extend([b.value * g, b.value * g * g]);
            }
            Side::Cliff(c) => {
                let r = c / b.value;
                values.extend([b.value * r.powf(1.0 / 3.0), b.value * r.powf(2.0 / 3.0)]);
            }
            _ => {}
        }
    }
    // How the group ends when neither side is bracketed and nothing is left to probe.
    let at_an_edge = if matches!(below, Side::Located) || matches!(above, Side::Located) {
        Finish::StabilityEdge
    } else {
        Finish::RangeEdge
    };
    if !values.is_empty() {
        values.sort_by(f64::total_cmp);
        return finish(values, reason, at_an_edge);
    }
    let (Side::Bracketed(l), Side::Bracketed(r)) = (below, above) else { return Step::Done(at_an_edge) };
    let within_noise = |n: Point| {
        let se = n.se.hypot(b.se);
        se > 0.0 && n.y - b.y <= se
    };
    if within_noise(l) && within_noise(r) {
        return Step::Done(Finish::Noise);
    }
    if (r.value / l.value).sqrt() <= 1.0 + tol + 1e-9 {
        return Step::Done(Finish::Tolerance);
    }
    let vertex = best_lr(&[(l.value, l.y), (b.value, b.y), (r.value, r.y)]).map_or(b.value, |o| o.0);
    // Placed values strictly inside the bracket and not yet probed.
    let candidates = |values: &[f64]| -> Vec<f64> {
        values.iter().map(|v| place(*v, spec.range)).filter(|v| *v > l.value && *v < r.value && fresh(v)).collect()
    };
    let mut refine = candidates(&[vertex / (1.0 + tol), vertex, vertex * (1.0 + tol)]);
    if refine.is_empty() {
        refine = candidates(&[(l.value * b.value).sqrt(), (b.value * r.value).sqrt()]);
    }
    finish(refine, Reason::Refine, Finish::Tolerance)
}

/// The theory's (or the rules') exponent of `axis` in the batch size: how the optimum moves
/// when the batch grows (lr: THEORY.md §5 and §7; others: the rule's exponent for them).
fn axis_exponent(axis: &Axis, optimizer: OptimizerKind, scaling: Option<&crate::Scaling>) -> f64 {
    let rule =
        scaling.and_then(|s| s.rules.first().cloned()).or_else(|| crate::ScalingRule::preset(optimizer.default_rule()));
    match axis {
        Axis::Builtin(AxisName::Lr) => optimizer.theory_lr_exponent(),
        Axis::Builtin(AxisName::Eps) => rule.map_or(0.0, |r| r.eps),
        Axis::Builtin(AxisName::WeightDecay) => rule.map_or(0.0, |r| r.weight_decay),
        Axis::Named(n) => rule.and_then(|r| r.named.get(n).copied()).unwrap_or(0.0),
        Axis::Builtin(_) => 0.0,
    }
}

/// A probe of a group: one value, every seed.
#[derive(Clone, Debug)]
struct Probe {
    ids: Vec<TrialId>,
    /// Each seed's result, once recorded.
    obs: Vec<Option<Obs>>,
}

/// Where a group stands.
#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    /// Waiting for the group before it in its chain.
    Waiting,
    /// Running round `round`; `open` of its trials have no result yet.
    Running { round: u32, open: usize },
    /// Finished.
    Done(Finish),
}

/// One group.
#[derive(Clone, Debug)]
struct Group {
    /// Its grid points, one per seed (the searched axis at its placeholder).
    seeds: Vec<PlannedTrial>,
    batch_size: u64,
    optimizer: OptimizerKind,
    probes: BTreeMap<u64, Probe>,
    state: State,
    start: Option<f64>,
}

impl Group {
    /// Its probes' points, value ascending (only probes every seed of which has a result).
    fn points(&self, analysis: &crate::spec::Analysis) -> Vec<Point> {
        self.probes
            .iter()
            .filter_map(|(bits, p)| {
                let obs: Vec<&Obs> = p.obs.iter().map(Option::as_ref).collect::<Option<Vec<_>>>()?;
                let (y, se) = seed_mean(&obs, analysis);
                Some(Point { value: f64::from_bits(*bits), y, se })
            })
            .collect()
    }
}

/// What a trial is to the search.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Role {
    /// Seed `seed` of the probe at value (bits) of group `group`.
    Probe { group: usize, value: u64, seed: usize },
    /// A scaled variant of a group's best probe: no decision reads it.
    Follower,
}

/// A bracketing search over a sweep's groups.
#[derive(Debug)]
pub struct Search {
    spec: BracketSpec,
    /// The plan's sweep and code version, to make trials and their ids.
    sweep: crate::Sweep,
    version: crate::CodeVersion,
    groups: Vec<Group>,
    /// Chains of groups in batch-size order (`start = "rule"`), or one group each.
    chains: Vec<Vec<usize>>,
    roles: HashMap<TrialId, Vec<Role>>,
    /// Results recorded so far (a trial proposed again later reads its result from here).
    results: HashMap<TrialId, Obs>,
    next_seq: u64,
}

impl Search {
    /// The search of `plan`'s sweep (`None`: the sweep is a grid).
    pub fn new(plan: &Plan<'_>) -> Option<Search> {
        let sweep = plan.sweep();
        let spec = sweep.search.clone()?;
        let mut groups: Vec<Group> = Vec::new();
        let mut by_key: HashMap<String, usize> = HashMap::new();
        let mut seen = std::collections::HashSet::new();
        for t in plan.grid_points() {
            if !seen.insert(t.id) {
                continue;
            }
            let g = *by_key.entry(t.setting_key()).or_insert_with(|| {
                groups.push(Group {
                    seeds: Vec::new(),
                    batch_size: t.params.hyper.batch_size,
                    optimizer: t.params.hyper.optimizer,
                    probes: BTreeMap::new(),
                    state: State::Waiting,
                    start: None,
                });
                groups.len() - 1
            });
            groups[g].seeds.push(t);
        }
        let chains = match spec.start {
            SearchStart::Rule => {
                let mut chains: Vec<Vec<usize>> = Vec::new();
                let mut by_rest: HashMap<String, usize> = HashMap::new();
                for (g, group) in groups.iter().enumerate() {
                    let mut p = group.seeds[0].params.clone();
                    (p.hyper.seed, p.hyper.batch_size) = (0, 0);
                    let key = format!("{}#{}", p.identity(), group.seeds[0].task);
                    let c = *by_rest.entry(key).or_insert_with(|| {
                        chains.push(Vec::new());
                        chains.len() - 1
                    });
                    chains[c].push(g);
                }
                for c in &mut chains {
                    c.sort_by_key(|g| groups[*g].batch_size);
                }
                chains
            }
            SearchStart::Value(_) => (0..groups.len()).map(|g| vec![g]).collect(),
        };
        Some(Search {
            spec,
            sweep: sweep.clone(),
            version: plan.version().clone(),
            groups,
            chains,
            roles: HashMap::new(),
            results: HashMap::new(),
            next_seq: 0,
        })
    }

    /// The search's settings.
    pub fn spec(&self) -> &BracketSpec {
        &self.spec
    }

    /// Number of groups.
    pub fn groups(&self) -> usize {
        self.groups.len()
    }

    /// The task group `group` runs (`None`: no such group).
    pub fn group_task(&self, group: u32) -> Option<usize> {
        Some(self.groups.get(group as usize)?.seeds.first()?.task)
    }

    /// Groups that run one after another (`start = "rule"`: those that differ only in batch
    /// size), as chains of group numbers.
    pub fn chains(&self) -> &[Vec<usize>] {
        &self.chains
    }

    /// The most trials the search can run: `max_trials` per group, and with `[scaling]` each
    /// group's followers (every rule and κ of its best probe, every seed).
    pub fn bound(&self) -> u64 {
        let followers = self.sweep.scaling.as_ref().map_or(0, |s| s.variants());
        self.groups.iter().map(|g| self.spec.max_trials + followers * g.seeds.len() as u64).sum()
    }

    /// Groups finished.
    pub fn finished_groups(&self) -> usize {
        self.groups.iter().filter(|g| matches!(g.state, State::Done(_))).count()
    }

    /// Whether every group is finished.
    pub fn is_done(&self) -> bool {
        self.finished_groups() == self.groups.len()
    }

    /// Plan positions of the trials proposed from now on start at `seq`.
    pub fn set_next_seq(&mut self, seq: u64) {
        self.next_seq = seq;
    }

    /// The first proposals: the first round of every group that starts at once (each chain's
    /// first group under `start = "rule"`, every group with a fixed start).
    pub fn start(&mut self) -> Vec<PlannedTrial> {
        let heads: Vec<usize> = self.chains.iter().filter_map(|c| c.first().copied()).collect();
        let mut out = Vec::new();
        for g in heads {
            let start = match self.spec.start {
                SearchStart::Value(v) => v,
                SearchStart::Rule => self.spec.middle(),
            };
            out.extend(self.open_group(g, start));
        }
        out
    }

    /// Records a finished trial's result; returns the trials this decides to run next (nothing
    /// until a round is complete). A trial recorded before changes nothing; one the search has
    /// not proposed is kept, and counts once the search proposes it.
    pub fn record(&mut self, id: TrialId, result: &TrialResult) -> Vec<PlannedTrial> {
        self.record_parts(id, result.status, result.metrics.as_ref())
    }

    /// [`Search::record`] of a trial that ended with `status` and `metrics`.
    pub fn record_parts(
        &mut self,
        id: TrialId,
        status: TrialStatus,
        metrics: Option<&TrialMetrics>,
    ) -> Vec<PlannedTrial> {
        if !status.is_terminal() || self.results.contains_key(&id) {
            return Vec::new();
        }
        let obs = observe_or_failed(status, metrics, &self.sweep.analysis);
        // Kept even for a trial not proposed (yet): a later proposal of it reads it from here.
        self.results.insert(id, obs);
        let mut out = Vec::new();
        let mut queue = vec![id];
        while let Some(id) = queue.pop() {
            let roles = self.roles.get(&id).cloned().unwrap_or_default();
            for role in roles {
                for t in self.apply(role, id) {
                    if self.results.contains_key(&t.id) {
                        queue.push(t.id);
                    }
                    out.push(t);
                }
            }
        }
        out
    }

    /// Runs the search to its end in this process, round by round as a cluster would: `run`
    /// gets each round's trials at once (it may run them in parallel) and returns their results
    /// in any order. Returns every trial with its result, in the order they ran (a trial
    /// proposed in two roles runs once and is listed in both).
    pub fn run_rounds(
        &mut self,
        mut run: impl FnMut(&[PlannedTrial]) -> Vec<TrialResult>,
    ) -> Vec<(PlannedTrial, TrialResult)> {
        let mut out = Vec::new();
        let mut done: HashMap<TrialId, TrialResult> = HashMap::new();
        let mut round = self.start();
        while !round.is_empty() {
            // A trial proposed in two roles (in this round or an earlier one) runs once.
            let mut seen = std::collections::HashSet::new();
            let unique: Vec<PlannedTrial> =
                round.iter().filter(|t| !done.contains_key(&t.id) && seen.insert(t.id)).cloned().collect();
            let results = run(&unique);
            let mut next = Vec::new();
            for r in &results {
                next.extend(self.record(r.id, r));
            }
            done.extend(results.into_iter().map(|r| (r.id, r)));
            out.extend(round.into_iter().filter_map(|t| Some((t.clone(), done.get(&t.id)?.clone()))));
            round = next;
        }
        out
    }

    /// Every trial the search proposes given `results` (the recorded ones, by id), from its
    /// first round on: what an uninterrupted search has proposed by the time those results are
    /// in, in the order it decided them (its first proposals first).
    pub fn replay(&mut self, results: &dyn Fn(TrialId) -> Option<TrialResult>) -> Vec<PlannedTrial> {
        let mut all = self.start();
        let mut i = 0;
        while i < all.len() {
            let id = all[i].id;
            if let Some(r) = results(id).filter(|r| r.status.is_terminal()) {
                let more = self.record(id, &r);
                all.extend(more);
            }
            i += 1;
        }
        all
    }

    /// Applies the result of `id` in its `role`; returns what that decides.
    fn apply(&mut self, role: Role, id: TrialId) -> Vec<PlannedTrial> {
        let Role::Probe { group, value, seed } = role else { return Vec::new() };
        let Some(obs) = self.results.get(&id).cloned() else { return Vec::new() };
        let g = &mut self.groups[group];
        let Some(probe) = g.probes.get_mut(&value) else { return Vec::new() };
        if probe.obs[seed].is_some() {
            return Vec::new();
        }
        probe.obs[seed] = Some(obs);
        let State::Running { round, open } = g.state else { return Vec::new() };
        if open > 1 {
            g.state = State::Running { round, open: open - 1 };
            return Vec::new();
        }
        self.decide(group, round)
    }

    /// A group's round `round` is complete: the next round, or the group's end (and then its
    /// followers, and the next group of its chain).
    fn decide(&mut self, group: usize, round: u32) -> Vec<PlannedTrial> {
        let g = &self.groups[group];
        let points = g.points(&self.sweep.analysis);
        let seeds = g.seeds.len() as u64;
        let left = (self.spec.max_trials / seeds).saturating_sub(g.probes.len() as u64);
        match step(&points, &self.spec, left) {
            Step::Probe(values, reason) => self.propose(group, round + 1, &values, reason, None),
            Step::Done(finish) => {
                self.groups[group].state = State::Done(finish);
                let mut out = self.followers(group, &points);
                out.extend(self.next_in_chain(group));
                out
            }
        }
    }

    /// Starts group `g` at `start`: its first round.
    fn open_group(&mut self, g: usize, start: f64) -> Vec<PlannedTrial> {
        let start = place(start, self.spec.range);
        self.groups[g].start = Some(start);
        let values = first_round(start, &self.spec);
        self.propose(g, 0, &values, Reason::Start, Some(start))
    }

    /// The next group of `group`'s chain, started where the chain's optima so far predict.
    fn next_in_chain(&mut self, group: usize) -> Vec<PlannedTrial> {
        let Some(chain) = self.chains.iter().find(|c| c.contains(&group)).cloned() else { return Vec::new() };
        let at = chain.iter().position(|g| *g == group).unwrap_or(0);
        let Some(&next) = chain.get(at + 1) else { return Vec::new() };
        if self.groups[next].state != State::Waiting {
            return Vec::new();
        }
        let analysis = &self.sweep.analysis;
        // The optima found so far: each finished group's best value and whether it is inside.
        let optima: Vec<(f64, f64, bool)> = chain[..=at]
            .iter()
            .filter_map(|g| {
                let group = &self.groups[*g];
                let pts: Vec<(f64, f64)> = group.points(analysis).iter().map(|p| (p.value, p.y)).collect();
                let (v, edge) = best_lr(&pts)?;
                Some((group.batch_size as f64, v, edge == Edge::Inside))
            })
            .collect();
        let inside: Vec<(f64, f64)> = optima.iter().filter(|o| o.2).map(|o| (o.0, o.1)).collect();
        let prev = &self.groups[group];
        let a = if inside.len() >= 2 {
            log_log_slope(&inside).unwrap_or(0.0)
        } else {
            axis_exponent(&self.spec.axis, prev.optimizer, self.sweep.scaling.as_ref())
        };
        let from = optima.last().filter(|o| o.0 == prev.batch_size as f64).map(|o| o.1);
        let base = from.or(prev.start).unwrap_or_else(|| self.spec.middle());
        let ratio = self.groups[next].batch_size as f64 / prev.batch_size as f64;
        self.open_group(next, base * ratio.powf(a))
    }

    /// With `[scaling]`: the rules' variants of a finished group's best probe, every κ and seed.
    fn followers(&mut self, group: usize, points: &[Point]) -> Vec<PlannedTrial> {
        let Some(scaling) = self.sweep.scaling.clone() else { return Vec::new() };
        let Some(best) = points.iter().filter(|p| p.y.is_finite()).min_by(|a, b| a.y.total_cmp(&b.y)) else {
            return Vec::new();
        };
        let plan = Plan::new(&self.sweep, self.version.clone());
        let g = &self.groups[group];
        let Some(probe) = g.probes.get(&best.value.to_bits()) else { return Vec::new() };
        let mut out = Vec::new();
        for (seed, base_id) in g.seeds.iter().zip(&probe.ids) {
            let base = with_value(&seed.params, &self.spec.axis, best.value);
            for v in 1..=scaling.variants() {
                let (rule, kappa) = scaling.variant(v);
                let (params, task) = plan.scaled(&base, seed.task, rule, kappa);
                let id = plan.id(task, &params);
                let origin = Origin::Scaled { base: *base_id, rule: scaling.rules[rule].name.clone(), kappa };
                out.push(PlannedTrial { id, seq: 0, params, variant: Some((rule, kappa)), task, origin });
            }
        }
        for t in &mut out {
            t.seq = self.next_seq;
            self.next_seq += 1;
            self.roles.entry(t.id).or_default().push(Role::Follower);
        }
        out
    }

    /// Proposes `values` (every seed) as round `round` of group `group`.
    fn propose(
        &mut self,
        group: usize,
        round: u32,
        values: &[f64],
        reason: Reason,
        start: Option<f64>,
    ) -> Vec<PlannedTrial> {
        let plan = Plan::new(&self.sweep, self.version.clone());
        let mut out = Vec::new();
        let seeds = self.groups[group].seeds.clone();
        for &value in values {
            let mut ids = Vec::with_capacity(seeds.len());
            for (i, seed) in seeds.iter().enumerate() {
                let params = with_value(&seed.params, &self.spec.axis, value);
                let id = plan.id(seed.task, &params);
                let origin = Origin::Probe { group: group as u32, round, reason, start };
                self.roles.entry(id).or_default().push(Role::Probe { group, value: value.to_bits(), seed: i });
                ids.push(id);
                out.push(PlannedTrial { id, seq: self.next_seq, params, variant: None, task: seed.task, origin });
                self.next_seq += 1;
            }
            let obs = vec![None; ids.len()];
            self.groups[group].probes.insert(value.to_bits(), Probe { ids, obs });
        }
        self.groups[group].state = State::Running { round, open: out.len() };
        out
    }
}

/// The searched axis's value in `params` (`None`: a named axis it does not carry as a number).
pub fn value_of(params: &Params, axis: &Axis) -> Option<f64> {
    let h = &params.hyper;
    match axis {
        Axis::Builtin(AxisName::Lr) => Some(h.lr),
        Axis::Builtin(AxisName::Beta1) => Some(h.beta1),
        Axis::Builtin(AxisName::Beta2) => Some(h.beta2),
        Axis::Builtin(AxisName::Eps) => Some(h.eps),
        Axis::Builtin(AxisName::WeightDecay) => Some(h.weight_decay),
        Axis::Builtin(_) => None,
        Axis::Named(n) => params.named.get(n)?.as_f64(),
    }
}

/// `params` with the searched axis at `value`.
pub fn with_value(params: &Params, axis: &Axis, value: f64) -> Params {
    let mut p = params.clone();
    match axis {
        Axis::Builtin(AxisName::Lr) => p.hyper.lr = value,
        Axis::Builtin(AxisName::Beta1) => p.hyper.beta1 = value,
        Axis::Builtin(AxisName::Beta2) => p.hyper.beta2 = value,
        Axis::Builtin(AxisName::Eps) => p.hyper.eps = value,
        Axis::Builtin(AxisName::WeightDecay) => p.hyper.weight_decay = value,
        Axis::Builtin(_) => {}
        Axis::Named(n) => {
            p.named.insert(n.clone(), serde_json::json!(value));
        }
    }
    p
}

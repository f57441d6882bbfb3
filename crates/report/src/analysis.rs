//! Where rules break: the best learning rate per batch size and its exponent, and the critical
//! batch size (THEORY.md §7), from an ordinary sweep over batch size × learning rate (× seeds).
//!
//! Groups: the base trials (κ = 1) equal in everything but batch size, learning rate and seed
//! (task axes and user parameters included). Within a group, for each batch size:
//! - each learning rate's *objective* (`[analysis] objective`): the seed-mean of the metric at the
//!   last record point (`final`), of the stationary estimate (`stationary`), or the samples until
//!   the seed-mean curve first reaches `target_loss` (`samples_to_target`, linear interpolation
//!   between record points); a diverged trial is worse than any finite value, and so is one that
//!   did not train or was unstable ([`kappa_core::Health`]);
//! - the best learning rate: the grid's argmin, refined by the vertex of the parabola through it and
//!   its two neighbours in (log lr, log objective), kept inside the neighbours' interval; when the
//!   argmin is the grid's first or last learning rate it is reported as is and flagged `at_edge`
//!   (never extrapolated), and when a neighbour diverged, did not train or was unstable it is
//!   reported as is and flagged `at_stability_edge` (no parabola through a cliff);
//! - with `target_loss`: the fewest steps S(B) to reach it over the learning rates and the samples
//!   E(B) = B·S(B); batch sizes that never reach it are listed as `unreached`.
//!
//! Fits: the exponent a of η*(B) ∝ B^a by least squares on log-log over the batch sizes whose
//! optimum is inside the grid; `S(B) = S_min + E_min/B` by linear least squares in 1/B, giving
//! B_crit = E_min/S_min. Intervals are 2.5-97.5% percentiles of a bootstrap that resamples each
//! cell's seeds with replacement and moves each resampled trial by its own standard error over
//! paths (one normal draw per trial and replicate, the same along its curve), refitting everything.

use crate::trials::Trials;
use kappa_core::objective::{Crossing, Obs, crossing, mean_curve, objective, observe, weighted_fit};
pub use kappa_core::objective::{Edge, best_finished_lr, best_lr, linear_fit, log_log_slope};
use kappa_core::spec::Analysis;
use kappa_core::{OptimizerKind, Params, Sweep, TrialId, TrialResult};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Bootstrap replicates behind every interval.
pub const BOOTSTRAP: usize = 400;

/// One batch size's best learning rate.
#[derive(Clone, Debug, Serialize)]
pub struct LrPoint {
    /// The batch size.
    pub batch_size: u64,
    /// The best learning rate (`None`: no learning rate gave a finite objective).
    pub best_lr: Option<f64>,
    /// Its 95% bootstrap interval.
    pub best_lr_ci: Option<[f64; 2]>,
    /// The optimum is the grid's smallest or largest learning rate: the true one may lie beyond.
    pub at_edge: bool,
    /// The optimum is next to a learning rate that diverged, did not train or was unstable: it is
    /// limited by stability, not by noise ([`Edge::Stability`]); the grid's value, not refined.
    pub at_stability_edge: bool,
    /// Seeds per learning rate (the fewest).
    pub seeds: usize,
    /// (learning rate, objective, its SE) for every learning rate of the grid.
    pub objective: Vec<[f64; 3]>,
}

/// The learning-rate scaling of one group.
#[derive(Clone, Debug, Serialize)]
pub struct LrScaling {
    /// What the group's trials share (optimizer, other hyperparameters, task axes, parameters).
    pub group: String,
    /// The optimizer.
    pub optimizer: String,
    /// What the best learning rate minimises (or maximises), and on which metric.
    pub objective: String,
    /// The objective is maximised (`[analysis] mode = "max"`): the best learning rate has the
    /// highest value.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub maximise: bool,
    /// One per batch size, ascending.
    pub points: Vec<LrPoint>,
    /// Fitted exponent a of η*(B) ∝ B^a (`None`: fewer than two optima inside the grid).
    pub exponent: Option<f64>,
    /// Its 95% bootstrap interval.
    pub exponent_ci: Option<[f64; 2]>,
    /// Local slopes Δ log η* / Δ log B between consecutive batch sizes whose optimum is inside
    /// the grid: (smaller B, larger B, slope).
    pub local_slopes: Vec<(u64, u64, f64)>,
    /// Where the local slopes change (by more than [`SLOPE_CHANGE`] from the mean of those
    /// before): the batch sizes up to that point, their exponent and its interval. `None` when
    /// the exponent holds over every batch size (or fewer than three have an inside optimum).
    pub stable: Option<StableRange>,
    /// The theory's exponent in the noise-dominated regime (SGD 1; SignSGD, RMSprop, Adam 0.5).
    pub theory_exponent: f64,
    /// The learning-rate exponents of the sweep's rules, or of the preset for this optimizer.
    pub rule_exponents: Vec<(String, f64)>,
    /// The held-out check: the exponent fitted without the largest batch size predicts that
    /// batch size's best learning rate (`None`: fewer than three optima inside).
    pub held_out: Option<HeldOut>,
    /// Why something is missing.
    pub note: Option<String>,
}

/// The held-out check of an exponent.
#[derive(Clone, Debug, Serialize)]
pub struct HeldOut {
    /// The batch size left out of the fit (the largest with an inside optimum).
    pub batch_size: u64,
    /// Its best learning rate as the fit over the smaller batch sizes predicts it.
    pub predicted: f64,
    /// The prediction's 95% bootstrap interval.
    pub predicted_ci: Option<[f64; 2]>,
    /// The best learning rate found there.
    pub found: f64,
    /// found / predicted − 1.
    pub miss: f64,
}

/// (held-out batch size, predicted, found) from the inside optima (batch size ascending): the
/// fit without the largest, evaluated there.
fn held_out(inside: &[(f64, f64)]) -> Option<(u64, f64, f64)> {
    let (&(b, found), rest) = inside.split_last()?;
    if rest.len() < 2 {
        return None;
    }
    let (a, slope) = linear_fit(&rest.iter().map(|(b, e)| (b.ln(), e.ln())).collect::<Vec<_>>())?;
    Some((b as u64, (a + slope * b.ln()).exp(), found))
}

/// A local slope that differs from the mean of the slopes at smaller batch sizes by more than
/// this ends the range where one exponent describes the optimum (the batch has left the regime
/// the exponent belongs to, e.g. the noise-dominated one).
pub const SLOPE_CHANGE: f64 = 0.25;

/// The batch sizes over which one exponent describes the best learning rate.
#[derive(Clone, Debug, Serialize)]
pub struct StableRange {
    /// The smallest and the largest batch size of the range.
    pub batch_sizes: [u64; 2],
    /// The exponent fitted over them.
    pub exponent: f64,
    /// Its 95% bootstrap interval.
    pub exponent_ci: Option<[f64; 2]>,
}

/// Local slopes between consecutive (batch size, best lr) points, and how many points from the
/// smallest batch size on share one exponent (at least 3 to say so; all when none changes).
fn local_slopes(inside: &[(f64, f64)]) -> (Vec<(u64, u64, f64)>, usize) {
    let slopes: Vec<(u64, u64, f64)> = inside
        .windows(2)
        .map(|w| (w[0].0 as u64, w[1].0 as u64, (w[1].1 / w[0].1).ln() / (w[1].0 / w[0].0).ln()))
        .collect();
    let mut kept = 1;
    while kept < slopes.len() {
        let mean = slopes[..kept].iter().map(|s| s.2).sum::<f64>() / kept as f64;
        if (slopes[kept].2 - mean).abs() > SLOPE_CHANGE {
            break;
        }
        kept += 1;
    }
    (slopes, kept + 1)
}

/// One batch size's steps and samples to the target.
#[derive(Clone, Debug, Serialize)]
pub struct TargetPoint {
    /// The batch size.
    pub batch_size: u64,
    /// Fewest steps to the target over the learning rates.
    pub steps: f64,
    /// Samples seen by then (B × steps).
    pub samples: f64,
    /// The learning rate that got there first.
    pub lr: f64,
    /// That learning rate is the grid's smallest or largest: fewer steps may need one beyond it.
    pub lr_at_edge: bool,
    /// The target was reached within the first record interval: `steps` and `samples` are
    /// upper bounds (the first record point after the start), not measurements, and the fit
    /// leaves the point out.
    pub within_first_record: bool,
}

/// The critical batch size of one group.
#[derive(Clone, Debug, Serialize)]
pub struct CriticalBatch {
    /// What the group's trials share.
    pub group: String,
    /// The optimizer.
    pub optimizer: String,
    /// The loss aimed for.
    pub target_loss: f64,
    /// Batch sizes that reached it, ascending.
    pub points: Vec<TargetPoint>,
    /// Fitted S_min (steps with an infinite batch).
    pub s_min: Option<f64>,
    /// Fitted E_min (samples with a tiny batch).
    pub e_min: Option<f64>,
    /// E_min / S_min.
    pub b_crit: Option<f64>,
    /// Its 95% bootstrap interval.
    pub b_crit_ci: Option<[f64; 2]>,
    /// The gradient noise scale B_simple where the best trials reach the target (median over
    /// batch sizes), when the trials record `noise_scale`.
    pub noise_scale_at_target: Option<f64>,
    /// Batch sizes no learning rate brought to the target.
    pub unreached: Vec<u64>,
    /// Why something is missing.
    pub note: Option<String>,
}

/// A group: batch size → learning rate → seeds.
struct Group {
    label: String,
    optimizer: OptimizerKind,
    cells: BTreeMap<u64, BTreeMap<OrdF64, Vec<Obs>>>,
}

/// A learning rate as a map key (ordered by `total_cmp`).
#[derive(Clone, Copy, Debug)]
struct OrdF64(f64);
impl PartialEq for OrdF64 {
    fn eq(&self, o: &Self) -> bool {
        self.0.total_cmp(&o.0).is_eq()
    }
}
impl Eq for OrdF64 {}
impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for OrdF64 {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0)
    }
}

/// A small deterministic generator (SplitMix64) for the bootstrap: reports are reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        (-2.0 * self.uniform().ln()).sqrt() * (2.0 * std::f64::consts::PI * self.uniform()).cos()
    }
}

/// S(B) = S_min + E_min/B through (batch size, steps), by least squares in 1/B on relative
/// residuals (weights 1/S², so the largest batch sizes, with the fewest steps, count as much as
/// the smallest): `Ok((S_min, E_min, B_crit))`, or `Err(why)` when S_min or E_min is not positive.
pub fn critical_fit(points: &[(f64, f64)]) -> Result<(f64, f64, f64), String> {
    // (A target met at the start takes 0 steps at every batch size: nothing to fit there.)
    let weighted: Vec<(f64, f64, f64)> =
        points.iter().filter(|p| p.1 > 0.0).map(|&(b, s)| (1.0 / b, s, 1.0 / (s * s))).collect();
    let Some((s_min, e_min)) = weighted_fit(&weighted) else {
        return Err(format!("{} batch size(s) reached the target after the start: the fit needs two", weighted.len()));
    };
    let largest = points.iter().map(|p| p.0).fold(0.0, f64::max);
    match (s_min > 0.0, e_min > 0.0) {
        (true, true) => Ok((s_min, e_min, e_min / s_min)),
        (false, true) => Err(format!(
            "the steps fall as 1/B over every batch size: the critical batch size is beyond the largest ({largest}); \
             add larger ones"
        )),
        _ => Err("the steps to the target do not fall with the batch size".into()),
    }
}

fn percentiles(mut v: Vec<f64>, wanted: usize) -> Option<[f64; 2]> {
    // Fewer than half the replicates give a value: no interval worth the name.
    if v.len() * 2 < wanted || v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((q * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)];
    Some([at(0.025), at(0.975)])
}

/// One batch size's evaluation: the batch size, (lr, objective, SE) per lr, the best lr and
/// whether it is at the edge, and the fewest seeds of a cell.
type BestOf = (u64, Vec<[f64; 3]>, Option<(f64, Edge)>, usize);

/// (batch size, best learning rate) of the batch sizes whose optimum lies inside the grid
/// ([`Edge::Inside`]): what the exponent is fitted to.
fn inside(best: &[BestOf]) -> Vec<(f64, f64)> {
    best.iter().filter_map(|(b, _, opt, _)| opt.filter(|o| o.1 == Edge::Inside).map(|o| (*b as f64, o.0))).collect()
}

/// One evaluation of a group (the data, or a bootstrap replicate of it).
struct Eval {
    /// Per batch size, ascending.
    best: Vec<BestOf>,
    exponent: Option<f64>,
    targets: Vec<TargetPoint>,
    unreached: Vec<u64>,
    fit: Result<(f64, f64, f64), String>,
    noise_scale: Option<f64>,
}

fn evaluate(g: &Group, a: &Analysis, mut rng: Option<&mut Rng>) -> Eval {
    let mut best = Vec::new();
    let mut targets = Vec::new();
    let mut unreached = Vec::new();
    let mut scales = Vec::new();
    for (&b, lrs) in &g.cells {
        let mut objective_points = Vec::new();
        let mut stopped = Vec::new();
        let mut fewest = usize::MAX;
        let mut first: Option<(Crossing, f64, bool)> = None; // (where, lr, at edge)
        for (i, (&OrdF64(lr), seeds)) in lrs.iter().enumerate() {
            fewest = fewest.min(seeds.len());
            let (chosen, shift): (Vec<&Obs>, Vec<f64>) = match rng.as_deref_mut() {
                Some(r) => (0..seeds.len()).map(|_| (&seeds[r.below(seeds.len())], r.normal())).unzip(),
                None => (seeds.iter().collect(), vec![0.0; seeds.len()]),
            };
            let (y, se) = objective(&chosen, &shift, a);
            objective_points.push([lr, y, se]);
            stopped.push(seeds.iter().any(|o| o.stopped));
            if let Some(target) = a.target_loss.map(|t| a.signed(t))
                && !chosen.iter().any(|o| o.diverged)
                && let Some(c) = crossing(&mean_curve(&chosen, &shift), target)
                && first.is_none_or(|f| c.steps < f.0.steps)
            {
                first = Some((c, lr, i == 0 || i + 1 == lrs.len()));
            }
        }
        let pairs: Vec<(f64, f64)> = objective_points.iter().map(|p| (p[0], p[1])).collect();
        best.push((b, objective_points, best_finished_lr(&pairs, &stopped), fewest));
        if a.target_loss.is_some() {
            match first {
                Some((c, lr, lr_at_edge)) => {
                    let steps = c.bound.map_or(c.steps, |(_, steps)| steps);
                    targets.push(TargetPoint {
                        batch_size: b,
                        steps,
                        samples: steps * b as f64,
                        lr,
                        lr_at_edge,
                        within_first_record: c.bound.is_some(),
                    });
                    if c.noise_scale.is_finite() {
                        scales.push(c.noise_scale);
                    }
                }
                None => unreached.push(b),
            }
        }
    }
    let exponent = log_log_slope(&inside(&best));
    // Bounds are not measurements: the fit rests on the crossings it can place.
    let measured: Vec<(f64, f64)> =
        targets.iter().filter(|t| !t.within_first_record).map(|t| (t.batch_size as f64, t.steps)).collect();
    let fit = critical_fit(&measured);
    scales.sort_by(f64::total_cmp);
    let noise_scale = (!scales.is_empty()).then(|| scales[scales.len() / 2]);
    Eval { best, exponent, targets, unreached, fit, noise_scale }
}

/// The exponent the sweep's rules give the learning rate, or the preset for `o`.
fn rule_exponents(sweep: &Sweep, o: OptimizerKind) -> Vec<(String, f64)> {
    if let Some(s) = &sweep.scaling {
        return s.rules.iter().map(|r| (r.name.clone(), r.lr)).collect();
    }
    kappa_core::ScalingRule::preset(o.default_rule()).map(|r| vec![(r.name, r.lr)]).unwrap_or_default()
}

/// What a group's trials share, as `key=value` pairs: what the optimizer reads but the axes that
/// vary within the group (`varying`).
pub(crate) fn group_label(p: &Params, varying: &[&str]) -> String {
    let parts: Vec<String> = p
        .read_entries()
        .into_iter()
        .filter(|(k, _)| !varying.contains(&k.as_str()))
        .map(|(k, _)| format!("{k}={}", p.display(&k)))
        .collect();
    parts.join(" ")
}

fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The learning-rate scaling and critical batch size of every group of `sweep` with at least two
/// batch sizes and two learning rates.
pub fn analyse(
    sweep: &Sweep,
    trials: &Trials<'_>,
    results: &HashMap<TrialId, TrialResult>,
) -> (Vec<LrScaling>, Vec<CriticalBatch>) {
    let a = &sweep.analysis;
    let builtins = sweep.grid.builtins();
    if !(builtins.has(kappa_core::AxisName::BatchSize) && builtins.has(kappa_core::AxisName::Lr)) {
        return (Vec::new(), Vec::new());
    }
    let mut order: Vec<String> = Vec::new();
    let mut groups: HashMap<String, Group> = HashMap::new();
    for t in trials.base_trials() {
        let label = group_label(&t.params, &["batch_size", "lr", "seed"]);
        let key = format!("{label}#{}", t.task);
        let g = groups.entry(key.clone()).or_insert_with(|| {
            order.push(key.clone());
            Group { label: label.clone(), optimizer: t.params.hyper.optimizer, cells: BTreeMap::new() }
        });
        let cell = g.cells.entry(t.params.hyper.batch_size).or_default().entry(OrdF64(t.params.hyper.lr)).or_default();
        if let Some(obs) = results.get(&t.id).and_then(|r| observe(r, a)) {
            cell.push(obs);
        }
    }
    let mut lr_out = Vec::new();
    let mut crit_out = Vec::new();
    for key in order {
        let mut g = groups.remove(&key).expect("grouped above");
        // Only cells with results; a batch size needs two learning rates, the group two batch sizes.
        for lrs in g.cells.values_mut() {
            lrs.retain(|_, seeds| !seeds.is_empty());
        }
        g.cells.retain(|_, lrs| lrs.len() >= 2);
        if g.cells.len() < 2 {
            continue;
        }
        let data = evaluate(&g, a, None);
        // Nothing to resample (one seed of single-path trials, every SE 0): an interval would
        // only repeat the estimate, so there is none.
        let varies = g.cells.values().flat_map(|lrs| lrs.values()).any(|seeds| {
            seeds.len() > 1
                || seeds.iter().any(|o| o.value.is_some_and(|v| v.1 > 0.0) || o.curve.iter().any(|p| p[3] > 0.0))
        });
        let mut rng = Rng(hash(&key));
        let reps: Vec<Eval> =
            if varies { (0..BOOTSTRAP).map(|_| evaluate(&g, a, Some(&mut rng))).collect() } else { Vec::new() };
        let no_interval = (!varies).then(|| "one seed of single-path trials: no interval (add seeds)".to_string());
        let points: Vec<LrPoint> = data
            .best
            .iter()
            .enumerate()
            .map(|(i, (b, objective, opt, seeds))| LrPoint {
                batch_size: *b,
                best_lr: opt.map(|o| o.0),
                best_lr_ci: percentiles(reps.iter().filter_map(|r| r.best[i].2.map(|o| o.0)).collect(), BOOTSTRAP),
                at_edge: opt.is_some_and(|o| o.1 == Edge::Grid),
                at_stability_edge: opt.is_some_and(|o| o.1 == Edge::Stability),
                seeds: *seeds,
                // The metric's own values (a maximised one is negated inside the analysis).
                objective: objective.iter().map(|&[lr, y, se]| [lr, a.shown(y), se]).collect(),
            })
            .collect();
        let optima = inside(&data.best);
        let (slopes, stable_n) = local_slopes(&optima);
        let stable = (stable_n >= 3 && stable_n < slopes.len() + 1).then(|| {
            let points = &optima[..stable_n];
            let range = [points[0].0 as u64, points[stable_n - 1].0 as u64];
            // A replicate counts only with the same batch sizes' optima inside its grid.
            let sizes: Vec<u64> = points.iter().map(|p| p.0 as u64).collect();
            let within = |e: &Eval| {
                let pts: Vec<(f64, f64)> =
                    inside(&e.best).into_iter().filter(|(b, _)| sizes.contains(&(*b as u64))).collect();
                (pts.len() == sizes.len()).then(|| log_log_slope(&pts)).flatten()
            };
            StableRange {
                batch_sizes: range,
                exponent: log_log_slope(points).unwrap_or(f64::NAN),
                exponent_ci: percentiles(reps.iter().filter_map(within).collect(), BOOTSTRAP),
            }
        });
        let cliffs: Vec<u64> = points.iter().filter(|p| p.at_stability_edge).map(|p| p.batch_size).collect();
        let cliff_note = (!cliffs.is_empty()).then(|| {
            format!(
                "B = {cliffs:?} have their best learning rate at a stability edge (a neighbouring one diverged, did not \
                 train or was unstable): limited by stability, not noise, and left out of the fit; a finer lr grid \
                 below the cliff would place it"
            )
        });
        let note = [
            data.exponent.is_none().then(|| {
                "fewer than two batch sizes have their best learning rate inside the grid (away from its edges and \
                 from stability edges): widen the lr axis"
                    .to_string()
            }),
            cliff_note,
            no_interval.clone(),
        ]
        .into_iter()
        .flatten()
        .reduce(|a, b| format!("{a}; {b}"));
        let objective = a.describe();
        lr_out.push(LrScaling {
            group: g.label.clone(),
            optimizer: g.optimizer.as_str().to_string(),
            objective,
            maximise: a.maximises(),
            points,
            exponent: data.exponent,
            exponent_ci: data.exponent.and(percentiles(reps.iter().filter_map(|r| r.exponent).collect(), BOOTSTRAP)),
            local_slopes: slopes,
            stable,
            theory_exponent: g.optimizer.theory_lr_exponent(),
            rule_exponents: rule_exponents(sweep, g.optimizer),
            held_out: held_out(&optima).map(|(b, predicted, found)| HeldOut {
                batch_size: b,
                predicted,
                predicted_ci: percentiles(
                    reps.iter().filter_map(|r| held_out(&inside(&r.best)).filter(|h| h.0 == b).map(|h| h.1)).collect(),
                    BOOTSTRAP,
                ),
                found,
                miss: found / predicted - 1.0,
            }),
            note,
        });
        if let Some(target) = a.target_loss {
            let bounds: Vec<u64> =
                data.targets.iter().filter(|t| t.within_first_record).map(|t| t.batch_size).collect();
            let bounds = (!bounds.is_empty()).then(|| {
                format!(
                    "B = {bounds:?} reach the target within their first record interval (S≤, E≤: the first \
                     record point after the start): upper bounds, left out of the fit"
                )
            });
            let note = [data.fit.as_ref().err().cloned(), bounds, no_interval.clone()]
                .into_iter()
                .flatten()
                .reduce(|a, b| format!("{a}; {b}"));
            let fit = data.fit.as_ref().ok().copied();
            crit_out.push(CriticalBatch {
                group: g.label.clone(),
                optimizer: g.optimizer.as_str().to_string(),
                target_loss: target,
                points: data.targets,
                s_min: fit.map(|f| f.0),
                e_min: fit.map(|f| f.1),
                b_crit: fit.map(|f| f.2),
                b_crit_ci: fit.and(percentiles(
                    reps.iter().filter_map(|r| r.fit.as_ref().ok().map(|f| f.2)).collect(),
                    BOOTSTRAP,
                )),
                noise_scale_at_target: data.noise_scale,
                unreached: data.unreached,
                note,
            });
        }
    }
    (lr_out, crit_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_power_law_and_a_hyperbola_are_fitted_exactly() {
        let pts: Vec<(f64, f64)> =
            [16.0, 32.0, 64.0, 128.0].iter().map(|b: &f64| (b.ln(), (2e-4 * b.powf(0.5)).ln())).collect();
        let (_, slope) = linear_fit(&pts).unwrap();
        assert!((slope - 0.5).abs() < 1e-12);
        // S(B) = 1000 (1 + 64/B): S_min 1000, E_min 64 000, B_crit 64.
        let s: Vec<(f64, f64)> = [8.0, 16.0, 64.0, 256.0].iter().map(|b| (*b, 1000.0 * (1.0 + 64.0 / b))).collect();
        let (s_min, e_min, b_crit) = critical_fit(&s).unwrap();
        assert!((s_min - 1000.0).abs() < 1e-6 && (e_min - 64_000.0).abs() < 1e-3 && (b_crit - 64.0).abs() < 1e-9);
        // Steps that grow with the batch have no critical batch size; steps that fall as 1/B over
        // every batch size put it beyond the largest.
        assert!(critical_fit(&[(8.0, 100.0), (64.0, 200.0)]).unwrap_err().contains("do not fall"));
        assert!(critical_fit(&[(8.0, 0.0), (64.0, 0.0)]).unwrap_err().contains("the fit needs two"));
        let perfect: Vec<(f64, f64)> = [8.0, 64.0, 512.0].iter().map(|b| (*b, 5000.0 / b - 0.1)).collect();
        assert!(critical_fit(&perfect).unwrap_err().contains("beyond the largest (512)"));
    }

    #[test]
    fn the_exponent_is_stable_until_a_local_slope_departs_from_the_ones_before() {
        // η* ∝ B^0.5 up to B = 1024, then a jump (the quadratic's 1/λ shortcut at B = 4096).
        let mut pts: Vec<(f64, f64)> =
            [16.0, 64.0, 256.0, 1024.0].iter().map(|b: &f64| (*b, 1e-3 * b.sqrt())).collect();
        pts.push((4096.0, 0.25));
        let (slopes, n) = local_slopes(&pts);
        assert_eq!(n, 4, "{slopes:?}");
        assert!(slopes[..3].iter().all(|s| (s.2 - 0.5).abs() < 1e-9) && slopes[3].2 > 1.4, "{slopes:?}");
        // One exponent throughout: every point.
        assert_eq!(local_slopes(&pts[..4]).1, 4);
    }
}

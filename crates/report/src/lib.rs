//! kappa-report: pure functions from a sweep's plan and its stored results to verdicts on
//! scaling-rule invariance (THEORY.md §5) and noise slopes (§4). No I/O: the CLI reads the store,
//! calls [`build`], and renders what comes back.
//!
//! Classes: every base grid point without its seed, under every rule, is one equivalence class;
//! seeds are replicates, averaged. Within a class each κ > 1 is compared with κ = 1 on the
//! samples-seen axis:
//! - plateau ratio R = stationary(κ) / stationary(1), with a delta-method SE;
//! - curve ratio r(s) = L_κ(s) / L_1(s) at the base curve's points (the scaled curve linearly
//!   interpolated), its largest deviation |r − 1|, and the earliest fraction of the budget from which
//!   the later points are within tolerance (a point is off once it exceeds tolerance + 2 SE; up to
//!   5% of them may be off, for noise, but never the last);
//! - the ratio the closed forms predict, where THEORY.md has them.
//!
//! SDE tracking (`tracking`): with a `task.kind` axis, each optimizer setting against the SDE
//! trials equal to it in everything else.
//!
//! A class *holds* when every κ's plateau is within tolerance and its curve is from 10% of the
//! budget on, *holds late* when that happens only later (but by 90%), and *fails* otherwise (a
//! diverged scaled trial fails too). A rule's verdict is the worst over its classes.

#![warn(missing_docs)]

pub mod analysis;
pub mod render;
mod tracking;

pub use analysis::{CriticalBatch, LrScaling};
pub use tracking::Tracking;

use kappa_core::{Estimate, Params, Plan, Sweep, TrialId, TrialStatus, Verdict};
use serde::Serialize;
use std::collections::HashMap;

/// A curve still counts as holding if it is within tolerance from this fraction of the budget on.
pub const HOLDS_FROM: f64 = 0.1;
/// Beyond this fraction, a curve that only then comes within tolerance fails.
pub const HOLDS_LATE_BY: f64 = 0.9;
/// Share of points after "holds from" that may still stray beyond tolerance + 2 SE (noise).
pub const OFF_FRACTION: f64 = 0.05;

/// What the store (or a coordinator) says about one trial: the report's input.
pub use kappa_core::TrialResult;

/// The whole report (also written as summary.json).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Sweep name.
    pub sweep: String,
    /// Distinct trials in the plan.
    pub trials: u64,
    /// Trials that finished (succeeded or diverged).
    pub finished: u64,
    /// Trials not finished yet, or failed (their classes have no verdict).
    pub missing: u64,
    /// Tolerance used for verdicts.
    pub tolerance: f64,
    /// One entry per rule.
    pub rules: Vec<RuleReport>,
    /// One entry per (base point, rule).
    pub classes: Vec<ClassReport>,
    /// Stationary loss against the minibatch noise σ_B = σ₁/√B, per optimizer setting.
    pub noise_slopes: Vec<SlopeFit>,
    /// Each discrete optimizer against the SDEs of the same setting, when the sweep has a
    /// `task.kind` axis.
    pub tracking: Vec<Tracking>,
    /// The same parameters run several ways: an optimizer and its SDEs in one sweep (tracking),
    /// or the same setting across sweeps (`kappa report --overlay`).
    pub overlays: Vec<Overlay>,
    /// The best learning rate per batch size and its exponent, per group (`analysis`).
    pub lr_scaling: Vec<LrScaling>,
    /// Steps and samples to `[analysis] target_loss` and the critical batch size, per group.
    pub critical_batch: Vec<CriticalBatch>,
    /// `[analysis] expect_exponent`, checked by `--check`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect_exponent: Option<[f64; 2]>,
    /// `[analysis] expect_b_crit`, checked by `--check`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect_b_crit: Option<[f64; 2]>,
}

/// One hyperparameter setting's loss curve in several sweeps.
#[derive(Clone, Debug, Serialize)]
pub struct Overlay {
    /// The shared parameters (seed dropped).
    pub params: Params,
    /// (sweep label, seed-averaged curve as (samples, mean, SE), stationary loss).
    pub series: Vec<(String, Vec<[f64; 3]>, Option<Estimate>)>,
}

/// Curves of the same hyperparameters (seed dropped) across sweeps, for settings present in the
/// first sweep and at least one other. Each input is (label, trials).
pub fn overlays(sweeps: &[(String, Vec<TrialResult>)]) -> Vec<Overlay> {
    let mut out: Vec<Overlay> = Vec::new();
    let Some((_, first)) = sweeps.first() else { return out };
    let mut keys: Vec<(String, Params)> = Vec::new();
    for r in first {
        let k = key_without_seed(&r.params);
        if !keys.iter().any(|(x, _)| *x == k) {
            keys.push((k, r.params.clone()));
        }
    }
    for (key, params) in keys {
        let mut series = Vec::new();
        for (label, trials) in sweeps {
            let results: HashMap<TrialId, TrialResult> = trials
                .iter()
                .filter(|r| key_without_seed(&r.params) == key)
                .enumerate()
                .map(|(i, r)| (TrialId(i as u64), r.clone()))
                .collect();
            if results.is_empty() {
                continue;
            }
            let ids: Vec<TrialId> = results.keys().copied().collect();
            let a = aggregate(&ids, &results);
            if !a.curve.is_empty() {
                series.push((label.clone(), a.curve, a.stationary));
            }
        }
        if series.len() >= 2 {
            let mut p = params;
            p.hyper.seed = 0;
            out.push(Overlay { params: p, series });
        }
    }
    out
}

/// A rule's verdict and the numbers behind it.
#[derive(Clone, Debug, Serialize)]
pub struct RuleReport {
    /// Rule name.
    pub name: String,
    /// Exponents (lr, one_minus_beta, eps, weight_decay).
    pub exponents: [f64; 4],
    /// What the sweep expects.
    pub expect: Option<Verdict>,
    /// What the results say (`None` while classes are incomplete).
    pub verdict: Option<Verdict>,
    /// Classes by verdict: holds, holds late, fails, undecided.
    pub classes: [usize; 4],
    /// Latest fraction of the budget from which a class's curves hold (holding classes only).
    pub holds_from: Option<f64>,
    /// Plateau ratio furthest from 1 over classes and κ (settled plateaus only).
    pub worst_plateau_ratio: Option<f64>,
    /// Largest curve deviation over classes and κ.
    pub max_deviation: Option<f64>,
    /// The largest κ up to which it holds in every class (every κ up to it within tolerance;
    /// `None` while classes are undecided).
    pub holds_up_to_kappa: Option<u64>,
    /// The smallest batch size at which a class stops holding: the batch at its largest holding κ.
    pub holds_up_to_batch: Option<u64>,
    /// Classes left undecided because a plateau ratio rests on trials whose loss had not settled.
    pub unsettled_classes: usize,
}

/// One equivalence class: a base point (seed dropped) under one rule.
#[derive(Clone, Debug, Serialize)]
pub struct ClassReport {
    /// Rule name.
    pub rule: String,
    /// Base parameters (seed of the first replicate).
    pub base: Params,
    /// Seeds (replicates).
    pub seeds: usize,
    /// Verdict, once every trial of the class finished.
    pub verdict: Option<Verdict>,
    /// Why there is no verdict, or what decided it.
    pub note: Option<String>,
    /// κ = 1 first, then each scaled κ.
    pub kappas: Vec<KappaReport>,
    /// (κ, batch size) up to which every κ holds, once decided.
    pub holds_up_to: Option<(u64, u64)>,
}

/// One κ of a class.
#[derive(Clone, Debug, Serialize)]
pub struct KappaReport {
    /// Batch multiplier.
    pub kappa: u64,
    /// Parameters at this κ (seed of the first replicate).
    pub params: Params,
    /// Stationary loss averaged over seeds.
    pub stationary: Option<Estimate>,
    /// Whether the stationary loss of every trial here was taken after its loss settled
    /// ([`kappa_core::TrialMetrics::settled`]): `false` if any was not, `None` if not checked.
    pub settled: Option<bool>,
    /// Stationary loss ÷ κ = 1's.
    pub plateau_ratio: Option<Estimate>,
    /// The plateau ratio rests on a trial (here or at κ = 1) whose loss had not settled: it is
    /// not a ratio of stationary values, and no verdict rests on it.
    pub plateau_unsettled: bool,
    /// 95% interval of the plateau ratio.
    pub plateau_ci95: Option<[f64; 2]>,
    /// The closed form's stationary loss at this κ (THEORY.md §4), where it has one.
    pub theory: Option<f64>,
    /// The closed forms' ratio, where both have one.
    pub theory_ratio: Option<f64>,
    /// Largest |L_κ(s)/L_1(s) − 1| over the aligned curve (s > 0).
    pub max_deviation: Option<f64>,
    /// Earliest fraction of the budget from which the curve stays within tolerance.
    pub holds_from: Option<f64>,
    /// The same point in samples seen (the first point of the curve when it holds from the start).
    pub holds_from_samples: Option<f64>,
    /// Seed-averaged curve: (samples, mean loss, SE).
    pub curve: Vec<[f64; 3]>,
}

/// A log-log fit of stationary loss against σ_B.
#[derive(Clone, Debug, Serialize)]
pub struct SlopeFit {
    /// What the points share (optimizer and hyperparameters other than batch size and seed).
    pub label: String,
    /// (σ_B, mean stationary loss, theory) per batch size.
    pub points: Vec<[f64; 3]>,
    /// Fitted slope d log L / d log σ_B.
    pub slope: f64,
    /// The closed forms' slope over the same points, where they exist.
    pub theory_slope: Option<f64>,
}

/// Builds the report of a stored sweep from what its store keeps: the sweep file (`file`, its
/// text `sweep_text`, parsed again), the code version its ids were made with (`None`: a store
/// from before versions were recorded, whose ids carry the legacy version) and its trials'
/// results. Returns the parsed sweep with the report. `kappa report` and the dashboard build
/// reports through here.
pub fn build_stored(
    file: &str,
    sweep_text: &str,
    version: Option<kappa_core::CodeVersion>,
    trials: impl IntoIterator<Item = TrialResult>,
) -> Result<(Sweep, Report), kappa_core::SpecError> {
    let sweep = Sweep::parse(file, sweep_text)?;
    let version = version.unwrap_or_else(|| kappa_core::CodeVersion::legacy_of(&sweep.task));
    let plan = Plan::new(&sweep, version);
    let results: HashMap<_, _> = trials.into_iter().map(|t| (t.id, t)).collect();
    let report = build(&sweep, &plan, &results);
    Ok((sweep, report))
}

/// Builds the report of `sweep` from the results of its trials (missing ids count as not run).
pub fn build(sweep: &Sweep, plan: &Plan<'_>, results: &HashMap<TrialId, TrialResult>) -> Report {
    let mut trials = 0u64;
    let mut finished = 0u64;
    let mut seen = std::collections::HashSet::new();
    for t in plan.trials() {
        if seen.insert(t.id) {
            trials += 1;
            if results.get(&t.id).is_some_and(|r| matches!(r.status, TrialStatus::Succeeded | TrialStatus::Diverged)) {
                finished += 1;
            }
        }
    }
    let tolerance = sweep.scaling.as_ref().map_or(kappa_core::Scaling::DEFAULT_TOLERANCE, |s| s.tolerance);
    let classes = classes(sweep, plan, results, tolerance);
    let rules =
        sweep.scaling.as_ref().map(|s| s.rules.iter().map(|r| rule_report(r, &classes)).collect()).unwrap_or_default();
    let (tracking, overlays) = tracking::tracking(sweep, plan, results);
    let (lr_scaling, critical_batch) = analysis::analyse(sweep, plan, results);
    Report {
        sweep: sweep.name.clone(),
        trials,
        finished,
        missing: trials - finished,
        tolerance,
        rules,
        classes,
        noise_slopes: noise_slopes(sweep, plan, results),
        tracking,
        overlays,
        lr_scaling,
        critical_batch,
        expect_exponent: sweep.analysis.expect_exponent,
        expect_b_crit: sweep.analysis.expect_b_crit,
    }
}

/// Every parameter but the seed (named axes included), as a key.
fn key_without_seed(p: &Params) -> String {
    let mut q = p.clone();
    q.hyper.seed = 0;
    serde_json::to_string(&q).unwrap_or_default()
}

/// Per κ: the multiplier, the parameters at that κ, and the trial of every seed.
type KappaMembers = Vec<(u64, Params, Vec<TrialId>)>;

fn classes(sweep: &Sweep, plan: &Plan<'_>, results: &HashMap<TrialId, TrialResult>, tol: f64) -> Vec<ClassReport> {
    let Some(scaling) = &sweep.scaling else { return Vec::new() };
    let per = 1 + scaling.variants();
    // (base key, rule) → κ → trial ids over seeds, in plan order.
    let mut order: Vec<(String, usize)> = Vec::new();
    let mut members: HashMap<(String, usize), (Params, KappaMembers, f64)> = HashMap::new();
    // A grid point that repeats an earlier one (a task axis left out) adds no replicate.
    for base in plan.base_trials() {
        let key = key_without_seed(&base.params);
        // "Holds from" is a fraction of the class's own sample budget.
        let budget = sweep.variants[base.task].task.samples().map_or(1.0, |s| s as f64);
        for (r, _) in scaling.rules.iter().enumerate() {
            let entry = members.entry((key.clone(), r)).or_insert_with(|| {
                order.push((key.clone(), r));
                let kappas = scaling.kappas.iter().map(|&k| (k, base.params.clone(), Vec::new())).collect();
                (base.params.clone(), kappas, budget)
            });
            entry.1[0].2.push(base.id);
            for v in 1..per {
                let t = plan.trial(base.seq + v);
                if let Some((rule, kappa)) = t.variant
                    && rule == r
                    && let Some(slot) = entry.1.iter_mut().find(|(k, _, _)| *k == kappa)
                {
                    if slot.2.is_empty() {
                        slot.1 = t.params.clone();
                    }
                    slot.2.push(t.id);
                }
            }
        }
    }
    order
        .into_iter()
        .map(|key| {
            let (base, kappas, budget) = &members[&key];
            class_report(&scaling.rules[key.1].name, base, kappas, results, tol, *budget)
        })
        .collect()
}

struct Aggregate {
    stationary: Option<Estimate>,
    settled: Option<bool>,
    theory: Option<f64>,
    curve: Vec<[f64; 3]>,
    complete: bool,
    diverged: bool,
    failed: bool,
}

fn aggregate(ids: &[TrialId], results: &HashMap<TrialId, TrialResult>) -> Aggregate {
    let mut agg = Aggregate {
        stationary: None,
        settled: None,
        theory: None,
        curve: Vec::new(),
        complete: true,
        diverged: false,
        failed: false,
    };
    let mut metrics = Vec::new();
    for id in ids {
        match results.get(id) {
            Some(TrialResult { status: TrialStatus::Succeeded, metrics: Some(m), .. }) => metrics.push(m),
            Some(TrialResult { status: TrialStatus::Diverged, .. }) => agg.diverged = true,
            Some(TrialResult { status: TrialStatus::Failed, .. }) => agg.failed = true,
            _ => agg.complete = false,
        }
    }
    if metrics.is_empty() {
        return agg;
    }
    let stationary: Vec<Estimate> = metrics.iter().filter_map(|m| m.stationary_loss).collect();
    if stationary.len() == metrics.len() {
        agg.stationary = Estimate::pooled(&stationary);
        let settled: Vec<Option<bool>> = metrics.iter().map(|m| m.settled()).collect();
        agg.settled = if settled.contains(&Some(false)) {
            Some(false)
        } else if settled.iter().all(Option::is_some) {
            Some(true)
        } else {
            None
        };
    }
    agg.theory = metrics[0].theory.as_ref().and_then(|t| t.stationary_loss);
    let points = metrics.iter().map(|m| m.curve.len()).min().unwrap_or(0);
    agg.curve = (0..points)
        .map(|i| {
            let seeds: Vec<Estimate> =
                metrics.iter().map(|m| Estimate { mean: m.curve[i].loss_mean, se: m.curve[i].loss_se }).collect();
            let e = Estimate::pooled(&seeds).unwrap_or(Estimate { mean: f64::NAN, se: f64::NAN });
            [metrics[0].curve[i].samples as f64, e.mean, e.se]
        })
        .collect();
    agg
}

fn ratio(a: Estimate, b: Estimate) -> Estimate {
    let r = a.mean / b.mean;
    Estimate { mean: r, se: r.abs() * ((a.se / a.mean).powi(2) + (b.se / b.mean).powi(2)).sqrt() }
}

/// Linear interpolation of `curve` (samples ascending) at `s`, with its SE; `None` outside.
pub(crate) fn interpolate(curve: &[[f64; 3]], s: f64) -> Option<(f64, f64)> {
    let i = curve.partition_point(|p| p[0] < s);
    if i < curve.len() && curve[i][0] == s {
        return Some((curve[i][1], curve[i][2]));
    }
    if i == 0 || i >= curve.len() {
        return None;
    }
    let (a, b) = (curve[i - 1], curve[i]);
    let w = (s - a[0]) / (b[0] - a[0]);
    Some((a[1] + w * (b[1] - a[1]), a[2] + w * (b[2] - a[2])))
}

/// Compares a scaled curve with the base curve: (largest deviation, fraction from which it holds).
pub fn compare_curves(base: &[[f64; 3]], scaled: &[[f64; 3]], tol: f64, budget: f64) -> (Option<f64>, Option<f64>) {
    let mut points = Vec::new();
    for p in base.iter().filter(|p| p[0] > 0.0) {
        if let Some((l, se)) = interpolate(scaled, p[0]) {
            let r = l / p[1];
            let se_r = r.abs() * ((se / l).powi(2) + (p[2] / p[1]).powi(2)).sqrt();
            points.push((p[0], r, se_r));
        }
    }
    if points.is_empty() {
        return (None, None);
    }
    let max_dev = points.iter().map(|(_, r, _)| (r - 1.0).abs()).fold(0.0, f64::max);
    // Earliest point from which the later ones are within tolerance, allowing a few stray points
    // (OFF_FRACTION of them) so one noisy point near the end does not decide a verdict. The
    // last point itself must hold.
    let mut from = None;
    let (mut seen, mut off) = (0usize, 0usize);
    for (i, (s, r, se)) in points.iter().enumerate().rev() {
        seen += 1;
        if (r - 1.0).abs() - 2.0 * se > tol {
            off += 1;
            if i == points.len() - 1 {
                break;
            }
        }
        if off as f64 <= OFF_FRACTION * seen as f64 {
            from = Some(*s);
        }
    }
    // A curve within tolerance from its first point holds from the start.
    let first = points[0].0;
    (Some(max_dev), from.map(|s| if s == first { 0.0 } else { s / budget }))
}

fn class_report(
    rule: &str,
    base: &Params,
    kappas: &[(u64, Params, Vec<TrialId>)],
    results: &HashMap<TrialId, TrialResult>,
    tol: f64,
    budget: f64,
) -> ClassReport {
    let aggs: Vec<Aggregate> = kappas.iter().map(|(_, _, ids)| aggregate(ids, results)).collect();
    let b = &aggs[0];
    let mut reports = Vec::new();
    for ((kappa, params, _), a) in kappas.iter().zip(&aggs) {
        let plateau_ratio = match (a.stationary, b.stationary) {
            (Some(x), Some(y)) if *kappa != 1 => Some(ratio(x, y)),
            _ => None,
        };
        let plateau_unsettled = plateau_ratio.is_some() && (a.settled == Some(false) || b.settled == Some(false));
        let (max_deviation, holds_from) =
            if *kappa == 1 { (None, None) } else { compare_curves(&b.curve, &a.curve, tol, budget) };
        reports.push(KappaReport {
            kappa: *kappa,
            params: params.clone(),
            stationary: a.stationary,
            settled: a.settled,
            plateau_ratio,
            plateau_unsettled,
            plateau_ci95: plateau_ratio.map(|r| [r.mean - 1.96 * r.se, r.mean + 1.96 * r.se]),
            theory: a.theory,
            holds_from_samples: holds_from.map(|f| {
                if f > 0.0 { f * budget } else { a.curve.iter().map(|p| p[0]).find(|s| *s > 0.0).unwrap_or(0.0) }
            }),
            theory_ratio: match (a.theory, b.theory) {
                (Some(x), Some(y)) if *kappa != 1 && y != 0.0 => Some(x / y),
                _ => None,
            },
            max_deviation,
            holds_from,
            curve: a.curve.clone(),
        });
    }
    let (verdict, note) = if aggs.iter().any(|a| a.failed) {
        (None, Some("some trials failed: no verdict (kappa status shows why)".to_string()))
    } else if b.diverged {
        (None, Some("the base point diverged: nothing to compare with".to_string()))
    } else if aggs.iter().any(|a| a.diverged) {
        (Some(Verdict::Fails), Some("a scaled trial diverged".to_string()))
    } else if aggs.iter().any(|a| !a.complete) {
        let missing = aggs.iter().filter(|a| !a.complete).count();
        (None, Some(format!("{missing} of {} κ values still have unfinished trials", aggs.len())))
    } else {
        let scaled = &reports[1..];
        // Only plateaus of settled losses are evidence either way.
        let plateau_ok = scaled.iter().all(|k| k.plateau_unsettled || plateau_within(k, tol));
        let latest = scaled.iter().map(|k| k.holds_from.unwrap_or(f64::INFINITY)).fold(0.0, f64::max);
        let v = if !plateau_ok || latest > HOLDS_LATE_BY {
            Verdict::Fails
        } else if latest > HOLDS_FROM {
            Verdict::HoldsLate
        } else {
            Verdict::Holds
        };
        let unsettled: Vec<String> =
            scaled.iter().filter(|k| k.plateau_unsettled).map(|k| k.kappa.to_string()).collect();
        match v {
            Verdict::Fails if !plateau_ok => {
                (Some(v), Some("a plateau ratio is off by more than the tolerance".to_string()))
            }
            Verdict::Fails => (Some(v), Some("the curves never settle within tolerance".to_string())),
            // The curves hold, but a plateau would decide it and cannot: no verdict.
            _ if !unsettled.is_empty() => (
                None,
                Some(format!(
                    "undecided: the plateau ratio at κ = {} rests on trials whose loss had not settled during the \
                     averaging window (raise samples or burn_in)",
                    unsettled.join(", ")
                )),
            ),
            Verdict::HoldsLate => (Some(v), Some(format!("holds after {:.0}% of training", latest * 100.0))),
            Verdict::Holds => (Some(v), Some("within tolerance over the run".to_string())),
        }
    };
    // Every trial finished: where it holds up to is known even when an unsettled plateau leaves
    // the verdict open.
    let finished = aggs.iter().all(|a| a.complete && !a.failed && !a.diverged);
    let decided = verdict.is_some() || (finished && reports.iter().skip(1).any(|k| k.plateau_unsettled));
    // Where it breaks: the largest κ up to which every κ holds on its own.
    // A κ whose plateau rests on unsettled trials does not count as holding.
    let holds_up_to = decided.then(|| {
        let mut by_kappa: Vec<&KappaReport> = reports.iter().collect();
        by_kappa.sort_by_key(|k| k.kappa);
        let mut up = (by_kappa[0].kappa, by_kappa[0].params.hyper.batch_size);
        for k in &by_kappa[1..] {
            let plateau = !k.plateau_unsettled && plateau_within(k, tol);
            if !(plateau && k.holds_from.is_some_and(|f| f <= HOLDS_LATE_BY)) {
                break;
            }
            up = (k.kappa, k.params.hyper.batch_size);
        }
        up
    });
    ClassReport {
        rule: rule.to_string(),
        base: base.clone(),
        seeds: kappas[0].2.len(),
        verdict,
        note,
        kappas: reports,
        holds_up_to,
    }
}

/// Whether a κ's plateau ratio (if it has one) is within tolerance of 1, allowing 2 SE.
fn plateau_within(k: &KappaReport, tol: f64) -> bool {
    k.plateau_ratio.is_none_or(|r| (r.mean - 1.0).abs() - 2.0 * r.se <= tol)
}

fn rule_report(rule: &kappa_core::ScalingRule, classes: &[ClassReport]) -> RuleReport {
    let mine: Vec<&ClassReport> = classes.iter().filter(|c| c.rule == rule.name).collect();
    let mut counts = [0usize; 4];
    for c in &mine {
        counts[match c.verdict {
            Some(Verdict::Holds) => 0,
            Some(Verdict::HoldsLate) => 1,
            Some(Verdict::Fails) => 2,
            None => 3,
        }] += 1;
    }
    let verdict = if counts[3] > 0 || mine.is_empty() {
        None
    } else if counts[2] > 0 {
        Some(Verdict::Fails)
    } else if counts[1] > 0 {
        Some(Verdict::HoldsLate)
    } else {
        Some(Verdict::Holds)
    };
    let scaled = || mine.iter().flat_map(|c| c.kappas.iter().skip(1));
    let worst_plateau_ratio = scaled()
        .filter(|k| !k.plateau_unsettled)
        .filter_map(|k| k.plateau_ratio.map(|r| r.mean))
        .max_by(|a, b| (a - 1.0).abs().total_cmp(&(b - 1.0).abs()));
    let max_deviation = scaled().filter_map(|k| k.max_deviation).max_by(f64::total_cmp);
    let holds_from = mine
        .iter()
        .filter(|c| matches!(c.verdict, Some(Verdict::Holds | Verdict::HoldsLate)))
        .flat_map(|c| c.kappas.iter().skip(1).filter_map(|k| k.holds_from))
        .max_by(f64::total_cmp);
    let decided = !mine.is_empty() && mine.iter().all(|c| c.holds_up_to.is_some());
    let holds_up_to_kappa = mine.iter().filter_map(|c| c.holds_up_to.map(|h| h.0)).min().filter(|_| decided);
    let holds_up_to_batch = mine.iter().filter_map(|c| c.holds_up_to.map(|h| h.1)).min().filter(|_| decided);
    let unsettled_classes =
        mine.iter().filter(|c| c.verdict.is_none() && c.kappas.iter().any(|k| k.plateau_unsettled)).count();
    RuleReport {
        name: rule.name.clone(),
        unsettled_classes,
        holds_up_to_kappa,
        holds_up_to_batch,
        exponents: [rule.lr, rule.one_minus_beta, rule.eps, rule.weight_decay],
        expect: rule.expect,
        verdict,
        classes: counts,
        holds_from,
        worst_plateau_ratio,
        max_deviation,
    }
}

/// Least-squares slope of log y on log x.
pub fn log_log_slope(points: &[(f64, f64)]) -> Option<f64> {
    let pts: Vec<(f64, f64)> =
        points.iter().filter(|(x, y)| *x > 0.0 && *y > 0.0).map(|(x, y)| (x.ln(), y.ln())).collect();
    analysis::linear_fit(&pts).map(|(_, slope)| slope)
}

fn noise_slopes(sweep: &Sweep, plan: &Plan<'_>, results: &HashMap<TrialId, TrialResult>) -> Vec<SlopeFit> {
    // Base points only (κ = 1), grouped by everything but the noise level (batch size, σ) and
    // the seed; each point's noise is the trial's own σ_B = σ₁/√B, so a σ axis and a batch
    // axis both feed a fit.
    let sigma1 = |task: &kappa_core::TaskSpec| {
        task.sim().map(|sim| match sim.noise.sigma() {
            kappa_core::task::Sigma::Scalar(s) => *s,
            kappa_core::task::Sigma::PerCoordinate(v) => {
                v.iter().map(|s| s * s).sum::<f64>().sqrt() / (v.len() as f64).sqrt()
            }
        })
    };
    // label → noise points, each ((σ₁ bits, B), σ_B, trials).
    type NoisePoint = ((u64, u64), f64, Vec<TrialId>);
    let mut groups: Vec<(String, Vec<NoisePoint>)> = Vec::new();
    for t in plan.base_trials() {
        let Some(s1) = sigma1(&sweep.variants[t.task].task) else { continue };
        let mut key = t.params.clone();
        key.named.remove("task.noise.sigma");
        let h = &key.hyper;
        let mut label = format!(
            "{} lr={} beta1={} beta2={} eps={} wd={}",
            h.optimizer, h.lr, h.beta1, h.beta2, h.eps, h.weight_decay
        );
        for (name, v) in &key.named {
            label.push_str(&format!(" {name}={}", kappa_core::display_value(v)));
        }
        let slot = match groups.iter().position(|(l, _)| *l == label) {
            Some(i) => i,
            None => {
                groups.push((label, Vec::new()));
                groups.len() - 1
            }
        };
        let b = t.params.hyper.batch_size;
        let point = (s1.to_bits(), b);
        let sigma_b = s1 / (b as f64).sqrt();
        match groups[slot].1.iter_mut().find(|(p, _, _)| *p == point) {
            Some(entry) => entry.2.push(t.id),
            None => groups[slot].1.push((point, sigma_b, vec![t.id])),
        }
    }
    groups
        .into_iter()
        .filter(|(_, points)| points.len() >= 2)
        .filter_map(|(label, mut by_noise)| {
            by_noise.sort_by(|a, b| a.1.total_cmp(&b.1));
            let mut points = Vec::new();
            for (_, sigma_b, ids) in &by_noise {
                let a = aggregate(ids, results);
                if let Some(st) = a.stationary {
                    points.push([*sigma_b, st.mean, a.theory.unwrap_or(f64::NAN)]);
                }
            }
            let slope = log_log_slope(&points.iter().map(|p| (p[0], p[1])).collect::<Vec<_>>())?;
            let theory_slope = if points.iter().all(|p| p[2].is_finite()) {
                log_log_slope(&points.iter().map(|p| (p[0], p[2])).collect::<Vec<_>>())
            } else {
                None
            };
            Some(SlopeFit { label, points, slope, theory_slope })
        })
        .collect()
}

/// Whether every rule's verdict matches what the sweep expects (`kappa report --check`); the
/// messages say what does not.
pub fn check(report: &Report) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    for r in &report.rules {
        let Some(expect) = r.expect else { continue };
        match r.verdict {
            None if r.unsettled_classes > 0 => problems.push(format!(
                "rule `{}`: no verdict: {} of its classes rest on plateaus of trials whose loss had not settled \
                 (kappa status lists them; raise samples or burn_in)",
                r.name, r.unsettled_classes
            )),
            None => problems.push(format!("rule `{}`: no verdict yet ({} trials missing)", r.name, report.missing)),
            Some(v) if v != expect => {
                problems.push(format!("rule `{}` {} but the sweep expects it {}", r.name, v.as_str(), expect.as_str()))
            }
            Some(_) => {}
        }
    }
    if let Some([lo, hi]) = report.expect_exponent {
        if report.lr_scaling.is_empty() {
            problems.push("expect_exponent: no group has two batch sizes with two learning rates each".into());
        }
        for l in &report.lr_scaling {
            match l.exponent {
                Some(a) if (lo..=hi).contains(&a) => {}
                Some(a) => problems.push(format!("{}: learning-rate exponent {a:.3} is outside [{lo}, {hi}]", l.group)),
                None => problems.push(format!(
                    "{}: no learning-rate exponent ({})",
                    l.group,
                    l.note.as_deref().unwrap_or("?")
                )),
            }
        }
    }
    if let Some([lo, hi]) = report.expect_b_crit {
        if report.critical_batch.is_empty() {
            problems.push("expect_b_crit: no group has two batch sizes with two learning rates each".into());
        }
        for c in &report.critical_batch {
            match c.b_crit {
                Some(b) if (lo..=hi).contains(&b) => {}
                Some(b) => problems.push(format!("{}: critical batch size {b:.1} is outside [{lo}, {hi}]", c.group)),
                None => {
                    problems.push(format!("{}: no critical batch size ({})", c.group, c.note.as_deref().unwrap_or("?")))
                }
            }
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(f: impl Fn(f64) -> f64) -> Vec<[f64; 3]> {
        (0..=100).map(|i| i as f64 * 100.0).map(|s| [s, f(s), 1e-5]).collect()
    }

    #[test]
    fn identical_curves_hold_from_the_start() {
        let base = curve(|s| 1.0 + (-s / 1000.0).exp());
        let (dev, from) = compare_curves(&base, &base, 0.05, 10_000.0);
        assert_eq!(dev, Some(0.0));
        assert_eq!(from, Some(0.0));
    }

    #[test]
    fn a_transient_gap_holds_late() {
        let base = curve(|s| 0.1 + (-s / 1000.0).exp());
        // The scaled run lags early (slower decay), then meets the same plateau.
        let scaled = curve(|s| 0.1 + (-s / 1500.0).exp());
        let (dev, from) = compare_curves(&base, &scaled, 0.05, 10_000.0);
        assert!(dev.unwrap() > 0.5);
        let from = from.unwrap();
        assert!(from > HOLDS_FROM && from < HOLDS_LATE_BY, "{from}");
    }

    #[test]
    fn a_different_plateau_never_holds() {
        let base = curve(|s| 0.1 + (-s / 1000.0).exp());
        let scaled = curve(|s| 0.124 + (-s / 1000.0).exp());
        let (dev, from) = compare_curves(&base, &scaled, 0.05, 10_000.0);
        assert!((dev.unwrap() - 0.24).abs() < 1e-3, "{dev:?}");
        assert_eq!(from, None);
    }

    #[test]
    fn one_stray_point_does_not_decide_but_the_last_point_must_hold() {
        let base: Vec<[f64; 3]> = (0..=100).map(|i| [i as f64, 1.0, 1e-4]).collect();
        let mut scaled = base.clone();
        scaled[70][1] = 1.2;
        assert_eq!(compare_curves(&base, &scaled, 0.05, 100.0).1, Some(0.0));
        scaled[100][1] = 1.2;
        assert_eq!(compare_curves(&base, &scaled, 0.05, 100.0).1, None);
    }

    #[test]
    fn noise_within_two_se_is_not_a_deviation() {
        let base: Vec<[f64; 3]> = (0..=10).map(|i| [i as f64, 1.0, 0.05]).collect();
        let scaled: Vec<[f64; 3]> = (0..=10).map(|i| [i as f64, 1.1, 0.05]).collect();
        // 10% apart, but each point's SE is 5%: the ratio's SE is about 7.4%, so 10% - 2 SE < 5%.
        let (_, from) = compare_curves(&base, &scaled, 0.05, 10.0);
        assert_eq!(from, Some(0.0));
    }

    #[test]
    fn overlays_match_settings_across_sweeps() {
        use kappa_core::{CurvePoint, Hyperparams, OptimizerKind, TrialMetrics};
        let params = |lr: f64, seed: u64| {
            Params::from(Hyperparams {
                optimizer: OptimizerKind::Adam,
                batch_size: 1,
                lr,
                beta1: 0.9,
                beta2: 0.99,
                eps: 1e-8,
                weight_decay: 0.0,
                seed,
            })
        };
        let result = |params: Params, loss: f64| TrialResult {
            id: TrialId(0),
            params,
            status: TrialStatus::Succeeded,
            error: None,
            metrics: Some(TrialMetrics {
                curve: vec![CurvePoint {
                    samples: 10,
                    step: 10,
                    loss_mean: loss,
                    loss_se: 0.0,
                    loss_q10: loss,
                    loss_q50: loss,
                    loss_q90: loss,
                    phases: None,
                    extra: Default::default(),
                }],
                stationary_loss: Some(Estimate { mean: loss, se: 0.0 }),
                ..TrialMetrics::default()
            }),
        };
        let optimizer = (
            "opt".to_string(),
            vec![result(params(0.1, 0), 1.0), result(params(0.1, 1), 3.0), result(params(0.2, 0), 5.0)],
        );
        let sde = ("sde".to_string(), vec![result(params(0.1, 0), 2.0)]);
        let o = overlays(&[optimizer, sde]);
        assert_eq!(o.len(), 1, "lr = 0.2 has no partner");
        assert_eq!(o[0].params.hyper.lr, 0.1);
        assert_eq!(o[0].series.len(), 2);
        assert_eq!(o[0].series[0].1[0][1], 2.0, "seeds averaged");
        assert_eq!(o[0].series[1].0, "sde");
    }

    #[test]
    fn slopes() {
        let pts: Vec<(f64, f64)> = [1.0, 0.5, 0.25].iter().map(|&s: &f64| (s, 3.0 * s * s)).collect();
        assert!((log_log_slope(&pts).unwrap() - 2.0).abs() < 1e-12);
        assert_eq!(log_log_slope(&pts[..1]), None);
    }
}

//! Equivalence classes and their verdicts: every base grid point without its seed, under every
//! rule, is one class; each κ > 1 is compared with κ = 1 (plateau ratio, curve deviation, where
//! the curve holds from), each class gets a verdict, and each rule the worst of its classes'.
//! The crate docs state the rules.

use crate::aggregate::{Aggregate, SettleHint, aggregate, interpolate, key_without_seed};
use crate::trials::Trials;
use kappa_core::{Estimate, Params, Sweep, TrialId, TrialResult, Verdict};
use serde::Serialize;
use std::collections::HashMap;

/// A curve still counts as holding if it is within tolerance from this fraction of the budget on.
pub const HOLDS_FROM: f64 = 0.1;
/// Beyond this fraction, a curve that only then comes within tolerance fails.
pub const HOLDS_LATE_BY: f64 = 0.9;
/// Share of points after "holds from" that may still stray beyond tolerance + 2 SE (noise).
pub const OFF_FRACTION: f64 = 0.05;

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
    /// The plateau ratio furthest from 1 over classes and κ, settled or not, with its interval:
    /// what the table shows (marked when it rests on unsettled trials).
    pub plateau: Option<PlateauRatio>,
    /// Largest curve deviation over classes and κ, over the whole curve.
    pub max_deviation: Option<f64>,
    /// Largest [`KappaReport::deviation`] over classes and κ: the deviation the verdict judges.
    pub deviation: Option<f64>,
    /// What would settle the trials its undecided classes rest on.
    pub settle: SettleHint,
    /// The largest κ up to which it holds in every class (every κ up to it within tolerance;
    /// `None` while classes are undecided).
    pub holds_up_to_kappa: Option<u64>,
    /// The smallest batch size at which a class stops holding: the batch at its largest holding κ.
    pub holds_up_to_batch: Option<u64>,
    /// Classes left undecided because a plateau ratio rests on trials whose loss had not settled.
    pub unsettled_classes: usize,
}

/// A plateau ratio as the table shows it.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct PlateauRatio {
    /// Stationary loss at κ ÷ at κ = 1, seeds pooled.
    pub ratio: f64,
    /// Its 95% interval.
    pub ci95: [f64; 2],
    /// The κ it was measured at.
    pub kappa: u64,
    /// It rests on a trial whose loss had not settled: no verdict rests on it.
    pub unsettled: bool,
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
    /// What would settle the trials an undecided verdict rests on.
    pub settle: SettleHint,
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
    /// The deviation the verdict judges: the smallest tolerance at which the curve would hold
    /// from [`HOLDS_FROM`] of the budget on (|L_κ(s)/L_1(s) − 1| less 2 SE, with up to
    /// [`OFF_FRACTION`] of the later points set aside as noise, never the last). Within the
    /// tolerance exactly when the curve holds (plateau aside).
    pub deviation: Option<f64>,
    /// Earliest fraction of the budget from which the curve stays within tolerance.
    pub holds_from: Option<f64>,
    /// The same point in samples seen (the first point of the curve when it holds from the start).
    pub holds_from_samples: Option<f64>,
    /// Seed-averaged curve: (samples, mean loss, SE).
    pub curve: Vec<[f64; 3]>,
    /// The theory's curve (samples, expected loss), where it has one (THEORY.md §4, §7, §8).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub theory_curve: Vec<[f64; 2]>,
}

/// Per κ: the multiplier, the parameters at that κ, and the trial of every seed.
type KappaMembers = Vec<(u64, Params, Vec<TrialId>)>;

/// A class's budget: its samples (none for commands) and the burn-in of its stationary loss.
#[derive(Clone, Copy, Debug)]
struct Budget {
    samples: Option<u64>,
    burn_in: f64,
}

/// The classes of `sweep` (none without `[scaling]`), in plan order, judged at tolerance `tol`.
pub(crate) fn classes(
    sweep: &Sweep,
    trials: &Trials<'_>,
    results: &HashMap<TrialId, TrialResult>,
    tol: f64,
) -> Vec<ClassReport> {
    let Some(scaling) = &sweep.scaling else { return Vec::new() };
    // (base key, rule) → κ → trial ids over seeds, in plan order.
    let mut order: Vec<(String, usize)> = Vec::new();
    let mut members: HashMap<(String, usize), (Params, KappaMembers, Budget)> = HashMap::new();
    // A grid point that repeats an earlier one (a task axis left out) adds no replicate.
    for base in trials.base_trials() {
        let key = key_without_seed(&base.params);
        // "Holds from" is a fraction of the class's own sample budget.
        let task = &sweep.variants[base.task].task;
        let budget = Budget { samples: task.samples(), burn_in: task.burn_in().unwrap_or(0.5) };
        let variants = trials.variants(&base);
        for (r, _) in scaling.rules.iter().enumerate() {
            // A search's probe that is not its group's best has no variants: no class.
            if !variants.iter().any(|t| t.variant.is_some_and(|(rule, _)| rule == r)) {
                continue;
            }
            let entry = members.entry((key.clone(), r)).or_insert_with(|| {
                order.push((key.clone(), r));
                let kappas = scaling.kappas.iter().map(|&k| (k, base.params.clone(), Vec::new())).collect();
                (base.params.clone(), kappas, budget)
            });
            entry.1[0].2.push(base.id);
            for t in &variants {
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
            class_report(&scaling.rules[key.1].name, base, kappas, results, tol, budget)
        })
        .collect()
}

fn ratio(a: Estimate, b: Estimate) -> Estimate {
    let r = a.mean / b.mean;
    Estimate { mean: r, se: r.abs() * ((a.se / a.mean).powi(2) + (b.se / b.mean).powi(2)).sqrt() }
}

/// A scaled curve against its base curve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CurveComparison {
    /// Largest |L_κ(s)/L_1(s) − 1| over the aligned points.
    pub max_deviation: f64,
    /// The deviation the verdict judges ([`KappaReport::deviation`]): the smallest tolerance at
    /// which the curve would hold from [`HOLDS_FROM`] of the budget on.
    pub deviation: f64,
    /// The fraction of the budget from which the curve holds (0 from the start), if it does.
    pub holds_from: Option<f64>,
}

/// The aligned points of a scaled curve: (samples, L_κ/L_1, its SE), at the base curve's points.
type Aligned = Vec<(f64, f64, f64)>;

/// The fraction of the budget from which the aligned points hold at tolerance `tol` (0: from
/// the first point), if they do: the earliest point from which the later ones are within
/// tolerance, allowing a few stray points (OFF_FRACTION of them) so one noisy point near the end
/// does not decide a verdict. The last point itself must hold.
fn holds_from(points: &Aligned, tol: f64, budget: f64) -> Option<f64> {
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
    let first = points.first()?.0;
    from.map(|s| if s == first { 0.0 } else { s / budget })
}

/// Compares a scaled curve with the base curve (`None` without a point in common).
pub fn compare_curves(base: &[[f64; 3]], scaled: &[[f64; 3]], tol: f64, budget: f64) -> Option<CurveComparison> {
    let mut points: Aligned = Vec::new();
    for p in base.iter().filter(|p| p[0] > 0.0) {
        if let Some((l, se)) = interpolate(scaled, p[0]) {
            let r = l / p[1];
            let se_r = r.abs() * ((se / l).powi(2) + (p[2] / p[1]).powi(2)).sqrt();
            points.push((p[0], r, se_r));
        }
    }
    if points.is_empty() {
        return None;
    }
    let max_deviation = points.iter().map(|(_, r, _)| (r - 1.0).abs()).fold(0.0, f64::max);
    // The smallest tolerance at which it holds from HOLDS_FROM on: holding only gets easier as
    // the tolerance grows, so a bisection over the points' own deviations (beyond 2 SE) finds it.
    let mut candidates: Vec<f64> = points.iter().map(|(_, r, se)| ((r - 1.0).abs() - 2.0 * se).max(0.0)).collect();
    candidates.push(0.0);
    candidates.sort_by(f64::total_cmp);
    let holds = |t: f64| holds_from(&points, t, budget).is_some_and(|f| f <= HOLDS_FROM);
    let i = candidates.partition_point(|t| !holds(*t));
    let deviation = candidates.get(i).copied().unwrap_or(max_deviation);
    Some(CurveComparison { max_deviation, deviation, holds_from: holds_from(&points, tol, budget) })
}

fn class_report(
    rule: &str,
    base: &Params,
    kappas: &[(u64, Params, Vec<TrialId>)],
    results: &HashMap<TrialId, TrialResult>,
    tol: f64,
    class_budget: &Budget,
) -> ClassReport {
    let budget = class_budget.samples.map_or(1.0, |s| s as f64);
    let aggs: Vec<Aggregate> = kappas.iter().map(|(_, _, ids)| aggregate(ids, results)).collect();
    let b = &aggs[0];
    let mut reports = Vec::new();
    for ((kappa, params, _), a) in kappas.iter().zip(&aggs) {
        let plateau_ratio = match (a.stationary, b.stationary) {
            (Some(x), Some(y)) if *kappa != 1 => Some(ratio(x, y)),
            _ => None,
        };
        let plateau_unsettled = plateau_ratio.is_some() && (a.settled == Some(false) || b.settled == Some(false));
        let compared = if *kappa == 1 { None } else { compare_curves(&b.curve, &a.curve, tol, budget) };
        let holds_from = compared.and_then(|c| c.holds_from);
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
            max_deviation: compared.map(|c| c.max_deviation),
            deviation: compared.map(|c| c.deviation),
            holds_from,
            curve: a.curve.clone(),
            theory_curve: a.theory_curve.clone(),
        });
    }
    let mut settle = SettleHint::default();
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
            _ if !unsettled.is_empty() => {
                settle = kappas
                    .iter()
                    .zip(&reports)
                    .filter(|(_, k)| k.kappa == 1 || k.plateau_unsettled)
                    .map(|((_, _, ids), _)| SettleHint::of(ids, results, class_budget.burn_in))
                    .fold(SettleHint::default(), SettleHint::merge);
                (
                    None,
                    Some(format!(
                        "undecided: the plateau ratio at κ = {} rests on trials whose loss had not settled during \
                         the averaging window: {}",
                        unsettled.join(", "),
                        settle.advice(class_budget.samples)
                    )),
                )
            }
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
        settle,
    }
}

/// Whether a κ's plateau ratio (if it has one) is within tolerance of 1, allowing 2 SE.
fn plateau_within(k: &KappaReport, tol: f64) -> bool {
    k.plateau_ratio.is_none_or(|r| (r.mean - 1.0).abs() - 2.0 * r.se <= tol)
}

/// A rule's verdict, the worst of its classes', and the numbers behind it.
pub(crate) fn rule_report(rule: &kappa_core::ScalingRule, classes: &[ClassReport]) -> RuleReport {
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
    let plateau = scaled()
        .filter_map(|k| {
            let r = k.plateau_ratio?;
            Some(PlateauRatio { ratio: r.mean, ci95: k.plateau_ci95?, kappa: k.kappa, unsettled: k.plateau_unsettled })
        })
        .max_by(|a, b| (a.ratio - 1.0).abs().total_cmp(&(b.ratio - 1.0).abs()));
    let max_deviation = scaled().filter_map(|k| k.max_deviation).max_by(f64::total_cmp);
    let deviation = scaled().filter_map(|k| k.deviation).max_by(f64::total_cmp);
    let settle = mine.iter().map(|c| c.settle).fold(SettleHint::default(), SettleHint::merge);
    let holds_from = mine
        .iter()
        .filter(|c| matches!(c.verdict, Some(Verdict::Holds | Verdict::HoldsLate)))
        .flat_map(|c| c.kappas.iter().skip(1).filter_map(|k| k.holds_from))
        .max_by(f64::total_cmp);
    let decided = !mine.is_empty() && mine.iter().all(|c| c.holds_up_to.is_some());
    let holds_up_to_kappa = mine.iter().filter_map(|c| c.holds_up_to.map(|h| h.0)).min().filter(|_| decided);
    let holds_up_to_batch = mine.iter().filter_map(|c| c.holds_up_to.map(|h| h.1)).min().filter(|_| decided);
    // Undecided because of unsettled plateaus alone (not missing or failed trials).
    let unsettled_classes = mine.iter().filter(|c| c.verdict.is_none() && c.settle.trials > 0).count();
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
        plateau,
        max_deviation,
        deviation,
        settle,
    }
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
        let c = compare_curves(&base, &base, 0.05, 10_000.0).unwrap();
        assert_eq!((c.max_deviation, c.deviation, c.holds_from), (0.0, 0.0, Some(0.0)));
    }

    #[test]
    fn a_transient_gap_holds_late() {
        let base = curve(|s| 0.1 + (-s / 1000.0).exp());
        // The scaled run lags early (slower decay), then meets the same plateau.
        let scaled = curve(|s| 0.1 + (-s / 1500.0).exp());
        let c = compare_curves(&base, &scaled, 0.05, 10_000.0).unwrap();
        assert!(c.max_deviation > 0.5);
        let from = c.holds_from.unwrap();
        assert!(from > HOLDS_FROM && from < HOLDS_LATE_BY, "{from}");
        // The deviation judged (the tolerance it would need to hold from 10% on) is beyond the
        // tolerance: it holds late. At that tolerance it holds from 10% on, just below it not.
        assert!(c.deviation > 0.05, "{c:?}");
        let at = |t: f64| compare_curves(&base, &scaled, t, 10_000.0).unwrap().holds_from.unwrap();
        assert!(at(c.deviation) <= HOLDS_FROM && at(c.deviation * 0.99) > HOLDS_FROM, "{c:?}");
    }

    #[test]
    fn a_different_plateau_never_holds() {
        let base = curve(|s| 0.1 + (-s / 1000.0).exp());
        let scaled = curve(|s| 0.124 + (-s / 1000.0).exp());
        let c = compare_curves(&base, &scaled, 0.05, 10_000.0).unwrap();
        assert!((c.max_deviation - 0.24).abs() < 1e-3, "{c:?}");
        assert_eq!(c.holds_from, None);
    }

    #[test]
    fn one_stray_point_does_not_decide_but_the_last_point_must_hold() {
        let base: Vec<[f64; 3]> = (0..=100).map(|i| [i as f64, 1.0, 1e-4]).collect();
        let mut scaled = base.clone();
        scaled[70][1] = 1.2;
        let c = compare_curves(&base, &scaled, 0.05, 100.0).unwrap();
        assert_eq!(c.holds_from, Some(0.0));
        // The stray point is set aside in the judged deviation too: it holds, and the deviation
        // says so (within the tolerance), though the largest one is 20%.
        assert!((c.max_deviation - 0.2).abs() < 1e-9 && c.deviation <= 0.05, "{c:?}");
        scaled[100][1] = 1.2;
        assert_eq!(compare_curves(&base, &scaled, 0.05, 100.0).unwrap().holds_from, None);
    }

    #[test]
    fn noise_within_two_se_is_not_a_deviation() {
        let base: Vec<[f64; 3]> = (0..=10).map(|i| [i as f64, 1.0, 0.05]).collect();
        let scaled: Vec<[f64; 3]> = (0..=10).map(|i| [i as f64, 1.1, 0.05]).collect();
        // 10% apart, but each point's SE is 5%: the ratio's SE is about 7.4%, so 10% - 2 SE < 5%.
        let c = compare_curves(&base, &scaled, 0.05, 10.0).unwrap();
        assert_eq!(c.holds_from, Some(0.0));
        assert_eq!(c.deviation, 0.0);
    }
}

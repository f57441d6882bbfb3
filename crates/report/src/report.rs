//! The report: what [`build`] makes of a sweep's plan and its results, by putting together the
//! classes and their rules' verdicts, the noise slopes, SDE tracking and the analysis.

use crate::analysis::{self, CriticalBatch, LrScaling};
use crate::classes::{ClassReport, HOLDS_FROM, OFF_FRACTION, RuleReport, classes, rule_report};
use crate::noise::{SlopeFit, noise_slopes};
use crate::overlay::Overlay;
use crate::search::{SearchReport, search_report};
use crate::tracking::{self, Tracking};
use crate::trials::Trials;
use kappa_core::{Plan, Sweep, TrialId, TrialResult};
use serde::Serialize;
use std::collections::HashMap;

/// The whole report (also written as summary.json).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Sweep name.
    pub sweep: String,
    /// Distinct trials in the plan.
    pub trials: u64,
    /// Trials that finished (succeeded, diverged, or stopped at a rung of successive halving).
    pub finished: u64,
    /// Trials not finished yet, or failed (their classes have no verdict).
    pub missing: u64,
    /// Of the succeeded trials, those that did not train ([`kappa_core::Health`]).
    pub did_not_train: u64,
    /// Of the succeeded trials, those whose loss exploded short of overflowing.
    pub unstable: u64,
    /// Tolerance used for verdicts.
    pub tolerance: f64,
    /// The sweep's sample budget per trial (`[task] samples`), for the kinds that have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples: Option<u64>,
    /// One entry per rule.
    pub rules: Vec<RuleReport>,
    /// Under the rules' table: what its columns measure, and why each undecided rule is.
    pub rule_notes: Vec<String>,
    /// One entry per (base point, rule).
    pub classes: Vec<ClassReport>,
    /// Stationary loss against the minibatch noise σ_B = σ₁/√B, per optimizer setting.
    pub noise_slopes: Vec<SlopeFit>,
    /// Each discrete optimizer against the SDEs of the same setting, when the sweep has a
    /// `task.kind` axis.
    pub tracking: Vec<Tracking>,
    /// Each setting across the values of each task axis (other than `task.kind` and
    /// `task.sde_model`), against its first value.
    pub contrasts: Vec<crate::Contrast>,
    /// The same parameters run several ways: an optimizer and its SDEs in one sweep (tracking),
    /// or the same setting across sweeps (`kappa report --overlay`).
    pub overlays: Vec<Overlay>,
    /// The best learning rate per batch size and its exponent, per group (`analysis`).
    pub lr_scaling: Vec<LrScaling>,
    /// Steps and samples to `[analysis] target_loss` and the critical batch size, per group.
    pub critical_batch: Vec<CriticalBatch>,
    /// A search's groups: probes, optimum, bracket, start, rounds (`None`: a grid sweep).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<SearchReport>,
    /// Successive halving's groups: how far each setting went (`None`: no halving).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub halving: Option<crate::halving::HalvingReport>,
    /// `[analysis] expect_exponent`, checked by `--check`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect_exponent: Option<[f64; 2]>,
    /// `[analysis] expect_b_crit`, checked by `--check`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect_b_crit: Option<[f64; 2]>,
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
    let mut health = kappa_core::Counts::default();
    let mut seen = std::collections::HashSet::new();
    let list = Trials::new(plan, results);
    for t in list.trials() {
        if seen.insert(t.id) {
            trials += 1;
            let result = results.get(&t.id);
            if result.is_some_and(|r| r.status.has_result()) {
                finished += 1;
            }
            if let Some(h) = result.and_then(TrialResult::health) {
                health.add_health(h, 1);
            }
        }
    }
    let tolerance = sweep.scaling.as_ref().map_or(kappa_core::Scaling::DEFAULT_TOLERANCE, |s| s.tolerance);
    let classes = classes(sweep, &list, results, tolerance);
    let rules =
        sweep.scaling.as_ref().map(|s| s.rules.iter().map(|r| rule_report(r, &classes)).collect()).unwrap_or_default();
    let (tracking, overlays) = tracking::tracking(sweep, &list, results);
    let (lr_scaling, critical_batch) = analysis::analyse(sweep, &list, results);
    let mut report = Report {
        sweep: sweep.name.clone(),
        trials,
        finished,
        missing: trials - finished,
        did_not_train: health.did_not_train,
        unstable: health.unstable,
        tolerance,
        samples: sweep.task.samples(),
        rules,
        rule_notes: Vec::new(),
        classes,
        noise_slopes: noise_slopes(sweep, &list, results),
        tracking,
        contrasts: crate::contrast::contrasts(sweep, &list, results),
        overlays,
        lr_scaling,
        critical_batch,
        search: search_report(sweep, plan, &list, results),
        halving: crate::halving::halving_report(sweep, plan, results),
        expect_exponent: sweep.analysis.expect_exponent,
        expect_b_crit: sweep.analysis.expect_b_crit,
    };
    if !report.rules.is_empty() {
        report.rule_notes = rule_footnotes(&report).into_iter().chain(undecided_lines(&report)).collect();
    }
    report
}
/// What the rules' table's columns measure, one line each.
fn rule_footnotes(r: &Report) -> Vec<String> {
    let unsettled = r.rules.iter().any(|x| x.plateau.is_some_and(|p| p.unsettled));
    vec![
        format!(
            "plateau ratio: stationary loss at κ over κ = 1's (seeds pooled), the one furthest from 1, with its 95% \
             interval{}",
            if unsettled {
                "; ~: it rests on trials whose loss had not settled, so no verdict rests on it"
            } else {
                ""
            }
        ),
        format!(
            "deviation: the smallest tolerance at which the curves would hold from {:.0}% of the budget on \
             (|L_κ(s)/L_1(s) − 1| less 2 SE at equal samples seen s, up to {:.0}% of the later points set aside as \
             noise, never the last); `holds` needs it and the plateau ratio within the tolerance ({:.0}%), `holds \
             late` only from later on (`holds from`)",
            HOLDS_FROM * 100.0,
            OFF_FRACTION * 100.0,
            r.tolerance * 100.0
        ),
    ]
}

/// Why each undecided rule is, and what would decide it.
fn undecided_lines(r: &Report) -> Vec<String> {
    r.rules
        .iter()
        .filter(|x| x.unsettled_classes > 0)
        .map(|rule| {
            format!(
                "rule `{}`: {} of its classes undecided: a plateau ratio rests on {} trials whose loss had not \
                 settled during the averaging window; {}",
                rule.name,
                rule.unsettled_classes,
                rule.settle.trials,
                rule.settle.advice(r.samples)
            )
        })
        .collect()
}

//! Successive halving as the report shows it: each comparison group's settings (seeds pooled),
//! how far each went (the whole budget, stopped at a rung, diverged), its objective where it
//! got to and its loss curve up to there. Read from the recorded results: a stopped trial's
//! result is what it reached at its rung.

use kappa_core::halving::Halving;
use kappa_core::objective::{Obs, observe_or_failed, seed_mean};
use kappa_core::{Plan, Sweep, TrialId, TrialResult, TrialStatus};
use serde::Serialize;
use std::collections::HashMap;

/// One setting of a group (its seeds pooled).
#[derive(Clone, Debug, Serialize)]
pub struct HalvingSetting {
    /// What sets it apart in its group (`lr=0.003`).
    pub label: String,
    /// How far it went: `whole budget`, `stopped at rung k`, `diverged`, `failed` or `running`.
    pub status: String,
    /// The rung it got to (0: the first).
    pub rung: u32,
    /// The `[analysis]` objective where it got to (seed mean; `+∞`: diverged or failed).
    pub objective: f64,
    /// Its loss curve up to there: (samples, seed-mean loss).
    pub curve: Vec<[f64; 2]>,
}

/// One comparison group.
#[derive(Clone, Debug, Serialize)]
pub struct HalvingGroup {
    /// The `within` axes' values (empty: one group of every setting).
    pub label: String,
    /// Its settings, in plan order.
    pub settings: Vec<HalvingSetting>,
}

/// Successive halving's report.
#[derive(Clone, Debug, Serialize)]
pub struct HalvingReport {
    /// The rungs' budgets, in samples seen.
    pub rungs: Vec<u64>,
    /// Each rung keeps the best 1/reduction.
    pub reduction: u64,
    /// The axes settings are compared within.
    pub within: Vec<String>,
    /// What the objective is.
    pub objective: String,
    /// It is maximised (`[analysis] mode = "max"`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub maximise: bool,
    /// Trials stopped at a rung.
    pub stopped: u64,
    /// Each group.
    pub groups: Vec<HalvingGroup>,
}

/// The report of `sweep`'s successive halving (`None`: it does not halve).
pub(crate) fn halving_report(
    sweep: &Sweep,
    plan: &Plan<'_>,
    results: &HashMap<TrialId, TrialResult>,
) -> Option<HalvingReport> {
    let h = Halving::new(plan)?;
    let spec = h.spec();
    let rungs = h.rungs();
    let within = kappa_core::halving::within_names(spec);
    // The grid's axes that vary, but the seed and the `within` ones: what labels a setting.
    let varying: Vec<String> = sweep
        .grid
        .dims()
        .iter()
        .filter(|d| d.len > 1)
        .flat_map(|d| d.axes.iter().map(|(a, _)| a.name().to_string()))
        .filter(|n| n != "seed" && !within.contains(&n.as_str()))
        .collect();
    let a = &sweep.analysis;
    let mut stopped = 0u64;
    let groups = h
        .groups()
        .iter()
        .enumerate()
        .map(|(g, group)| {
            let settings = h
                .members(g)
                .into_iter()
                .map(|ids| {
                    let rs: Vec<&TrialResult> = ids.iter().filter_map(|id| results.get(id)).collect();
                    stopped += rs.iter().filter(|r| r.status == TrialStatus::Stopped).count() as u64;
                    setting(&varying, &rungs, ids, &rs, a)
                })
                .collect();
            HalvingGroup { label: group.label.clone(), settings }
        })
        .collect();
    Some(HalvingReport {
        rungs,
        reduction: spec.reduction,
        within: within.iter().map(|s| s.to_string()).collect(),
        objective: a.describe(),
        maximise: a.maximises(),
        stopped,
        groups,
    })
}

/// One setting from its seeds' results.
fn setting(
    varying: &[String],
    rungs: &[u64],
    ids: &[TrialId],
    rs: &[&TrialResult],
    a: &kappa_core::spec::Analysis,
) -> HalvingSetting {
    let label = rs
        .first()
        .map(|r| varying.iter().map(|n| format!("{n}={}", r.params.display(n))).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    let reached = rs.iter().filter_map(|r| r.metrics.as_ref()?.curve.last().map(|p| p.samples)).max().unwrap_or(0);
    let rung = rungs.iter().position(|&b| reached <= b).unwrap_or(rungs.len().saturating_sub(1)) as u32;
    let all = |s: TrialStatus| rs.len() == ids.len() && rs.iter().all(|r| r.status == s);
    let status = if rs.iter().any(|r| r.status == TrialStatus::Diverged) {
        "diverged".to_string()
    } else if rs.iter().any(|r| r.status == TrialStatus::Failed) {
        "failed".to_string()
    } else if all(TrialStatus::Succeeded) {
        "whole budget".to_string()
    } else if all(TrialStatus::Stopped) {
        format!("stopped at rung {rung}")
    } else {
        "running".to_string()
    };
    let obs: Vec<Obs> = rs.iter().map(|r| observe_or_failed(r.status, r.metrics.as_ref(), a)).collect();
    // The metric's own value (a maximised one is negated inside the ranking).
    let objective =
        if rs.len() == ids.len() { a.shown(seed_mean(&obs.iter().collect::<Vec<_>>(), a).0) } else { f64::NAN };
    let metrics: Vec<&kappa_core::TrialMetrics> = rs.iter().filter_map(|r| r.metrics.as_ref()).collect();
    let curve = crate::aggregate::seed_curve(&metrics).into_iter().map(|[s, mean, _]| [s, mean]).collect();
    HalvingSetting { label, status, rung, objective, curve }
}

//! The table printed at the end of `kappa run`: trials grouped over seeds.

use crate::progress::fmt_secs;
use anyhow::Context;
use kappa_core::{Health, Sweep};
use kappa_store::{Store, TrialRecord};
use std::collections::BTreeMap;
use std::time::Duration;

/// Rows shown in the run summary before it points to `kappa export`.
const MAX_ROWS: usize = 40;

/// The table printed at the end of `kappa run`: trials grouped over seeds.
pub fn print_run_summary(store: &Store, sweep: &Sweep, reused: u64, elapsed: Duration) -> anyhow::Result<()> {
    let trials = store.trials().context("cannot read results")?;
    let counts = store.counts()?;
    let stopped = if counts.stopped > 0 {
        format!(", {} stopped at a rung of successive halving", counts.stopped)
    } else {
        String::new()
    };
    println!(
        "sweep `{}`: {} trials: {} succeeded{}, {} failed, {} diverged{stopped}, {} not finished ({} reused from earlier \
         runs) in {}",
        sweep.name,
        counts.total,
        counts.succeeded,
        counts.unhealthy_note(),
        counts.failed,
        counts.diverged,
        counts.pending + counts.running,
        reused,
        fmt_secs(elapsed.as_secs_f64())
    );
    // Which rule and κ made each trial, from the plan its ids were made with.
    let version = store
        .sweep_info()?
        .and_then(|i| i.code_version)
        .unwrap_or_else(|| kappa_core::CodeVersion::legacy_of(&sweep.task));
    let plan = kappa_core::Plan::new(sweep, version);
    // Every (rule, κ) that makes each trial: a trial two rules derive identically (or a κ that
    // changes nothing) is stored once, under its first plan entry, and shown under each.
    let mut made_by: std::collections::HashMap<kappa_core::TrialId, Vec<[String; 2]>> =
        std::collections::HashMap::new();
    if sweep.scaling.is_some() && sweep.search.is_some() {
        // A search's trials say what made them: its probes are base trials, a rule's variants
        // name their rule and κ.
        for t in &trials {
            let label = match &t.result.origin {
                Some(kappa_core::Origin::Scaled { rule, kappa, .. }) => [rule.clone(), kappa.to_string()],
                _ => ["(base)".to_string(), "1".to_string()],
            };
            made_by.entry(t.result.id).or_default().push(label);
        }
    } else if let Some(scaling) = &sweep.scaling {
        for seq in 0..plan.len() {
            let t = plan.trial(seq);
            let label = match t.variant {
                Some((rule, kappa)) => [scaling.rules[rule].name.clone(), kappa.to_string()],
                None => ["(base)".to_string(), "1".to_string()],
            };
            let entry = made_by.entry(t.id).or_default();
            if !entry.contains(&label) {
                entry.push(label);
            }
        }
    }
    let scaled = sweep.scaling.is_some();
    let varying = varying_columns(&trials);
    // Groups in plan order (trials come sorted by seq), averaging over seeds.
    let mut groups: Vec<(Vec<String>, Vec<&TrialRecord>)> = Vec::new();
    let mut index: std::collections::HashMap<Vec<String>, usize> = std::collections::HashMap::new();
    let unlabelled: Vec<Vec<String>> = vec![if scaled { vec!["-".into(), "-".into()] } else { Vec::new() }];
    for t in &trials {
        let values: Vec<String> = varying.iter().map(|(_, axis)| shown(&t.result.params, axis)).collect();
        let labels: Vec<Vec<String>> =
            made_by.get(&t.result.id).map_or_else(|| unlabelled.clone(), |l| l.iter().map(|x| x.to_vec()).collect());
        for label in labels {
            let key: Vec<String> = label.into_iter().chain(values.iter().cloned()).collect();
            let i = *index.entry(key.clone()).or_insert_with(|| {
                groups.push((key, Vec::new()));
                groups.len() - 1
            });
            groups[i].1.push(t);
        }
    }
    let with_theory = trials.iter().any(|t| theory_of(t).is_some());
    let mut header: Vec<String> = if scaled { vec!["rule".into(), "κ".into()] } else { Vec::new() };
    header.extend(varying.iter().map(|(n, _)| n.to_string()));
    header.extend(["seeds", "status", "stationary loss", "final loss"].map(String::from));
    if with_theory {
        header.push("theory".into());
    }
    let mut rows = Vec::new();
    let mut unsettled_groups = 0usize;
    for (key, members) in groups.iter() {
        let mut row = key.clone();
        row.push(members.len().to_string());
        row.push(status_cell(members));
        let mut stationary = estimate_cell(
            members.iter().filter_map(|t| t.result.metrics.as_ref()?.stationary_loss.map(|e| (e.mean, e.se))),
        );
        if members.iter().any(|t| unsettled(t)) {
            stationary.push_str(" not settled");
            unsettled_groups += 1;
        }
        row.push(stationary);
        row.push(estimate_cell(
            members.iter().filter_map(|t| t.result.metrics.as_ref()?.curve.last().map(|c| (c.loss_mean, c.loss_se))),
        ));
        if with_theory {
            row.push(members.iter().find_map(|t| theory_of(t)).map_or("-".into(), |v| format!("{v:.4e}")));
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().take(MAX_ROWS).map(|r| r[i].chars().count()).chain([header[i].len()]).max().unwrap_or(0))
        .collect();
    let fmt_row = |r: &[String]| r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ");
    println!("{}", fmt_row(&header).trim_end());
    for r in rows.iter().take(MAX_ROWS) {
        println!("{}", fmt_row(r).trim_end());
    }
    if rows.len() > MAX_ROWS {
        println!("… {} more groups: kappa export --format csv for all of them", rows.len() - MAX_ROWS);
    }
    for definition in counts.health_definitions() {
        println!("{definition}");
    }
    if unsettled_groups > 0 {
        let hint = kappa_report::SettleHint::over(
            trials.iter().filter_map(|t| t.result.metrics.as_ref()),
            sweep.task.burn_in().unwrap_or(0.5),
        );
        let file = store.sweep_info()?.map(|i| i.spec_path).filter(|p| !p.is_empty()).unwrap_or_else(|| "FILE".into());
        println!(
            "not settled ({unsettled_groups} of {} groups): the loss was still moving during the averaging window (its \
             second half differs from its first by more than 3 SE and 5%), so that stationary loss is not a \
             stationary value; {} in the sweep file, then run `kappa run {file}` again",
            rows.len(),
            hint.advice(sweep.task.samples())
        );
    }
    let mut notes: Vec<&str> = trials
        .iter()
        .filter_map(|t| t.result.metrics.as_ref())
        .flat_map(|m| m.notes.iter().map(String::as_str))
        .collect();
    notes.sort_unstable();
    notes.dedup();
    for n in notes.iter().take(5) {
        println!("note: {n}");
    }
    Ok(())
}

/// A trial's value of `axis` in the table: `-` for a built-in its optimizer does not read.
fn shown(p: &kappa_core::Params, axis: &str) -> String {
    match kappa_core::AxisName::from_key(axis) {
        Some(a) if p.builtins.has(kappa_core::AxisName::Optimizer) && !p.hyper.optimizer.reads(a) => "-".into(),
        _ => p.display(axis),
    }
}

/// Whether a trial's stationary loss was measured before its loss settled.
fn unsettled(t: &TrialRecord) -> bool {
    t.result.metrics.as_ref().and_then(|m| m.settled()) == Some(false)
}

/// The closed-form stationary loss of a trial, where THEORY.md has one.
fn theory_of(t: &TrialRecord) -> Option<f64> {
    t.result.metrics.as_ref()?.theory.as_ref()?.stationary_loss
}

/// A column of the summary table: its title and the axis whose values fill it in.
type Column = (String, String);

/// The columns of parameters that vary across `trials` (seed aside): built-ins, then named axes.
fn varying_columns(trials: &[TrialRecord]) -> Vec<Column> {
    const BUILTINS: [(&str, &str); 7] = [
        ("optimizer", "optimizer"),
        ("batch", "batch_size"),
        ("lr", "lr"),
        ("beta1", "beta1"),
        ("beta2", "beta2"),
        ("eps", "eps"),
        ("wd", "weight_decay"),
    ];
    let mut all: Vec<Column> = BUILTINS.map(|(title, axis)| (title.to_string(), axis.to_string())).to_vec();
    let named: std::collections::BTreeSet<&String> = trials.iter().flat_map(|t| t.result.params.named.keys()).collect();
    all.extend(named.into_iter().map(|n| (n.clone(), n.clone())));
    let varies =
        |axis: &str| trials.windows(2).any(|w| w[0].result.params.display(axis) != w[1].result.params.display(axis));
    // Nothing varies: show the optimizer, if the trials have one, to name what ran.
    let has_optimizer = trials.first().is_some_and(|t| t.result.params.builtins.has(kappa_core::AxisName::Optimizer));
    let mut out: Vec<Column> = Vec::new();
    let mut rest = Vec::new();
    for c in all {
        if varies(&c.1) { out.push(c) } else { rest.push(c) }
    }
    if out.is_empty() && has_optimizer && !rest.is_empty() {
        out.push(rest.swap_remove(0));
    }
    out
}

fn status_cell(members: &[&TrialRecord]) -> String {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for t in members {
        let name = match (t.result.health(), t.result.status, t.rung) {
            (Some(h @ (Health::DidNotTrain | Health::Unstable)), ..) => h.label().to_string(),
            (_, kappa_core::TrialStatus::Stopped, Some(k)) => format!("stopped at rung {k}"),
            _ => t.result.status.as_str().to_string(),
        };
        *by.entry(name).or_default() += 1;
    }
    if by.len() == 1 && by.contains_key("succeeded") {
        return "ok".into();
    }
    by.iter().map(|(s, n)| format!("{n} {s}")).collect::<Vec<_>>().join(", ")
}

/// Mean over seeds of per-trial means, with the SE of that mean from the seeds' spread and the
/// trials' own SEs ([`kappa_core::Estimate::pooled`]).
fn estimate_cell(values: impl Iterator<Item = (f64, f64)>) -> String {
    let v: Vec<kappa_core::Estimate> = values.map(|(mean, se)| kappa_core::Estimate { mean, se }).collect();
    match kappa_core::Estimate::pooled(&v) {
        Some(e) => format!("{:.4e} ± {:.1e}", e.mean, e.se),
        None => "-".into(),
    }
}

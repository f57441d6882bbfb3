//! Exports: every trial of the current plan as CSV or JSON lines, streamed (one trial in memory
//! at a time, whatever the sweep's size). `kappa export` and the dashboard's downloads both write
//! through here. The JSON schema (one object per line) is documented in the README; fields are
//! added over time, never renamed.

use crate::{Store, StoreError, TrialRecord};
use kappa_core::AxisName;
use kappa_core::params::value_text;
use serde_json::{Map, Value, json};
use std::io::Write;

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The output could not be written.
    #[error("cannot write the export: {0}")]
    Io(#[from] std::io::Error),
    /// A trial could not be written as JSON.
    #[error("cannot write the export: {0}")]
    Json(#[from] serde_json::Error),
}

/// JSON lines: one object per trial ([`trial_json`]), in plan order.
pub fn write_jsonl(store: &Store, w: &mut impl Write) -> Result<(), ExportError> {
    let preempted = store.preempted()?;
    let rungs = rungs_by_trial(store)?;
    store.each_trial(|t| -> Result<(), ExportError> {
        let mut o = trial_json(&t, preempted.get(&t.result.id).copied().unwrap_or(0));
        if let (Some(rows), Value::Object(m)) = (rungs.get(&t.result.id), &mut o) {
            m.insert("rungs".into(), json!(rows));
        }
        serde_json::to_writer(&mut *w, &o)?;
        w.write_all(b"\n")?;
        Ok(())
    })
}

/// Each trial's rung results of successive halving, as the JSON export lists them: the rung,
/// the attempt, what it made of the trial, the step it continued from, the step it reached and
/// the samples it computed.
fn rungs_by_trial(store: &Store) -> Result<std::collections::HashMap<kappa_core::TrialId, Vec<Value>>, ExportError> {
    let mut out: std::collections::HashMap<kappa_core::TrialId, Vec<Value>> = std::collections::HashMap::new();
    for r in store.rung_results()? {
        out.entry(r.id).or_default().push(json!({
            "rung": r.rung,
            "attempt": r.attempt,
            "status": r.status,
            "from_step": r.from_step,
            "to_step": r.to_step,
            "samples": r.samples,
        }));
    }
    Ok(out)
}

/// What every JSON view of a trial holds (the export's object and the dashboard's table row):
/// id, plan position, parameters, status, attempts, whether its loss settled, whether it trained
/// ([`kappa_core::Health`]), error, worker.
pub fn trial_fields(t: &TrialRecord) -> Map<String, Value> {
    let r = &t.result;
    let fields = json!({
        "id": r.id,
        "seq": t.seq,
        "params": r.params,
        "status": r.status,
        "attempts": t.attempts,
        // Whether the loss had settled during the averaging window (null: not checked).
        "settled": r.metrics.as_ref().and_then(|m| m.settled()),
        // Whether it trained: "trained", "did_not_train" or "unstable" (null: no metrics).
        "health": t.result.health(),
        "error": r.error,
        "worker": t.worker,
        // Where it comes from: {"from": "probe", "group", "round", "reason"} for a search's
        // probe, {"from": "scaled", "base", "rule", "kappa"} for a rule's variant, null for a
        // grid point.
        "origin": r.origin,
        // Successive halving: the rung it is at, stopped at or finished (its promotions so
        // far); null when the sweep does not halve.
        "rung": t.rung,
    });
    match fields {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The export object of one trial (`preempted`: its attempts handed back by draining workers):
/// [`trial_fields`], its metrics, its divergence step and its timings.
pub fn trial_json(t: &TrialRecord, preempted: u32) -> Value {
    let mut o = trial_fields(t);
    o.insert("preempted".into(), json!(preempted));
    o.insert("metrics".into(), json!(t.result.metrics));
    o.insert("diverged_step".into(), json!(t.diverged_step));
    o.insert(
        "timings".into(),
        json!({ "started_at": t.started_at, "finished_at": t.finished_at, "duration_s": t.duration_s }),
    );
    Value::Object(o)
}

/// The columns before the parameters.
const CSV_HEAD: &[&str] = &["id", "seq", "status", "attempts"];

/// The columns after the parameters (the built-ins, then one per named axis).
const CSV_TAIL: &[&str] = &[
    "stationary_loss_mean",
    "stationary_loss_se",
    "final_samples",
    "final_loss_mean",
    "final_loss_se",
    "diverged_step",
    "theory_stationary_loss",
    "notes",
    "error",
    "worker",
    "started_at",
    "finished_at",
    "duration_s",
    "preempted",
    "settled",
    "health",
    "origin",
    "group",
    "round",
    "reason",
    "base",
    "rule",
    "kappa",
    "rung",
];

/// CSV: one row per trial; a column per built-in hyperparameter (empty where a trial does not
/// carry it) and one per named axis any trial has (`task.noise.sigma`, `params.width`).
pub fn write_csv(store: &Store, w: &mut impl Write) -> Result<(), ExportError> {
    let preempted = store.preempted()?;
    // The columns first (from the store, without reading every trial into memory), then the rows.
    let named = store.named_axes()?;
    let named: Vec<&str> = named.iter().map(String::as_str).collect();
    let header: Vec<&str> = CSV_HEAD
        .iter()
        .copied()
        .chain(AxisName::ALL.iter().map(|a| a.as_str()))
        .chain(named.iter().copied())
        .chain(CSV_TAIL.iter().copied())
        .collect();
    writeln!(w, "{}", header.join(","))?;
    let opt = |x: Option<f64>| x.map(|v| v.to_string()).unwrap_or_default();
    store.each_trial(|t| -> Result<(), ExportError> {
        let (r, p) = (&t.result, &t.result.params);
        let stationary = r.metrics.as_ref().and_then(|m| m.stationary_loss);
        let last = r.metrics.as_ref().and_then(|m| m.curve.last());
        let mut cells = vec![r.id.to_string(), t.seq.to_string(), r.status.to_string(), t.attempts.to_string()];
        for a in AxisName::ALL {
            cells.push(if p.builtins.has(a) { p.builtin_text(a) } else { String::new() });
        }
        for n in &named {
            cells.push(p.named.get(*n).map(value_text).unwrap_or_default());
        }
        cells.extend([
            opt(stationary.map(|e| e.mean)),
            opt(stationary.map(|e| e.se)),
            last.map(|c| c.samples.to_string()).unwrap_or_default(),
            opt(last.map(|c| c.loss_mean)),
            opt(last.map(|c| c.loss_se)),
            t.diverged_step.map(|s| s.to_string()).unwrap_or_default(),
            opt(r.metrics.as_ref().and_then(|m| m.theory.as_ref()?.stationary_loss)),
            r.metrics.as_ref().map(|m| m.notes.join("; ")).unwrap_or_default(),
            r.error.clone().unwrap_or_default(),
            t.worker.clone().unwrap_or_default(),
            opt(t.started_at),
            opt(t.finished_at),
            opt(t.duration_s),
            preempted.get(&r.id).copied().unwrap_or(0).to_string(),
            r.metrics.as_ref().and_then(|m| m.settled()).map(|s| s.to_string()).unwrap_or_default(),
            t.result.health().map(|h| h.as_str().to_string()).unwrap_or_default(),
        ]);
        cells.extend(origin_cells(r.origin.as_ref()));
        cells.push(t.rung.map(|k| k.to_string()).unwrap_or_default());
        let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        writeln!(w, "{}", line.join(","))?;
        Ok(())
    })
}

/// The origin columns of a trial: origin, group, round, reason (a search's probe), base, rule,
/// kappa (a rule's variant); a grid point's are `grid` and empty cells.
fn origin_cells(o: Option<&kappa_core::Origin>) -> [String; 7] {
    use kappa_core::Origin;
    let e = String::new;
    match o {
        None | Some(Origin::Grid) => ["grid".into(), e(), e(), e(), e(), e(), e()],
        Some(Origin::Probe { group, round, reason, .. }) => {
            ["probe".into(), group.to_string(), round.to_string(), reason.as_str().into(), e(), e(), e()]
        }
        Some(Origin::Scaled { base, rule, kappa }) => {
            ["scaled".into(), e(), e(), e(), base.to_string(), rule.clone(), kappa.to_string()]
        }
    }
}

/// Quotes a CSV cell when it holds a comma, quote or line break (RFC 4180).
fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

#[cfg(test)]
mod tests {
    #[test]
    fn csv_cells_are_quoted_when_needed() {
        assert_eq!(super::csv_cell("plain"), "plain");
        assert_eq!(super::csv_cell("a,b"), "\"a,b\"");
        assert_eq!(super::csv_cell("say \"hi\"\n"), "\"say \"\"hi\"\"\n\"");
    }
}

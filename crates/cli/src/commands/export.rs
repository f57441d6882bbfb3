//! `kappa export`: every trial of the current plan as CSV or JSON lines.
//!
//! The JSON schema (one object per line) is documented in the README; fields are added over time,
//! never renamed.

use crate::args::StateArg;
use crate::{exit, state};
use anyhow::Context;
use clap::ValueEnum;
use kappa_core::AxisName;
use kappa_core::params::value_text;
use kappa_store::{Store, TrialRecord};
use serde_json::json;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

/// Output formats of `kappa export`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One row per trial; curves are left out (use jsonl for them).
    Csv,
    /// One JSON object per trial, with the full loss curve.
    Jsonl,
}

/// Arguments of `kappa export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    state: StateArg,
    /// Output format.
    #[arg(long, value_enum)]
    format: Format,
    /// Write here instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub fn export(args: ExportArgs) -> anyhow::Result<u8> {
    let dir = state::resolve(&args.state)?;
    let store = Store::open(&dir)?;
    let preempted = store.preempted()?;
    let sink: Box<dyn Write> = match &args.out {
        Some(path) => {
            Box::new(std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let mut w = BufWriter::new(sink);
    match args.format {
        // Streamed: one trial in memory at a time, whatever the sweep's size.
        Format::Jsonl => store.each_trial(|t| -> anyhow::Result<()> {
            serde_json::to_writer(&mut w, &trial_json(&t, preempted.get(&t.result.id).copied().unwrap_or(0)))?;
            w.write_all(b"\n")?;
            Ok(())
        })?,
        Format::Csv => write_csv(&mut w, &store, &preempted)?,
    }
    w.flush()?;
    Ok(exit::OK)
}

/// The export object of one trial (`preempted`: its attempts handed back by draining workers).
pub fn trial_json(t: &TrialRecord, preempted: u32) -> serde_json::Value {
    let r = &t.result;
    json!({
        "id": r.id,
        "seq": t.seq,
        "params": r.params,
        "status": r.status,
        "attempts": t.attempts,
        "preempted": preempted,
        "metrics": r.metrics,
        // Whether the loss had settled during the averaging window (null: not checked).
        "settled": r.metrics.as_ref().and_then(|m| m.settled()),
        "error": r.error,
        "diverged_step": t.diverged_step,
        "worker": t.worker,
        "timings": {
            "started_at": t.started_at,
            "finished_at": t.finished_at,
            "duration_s": t.duration_s,
        },
    })
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
];

/// CSV: one row per trial; a column per built-in hyperparameter (empty where a trial does not
/// carry it) and one per named axis any trial has (`task.noise.sigma`, `params.width`).
fn write_csv(
    w: &mut impl Write,
    store: &Store,
    preempted: &std::collections::HashMap<kappa_core::TrialId, u32>,
) -> anyhow::Result<()> {
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
    store.each_trial(|t| -> anyhow::Result<()> {
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
        ]);
        let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        writeln!(w, "{}", line.join(","))?;
        Ok(())
    })
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

//! `kappa report`: verdicts on the sweep's scaling rules, with tables, summary.json, plots and an
//! HTML page. Works on partly finished and still running sweeps (it says what is missing).

use crate::args::SourceArg;
use crate::{client, exit, state};
use anyhow::{Context, anyhow};
use kappa_core::{Sweep, TrialResult};
use kappa_store::Store;
use std::path::PathBuf;

/// Arguments of `kappa report`.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    #[command(flatten)]
    source: SourceArg,
    /// Directory for summary.json, the PNG/SVG plots and report.html.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Exit with code 4 when a rule's verdict differs from the `expect` the sweep gives it (or
    /// cannot be decided yet).
    #[arg(long)]
    check: bool,
    /// Another sweep's state directory whose curves are drawn over this one's for the same
    /// hyperparameters (e.g. the SDE of the optimizer this sweep runs); repeatable.
    #[arg(long, value_name = "DIR")]
    overlay: Vec<PathBuf>,
}

/// A sweep's label in overlays: its name and what it runs.
fn label(name: &str, sweep: &Sweep) -> String {
    match (&sweep.task, sweep.task.sim()) {
        (kappa_core::TaskSpec::Sde(_), Some(s)) => format!("{name} (SDE, {:?})", s.sde_model).to_lowercase(),
        _ => format!("{name} ({})", sweep.task.kind_name()),
    }
}

fn trial_results(store: &Store) -> anyhow::Result<Vec<TrialResult>> {
    Ok(store.trials()?.into_iter().map(|t| t.result).collect())
}

pub fn report(args: ReportArgs) -> anyhow::Result<u8> {
    // The sweep file and every trial, from a state directory or a coordinator.
    let (source, spec_path, spec, version, trials) = match args.source.coordinator() {
        Some(c) => {
            let r = client::fetch_results(&c, args.source.sweep.as_deref().unwrap_or(""))?;
            (format!("sweep `{}` of {}", r.name, c.coordinator), r.spec_path, r.spec, r.code_version, r.trials)
        }
        None => {
            let dir = state::resolve(&args.source.state)?;
            let store = Store::open(&dir)?;
            let info = store.sweep_info()?.ok_or_else(|| anyhow!("{} holds no planned sweep yet", dir.display()))?;
            (dir.display().to_string(), info.spec_path, info.spec, info.code_version, trial_results(&store)?)
        }
    };
    let (sweep, mut report) = kappa_report::build_stored(&spec_path, &spec, version.clone(), trials.iter().cloned())
        .map_err(|e| anyhow!("the sweep file stored in {source} no longer parses: {e}"))?;
    // The ids were made with the code version the state directory recorded, whatever this
    // binary's is: a new kappa reports an old sweep.
    // (A source that names none predates recorded versions: its ids carry the legacy one.)
    let current = kappa_worker::code_version(&sweep.task);
    let version = version.unwrap_or_else(|| kappa_core::CodeVersion::legacy_of(&sweep.task));
    if current.get().is_some() && version != current {
        eprintln!("note: {source} was computed with {version} (this kappa computes {current})");
    }
    if !args.overlay.is_empty() {
        let mut sweeps = vec![(label(&sweep.name, &sweep), trials)];
        for dir in &args.overlay {
            let other = Store::open(dir)?;
            let info = other.sweep_info()?.ok_or_else(|| anyhow!("{} holds no planned sweep yet", dir.display()))?;
            let name = Sweep::parse(&info.spec_path, &info.spec).map(|s| label(&info.name, &s)).unwrap_or(info.name);
            sweeps.push((name, trial_results(&other)?));
        }
        let across = kappa_report::overlays(&sweeps);
        if across.is_empty() {
            eprintln!("note: no hyperparameter setting of this sweep appears in the --overlay sweeps");
        }
        report.overlays.extend(across);
    }
    print!("{}", kappa_report::render::verdict_table(&report));
    let files = kappa_report::render::write_all(&report, &args.out).context("cannot write the report")?;
    println!("wrote {} files to {} (open {})", files.len(), args.out.display(), args.out.join("report.html").display());
    if args.check {
        for note in kappa_report::undecided(&report) {
            eprintln!("check: {note}");
        }
        if let Err(problems) = kappa_report::check(&report) {
            for p in problems {
                eprintln!("check failed: {p}");
            }
            return Ok(exit::CHECK_FAILED);
        }
        println!("check passed: every rule's verdict is the one the sweep expects");
    }
    Ok(exit::OK)
}

//! `kappa report`: verdicts on the sweep's scaling rules, with tables, summary.json, plots and an
//! HTML page. Works on partly finished and still running sweeps (it says what is missing).

use crate::StateArg;
use crate::summary::resolve_state;
use anyhow::{Context, anyhow};
use kappa_core::{Plan, Sweep};
use kappa_report::TrialResult;
use kappa_store::Store;
use std::collections::HashMap;
use std::path::PathBuf;

/// Arguments of `kappa report`.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    #[command(flatten)]
    state: StateArg,
    /// Read the results from a running coordinator instead of a state directory (it wins over
    /// --state and KAPPA_STATE).
    #[arg(long, value_name = "URL")]
    coordinator: Option<String>,
    /// With --coordinator: the sweep (default: the latest submitted).
    #[arg(long, requires = "coordinator")]
    sweep: Option<String>,
    #[command(flatten)]
    token: crate::cluster::TokenArg,
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

fn trial_results(store: &Store) -> anyhow::Result<Vec<(kappa_core::Hyperparams, TrialResult)>> {
    Ok(store.trials()?.into_iter().map(|t| (t.params, TrialResult { status: t.status, metrics: t.metrics })).collect())
}

pub fn report(args: ReportArgs) -> anyhow::Result<u8> {
    // The sweep file and every trial, from a state directory or a coordinator.
    let (source, spec_path, spec, trials) = match &args.coordinator {
        Some(url) => {
            let c = crate::cluster::CoordinatorArg { coordinator: url.clone(), token: args.token.clone() };
            let r = crate::cluster::fetch_results(&c, args.sweep.as_deref().unwrap_or(""))?;
            (format!("sweep `{}` of {url}", r.name), r.spec_path, r.spec, r.trials)
        }
        None => {
            let dir = resolve_state(&args.state)?;
            let store = Store::open(&dir)?;
            let info = store.sweep_info()?.ok_or_else(|| anyhow!("{} holds no planned sweep yet", dir.display()))?;
            let trials = store.trials()?.into_iter().map(|t| (t.id, t.params, t.status, t.metrics)).collect();
            (dir.display().to_string(), info.spec_path, info.spec, trials)
        }
    };
    let sweep = Sweep::parse(&spec_path, &spec)
        .map_err(|e| anyhow!("the sweep file stored in {source} no longer parses: {e}"))?;
    let plan = Plan::new(&sweep, kappa_worker::code_version(&sweep.task));
    let results: HashMap<_, _> =
        trials.iter().map(|(id, _, status, m)| (*id, TrialResult { status: *status, metrics: m.clone() })).collect();
    let mut report = kappa_report::build(&sweep, &plan, &results);
    if !args.overlay.is_empty() {
        let own = trials.into_iter().map(|(_, p, status, metrics)| (p, TrialResult { status, metrics })).collect();
        let mut sweeps = vec![(label(&sweep.name, &sweep), own)];
        for dir in &args.overlay {
            let other = Store::open(dir)?;
            let info = other.sweep_info()?.ok_or_else(|| anyhow!("{} holds no planned sweep yet", dir.display()))?;
            let name = Sweep::parse(&info.spec_path, &info.spec).map(|s| label(&info.name, &s)).unwrap_or(info.name);
            sweeps.push((name, trial_results(&other)?));
        }
        report.overlays = kappa_report::overlays(&sweeps);
        if report.overlays.is_empty() {
            eprintln!("note: no hyperparameter setting of this sweep appears in the --overlay sweeps");
        }
    }
    print!("{}", kappa_report::render::verdict_table(&report));
    let files = kappa_report::render::write_all(&report, &args.out).context("cannot write the report")?;
    println!("wrote {} files to {} (open {})", files.len(), args.out.display(), args.out.join("report.html").display());
    if args.check {
        if let Err(problems) = kappa_report::check(&report) {
            for p in problems {
                eprintln!("check failed: {p}");
            }
            return Ok(crate::exit::CHECK_FAILED);
        }
        println!("check passed: every rule's verdict is the one the sweep expects");
    }
    Ok(crate::exit::OK)
}

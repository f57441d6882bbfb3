//! `kappa status`: how far a sweep got, from its state directory or from a coordinator.

use crate::args::{CoordinatorArg, SourceArg};
use crate::client::{connect, runtime, status_error};
use crate::{exit, state};
use kappa_core::Progress;
use kappa_proto::pb;
use kappa_store::{Store, TrialRecord};
use serde_json::json;

/// Arguments of `kappa status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    source: SourceArg,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// `kappa status`.
pub fn status(args: StatusArgs) -> anyhow::Result<u8> {
    match args.source.coordinator() {
        Some(c) => remote(&c, args.source.sweep.as_deref(), args.json),
        None => local(&args),
    }
}

/// Trials by status, and why failed trials failed, from a state directory.
fn local(args: &StatusArgs) -> anyhow::Result<u8> {
    let dir = state::resolve(&args.source.state)?;
    let store = Store::open(&dir)?;
    let info = store.sweep_info()?;
    let counts = store.counts()?;
    // Read by their indexes: a store of 10⁷ trials answers as fast as one of 10.
    let failed = store.failed_trials()?;
    // Trials whose stationary loss was taken before the loss settled.
    let unsettled_trials = store.unsettled_trials()?;
    let unsettled: Vec<(&TrialRecord, String)> =
        unsettled_trials.iter().filter_map(|t| Some((t, t.result.metrics.as_ref()?.unsettled_note()?))).collect();
    let preempted: u32 = store.preempted()?.values().sum();
    let name = info.as_ref().map_or("", |i| i.name.as_str());
    let search = match &info {
        Some(i) => search_progress(i, &store)?,
        None => None,
    };
    let halving = match &info {
        Some(i) => halving_progress(i, &store)?,
        None => None,
    };
    if args.json {
        let out = json!({
            "sweep": name,
            "state": dir.display().to_string(),
            "spec_path": info.as_ref().map(|i| i.spec_path.clone()),
            "total": counts.total,
            "pending": counts.pending,
            "running": counts.running,
            "succeeded": counts.succeeded,
            "failed": counts.failed,
            "diverged": counts.diverged,
            "did_not_train": counts.did_not_train,
            "unstable": counts.unstable,
            "done": counts.done(),
            "preempted_attempts": preempted,
            "code_version": info.as_ref().and_then(|i| i.code_version.as_ref()).map(|v| v.to_string()),
            "finished": counts.total > 0 && counts.done() == counts.total,
            "search": search.as_ref().map(|s| json!({
                "axis": s.axis, "groups": s.groups, "finished_groups": s.finished, "rounds": s.rounds,
                "at_most": s.at_most,
            })),
            "stopped": counts.stopped,
            "halving": halving.as_ref().map(|h| json!({
                "rungs": h.rungs.iter().map(|(samples, n)| json!({"samples": samples, "reached": n})).collect::<Vec<_>>(),
                "samples_computed": h.computed, "samples_with_restarts": h.restarts, "grid_samples": h.grid,
            })),
            "logs": Some(dir.join("logs")).filter(|l| l.is_dir()).map(|l| l.display().to_string()),
            "failures": failed
                .iter()
                .map(|t| json!({"id": t.result.id, "attempts": t.attempts, "error": t.result.error}))
                .collect::<Vec<_>>(),
            "unsettled": unsettled
                .iter()
                .map(|(t, why)| json!({"id": t.result.id, "params": t.result.params, "why": why}))
                .collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(exit::OK);
    }
    println!("sweep `{name}` in {}", dir.display());
    if let Some(i) = &info {
        println!("  sweep file     {}", i.spec_path);
        if let Some(v) = i.code_version.as_ref().and_then(|v| v.get()) {
            println!("  ids made with  {v} (the code version its trial ids carry)");
        }
    }
    let logs = dir.join("logs");
    if logs.is_dir() {
        println!("  command logs   {}/<trial>.<attempt>.stdout|.stderr", logs.display());
    }
    println!(
        "  trials         {} total: {} succeeded{}, {} failed, {} diverged,{} {} running, {} pending",
        counts.total,
        counts.succeeded,
        counts.unhealthy_note(),
        counts.failed,
        counts.diverged,
        if counts.stopped > 0 { format!(" {} stopped at a rung,", counts.stopped) } else { String::new() },
        counts.running,
        counts.pending
    );
    if let Some(h) = &halving {
        let reached: Vec<String> =
            h.rungs.iter().map(|(samples, n)| format!("{n} at {}", kappa_core::format_count(*samples))).collect();
        println!(
            "  halving        rungs (trials that finished each, at its budget in samples): {}; {} samples computed, \
             {:.0}% of the grid's {} ({} with restarts instead of continuation)",
            reached.join(", "),
            kappa_core::format_count(h.computed),
            100.0 * h.computed as f64 / h.grid.max(1) as f64,
            kappa_core::format_count(h.grid),
            kappa_core::format_count(h.restarts)
        );
    }
    for definition in counts.health_definitions() {
        println!("                 {definition}");
    }
    if let Some(s) = &search {
        println!(
            "  search         bracket over {}: {} groups, {} finished, {} rounds run in all; {} trials of at most {}",
            s.axis, s.groups, s.finished, s.rounds, counts.total, s.at_most
        );
    }
    if preempted > 0 {
        println!(
            "  preempted      {preempted} attempts handed back by draining workers (not failures: their trials run again)"
        );
    }
    let state = if counts.total > 0 && counts.done() == counts.total { "finished" } else { "not finished" };
    println!("  state          {state} ({:.0}% done)", 100.0 * counts.done() as f64 / counts.total.max(1) as f64);
    for t in failed.iter().take(10) {
        println!(
            "  failed {} after {} attempts: {}",
            t.result.id,
            t.attempts,
            t.result.error.as_deref().unwrap_or("?")
        );
    }
    if failed.len() > 10 {
        println!("  … {} more failed trials (kappa export --format jsonl)", failed.len() - 10);
    }
    if !unsettled.is_empty() {
        println!(
            "  not settled    {} trials: their stationary loss was taken while the loss still moved",
            unsettled.len()
        );
    }
    for (t, why) in unsettled.iter().take(10) {
        println!("  not settled {} ({}): {why}", t.result.id, short_params(&t.result.params));
    }
    if unsettled.len() > 10 {
        println!("  … {} more (kappa export --format jsonl: \"settled\": false)", unsettled.len() - 10);
    }
    Ok(exit::OK)
}

/// A trial's optimizer, batch size, learning rate, seed and named axes, as `name=value` words.
fn short_params(p: &kappa_core::Params) -> String {
    use kappa_core::AxisName as A;
    let builtins = [A::Optimizer, A::BatchSize, A::Lr, A::Seed].into_iter().filter(|a| p.builtins.has(*a));
    builtins
        .map(|a| a.as_str().to_string())
        .chain(p.named.keys().cloned())
        .map(|k| format!("{k}={}", p.display(&k)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every sweep's counts (or one sweep's), from a coordinator.
fn remote(c: &CoordinatorArg, sweep: Option<&str>, as_json: bool) -> anyhow::Result<u8> {
    runtime()?.block_on(async {
        let mut cl = connect(c).await?;
        let r = cl
            .status(pb::StatusRequest { sweep: sweep.unwrap_or("").to_string() })
            .await
            .map_err(status_error)?
            .into_inner();
        let sweeps: Vec<Progress> = r.sweeps.into_iter().map(Progress::from).collect();
        if as_json {
            let all: Vec<_> = sweeps.iter().map(progress_json).collect();
            let workers: Vec<_> = r.workers.iter().map(worker_json).collect();
            let out = json!({ "coordinator": c.coordinator, "sweeps": all, "workers": workers });
            println!("{}", serde_json::to_string_pretty(&out)?);
            return Ok(exit::OK);
        }
        if sweeps.is_empty() {
            println!("coordinator {}: no sweep submitted yet", c.coordinator);
        }
        for p in &sweeps {
            let n = &p.counts;
            println!(
                "sweep `{}`{}: {} trials{}: {} succeeded{}, {} failed, {} diverged,{} {} running, {} pending; {} workers{}",
                p.sweep,
                p.owner.as_ref().map_or(String::new(), |o| format!(" (owner {o})")),
                n.total,
                p.at_most.map_or(String::new(), |m| format!(" (a search: at most {m})")),
                n.succeeded,
                n.unhealthy_note(),
                n.failed,
                n.diverged,
                if p.rungs.is_empty() {
                    String::new()
                } else {
                    format!(" {} stopped (rungs {}),", n.stopped, crate::progress::rungs_text(&p.rungs))
                },
                n.running,
                n.pending,
                p.workers,
                if p.finished {
                    "; finished"
                } else if p.cancelled {
                    "; cancelled"
                } else {
                    ""
                }
            );
        }
        print_workers(&r.workers);
        Ok(exit::OK)
    })
}

/// The registered workers: what they compute with, and the sweeps they wait beside because
/// those were planned with other code.
fn print_workers(workers: &[pb::WorkerStatus]) {
    if workers.is_empty() {
        println!("no worker registered");
        return;
    }
    println!("{} workers:", workers.len());
    for w in workers {
        let heard =
            if w.lost { format!("lost, silent {:.0} s", w.silent_s) } else { format!("seen {:.0} s ago", w.silent_s) };
        println!(
            "  {}  {} slots, {} GPUs, computes with {}; {heard}",
            w.name,
            w.slots,
            w.gpus,
            if w.code_versions.is_empty() { "-".to_string() } else { w.code_versions.join(", ") },
        );
        for b in &w.blocked {
            println!(
                "    not leased `{}`: its {} pending trials were planned with {}, which this worker does not compute with",
                b.sweep, b.pending, b.needs
            );
        }
    }
}

fn worker_json(w: &pb::WorkerStatus) -> serde_json::Value {
    json!({
        "name": w.name, "slots": w.slots, "gpus": w.gpus, "code_versions": w.code_versions,
        "silent_s": w.silent_s, "lost": w.lost,
        "blocked": w.blocked.iter().map(|b| json!({"sweep": b.sweep, "needs": b.needs, "pending": b.pending}))
            .collect::<Vec<_>>(),
    })
}

fn progress_json(p: &Progress) -> serde_json::Value {
    let n = &p.counts;
    json!({
        "sweep": p.sweep, "total": n.total, "pending": n.pending, "running": n.running,
        "succeeded": n.succeeded, "failed": n.failed, "diverged": n.diverged,
        "did_not_train": n.did_not_train, "unstable": n.unstable,
        "workers": p.workers, "finished": p.finished, "cancelled": p.cancelled, "at_most": p.at_most,
        "stopped": n.stopped, "owner": p.owner,
        "rungs": p.rungs.iter().map(|r| json!({"samples": r.samples, "reached": r.reached})).collect::<Vec<_>>(),
    })
}

/// The sweep a store holds, parsed again, with the code version its ids were made with (`None`:
/// its file no longer parses).
fn stored_sweep(info: &kappa_store::SweepInfo) -> Option<(kappa_core::Sweep, kappa_core::CodeVersion)> {
    let sweep = kappa_core::Sweep::parse(&info.spec_path, &info.spec).ok()?;
    let version = info.code_version.clone().unwrap_or_else(|| kappa_core::CodeVersion::legacy_of(&sweep.task));
    Some((sweep, version))
}

/// Where successive halving stands, from its store.
struct HalvingProgress {
    /// Each rung's budget and the trials that finished it.
    rungs: Vec<(u64, u64)>,
    /// Samples the attempts computed (continuing where the rung before stopped).
    computed: u64,
    /// What restarting every rung from step 0 would have computed.
    restarts: u64,
    /// What the grid computes: every trial at its whole budget.
    grid: u64,
}

/// Successive halving's rungs and samples from the store's rung results (`None`: the sweep
/// does not halve, or its file no longer parses).
fn halving_progress(info: &kappa_store::SweepInfo, store: &Store) -> anyhow::Result<Option<HalvingProgress>> {
    let Some((sweep, version)) = stored_sweep(info) else { return Ok(None) };
    let plan = kappa_core::Plan::new(&sweep, version);
    let Some(h) = kappa_core::halving::Halving::new(&plan) else { return Ok(None) };
    let budgets = h.rungs();
    let mut reached = vec![0u64; budgets.len()];
    let (mut computed, mut restarts) = (0u64, 0u64);
    for r in store.rung_results()? {
        if let Some(n) = reached.get_mut(r.rung as usize)
            && r.to_step.is_some()
        {
            *n += 1;
        }
        computed += r.samples.unwrap_or(0);
        restarts += r.metrics.as_ref().and_then(|m| m.curve.last()).map_or(0, |p| p.samples);
    }
    Ok(Some(HalvingProgress {
        rungs: budgets.into_iter().zip(reached).collect(),
        computed,
        restarts,
        grid: h.grid_samples(),
    }))
}

/// Where a search stands, from its store.
struct SearchProgress {
    axis: String,
    groups: usize,
    finished: usize,
    rounds: u64,
    at_most: u64,
}

/// A search's groups, rounds and bound: its recorded results replayed through the search (the
/// store's trials and their origins; `None` for a grid sweep, or a sweep file that no longer
/// parses).
fn search_progress(info: &kappa_store::SweepInfo, store: &Store) -> anyhow::Result<Option<SearchProgress>> {
    let Some((sweep, version)) = stored_sweep(info) else { return Ok(None) };
    let plan = kappa_core::Plan::new(&sweep, version);
    let Some(mut search) = kappa_core::search::Search::new(&plan) else { return Ok(None) };
    let results = store.finished_results()?;
    search.replay(&|id| results.get(&id).cloned());
    let mut rounds: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
    store.each_trial(|t| {
        if let Some(kappa_core::Origin::Probe { group, round, .. }) = t.result.origin {
            let r = rounds.entry(group).or_default();
            *r = (*r).max(u64::from(round) + 1);
        }
        Ok::<(), kappa_store::StoreError>(())
    })?;
    Ok(Some(SearchProgress {
        axis: search.spec().axis.name().to_string(),
        groups: search.groups(),
        finished: search.finished_groups(),
        rounds: rounds.values().sum(),
        at_most: search.bound(),
    }))
}

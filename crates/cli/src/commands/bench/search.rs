//! `kappa bench search`: the bracketing search against a log grid refined by today's parabola,
//! for the accuracy of each batch size's best learning rate and the trials each needs.
//!
//! 1. SGD's exact expected loss on the diagonal quadratic (THEORY.md §7; the analysis oracle's
//!    setting): every trial is the closed form, so both are held to the exact optimum. The grid's
//!    count is the fewest log-spaced points over the search's range whose parabola-refined optimum
//!    is within the accuracy at every batch size.
//! 2. A real network (`kind = "train"`: the 64-unit tanh MLP on the digits, Adam, 4 epochs),
//!    trained natively. Its objective is noisy near the optimum (replicates scatter by more than
//!    the objective changes over ±5% of the learning rate), so "the same accuracy" is the
//!    reference's own: a fine log grid (65 points) analysed by `kappa report`'s procedure gives
//!    each batch size's optimum and its 95% bootstrap interval, and an estimate is accurate when it
//!    falls inside that interval. The coarser grids are every 2nd, 4th … of the fine grid's points,
//!    so they cost no trials of their own.
//! 3. What `start = "rule"` saves over a fixed start (the range's middle) in both.

use anyhow::{Context, anyhow};
use kappa_core::objective::{Edge, Obs, best_lr, observe_or_failed, seed_mean};
use kappa_core::search::Search;
use kappa_core::{Plan, PlannedTrial, Sweep, TrialResult, TrialStatus};
use rayon::prelude::*;
use std::collections::BTreeMap;

#[derive(clap::Args, Debug)]
pub struct SearchBench {
    /// How close to the reference optimum each batch size's must be (in ratio).
    #[arg(long, default_value_t = 0.05)]
    accuracy: f64,
    /// Skip the digits MLP (about a minute on 2 cores).
    #[arg(long)]
    no_train: bool,
}

/// Eigenvalues, noise and start of the closed-form setting (the analysis oracle's).
const LAMBDA: [f64; 2] = [1.0, 2.0];
const X0: f64 = 1.0;
const SAMPLES: f64 = 8192.0;

fn exact_sweep(start: &str) -> String {
    format!(
        r#"version = 1
name = "bench-search-exact"
[task]
kind = "optimizer"
landscape = {{ kind = "quadratic", eigenvalues = [1.0, 2.0] }}
noise = {{ kind = "gaussian", sigma = 1.0 }}
x0 = 1.0
paths = 1
samples = 8192
[grid]
optimizer = ["sgd"]
batch_size = [16, 32, 64, 128, 256, 512]
seed = [0]
[search]
kind = "bracket"
axis = "lr"
range = [1e-4, 0.99]
start = {start}
tolerance = 0.05
"#
    )
}

/// The digits sweep: searched (`search` is the `start`), or the fine grid (`None`).
fn train_sweep(search: Option<&str>) -> String {
    let how = match search {
        Some(start) => format!(
            "[search]\nkind = \"bracket\"\naxis = \"lr\"\nrange = [1e-4, 1.0]\nstart = {start}\ntolerance = 0.05\n"
        ),
        None => "lr = { log = [1e-4, 1.0], num = 65 }\n".to_string(),
    };
    format!(
        r#"version = 1
name = "bench-search-digits"
[task]
kind = "train"
model = {{ hidden = [64], activation = "tanh" }}
data = {{ kind = "digits" }}
holdout = 0.2
samples = 5_760
paths = 4
record_every = "5%"
[grid]
optimizer = ["adam"]
batch_size = [8, 32, 128]
beta1 = [0.9]
beta2 = [0.99]
seed = [0]
{how}"#
    )
}

/// SGD's final expected loss at learning rate `eta`, batch `b` (THEORY.md §7).
fn exact_final(eta: f64, b: u64) -> f64 {
    kappa_sim::theory::sgd_expected_loss(&LAMBDA, 1.0, X0, eta, b as f64, SAMPLES / b as f64)
}

/// A closed-form trial: its loss at the start and at the end of the budget.
fn exact_trial(t: &PlannedTrial) -> TrialResult {
    let (eta, b) = (t.params.hyper.lr, t.params.hyper.batch_size);
    let diverges = LAMBDA.iter().any(|l| (1.0 - eta * l).abs() >= 1.0);
    let steps = SAMPLES as u64 / b;
    let metrics = kappa_core::TrialMetrics {
        curve: vec![
            kappa_core::CurvePoint::single(
                0,
                0,
                kappa_sim::theory::sgd_expected_loss(&LAMBDA, 1.0, X0, eta, b as f64, 0.0),
            ),
            kappa_core::CurvePoint::single(SAMPLES as u64, steps, exact_final(eta, b)),
        ],
        ..Default::default()
    };
    let status = if diverges { TrialStatus::Diverged } else { TrialStatus::Succeeded };
    TrialResult { id: t.id, params: t.params.clone(), status, metrics: Some(metrics), error: None, origin: None }
}

/// A trial trained natively.
fn train_trial(sweep: &Sweep, t: &PlannedTrial) -> TrialResult {
    let outcome = kappa_worker::execute(
        &sweep.variants[t.task].task,
        &t.params.hyper,
        t.id,
        &kappa_sim::Cancel::new(),
        &kappa_sim::RunOptions::default(),
    );
    let (status, metrics) = match outcome {
        Some(kappa_core::AttemptOutcome::Succeeded(m)) => (TrialStatus::Succeeded, Some(m)),
        Some(kappa_core::AttemptOutcome::Diverged { metrics, .. }) => (TrialStatus::Diverged, Some(metrics)),
        _ => (TrialStatus::Failed, None),
    };
    TrialResult { id: t.id, params: t.params.clone(), status, metrics, error: None, origin: None }
}

/// Runs a search to its end, each round's trials in parallel; returns every trial's result.
fn drive(search: &mut Search, run: &(dyn Fn(&PlannedTrial) -> TrialResult + Sync)) -> Vec<TrialResult> {
    search.run_rounds(|round| round.par_iter().map(run).collect()).into_iter().map(|(_, r)| r).collect()
}

/// Each batch size's optimum from trials (seed means of the objective, parabola-refined), as the
/// report's analysis reads them: batch size → (optimum, where it lies, learning rates run).
fn optima(sweep: &Sweep, trials: &[TrialResult]) -> BTreeMap<u64, (f64, Edge, usize)> {
    let mut cells: BTreeMap<u64, BTreeMap<u64, Vec<Obs>>> = BTreeMap::new();
    for r in trials {
        let obs = observe_or_failed(r.status, r.metrics.as_ref(), &sweep.analysis);
        cells.entry(r.params.hyper.batch_size).or_default().entry(r.params.hyper.lr.to_bits()).or_default().push(obs);
    }
    cells
        .into_iter()
        .filter_map(|(b, lrs)| {
            let pts: Vec<(f64, f64)> = lrs
                .iter()
                .map(|(bits, seeds)| {
                    let obs: Vec<&Obs> = seeds.iter().collect();
                    (f64::from_bits(*bits), seed_mean(&obs, &sweep.analysis).0)
                })
                .collect();
            let (lr, edge) = best_lr(&pts)?;
            Some((b, (lr, edge, pts.len())))
        })
        .collect()
}

/// `num` log-spaced learning rates over `range`.
fn log_grid(range: [f64; 2], num: usize) -> Vec<f64> {
    kappa_core::grid::spaced(range[0], range[1], num, true)
}

/// The grid's trials for `lrs`: each batch size's grid point with each learning rate.
fn grid_trials(plan: &Plan<'_>, lrs: &[f64]) -> Vec<PlannedTrial> {
    let sweep = plan.sweep();
    let mut out = Vec::new();
    let axis = kappa_core::Axis::Builtin(kappa_core::AxisName::Lr);
    let task = plan.trial(0).task;
    for g in 0..sweep.grid.len() {
        let (params, _) = sweep.grid.point(g);
        for &lr in lrs {
            let params = kappa_core::search::with_value(&params, &axis, lr);
            let id = plan.id(task, &params);
            out.push(PlannedTrial { id, seq: 0, params, variant: None, task, origin: kappa_core::Origin::Grid });
        }
    }
    out
}

/// The reference of one batch size: its optimum and the interval an estimate must fall in.
type Reference = BTreeMap<u64, (f64, [f64; 2])>;

/// Whether every batch size's optimum is inside its lrs and its reference's interval.
fn within(found: &BTreeMap<u64, (f64, Edge, usize)>, reference: &Reference) -> bool {
    reference
        .iter()
        .all(|(b, (_, [lo, hi]))| found.get(b).is_some_and(|f| f.1 == Edge::Inside && *lo <= f.0 && f.0 <= *hi))
}

/// One comparison: the searches (rule and fixed start) and the grid against `reference`.
fn compare(
    title: &str,
    sweeps: [&Sweep; 2],
    reference: &Reference,
    grid: (usize, usize),
    run: &(dyn Fn(&PlannedTrial) -> TrialResult + Sync),
    accuracy: &str,
) -> anyhow::Result<(usize, usize)> {
    let mut counts = [0usize; 2];
    for (k, sweep) in sweeps.iter().enumerate() {
        let plan = Plan::new(sweep, "bench");
        let mut search = Search::new(&plan).ok_or_else(|| anyhow!("not a search"))?;
        let started = std::time::Instant::now();
        let trials = drive(&mut search, run);
        let found = optima(sweep, &trials);
        counts[k] = trials.len();
        let start = if k == 0 { "start = \"rule\"" } else { "start = range's middle" };
        println!(
            "{title}, bracket search ({start}): {} trials in {:.1} s",
            trials.len(),
            started.elapsed().as_secs_f64()
        );
        for (b, (r, [lo, hi])) in reference {
            let (lr, edge, n) = found.get(b).copied().unwrap_or((f64::NAN, Edge::Grid, 0));
            println!(
                "  B = {b:>4}: optimum {lr:.5} ({n} lrs{}), reference {r:.5} [{lo:.5}, {hi:.5}], error {:+.2}%",
                if edge == Edge::Inside { "" } else { ", at an edge" },
                100.0 * (lr / r - 1.0)
            );
        }
        println!("  {accuracy} at every batch size: {}", within(&found, reference));
    }
    let (points, sizes) = grid;
    let grid_trials = points * sizes;
    println!("{title}, log grid + parabola: {points} lrs × {sizes} batch sizes = {grid_trials} trials ({accuracy})");
    println!(
        "{title}: bracket / grid = {:.3} (rule start), {:.3} (fixed start); target ≤ 0.333; start = \"rule\" saves {} \
         trials ({:.0}%) over the fixed start",
        counts[0] as f64 / grid_trials as f64,
        counts[1] as f64 / grid_trials as f64,
        counts[1] as i64 - counts[0] as i64,
        100.0 * (1.0 - counts[0] as f64 / counts[1].max(1) as f64)
    );
    Ok((counts[0], grid_trials))
}

pub(super) fn bench_search(b: SearchBench) -> anyhow::Result<u8> {
    let acc = b.accuracy;
    // 1. The closed form: every estimate is held to ±accuracy of the exact optimum.
    let parse = |text: String| Sweep::parse("bench.toml", &text).context("the benchmark's sweep");
    let exact = [parse(exact_sweep("\"rule\""))?, parse(exact_sweep("0.00995"))?];
    let range = exact[0].search.as_ref().map_or([1e-4, 0.99], |s| s.range);
    let sizes: Vec<u64> = [16, 32, 64, 128, 256, 512].into();
    let reference: Reference = sizes
        .iter()
        .map(|&b| {
            let r = exact_optimum(b);
            (b, (r, [r * (1.0 - acc), r * (1.0 + acc)]))
        })
        .collect();
    let plan = Plan::new(&exact[0], "bench");
    let on_grid =
        |n: usize| -> Vec<TrialResult> { grid_trials(&plan, &log_grid(range, n)).iter().map(exact_trial).collect() };
    let needed = (3..400)
        .find(|&n| within(&optima(&exact[0], &on_grid(n)), &reference))
        .ok_or_else(|| anyhow!("no log grid up to 400 points reaches ±{acc}"))?;
    let accuracy = format!("within ±{:.0}% of the exact optimum", 100.0 * acc);
    let (bracket, grid) = compare(
        "SGD exact expected loss",
        [&exact[0], &exact[1]],
        &reference,
        (needed, sizes.len()),
        &exact_trial,
        &accuracy,
    )?;
    let mut ok = 3 * bracket <= grid;
    if b.no_train {
        return Ok(if ok { crate::exit::OK } else { crate::exit::CHECK_FAILED });
    }
    // 2. The digits MLP: the fine grid's optima and intervals are the reference; coarser grids are
    // its subsets.
    let fine_sweep = parse(train_sweep(None))?;
    let fine_plan = Plan::new(&fine_sweep, "bench");
    let started = std::time::Instant::now();
    let fine: Vec<PlannedTrial> = fine_plan.trials().collect();
    let fine_results: Vec<TrialResult> = fine.par_iter().map(|t| train_trial(&fine_sweep, t)).collect();
    println!("digits MLP: reference grid of {} trials in {:.1} s", fine_results.len(), started.elapsed().as_secs_f64());
    let by_id: std::collections::HashMap<_, _> = fine_results.iter().map(|r| (r.id, r.clone())).collect();
    let report = kappa_report::build(&fine_sweep, &fine_plan, &by_id);
    let lr = report.lr_scaling.first().ok_or_else(|| anyhow!("the reference grid has no learning-rate analysis"))?;
    let reference: Reference = lr
        .points
        .iter()
        .filter(|p| !p.at_edge && !p.at_stability_edge)
        .filter_map(|p| Some((p.batch_size, (p.best_lr?, p.best_lr_ci?))))
        .collect();
    let lrs: Vec<u64> = log_grid([1e-4, 1.0], 65).iter().map(|l| l.to_bits()).collect();
    let coarse = [5, 9, 17, 33].into_iter().find(|&n| {
        let keep: Vec<u64> = lrs.iter().step_by(64 / (n - 1)).copied().collect();
        let subset: Vec<TrialResult> =
            fine_results.iter().filter(|r| keep.contains(&r.params.hyper.lr.to_bits())).cloned().collect();
        let found = optima(&fine_sweep, &subset);
        let shown: Vec<String> = found
            .iter()
            .map(|(b, (lr, edge, _))| format!("B = {b}: {lr:.5}{}", if *edge == Edge::Inside { "" } else { " (edge)" }))
            .collect();
        let ok = within(&found, &reference);
        println!(
            "digits MLP, a log grid of {n} of the fine grid's lrs: {} ({})",
            shown.join(", "),
            if ok { "inside" } else { "not inside" }
        );
        ok
    });
    let train = [parse(train_sweep(Some("\"rule\"")))?, parse(train_sweep(Some("0.01")))?];
    let run = |t: &PlannedTrial| train_trial(&train[0], t);
    let accuracy = "inside the reference's 95% interval".to_string();
    let (bracket, grid) =
        compare("digits MLP (Adam)", [&train[0], &train[1]], &reference, (coarse.unwrap_or(65), 3), &run, &accuracy)?;
    ok &= 3 * bracket <= grid;
    Ok(if ok { crate::exit::OK } else { crate::exit::CHECK_FAILED })
}

/// SGD's exact optimum at batch `b` in the search's range.
fn exact_optimum(b: u64) -> f64 {
    kappa_sim::theory::sgd_best_lr(&LAMBDA, 1.0, X0, b as f64, SAMPLES, [1e-4, 0.99])
}

//! The bracketing search against SGD's exact expected loss (THEORY.md §7, the analysis oracle's
//! setting): trials are "run" by the closed form, so its optimum and its trial count are checked
//! exactly against the exact optimum and a log grid refined by the analysis's parabola. And a
//! search's report: its groups read through the search's own decisions, so a trial that is a
//! probe of one group and a rule's variant of another's best (one id, two roles; the store keeps
//! the origin it was first proposed with) counts in both.

use kappa_core::objective::{Edge, best_lr};
use kappa_core::search::Search;
use kappa_core::{CurvePoint, Origin, Plan, PlannedTrial, Sweep, TrialMetrics, TrialResult, TrialStatus};
use std::collections::HashMap;

const SWEEP: &str = r#"
version = 1
name = "search-report"
[task]
kind = "optimizer"
landscape = { kind = "quadratic", eigenvalues = [1.0, 2.0] }
noise = { kind = "gaussian", sigma = 1.0 }
x0 = 1.0
paths = 1
samples = 8192
[grid]
optimizer = ["sgd"]
batch_size = [16, 32]
seed = [0]
[scaling]
kappa = [1, 2]
rules = ["sgd-linear"]
[search]
kind = "bracket"
axis = "lr"
range = [1e-4, 0.99]
start = 0.01
"#;

/// SGD's exact expected loss (THEORY.md §7) at the start and the end of the budget.
fn run(t: &PlannedTrial) -> TrialResult {
    let (eta, b) = (t.params.hyper.lr, t.params.hyper.batch_size as f64);
    let f = |k: f64| kappa_sim::theory::sgd_expected_loss(&[1.0, 2.0], 1.0, 1.0, eta, b, k);
    let steps = 8192.0 / b;
    let diverges = eta * 2.0 >= 2.0;
    TrialResult {
        id: t.id,
        params: t.params.clone(),
        status: if diverges { TrialStatus::Diverged } else { TrialStatus::Succeeded },
        metrics: Some(TrialMetrics {
            curve: vec![CurvePoint::single(0, 0, f(0.0)), CurvePoint::single(8192, steps as u64, f(steps))],
            ..TrialMetrics::default()
        }),
        error: None,
        origin: Some(t.origin.clone()),
    }
}

#[test]
fn a_probe_stored_under_another_role_is_still_its_groups_probe() {
    let sweep = Sweep::parse("s.toml", SWEEP).unwrap();
    let plan = Plan::new(&sweep, "v");
    let mut search = Search::new(&plan).unwrap();
    let mut results: HashMap<_, TrialResult> = HashMap::new();
    let mut queue = search.start();
    let mut ran = Vec::new();
    while let Some(t) = queue.pop() {
        let r = run(&t);
        queue.extend(search.record(t.id, &r));
        results.entry(t.id).or_insert(r);
        ran.push(t);
    }
    let probes_of = |g: u32| ran.iter().filter(|t| t.origin.group() == Some(g)).count();
    // The store kept another origin for one of group 1's probes (as if it had been proposed as a
    // rule's variant first).
    let follower = ran.iter().find(|t| matches!(t.origin, Origin::Scaled { .. })).unwrap().origin.clone();
    let probe = ran.iter().find(|t| t.origin.group() == Some(1)).unwrap();
    results.get_mut(&probe.id).unwrap().origin = Some(follower);
    let report = kappa_report::build(&sweep, &plan, &results);
    let s = report.search.expect("a search report");
    assert_eq!(s.groups.len(), 2);
    for g in &s.groups {
        assert_eq!(g.trials, probes_of(g.group), "group {}: {:?}", g.group, g.probes);
        assert!(g.finish.is_some(), "group {} finished", g.group);
    }
    // The rule's class at each group's best probe: κ = 1 and κ = 2, both there.
    assert_eq!(report.classes.len(), 2, "{:?}", report.classes.iter().map(|c| &c.base).collect::<Vec<_>>());
}

const LAMBDA: [f64; 2] = [1.0, 2.0];
const SAMPLES: f64 = 8192.0;

fn final_loss(eta: f64, b: u64) -> f64 {
    kappa_sim::theory::sgd_expected_loss(&LAMBDA, 1.0, 1.0, eta, b as f64, SAMPLES / b as f64)
}

fn exact_optimum(b: u64) -> f64 {
    kappa_sim::theory::sgd_best_lr(&LAMBDA, 1.0, 1.0, b as f64, SAMPLES, [1e-4, 0.99])
}

fn sweep_text(search: &str) -> String {
    format!(
        r#"
version = 1
name = "bracket-oracle"

[task]
kind = "optimizer"
landscape = {{ kind = "quadratic", eigenvalues = [1.0, 2.0] }}
noise = {{ kind = "gaussian", sigma = 1.0 }}
x0 = 1.0
paths = 100
samples = 8192

[grid]
optimizer = ["sgd"]
batch_size = [16, 32, 64, 128, 256]
seed = [0]

[search]
{search}
"#
    )
}

/// Runs a search to its end; returns every trial it ran.
fn drive(search: &mut Search) -> Vec<PlannedTrial> {
    let ran = search.run_rounds(|round| round.iter().map(run).collect());
    assert!(search.is_done(), "every group finished");
    ran.into_iter().map(|(t, _)| t).collect()
}

/// Each batch size's optimum from its probes, as the report reads it.
fn optima(ran: &[PlannedTrial]) -> HashMap<u64, (f64, Edge, usize)> {
    let mut by_b: HashMap<u64, Vec<(f64, f64)>> = HashMap::new();
    for t in ran {
        let r = run(t);
        let y = if r.status == TrialStatus::Diverged {
            f64::INFINITY
        } else {
            final_loss(t.params.hyper.lr, t.params.hyper.batch_size)
        };
        by_b.entry(t.params.hyper.batch_size).or_default().push((t.params.hyper.lr, y));
    }
    by_b.into_iter()
        .map(|(b, mut pts)| {
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (lr, edge) = best_lr(&pts).unwrap();
            (b, (lr, edge, pts.len()))
        })
        .collect()
}

/// Probes a log grid of `num` points over `range` needs for every batch size's parabola-refined
/// optimum to lie within 5% of the exact one (`None`: not up to 400 points).
fn grid_points_needed(range: [f64; 2], sizes: &[u64]) -> Option<usize> {
    (3..400).find(|&num| {
        let lrs: Vec<f64> = (0..num)
            .map(|i| (range[0].ln() + (range[1] / range[0]).ln() * i as f64 / (num - 1) as f64).exp())
            .collect();
        sizes.iter().all(|&b| {
            let pts: Vec<(f64, f64)> = lrs
                .iter()
                .map(|&eta| {
                    let div = LAMBDA.iter().any(|l| (1.0 - eta * l).abs() >= 1.0);
                    (eta, if div { f64::INFINITY } else { final_loss(eta, b) })
                })
                .collect();
            best_lr(&pts).is_some_and(|(lr, e)| e == Edge::Inside && (lr / exact_optimum(b) - 1.0).abs() < 0.05)
        })
    })
}

#[test]
fn the_bracket_finds_sgds_exact_optimum_within_5_percent_with_a_third_of_the_grids_trials() {
    let sizes = [16, 32, 64, 128, 256];
    for start in ["\"rule\"", "0.01"] {
        let text = sweep_text(&format!("kind = \"bracket\"\naxis = \"lr\"\nrange = [1e-4, 0.99]\nstart = {start}"));
        let sweep = Sweep::parse("oracle.toml", &text).unwrap();
        let plan = Plan::new(&sweep, "v");
        let mut search = Search::new(&plan).unwrap();
        let ran = drive(&mut search);
        let found = optima(&ran);
        let grid = grid_points_needed([1e-4, 0.99], &sizes).expect("a grid gets there");
        for b in sizes {
            let (lr, edge, n) = found[&b];
            let exact = exact_optimum(b);
            eprintln!(
                "start {start}: B = {b}: {n} probes, optimum {lr:.5} ({edge:?}), exact {exact:.5}, grid needs {grid}"
            );
            assert_eq!(edge, Edge::Inside, "B = {b}: bracketed");
            assert!((lr / exact - 1.0).abs() < 0.05, "B = {b}: {lr} is not within 5% of {exact}");
        }
        let probes = ran.len();
        assert!(
            3 * probes <= grid * sizes.len(),
            "start {start}: {probes} trials, a third of the grid's {} would be {}",
            grid * sizes.len(),
            grid * sizes.len() / 3
        );
        // The plan's first proposals are the search's first round.
        let first: Vec<_> = plan.trials().map(|t| t.id).collect();
        let mut again = Search::new(&plan).unwrap();
        assert_eq!(first, again.start().iter().map(|t| t.id).collect::<Vec<_>>());
    }
}

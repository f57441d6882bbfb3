//! The bracketing search against SGD's exact expected loss (THEORY.md §7): on the diagonal
//! quadratic with Gaussian noise, `E f_k = ½ Σ λ_i (a_i^{2k} x₀² + (η²σ²/B)(1 − a_i^{2k})/(1 − a_i²))`,
//! `a_i = 1 − ηλ_i`, after k = samples/B steps. Trials are "run" by that formula, so the search's
//! decisions, its optimum and its trial count are checked exactly; the log grid it is compared
//! with is refined by the same parabola as today's analysis.

use kappa_core::objective::{Edge, best_lr};
use kappa_core::search::{Point, Search, Step, step};
use kappa_core::spec::BracketSpec;
use kappa_core::{CurvePoint, Plan, PlannedTrial, Reason, Sweep, TrialMetrics, TrialResult, TrialStatus};
use std::collections::HashMap;

const LAMBDA: [f64; 2] = [1.0, 2.0];
const X0: f64 = 1.0;
const SAMPLES: f64 = 8192.0;

fn exact_loss(eta: f64, b: f64, k: f64) -> f64 {
    LAMBDA
        .iter()
        .map(|&l| {
            let a: f64 = 1.0 - eta * l;
            let a2k = a.powf(2.0 * k);
            0.5 * l * (a2k * X0 * X0 + eta * eta / b * (1.0 - a2k) / (1.0 - a * a))
        })
        .sum()
}

fn final_loss(eta: f64, b: u64) -> f64 {
    exact_loss(eta, b as f64, SAMPLES / b as f64)
}

/// The exact optimum for batch size `b`: golden section in log η.
fn exact_optimum(b: u64) -> f64 {
    let (mut lo, mut hi) = (1e-4f64.ln(), 0.99f64.ln());
    let g = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..200 {
        let (c, d) = (hi - g * (hi - lo), lo + g * (hi - lo));
        if final_loss(c.exp(), b) < final_loss(d.exp(), b) {
            hi = d;
        } else {
            lo = c;
        }
    }
    ((lo + hi) / 2.0).exp()
}

/// A trial "run" by the closed form: its loss at step 0 and at the end of the budget.
fn run(t: &PlannedTrial) -> TrialResult {
    let (eta, b) = (t.params.hyper.lr, t.params.hyper.batch_size);
    let diverges = LAMBDA.iter().any(|l| (1.0 - eta * l).abs() >= 1.0);
    let steps = (SAMPLES as u64) / b;
    let start = exact_loss(eta, b as f64, 0.0);
    let metrics = TrialMetrics {
        curve: vec![CurvePoint::single(0, 0, start), CurvePoint::single(SAMPLES as u64, steps, final_loss(eta, b))],
        stationary_loss: None,
        stationary_drift: None,
        theory: None,
        notes: Vec::new(),
    };
    TrialResult {
        id: t.id,
        params: t.params.clone(),
        status: if diverges { TrialStatus::Diverged } else { TrialStatus::Succeeded },
        metrics: (!diverges).then_some(metrics),
        error: None,
        origin: None,
    }
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

/// Runs a search to its end, in rounds as a cluster would (every proposal of a round runs
/// before any result is recorded); returns every trial it ran.
fn drive(search: &mut Search) -> Vec<PlannedTrial> {
    let mut ran = Vec::new();
    let mut queue = search.start();
    while !queue.is_empty() {
        let round = std::mem::take(&mut queue);
        for t in round {
            let r = run(&t);
            queue.extend(search.record(t.id, &r));
            ran.push(t);
        }
    }
    assert!(search.is_done(), "every group finished");
    ran
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

#[test]
fn a_replay_of_recorded_results_proposes_exactly_the_trials_of_an_uninterrupted_search() {
    let text = sweep_text("kind = \"bracket\"\naxis = \"lr\"\nrange = [1e-4, 0.99]\nstart = \"rule\"");
    let sweep = Sweep::parse("oracle.toml", &text).unwrap();
    let plan = Plan::new(&sweep, "v");
    let ran = drive(&mut Search::new(&plan).unwrap());
    let all: Vec<_> = ran.iter().map(|t| t.id).collect();
    // Interrupted after any number of results: the replay proposes what had been proposed, and
    // running on from there gives the same trials in the end.
    for cut in [0, 1, 5, all.len() / 2, all.len() - 1, all.len()] {
        let recorded: HashMap<_, _> = ran[..cut].iter().map(|t| (t.id, run(t))).collect();
        let mut search = Search::new(&plan).unwrap();
        let proposed = search.replay(&|id| recorded.get(&id).cloned());
        let mut queue: Vec<PlannedTrial> = proposed.iter().filter(|t| !recorded.contains_key(&t.id)).cloned().collect();
        let mut ids: Vec<_> = proposed.iter().map(|t| t.id).collect();
        while let Some(t) = queue.pop() {
            let more = search.record(t.id, &run(&t));
            ids.extend(more.iter().map(|t| t.id));
            queue.extend(more);
        }
        let (mut a, mut b) = (all.clone(), ids);
        a.sort();
        b.sort();
        assert_eq!(a, b, "cut after {cut} results");
    }
}

fn spec() -> BracketSpec {
    let text = sweep_text("kind = \"bracket\"\naxis = \"lr\"\nrange = [1e-4, 1.0]\nstart = 0.01\ntolerance = 0.05");
    Sweep::parse("s.toml", &text).unwrap().search.unwrap()
}

#[test]
fn a_round_expands_towards_improvement_locates_a_cliff_and_stops_within_the_noise() {
    let s = spec();
    let p = |value, y| Point { value, y, se: 0.0 };
    // Still falling at the top: two steps further up.
    assert_eq!(
        step(&[p(0.005, 3.0), p(0.01, 2.0), p(0.02, 1.0)], &s, 10),
        Step::Probe(vec![0.04, 0.08], Reason::Expand)
    );
    // At the range's end: done, flagged there.
    assert_eq!(
        step(&[p(0.25, 3.0), p(0.5, 2.0), p(1.0, 1.0)], &s, 10),
        Step::Done(kappa_core::search::Finish::RangeEdge)
    );
    // The neighbour above diverged: the gap is split in ratio until it is within ±5%.
    match step(&[p(0.005, 3.0), p(0.01, 2.0), p(0.02, f64::INFINITY)], &s, 10) {
        Step::Probe(v, Reason::Edge) => assert!(v.len() == 2 && v[0] > 0.01 && v[1] < 0.02, "{v:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        step(&[p(0.005, 3.0), p(0.01, 2.0), p(0.0105, f64::INFINITY)], &s, 10),
        Step::Done(kappa_core::search::Finish::StabilityEdge)
    );
    // Neighbours within their standard errors of the best: known within the noise.
    let q = |value, y| Point { value, y, se: 0.1 };
    assert_eq!(
        step(&[q(0.005, 1.05), q(0.01, 1.0), q(0.02, 1.1)], &s, 10),
        Step::Done(kappa_core::search::Finish::Noise)
    );
    // Bracketed and exact: the parabola's vertex and ±5% around it.
    match step(&[p(0.005, 3.0), p(0.01, 2.0), p(0.02, 2.5)], &s, 10) {
        Step::Probe(v, Reason::Refine) => assert!(v.len() == 3 && (v[2] / v[0] - 1.1025).abs() < 1e-3, "{v:?}"),
        other => panic!("{other:?}"),
    }
    // No budget left.
    assert_eq!(
        step(&[p(0.005, 3.0), p(0.01, 2.0), p(0.02, 1.0)], &s, 0),
        Step::Done(kappa_core::search::Finish::Budget)
    );
}

/// A bracketing search as a user writes it: line 12 is `[grid]`, line 17 `[search]`.
const SEARCHED: &str = "
version = 1
name = \"s\"

[task]
kind = \"optimizer\"
landscape = { kind = \"quadratic\", eigenvalues = [0.5, 1.0] }
noise = { kind = \"gaussian\", sigma = 1.0 }
x0 = 0.5
paths = 64
samples = 10_000
[grid]
optimizer = [\"sgd\"]
batch_size = [16, 64]
seed = [0, 1]

[search]
kind = \"bracket\"
axis = \"lr\"
range = [1e-4, 1.0]
start = \"rule\"
tolerance = 0.05
max_trials = 40
";

#[test]
fn bad_search_settings_are_named_with_their_file_key_line_and_value() {
    assert!(Sweep::parse("sweep.toml", SEARCHED).is_ok());
    let cases: &[(&str, &str, usize, &str)] = &[
        // Searched and in [grid]: the error is at `axis` and names the grid's line.
        ("seed = [0, 1]", "seed = [0, 1]\nlr = [0.1]", 20, "`lr` is searched, so it cannot also be a grid axis"),
        ("axis = \"lr\"", "axis = \"optimizer\"", 19, "`optimizer` is not a real-valued axis"),
        ("axis = \"lr\"", "axis = \"seed\"", 19, "`seed` is not a real-valued axis"),
        ("axis = \"lr\"", "axis = \"task.x0\"", 19, "a search cannot search a task field yet"),
        ("axis = \"lr\"", "axis = \"momentum\"", 19, "unknown axis `momentum`"),
        ("range = [1e-4, 1.0]", "range = [1.0, 1e-4]", 20, "range must be [low, high] with 0 < low < high"),
        ("range = [1e-4, 1.0]", "range = [0.1, 0.1]", 20, "got [0.1, 0.1]"),
        ("range = [1e-4, 1.0]", "range = [0.0, 1.0]", 20, "0 < low < high"),
        ("tolerance = 0.05", "tolerance = 0", 22, "tolerance is the ± ratio"),
        ("tolerance = 0.05", "tolerance = -0.1", 22, "must be in (0, 1), got -0.1"),
        ("start = \"rule\"", "start = 2.0", 21, "start = 2 is outside range = [0.0001, 1]"),
        ("start = \"rule\"", "start = \"middle\"", 21, "start must be a number or \"rule\""),
        ("batch_size = [16, 64]", "batch_size = [16]", 21, "start = \"rule\" starts each batch size"),
        ("max_trials = 40", "max_trials = 4", 23, "cannot hold a group's first round: 3 probes × 2 seed(s) = 6"),
        ("kind = \"bracket\"", "kind = \"random\"", 18, "unknown search kind \"random\""),
        ("kind = \"bracket\"", "kind = \"grid\"", 19, "`axis` is a setting of kind = \"bracket\""),
        ("tolerance = 0.05", "tolerance = 0.05\nfactr = 2", 23, "unknown field `factr`"),
    ];
    let mut wrong = Vec::new();
    for (from, to, line, fragment) in cases {
        assert!(SEARCHED.contains(from), "case setup: {from}");
        let text = SEARCHED.replacen(from, to, 1);
        let Err(err) = Sweep::parse("sweep.toml", &text) else {
            wrong.push(format!("{to:?} was accepted"));
            continue;
        };
        let shown = err.to_string();
        if !shown.contains(fragment) || !shown.starts_with(&format!("sweep.toml:{line}:")) {
            wrong.push(format!("{to:?}: expected line {line} and {fragment:?}, got:\n{shown}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn with_scaling_each_groups_best_probe_is_followed_by_its_rules_variants() {
    let text = sweep_text("kind = \"bracket\"\naxis = \"lr\"\nrange = [1e-4, 0.99]\nstart = \"rule\"")
        .replace("[search]", "[scaling]\nkappa = [1, 2, 4]\nrules = [\"sgd-linear\", \"none\"]\n\n[search]");
    let sweep = Sweep::parse("oracle.toml", &text).unwrap();
    let plan = Plan::new(&sweep, "v");
    let mut search = Search::new(&plan).unwrap();
    let ran = drive(&mut search);
    let followers: Vec<&PlannedTrial> =
        ran.iter().filter(|t| matches!(t.origin, kappa_core::Origin::Scaled { .. })).collect();
    // 5 groups × 1 seed × 2 rules × 2 κ > 1.
    assert_eq!(followers.len(), 5 * 2 * 2);
    assert!(search.bound() >= ran.len() as u64);
    for f in followers {
        let kappa_core::Origin::Scaled { base, rule, kappa } = &f.origin else { unreachable!() };
        let b = ran.iter().find(|t| t.id == *base).expect("the base is a probe");
        assert_eq!(f.params.hyper.batch_size, b.params.hyper.batch_size * kappa);
        let factor = if rule == "sgd-linear" { *kappa as f64 } else { 1.0 };
        assert!((f.params.hyper.lr / b.params.hyper.lr - factor).abs() < 1e-9, "{rule} κ = {kappa}");
        // The base is its group's best probe.
        let group: Vec<&PlannedTrial> =
            ran.iter().filter(|t| t.origin.group() == b.origin.group() && t.origin.group().is_some()).collect();
        let best = group
            .iter()
            .min_by(|x, y| {
                final_loss(x.params.hyper.lr, x.params.hyper.batch_size)
                    .total_cmp(&final_loss(y.params.hyper.lr, y.params.hyper.batch_size))
            })
            .unwrap();
        assert_eq!(best.id, b.id);
    }
}

#[test]
fn a_result_recorded_before_its_trial_is_proposed_counts_once_the_search_proposes_it() {
    let text = sweep_text("kind = \"bracket\"\naxis = \"lr\"\nrange = [1e-4, 0.99]\nstart = \"rule\"");
    let sweep = Sweep::parse("oracle.toml", &text).unwrap();
    let plan = Plan::new(&sweep, "v");
    let ran = drive(&mut Search::new(&plan).unwrap());
    // A trial of a later round finished early (a stale row of an earlier decision ran again).
    let late = ran.iter().find(|t| matches!(t.origin, kappa_core::Origin::Probe { round: 2, .. })).unwrap();
    let mut search = Search::new(&plan).unwrap();
    let mut queue = search.start();
    assert!(search.record(late.id, &run(late)).is_empty(), "nothing to decide from it yet");
    let mut ids = Vec::new();
    while !queue.is_empty() {
        for t in std::mem::take(&mut queue) {
            ids.push(t.id);
            if t.id != late.id {
                queue.extend(search.record(t.id, &run(&t)));
            }
        }
    }
    assert!(search.is_done(), "the early result completed its round when it was proposed");
    let (mut a, mut b): (Vec<_>, Vec<_>) = (ran.iter().map(|t| t.id).collect(), ids);
    a.sort();
    b.sort();
    assert_eq!(a, b);
}

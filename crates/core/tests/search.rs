//! The bracketing search, driven through its rounds: each trial is "run" by a loss whose
//! minimum is known (a parabola in log lr, at lr = 0.001·B), so decisions, replays and what a
//! search proposes are checked exactly; its rounds one by one (`step`); bad `[search]` settings.
//! Against SGD's exact expected loss it is tested beside the analysis oracle
//! (crates/report/tests/search.rs).

use kappa_core::search::{Point, Search, Step, step};
use kappa_core::spec::BracketSpec;
use kappa_core::{CurvePoint, Plan, PlannedTrial, Reason, Sweep, TrialMetrics, TrialResult, TrialStatus};
use std::collections::HashMap;

/// The loss at the end of a trial's budget: its minimum is at lr = 0.001·B; above lr = 0.5 it
/// diverges.
fn final_loss(lr: f64, b: u64) -> f64 {
    (lr / (0.001 * b as f64)).ln().powi(2) + 1.0
}

/// A trial "run" by [`final_loss`]: its loss at step 0 and at the end.
fn run(t: &PlannedTrial) -> TrialResult {
    let (lr, b) = (t.params.hyper.lr, t.params.hyper.batch_size);
    let diverges = lr > 0.5;
    let metrics = TrialMetrics {
        curve: vec![CurvePoint::single(0, 0, 100.0), CurvePoint::single(8192, 8192 / b, final_loss(lr, b))],
        ..TrialMetrics::default()
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

/// A search over lr for batch sizes 16..256 of trials that only sleep (their loss is
/// [`final_loss`]).
fn sweep_text(search: &str) -> String {
    format!(
        "version = 1\nname = \"bracket\"\n[task]\nkind = \"noop\"\n[grid]\noptimizer = [\"sgd\"]\n\
         batch_size = [16, 32, 64, 128, 256]\nseed = [0]\n[search]\n{search}\n"
    )
}

/// Runs a search to its end; returns every trial it ran.
fn drive(search: &mut Search) -> Vec<PlannedTrial> {
    let ran = search.run_rounds(|round| round.iter().map(run).collect());
    assert!(search.is_done(), "every group finished");
    ran.into_iter().map(|(t, _)| t).collect()
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
    // A trial proposed in two roles (a probe of one group, a rule's variant of another's best)
    // runs once.
    let mut runs = 0;
    Search::new(&plan).unwrap().run_rounds(|round| {
        runs += round.len();
        round.iter().map(run).collect()
    });
    let distinct: std::collections::HashSet<_> = ran.iter().map(|t| t.id).collect();
    assert!(distinct.len() < ran.len(), "the sweep has a trial in two roles");
    assert_eq!(runs, distinct.len());
    let followers: Vec<&PlannedTrial> =
        ran.iter().filter(|t| matches!(t.origin, kappa_core::Origin::Scaled { .. })).collect();
    // 5 groups × 1 seed × 2 rules × 2 κ > 1.
    assert_eq!(followers.len(), 5 * 2 * 2);
    assert!(search.bound() >= ran.len() as u64);
    for f in followers {
        let kappa_core::Origin::Scaled { base, rule, kappa } = &f.origin else { unreachable!() };
        // (A trial can be both: a rule's variant of one group's best, a probe of another group.)
        let b = ran.iter().find(|t| t.id == *base && t.origin.group().is_some()).expect("the base is a probe");
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

//! A search's report: its groups read through the search's own decisions, so a trial that is a
//! probe of one group and a rule's variant of another's best (one id, two roles; the store keeps
//! the origin it was first proposed with) counts in both.

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

//! The learning-rate and critical-batch analysis against the closed form (THEORY.md §7): SGD on
//! a diagonal quadratic with Gaussian noise has an exact expected loss after k steps,
//! `E f_k = ½ Σ λ_i (a_i^{2k} x₀² + (η²σ²/B)(1 − a_i^{2k})/(1 − a_i²))`, `a_i = 1 − ηλ_i`. The oracle
//! runs the report's own procedure (parabola refinement, crossing interpolation at the recorded
//! steps, the 1/B fit) on those exact values on the same grid; the report's estimates from
//! simulated trials must contain it in their bootstrap intervals.

mod common;

use common::run_trials;
use kappa_core::{Plan, Sweep};
use kappa_report::analysis::{best_lr, critical_fit, linear_fit};
use kappa_report::{build, check};

const LAMBDA: [f64; 2] = [1.0, 2.0];
const SIGMA: f64 = 1.0;
const X0: f64 = 1.0;
const TARGET: f64 = 2e-3;

fn sweep(expect: &str) -> String {
    format!(
        r#"
version = 1
name = "sgd-oracle"

[task]
kind = "optimizer"
landscape = {{ kind = "quadratic", eigenvalues = [1.0, 2.0] }}
noise = {{ kind = "gaussian", sigma = 1.0 }}
x0 = 1.0
paths = 400
samples = 8192
record_every = "1%"

[grid]
optimizer = ["sgd"]
batch_size = [16, 32, 64, 128]
lr = {{ log = [0.005, 0.2263], num = 12 }}
seed = [0, 1, 2, 3]

[analysis]
target_loss = {TARGET}
{expect}
"#
    )
}

fn exact_loss(eta: f64, b: f64, k: f64) -> f64 {
    kappa_sim::theory::sgd_expected_loss(&LAMBDA, SIGMA, X0, eta, b, k)
}

#[test]
fn sgd_on_the_quadratic_matches_the_closed_form_exponent_and_critical_batch() {
    let text = sweep("expect_exponent = [0.8, 1.2]");
    let sweep = Sweep::parse("oracle.toml", &text).unwrap();
    let plan = Plan::new(&sweep, kappa_sim::VERSION);
    let results = run_trials(&sweep, &plan);
    let report = build(&sweep, &plan, &results);
    assert_eq!(report.lr_scaling.len(), 1, "one group: sgd");
    let lr = &report.lr_scaling[0];
    assert_eq!(lr.theory_exponent, 1.0);

    // The oracle, on the same grid and the steps the trials recorded.
    let lrs: Vec<f64> = lr.points[0].objective.iter().map(|p| p[0]).collect();
    let steps_of = |b: u64, eta: f64| -> Vec<f64> {
        let t = plan.trials().find(|t| t.params.hyper.batch_size == b && t.params.hyper.lr == eta).unwrap();
        results[&t.id].metrics.as_ref().unwrap().curve.iter().map(|p| p.step as f64).collect()
    };
    let mut oracle_best = Vec::new();
    let mut oracle_steps = Vec::new();
    for p in &lr.points {
        let b = p.batch_size as f64;
        let finals: Vec<(f64, f64)> =
            lrs.iter().map(|&eta| (eta, exact_loss(eta, b, *steps_of(p.batch_size, eta).last().unwrap()))).collect();
        let (best, edge) = best_lr(&finals).unwrap();
        assert!(
            edge == kappa_report::analysis::Edge::Inside,
            "B = {}: the oracle's optimum is inside the grid",
            p.batch_size
        );
        let ci = p.best_lr_ci.unwrap();
        eprintln!("B={} best lr {:?} {ci:?}, oracle {best}", p.batch_size, p.best_lr);
        assert!(!p.at_edge && ci[0] <= best && best <= ci[1], "B = {}: {ci:?} misses the oracle {best}", p.batch_size);
        oracle_best.push((b.ln(), best.ln()));
        // Fewest steps to the target over the lr grid, crossing interpolated between record points.
        let s = lrs
            .iter()
            .filter_map(|&eta| {
                let ks = steps_of(p.batch_size, eta);
                let f: Vec<f64> = ks.iter().map(|&k| exact_loss(eta, b, k)).collect();
                let j = f.iter().position(|&v| v <= TARGET)?;
                if j == 0 {
                    return Some(ks[0]);
                }
                Some(ks[j - 1] + (TARGET - f[j - 1]) * (ks[j] - ks[j - 1]) / (f[j] - f[j - 1]))
            })
            .fold(f64::INFINITY, f64::min);
        assert!(s.is_finite(), "B = {}: the oracle reaches the target", p.batch_size);
        oracle_steps.push((b, s));
    }
    let (_, oracle_exponent) = linear_fit(&oracle_best).unwrap();
    let ci = lr.exponent_ci.unwrap();
    eprintln!("exponent {:?} {ci:?}, oracle {oracle_exponent}", lr.exponent);
    assert!(ci[0] <= oracle_exponent && oracle_exponent <= ci[1], "exponent interval {ci:?} misses {oracle_exponent}");

    let crit = &report.critical_batch[0];
    assert!(crit.unreached.is_empty(), "{crit:?}");
    let (s_min, e_min, b_crit) = critical_fit(&oracle_steps).unwrap();
    let ci = crit.b_crit_ci.unwrap();
    eprintln!("B_crit {:?} {ci:?}, oracle {b_crit} (S_min {s_min}, E_min {e_min}); {:?}", crit.b_crit, crit.points);
    assert!(ci[0] <= b_crit && b_crit <= ci[1], "B_crit interval {ci:?} misses the oracle {b_crit}");
    // CPU simulations record the gradient noise scale: it is read where the target is reached.
    assert!(crit.noise_scale_at_target.is_some_and(|b| b > 0.0), "{crit:?}");
    for (p, (_, s)) in crit.points.iter().zip(&oracle_steps) {
        assert!((p.steps / s - 1.0).abs() < 0.1, "B = {}: {} steps to the target, oracle {s}", p.batch_size, p.steps);
    }
    // --check holds the exponent to [0.8, 1.2].
    check(&report).unwrap();
    let text = render(&report);
    assert!(text.contains("learning-rate scaling") && text.contains("critical batch size"), "{text}");
    // The plots: loss vs lr for the group, the exponent fit, and the steps-samples front.
    let dir = std::env::temp_dir().join(format!("kappa-analysis-test-{}", std::process::id()));
    let files = kappa_report::render::write_all(&report, &dir).unwrap();
    for name in ["lr-sgd-1.png", "lr-exponent.svg", "critical-batch.png"] {
        assert!(files.iter().any(|f| f.ends_with(name)), "{name} not written: {files:?}");
    }
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("id=\"analysis\"") && html.contains("B_crit"), "report.html shows the analysis");
    let _ = std::fs::remove_dir_all(&dir);
}

fn render(r: &kappa_report::Report) -> String {
    kappa_report::render::verdict_table(r)
}

#[test]
fn check_fails_an_exponent_outside_the_expected_range() {
    let text = sweep("expect_exponent = [0.4, 0.6]\nexpect_b_crit = [1.0, 2.0]");
    let sweep = Sweep::parse("oracle.toml", &text).unwrap();
    let plan = Plan::new(&sweep, kappa_sim::VERSION);
    let results = run_trials(&sweep, &plan);
    let problems = check(&build(&sweep, &plan, &results)).unwrap_err();
    assert!(problems.iter().any(|p| p.contains("learning-rate exponent")), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("critical batch size")), "{problems:?}");
}

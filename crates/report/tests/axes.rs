//! Task axes through the simulator and the report: a σ axis whose stationary losses match
//! THEORY.md §4 at each σ and whose fitted slopes match the closed forms' (T3), and an
//! optimizer-against-SDE sweep in one file whose tracking table shows THEORY.md §3's claim:
//! far from the minimum, Compagnoni's SDE tracks Adam and Malladi's does not.

mod common;

use common::run_trials;
use kappa_core::{Plan, Sweep};
use kappa_report::build;

const SIGMA: &str = r#"
version = 1
name = "sigma"

[task]
kind = "optimizer"
landscape = { kind = "quadratic", eigenvalues = [0.5, 1.0, 2.0, 4.0] }
noise = { kind = "gaussian", sigma = 1.0 }
x0 = 0.0
paths = 64
samples = 60_000
record_every = "2%"
burn_in = 0.3

[grid]
task.noise.sigma = [0.5, 1.0, 2.0]
optimizer = ["sgd", "signsgd"]
lr = [1e-2]
seed = [0]
"#;

#[test]
fn a_sigma_axis_matches_the_closed_forms_at_each_sigma_and_in_slope() {
    let sweep = Sweep::parse("sigma.toml", SIGMA).unwrap();
    let plan = Plan::new(&sweep, kappa_sim::VERSION);
    let results = run_trials(&sweep, &plan);
    assert_eq!(results.len(), 6);
    for r in results.values() {
        let m = r.metrics.as_ref().unwrap();
        let st = m.stationary_loss.unwrap();
        let theory = m.theory.as_ref().and_then(|t| t.stationary_loss).unwrap();
        let sigma = r.params.named["task.noise.sigma"].as_f64().unwrap();
        // 4 SE plus the discretisation bias (≈ ηλ_max/2 relative for SGD, THEORY.md §6).
        let allowed = 4.0 * st.se + 0.02 * theory;
        eprintln!("{} σ = {sigma}: {:.5e} ± {:.1e}, theory {theory:.5e}", r.params.hyper.optimizer, st.mean, st.se);
        assert!((st.mean - theory).abs() < allowed, "{} at σ = {sigma}: {st:?} vs {theory}", r.params.hyper.optimizer);
    }
    let report = build(&sweep, &plan, &results);
    assert_eq!(report.noise_slopes.len(), 2, "{:?}", report.noise_slopes);
    for f in &report.noise_slopes {
        let expected = if f.label.starts_with("sgd") { 2.0 } else { 1.0 };
        eprintln!("{}: slope {:.3}, theory {:?}", f.label, f.slope, f.theory_slope);
        assert!((f.slope - expected).abs() < 0.05, "{}: slope {}", f.label, f.slope);
        assert!((f.theory_slope.unwrap() - expected).abs() < 0.05);
        assert!(!f.label.contains("sigma"), "σ is the fit's variable, not part of its label: {}", f.label);
    }
}

const TRACKING: &str = r#"
version = 1
name = "tracking"

[task]
landscape = { kind = "quadratic", eigenvalues = [0.5, 1.0, 2.0, 4.0] }
noise = { kind = "gaussian", sigma = 0.5 }
paths = 1024
samples = 3_000
record_every = 10

[grid]
task.kind = ["optimizer", "sde"]
task.sde_model = ["compagnoni", "malladi"]
task.x0 = [0.0, 1.0]
optimizer = ["adam"]
lr = [1e-2]
beta1 = [0.9]
beta2 = [0.99]
seed = [0]
"#;

#[test]
fn one_sweep_tracks_the_optimizer_against_both_sdes() {
    let sweep = Sweep::parse("tracking.toml", TRACKING).unwrap();
    let plan = Plan::new(&sweep, kappa_sim::VERSION);
    let results = run_trials(&sweep, &plan);
    assert_eq!(results.len(), 2 * 3, "per x0: the optimizer and two SDEs");
    let report = build(&sweep, &plan, &results);
    assert_eq!(report.tracking.len(), 4, "two models at two starting points");
    let error = |x0: f64, model: &str| {
        let t = report
            .tracking
            .iter()
            .find(|t| t.params.named["task.x0"].as_f64() == Some(x0) && t.sde_model == model)
            .unwrap();
        eprintln!(
            "x0 = {x0} {model}: mean {:.4} ± {:.4}, max {:.4} over {} points",
            t.mean_rel_error.unwrap(),
            t.mean_rel_error_se.unwrap(),
            t.max_rel_error.unwrap(),
            t.points
        );
        assert_eq!(t.points, 300);
        (t.mean_rel_error.unwrap(), t.mean_rel_error_se.unwrap())
    };
    let (far_c, se_c) = error(1.0, "compagnoni");
    let (far_m, se_m) = error(1.0, "malladi");
    assert!(far_m - far_c > 4.0 * (se_c * se_c + se_m * se_m).sqrt(), "far from the minimum: {far_c} vs {far_m}");
    // At the minimum the noise dominates and both track to within the path noise.
    let (near_c, _) = error(0.0, "compagnoni");
    let (near_m, _) = error(0.0, "malladi");
    assert!(near_c < 0.05 && near_m < 0.05, "{near_c} {near_m}");
    // One overlay per pairing: the optimizer and both SDEs.
    assert_eq!(report.overlays.len(), 2);
    assert!(report.overlays.iter().all(|o| o.series.len() == 3));
    // What a reader gets: the terminal table, summary.json, the HTML table and an overlay plot
    // per pairing.
    let table = kappa_report::render::verdict_table(&report);
    assert!(table.contains("SDE tracking: setting") && table.contains("malladi"), "{table}");
    let dir = std::env::temp_dir().join(format!("kappa-report-tracking-{}", std::process::id()));
    let files = kappa_report::render::write_all(&report, &dir).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    let rows = json["tracking"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for key in ["optimizer", "params", "sde_model", "mean_rel_error", "max_rel_error", "mean_rel_error_se"] {
        assert!(rows.iter().all(|r| !r[key].is_null()), "{key} in {rows:?}");
    }
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("<table id=\"tracking\">") && html.contains("compagnoni"));
    let overlays =
        files.iter().filter(|f| f.to_string_lossy().contains("overlay-") && f.extension().is_some_and(|e| e == "png"));
    assert_eq!(overlays.count(), 2, "{files:?}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn repeats_count_once_in_classes_and_one_kind_axes_do_not_break_pairing() {
    // `task.noise.nu` is left out of the Gaussian trials: their class still has two seeds.
    let text = r#"
version = 1
name = "repeats"
[task]
kind = "optimizer"
landscape = { kind = "quadratic", eigenvalues = [0.5, 1.0] }
noise = { kind = "gaussian", sigma = 1.0 }
paths = 8
samples = 400
[grid]
task.noise.kind = ["gaussian", "student_t"]
task.noise.nu = [3.0, 4.0]
optimizer = ["sgd"]
lr = [1e-2]
seed = [0, 1]
[scaling]
kappa = [1, 2]
rules = ["sgd-linear"]
"#;
    let sweep = Sweep::parse("repeats.toml", text).unwrap();
    let plan = Plan::new(&sweep, kappa_sim::VERSION);
    let report = build(&sweep, &plan, &run_trials(&sweep, &plan));
    assert_eq!(report.classes.len(), 3, "gaussian, and student_t at two nu");
    assert!(
        report.classes.iter().all(|c| c.seeds == 2),
        "{:?}",
        report.classes.iter().map(|c| c.seeds).collect::<Vec<_>>()
    );
    // An axis only the SDE reads (`task.refine`) labels the SDE and keeps the pairing.
    let refine = TRACKING
        .replace("task.x0 = [0.0, 1.0]", "task.x0 = [1.0]\ntask.refine = [1, 2]")
        .replace("paths = 1024", "paths = 16")
        .replace("samples = 3_000", "samples = 300");
    let sweep = Sweep::parse("refine.toml", &refine).unwrap();
    let plan = Plan::new(&sweep, kappa_sim::VERSION);
    let report = build(&sweep, &plan, &run_trials(&sweep, &plan));
    let models: Vec<&str> = report.tracking.iter().map(|t| t.sde_model.as_str()).collect();
    assert_eq!(models.len(), 4, "{models:?}");
    assert!(models.contains(&"malladi, task.refine = 2"), "{models:?}");
}

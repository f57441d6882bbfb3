//! Rendering a report: the PNGs decode at the stated size, the SVGs parse as XML, the HTML page
//! carries the verdict table and every plot inline. Built from synthetic results (no simulation).

use kappa_core::{CurvePoint, Estimate, Plan, Sweep, Theory, TrialMetrics, TrialStatus, Verdict};
use kappa_report::render::{SIZE, verdict_table, write_all};
use kappa_report::{TrialResult, build, check};
use std::collections::HashMap;

const SWEEP: &str = r#"
version = 1
name = "synthetic"
[task]
kind = "optimizer"
landscape = { kind = "quadratic", eigenvalues = [1.0] }
noise = { kind = "gaussian", sigma = 1.0 }
samples = 1000
[grid]
optimizer = ["sgd"]
lr = [0.01]
batch_size = [1, 4]
seed = [0, 1]
[scaling]
kappa = [2, 4]
rules = [{ preset = "sgd-linear", expect = "holds" }, { preset = "none", expect = "holds" }]
"#;

/// A plateau that the linear rule keeps and `none` lowers by 1/κ.
fn metrics(batch: u64, lr: f64) -> TrialMetrics {
    let plateau = lr / batch as f64 * 10.0;
    let curve = (0..=20)
        .map(|i| {
            let samples = i * 50;
            let loss = plateau + (-(samples as f64) * lr / batch as f64).exp();
            CurvePoint { loss_se: loss * 1e-3, ..CurvePoint::single(samples, samples / batch, loss) }
        })
        .collect();
    TrialMetrics {
        resumed_from: None,
        curve,
        stationary_loss: Some(Estimate { mean: plateau, se: plateau * 1e-3 }),
        stationary_drift: Some(Estimate { mean: 0.0, se: plateau * 1e-3 }),
        theory: Some(Theory { stationary_loss: Some(plateau), curve: Vec::new() }),
        notes: Vec::new(),
    }
}

/// A planned trial that succeeded with the synthetic metrics of its batch size and learning rate.
fn succeeded(t: &kappa_core::PlannedTrial) -> TrialResult {
    TrialResult {
        id: t.id,
        params: t.params.clone(),
        status: TrialStatus::Succeeded,
        metrics: Some(metrics(t.params.hyper.batch_size, t.params.hyper.lr)),
        error: None,
        origin: None,
    }
}

#[test]
fn report_files_render_and_check_reports_mismatches() {
    let sweep = Sweep::parse("synthetic.toml", SWEEP).unwrap();
    let plan = Plan::new(&sweep, "test");
    let mut results = HashMap::new();
    for t in plan.trials() {
        results.insert(t.id, succeeded(&t));
    }
    let report = build(&sweep, &plan, &results);
    let rule = |n: &str| report.rules.iter().find(|r| r.name == n).unwrap();
    assert_eq!(rule("sgd-linear").verdict, Some(Verdict::Holds));
    assert_eq!(rule("none").verdict, Some(Verdict::Fails));
    assert_eq!(rule("sgd-linear").classes, [2, 0, 0, 0], "two base points (B = 1, 4), seeds pooled");
    let problems = check(&report).unwrap_err();
    assert_eq!(problems.len(), 1);
    assert!(problems[0].contains("rule `none` fails but the sweep expects it holds"), "{problems:?}");
    let table = verdict_table(&report);
    assert!(table.contains("sgd-linear") && table.contains("holds"), "{table}");

    let dir = tempfile_dir();
    let files = write_all(&report, &dir).unwrap();
    let names: Vec<String> = files.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    for expected in [
        "summary.json",
        "report.html",
        "plateau-ratio.png",
        "plateau-ratio.svg",
        "curves-sgd-linear.png",
        "noise-slope.svg",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
    }
    for f in &files {
        let ext = f.extension().unwrap().to_string_lossy().into_owned();
        match ext.as_str() {
            "png" => {
                let decoder = png::Decoder::new(std::fs::File::open(f).unwrap());
                let reader = decoder.read_info().unwrap();
                let info = reader.info();
                assert_eq!((info.width, info.height), SIZE, "{}", f.display());
            }
            "svg" => {
                let text = std::fs::read_to_string(f).unwrap();
                let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                assert_eq!(doc.root_element().tag_name().name(), "svg");
                assert!(doc.descendants().any(|n| n.tag_name().name() == "text"), "{}: no text drawn", f.display());
            }
            _ => {}
        }
    }
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(
        html.contains("<table id=\"verdicts\">")
            && html.contains("sgd-linear")
            && html.contains("class=\"fails\">fails")
    );
    assert_eq!(html.matches("<svg").count(), names.iter().filter(|n| n.ends_with(".svg")).count());
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(json["rules"][0]["verdict"], "holds");
    assert_eq!(json["missing"], 0);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn partial_results_say_what_is_missing() {
    let sweep = Sweep::parse("synthetic.toml", SWEEP).unwrap();
    let plan = Plan::new(&sweep, "test");
    let mut results = HashMap::new();
    for (i, t) in plan.trials().enumerate() {
        if i % 3 != 0 {
            results.insert(t.id, succeeded(&t));
        }
    }
    let report = build(&sweep, &plan, &results);
    assert!(report.missing > 0);
    assert!(report.rules.iter().all(|r| r.verdict.is_none()));
    assert!(verdict_table(&report).contains("missing"));
    assert!(check(&report).is_err());
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("kappa-report-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Numeric tick labels of an SVG plot: (labels sharing an x position, labels sharing a y
/// position), the largest group of each (the y axis's and the x axis's).
fn tick_labels(svg: &str) -> (usize, usize) {
    let doc = roxmltree::Document::parse(svg).unwrap();
    let mut by_x: HashMap<String, usize> = HashMap::new();
    let mut by_y: HashMap<String, usize> = HashMap::new();
    for n in doc.descendants().filter(|n| n.tag_name().name() == "text") {
        let t = n.text().unwrap_or("").trim().trim_end_matches('k');
        if t.parse::<f64>().is_err() {
            continue;
        }
        *by_x.entry(n.attribute("x").unwrap_or("").to_string()).or_default() += 1;
        *by_y.entry(n.attribute("y").unwrap_or("").to_string()).or_default() += 1;
    }
    (by_x.values().copied().max().unwrap_or(0), by_y.values().copied().max().unwrap_or(0))
}

#[test]
fn every_log_axis_has_tick_labels_whatever_its_span() {
    use kappa_report::render::log_ticks;
    for (lo, hi) in [(0.02, 0.03), (1.0, 10.0), (1e-4, 1.0), (3.7e-2, 4.1e-2), (1.0, 1e30)] {
        let t = log_ticks(lo, hi);
        assert!((3..=12).contains(&t.len()), "[{lo}, {hi}]: {t:?}");
        assert!(t.windows(2).all(|w| w[0] < w[1]) && t.iter().all(|v| *v >= lo * 0.999 && *v <= hi * 1.001), "{t:?}");
    }
    // The plots themselves: both axes of the curve and noise plots carry numbers.
    let sweep = Sweep::parse("synthetic.toml", SWEEP).unwrap();
    let plan = Plan::new(&sweep, "test");
    let results: HashMap<_, _> = plan.trials().map(|t| (t.id, succeeded(&t))).collect();
    // Its own directory: the other test of this binary removes tempfile_dir() when it ends.
    let dir = std::env::temp_dir().join(format!("kappa-report-ticks-{}", std::process::id()));
    write_all(&build(&sweep, &plan, &results), &dir).unwrap();
    for name in ["curves-sgd-linear.svg", "plateau-ratio.svg", "noise-slope.svg"] {
        let (y, x) = tick_labels(&std::fs::read_to_string(dir.join(name)).unwrap());
        assert!(y >= 2 && x >= 2, "{name}: {y} y-axis and {x} x-axis tick labels");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn curve_plots_carry_se_bands_closed_form_levels_and_the_holds_from_mark() {
    let sweep = Sweep::parse("synthetic.toml", SWEEP).unwrap();
    let plan = Plan::new(&sweep, "test");
    let results: HashMap<_, _> = plan.trials().map(|t| (t.id, succeeded(&t))).collect();
    let dir = std::env::temp_dir().join(format!("kappa-report-bands-{}", std::process::id()));
    write_all(&build(&sweep, &plan, &results), &dir).unwrap();
    let svg = std::fs::read_to_string(dir.join("curves-sgd-linear.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let elements = |tag: &'static str| doc.descendants().filter(move |n| n.tag_name().name() == tag);
    // One translucent ±2 SE band per line (κ = 1, 2, 4), each wider than nothing.
    let bands: Vec<_> = elements("polygon").filter(|n| n.attribute("opacity") == Some("0.18")).collect();
    assert_eq!(bands.len(), 3, "{} bands", bands.len());
    for b in &bands {
        let ys: Vec<f64> = b
            .attribute("points")
            .unwrap()
            .split_whitespace()
            .filter_map(|p| p.split(',').nth(1)?.parse().ok())
            .collect();
        let (lo, hi) = ys.iter().fold((f64::MAX, f64::MIN), |(a, b), y| (a.min(*y), b.max(*y)));
        assert!(hi > lo, "a band with no height");
    }
    // The closed form's plateau: a thin dashed level (many short segments) in each line's colour.
    let strokes = |width: &str| {
        let mut by: HashMap<String, usize> = HashMap::new();
        for n in elements("polyline").filter(|n| n.attribute("stroke-width") == Some(width)) {
            *by.entry(n.attribute("stroke").unwrap_or("").to_string()).or_default() += 1;
        }
        by
    };
    let thin = strokes("1");
    for colour in ["#0072B2", "#D55E00", "#009E73"] {
        assert!(thin.get(colour).copied().unwrap_or(0) > 10, "no dashed level in {colour}: {thin:?}");
    }
    // Lines differ by dash pattern too: κ = 1 solid (one polyline), the others in dashes.
    let thick = strokes("2");
    assert_eq!(thick.get("#0072B2").copied(), Some(2), "solid line and its legend: {thick:?}");
    assert!(thick.get("#D55E00").copied().unwrap_or(0) > 5, "{thick:?}");
    // "Holds from": a cross on each scaled line (two strokes each) and one in the legend.
    assert_eq!(elements("line").filter(|n| n.attribute("stroke-width") == Some("3")).count(), 6);
    assert!(svg.contains("holds from here on"), "the legend explains the mark");
    std::fs::remove_dir_all(&dir).ok();
}

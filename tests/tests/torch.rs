//! `sweeps/torch/train.py`, the PyTorch example command, run through `kappa`: its metrics lines
//! (with the gradient noise scale it estimates) reach the report's critical-batch analysis.
//! `.ci/run` installs PyTorch; elsewhere the test says why it skips.

use kappa_tests::{Sandbox, show};

#[test]
fn the_pytorch_example_reports_its_noise_scale_to_the_analysis() {
    if !kappa_tests::python_imports("torch") {
        kappa_tests::skip("python3 with PyTorch is not installed", "python3 -m pip install torch");
        return;
    }
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let sb = Sandbox::new();
    sb.write(
        "t.toml",
        r#"version = 1
name = "torch-small"
[task]
kind = "command"
argv = ["python3", "sweeps/torch/train.py", "--optimizer", "{optimizer}", "--lr", "{lr}",
        "--batch-size", "{batch_size}", "--seed", "{seed}", "--samples", "6000", "--width", "4",
        "--records", "10", "--checkpoint-every", "0"]
env = { OMP_NUM_THREADS = "1" }
[grid]
optimizer = ["sgd"]
batch_size = [16, 64]
lr = [0.05, 0.2]
[analysis]
target_loss = 1.5
"#,
    );
    let out = sb.kappa(&["run", "t.toml", "--state", "t", "--workdir", repo]);
    assert!(out.status.success(), "{}", show(&out));
    let trials = sb.export_jsonl("t");
    assert_eq!(trials.len(), 4);
    for t in &trials {
        assert_eq!(t["status"], "succeeded", "{t}");
        let curve = t["metrics"]["curve"].as_array().unwrap();
        assert!(curve.len() >= 10, "{t}");
        // B_simple on most points (a point whose two-batch estimate comes out negative has none).
        let scales: Vec<f64> = curve.iter().filter_map(|c| c["extra"]["noise_scale"].as_f64()).collect();
        assert!(scales.len() * 2 >= curve.len() && scales.iter().all(|s| s.is_finite() && *s > 0.0), "{curve:?}");
        // A stationary loss from the tail of the curve, with the settled check.
        assert!(t["metrics"]["stationary_loss"]["mean"].as_f64().is_some() && !t["settled"].is_null(), "{t}");
    }
    let out = sb.kappa(&["report", "--state", "t", "--out", "rep"]);
    assert!(out.status.success(), "{}", show(&out));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sb.path().join("rep/summary.json")).unwrap()).unwrap();
    let c = &summary["critical_batch"][0];
    let ns = c["noise_scale_at_target"].as_f64().unwrap_or_else(|| panic!("no noise scale at the target: {c}"));
    assert!(ns.is_finite() && ns > 0.0, "{c}");
    assert_eq!(summary["lr_scaling"][0]["points"].as_array().unwrap().len(), 2);
}

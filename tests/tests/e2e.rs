//! End to end with the real binary: run, resume, edit, kill -9, bad input.

use kappa_tests::{Sandbox, gated_sweep, show, sweep, wait_until};
use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

/// `trials` command trials of which seeds `0..open` finish at once and the rest wait until a file
/// `gate` exists in the working directory (or the sweep file is gone, with the sandbox): a run of
/// it cannot finish, however fast the machine, before the test opens the gate.
fn code(o: &std::process::Output) -> Option<i32> {
    o.status.code()
}

/// (trial id → status) of the current plan.
fn statuses(sb: &Sandbox, state: &str) -> HashMap<String, String> {
    try_statuses(sb, state).expect("a planned store")
}

/// [`statuses`], or `None` while the store is still being created (its file exists before its
/// tables do).
fn try_statuses(sb: &Sandbox, state: &str) -> Option<HashMap<String, String>> {
    let db = sb.db(state);
    let generation: i64 = db
        .query_row("SELECT value FROM meta WHERE key = 'generation'", [], |r| r.get::<_, String>(0))
        .ok()?
        .parse()
        .ok()?;
    let mut stmt = db.prepare("SELECT id, status FROM trials WHERE generation = ?1").ok()?;
    stmt.query_map([generation], |r| Ok((r.get(0)?, r.get(1)?))).ok()?.collect::<Result<_, _>>().ok()
}

/// (trial id → number of attempts logged, number counted).
fn attempt_log(sb: &Sandbox, state: &str) -> HashMap<String, (u32, u32)> {
    let db = sb.db(state);
    let mut stmt = db.prepare("SELECT trial_id, count(*), sum(counted) FROM attempts GROUP BY trial_id").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?)))).unwrap().map(Result::unwrap).collect()
}

#[test]
fn run_status_export_rerun_and_edit() {
    let sb = Sandbox::new();
    sb.write("s.toml", &sweep("basic", &[0.01, 0.03], 2, 2_000, 16));
    let out = sb.kappa(&["run", "s.toml", "--workers", "2"]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("8 trials: 8 succeeded"), "{}", show(&out));
    let st = statuses(&sb, "runs/basic");
    assert_eq!(st.len(), 8);
    assert!(st.values().all(|s| s == "succeeded"));
    let log = attempt_log(&sb, "runs/basic");
    assert!(log.values().all(|&(n, counted)| n == 1 && counted == 1), "{log:?}");

    // status --json
    let out = sb.kappa(&["status", "--json"]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["succeeded"], 8);
    assert_eq!(v["finished"], true);

    // export jsonl: one object per trial with the documented schema.
    let out = sb.kappa(&["export", "--format", "jsonl"]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 8);
    for t in &lines {
        for key in ["id", "params", "status", "attempts", "metrics", "timings"] {
            assert!(t.get(key).is_some(), "missing {key} in {t}");
        }
        for key in ["optimizer", "batch_size", "lr", "beta1", "beta2", "eps", "weight_decay", "seed"] {
            assert!(t["params"].get(key).is_some(), "missing params.{key} in {t}");
        }
        let curve = t["metrics"]["curve"].as_array().unwrap();
        assert_eq!(curve.len(), 11, "0%, 10%, …, 100%");
        assert_eq!(curve[10]["samples"], 2_000);
        for key in ["samples", "step", "loss_mean", "loss_se"] {
            assert!(curve[0].get(key).is_some());
        }
        assert!(t["metrics"]["stationary_loss"]["mean"].as_f64().unwrap() > 0.0);
        assert!(t["timings"]["duration_s"].as_f64().unwrap() >= 0.0);
    }
    // export csv to a file
    let out = sb.kappa(&["export", "--format", "csv", "--out", "r.csv"]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    let csv = std::fs::read_to_string(sb.path().join("r.csv")).unwrap();
    assert_eq!(csv.lines().count(), 9);
    assert!(csv.starts_with("id,seq,status,attempts,optimizer,batch_size,lr"));

    // Running again reuses everything and runs nothing.
    let out = sb.kappa(&["run", "s.toml"]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 new, 8 finished earlier and reused"), "{}", show(&out));
    assert_eq!(attempt_log(&sb, "runs/basic"), log);

    // Adding a learning rate runs only the new trials.
    sb.write("s.toml", &sweep("basic", &[0.01, 0.03, 0.1], 2, 2_000, 16));
    let out = sb.kappa(&["run", "s.toml"]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("12 trials (4 new, 8 finished earlier and reused"),
        "{}",
        show(&out)
    );
    let after = attempt_log(&sb, "runs/basic");
    assert_eq!(after.len(), 12);
    for (id, a) in &log {
        assert_eq!(after[id], *a, "trial {id} ran again");
    }
    assert!(after.values().all(|&(n, c)| n == 1 && c == 1));

    // A σ axis whose first value is the [task] one reuses every trial and runs the new σ only;
    // its trials run their own task.
    let text = sweep("basic", &[0.01, 0.03, 0.1], 2, 2_000, 16);
    sb.write("s.toml", &text.replace("seed = [", "task.noise.sigma = [1.0, 3.0]\nseed = ["));
    let out = sb.kappa(&["run", "s.toml"]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("24 trials (12 new, 12 finished earlier and reused"),
        "{}",
        show(&out)
    );
    let with_sigma = attempt_log(&sb, "runs/basic");
    assert!(after.iter().all(|(id, a)| with_sigma[id] == *a), "no earlier trial ran again");
    let out = sb.kappa(&["export", "--format", "jsonl"]);
    let rows: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let plateau = |sigma: f64, opt: &str| -> f64 {
        let r: Vec<f64> = rows
            .iter()
            .filter(|r| r["params"]["optimizer"] == opt && r["params"]["lr"] == 0.01)
            .filter(|r| r["params"]["task.noise.sigma"].as_f64() == Some(sigma))
            .map(|r| r["metrics"]["theory"]["stationary_loss"].as_f64().unwrap())
            .collect();
        assert!(!r.is_empty(), "no {opt} trial at σ = {sigma}");
        r[0]
    };
    // The closed forms of each trial's own task: ×9 for SGD, about ×3 for SignSGD.
    assert!((plateau(3.0, "sgd") / plateau(1.0, "sgd") - 9.0).abs() < 0.1);
    assert!((plateau(3.0, "signsgd") / plateau(1.0, "signsgd") - 3.0).abs() < 0.1);
    // Resuming the same file again runs nothing.
    let out = sb.kappa(&["run", "s.toml"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 new, 24 finished earlier and reused"), "{}", show(&out));
}

#[test]
fn kill_9_mid_run_then_resume_runs_each_trial_once() {
    let sb = Sandbox::new();
    // 48 trials on one worker: 4 finish, the fifth waits for the gate.
    sb.write("s.toml", &gated_sweep("crash", 48, 4));
    let mut child = sb
        .command(&["run", "s.toml", "--workers", "1", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let db_path = sb.path().join("runs/crash/kappa.db");
    let finished_before: HashMap<String, f64> = wait_until("4 trials to finish", Duration::from_secs(60), || {
        if !db_path.exists() {
            return None;
        }
        let db = sb.db("runs/crash");
        let mut stmt = db.prepare("SELECT id, finished_at FROM trials WHERE status = 'succeeded'").ok()?;
        let done: HashMap<String, f64> =
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
        (done.len() >= 4).then_some(done)
    });
    assert!(child.try_wait().unwrap().is_none(), "the run ended although its gate is closed");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = statuses(&sb, "runs/crash");
    let done_before = before.values().filter(|s| *s == "succeeded").count();
    assert!(done_before < 48, "everything finished before the kill");

    sb.write("gate", "");
    let out = sb.kappa(&["run", "s.toml", "--workers", "2"]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{done_before} finished earlier and reused")), "{}", show(&out));
    let after = statuses(&sb, "runs/crash");
    assert_eq!(after.len(), 48);
    assert!(after.values().all(|s| s == "succeeded"), "{after:?}");
    let log = attempt_log(&sb, "runs/crash");
    for (id, (_, counted)) in &log {
        assert_eq!(*counted, 1, "trial {id} has {counted} counted results");
    }
    assert_eq!(log.len(), 48);
    let db = sb.db("runs/crash");
    for (id, finished_at) in &finished_before {
        let (n, counted) = log[id];
        assert_eq!((n, counted), (1, 1), "trial {id} finished before the kill but ran again");
        let now: f64 = db.query_row("SELECT finished_at FROM trials WHERE id = ?1", [id], |r| r.get(0)).unwrap();
        assert_eq!(now, *finished_at, "trial {id} was finished again");
    }
}

#[test]
fn interrupt_stops_cleanly_and_resumes() {
    let sb = Sandbox::new();
    sb.write("s.toml", &gated_sweep("intr", 48, 2));
    let child =
        sb.command(&["run", "s.toml", "--workers", "1"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let db_path = sb.path().join("runs/intr/kappa.db");
    wait_until("a trial to succeed", Duration::from_secs(60), || {
        db_path.exists() && try_statuses(&sb, "runs/intr").is_some_and(|st| st.values().any(|s| s == "succeeded"))
    });
    // SAFETY: sending SIGINT to our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), Some(130), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("run the same command again to resume"), "{}", show(&out));
    // Nothing is left running in the store: interrupted trials were handed back.
    let st = statuses(&sb, "runs/intr");
    assert!(st.values().all(|s| s == "succeeded" || s == "pending"), "{st:?}");
    sb.write("gate", "");
    let out = sb.kappa(&["run", "s.toml"]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    assert!(statuses(&sb, "runs/intr").values().all(|s| s == "succeeded"));
    assert!(attempt_log(&sb, "runs/intr").values().all(|&(_, c)| c == 1));
}

#[test]
fn failed_trials_give_their_own_exit_code() {
    let sb = Sandbox::new();
    let text = sweep("slow", &[0.01], 1, 400_000, 256) + "\n[execution]\nretries = 1\ntimeout = \"20ms\"\n";
    sb.write("s.toml", &text);
    let out = sb.kappa(&["run", "s.toml", "--workers", "2"]);
    assert_eq!(code(&out), Some(3), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 failed"), "{}", show(&out));
    let log = attempt_log(&sb, "runs/slow");
    assert!(log.values().all(|&(n, _)| n == 2), "one retry each: {log:?}");
    let out = sb.kappa(&["status"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("timed out"), "{}", show(&out));
    // Give them more time and retry only the failed ones: the timeout is not part of a trial's id.
    let out = sb.kappa(&["retry", "--failed"]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 failed trials will run again"), "{}", show(&out));
    sb.write("s.toml", &text.replace("timeout = \"20ms\"", "timeout = \"10m\""));
    let out = sb.kappa(&["run", "s.toml"]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 succeeded"), "{}", show(&out));
}

#[test]
fn bad_input_is_a_clear_error() {
    let sb = Sandbox::new();
    let out = sb.kappa(&["run", "missing.toml"]);
    assert_eq!(code(&out), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read sweep file missing.toml"), "{}", show(&out));

    std::fs::create_dir(sb.path().join("adir")).unwrap();
    let out = sb.kappa(&["plan", "adir"]);
    assert_eq!(code(&out), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a directory"), "{}", show(&out));

    sb.write("bad.toml", &sweep("bad", &[-0.01], 1, 100, 4));
    let out = sb.kappa(&["run", "bad.toml"]);
    assert_eq!(code(&out), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:15:") && err.contains("grid.lr[0]") && err.contains("learning rate must be > 0"),
        "{err}"
    );
    assert!(!sb.path().join("runs/bad").exists(), "an invalid sweep must not create state");

    let out = sb.kappa(&["status"]);
    assert_eq!(code(&out), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no sweep found"), "{}", show(&out));
    let out = sb.kappa(&["status", "--state", "nowhere"]);
    assert_eq!(code(&out), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no kappa state in nowhere"), "{}", show(&out));

    // A corrupt state database.
    std::fs::create_dir_all(sb.path().join("runs/broken")).unwrap();
    sb.write("runs/broken/kappa.db", &"garbage that is not sqlite\n".repeat(100));
    sb.write("ok.toml", &sweep("broken", &[0.01], 1, 100, 4));
    for args in [
        &["run", "ok.toml"][..],
        &["status", "--state", "runs/broken"],
        &["export", "--state", "runs/broken", "--format", "csv"],
    ] {
        let out = sb.kappa(args);
        assert_eq!(code(&out), Some(1), "{args:?}: {}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("corrupt") && err.contains("runs/broken/kappa.db"), "{args:?}: {err}");
    }
}

#[test]
fn plan_prints_counts_and_trials_without_running() {
    let sb = Sandbox::new();
    sb.write("s.toml", &sweep("planned", &[0.01, 0.02, 0.04], 5, 1000, 8));
    let out = sb.kappa(&["plan", "s.toml"]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("30 trials = optimizer (2) × lr (3) × seed (5)"), "{text}");
    let out = sb.kappa(&["plan", "s.toml", "--json", "--show", "3"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["total"], 30);
    assert_eq!(v["trials"].as_array().unwrap().len(), 3);
    assert!(!sb.path().join("runs").exists(), "plan must not run or store anything");
}

#[test]
fn plan_shows_named_axes_the_trials_run_once_and_roundings() {
    let sb = Sandbox::new();
    // kind × sde_model: the optimizer trials do not read sde_model, so two grid points are one trial.
    sb.write(
        "axes.toml",
        r#"version = 1
name = "axes"
[task]
kind = "optimizer"
landscape = { kind = "quadratic", eigenvalues = [1.0] }
noise = { kind = "gaussian", sigma = 1.0 }
samples = 1000
[grid]
optimizer = ["adam"]
lr = [0.01]
task.kind = ["optimizer", "sde"]
task.sde_model = ["compagnoni", "malladi"]
task.noise.sigma = [1.0, 2.0]
"#,
    );
    let out = sb.kappa(&["plan", "axes.toml", "--show", "10"]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("6 trials = 8 grid points")
            && text.contains("2 of them the same trial as another and run once (task.sde_model left out where")
            && text.contains("first 6 trials"),
        "{text}"
    );
    let header = text.lines().find(|l| l.trim_start().starts_with("id ")).unwrap();
    for column in ["task.kind", "task.noise.sigma", "task.sde_model"] {
        assert!(header.contains(column), "{header}");
    }
    // Values equal as numbers (1 and 1.0) make one trial, and say so.
    sb.write("same.toml", &std::fs::read_to_string(sb.path().join("axes.toml")).unwrap().replace(
        "task.kind = [\"optimizer\", \"sde\"]\ntask.sde_model = [\"compagnoni\", \"malladi\"]\ntask.noise.sigma = [1.0, 2.0]",
        "task.noise.sigma = [1, 1.0]",
    ));
    let text = String::from_utf8_lossy(&sb.kappa(&["plan", "same.toml"]).stdout).to_string();
    assert!(text.contains("1 of them the same trial as another and run once (their values are equal)"), "{text}");
    // A rule's exponent for a whole-number parameter rounds it, and plan shows the rounding.
    sb.write(
        "warm.toml",
        r#"version = 1
name = "warm"
[task]
kind = "command"
argv = ["true", "{warmup}"]
[grid]
optimizer = ["sgd"]
lr = [0.01]
params.warmup = [1000]
[scaling]
kappa = [1, 3]
rules = [{ name = "w", lr = 0.5, params = { warmup = -1.0 } }]
"#,
    );
    let out = sb.kappa(&["plan", "warm.toml"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("params.warmup ∝ κ^-1") && text.contains("w κ=3 (rounded: params.warmup 333.333 → 333)"),
        "{text}"
    );
}

#[test]
fn report_judges_scaling_rules_and_gates_on_expectations() {
    let sb = Sandbox::new();
    let text = r#"version = 1
name = "rules"

[task]
kind = "optimizer"
landscape = { kind = "quadratic", eigenvalues = [0.5, 1.0, 2.0, 4.0] }
noise = { kind = "gaussian", sigma = 4.0 }
paths = 512
samples = 40_000
record_every = "5%"
burn_in = 0.3

[grid]
optimizer = ["sgd"]
lr = [1e-3]

[scaling]
kappa = [4]
rules = [{ preset = "sgd-linear", expect = "holds" }, { preset = "none", expect = "EXPECT" }]
# This test is about the command's plumbing; the statistics are tested in crates/report.
tolerance = 0.1
"#;
    sb.write("s.toml", &text.replace("EXPECT", "fails"));
    let out = sb.kappa(&["plan", "s.toml"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 trials = 1 base points"), "{}", show(&out));
    let out = sb.kappa(&["run", "s.toml", "--workers", "2"]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    let out = sb.kappa(&["report", "--out", "rep", "--check"]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("sgd-linear") && stdout.contains("check passed"), "{stdout}");
    for f in ["summary.json", "report.html", "plateau-ratio.png", "plateau-ratio.svg", "curves-sgd-linear.png"] {
        assert!(sb.path().join("rep").join(f).is_file(), "{f} missing");
    }
    // Expecting the wrong verdict makes --check fail with its own exit code; the trials are reused.
    sb.write("s.toml", &text.replace("EXPECT", "holds"));
    let out = sb.kappa(&["run", "s.toml"]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 new"), "{}", show(&out));
    let out = sb.kappa(&["report", "--out", "rep", "--check"]);
    assert_eq!(code(&out), Some(4), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rule `none` fails but the sweep expects it holds"),
        "{}",
        show(&out)
    );
}

//! A bracketing search end to end: the same trials whether it runs through, is killed with
//! `kill -9` and resumed, or runs on a coordinator with two workers.

use kappa_tests::{Sandbox, count, show, wait_until};
use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

/// A search over lr for two batch sizes, two seeds: each trial is a command that prints a loss
/// whose minimum is at lr = 0.001·B (so the decisions depend on the results), after a pause.
fn search_sweep(name: &str) -> String {
    format!(
        r#"version = 1
name = "{name}"

[task]
kind = "command"
argv = ["sh", "-c", "sleep 0.05; awk -v lr={{lr}} -v b={{batch_size}} -v s={{seed}} -f loss.awk"]

[grid]
optimizer = ["sgd"]
batch_size = [16, 64]
seed = [0, 1]

[search]
kind = "bracket"
axis = "lr"
range = [1e-5, 10.0]
start = "rule"
tolerance = 0.05
"#
    )
}

/// The loss the commands print: its minimum is at lr = 0.001·B.
const LOSS: &str = r#"BEGIN {
    l = log(lr / (0.001 * b))
    printf("{\"step\": 0, \"loss\": 50}\n{\"step\": 100, \"loss\": %.9f}\n", l * l + 1 + s / 100)
}
"#;

/// The ids of the trials of a state directory's current plan (all succeeded), each counted exactly
/// once.
fn trial_ids(sb: &Sandbox, state: &str) -> BTreeSet<String> {
    let db = sb.db(state);
    let rows = kappa_tests::ledger(&db);
    for (id, _, counted) in &rows {
        assert_eq!(*counted, 1, "trial {id} has {counted} counted results");
    }
    let mut stmt = db
        .prepare(
            "SELECT id, status FROM trials
             WHERE generation = (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'generation')",
        )
        .unwrap();
    let all: Vec<(String, String)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
    assert!(all.iter().all(|(_, s)| s == "succeeded"), "{all:?}");
    all.into_iter().map(|(id, _)| id).collect()
}

#[test]
fn a_search_killed_mid_run_resumes_with_exactly_the_trials_of_an_uninterrupted_one() {
    let sb = Sandbox::new();
    sb.write("s.toml", &search_sweep("bracket"));
    sb.write("loss.awk", LOSS);
    // Uninterrupted, in its own state directory.
    let out = sb.kappa(&["run", "s.toml", "--state", "reference", "--quiet"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let reference = trial_ids(&sb, "reference");
    assert!(reference.len() > 12, "more than the first rounds: {}", reference.len());
    // The report finds both optima (0.016 and 0.064) within the tolerance.
    let out = sb.kappa(&["report", "--state", "reference", "--out", "rep"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sb.path().join("rep/summary.json")).unwrap()).unwrap();
    let groups = summary["search"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{summary}");
    for g in groups {
        let b = g["batch_size"].as_f64().unwrap();
        let best = g["best"].as_f64().unwrap();
        assert!((best / (0.001 * b) - 1.0).abs() < 0.05, "B = {b}: {best}");
        assert!(g["finish"].is_string(), "{g}");
    }

    // Killed with -9 part way (one worker: the search is mid-round), then run again.
    let mut child = sb
        .command(&["run", "s.toml", "--workers", "1", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let db_path = sb.path().join("runs/bracket/kappa.db");
    wait_until("8 trials to finish", Duration::from_secs(60), || {
        db_path.exists()
            && sb
                .db("runs/bracket")
                .query_row("SELECT count(*) FROM trials WHERE status = 'succeeded'", [], |r| r.get::<_, i64>(0))
                .is_ok_and(|n| n >= 8)
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let done_at_kill = count(&sb.db("runs/bracket"), "succeeded");
    assert!((done_at_kill as usize) < reference.len(), "the search finished before the kill");
    let out = sb.kappa(&["run", "s.toml", "--quiet"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(trial_ids(&sb, "runs/bracket"), reference, "a resumed search ran other trials");
    // Running it again proposes nothing new.
    let out = sb.kappa(&["run", "s.toml"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 new"), "{}", show(&out));
    assert_eq!(trial_ids(&sb, "runs/bracket"), reference);
    // An edited file (a batch size more) reuses what the search proposes again and runs the rest.
    sb.write("s.toml", &search_sweep("bracket").replace("batch_size = [16, 64]", "batch_size = [16, 64, 256]"));
    let out = sb.kappa(&["run", "s.toml", "--quiet"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let edited = trial_ids(&sb, "runs/bracket");
    assert!(edited.len() > reference.len(), "the new batch size ran");
    let reused = edited.intersection(&reference).count();
    assert!(reused >= reference.len() / 2, "{reused} of {} reused", reference.len());
}

#[test]
fn a_search_on_a_coordinator_with_two_workers_runs_the_same_trials() {
    let sb = Sandbox::new();
    sb.write("s.toml", &search_sweep("bracket2"));
    sb.write("loss.awk", LOSS);
    let out = sb.kappa(&["run", "s.toml", "--state", "reference", "--quiet"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let reference = trial_ids(&sb, "reference");
    let (_coord, addr) = sb.coordinator("127.0.0.1:0", &[]);
    let _a = sb.worker(&addr, "a", &["--allow-commands", "--slots", "2"]);
    let _b = sb.worker(&addr, "b", &["--allow-commands", "--slots", "2"]);
    let url = format!("http://{addr}");
    let out = sb.kappa(&["submit", "s.toml", "--coordinator", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let n = reference.len() as i64;
    sb.wait_for("cluster/bracket2", "every trial of the search", Duration::from_secs(120), |c| {
        count(c, "succeeded") == n && count(c, "pending") + count(c, "running") == 0
    });
    // Both workers took part, and the search proposed what it proposes alone.
    let db = sb.db("cluster/bracket2");
    let workers: i64 =
        db.query_row("SELECT count(DISTINCT substr(worker, 1, 1)) FROM attempts", [], |r| r.get(0)).unwrap();
    assert_eq!(workers, 2, "both workers ran trials");
    // Progress says how many the search may run at most.
    let out = sb.kappa(&["status", "--coordinator", &url, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(trial_ids(&sb, "cluster/bracket2"), reference);
}

//! Sweeps larger than the store's bulk threshold and the coordinator's load chunk, from the
//! `kappa` command: planned beside the store, killed, resumed, edited.

use kappa_tests::{Sandbox, ledger, show, wait_until};
use std::process::Stdio;
use std::time::Duration;

/// More trials than a bulk plan needs (10,000) and than the coordinator reads at once (20,000).
const N: u64 = 45_000;

/// `n` noop trials that do nothing (seeds 0..n).
fn noop(name: &str, n: u64) -> String {
    format!(
        "version = 1\nname = \"{name}\"\n\n[task]\nkind = \"noop\"\n\n[grid]\noptimizer = [\"sgd\"]\nlr = [0.01]\n\
         seed = {{ linspace = [0, {}], num = {n} }}\n",
        n - 1
    )
}

fn generation(sb: &Sandbox, state: &str) -> i64 {
    let db = sb.db(state);
    db.query_row("SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'generation'", [], |r| r.get(0)).unwrap()
}

fn succeeded(sb: &Sandbox, state: &str) -> i64 {
    let db = sb.db(state);
    db.query_row("SELECT count(*) FROM trials WHERE status = 'succeeded'", [], |r| r.get(0)).unwrap_or(0)
}

#[test]
fn a_large_sweep_killed_mid_run_resumes_without_replanning_and_counts_each_trial_once() {
    let sb = Sandbox::new();
    sb.write("big.toml", &noop("big", N));
    let mut child =
        sb.command(&["run", "big.toml", "--quiet"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let db = sb.path().join("runs/big/kappa.db");
    // Killed once some results are in, and before the last chunk of pending trials is read.
    wait_until("100 trials to succeed", Duration::from_secs(120), || db.exists() && succeeded(&sb, "runs/big") >= 100);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let done_before = succeeded(&sb, "runs/big");
    assert!(done_before >= 100, "the run made no progress");
    assert!(done_before < N as i64, "the sweep finished before the kill: make it longer");
    assert!(!sb.path().join("runs/big/kappa.db.new").exists(), "the bulk plan's file was left behind");
    let planned = generation(&sb, "runs/big");

    let out = sb.kappa(&["run", "big.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{N} trials (0 new, {done_before} finished earlier and reused")), "{}", show(&out));
    // Resumed as planned: the store's plan was not written again.
    assert_eq!(generation(&sb, "runs/big"), planned);
    let rows = ledger(&sb.db("runs/big"));
    assert_eq!(rows.len() as u64, N);
    assert!(rows.iter().all(|(_, _, counted)| *counted == 1), "a trial counted other than once");
    let c = sb.db("runs/big");
    let seqs: i64 = c
        .query_row(
            "SELECT count(DISTINCT seq) FROM trials WHERE status = 'succeeded' AND generation = ?1",
            [planned],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(seqs as u64, N);
    // Status finds nothing unsettled or failed among them, and export streams every trial.
    let out = sb.kappa(&["status", "--state", "runs/big", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((status["succeeded"].as_u64(), status["failures"].as_array().map(Vec::len)), (Some(N), Some(0)));
    assert_eq!(sb.export_jsonl("runs/big").len() as u64, N);
}

#[test]
fn an_edit_replans_only_what_it_changes_and_an_unchanged_file_is_resumed_as_it_is() {
    let sb = Sandbox::new();
    sb.write("s.toml", &noop("edit", 30));
    let out = sb.kappa(&["run", "s.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let first = generation(&sb, "runs/edit");
    // Unchanged: resumed, not planned again.
    let out = sb.kappa(&["run", "s.toml"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("30 trials (0 new, 30 finished earlier"), "{}", show(&out));
    assert_eq!(generation(&sb, "runs/edit"), first);
    // Five more seeds: the thirty trials already run keep their ids and results; five run.
    sb.write("s.toml", &noop("edit", 35));
    let out = sb.kappa(&["run", "s.toml"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("35 trials (5 new, 30 finished earlier"), "{}", show(&out));
    assert_eq!(generation(&sb, "runs/edit"), first + 1);
    let rows = ledger(&sb.db("runs/edit"));
    assert_eq!(rows.len(), 35);
    assert!(rows.iter().all(|(_, logged, counted)| (*logged, *counted) == (1, 1)), "{rows:?}");
    // A comment changes the text, not the trials: synced again, nothing runs.
    let text = std::fs::read_to_string(sb.path().join("s.toml")).unwrap();
    sb.write("s.toml", &format!("# the same sweep\n{text}"));
    let out = sb.kappa(&["run", "s.toml"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("35 trials (0 new, 35 finished earlier"), "{}", show(&out));
    assert_eq!(ledger(&sb.db("runs/edit")).len(), 35);
}

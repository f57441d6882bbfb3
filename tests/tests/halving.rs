//! Successive halving end to end: promoted trials continue from where their rung stopped (a
//! command from its own checkpoint, native training from kappa's), the curve of a finished trial
//! is one curve from step 0, the samples of its attempts add up, and the promotions are the same
//! whether the run goes through, is killed with `kill -9` and resumed, or loses a worker between
//! rungs.

use kappa_tests::{Sandbox, show, wait_until};
use rusqlite::Connection;
use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

/// A program that trains nothing but behaves like training with kappa's checkpoint protocol: it
/// prints a loss at every tenth of its whole budget (smallest at lr = 0.001·B, falling with the
/// steps), stops at `KAPPA_SAMPLES` (its rung's budget), checkpoints its curve in
/// `KAPPA_TRIAL_DIR`, and on a later attempt re-emits that curve and goes on from there, saying
/// which step it resumed from.
const PROGRAM: &str = r#"
import json, math, os, sys, time
lr, b, seed, total = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
stop = int(os.environ["KAPPA_SAMPLES"])
ckpt = os.path.join(os.environ["KAPPA_TRIAL_DIR"], "ckpt.json")
steps = total // b
every = steps // 10
start, curve = 0, []
if os.path.exists(ckpt):
    with open(ckpt) as f:
        state = json.load(f)
    start, curve = state["step"], state["curve"]
for line in curve:
    print(json.dumps(line))
print(json.dumps({"resumed_from": start}), flush=True)
end = steps if stop // b >= steps else max(every, (stop // b) // every * every)
for step in range(start + 1, end + 1):
    if step % every == 0:
        x = math.log(lr / (0.001 * b))
        line = {"step": step, "loss": (x * x + 1 + seed / 100) * (1 + 10 / step)}
        print(json.dumps(line), flush=True)
        curve.append(line)
with open(ckpt + ".tmp", "w") as f:
    json.dump({"step": end, "curve": curve}, f)
os.replace(ckpt + ".tmp", ckpt)
time.sleep(0.2)
"#;

/// Halving over lr for two batch sizes and two seeds, with the program above.
fn command_sweep(name: &str) -> String {
    format!(
        r#"version = 1
name = "{name}"

[task]
kind = "command"
argv = ["python3", "prog.py", "{{lr}}", "{{batch_size}}", "{{seed}}", "90000"]

[grid]
optimizer = ["sgd"]
batch_size = [16, 64]
lr = {{ log = [0.001, 1.0], num = 9 }}
seed = [0, 1]

[search]
kind = "halving"
min_samples = 10_000
reduction = 3
within = ["batch_size"]
max_samples = 90_000
"#
    )
}

/// Each trial of a state directory's current plan: (status, rung).
fn standings(db: &Connection) -> BTreeMap<String, (String, i64)> {
    let mut stmt = db
        .prepare(
            "SELECT id, status, coalesce(rung, -1) FROM trials
             WHERE generation = (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'generation')",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?)))).unwrap().map(Result::unwrap).collect()
}

/// Each trial's rung results: (rung, from_step, to_step, samples, worker), in recorded order.
type Rungs = BTreeMap<String, Vec<(i64, i64, i64, i64, String)>>;

fn rungs(db: &Connection) -> Rungs {
    let mut stmt = db
        .prepare(
            "SELECT r.trial_id, r.rung, r.from_step, coalesce(r.to_step, -1), coalesce(r.samples, -1), a.worker
             FROM rungs r JOIN attempts a ON a.trial_id = r.trial_id AND a.attempt = r.attempt ORDER BY r.seq",
        )
        .unwrap();
    let mut out = Rungs::new();
    for row in stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))))
        .unwrap()
    {
        let (id, row) = row.unwrap();
        out.entry(id).or_default().push(row);
    }
    out
}

/// Every trial that went past the first rung continued from where the rung before stopped, and
/// the steps (and samples) of its attempts add up to where it ended; returns how many did.
fn continued_and_add_up(rungs: &Rungs) -> usize {
    continued(rungs, true)
}

/// [`continued_and_add_up`]; without `exact`, an attempt may continue from further on than its
/// rung before ended (a coordinator killed after a rung's attempt ran and before its report was
/// committed: the attempt runs again and finds the checkpoint the lost one left).
fn continued(rungs: &Rungs, exact: bool) -> usize {
    let mut continued = 0;
    for (id, rows) in rungs {
        let mut reached = 0;
        for (k, (rung, from, to, samples, _)) in rows.iter().enumerate() {
            assert_eq!(*rung, k as i64, "{id}: rungs in order: {rows:?}");
            if exact {
                assert_eq!(*from, reached, "{id} rung {rung} continues where the one before stopped: {rows:?}");
                assert!(*to > *from && *samples > 0, "{id}: {rows:?}");
            } else {
                assert!(*from >= reached && *to >= *from, "{id} rung {rung}: {rows:?}");
            }
            if *rung > 0 {
                assert!(*from > 0, "{id} resumed from step {from} at rung {rung}");
                continued += 1;
            }
            reached = *to;
        }
        if exact {
            let steps: i64 = rows.iter().map(|r| r.2 - r.1).sum();
            assert_eq!(steps, reached, "{id}: the attempts' steps add up: {rows:?}");
        }
    }
    continued
}

#[test]
fn a_halving_sweep_killed_mid_rung_resumes_with_the_promotions_of_an_uninterrupted_one() {
    if std::process::Command::new("python3").arg("--version").output().is_err() {
        kappa_tests::skip::skip("python3 (the command program of this test)", "apt-get install python3");
        return;
    }
    let sb = Sandbox::new();
    sb.write("s.toml", &command_sweep("halving"));
    sb.write("prog.py", PROGRAM);
    // `kappa plan` shows the rungs and the most samples the search can spend.
    let out = sb.kappa(&["plan", "s.toml", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["search"]["rungs"], serde_json::json!([10_000, 30_000, 90_000]), "{plan}");
    let samples = |k: &str| plan["search"][k].as_u64().unwrap();
    let (expected, most, grid) = (samples("expected_samples"), samples("most_samples"), samples("grid_samples"));
    assert!(expected < grid / 3 && expected < most && most < grid, "{expected}, {most} of {grid}");
    let out = sb.kappa(&["plan", "s.toml"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("rungs: 10,000 → 30,000 → 90,000"), "{}", show(&out));

    // Uninterrupted, one worker, in its own state directory.
    let out = sb.kappa(&["run", "s.toml", "--state", "reference", "--workers", "1", "--quiet"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let reference = standings(&sb.db("reference"));
    assert_eq!(reference.len(), 36);
    // Of each batch size's 9 settings at least 3 go on at the first rung (asynchronous halving
    // may keep more: a setting promoted early stays promoted), and both seeds of at least one run
    // the whole budget; every other trial is stopped at a rung.
    let at_least = |k: i64| reference.values().filter(|(_, r)| *r >= k).count();
    assert!(at_least(1) >= 12 && at_least(1) < 36, "{reference:?}");
    assert!(at_least(2) >= 4 && at_least(2) < at_least(1), "{reference:?}");
    let finished = reference.values().filter(|(s, _)| s == "succeeded").count();
    assert_eq!(finished, at_least(2), "the trials at the last rung finished: {reference:?}");
    assert_eq!(reference.values().filter(|(s, _)| s == "stopped").count(), 36 - finished, "{reference:?}");
    let rows = rungs(&sb.db("reference"));
    assert_eq!(continued_and_add_up(&rows), at_least(1) + at_least(2), "every promoted trial continued");
    // The best finished lr of each batch size is the grid's closest to the optimum 0.001·B.
    let exported = sb.export_jsonl("reference");
    let last_loss = |t: &serde_json::Value| {
        t["metrics"]["curve"].as_array().and_then(|c| c.last()).and_then(|p| p["loss_mean"].as_f64()).unwrap()
    };
    for b in [16.0, 64.0] {
        let best = exported
            .iter()
            .filter(|t| t["status"] == "succeeded" && t["params"]["batch_size"].as_f64() == Some(b))
            .min_by(|x, y| last_loss(x).total_cmp(&last_loss(y)))
            .unwrap();
        let lr = best["params"]["lr"].as_f64().unwrap();
        assert!((lr / (0.001 * b)).ln().abs() < 0.9, "B = {b}: lr {lr} is the best finished");
    }
    for t in exported.iter().filter(|t| t["status"] == "succeeded") {
        let b = t["params"]["batch_size"].as_f64().unwrap();
        // One curve from step 0: every tenth of the budget, each once.
        let steps: Vec<u64> =
            t["metrics"]["curve"].as_array().unwrap().iter().map(|p| p["step"].as_u64().unwrap()).collect();
        let every = 90_000 / b as u64 / 10;
        assert_eq!(steps, (1..=10).map(|i| i * every).collect::<Vec<_>>(), "{t}");
        assert_eq!(t["rung"], 2);
        assert_eq!(t["rungs"].as_array().unwrap().len(), 3, "{t}");
    }
    // A stopped trial says where it stopped, with what it reached there.
    let stopped = exported.iter().find(|t| t["status"] == "stopped").unwrap();
    assert!(stopped["metrics"]["curve"].as_array().is_some_and(|c| !c.is_empty()), "{stopped}");
    let out = sb.kappa(&["status", "--state", "reference", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["stopped"], 36 - finished as u64, "{status}");
    let reached: Vec<u64> =
        status["halving"]["rungs"].as_array().unwrap().iter().map(|r| r["reached"].as_u64().unwrap()).collect();
    assert_eq!(reached, vec![36, at_least(1) as u64, at_least(2) as u64], "{status}");
    let computed = status["halving"]["samples_computed"].as_u64().unwrap();
    let restarts = status["halving"]["samples_with_restarts"].as_u64().unwrap();
    assert!(computed < restarts && computed <= most, "computed {computed}, restarts {restarts}, at most {most}");
    // The report draws each group with the stopped curves grey.
    let out = sb.kappa(&["report", "--state", "reference", "--out", "rep"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(sb.path().join("rep/halving-1.png").exists() && sb.path().join("rep/halving-2.png").exists());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("36 of 36 trials finished") && text.contains("stopped at rung 0"), "{text}");

    // Killed with -9 part way, then run again: the same trials stop at the same rungs.
    let mut child = sb
        .command(&["run", "s.toml", "--workers", "1", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let db_path = sb.path().join("runs/halving/kappa.db");
    wait_until("a promotion and 20 rung results", Duration::from_secs(120), || {
        db_path.exists()
            && sb
                .db("runs/halving")
                .query_row("SELECT count(*), max(rung) FROM rungs", [], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?))
                })
                .is_ok_and(|(n, k)| n >= 20 && k.is_some_and(|k| k >= 1))
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at_kill = standings(&sb.db("runs/halving"));
    assert!(at_kill.values().any(|(s, _)| s == "pending" || s == "running"), "it finished before the kill");
    let out = sb.kappa(&["run", "s.toml", "--workers", "1", "--quiet"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(standings(&sb.db("runs/halving")), reference, "a resumed halving promoted other trials");
    consistent_with_its_rung_results(&sb, "runs/halving", &command_sweep("halving"));
    continued_and_add_up(&rungs(&sb.db("runs/halving")));
    // Running it again runs nothing.
    let out = sb.kappa(&["run", "s.toml"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 new"), "{}", show(&out));
    assert_eq!(standings(&sb.db("runs/halving")), reference);
}

/// Waits until the coordinator at `url` says sweep `name` is finished and its store at `state`
/// has committed it: no trial open. (The store alone can look finished for a moment: a promotion
/// is committed after the result that made it.)
fn finished(sb: &Sandbox, url: &str, state: &str, name: &str) {
    wait_until(format!("the coordinator to finish `{name}`"), Duration::from_secs(300), || {
        let out = sb.kappa(&["status", "--coordinator", url, "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let sweeps = v["sweeps"].as_array()?;
        sweeps.iter().any(|s| s["sweep"] == name && s["finished"] == true).then_some(())
    });
    sb.wait_for(state, "every trial committed", Duration::from_secs(60), |c| {
        c.query_row("SELECT count(*) FROM trials WHERE status IN ('pending', 'running')", [], |r| r.get::<_, i64>(0))
            .is_ok_and(|n| n == 0)
    });
}

/// Native training under halving on a coordinator: a worker frozen between rungs loses its
/// leases, and another worker continues its trials from the checkpoints in the shared trial root.
#[test]
fn native_training_continues_on_another_worker_from_the_shared_trial_directory() {
    let sb = Sandbox::new();
    sb.write(
        "t.toml",
        r#"version = 1
name = "halving-train"

[task]
kind = "train"
model = { hidden = [32], activation = "tanh" }
data = { kind = "digits" }
samples = 100_000
paths = 1
record_every = "5%"

[grid]
optimizer = ["sgd"]
batch_size = [16]
lr = { log = [0.01, 3.0], num = 9 }
seed = [0, 1]

[search]
kind = "halving"
min_samples = 4_000
reduction = 3
"#,
    );
    let (_coord, addr) = sb.coordinator("127.0.0.1:0", &["--heartbeat", "200ms", "--missed-heartbeats", "3"]);
    let root = sb.path().join("shared-trials");
    let root = root.to_str().unwrap();
    let a = sb.worker(&addr, "a", &["--slots", "1", "--trial-root", root]);
    let url = format!("http://{addr}");
    let out = sb.kappa(&["submit", "t.toml", "--coordinator", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    sb.wait_for("cluster/halving-train", "a promotion", Duration::from_secs(120), |c| {
        c.query_row("SELECT count(*) FROM trials WHERE rung >= 1", [], |r| r.get::<_, i64>(0)).is_ok_and(|n| n > 0)
    });
    a.signal(libc::SIGSTOP);
    let _b = sb.worker(&addr, "b", &["--slots", "2", "--trial-root", root]);
    finished(&sb, &url, "cluster/halving-train", "halving-train");
    a.signal(libc::SIGKILL);
    let db = sb.db("cluster/halving-train");
    let rows = rungs(&db);
    assert!(continued_and_add_up(&rows) > 0, "{rows:?}");
    // Some trial ran a rung on `a` and the next on `b`, from `a`'s checkpoint.
    let handed_over = rows.values().any(|r| r.windows(2).any(|w| w[0].4.starts_with('a') && w[1].4.starts_with('b')));
    assert!(handed_over, "no trial went on from another worker's checkpoint: {rows:?}");
    // Every setting's two seeds stop at the same rung; one setting runs the whole budget.
    let st = standings(&db);
    assert_eq!(st.values().filter(|(s, _)| s == "succeeded").count() % 2, 0, "{st:?}");
    assert!(st.values().any(|(s, _)| s == "succeeded"), "{st:?}");
}

/// The store's state is what its recorded rung results imply: replayed in their order through
/// the search, they promote every trial to exactly the rung the store shows it at, and each
/// trial has one result at each rung it finished (a failed one aside).
fn consistent_with_its_rung_results(sb: &Sandbox, state: &str, sweep_text: &str) {
    let sweep = kappa_core::Sweep::parse("s.toml", sweep_text).unwrap();
    let store = kappa_store::Store::open(&sb.path().join(state)).unwrap();
    let version = store.sweep_info().unwrap().and_then(|i| i.code_version).unwrap();
    let plan = kappa_core::Plan::new(&sweep, version);
    let mut h = kappa_core::halving::Halving::new(&plan).unwrap();
    let mut seen = std::collections::HashSet::new();
    for r in store.rung_results().unwrap() {
        if r.status != kappa_core::TrialStatus::Failed {
            assert!(seen.insert((r.id, r.rung)), "trial {} has two results at rung {}", r.id, r.rung);
        }
        h.record(r.id, r.rung, r.status, r.metrics.as_ref());
    }
    for t in store.trials().unwrap() {
        let standing = h.standing(t.result.id).unwrap();
        assert_eq!(
            t.rung.map(i64::from),
            Some(i64::from(standing.rung)),
            "trial {} ({:?})",
            t.result.id,
            t.result.status
        );
    }
}

/// `kill -9` of a coordinator in the middle of a halving sweep: restarted on the same state,
/// it replays the rung results, its worker reconnects, and the sweep ends with every trial where
/// its recorded results put it, each rung result counted once.
#[test]
fn a_coordinator_killed_mid_halving_resumes_where_its_recorded_results_put_it() {
    if std::process::Command::new("python3").arg("--version").output().is_err() {
        kappa_tests::skip::skip("python3 (the command program of this test)", "apt-get install python3");
        return;
    }
    let sb = Sandbox::new();
    let text = command_sweep("halving-coordinator");
    sb.write("s.toml", &text);
    sb.write("prog.py", PROGRAM);
    let leases = ["--heartbeat", "200ms", "--missed-heartbeats", "3"];
    let (coord, addr) = sb.coordinator("127.0.0.1:0", &leases);
    let _w = sb.worker(&addr, "w", &["--slots", "1", "--allow-commands"]);
    let out = sb.kappa(&["submit", "s.toml", "--coordinator", &format!("http://{addr}")]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let state = "cluster/halving-coordinator";
    sb.wait_for(state, "a promotion and 20 rung results", Duration::from_secs(120), |c| {
        c.query_row("SELECT count(*), max(rung) FROM rungs", [], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?))
        })
        .is_ok_and(|(n, k)| n >= 20 && k.is_some_and(|k| k >= 1))
    });
    coord.signal(libc::SIGKILL);
    drop(coord);
    let (_coord2, addr2) = sb.coordinator(&addr, &leases);
    assert_eq!(addr2, addr);
    finished(&sb, &format!("http://{addr}"), state, "halving-coordinator");
    consistent_with_its_rung_results(&sb, state, &text);
    let st = standings(&sb.db(state));
    assert!(st.values().any(|(s, r)| s == "succeeded" && *r == 2), "{st:?}");
    assert!(st.values().all(|(s, _)| s == "succeeded" || s == "stopped"), "{st:?}");
    assert!(continued(&rungs(&sb.db(state)), false) > 0);
}

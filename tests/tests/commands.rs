//! `kind = "command"` end to end: a standard-library Python script run per trial by real `kappa`
//! processes: metrics parsed, crashes and hangs handled, refusal without `--allow-commands`, and
//! GPUs handed out through CUDA_VISIBLE_DEVICES only by workers that have them.

use kappa_tests::{Sandbox, count, show, wait_until};
use std::time::Duration;

const SCRIPT: &str = r#"
import json, os, subprocess, sys, time
mode, lr, bs = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
if mode == "ok":
    print("starting with lr", lr, flush=True)
    for step in range(1, 6):
        print(json.dumps({"step": step, "loss": lr * 10 / step, "acc": 0.5 + step / 20,
                          "env_lr": float(os.environ["KAPPA_LR"]), "bs": bs}), flush=True)
    print("done", file=sys.stderr)
elif mode == "crash":
    print(json.dumps({"step": 1, "loss": 1.0}), flush=True)
    print("Traceback: about to fail on purpose", file=sys.stderr, flush=True)
    sys.exit(3)
elif mode == "nan":
    print(json.dumps({"step": 1, "loss": 1.0}))
    print(json.dumps({"step": 2, "loss": float("nan")}))
elif mode == "hang":
    child = subprocess.Popen(["sleep", "300"])
    with open("child-%s.pid" % os.environ["KAPPA_TRIAL_ID"], "w") as f:
        f.write(str(child.pid))
    time.sleep(300)
elif mode == "gpu":
    time.sleep(0.3)
    print(json.dumps({"loss": 1.0, "gpu": int(os.environ.get("CUDA_VISIBLE_DEVICES", "-1"))}))
"#;

fn command_sweep(name: &str, mode: &str, lrs: &str, execution: &str) -> String {
    format!(
        r#"version = 1
name = "{name}"
[task]
kind = "command"
argv = ["python3", "script.py", "{mode}", "{{lr}}", "{{batch_size}}"]
[grid]
optimizer = ["adamw"]
batch_size = [32]
lr = [{lrs}]
[execution]
{execution}
"#
    )
}

#[test]
fn a_command_sweep_reports_its_metrics_lines() {
    let sb = Sandbox::new();
    sb.write("script.py", SCRIPT);
    sb.write("ok.toml", &command_sweep("ok", "ok", "0.1, 0.2", ""));
    let out = sb.kappa(&["run", "ok.toml", "--quiet"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let rows = sb.export_jsonl("runs/ok");
    assert_eq!(rows.len(), 2);
    for r in &rows {
        let lr = r["params"]["lr"].as_f64().unwrap();
        let curve = r["metrics"]["curve"].as_array().unwrap();
        assert_eq!(curve.len(), 5, "{r}");
        assert_eq!(curve[1]["step"], 2);
        assert_eq!(curve[1]["samples"], 64, "samples derived from step × batch size");
        assert!((curve[1]["loss_mean"].as_f64().unwrap() - lr * 5.0).abs() < 1e-12);
        assert_eq!(curve[1]["extra"]["env_lr"].as_f64(), Some(lr), "KAPPA_LR is the trial's lr");
        assert_eq!(curve[1]["extra"]["bs"].as_f64(), Some(32.0));
        assert!((curve[4]["extra"]["acc"].as_f64().unwrap() - 0.75).abs() < 1e-12);
    }
    // Every attempt keeps its logs, non-metrics lines included.
    let logs: Vec<_> = std::fs::read_dir(sb.path().join("runs/ok/logs")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(logs.len(), 4, "{logs:?}");
    let stdout = logs.iter().find(|p| p.extension().is_some_and(|e| e == "stdout")).unwrap();
    assert!(std::fs::read_to_string(stdout).unwrap().starts_with("starting with lr"));
}

#[test]
fn crashing_diverging_and_hanging_commands() {
    let sb = Sandbox::new();
    sb.write("script.py", SCRIPT);
    // A crash: failed (task errors are not retried here), its stderr kept and quoted.
    sb.write("crash.toml", &command_sweep("crash", "crash", "0.1", "retries = { error = 0 }"));
    let out = sb.kappa(&["run", "crash.toml", "--quiet"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let status = sb.kappa(&["status", "--state", "runs/crash"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("exited with status 3") && text.contains("about to fail on purpose"), "{}", show(&status));
    assert!(text.contains("/logs/"), "the log path is shown: {text}");
    let attempts: i64 = sb.db("runs/crash").query_row("SELECT count(*) FROM attempts", [], |r| r.get(0)).unwrap();
    assert_eq!(attempts, 1, "retries = {{ error = 0 }}");

    // NaN in a metrics line (as Python's json writes it): diverged, not failed.
    sb.write("nan.toml", &command_sweep("nan", "nan", "0.1", ""));
    let out = sb.kappa(&["run", "nan.toml", "--quiet"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(count(&sb.db("runs/nan"), "diverged"), 1);

    // A hang: killed at its timeout together with its own child process.
    sb.write("hang.toml", &command_sweep("hang", "hang", "0.1", "timeout = \"1500ms\"\nretries = { timeout = 0 }"));
    let started = std::time::Instant::now();
    let out = sb.kappa(&["run", "hang.toml", "--quiet"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(started.elapsed() < Duration::from_secs(60), "the hang was not cut short");
    let status = String::from_utf8_lossy(&sb.kappa(&["status", "--state", "runs/hang"]).stdout).to_string();
    assert!(status.contains("timed out after"), "{status}");
    let pid_file = std::fs::read_dir(sb.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("child-"))
        .expect("the script wrote its child's pid");
    let pid = std::fs::read_to_string(pid_file).unwrap();
    let alive = || {
        std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
            .map(|s| !s.split(") ").nth(1).is_some_and(|rest| rest.starts_with('Z')))
            .unwrap_or(false)
    };
    wait_until(
        format!("the grandchild `sleep` (pid {pid}) to end with the timeout (the process group was not killed)"),
        Duration::from_secs(10),
        || !alive(),
    );
}

#[test]
fn workers_refuse_commands_unless_allowed_and_share_out_gpus() {
    let sb = Sandbox::new();
    sb.write("script.py", SCRIPT);
    let (_coord, addr) = sb.coordinator("127.0.0.1:0", &[]);
    let url = format!("http://{addr}");
    // A worker without --allow-commands refuses, with the reason.
    let plain = sb.worker(&addr, "plain", &["--gpus", "0"]);
    sb.write("refused.toml", &command_sweep("refused", "ok", "0.1", "retries = 0"));
    let out = sb.kappa(&["submit", "refused.toml", "--coordinator", &url, "--watch"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let error: String = sb.db("cluster/refused").query_row("SELECT error FROM trials", [], |r| r.get(0)).unwrap();
    assert!(error.contains("--allow-commands"), "{error}");
    drop(plain);

    // GPU trials go only to the worker with GPUs, one device each.
    let workdir = sb.path().to_str().unwrap();
    let _cpu = sb.worker(&addr, "cpu", &["--gpus", "0", "--allow-commands", "--workdir", workdir, "--slots", "2"]);
    let _gpu = sb.worker(&addr, "gpu", &["--gpus", "2,5", "--allow-commands", "--workdir", workdir, "--slots", "4"]);
    let gpus = command_sweep("gpus", "gpu", "0.1, 0.2, 0.3, 0.4, 0.5, 0.6", "[execution.resources]\ngpus = 1");
    sb.write("gpus.toml", &gpus);
    // Three GPUs per trial: no worker has that many, and the submitter is told.
    sb.write("big.toml", &gpus.replace("name = \"gpus\"", "name = \"big\"").replace("gpus = 1", "gpus = 3"));
    let out = sb.kappa(&["submit", "big.toml", "--coordinator", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("need 3 GPU(s) each and no registered worker"),
        "{}",
        show(&out)
    );
    let out = sb.kappa(&["cancel", "--coordinator", &url, "--sweep", "big"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = sb.kappa(&["submit", "gpus.toml", "--coordinator", &url, "--watch"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let db = sb.db("cluster/gpus");
    let workers: Vec<String> = db
        .prepare("SELECT DISTINCT worker FROM attempts")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(workers.iter().all(|w| w.starts_with("gpu#")), "{workers:?}");
    let devices: Vec<String> = db
        .prepare("SELECT metrics FROM trials")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|m| {
            let m: serde_json::Value = serde_json::from_str(&m.unwrap()).unwrap();
            m["curve"][0]["extra"]["gpu"].to_string()
        })
        .collect();
    assert!(devices.iter().all(|d| d == "2.0" || d == "5.0"), "{devices:?}");
}

#[test]
fn a_used_up_failure_budget_halts_the_sweep() {
    let sb = Sandbox::new();
    sb.write("script.py", SCRIPT);
    let lrs = "0.1, 0.2, 0.3, 0.4, 0.5, 0.6";
    sb.write("b.toml", &command_sweep("budget", "crash", lrs, "retries = { error = 5 }\nfailure_budget = 3"));
    let out = sb.kappa(&["run", "b.toml", "--quiet", "--workers", "1"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let db = sb.db("runs/budget");
    let attempts: i64 = db.query_row("SELECT count(*) FROM attempts", [], |r| r.get(0)).unwrap();
    assert_eq!(attempts, 3, "nothing runs after the third failed attempt");
    assert_eq!(count(&db, "failed"), 6);
    let halted: i64 = db
        .query_row("SELECT count(*) FROM trials WHERE error LIKE 'not run: the sweep''s failure budget%'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(halted >= 4, "{halted} trials say why they did not run");
    // retry --failed gives the sweep a fresh budget.
    let out = sb.kappa(&["retry", "--failed", "--state", "runs/budget"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = sb.kappa(&["run", "b.toml", "--quiet", "--workers", "1"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let attempts: i64 = sb.db("runs/budget").query_row("SELECT count(*) FROM attempts", [], |r| r.get(0)).unwrap();
    assert_eq!(attempts, 6, "three more attempts with the fresh budget");
}

/// A command sweep of the program's own parameters: no built-in axis, `{width}` in argv and
/// `KAPPA_PARAM_WIDTH` in the environment; exports carry one column (CSV) and one key (JSONL)
/// per parameter.
#[test]
fn a_command_sweep_of_its_own_parameters_sees_them_in_argv_and_env() {
    let sb = Sandbox::new();
    sb.write(
        "width.py",
        r#"
import json, os, sys
width, act = int(sys.argv[1]), sys.argv[2]
print(json.dumps({"step": 1, "loss": 1.0 / width, "env_width": int(os.environ["KAPPA_PARAM_WIDTH"]),
                  "relu": 1.0 if os.environ["KAPPA_PARAM_ACT"] == "relu" else 0.0,
                  "has_lr": 1.0 if "KAPPA_LR" in os.environ else 0.0}), flush=True)
"#,
    );
    sb.write(
        "own.toml",
        r#"version = 1
name = "own"
[task]
kind = "command"
argv = ["python3", "width.py", "{width}", "{act}"]
[grid]
params.width = [64, 256]
params.act = ["relu", "gelu"]
"#,
    );
    let out = sb.kappa(&["run", "own.toml", "--quiet"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let rows = sb.export_jsonl("runs/own");
    assert_eq!(rows.len(), 4);
    for r in &rows {
        let p = &r["params"];
        assert_eq!(p.as_object().unwrap().len(), 3, "the seed and the two parameters only: {p}");
        let width = p["params.width"].as_u64().unwrap();
        let point = &r["metrics"]["curve"][0];
        assert_eq!(point["loss_mean"].as_f64().unwrap(), 1.0 / width as f64);
        assert_eq!(point["extra"]["env_width"].as_f64().unwrap(), width as f64, "KAPPA_PARAM_WIDTH");
        let relu = if p["params.act"] == "relu" { 1.0 } else { 0.0 };
        assert_eq!(point["extra"]["relu"].as_f64().unwrap(), relu, "KAPPA_PARAM_ACT");
        assert_eq!(point["extra"]["has_lr"].as_f64().unwrap(), 0.0, "no lr axis, no KAPPA_LR");
    }
    let out = sb.kappa(&["export", "--state", "runs/own", "--format", "csv"]);
    let csv = String::from_utf8_lossy(&out.stdout).to_string();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "params.width").expect("a params.width column");
    assert!(header.contains(&"params.act"), "{header:?}");
    let widths: Vec<&str> = csv.lines().skip(1).map(|l| l.split(',').nth(col).unwrap()).collect();
    assert_eq!(widths.iter().filter(|w| **w == "64").count(), 2, "{csv}");
    // A placeholder with no such parameter is refused when the file is read.
    sb.write("bad.toml", &std::fs::read_to_string(sb.path().join("own.toml")).unwrap().replace("{act}", "{depth}"));
    let out = sb.kappa(&["plan", "bad.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("params.depth = [...]"), "{}", show(&out));
}

/// A sweep `name` of one trial of sweeps/checkpoint/train.py (150 steps of 20 ms, checkpointing
/// every `every` steps), with `execution` as its [execution] table.
fn checkpoint_sweep(sb: &Sandbox, name: &str, every: u32, execution: &str) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sweeps/checkpoint/train.py");
    sb.write(
        &format!("{name}.toml"),
        &format!(
            r#"version = 1
name = "{name}"
[task]
kind = "command"
argv = ["python3", "{}", "--lr", "{{lr}}", "--steps", "150", "--every", "{every}", "--sleep", "0.02"]
[grid]
lr = [0.1]
[execution]
{execution}
"#,
            script.display()
        ),
    );
}

/// The checkpoint protocol across workers: a command trial checkpointing to its trial directory
/// (sweeps/checkpoint/train.py) loses its worker to `kill -9` mid-run; the next attempt, on
/// another worker sharing the trial root, resumes from the checkpoint, and the counted curve is
/// continuous from step 0. The killed worker's program dies with it (no second writer).
#[test]
fn a_trial_killed_with_its_worker_resumes_from_its_checkpoint_on_another() {
    let sb = Sandbox::new();
    checkpoint_sweep(&sb, "ck", 10, "");
    let (_coord, addr) = sb.coordinator("127.0.0.1:0", &["--heartbeat", "200ms", "--missed-heartbeats", "3"]);
    let root = sb.path().join("shared-trials");
    let root_arg = root.to_str().unwrap();
    let workdir = sb.path().to_str().unwrap();
    let common = ["--allow-commands", "--workdir", workdir, "--trial-root", root_arg];
    let a = sb.worker(&addr, "a", &common);
    let out = sb.kappa(&["submit", "ck.toml", "--coordinator", &format!("http://{addr}")]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    // Wait (on the checkpoint itself) until the trial is a few checkpoints in, then kill `a`.
    let checkpoint = wait_until(format!("a checkpoint under {}", root.display()), Duration::from_secs(60), || {
        let dir = std::fs::read_dir(root.join("ck")).ok()?.next()?.ok()?;
        let text = std::fs::read_to_string(dir.path().join("checkpoint.json")).ok()?;
        let state = serde_json::from_str::<serde_json::Value>(&text).ok()?;
        state["step"].as_u64().is_some_and(|s| s >= 30).then(|| dir.path().join("checkpoint.json"))
    });
    a.signal(libc::SIGKILL);
    drop(a);
    let frozen = std::fs::read_to_string(&checkpoint).unwrap();
    let _b = sb.worker(&addr, "b", &common);
    sb.wait_for("cluster/ck", "the trial done", Duration::from_secs(90), |c| count(c, "succeeded") == 1);
    let rows = sb.export_jsonl("cluster/ck");
    assert_eq!(rows.len(), 1);
    let curve = rows[0]["metrics"]["curve"].as_array().unwrap();
    let steps: Vec<u64> = curve.iter().map(|p| p["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, (0..=150).collect::<Vec<u64>>(), "the counted curve runs from step 0 without a gap");
    // Where the counted attempt continued from: its metrics line's `resumed_from`.
    let resumed = rows[0]["metrics"]["resumed_from"].as_f64().unwrap_or(0.0);
    let at_kill: serde_json::Value = serde_json::from_str(&frozen).unwrap();
    assert!(resumed >= 30.0, "the second attempt resumed from step {resumed}, not from the checkpoint");
    assert!(resumed >= at_kill["step"].as_f64().unwrap(), "it resumed from the last checkpoint or a later one");
    let db = sb.db("cluster/ck");
    let rows = kappa_tests::ledger(&db);
    assert_eq!(rows.len(), 1);
    assert!(rows[0].1 >= 2 && rows[0].2 == 1, "two attempts, one counted: {rows:?}");
    let by_b: i64 = db
        .query_row("SELECT count(*) FROM attempts WHERE worker LIKE 'b#%' AND counted = 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(by_b, 1, "the counted attempt is b's");
}

/// Waits until the one running trial of `state` has printed more than `steps` lines.
fn wait_for_steps(sb: &Sandbox, state: &str, steps: usize) {
    sb.wait_for(state, "the trial running", Duration::from_secs(60), |c| count(c, "running") == 1);
    wait_until("the trial to print its progress", Duration::from_secs(60), || {
        let logs = std::fs::read_dir(sb.path().join("kappa-logs")).ok().into_iter().flatten().flatten();
        let lines = logs
            .filter(|e| e.path().extension().is_some_and(|x| x == "stdout"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default().lines().count())
            .max()
            .unwrap_or(0);
        lines > steps
    });
}

/// The children of process `pid` (from /proc).
fn children(pid: u32) -> Vec<i32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten();
    tasks
        .flat_map(|t| {
            std::fs::read_to_string(t.path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .filter_map(|c| c.parse().ok())
        .collect()
}

/// Whether `pid` has exited (gone, or a zombie not reaped yet).
fn exited(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_or(true, |s| s.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')))
}

/// A scheduler's SIGTERM reaches the program before its worker (SLURM's `--signal` signals every
/// process of the step): the program checkpoints and exits 143 before the worker knows it is
/// draining. The attempt is still preempted, not an error (found by the real SLURM test).
#[test]
fn a_program_stopped_by_the_scheduler_before_its_worker_is_preempted() {
    let sb = Sandbox::new();
    checkpoint_sweep(&sb, "race", 1000, "retries = { error = 0, crash = 0 }");
    let (_coord, addr) = sb.coordinator("127.0.0.1:0", &["--heartbeat", "200ms", "--missed-heartbeats", "3"]);
    let workdir = sb.path().to_str().unwrap();
    let mut a = sb.worker(&addr, "a", &["--allow-commands", "--workdir", workdir, "--drain-timeout", "30s"]);
    let out = sb.kappa(&["submit", "race.toml", "--coordinator", &format!("http://{addr}")]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    wait_for_steps(&sb, "cluster/race", 20);
    let program = children(a.child.id());
    assert_eq!(program.len(), 1, "the worker runs one program: {program:?}");
    // SAFETY: signalling the program our worker started.
    unsafe { libc::kill(program[0], libc::SIGTERM) };
    wait_until("the program to stop on SIGTERM", Duration::from_secs(10), || exited(program[0]));
    a.signal(libc::SIGTERM);
    a.wait_exit(Duration::from_secs(30), "worker a did not exit after SIGTERM");
    let attempts = |db: &rusqlite::Connection| -> Vec<(String, i64)> {
        let mut stmt = db.prepare("SELECT coalesce(outcome, ''), counted FROM attempts ORDER BY attempt").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    };
    let first = "the first attempt recorded";
    sb.wait_for("cluster/race", first, Duration::from_secs(10), |c| {
        attempts(c).first().is_some_and(|a| !a.0.is_empty())
    });
    let a_log = std::fs::read_to_string(sb.path().join(".worker-a")).unwrap_or_default();
    assert_eq!(attempts(&sb.db("cluster/race"))[0].0, "preempted", "worker a:\n{a_log}");
    let _b = sb.worker(&addr, "b", &["--allow-commands", "--workdir", workdir]);
    sb.wait_for("cluster/race", "the trial done", Duration::from_secs(90), |c| count(c, "succeeded") == 1);
    let log = attempts(&sb.db("cluster/race"));
    assert_eq!(
        log,
        [("preempted".to_string(), 0), ("succeeded".to_string(), 1)],
        "retries = 0: an error would have failed it"
    );
}

/// Preemption is not failure: a worker draining on SIGTERM passes SIGTERM to its command trial at
/// once, the program checkpoints and exits, and the attempt is `preempted`: the trial's failure
/// count stays 0, and the next attempt resumes from exactly where the drain stopped it.
#[test]
fn a_drained_trial_is_preempted_not_failed_and_resumes_where_it_stopped() {
    let sb = Sandbox::new();
    checkpoint_sweep(&sb, "pre", 1000, "retries = { error = 0, crash = 0 }");
    let (_coord, addr) = sb.coordinator("127.0.0.1:0", &["--heartbeat", "200ms", "--missed-heartbeats", "3"]);
    let root = sb.path().join("shared-trials");
    let (root_arg, workdir) = (root.to_str().unwrap(), sb.path().to_str().unwrap());
    let common = ["--allow-commands", "--workdir", workdir, "--trial-root", root_arg];
    let mut with_drain = common.to_vec();
    with_drain.extend(["--drain-timeout", "30s"]);
    let mut a = sb.worker(&addr, "a", &with_drain);
    let out = sb.kappa(&["submit", "pre.toml", "--coordinator", &format!("http://{addr}")]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    // It checkpoints only when stopped (every 1000 steps otherwise): wait for 30 steps of output.
    wait_for_steps(&sb, "cluster/pre", 30);
    a.signal(libc::SIGTERM);
    a.wait_exit(Duration::from_secs(30), "worker a did not exit after SIGTERM");
    let preempted = "SELECT count(*) FROM attempts WHERE worker LIKE 'a#%' AND outcome = 'preempted' AND counted = 0";
    sb.wait_for("cluster/pre", "a's attempt recorded as preempted", Duration::from_secs(10), |c| {
        c.query_row(preempted, [], |r| r.get::<_, i64>(0)).unwrap_or(0) == 1
    });
    let checkpoint: serde_json::Value = {
        let dir = std::fs::read_dir(root.join("pre")).unwrap().next().unwrap().unwrap().path();
        serde_json::from_str(&std::fs::read_to_string(dir.join("checkpoint.json")).unwrap()).unwrap()
    };
    let stopped_at = checkpoint["step"].as_f64().unwrap();
    assert!(stopped_at > 30.0 && stopped_at < 150.0, "saved on SIGTERM, mid-run: step {stopped_at}");
    let _b = sb.worker(&addr, "b", &common);
    sb.wait_for("cluster/pre", "the trial done", Duration::from_secs(90), |c| count(c, "succeeded") == 1);
    let db = sb.db("cluster/pre");
    let failures: i64 = db.query_row("SELECT failures FROM trials", [], |r| r.get(0)).unwrap();
    assert_eq!(failures, 0, "a preemption is not a failure (retries = 0 would have failed the trial)");
    let rows = sb.export_jsonl("cluster/pre");
    let curve = rows[0]["metrics"]["curve"].as_array().unwrap();
    let steps: Vec<u64> = curve.iter().map(|p| p["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, (0..=150).collect::<Vec<u64>>(), "continuous from step 0");
    // Where the counted attempt continued from: its metrics line's `resumed_from`.
    let resumed = rows[0]["metrics"]["resumed_from"].as_f64().unwrap_or(0.0);
    assert_eq!(resumed, stopped_at, "the next attempt went on from where the drain stopped it");
    let rows = kappa_tests::ledger(&db);
    assert!(rows.len() == 1 && rows[0].1 == 2 && rows[0].2 == 1, "{rows:?}");
}

/// A drain lets a program finish: one that ignores SIGTERM and exits 0 within the drain has its
/// result counted (it is not preempted).
#[test]
fn a_program_that_finishes_within_the_drain_counts() {
    let sb = Sandbox::new();
    sb.write(
        "stubborn.py",
        "import json, signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n\
         for step in range(1, 21):\n    time.sleep(0.1)\n    print(json.dumps({\"step\": step, \"loss\": 1.0 / step}), flush=True)\n",
    );
    sb.write(
        "stubborn.toml",
        "version = 1\nname = \"stubborn\"\n[task]\nkind = \"command\"\nargv = [\"python3\", \"stubborn.py\"]\n[grid]\nseed = [0]\n",
    );
    let (_coord, addr) = sb.coordinator("127.0.0.1:0", &["--heartbeat", "200ms", "--missed-heartbeats", "3"]);
    let workdir = sb.path().to_str().unwrap();
    let mut a = sb.worker(&addr, "a", &["--allow-commands", "--workdir", workdir, "--drain-timeout", "20s"]);
    let out = sb.kappa(&["submit", "stubborn.toml", "--coordinator", &format!("http://{addr}")]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    // Once it prints, it ignores SIGTERM (before that, SIGTERM would end it: preempted).
    wait_until("the program to print", Duration::from_secs(60), || {
        std::fs::read_dir(sb.path().join("kappa-logs")).into_iter().flatten().flatten().any(|e| {
            e.path().extension().is_some_and(|x| x == "stdout")
                && std::fs::read_to_string(e.path()).is_ok_and(|t| t.lines().count() >= 2)
        })
    });
    a.signal(libc::SIGTERM);
    a.wait_exit(Duration::from_secs(30), "worker a did not exit within its drain");
    sb.wait_for("cluster/stubborn", "the trial done", Duration::from_secs(10), |c| count(c, "succeeded") == 1);
    let rows = sb.export_jsonl("cluster/stubborn");
    assert_eq!(rows[0]["metrics"]["curve"].as_array().unwrap().len(), 20, "the whole curve");
    assert_eq!(rows[0]["preempted"], 0);
}

/// Single-path trials (every command trial) pooled over seeds carry their seeds' spread as SE,
/// not 0: the `kappa run` table says `1.0000e0 ± 1.0e-1` for final losses 0.9 and 1.1.
#[test]
fn seeds_of_single_path_trials_have_an_honest_se() {
    let sb = Sandbox::new();
    sb.write(
        "seeds.toml",
        "version = 1\nname = \"seeds\"\n[task]\nkind = \"command\"\n\
         argv = [\"python3\", \"-c\", \"import sys; print('{{\\\"loss\\\": %s}}' % (0.9 + 0.2 * int(sys.argv[1])))\", \"{seed}\"]\n\
         [grid]\nlr = [0.1]\nseed = [0, 1]\n",
    );
    let out = sb.kappa(&["run", "seeds.toml", "--state", "s"]);
    assert!(out.status.success(), "{}", show(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("1.0000e0 ± 1.0e-1"), "{table}");
}

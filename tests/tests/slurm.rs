//! `deploy/slurm/kappa.sbatch` on a real SLURM cluster: one node on this machine (munged,
//! slurmctld and slurmd from Debian's slurm-wlm, brought up by `tests/slurm/cluster.sh` with every
//! file in a temporary directory, and stopped at the end even when the test fails). A sweep
//! submitted with `sbatch` completes; a second one, under a time limit short enough that SLURM's
//! own `--signal` drains the workers mid-trial, is requeued by the script until it finishes, with
//! every trial counted once, the drained attempts `preempted` and resumed from their checkpoints.
//!
//! Needs root and slurm-wlm + munge (`.ci/run` installs them); elsewhere it says why it skips.
//! The stand-in test in deploy.rs covers the script where no SLURM exists.

use kappa_tests::{Sandbox, count, kappa_bin, ledger, show, try_wait_every};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Why SLURM cannot run here, if it cannot.
fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("the test must run as root (slurmd and munged)".into());
    }
    for tool in ["munged", "mungekey", "slurmctld", "slurmd", "sbatch", "scontrol"] {
        if !Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().is_ok_and(|o| o.status.success()) {
            return Some(format!("`{tool}` is not installed (apt-get install slurm-wlm munge)"));
        }
    }
    None
}

/// A running one-node cluster; stopped (every job cancelled, every daemon gone) when dropped.
struct Cluster {
    dir: PathBuf,
    conf: PathBuf,
}

impl Cluster {
    fn up(dir: &Path) -> Cluster {
        let out = Command::new("bash").arg(repo().join("tests/slurm/cluster.sh")).arg("up").arg(dir).output().unwrap();
        let cluster = Cluster { dir: dir.to_path_buf(), conf: dir.join("slurm.conf") };
        assert!(out.status.success(), "the SLURM cluster did not come up: {}\n{}", show(&out), cluster.logs());
        cluster
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        for f in ["log/slurmctld.log", "log/slurmd.log", "munge/munged.log"] {
            let text = std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            all += &format!("--- {f} (last lines)\n{}\n", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
        all
    }

    fn run(&self, tool: &str, args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Output {
        Command::new(tool)
            .args(args)
            .current_dir(cwd)
            .env("SLURM_CONF", &self.conf)
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }

    /// `scontrol show job ID` as `Key=Value` pairs.
    fn job(&self, id: &str) -> Vec<(String, String)> {
        let out = self.run("scontrol", &["show", "job", id], &self.dir, &[]);
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect()
    }

    fn field(&self, id: &str, key: &str) -> String {
        self.job(id).into_iter().find(|(k, _)| k == key).map(|(_, v)| v).unwrap_or_default()
    }

    /// Waits until job `id` has ended for good (COMPLETED; anything else that is final fails).
    fn wait_completed(&self, id: &str, limit: Duration, log: &Path) {
        let started = Instant::now();
        let last = std::cell::RefCell::new(String::new());
        let completed = try_wait_every(Duration::from_millis(500), limit, || {
            let state = self.field(id, "JobState");
            if *last.borrow() != state {
                eprintln!(
                    "[slurm] job {id}: {state} after {:.0} s (restarts {})",
                    started.elapsed().as_secs_f64(),
                    self.field(id, "Restarts")
                );
                last.replace(state.clone());
            }
            match state.as_str() {
                "COMPLETED" => true,
                "FAILED" | "CANCELLED" | "TIMEOUT" | "NODE_FAIL" | "OUT_OF_MEMORY" | "BOOT_FAIL" | "DEADLINE" => {
                    panic!(
                        "job {id} ended {state}\n--- job log\n{}\n{}",
                        std::fs::read_to_string(log).unwrap_or_default(),
                        self.logs()
                    )
                }
                _ => false,
            }
        });
        assert!(
            completed.is_some(),
            "job {id} did not complete within {limit:?} (state {})\n--- job log\n{}\n{}",
            last.borrow(),
            std::fs::read_to_string(log).unwrap_or_default(),
            self.logs()
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let out = Command::new("bash").arg(repo().join("tests/slurm/cluster.sh")).arg("down").arg(&self.dir).output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!("stopping the SLURM cluster: {}", show(&o)),
            Err(e) => eprintln!("stopping the SLURM cluster: {e}"),
        }
    }
}

/// A command sweep of `trials` checkpointing trials (sweeps/checkpoint/train.py) of `steps`
/// steps, `sleep` seconds each.
fn checkpoint_sweep(name: &str, trials: u32, steps: u32, sleep: f64) -> String {
    format!(
        "version = 1\nname = \"{name}\"\n[task]\nkind = \"command\"\n\
         argv = [\"python3\", \"sweeps/checkpoint/train.py\", \"--lr\", \"{{lr}}\", \"--seed\", \"{{seed}}\", \
         \"--steps\", \"{steps}\", \"--every\", \"10\", \"--sleep\", \"{sleep}\"]\n\
         [grid]\nlr = [0.1]\nseed = {{ linspace = [0, {}], num = {trials} }}\n",
        trials - 1
    )
}

/// Submits the sbatch script with `options` for the sweep file `file`; returns the job id.
fn sbatch(cluster: &Cluster, sb: &Sandbox, options: &[&str], file: &str, env: &[(&str, &str)]) -> String {
    let script = repo().join("deploy/slurm/kappa.sbatch");
    let mut args: Vec<&str> = vec!["--parsable", "--nodes=1", "--cpus-per-task=2"];
    args.extend_from_slice(options);
    let script = script.display().to_string();
    args.extend([script.as_str(), file]);
    let bin = kappa_bin().display().to_string();
    let mut all: Vec<(&str, &str)> =
        vec![("KAPPA_BIN", bin.as_str()), ("KAPPA_ALLOW_COMMANDS", "1"), ("KAPPA_DRAIN_TIMEOUT", "20s")];
    // The script tells workers to reach the coordinator by host name, as on a real cluster; where
    // this machine's own name does not resolve, by loopback address.
    let resolves =
        Command::new("sh").args(["-c", "getent hosts \"$(hostname)\""]).output().is_ok_and(|o| o.status.success());
    if !resolves {
        eprintln!("[slurm] this machine's host name does not resolve: KAPPA_HOST=127.0.0.1");
        all.push(("KAPPA_HOST", "127.0.0.1"));
    }
    all.extend_from_slice(env);
    let out = cluster.run("sbatch", &args, sb.path(), &all);
    assert!(out.status.success(), "sbatch: {}\n{}", show(&out), cluster.logs());
    String::from_utf8_lossy(&out.stdout).trim().split(';').next().unwrap_or_default().to_string()
}

#[test]
fn the_sbatch_script_runs_and_resumes_sweeps_on_a_real_slurm_cluster() {
    if let Some(why) = unavailable() {
        kappa_tests::skip(&format!("no SLURM cluster can run here: {why}"), "apt-get install slurm-wlm munge, as root");
        return;
    }
    let sb = Sandbox::new();
    // munged wants every directory above its socket searchable by all.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(sb.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(sb.path().join("sweeps/checkpoint")).unwrap();
    std::fs::copy(repo().join("sweeps/checkpoint/train.py"), sb.path().join("sweeps/checkpoint/train.py")).unwrap();
    let cluster = Cluster::up(&sb.path().join("slurm"));
    let nodes = cluster.run("sinfo", &["-h", "-N", "-o", "%N %c %t"], sb.path(), &[]);
    eprintln!("[slurm] {}", String::from_utf8_lossy(&nodes.stdout).trim());

    // 1. A sweep submitted with sbatch runs to the end.
    sb.write("short.toml", &checkpoint_sweep("slurm-short", 4, 20, 0.01));
    let id = sbatch(&cluster, &sb, &["--time=5"], "short.toml", &[]);
    let log = sb.path().join(format!("kappa-{id}.log"));
    cluster.wait_completed(&id, Duration::from_secs(120), &log);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    eprintln!("[slurm] job {id} log:\n{text}");
    assert!(text.contains("every sweep finished (exit 0)"), "{text}");
    let db = sb.db("kappa-state/slurm-short");
    assert_eq!(count(&db, "succeeded"), 4, "{text}");
    assert!(ledger(&db).iter().all(|(_, attempts, counted)| *attempts == 1 && *counted == 1));

    // 2. Under a 2-minute limit with SIGTERM 60 s before it (SLURM sends it 30-60 s after the
    // start: its limit check runs every 30 s), two 70-second trials cannot finish in one
    // allocation: the workers drain, the script requeues the job, and it resumes.
    sb.write("long.toml", &checkpoint_sweep("slurm-long", 2, 700, 0.1));
    let id = sbatch(&cluster, &sb, &["--time=2", "--signal=TERM@60"], "long.toml", &[("KAPPA_RESUBMIT", "4")]);
    let log = sb.path().join(format!("kappa-{id}.log"));
    cluster.wait_completed(&id, Duration::from_secs(480), &log);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    eprintln!("[slurm] job {id} log:\n{text}");
    let restarts: u32 = cluster.field(&id, "Restarts").parse().unwrap_or(0);
    assert!(restarts >= 1, "the job was never requeued (Restarts={restarts}): {text}");
    assert!(text.contains("requeueing job") && text.contains("every sweep finished (exit 0)"), "{text}");

    let db = sb.db("kappa-state/slurm-long");
    assert_eq!(count(&db, "succeeded"), 2, "{text}");
    let rows = ledger(&db);
    assert!(rows.iter().all(|(_, _, counted)| *counted == 1), "every trial counted once: {rows:?}");
    let preempted: i64 = db
        .query_row("SELECT count(*) FROM attempts WHERE outcome = 'preempted' AND class IS NULL", [], |r| r.get(0))
        .unwrap();
    assert!(preempted >= 1, "SLURM's signal drained the workers mid-trial: {rows:?}\n{text}");
    let failures: i64 = db.query_row("SELECT sum(failures) FROM trials", [], |r| r.get(0)).unwrap();
    assert_eq!(failures, 0, "a preempted attempt uses no retry");
    let out = sb.kappa(&["export", "--state", "kappa-state/slurm-long", "--format", "jsonl"]);
    assert!(out.status.success(), "{}", show(&out));
    let mut resumed_max = 0.0f64;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let t: serde_json::Value = serde_json::from_str(line).unwrap();
        let curve = t["metrics"]["curve"].as_array().unwrap();
        let steps: Vec<u64> = curve.iter().map(|p| p["step"].as_u64().unwrap()).collect();
        assert_eq!(steps, (0..=700).collect::<Vec<u64>>(), "the counted curve is continuous from step 0");
        // Where the counted attempt continued from: its metrics lines' `resumed_from`.
        let resumed = t["metrics"]["resumed_from"].as_f64().unwrap_or(0.0);
        resumed_max = resumed_max.max(resumed);
        eprintln!("[slurm] trial {} resumed from step {resumed}, preempted {} times", t["id"], t["preempted"]);
    }
    assert!(resumed_max > 0.0, "an attempt resumed from a checkpoint");
    let status = sb.kappa(&["status", "--state", "kappa-state/slurm-long"]);
    eprintln!("[slurm] kappa status:\n{}", String::from_utf8_lossy(&status.stdout));
}

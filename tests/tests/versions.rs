//! Version-safe trial ids: state directories made before they recorded their code version keep
//! every id, a simulator upgrade never mixes results silently, command ids carry no simulator
//! version, and a mixed-version cluster leases simulations only to workers that compute them
//! with the sweep's code. Versions are injected with `KAPPA_TEST_SIM_VERSION` (what a process
//! claims its simulator is), never by editing the binary.

use kappa_tests::{Sandbox, count, show, wait_until};
use rusqlite::Connection;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

const NEW_SIM: (&str, &str) = ("KAPPA_TEST_SIM_VERSION", "kappa-sim/99");

fn ids(db: &Connection) -> BTreeSet<String> {
    let mut stmt = db.prepare("SELECT id FROM trials").unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

fn scalar(db: &Connection, sql: &str) -> String {
    db.query_row(sql, [], |r| r.get::<_, rusqlite::types::Value>(0))
        .map(|v| match v {
            rusqlite::types::Value::Integer(i) => i.to_string(),
            rusqlite::types::Value::Text(t) => t,
            other => format!("{other:?}"),
        })
        .unwrap_or_default()
}

fn recorded_version(db: &Connection) -> String {
    scalar(db, "SELECT value FROM meta WHERE key = 'code_version'")
}

/// Copies `tests/fixtures/stores/<name>` (state directory and sweep file) into the sandbox.
fn fixture(sb: &Sandbox, name: &str) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/stores");
    std::fs::create_dir_all(sb.path().join(name)).unwrap();
    std::fs::copy(from.join(name).join("kappa.db"), sb.path().join(name).join("kappa.db")).unwrap();
    std::fs::copy(from.join(format!("{name}.toml")), sb.path().join(format!("{name}.toml"))).unwrap();
}

#[test]
fn state_directories_made_before_versions_were_recorded_keep_every_id() {
    let sb = Sandbox::new();
    for (name, trials) in [("sim", 8), ("command", 6), ("noop", 5)] {
        fixture(&sb, name);
        let before = ids(&sb.db(name));
        let attempts = scalar(&sb.db(name), "SELECT count(*) FROM attempts");
        assert_eq!(before.len(), trials);
        let file = format!("{name}.toml");
        let out = sb.kappa(&["run", &file, "--state", name, "--workers", "2"]);
        assert!(out.status.success(), "{name}: {}", show(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("{trials} trials (0 new, {trials} finished earlier and reused")), "{stderr}");
        let db = sb.db(name);
        assert_eq!(ids(&db), before, "{name}: ids changed");
        assert_eq!(scalar(&db, "SELECT count(*) FROM attempts"), attempts, "{name}: something ran again");
        assert_eq!(recorded_version(&db), "kappa-sim/3", "{name}");
        // And a new build reports it in full.
        let out = sb.kappa(&["report", "--state", name, "--out", &format!("rep-{name}")]);
        assert!(out.status.success(), "{}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&format!("{trials} of {trials} trials finished")),
            "{}",
            show(&out)
        );
    }
    // An edited command sweep resumes: its new trials join the old ones, none of which runs again.
    let text = std::fs::read_to_string(sb.path().join("command.toml")).unwrap();
    sb.write("command.toml", &text.replace("lr = [1e-3, 1e-2, 1e-1]", "lr = [1e-3, 1e-2, 1e-1, 1.0]"));
    let out = sb.kappa(&["run", "command.toml", "--state", "command", "--workers", "2"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("8 trials (2 new, 6 finished earlier"), "{}", show(&out));
    assert_eq!(count(&sb.db("command"), "succeeded"), 8);
}

#[test]
fn a_simulator_upgrade_refuses_to_mix_results_until_asked_to_rerun() {
    let sb = Sandbox::new();
    sb.write("s.toml", &kappa_tests::sweep("upgrade", &[1e-2], 2, 2000, 50));
    let out = sb.kappa(&["run", "s.toml", "--state", "st", "--workers", "2", "-q"]);
    assert!(out.status.success(), "{}", show(&out));
    let first = ids(&sb.db("st"));
    let planned_with = recorded_version(&sb.db("st"));
    assert!(planned_with.starts_with("kappa-sim/"), "{planned_with}");

    // The same state directory under a kappa whose simulator is another version.
    let out = sb.kappa_env(&["run", "s.toml", "--state", "st", "--workers", "2", "-q"], &[NEW_SIM]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&planned_with) && err.contains("kappa-sim/99") && err.contains("--rerun-on-new-version"),
        "{err}"
    );
    assert_eq!(ids(&sb.db("st")), first, "a refused run changed the plan");
    assert_eq!(scalar(&sb.db("st"), "SELECT value FROM meta WHERE key = 'generation'"), "1");

    // It still reads, reports and shows the old directory, with the ids it was made with.
    let out = sb.kappa_env(&["report", "--state", "st", "--out", "rep"], &[NEW_SIM]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("4 of 4 trials finished"), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("computed with {planned_with}")), "{}", show(&out));
    let out = sb.kappa_env(&["status", "--state", "st"], &[NEW_SIM]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("ids made with  {planned_with}")), "{}", show(&out));

    // Asked to, it plans afresh: every trial runs again under the new version.
    let out = sb.kappa_env(&["run", "s.toml", "--state", "st", "--workers", "2", "--rerun-on-new-version"], &[NEW_SIM]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("4 trials (4 new, 0 finished earlier"), "{}", show(&out));
    let db = sb.db("st");
    assert_eq!(recorded_version(&db), "kappa-sim/99");
    let after = ids(&db);
    assert_eq!(after.len(), 8, "the old results stay in the store");
    assert!(first.is_subset(&after));
    let current = scalar(&db, "SELECT count(*) FROM trials WHERE generation = 2 AND status = 'succeeded'");
    assert_eq!(current, "4");
}

#[test]
fn command_ids_do_not_carry_the_simulator_version() {
    let sb = Sandbox::new();
    sb.write(
        "c.toml",
        "version = 1\nname = \"cmd\"\n[task]\nkind = \"command\"\n\
         argv = [\"python3\", \"-c\", \"print('{{\\\"loss\\\": 1.0}}')\"]\n[grid]\nlr = [0.1, 0.2]\n",
    );
    let out = sb.kappa(&["run", "c.toml", "--state", "c", "-q"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(recorded_version(&sb.db("c")), "none");
    let first = ids(&sb.db("c"));
    // A kappa with another simulator resumes it: nothing runs again.
    let out = sb.kappa_env(&["run", "c.toml", "--state", "c"], &[NEW_SIM]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 trials (0 new, 2 finished earlier"), "{}", show(&out));
    assert_eq!(ids(&sb.db("c")), first);
    // And `kappa plan` shows the same ids under either version.
    let plan = |env: &[(&str, &str)]| {
        let out = sb.kappa_env(&["plan", "c.toml", "--json"], env);
        assert!(out.status.success(), "{}", show(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["trials"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_string()).collect::<BTreeSet<_>>()
    };
    assert_eq!(plan(&[]), first);
    assert_eq!(plan(&[NEW_SIM]), first);
}

fn status_json(sb: &Sandbox, url: &str) -> serde_json::Value {
    let out = sb.kappa(&["status", "--coordinator", url, "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn wait(what: &str, done: impl Fn() -> bool) {
    wait_until(what, Duration::from_secs(60), done)
}

/// Workers (name prefix → attempts) of a sweep's attempt log.
fn attempts_by_worker(db: &Connection) -> Vec<(String, i64)> {
    let mut stmt = db
        .prepare("SELECT substr(worker, 1, instr(worker, '#') - 1), count(*) FROM attempts GROUP BY 1 ORDER BY 1")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

#[test]
fn a_mixed_version_cluster_leases_simulations_only_to_matching_workers() {
    let sb = Sandbox::new();
    let (_coord, addr) = sb.coordinator("127.0.0.1:0", &[]);
    let url = format!("http://{addr}");
    // A worker whose simulator is another version than the coordinator's.
    let _other = sb.worker_env(&addr, "other", &["--allow-commands"], &[NEW_SIM]);
    wait("the first worker", || status_json(&sb, &url)["workers"].as_array().is_some_and(|w| w.len() == 1));

    sb.write("sim.toml", &kappa_tests::sweep("sim", &[1e-2, 2e-2], 2, 2000, 50));
    let out = sb.kappa(&["submit", "sim.toml", "--coordinator", &url]);
    assert!(out.status.success(), "{}", show(&out));
    let warning = String::from_utf8_lossy(&out.stderr);
    assert!(warning.contains("no registered worker computes with it") && warning.contains("kappa-sim/99"), "{warning}");
    // It waits, and status says why.
    let s = status_json(&sb, &url);
    let w = &s["workers"][0];
    assert!(w["code_versions"].as_array().unwrap().iter().any(|v| v == "kappa-sim/99"), "{s}");
    assert_eq!(w["blocked"][0]["sweep"], "sim", "{s}");
    assert_eq!(w["blocked"][0]["pending"], 8, "{s}");
    let out = sb.kappa(&["status", "--coordinator", &url]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("not leased `sim`: its 8 pending trials"), "{}", show(&out));
    assert_eq!(count(&sb.db("cluster/sim"), "pending"), 8);

    // A worker of the coordinator's version runs them all.
    let _same = sb.worker(&addr, "same", &["--allow-commands"]);
    sb.wait_for("cluster/sim", "the simulations", Duration::from_secs(60), |c| count(c, "succeeded") == 8);
    let by = attempts_by_worker(&sb.db("cluster/sim"));
    assert!(by.len() == 1 && by[0].0 == "same" && by[0].1 >= 8, "only the matching worker ran simulations: {by:?}");

    // Commands go to both.
    sb.write(
        "cmd.toml",
        "version = 1\nname = \"cmd\"\n[task]\nkind = \"command\"\n\
         argv = [\"python3\", \"-c\", \"import time; time.sleep(0.4); print('{{\\\"loss\\\": 1.0}}')\"]\n\
         [grid]\nseed = { linspace = [0, 7], num = 8 }\n",
    );
    let out = sb.kappa(&["submit", "cmd.toml", "--coordinator", &url]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"), "{}", show(&out));
    sb.wait_for("cluster/cmd", "the commands", Duration::from_secs(60), |c| count(c, "succeeded") == 8);
    let by = attempts_by_worker(&sb.db("cluster/cmd"));
    assert_eq!(by.iter().map(|(w, _)| w.as_str()).collect::<Vec<_>>(), ["other", "same"], "{by:?}");
    assert_eq!(by.iter().map(|(_, n)| n).sum::<i64>(), 8, "every command ran once: {by:?}");
}

//! Cluster end to end: separate coordinator and worker processes on 127.0.0.1, killed and
//! restarted mid-sweep; every trial must end exactly once.

use kappa_tests::{Sandbox, count, gated_sweep, show, sweep};
use std::time::Duration;

/// 12 learning rates × 2 optimizers: 24 trials of about 0.1–0.2 s each.
fn slow_sweep(name: &str) -> String {
    let lrs = [0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.007, 0.01, 0.015, 0.02, 0.03, 0.05];
    sweep(name, &lrs, 1, 150_000, 64)
}

const FAST_LEASES: &[&str] = &["--heartbeat", "200ms", "--missed-heartbeats", "3"];

fn submit(sb: &Sandbox, addr: &str, file: &str, extra: &[&str]) -> std::process::Output {
    let url = format!("http://{addr}");
    let mut args = vec!["submit", file, "--coordinator", url.as_str()];
    args.extend_from_slice(extra);
    sb.kappa(&args)
}

/// (attempts logged, attempts counted) per trial, and how many attempts were lost (their lease
/// ended without a report: expired or handed back).
fn ledger(sb: &Sandbox, state: &str) -> (Vec<(String, i64, i64)>, i64) {
    let db = rusqlite::Connection::open(sb.path().join(state).join("kappa.db")).unwrap();
    let rows = kappa_tests::ledger(&db);
    let lost = db.query_row("SELECT count(*) FROM attempts WHERE outcome = 'lost'", [], |r| r.get(0)).unwrap();
    (rows, lost)
}

#[test]
fn a_worker_killed_mid_trial_is_replaced_and_each_trial_counts_once() {
    let sb = Sandbox::new();
    sb.write("s.toml", &slow_sweep("kill-worker"));
    let (_coord, addr) = sb.coordinator("127.0.0.1:0", FAST_LEASES);
    let a = sb.worker(&addr, "a", &[]);
    let out = submit(&sb, &addr, "s.toml", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    // Let `a` finish some trials, then kill it while it holds a lease.
    sb.wait_for("cluster/kill-worker", "a few trials done and one running", Duration::from_secs(60), |c| {
        count(c, "succeeded") >= 3 && count(c, "running") >= 1
    });
    a.signal(libc::SIGKILL);
    drop(a);
    let _b = sb.worker(&addr, "b", &["--slots", "2"]);
    sb.wait_for("cluster/kill-worker", "every trial done", Duration::from_secs(90), |c| count(c, "succeeded") == 24);
    let (rows, lost) = ledger(&sb, "cluster/kill-worker");
    assert_eq!(rows.len(), 24);
    assert!(rows.iter().all(|(_, _, counted)| *counted == 1), "{rows:?}");
    assert!(lost >= 1, "the killed worker's lease must have expired");
}

#[test]
fn a_stopped_worker_is_fenced_when_it_comes_back() {
    let sb = Sandbox::new();
    sb.write("s.toml", &slow_sweep("pause-worker"));
    let (_coord, addr) = sb.coordinator("127.0.0.1:0", FAST_LEASES);
    let a = sb.worker(&addr, "a", &[]);
    assert_eq!(submit(&sb, &addr, "s.toml", &[]).status.code(), Some(0));
    sb.wait_for("cluster/pause-worker", "a trial running", Duration::from_secs(60), |c| count(c, "running") >= 1);
    // Freeze `a` past its lease (3 × 200 ms), let `b` take the trial over, then wake `a` up.
    a.signal(libc::SIGSTOP);
    let _b = sb.worker(&addr, "b", &[]);
    let taken_over = "SELECT count(*) FROM attempts x JOIN attempts y ON x.trial_id = y.trial_id \
                      WHERE x.worker LIKE 'a#%' AND x.outcome = 'lost' AND x.class = 'lost' \
                      AND y.worker LIKE 'b#%' AND y.attempt > x.attempt";
    sb.wait_for("cluster/pause-worker", "b to take over a trial whose lease a lost", Duration::from_secs(60), |c| {
        c.query_row(taken_over, [], |r| r.get::<_, i64>(0)).unwrap_or(0) >= 1
    });
    a.signal(libc::SIGCONT);
    sb.wait_for("cluster/pause-worker", "every trial done", Duration::from_secs(90), |c| count(c, "succeeded") == 24);
    let (rows, _) = ledger(&sb, "cluster/pause-worker");
    assert!(rows.iter().all(|(_, _, counted)| *counted == 1), "{rows:?}");
    // Any report `a` made for its superseded attempt is recorded as late, never counted.
    let db = rusqlite::Connection::open(sb.path().join("cluster/pause-worker/kappa.db")).unwrap();
    let counted_by_a: i64 = db
        .query_row(
            "SELECT count(*) FROM attempts WHERE worker LIKE 'a#%' AND counted = 1 AND outcome LIKE 'late%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(counted_by_a, 0);
}

#[test]
fn a_coordinator_killed_and_restarted_finishes_the_sweep_exactly_once() {
    let sb = Sandbox::new();
    // Four trials end at once; the others run until the gate opens, so the attempts in flight at
    // the kill cannot have ended before it. (A trial that ends in the last moment before a kill
    // can have its report acknowledged and not yet committed: the restarted coordinator then
    // runs it again, which is exactly once too, but not the adoption this test is about.)
    sb.write("s.toml", &gated_sweep("kill-coordinator", 24, 4));
    let (coord, addr) = sb.coordinator("127.0.0.1:0", FAST_LEASES);
    let _w = sb.worker(&addr, "w", &["--slots", "2", "--allow-commands"]);
    assert_eq!(submit(&sb, &addr, "s.toml", &[]).status.code(), Some(0));
    sb.wait_for("cluster/kill-coordinator", "four trials done and two running", Duration::from_secs(60), |c| {
        count(c, "succeeded") >= 4 && count(c, "running") >= 2
    });
    coord.signal(libc::SIGKILL);
    drop(coord);
    let before: Vec<(String, f64)> = {
        let db = rusqlite::Connection::open(sb.path().join("cluster/kill-coordinator/kappa.db")).unwrap();
        let mut stmt = db.prepare("SELECT id, finished_at FROM trials WHERE status = 'succeeded'").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    };
    assert!(before.len() < 24, "the sweep finished before the kill: make it longer");
    // Attempts in flight at the kill: their worker goes on, and reports them after reconnecting.
    let in_flight: Vec<(String, i64)> = {
        let db = rusqlite::Connection::open(sb.path().join("cluster/kill-coordinator/kappa.db")).unwrap();
        let mut stmt = db.prepare("SELECT id, attempts FROM trials WHERE status = 'running'").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    };
    assert!(!in_flight.is_empty(), "nothing was running at the kill");
    // Same command, same address: the worker reconnects on its own.
    let (_coord2, addr2) = sb.coordinator(&addr, FAST_LEASES);
    assert_eq!(addr2, addr);
    sb.write("gate", "");
    sb.wait_for("cluster/kill-coordinator", "every trial done", Duration::from_secs(90), |c| {
        count(c, "succeeded") == 24
    });
    let (rows, _) = ledger(&sb, "cluster/kill-coordinator");
    assert_eq!(rows.len(), 24);
    let db = rusqlite::Connection::open(sb.path().join("cluster/kill-coordinator/kappa.db")).unwrap();
    let attempts: Vec<(String, i64, Option<String>, i64)> = db
        .prepare("SELECT trial_id, attempt, outcome, counted FROM attempts ORDER BY trial_id, attempt")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(rows.iter().all(|(_, _, counted)| *counted == 1), "{attempts:?}");
    for (id, finished_at) in &before {
        let (attempts, at): (i64, f64) = db
            .query_row("SELECT attempts, finished_at FROM trials WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        assert_eq!(at, *finished_at, "trial {id} finished again after the restart");
        assert!(attempts >= 1);
    }
    for (id, attempt) in &in_flight {
        let counted: i64 = db
            .query_row("SELECT attempt FROM attempts WHERE trial_id = ?1 AND counted = 1", [id], |r| r.get(0))
            .unwrap();
        assert_eq!(counted, *attempt, "trial {id}: its in-flight attempt was run again instead of accepted");
    }
}

#[test]
fn tokens_and_bad_submissions_get_clear_refusals() {
    let sb = Sandbox::new();
    sb.write("tok", "right-token\n");
    sb.write("wrong", "wrong-token\n");
    sb.write("s.toml", &sweep("tok", &[0.01], 1, 200, 4));
    let (_coord, addr) = sb.coordinator("127.0.0.1:0", &["--token-file", "tok"]);
    let out = submit(&sb, &addr, "s.toml", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing token"), "{}", show(&out));
    let out = submit(&sb, &addr, "s.toml", &["--token-file", "wrong"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong token"), "{}", show(&out));
    let out = submit(&sb, &addr, "s.toml", &["--token-file", "tok"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    // A worker without the token is refused, and says so.
    let url = format!("http://{addr}");
    let out = sb.kappa(&["worker", "--coordinator", &url, "--name", "nope"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing token"), "{}", show(&out));
    let _w = sb.worker(&addr, "w", &["--token-file", "tok"]);
    let out = submit(&sb, &addr, "s.toml", &["--token-file", "tok", "--watch"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    // The server is still up and says what it serves.
    let out = sb.kappa(&["status", "--coordinator", &url, "--token-file", "tok", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", show(&out)));
    assert_eq!(v["sweeps"][0]["succeeded"], 2);
}

#[test]
fn prometheus_metrics_count_trials_workers_and_reports() {
    use std::io::{Read, Write};
    let sb = Sandbox::new();
    sb.write("s.toml", &sweep("metrics", &[0.01, 0.02], 1, 200, 4));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let metrics = format!("127.0.0.1:{port}");
    let (_coord, addr) = sb.coordinator("127.0.0.1:0", &["--metrics-listen", &metrics]);
    let _w = sb.worker(&addr, "w", &[]);
    assert_eq!(submit(&sb, &addr, "s.toml", &["--watch"]).status.code(), Some(0));
    let get = |path: &str| {
        let mut s = std::net::TcpStream::connect(&metrics).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    };
    let body = get("/metrics");
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    assert!(body.contains("kappa_trials{sweep=\"metrics\",status=\"succeeded\"} 4"), "{body}");
    assert!(body.contains("kappa_workers 1"), "{body}");
    assert!(body.contains("kappa_reports_total 4"), "{body}");
    assert!(get("/other").starts_with("HTTP/1.1 404"));

    // Prometheus' own linter accepts the exposition (promtool, from Debian's prometheus package).
    let exposition = body.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    let promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let Ok(mut promtool) = promtool else {
        kappa_tests::skip("promtool is not installed, so the exposition is not linted", "apt-get install prometheus");
        return;
    };
    promtool.stdin.take().unwrap().write_all(exposition.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(out.status.success(), "promtool check metrics: {}\n{exposition}", show(&out));
}

/// The wire contract checked by an independent client (Python, grpcio, stubs generated from
/// proto/ by grpcio-tools). `.ci/run` installs grpcio; elsewhere the test says why it skips.
#[test]
fn an_independent_python_client_gets_the_documented_status_codes() {
    if !kappa_tests::python_imports("grpc, grpc_tools") {
        kappa_tests::skip(
            "python3 with grpcio and grpcio-tools is not installed",
            "python3 -m pip install grpcio grpcio-tools",
        );
        return;
    }
    let sb = Sandbox::new();
    sb.write("tok", "py-token\n");
    sb.write("s.toml", &sweep("python", &[0.01], 1, 200, 4));
    let (_coord, addr) = sb.coordinator("127.0.0.1:0", &["--token-file", "tok"]);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/wire_client.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .args([
            "--addr",
            &addr,
            "--token",
            "py-token",
            "--protocol",
            &kappa_proto::PROTOCOL_VERSION.to_string(),
            "--sweep",
        ])
        .arg(sb.path().join("s.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("13 passed, 0 failed"), "{}", show(&out));
}

#[test]
fn retry_failed_on_a_coordinator_runs_the_failed_trials_again() {
    let sb = Sandbox::new();
    let text = sweep("flaky", &[0.01], 1, 400_000, 256) + "\n[execution]\nretries = 0\ntimeout = \"20ms\"\n";
    sb.write("s.toml", &text);
    let (_coord, addr) = sb.coordinator("127.0.0.1:0", &[]);
    let _w = sb.worker(&addr, "w", &[]);
    let out = submit(&sb, &addr, "s.toml", &["--watch"]);
    assert_eq!(out.status.code(), Some(3), "every trial times out: {}", show(&out));
    let url = format!("http://{addr}");
    let out = sb.kappa(&["retry", "--failed", "--coordinator", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("sweep `flaky`: 2 failed trials will run again"),
        "{}",
        show(&out)
    );
    sb.wait_for("cluster/flaky", "the retried trials to fail again", Duration::from_secs(60), |c| {
        count(c, "failed") == 2
            && c.query_row("SELECT count(*) FROM attempts WHERE outcome LIKE 'failed%'", [], |r| r.get::<_, i64>(0))
                .unwrap_or(0)
                == 4
    });
}

/// TLS end to end with a throwaway certificate authority made by `openssl`.
#[test]
fn tls_coordinator_with_a_private_certificate_authority() {
    let sb = Sandbox::new();
    let sh = |cmd: &str| {
        std::process::Command::new("sh")
            .args(["-c", cmd])
            .current_dir(sb.path())
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !sh("command -v openssl") {
        kappa_tests::skip("openssl is not installed", "apt-get install openssl");
        return;
    }
    assert!(sh(
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj '/CN=kappa test CA' 2>/dev/null \
         && openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj '/CN=localhost' 2>/dev/null \
         && printf 'subjectAltName=DNS:localhost,IP:127.0.0.1' > ext.cnf \
         && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext.cnf 2>/dev/null"
    ));
    sb.write("s.toml", &sweep("tls", &[0.01], 1, 200, 4));
    let (_coord, addr) = sb.coordinator("127.0.0.1:0", &["--tls-cert", "server.pem", "--tls-key", "server.key"]);
    let port = addr.rsplit(':').next().unwrap();
    let url = format!("https://localhost:{port}");
    let _w = sb.worker(&url, "w", &["--tls-ca", "ca.pem"]);
    let out = sb.kappa(&["submit", "s.toml", "--coordinator", &url, "--tls-ca", "ca.pem", "--watch"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = sb.kappa(&["status", "--coordinator", &url]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --tls-ca"), "{}", show(&out));
    let out = sb.kappa(&["status", "--coordinator", &format!("http://{addr}")]);
    assert_ne!(out.status.code(), Some(0), "plain text must not reach a TLS coordinator: {}", show(&out));
}

#[test]
fn cancel_stops_a_sweep_across_restarts_and_submitting_again_resumes_it() {
    let sb = Sandbox::new();
    sb.write("s.toml", &slow_sweep("cancel-me"));
    let (coord, addr) = sb.coordinator("127.0.0.1:0", FAST_LEASES);
    let _w = sb.worker(&addr, "w", &["--slots", "2"]);
    assert_eq!(submit(&sb, &addr, "s.toml", &[]).status.code(), Some(0));
    sb.wait_for("cluster/cancel-me", "some trials done", Duration::from_secs(60), |c| count(c, "succeeded") >= 2);
    let url = format!("http://{addr}");
    let out = sb.kappa(&["cancel", "--coordinator", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("sweep `cancel-me` cancelled"), "{}", show(&out));
    // Nothing runs any more, and nothing new finishes.
    sb.wait_for("cluster/cancel-me", "the running trials to be revoked", Duration::from_secs(30), |c| {
        count(c, "running") == 0
    });
    let done = {
        let db = rusqlite::Connection::open(sb.path().join("cluster/cancel-me/kappa.db")).unwrap();
        count(&db, "succeeded")
    };
    // A sweep submitted after it runs to its end on the same worker, which leases sweeps in the
    // order they were submitted: had the cancelled one kept leasing, its trials would go first.
    sb.write("after.toml", &sweep("after-cancel", &[0.01, 0.02], 1, 200, 4));
    assert_eq!(submit(&sb, &addr, "after.toml", &["--watch"]).status.code(), Some(0));
    let db = rusqlite::Connection::open(sb.path().join("cluster/cancel-me/kappa.db")).unwrap();
    assert_eq!(count(&db, "succeeded"), done, "a cancelled sweep kept finishing trials");
    assert_eq!(count(&db, "running"), 0, "a cancelled sweep's trial was leased");
    assert!(done < 24);
    let out = sb.kappa(&["status", "--coordinator", &url, "--sweep", "cancel-me"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("cancelled"), "{}", show(&out));
    // Still cancelled after a restart; submitting the same file again resumes it.
    coord.signal(libc::SIGKILL);
    drop(coord);
    let (_coord2, addr2) = sb.coordinator(&addr, FAST_LEASES);
    let out = sb.kappa(&["status", "--coordinator", &format!("http://{addr2}")]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("cancelled"), "{}", show(&out));
    assert_eq!(submit(&sb, &addr2, "s.toml", &[]).status.code(), Some(0));
    sb.wait_for("cluster/cancel-me", "every trial done", Duration::from_secs(90), |c| count(c, "succeeded") == 24);
    let (rows, _) = ledger(&sb, "cluster/cancel-me");
    assert!(rows.iter().all(|(_, _, counted)| *counted == 1), "{rows:?}");
}

#[test]
fn report_from_a_coordinator_matches_the_report_from_its_state() {
    let sb = Sandbox::new();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../sweeps/sgd-linear-rule.toml"))
        .unwrap()
        .replace("paths = 256", "paths = 32")
        .replace("samples = 200_000", "samples = 20_000");
    sb.write("s.toml", &text);
    let (_coord, addr) = sb.coordinator("127.0.0.1:0", &[]);
    let _w = sb.worker(&addr, "w", &["--slots", "2"]);
    assert_eq!(submit(&sb, &addr, "s.toml", &["--watch"]).status.code(), Some(0));
    let url = format!("http://{addr}");
    let remote = sb.kappa(&["report", "--coordinator", &url, "--out", "remote"]);
    assert_eq!(remote.status.code(), Some(0), "{}", show(&remote));
    let local = sb.kappa(&["report", "--state", "cluster/sgd-linear-rule", "--out", "local"]);
    assert_eq!(local.status.code(), Some(0), "{}", show(&local));
    let table = |o: &std::process::Output| {
        String::from_utf8_lossy(&o.stdout).lines().filter(|l| !l.starts_with("wrote ")).collect::<Vec<_>>().join("\n")
    };
    assert!(table(&remote).contains("sgd-linear"), "{}", show(&remote));
    assert_eq!(table(&remote), table(&local));
    let read = |d: &str| std::fs::read_to_string(sb.path().join(d).join("summary.json")).unwrap();
    assert_eq!(read("remote"), read("local"));
    // An unknown sweep is a clear error.
    let out = sb.kappa(&["report", "--coordinator", &url, "--sweep", "nope", "--out", "x"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no sweep named `nope`"), "{}", show(&out));
}

/// Structured logs: with `--log-format json` the coordinator and the worker write one JSON object
/// per line on stderr, with the event's fields, and nothing else: the listening address, the
/// dashboard's and the metrics' URLs, warnings and the goodbye are JSON lines too, and stdout
/// stays empty.
#[test]
fn the_coordinator_and_its_workers_log_json_lines_an_operator_can_follow() {
    let sb = Sandbox::new();
    sb.write("s.toml", &sweep("logs", &[0.01], 1, 200, 4));
    let (mut coord, addr, lines) = sb.coordinator_out(
        "127.0.0.1:0",
        &["--log-format", "json", "--ui-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"],
    );
    let mut w = sb.worker(&addr, "w", &["--log-format", "json", "--gpus", "1"]);
    assert_eq!(submit(&sb, &addr, "s.toml", &["--watch"]).status.code(), Some(0));
    // Stopped as a supervisor stops them, so their last lines are written too.
    w.signal(libc::SIGTERM);
    assert!(w.wait_exit(Duration::from_secs(30), "the worker stops on SIGTERM").success());
    coord.signal(libc::SIGTERM);
    assert!(coord.wait_exit(Duration::from_secs(60), "the coordinator stops on SIGTERM").success());
    // Its stderr reaches .coordinator-stderr through a copying thread: wait for the last line.
    let goodbye = |l: &str| l.contains("coordinator stopped").then_some(());
    assert!(lines.wait_for_line(Duration::from_secs(30), goodbye).is_some(), "no goodbye: {}", lines.text());
    let events = |file: &str| -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(sb.path().join(file)).unwrap_or_default();
        assert!(!text.trim().is_empty(), "{file} is empty");
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{file}: a line that is not JSON ({e}): {l}")))
            .inspect(|e: &serde_json::Value| assert!(e.is_object() && e["level"].is_string(), "{file}: {e}"))
            .collect()
    };
    let find = |events: &[serde_json::Value], message: &str| {
        events
            .iter()
            .find(|e| e["fields"]["message"].as_str().is_some_and(|m| m.starts_with(message)))
            .cloned()
            .unwrap_or_else(|| {
                panic!(
                    "no `{message}` event in:\n{}",
                    events.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")
                )
            })
    };
    let coordinator = events(".coordinator-stderr");
    let listening = find(&coordinator, "kappa coordinator listening on ");
    assert_eq!(listening["fields"]["addr"], addr.as_str(), "{listening}");
    assert!(find(&coordinator, "dashboard on http://")["fields"]["url"].is_string());
    assert!(find(&coordinator, "metrics on http://")["fields"]["url"].is_string());
    assert_eq!(find(&coordinator, "no token")["level"], "WARN");
    let registered = find(&coordinator, "worker registered");
    assert_eq!(registered["level"], "INFO");
    assert!(registered["fields"]["worker"].as_str().is_some_and(|w| w.starts_with("w#")), "{registered}");
    assert!(registered["timestamp"].is_string(), "{registered}");
    let submitted = find(&coordinator, "sweep submitted");
    assert_eq!((submitted["fields"]["sweep"].as_str(), submitted["fields"]["total"].as_u64()), (Some("logs"), Some(2)));
    let finished = find(&coordinator, "sweep finished");
    assert_eq!(
        (finished["fields"]["sweep"].as_str(), finished["fields"]["succeeded"].as_u64()),
        (Some("logs"), Some(2))
    );
    find(&coordinator, "coordinator stopped; every result is saved");
    let stdout = std::fs::read_to_string(sb.path().join(".coordinator-stdout")).unwrap_or_default();
    assert_eq!(stdout, "", "in JSON mode nothing goes to stdout");
    let worker = events(".worker-w");
    assert_eq!(find(&worker, "registered")["fields"]["worker"], "w");
    find(&worker, "worker GPUs: [0]");
    find(&worker, "worker stopped: 2 attempts reported");
}

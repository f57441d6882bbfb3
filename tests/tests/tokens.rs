//! Many people, one coordinator: `kappa coordinator --tokens FILE` with tokens issued by `kappa
//! token new`, over real gRPC and HTTP on loopback. Every role against every RPC and every
//! dashboard route; sweeps owned by whoever submitted them; revocation by SIGHUP (a worker's
//! leases end as lost, counted once; an open stream's next message is refused); two people's
//! sweeps side by side on shared workers; and hostile authorization headers.

use kappa_proto::pb;
use kappa_proto::pb::coordinator_client::CoordinatorClient;
use kappa_tests::http;
use kappa_tests::{Lines, Proc, Sandbox, count, ledger, noop_sweep, show, wait_until};
use std::collections::BTreeMap;
use std::time::Duration;
use tonic::Code;
use tonic::transport::Channel;

const LIMIT: Duration = Duration::from_secs(60);

/// Every method of `kappa.v1.Coordinator`.
fn rpcs() -> impl Iterator<Item = &'static str> {
    kappa_coordinator::access::RPCS.iter().map(|(m, _)| *m)
}

/// A coordinator serving a tokens file, with its dashboard.
struct Lab {
    sb: Sandbox,
    coordinator: Proc,
    addr: String,
    ui: String,
    _out: Lines,
    /// Token by holder name.
    tokens: BTreeMap<String, String>,
}

impl Lab {
    /// Issues tokens for `holders` (name, role, commands) and starts a coordinator on them.
    fn start(holders: &[(&str, &str, bool)]) -> Lab {
        let sb = Sandbox::new();
        let tokens = holders.iter().map(|(n, r, c)| (n.to_string(), sb.issue_token(n, r, *c))).collect();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(sb.path().join("tokens.toml")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "kappa token new makes the file its owner's only");
        }
        let (coordinator, addr, out) =
            sb.coordinator_out("127.0.0.1:0", &["--tokens", "tokens.toml", "--ui-listen", "127.0.0.1:0"]);
        let ui = out.wait_for("dashboard on ", LIMIT).unwrap_or_else(|| panic!("{}", out.text()));
        Lab { sb, coordinator, addr, ui, _out: out, tokens }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn token(&self, name: &str) -> &str {
        &self.tokens[name]
    }

    /// `kappa ARGS --coordinator URL --token-file NAME.token`.
    fn kappa_as(&self, name: &str, args: &[&str]) -> std::process::Output {
        let url = self.url();
        let file = format!("{name}.token");
        let mut all = args.to_vec();
        all.extend_from_slice(&["--coordinator", &url, "--token-file", &file]);
        self.sb.kappa(&all)
    }

    /// Submits `sweep.toml`-style text as `name`; asserts it was taken.
    fn submit_as(&self, name: &str, file: &str, text: &str) {
        self.sb.write(file, text);
        let out = self.kappa_as(name, &["submit", file]);
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    }

    /// The coordinator's log so far.
    fn log(&self) -> String {
        std::fs::read_to_string(self.sb.path().join(".coordinator-stderr")).unwrap_or_default()
    }

    /// Rewrites the tokens file without `names` and sends SIGHUP; waits for the reload's log line.
    fn revoke(&self, names: &[&str]) {
        let before = self.log().matches("tokens reloaded").count();
        let path = self.sb.path().join("tokens.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let kept: Vec<&str> = text
            .split("[[user]]")
            .filter(|e| !e.trim().is_empty())
            .filter(|e| !names.iter().any(|n| e.contains(&format!("name = \"{n}\""))))
            .collect();
        std::fs::write(&path, kept.iter().map(|e| format!("[[user]]{e}")).collect::<String>()).unwrap();
        self.coordinator.signal(libc::SIGHUP);
        wait_until("the tokens reloaded", LIMIT, || self.log().matches("tokens reloaded").count() > before);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

async fn channel(url: &str) -> CoordinatorClient<Channel> {
    CoordinatorClient::new(Channel::from_shared(url.to_string()).unwrap().connect().await.unwrap())
}

/// A request with `authorization: Bearer TOKEN` (none: no header).
fn req<T>(msg: T, token: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    r
}

fn code<T>(r: Result<T, tonic::Status>) -> Code {
    r.map_or_else(|s| s.code(), |_| Code::Ok)
}

/// Calls `method` as the holder of `token` with a well-formed body (`sweep` for cancel and
/// retry; an unregistered worker id for a worker's calls); returns the status code.
async fn call(c: &mut CoordinatorClient<Channel>, method: &str, token: Option<&str>, sweep: &str, tag: &str) -> Code {
    let worker = 999_999;
    let v = kappa_proto::PROTOCOL_VERSION;
    match method {
        "Register" => code(c.register(req(kappa_proto::register_request("probe", 1, 0, &[]), token)).await),
        "Lease" => code(
            c.lease(req(
                pb::LeaseRequest { worker_id: worker, max_trials: 1, wait_ms: 0, ..Default::default() },
                token,
            ))
            .await,
        ),
        "Heartbeat" => code(
            c.heartbeat(req(
                pb::HeartbeatRequest { worker_id: worker, protocol_version: v, ..Default::default() },
                token,
            ))
            .await,
        ),
        "Report" => code(c.report(req(pb::ReportRequest::default(), token)).await),
        "ReportBatch" => code(c.report_batch(req(pb::ReportBatchRequest::default(), token)).await),
        "Deregister" => code(c.deregister(req(pb::DeregisterRequest { worker_id: worker }, token)).await),
        "Submit" => {
            let spec = noop_sweep(&format!("probe-{tag}"), 2, "1ms");
            let r = pb::SubmitRequest { spec, file_name: "probe.toml".into(), ..Default::default() };
            code(c.submit(req(r, token)).await)
        }
        "Cancel" => code(c.cancel(req(pb::CancelRequest { sweep: sweep.into() }, token)).await),
        "RetryFailed" => code(c.retry_failed(req(pb::RetryFailedRequest { sweep: sweep.into() }, token)).await),
        "Status" => code(c.status(req(pb::StatusRequest::default(), token)).await),
        "Watch" => match c.watch(req(pb::WatchRequest { sweep: sweep.into() }, token)).await {
            Ok(s) => code(s.into_inner().message().await),
            Err(s) => s.code(),
        },
        "Results" => match c.results(req(pb::ResultsRequest { sweep: sweep.into() }, token)).await {
            Ok(s) => code(s.into_inner().message().await),
            Err(s) => s.code(),
        },
        _ => unreachable!("{method}"),
    }
}

/// What the table expects of a role: allowed, refused (PERMISSION_DENIED), or not
/// authenticated at all.
fn expected(role: &str, method: &str) -> &'static str {
    let worker = ["Register", "Lease", "Heartbeat", "Report", "ReportBatch", "Deregister"].contains(&method);
    let read = ["Status", "Watch", "Results"].contains(&method);
    let allowed = match role {
        "admin" => true,
        "submit" => !worker,
        "read" => read,
        "worker" => worker,
        _ => return "unauthenticated",
    };
    if allowed { "allowed" } else { "denied" }
}

/// A table cell.
fn short(judged: &str) -> &'static str {
    match judged {
        "allowed" => "ok",
        "denied" => "DENIED",
        _ => "UNAUTH",
    }
}

fn judged(c: Code) -> &'static str {
    match c {
        Code::Unauthenticated => "unauthenticated",
        Code::PermissionDenied => "denied",
        _ => "allowed",
    }
}

#[test]
fn every_role_against_every_rpc_and_every_dashboard_route() {
    let lab = Lab::start(&[
        ("rita", "read", false),
        ("alice", "submit", false),
        ("ada", "admin", false),
        ("node-1", "worker", false),
        ("node-2", "worker", false),
    ]);
    lab.submit_as("alice", "alice.toml", &noop_sweep("alice-lr", 4, "1ms"));
    lab.submit_as("ada", "bob.toml", &noop_sweep("ada-lr", 4, "1ms"));
    // (holder, role, token as sent, the sweep its cancel and retry name: its own where it has one)
    let wrong = "kappa_".to_string() + &"0".repeat(64);
    let rows: Vec<(&str, &str, Option<&str>, &str)> = vec![
        ("rita (read)", "read", Some(lab.token("rita")), "alice-lr"),
        ("alice (submit)", "submit", Some(lab.token("alice")), "alice-lr"),
        ("ada (admin)", "admin", Some(lab.token("ada")), "alice-lr"),
        ("node-1 (worker)", "worker", Some(lab.token("node-1")), "alice-lr"),
        ("unknown token", "unknown", Some(&wrong), "alice-lr"),
        ("no token", "none", None, "alice-lr"),
    ];
    let mut table = format!("{:<16}", "gRPC");
    for m in rpcs() {
        table += &format!(" {m:>11}");
    }
    table.push('\n');
    let mut mismatches = Vec::new();
    runtime().block_on(async {
        let mut c = channel(&lab.url()).await;
        for (holder, role, token, sweep) in &rows {
            table += &format!("{holder:<16}");
            for m in rpcs() {
                let got = call(&mut c, m, *token, sweep, role).await;
                let want = expected(role, m);
                table += &format!(" {:>11}", short(judged(got)));
                if judged(got) != want {
                    mismatches.push(format!("{holder} ({role}) {m}: {got:?}, expected {want}"));
                }
            }
            table.push('\n');
        }
        // The role is judged before the body is read: a worker's 17 MiB submission is refused as
        // a worker's, not as too large.
        let big = pb::SubmitRequest { spec: "x".repeat(17 << 20), ..Default::default() };
        let s = c.submit(req(big, Some(lab.token("node-1")))).await.unwrap_err();
        assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
        assert!(s.message().contains("node-1 (worker) may not submit sweeps"), "{}", s.message());

        // A worker token acts only for the workers it registered (an admin for any).
        let r = kappa_proto::register_request("n1", 1, 0, &[]);
        let id = c.register(req(r, Some(lab.token("node-1")))).await.unwrap().into_inner().worker_id;
        let v = kappa_proto::PROTOCOL_VERSION;
        let report = || pb::ReportRequest {
            worker_id: id,
            trial_id: "00000000000000aa".into(),
            attempt: 1,
            outcome: Some(pb::report_request::Outcome::Failed(pb::Failed::default())),
            ..Default::default()
        };
        let other = Some(lab.token("node-2"));
        let lease = pb::LeaseRequest { worker_id: id, max_trials: 1, wait_ms: 0, ..Default::default() };
        let beat = pb::HeartbeatRequest { worker_id: id, protocol_version: v, ..Default::default() };
        let codes = [
            code(c.lease(req(lease, other)).await),
            code(c.heartbeat(req(beat.clone(), other)).await),
            code(c.report(req(report(), other)).await),
            code(c.report_batch(req(pb::ReportBatchRequest { reports: vec![report()] }, other)).await),
            code(c.deregister(req(pb::DeregisterRequest { worker_id: id }, other)).await),
        ];
        assert_eq!(codes, [Code::PermissionDenied; 5], "node-2 acting for node-1's worker");
        assert_eq!(code(c.heartbeat(req(beat, Some(lab.token("node-1")))).await), Code::Ok);
        assert_eq!(code(c.lease(req(lease, Some(lab.token("ada")))).await), Code::Ok);
    });

    // The dashboard: every API route, as every holder (bearer header).
    let trials = http::get_with(
        &lab.ui,
        "/api/sweeps/alice-lr/trials",
        &[("Authorization", &format!("Bearer {}", lab.token("ada")))],
    )
    .json();
    let id = trials["trials"][0]["id"].as_str().unwrap_or_else(|| panic!("{trials}")).to_string();
    let routes: Vec<(&str, String)> = vec![
        ("GET", "/api/sweeps".into()),
        ("GET", "/api/events".into()),
        ("GET", "/api/sweeps/alice-lr".into()),
        ("GET", "/api/sweeps/alice-lr/trials".into()),
        ("GET", format!("/api/sweeps/alice-lr/trials/{id}")),
        ("GET", "/api/sweeps/alice-lr/curves".into()),
        ("GET", "/api/sweeps/alice-lr/report".into()),
        ("GET", "/api/sweeps/alice-lr/report.html".into()),
        ("GET", "/api/sweeps/alice-lr/export.csv".into()),
        ("GET", "/api/sweeps/alice-lr/export.jsonl".into()),
        ("POST", "/api/sweeps/alice-lr/retry".into()),
        ("POST", "/api/sweeps/alice-lr/cancel".into()),
    ];
    // Column labels: the route's last part (`POST cancel`), `sweeps` for /api/sweeps.
    let labels: Vec<String> = routes
        .iter()
        .map(|(m, p)| {
            let last = if p.contains("/trials/") { "trials/ID" } else { p.rsplit('/').next().unwrap_or(p) };
            let last = if last == "alice-lr" { "SWEEP" } else { last };
            if *m == "POST" { format!("POST {last}") } else { last.to_string() }
        })
        .collect();
    table += &format!("\n{:<16}", "HTTP /api/…");
    for l in &labels {
        table += &format!(" {l:>12}");
    }
    table.push('\n');
    for (holder, role, token, _) in &rows {
        table += &format!("{holder:<16}");
        let bearer = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer.iter().map(|b| ("Authorization", b.as_str())).collect();
        for (method, path) in &routes {
            let status = if path == "/api/events" {
                http::first_event(&lab.ui, path, &headers).0
            } else {
                http::request(&lab.ui, method, path, &headers, "").status
            };
            let got = match status {
                401 => "unauthenticated",
                403 => "denied",
                _ => "allowed",
            };
            let want = match (*role, *method) {
                ("read", "POST") | ("worker", _) => "denied",
                ("read" | "submit" | "admin", _) => "allowed",
                _ => "unauthenticated",
            };
            table += &format!(" {:>12}", format!("{} {status}", short(got)));
            if got != want {
                mismatches.push(format!("{holder} ({role}) {method} {path}: {status}, expected {want}"));
            }
        }
        table.push('\n');
    }
    println!("{table}");
    assert!(mismatches.is_empty(), "{}\n{table}", mismatches.join("\n"));
    // The page, the session and the login stay public; the session names the holder.
    assert_eq!(http::get(&lab.ui, "/").status, 200);
    let bearer = format!("Bearer {}", lab.token("alice"));
    let s = http::get_with(&lab.ui, "/api/session", &[("Authorization", &bearer)]).json();
    assert_eq!(s["holder"], serde_json::json!({"name": "alice", "role": "submit"}), "{s}");
    // Every refusal is in the audit log with the holder's name, and no token is in the log.
    let log = lab.log();
    assert!(log.contains("node-1 (worker) may not read sweeps"), "{log}");
    assert!(log.contains("rita (read) may not cancel sweeps"), "{log}");
    for t in lab.tokens.values() {
        assert!(!log.contains(&t[6..]), "a token in the log");
    }
}

#[test]
fn a_sweep_belongs_to_whoever_submitted_it_and_commands_need_the_right() {
    let lab = Lab::start(&[
        ("alice", "submit", true),
        ("bob", "submit", false),
        ("ada", "admin", false),
        ("rita", "read", false),
    ]);
    let mut lab = lab;
    lab.submit_as("bob", "bob.toml", &noop_sweep("bob-lr", 6, "1ms"));
    lab.submit_as("alice", "alice.toml", &noop_sweep("alice-lr", 6, "1ms"));

    // alice may not cancel, retry, re-submit or edit bob's sweep; the refusal names both.
    for args in [&["cancel", "--sweep", "bob-lr"][..], &["retry", "--failed", "--sweep", "bob-lr"]] {
        let out = lab.kappa_as("alice", args);
        assert_ne!(out.status.code(), Some(0), "{}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("alice (submit) may not") && err.contains("sweep \"bob-lr\" owned by bob"),
            "{args:?}: {err}"
        );
    }
    for text in [noop_sweep("bob-lr", 6, "1ms"), noop_sweep("bob-lr", 8, "1ms")] {
        lab.sb.write("steal.toml", &text);
        let out = lab.kappa_as("alice", &["submit", "steal.toml"]);
        assert_ne!(out.status.code(), Some(0), "{}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("alice (submit) may not submit again sweep \"bob-lr\" owned by bob"),
            "{}",
            show(&out)
        );
    }
    // Her own: yes. An admin: anyone's.
    let out = lab.kappa_as("alice", &["cancel", "--sweep", "alice-lr"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = lab.kappa_as("ada", &["cancel", "--sweep", "bob-lr"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    // A reader cannot cancel even its... nothing: it has no sweeps.
    let out = lab.kappa_as("rita", &["cancel", "--sweep", "alice-lr"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("rita (read) may not cancel sweeps"), "{}", show(&out));

    // Command sweeps: bob has no `commands`, alice has.
    let command = "version = 1\nname = \"NAME\"\n[task]\nkind = \"command\"\nargv = [\"true\"]\n[grid]\nlr = [0.1]\n";
    lab.sb.write("cmd-bob.toml", &command.replace("NAME", "bob-cmd"));
    let out = lab.kappa_as("bob", &["submit", "cmd-bob.toml"]);
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bob (submit) may not submit sweep \"bob-cmd\"") && err.contains("commands = true"), "{err}");
    lab.submit_as("alice", "cmd-alice.toml", &command.replace("NAME", "alice-cmd"));
    // Not naming a sweep means one's own latest, never someone else's newer one.
    let out = lab.kappa_as("bob", &["cancel"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("bob-lr"), "{}", show(&out));
    let out = lab.kappa_as("ada", &["cancel"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ada has no sweep here: name one (--sweep)"),
        "{}",
        show(&out)
    );

    // Owners in `kappa status` (text and JSON) and the dashboard.
    let out = lab.kappa_as("rita", &["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("sweep `bob-lr` (owner bob)") && text.contains("sweep `alice-cmd` (owner alice)"), "{text}");
    let out = lab.kappa_as("rita", &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    let owners: BTreeMap<String, String> = v["sweeps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["sweep"].as_str().unwrap().to_string(), s["owner"].as_str().unwrap_or("").to_string()))
        .collect();
    assert_eq!(owners["bob-lr"], "bob");
    assert_eq!(owners["alice-lr"], "alice");
    let bob = format!("Bearer {}", lab.token("bob"));
    let sweep = http::get_with(&lab.ui, "/api/sweeps/alice-lr", &[("Authorization", &bob)]).json();
    assert_eq!((sweep["owner"].as_str(), sweep["can_change"].as_bool()), (Some("alice"), Some(false)), "{sweep}");
    let sweep = http::get_with(&lab.ui, "/api/sweeps/bob-lr", &[("Authorization", &bob)]).json();
    assert_eq!((sweep["owner"].as_str(), sweep["can_change"].as_bool()), (Some("bob"), Some(true)), "{sweep}");
    // The dashboard refuses bob on alice's sweep the same way, after a login with his token.
    let login = http::request(&lab.ui, "POST", "/api/login", &[], &format!("{{\"token\": \"{}\"}}", lab.token("bob")));
    assert_eq!(login.status, 204, "{}", login.text());
    let cookie = login.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
    let r = http::request(&lab.ui, "POST", "/api/sweeps/alice-lr/retry", &[("Cookie", &cookie)], "");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("bob (submit) may not retry sweep \\\"alice-lr\\\" owned by alice"), "{}", r.text());
    let r = http::request(&lab.ui, "POST", "/api/sweeps/bob-lr/retry", &[("Cookie", &cookie)], "");
    assert_eq!(r.status, 200, "{}", r.text());

    // The audit trail: submits, cancels, retries and refusals with the holder's name.
    let log = lab.log();
    for line in [
        "bob (submit) submit sweep `bob-lr`",
        "alice (submit) cancel sweep `alice-lr`",
        "ada (admin) cancel sweep `bob-lr`",
        "bob (submit) retry sweep `bob-lr`",
        "refused: alice (submit) may not cancel sweep \"bob-lr\" owned by bob",
        "refused: bob (submit) may not submit sweep \"bob-cmd\"",
    ] {
        assert!(log.contains(line), "no `{line}` in the log:\n{log}");
    }

    // Owners are part of the sweeps' state: a restarted coordinator keeps them.
    lab.coordinator.signal(libc::SIGTERM);
    lab.coordinator.wait_exit(LIMIT, "the coordinator to stop");
    let (coordinator, addr, out) = lab.sb.coordinator_out("127.0.0.1:0", &["--tokens", "tokens.toml"]);
    (lab.coordinator, lab.addr, lab._out) = (coordinator, addr, out);
    let out = lab.kappa_as("alice", &["cancel", "--sweep", "bob-lr"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("owned by bob"), "{}", show(&out));
    let out = lab.kappa_as("rita", &["status"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("sweep `alice-lr` (owner alice)"), "{}", show(&out));
}

#[test]
fn a_revoked_token_is_refused_on_its_next_call_and_a_revoked_workers_trials_end_as_lost_counted_once() {
    let lab = Lab::start(&[
        ("alice", "submit", false),
        ("rita", "read", false),
        ("node-1", "worker", false),
        ("node-2", "worker", false),
    ]);
    lab.submit_as("alice", "s.toml", &noop_sweep("slow", 12, "400ms"));
    let mut node1 = lab.sb.worker(&lab.addr, "n1", &["--token-file", "node-1.token", "--slots", "3"]);
    lab.sb.wait_for("cluster/slow", "node-1 running trials", LIMIT, |db| count(db, "running") >= 2);
    let rt = runtime();
    // rita watches the sweep; her stream is open when her token goes.
    let mut watch = rt.block_on(async {
        let mut c = channel(&lab.url()).await;
        let mut s = c
            .watch(req(pb::WatchRequest { sweep: "slow".into() }, Some(lab.token("rita"))))
            .await
            .unwrap()
            .into_inner();
        s.message().await.unwrap().expect("a first snapshot");
        s
    });
    // ... and in the dashboard.
    let events = follow_events(&lab.ui, lab.token("rita"));
    // SIGHUP alone reloads the file (no change needed).
    let reloads = lab.log().matches("tokens reloaded").count();
    lab.coordinator.signal(libc::SIGHUP);
    wait_until("a reload on SIGHUP", LIMIT, || lab.log().matches("tokens reloaded").count() > reloads);
    lab.revoke(&["node-1", "rita"]);

    // Refused on the next call, whoever asks.
    rt.block_on(async {
        let mut c = channel(&lab.url()).await;
        let s = c.status(req(pb::StatusRequest::default(), Some(lab.token("rita")))).await.unwrap_err();
        assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
        let r = kappa_proto::register_request("again", 1, 0, &[]);
        assert_eq!(code(c.register(req(r, Some(lab.token("node-1")))).await), Code::Unauthenticated);
        assert_eq!(code(c.status(req(pb::StatusRequest::default(), Some(lab.token("alice")))).await), Code::Ok);
    });
    // The revoked worker is told so and stops.
    let status = node1.wait_exit(LIMIT, "the revoked worker to stop");
    assert!(!status.success());
    let worker_log = std::fs::read_to_string(lab.sb.path().join(".worker-n1")).unwrap();
    assert!(
        worker_log.contains("revoked") || worker_log.contains("not in the coordinator's tokens file"),
        "{worker_log}"
    );

    // Another node finishes the sweep; the open stream's next message is the refusal.
    let _node2 = lab.sb.worker(&lab.addr, "n2", &["--token-file", "node-2.token", "--slots", "4"]);
    let refused = rt.block_on(async {
        loop {
            match watch.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream ended without the refusal"),
                Err(s) => break s,
            }
        }
    });
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("the token of rita was revoked"), "{}", refused.message());
    events.recv_timeout(LIMIT).expect("the dashboard's event stream ends once rita's token is revoked");
    lab.sb.wait_for("cluster/slow", "the sweep finished", LIMIT, |db| count(db, "succeeded") == 12);
    let db = lab.sb.db("cluster/slow");
    // node-1's attempts that were running ended as lost, handed back; each trial counted once.
    let lost: i64 = db
        .query_row(
            "SELECT count(*) FROM attempts WHERE worker LIKE 'n1#%' AND outcome = 'lost' AND error LIKE '%token was revoked%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(lost >= 1, "node-1's running attempts end as lost");
    let late: i64 = db
        .query_row("SELECT count(*) FROM attempts WHERE worker LIKE 'n1#%' AND ended_at IS NULL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(late, 0, "no attempt of node-1 is left open");
    for (trial, _, counted) in ledger(&db) {
        assert_eq!(counted, 1, "{trial} counted {counted} times");
    }
    let log = lab.log();
    assert!(log.contains("worker dropped: its token was revoked"), "{log}");

    // A file that no longer parses keeps the holders there were, and the log says why.
    std::fs::write(lab.sb.path().join("tokens.toml"), "[[user]]\nname = \"alice\"\nrole = \"submit\"\n").unwrap();
    lab.coordinator.signal(libc::SIGHUP);
    wait_until("the failed reload logged", LIMIT, || lab.log().contains("tokens file not reloaded"));
    assert!(lab.log().contains("missing field `token_sha256`"), "{}", lab.log());
    rt.block_on(async {
        let mut c = channel(&lab.url()).await;
        assert_eq!(code(c.status(req(pb::StatusRequest::default(), Some(lab.token("alice")))).await), Code::Ok);
    });
}

#[test]
fn two_peoples_sweeps_run_side_by_side_on_shared_workers_each_trial_counted_once() {
    let lab = Lab::start(&[("alice", "submit", false), ("bob", "submit", false), ("node-1", "worker", false)]);
    lab.submit_as("alice", "a.toml", &noop_sweep("alice-sweep", 300, "2ms"));
    lab.submit_as("bob", "b.toml", &noop_sweep("bob-sweep", 300, "2ms"));
    // Two nodes on one worker token (a token per node is as good).
    let _w1 = lab.sb.worker(&lab.addr, "w1", &["--token-file", "node-1.token", "--slots", "4"]);
    let _w2 = lab.sb.worker(&lab.addr, "w2", &["--token-file", "node-1.token", "--slots", "4"]);
    for s in ["alice-sweep", "bob-sweep"] {
        lab.sb.wait_for(&format!("cluster/{s}"), s, LIMIT, |db| count(db, "succeeded") == 300);
        let l = ledger(&lab.sb.db(&format!("cluster/{s}")));
        assert_eq!(l.len(), 300);
        assert!(l.iter().all(|(_, _, counted)| *counted == 1), "{s}: {l:?}");
        let workers: i64 = lab
            .sb
            .db(&format!("cluster/{s}"))
            .query_row("SELECT count(DISTINCT worker) FROM attempts", [], |r| r.get(0))
            .unwrap();
        assert_eq!(workers, 2, "{s} ran on both workers");
    }
}

/// Follows the dashboard's event stream as the holder of `token` on a thread; the receiver gets
/// `()` when the server ends the stream.
fn follow_events(base: &str, token: &str) -> std::sync::mpsc::Receiver<()> {
    use std::io::{BufRead, Write};
    let host = base.trim_start_matches("http://").trim_end_matches('/').to_string();
    let mut s = std::net::TcpStream::connect(&host).unwrap();
    let r = format!("GET /api/events HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n");
    s.write_all(r.as_bytes()).unwrap();
    let mut lines = std::io::BufReader::new(s);
    let mut first = String::new();
    lines.read_line(&mut first).unwrap();
    assert!(first.contains(" 200 "), "{first}");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        // A chunked stream ends with a zero-size chunk, or the connection closes.
        while lines.read_line(&mut line).is_ok_and(|n| n > 0) && line.trim() != "0" {
            line.clear();
        }
        let _ = tx.send(());
    });
    rx
}

/// Sends `header` as the authorization of a raw HTTP/1.1 request; returns the status line's code
/// (0: the server closed the connection without one).
fn raw_http(base: &str, header: &[u8]) -> u16 {
    use std::io::{Read, Write};
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    let mut r =
        format!("GET /api/sweeps HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAuthorization: ").into_bytes();
    r.extend_from_slice(header);
    r.extend_from_slice(b"\r\n\r\n");
    let _ = s.write_all(&r);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[test]
fn hostile_authorization_headers_are_refused_cheaply_and_the_server_keeps_serving() {
    let lab = Lab::start(&[("alice", "submit", false)]);
    lab.submit_as("alice", "a.toml", &noop_sweep("a", 2, "1ms"));
    // Deterministic "random" bytes (xorshift), every value a header may carry.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut random = |n: usize| -> Vec<u8> {
        (0..n).map(|_| (next() % 224) as u8 + 32).map(|b| if b == 127 { b'x' } else { b }).collect()
    };
    let rt = runtime();
    rt.block_on(async {
        let mut c = channel(&lab.url()).await;
        let mut sent = 0;
        for i in 0..1000 {
            let bytes = if i % 2 == 0 { random(1 + i % 300) } else { format!("Bearer kappa_{:064x}", i).into_bytes() };
            let Ok(value) = tonic::metadata::MetadataValue::try_from(&bytes[..]) else { continue };
            let mut r = tonic::Request::new(pb::StatusRequest::default());
            r.metadata_mut().insert("authorization", value);
            let s = c.status(r).await.unwrap_err();
            assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
            sent += 1;
        }
        assert!(sent >= 900, "only {sent} headers could be sent");
        // A 1 MiB token: refused (by the HTTP/2 header limit or the token check), never served.
        let huge = format!("Bearer {}", "a".repeat(1 << 20));
        let mut r = tonic::Request::new(pb::StatusRequest::default());
        r.metadata_mut().insert("authorization", huge.parse().unwrap());
        let refused = c.status(r).await.unwrap_err();
        assert_ne!(refused.code(), Code::Ok);
        // Still serving, on a fresh channel and on the old one.
        let mut fresh = channel(&lab.url()).await;
        assert_eq!(code(fresh.status(req(pb::StatusRequest::default(), Some(lab.token("alice")))).await), Code::Ok);
        assert_eq!(code(c.status(req(pb::StatusRequest::default(), Some(lab.token("alice")))).await), Code::Ok);
    });
    // The dashboard: random bytes, a 1 MiB header, 200 wrong tokens.
    for i in 0..200 {
        let status = raw_http(&lab.ui, &random(1 + i));
        assert_eq!(status, 401, "random header {i}");
    }
    let status = raw_http(&lab.ui, format!("Bearer {}", "a".repeat(1 << 20)).as_bytes());
    assert!(status == 431 || status == 401 || status == 400 || status == 0, "a 1 MiB header: {status}");
    let bearer = format!("Bearer {}", lab.token("alice"));
    assert_eq!(http::get_with(&lab.ui, "/api/sweeps", &[("Authorization", &bearer)]).status, 200);
    // The log holds a bounded number of refusals, not one per wrong token.
    let log = lab.log();
    let logged = log.lines().filter(|l| l.contains("refused")).count();
    assert!(logged <= 25, "{logged} refusal lines logged for ~1,200 wrong tokens");
}

#[test]
fn bad_tokens_files_and_flags_are_named_and_kappa_token_new_refuses_what_would_break_the_file() {
    let sb = Sandbox::new();
    sb.issue_token("alice", "submit", false);
    // The same name again, a name that is not one, --commands for a role that cannot submit.
    for (args, says) in [
        (&["token", "new", "alice", "--role", "read", "--tokens", "tokens.toml"][..], "already has `alice`"),
        (&["token", "new", "a b", "--role", "read", "--tokens", "tokens.toml"], "name `a b`"),
        (
            &["token", "new", "r", "--role", "read", "--commands", "--tokens", "tokens.toml"],
            "--commands is for role submit",
        ),
    ] {
        let out = sb.kappa(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains(says), "{args:?}: {}", show(&out));
        assert!(out.stdout.is_empty(), "no token printed when none was added");
    }
    let coordinator = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec!["coordinator", "--listen", "127.0.0.1:0", "--state", "st"];
        all.extend_from_slice(args);
        sb.kappa_env(&all, env)
    };
    sb.write("shared", "s3cret\n");
    sb.write(
        "bad.toml",
        &format!("[[user]]\nname = \"bob\"\ntoken_sha256 = \"{}\"\nrole = \"owner\"\n", "ab".repeat(32)),
    );
    for (args, env, says) in [
        (
            &["--tokens", "tokens.toml", "--token-file", "shared"][..],
            &[][..],
            "--tokens tokens.toml and --token-file shared",
        ),
        (&["--tokens", "tokens.toml"], &[("KAPPA_TOKEN", "s3cret")], "--tokens tokens.toml and KAPPA_TOKEN"),
        (&["--tokens", "missing.toml"], &[], "tokens file missing.toml: cannot read it"),
        (&["--tokens", "bad.toml"], &[], "tokens file bad.toml, line 4: unknown role `owner` for `bob`"),
    ] {
        let out = coordinator(args, env);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains(says), "{args:?}: {}", show(&out));
    }
    // A file others may read starts, with a warning.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(sb.path().join("tokens.toml"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let (_c, _addr, _out) = sb.coordinator_out("127.0.0.1:0", &["--tokens", "tokens.toml"]);
        let log = std::fs::read_to_string(sb.path().join(".coordinator-stderr")).unwrap();
        assert!(log.contains("may be read or written by others than its owner (mode 644): chmod 600"), "{log}");
    }
}

#[test]
fn workers_with_tokens_of_their_own_outlive_a_coordinator_restart_and_their_results_count_once() {
    let mut lab = Lab::start(&[("alice", "submit", true), ("node-1", "worker", false), ("node-2", "worker", false)]);
    lab.submit_as("alice", "s.toml", &kappa_tests::gated_sweep("gated", 12, 2));
    let mut w1 = lab.sb.worker(&lab.addr, "n1", &["--token-file", "node-1.token", "--slots", "2", "--allow-commands"]);
    let mut w2 = lab.sb.worker(&lab.addr, "n2", &["--token-file", "node-2.token", "--slots", "2", "--allow-commands"]);
    lab.sb.wait_for("cluster/gated", "both workers busy", LIMIT, |db| {
        count(db, "succeeded") >= 2 && count(db, "running") >= 4
    });
    let old_ids: Vec<u64> = {
        let db = lab.sb.db("cluster/gated");
        let mut stmt = db.prepare("SELECT DISTINCT worker FROM attempts").unwrap();
        stmt.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|w| w.unwrap().rsplit('#').next().unwrap().parse().unwrap())
            .collect()
    };
    assert_eq!(old_ids.len(), 2, "{old_ids:?}");
    lab.coordinator.signal(libc::SIGKILL);
    lab.coordinator.wait_exit(LIMIT, "the killed coordinator");
    let (coordinator, addr, out) = lab.sb.coordinator_out(&lab.addr, &["--tokens", "tokens.toml"]);
    assert_eq!(addr, lab.addr);
    (lab.coordinator, lab._out) = (coordinator, out);
    // The restarted coordinator never hands out an id of the one before: a worker still
    // carrying one is a worker to register again, not another holder's worker.
    runtime().block_on(async {
        let mut c = channel(&lab.url()).await;
        for _ in 0..=old_ids.iter().copied().max().unwrap_or(0).min(50) {
            let r = kappa_proto::register_request("probe", 1, 0, &[]);
            let id = c.register(req(r, Some(lab.token("node-2")))).await.unwrap().into_inner().worker_id;
            assert!(!old_ids.contains(&id), "id {id} handed out again (before: {old_ids:?})");
            c.deregister(req(pb::DeregisterRequest { worker_id: id }, Some(lab.token("node-2")))).await.unwrap();
        }
    });
    lab.sb.write("gate", "");
    lab.sb.wait_for("cluster/gated", "every trial done", LIMIT, |db| count(db, "succeeded") == 12);
    for (trial, _, counted) in ledger(&lab.sb.db("cluster/gated")) {
        assert_eq!(counted, 1, "{trial} counted {counted} times");
    }
    for (w, name) in [(&mut w1, "n1"), (&mut w2, "n2")] {
        let log = std::fs::read_to_string(lab.sb.path().join(format!(".worker-{name}"))).unwrap_or_default();
        assert!(w.child.try_wait().unwrap().is_none(), "worker {name} stopped:\n{log}");
    }
}

//! The web dashboard end to end: `kappa run --ui` and `kappa coordinator --ui-listen` serving the
//! JSON API over real HTTP on loopback (status codes, paging, filters, sorting, details,
//! downloads, the event stream, the token), and a real headless Chromium driving the page
//! (`browser` tests: required under CI=true, skipped visibly elsewhere when no Chromium is
//! installed).

use kappa_tests::browser::Browser;
use kappa_tests::http::{self, Response};
use kappa_tests::{Lines, Proc, Sandbox, lazy, show, wait_until};
use serde_json::Value;
use std::time::{Duration, Instant};

/// What the hostile parameter value and the failing command's stderr say: if any of it ran as
/// HTML, `window.pwned` would be set.
const HOSTILE: &str = r#"<script>window.pwned=1</script><img src=x onerror="window.pwned=2">"#;

/// A command sweep of 12 trials: the `ok` half print ten metrics lines, the loss at their lr;
/// the others print their tag (the hostile HTML) on stderr and fail at once.
fn escape_sweep(sb: &Sandbox) {
    sb.write(
        "tag.sh",
        "if [ \"$1\" = ok ]; then\n  for i in 1 2 3 4 5 6 7 8 9 10; do echo \"{\\\"step\\\": $i, \\\"loss\\\": $2}\"; done\nelse\n  \
         echo \"$1\" >&2\n  exit 1\nfi\n",
    );
    sb.write(
        "escape.toml",
        &format!(
            "version = 1\nname = \"escape\"\n[task]\nkind = \"command\"\nargv = [\"sh\", \"tag.sh\", \"{{tag}}\", \"{{lr}}\"]\n\
             [grid]\noptimizer = [\"sgd\"]\nbatch_size = [4]\nlr = [0.01, 0.02, 0.03]\nseed = [0, 1]\n\
             params.tag = [\"ok\", '{HOSTILE}']\n[execution]\nretries = 0\n"
        ),
    );
}

/// Starts `kappa run FILE --ui` and returns it with the dashboard's URL.
fn run_ui(sb: &Sandbox, file: &str) -> (Proc, Lines, String) {
    let (proc, lines) = sb.spawn_stderr(&["run", file, "--ui", "--quiet", "--workers", "2"]);
    let url = lines
        .wait_for("dashboard on ", Duration::from_secs(60))
        .unwrap_or_else(|| panic!("no dashboard URL printed: {}", lines.text()));
    (proc, lines, url)
}

/// Polls the overview until `done` says so.
fn wait_overview(url: &str, what: &str, headers: &[(&str, &str)], done: impl Fn(&Value) -> bool) -> Value {
    let last = std::cell::RefCell::new(Value::Null);
    let what = lazy(|| format!("{what}: {}", last.borrow()));
    wait_until(what, Duration::from_secs(120), || {
        let r = http::get_with(url, "/api/sweeps", headers);
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        let done = done(&v);
        last.replace(v.clone());
        done.then_some(v)
    })
}

fn finished(v: &Value) -> bool {
    v["sweeps"].as_array().is_some_and(|s| !s.is_empty() && s.iter().all(|s| s["finished"] == true))
}

fn error_of(r: &Response) -> String {
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    r.json()["error"].as_str().unwrap_or_else(|| panic!("no error message: {}", r.text())).to_string()
}

/// Stops a lingering `kappa run --ui` with Ctrl-C and checks it exits with `code`.
fn interrupt(mut proc: Proc, lines: &Lines, code: i32) {
    proc.signal(libc::SIGINT);
    let status = proc.wait_exit(Duration::from_secs(30), "kappa run --ui did not exit on Ctrl-C");
    assert_eq!(status.code(), Some(code), "{}", lines.text());
}

#[test]
fn the_api_pages_filters_sorts_and_details_trials_and_never_serves_their_text_as_html() {
    let sb = Sandbox::new();
    escape_sweep(&sb);
    let (proc, lines, url) = run_ui(&sb, "escape.toml");
    // The event stream: the overview at once.
    let (status, headers, event, data) = http::first_event(&url, "/api/events", &[]);
    assert_eq!(status, 200);
    assert!(headers.iter().any(|(k, v)| k == "content-type" && v.starts_with("text/event-stream")), "{headers:?}");
    assert_eq!(event, "progress");
    let first: Value = serde_json::from_str(&data).expect("event data is JSON");
    assert_eq!(first["sweeps"][0]["name"], "escape", "{first}");

    // Local workers leave when the sweep is done: a moment after it finishes.
    let ov = wait_overview(&url, "the sweep to finish and its local workers to leave", &[], |v| {
        finished(v) && v["workers"].as_array().is_some_and(Vec::is_empty)
    });
    let s = &ov["sweeps"][0];
    assert_eq!(s["counts"]["total"], 12, "{ov}");
    assert_eq!((s["counts"]["succeeded"].as_u64(), s["counts"]["failed"].as_u64()), (Some(6), Some(6)), "{ov}");
    assert_eq!(s["counts"]["done"], 12);
    assert_eq!(s["eta_s"], 0.0);

    // The page holds no data, only the app; and nothing is served to be framed or sniffed.
    let page = http::get(&url, "/");
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(!page.text().contains("pwned"));
    let csp = page.header("content-security-policy").expect("a content security policy");
    assert!(csp.contains("default-src 'self'") && !csp.contains("unsafe-eval"), "{csp}");
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    for asset in ["/assets/app.js", "/assets/style.css", "/assets/uPlot.iife.min.js", "/assets/uPlot.min.css"] {
        let a = http::get(&url, asset);
        assert_eq!(a.status, 200, "{asset}");
        assert!(!a.body.is_empty(), "{asset}");
    }

    // The sweep: its parameters and their values, the hostile one as data.
    let sweep = http::get(&url, "/api/sweeps/escape").json();
    assert_eq!(sweep["kind"], "command");
    let columns: Vec<&str> = sweep["columns"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(columns.first(), Some(&"optimizer"), "{columns:?}");
    assert!(columns.contains(&"params.tag"), "{columns:?}");
    assert_eq!(sweep["axes"]["params.tag"], serde_json::json!(["ok", HOSTILE]));
    assert!(sweep["sweep_text"].as_str().unwrap().contains("params.tag"));

    // Paging: every trial once, in plan order, whatever the page size.
    let mut seqs = Vec::new();
    for offset in (0..12).step_by(5) {
        let page = http::get(&url, &format!("/api/sweeps/escape/trials?limit=5&offset={offset}")).json();
        assert_eq!(page["total"], 12);
        assert_eq!(page["limit"], 5);
        seqs.extend(page["trials"].as_array().unwrap().iter().map(|t| t["seq"].as_u64().unwrap()));
    }
    assert_eq!(seqs, (0..12).collect::<Vec<_>>());
    // Filters: by status, by a parameter (string and number), both.
    let failed = http::get(&url, "/api/sweeps/escape/trials?status=failed&limit=100").json();
    assert_eq!(failed["total"], 6);
    for t in failed["trials"].as_array().unwrap() {
        assert_eq!(t["params"]["params.tag"], HOSTILE, "{t}");
        assert!(t["error"].as_str().unwrap().contains("exit"), "{t}");
    }
    let ok = http::get(&url, "/api/sweeps/escape/trials?p.params.tag=ok&limit=100").json();
    assert_eq!(ok["total"], 6);
    assert!(ok["trials"].as_array().unwrap().iter().all(|t| t["status"] == "succeeded"), "{ok}");
    let lr = http::get(&url, "/api/sweeps/escape/trials?p.lr=0.02&status=succeeded").json();
    assert_eq!(lr["total"], 2, "{lr}");
    assert_eq!(http::get(&url, "/api/sweeps/escape/trials?p.lr=0.5").json()["total"], 0);
    // Sorting, by a parameter and by the loss; ties in plan order.
    let by_lr = http::get(&url, "/api/sweeps/escape/trials?sort=lr&order=desc&limit=12").json();
    let lrs: Vec<f64> =
        by_lr["trials"].as_array().unwrap().iter().map(|t| t["params"]["lr"].as_f64().unwrap()).collect();
    assert!(lrs.windows(2).all(|w| w[0] >= w[1]) && lrs[0] == 0.03, "{lrs:?}");
    let by_loss = http::get(&url, "/api/sweeps/escape/trials?sort=stationary&limit=12").json();
    let rows = by_loss["trials"].as_array().unwrap();
    let losses: Vec<f64> = rows[..6].iter().filter_map(|t| t["stationary"]["mean"].as_f64()).collect();
    assert_eq!(losses.len(), 6, "trials with a loss first: {by_loss}");
    assert!(losses.windows(2).all(|w| w[0] <= w[1]) && losses[0] == 0.01, "{losses:?}");
    assert!(rows[6..].iter().all(|t| t["stationary"].is_null()), "{by_loss}");

    // A failed trial's detail: its attempt, class and the end of its stderr, as data.
    let id = failed["trials"][0]["id"].as_str().unwrap().to_string();
    let detail = http::get(&url, &format!("/api/sweeps/escape/trials/{id}")).json();
    assert_eq!(detail["attempts"].as_array().map(Vec::len), Some(1), "{detail}");
    assert_eq!(detail["attempts"][0]["class"], "error");
    assert_eq!(detail["attempts"][0]["counted"], true);
    assert!(detail["stderr_tail"].as_str().unwrap().contains(HOSTILE), "{detail}");
    // A succeeded one's curve and the curves call.
    let good = ok["trials"][0]["id"].as_str().unwrap().to_string();
    let detail = http::get(&url, &format!("/api/sweeps/escape/trials/{good}")).json();
    let lr = detail["params"]["lr"].as_f64().unwrap();
    let curve = detail["curve"].as_array().unwrap();
    assert_eq!(curve.len(), 10, "{detail}");
    assert_eq!(curve[1], serde_json::json!([8.0, lr, 0.0]), "samples = step × batch size: {detail}");
    let curves = http::get(&url, &format!("/api/sweeps/escape/curves?ids={good},{id}")).json();
    assert_eq!(curves["series"].as_array().map(Vec::len), Some(2), "{curves}");
    assert!(curves["series"][0]["label"].as_str().unwrap().contains("lr="), "{curves}");

    // Bad requests are named, with the status that says what is wrong.
    for (path, status, says) in [
        ("/api/sweeps/escape/trials?status=done", 400, "unknown status `done`"),
        ("/api/sweeps/escape/trials?limit=5000", 400, "between 1 and 1000"),
        ("/api/sweeps/escape/trials?sort=lr%3Bdrop", 400, "cannot sort by"),
        ("/api/sweeps/escape/trials?colour=red", 400, "unknown query parameter `colour`"),
        ("/api/sweeps/escape/trials/not-an-id", 400, "not a trial id"),
        ("/api/sweeps/escape/trials/0123456789abcdef", 404, "has no trial 0123456789abcdef"),
        ("/api/sweeps/nope", 404, "no sweep named `nope`"),
        ("/api/sweeps/nope/trials", 404, "no sweep named `nope`"),
        ("/api/nothing", 404, "no such page"),
    ] {
        let r = http::get(&url, path);
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert!(error_of(&r).contains(says), "{path}: {}", r.text());
    }
    // Without a token, a request addressed by a name (DNS rebinding) is refused.
    let r = http::get_with(&url, "/api/sweeps", &[("Host", "rebound.example:80")]);
    assert_eq!(r.status, 403);
    assert!(error_of(&r).contains("`rebound.example:80`"), "{}", r.text());
    assert_eq!(http::get_with(&url, "/api/sweeps", &[("Host", "localhost")]).status, 200);
    // Read-only without a token.
    let r = http::request(&url, "POST", "/api/sweeps/escape/cancel", &[], "");
    assert_eq!(r.status, 403);
    assert!(error_of(&r).contains("read-only"), "{}", r.text());
    let session = http::get(&url, "/api/session").json();
    assert_eq!((session["token_required"].as_bool(), session["can_change"].as_bool()), (Some(false), Some(false)));

    // Downloads: the report page escapes what it shows; exports stream every trial.
    let report = http::get(&url, "/api/sweeps/escape/report");
    assert_eq!(report.status, 200, "{}", report.text());
    assert_eq!(report.json()["finished"], 6, "failed trials are not finished results");
    let html = http::get(&url, "/api/sweeps/escape/report.html");
    assert_eq!(html.status, 200);
    assert!(html.text().starts_with("<!doctype html>") && !html.text().contains("<script>window.pwned"));
    let csv = http::get(&url, "/api/sweeps/escape/export.csv");
    assert_eq!(csv.status, 200);
    assert_eq!(csv.header("content-disposition"), Some("attachment; filename=\"escape.csv\""));
    let jsonl = http::get(&url, "/api/sweeps/escape/export.jsonl").text();
    let rows: Vec<Value> = jsonl.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(rows.len(), 12);
    let csv = csv.text();
    assert!(csv.starts_with("id,seq,status,"), "{csv}");
    for r in &rows {
        assert!(csv.contains(&format!("\n{},", r["id"].as_str().unwrap())), "{} missing from the CSV", r["id"]);
    }

    // The dashboard outlives the sweep until Ctrl-C; the run then exits as it would have.
    interrupt(proc, &lines, 3);
}

#[test]
fn the_coordinator_dashboard_asks_for_its_token_and_lets_a_session_cancel_and_retry() {
    let sb = Sandbox::new();
    sb.write("token", "t0ken-for-the-dashboard\n");
    sb.write("wait.toml", &kappa_tests::noop_sweep("waiting", 150, "10ms"));
    let (_coord, addr, out) =
        sb.coordinator_out("127.0.0.1:0", &["--token-file", "token", "--ui-listen", "127.0.0.1:0"]);
    let url = out.wait_for("dashboard on ", Duration::from_secs(30)).unwrap_or_else(|| panic!("{}", out.text()));
    let submit =
        sb.kappa(&["submit", "wait.toml", "--coordinator", &format!("http://{addr}"), "--token-file", "token"]);
    assert_eq!(submit.status.code(), Some(0), "{}", show(&submit));

    // The page and the session call are public; the data is not.
    assert_eq!(http::get(&url, "/").status, 200);
    let session = http::get(&url, "/api/session").json();
    assert_eq!((session["token_required"].as_bool(), session["authenticated"].as_bool()), (Some(true), Some(false)));
    for path in ["/api/sweeps", "/api/sweeps/waiting", "/api/sweeps/waiting/trials", "/api/events"] {
        let r = http::get(&url, path);
        assert_eq!(r.status, 401, "{path}");
        assert!(error_of(&r).contains("log in"), "{path}: {}", r.text());
        assert_eq!(http::get_with(&url, path, &[("Authorization", "Bearer wrong")]).status, 401, "{path}");
    }
    let bearer = [("Authorization", "Bearer t0ken-for-the-dashboard")];
    let ov = wait_overview(&url, "the submitted sweep", &bearer, |v| v["sweeps"][0]["name"] == "waiting");
    assert_eq!(ov["sweeps"][0]["counts"]["total"], 150);
    // Axes short enough for a menu are listed; 150 seeds are not.
    let sweep = http::get_with(&url, "/api/sweeps/waiting", &bearer).json();
    assert_eq!(sweep["axes"]["lr"], serde_json::json!([0.01]), "{sweep}");
    assert!(sweep["axes"].get("seed").is_none(), "{sweep}");
    let r = http::request(&url, "POST", "/api/sweeps/waiting/cancel", &[], "");
    assert_eq!(r.status, 401, "a change needs the token too");

    // Login: wrong token, malformed body, then the right one sets a cookie that is not the token.
    let login = |body: &str| http::request(&url, "POST", "/api/login", &[("Content-Type", "application/json")], body);
    assert_eq!(login(r#"{"token": "nope"}"#).status, 401);
    let r = login("token=t0ken");
    assert_eq!(r.status, 400);
    assert!(error_of(&r).contains("JSON"), "{}", r.text());
    let r = login(r#"{"token": "t0ken-for-the-dashboard"}"#);
    assert_eq!(r.status, 204, "{}", r.text());
    let set = r.header("set-cookie").expect("a session cookie").to_string();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    assert!(!set.contains("t0ken"), "the cookie must not be the token: {set}");
    let cookie = set.split(';').next().unwrap().to_string();
    let with_cookie = [("Cookie", cookie.as_str())];
    let session = http::get_with(&url, "/api/session", &with_cookie).json();
    assert_eq!((session["authenticated"].as_bool(), session["can_change"].as_bool()), (Some(true), Some(true)));
    assert_eq!(http::get_with(&url, "/api/sweeps/waiting/trials", &with_cookie).status, 200);

    // No workers: everything is pending. Cancel, then retry-failed (nothing failed), as a session.
    let r = http::request(&url, "POST", "/api/sweeps/waiting/cancel", &with_cookie, "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), serde_json::json!({"sweep": "waiting", "trials": 150}));
    wait_overview(&url, "the sweep cancelled", &with_cookie, |v| v["sweeps"][0]["cancelled"] == true);
    let r = http::request(&url, "POST", "/api/sweeps/waiting/retry", &with_cookie, "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["trials"], 0);
    let r = http::request(&url, "POST", "/api/sweeps/nope/cancel", &with_cookie, "");
    assert_eq!(r.status, 404);
    // Logging out clears the cookie.
    let r = http::request(&url, "POST", "/api/logout", &with_cookie, "");
    assert_eq!(r.status, 204);
    assert!(r.header("set-cookie").is_some_and(|c| c.contains("Max-Age=0")), "{r:?}");
}

/// Chromium, or a visible skip outside CI (under CI=true it is required: `.ci/run` installs it).
fn chromium() -> Option<std::path::PathBuf> {
    match Browser::find() {
        Some(p) => Some(p),
        None => {
            kappa_tests::skip(
                "no Chromium on PATH, and the dashboard's browser tests need one",
                "apt-get install chromium, or set KAPPA_CHROMIUM",
            );
            None
        }
    }
}

/// Where screenshots go: `KAPPA_TEST_ARTIFACTS`, else `test-artifacts/` beside the kappa binary.
fn artifacts() -> std::path::PathBuf {
    let dir = std::env::var_os("KAPPA_TEST_ARTIFACTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| kappa_tests::kappa_bin().parent().expect("target dir").join("test-artifacts"));
    std::fs::create_dir_all(&dir).expect("artifacts directory");
    dir
}

/// A JavaScript string literal of `s`.
fn js(s: &str) -> String {
    serde_json::to_string(s).expect("a string")
}

/// JavaScript that fills the login form with `token` and submits it.
fn login_js(token: &str) -> String {
    format!(
        "document.querySelector('#token').value = {}; document.querySelector('#login').requestSubmit(); true",
        js(token)
    )
}

/// What a test does in the browser (its failures name the page's errors so far).
fn ok<T>(r: Result<T, String>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn a_browser_watches_a_sweep_finish_reads_its_verdicts_and_never_runs_what_a_sweep_brings() {
    let Some(exe) = chromium() else { return };
    let started = Instant::now();
    let sb = Sandbox::new();
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../sweeps/sgd-linear-rule.toml"))
        .expect("sweeps/sgd-linear-rule.toml");
    sb.write("rule.toml", &example);
    let (run, run_lines, url) = run_ui(&sb, "rule.toml");
    let mut b = Browser::launch(&exe, 1280, 900).unwrap_or_else(|e| panic!("cannot start chromium: {e}"));
    let shots = artifacts();

    // Opened while the sweep runs: the counts move by events alone, until every trial is done.
    ok(b.navigate(&format!("{url}#/sweep/sgd-linear-rule"), LIMIT));
    ok(b.wait_for("document.body.dataset.page === 'sweep'", LIMIT, "the sweep page"));
    let done = "(() => { const p = document.querySelector('#progress'); \
                return p && p.dataset.total !== '0' && p.dataset.done === p.dataset.total && p.dataset.total; })()";
    let total = ok(b.wait_for(done, LIMIT, "the progress to show every trial done"));
    // What the page shows is what the store holds.
    let api = http::get(&url, "/api/sweeps").json();
    assert_eq!(total.as_str(), Some(api["sweeps"][0]["counts"]["total"].to_string().as_str()), "{api}");
    assert_eq!(api["sweeps"][0]["counts"]["done"], api["sweeps"][0]["counts"]["total"], "{api}");
    let total = total.as_str().unwrap().to_string();
    let updates = ok(b.eval("Number(document.body.dataset.updates)"));
    assert!(updates.as_u64().is_some_and(|n| n > 0), "no live update reached the page: {updates}");
    let listed = format!("document.querySelector('#trials-total')?.textContent === {}", js(&total));
    ok(b.wait_for(&listed, LIMIT, "every trial listed"));
    let rows = format!("document.querySelectorAll('#trials tr.trial').length === {total}");
    ok(b.wait_for(&rows, LIMIT, "a row per trial"));
    // The verdicts the sweep expects, recomputed as results arrived.
    for (rule, verdict) in [("sgd-linear", "holds"), ("none", "fails")] {
        let cell = format!("document.querySelector('#verdicts tr[data-rule={}] td.verdict')?.textContent", js(rule));
        let found = ok(b.wait_for(&format!("{cell} === {}", js(verdict)), LIMIT, &format!("{rule} {verdict}")));
        assert_eq!(found, true);
    }
    // One scaling class's curves, a line per κ, drawn by uPlot.
    let class = "(() => { const c = document.querySelector('#class-curves'); \
                 return !!c && !!c.querySelector('canvas') && ['κ=1', 'κ=2', 'κ=4', 'κ=8'].every(k => c.textContent.includes(k)); })()";
    ok(b.wait_for(class, LIMIT, "a class's curves, one per κ"));
    ok(b.screenshot(&shots.join("dashboard-sweep.png"), false));
    ok(b.screenshot(&shots.join("dashboard-sweep-full.png"), true));
    // A trial's page, from the table.
    let id = ok(b.eval("document.querySelector('#trials tr.trial').dataset.id"));
    let id = id.as_str().expect("a trial id").to_string();
    ok(b.navigate(&format!("{url}#/sweep/sgd-linear-rule/trial/{id}"), LIMIT));
    ok(b.wait_for("document.body.dataset.page === 'trial'", LIMIT, "the trial page"));
    ok(b.wait_for("document.querySelectorAll('#attempts tr').length >= 2", LIMIT, "its attempt"));
    assert!(ok(b.eval("document.querySelector('#trial-params').textContent")).as_str().unwrap().contains("sgd"));
    // The overview, in the dark.
    ok(b.color_scheme(true));
    ok(b.navigate(&format!("{url}#/"), LIMIT));
    ok(b.wait_for("document.body.dataset.page === 'overview'", LIMIT, "the overview"));
    ok(b.wait_for("document.querySelector('#sweeps tr[data-sweep=\"sgd-linear-rule\"]')", LIMIT, "its row"));
    ok(b.navigate(&format!("{url}#/sweep/sgd-linear-rule"), LIMIT));
    ok(b.wait_for("document.querySelector('#verdicts td.verdict')", LIMIT, "the verdicts, dark"));
    ok(b.screenshot(&shots.join("dashboard-sweep-dark.png"), false));
    ok(b.color_scheme(false));
    interrupt(run, &run_lines, 0);

    // A sweep whose parameter values, errors and stderr are HTML: shown as text, never run.
    let sb = Sandbox::new();
    escape_sweep(&sb);
    let (run, run_lines, url) = run_ui(&sb, "escape.toml");
    ok(b.navigate(&format!("{url}#/sweep/escape"), LIMIT));
    let done = "document.querySelector('#progress')?.dataset.done === '12'";
    ok(b.wait_for(done, LIMIT, "the escape sweep done"));
    ok(b.wait_for("document.querySelectorAll('#trials tr.trial').length === 12", LIMIT, "12 rows"));
    let text = format!("document.querySelector('#trials').textContent.includes({})", js("<script>window.pwned=1"));
    assert_eq!(ok(b.eval(&text)), true, "the hostile value is shown as text");
    // Filtered in the page: the failed half.
    ok(b.eval("const s = document.querySelector('#filter-status'); s.value = 'failed'; s.dispatchEvent(new Event('change')); true"));
    ok(b.wait_for("document.querySelector('#trials-total')?.textContent === '6'", LIMIT, "6 failed trials"));
    ok(b.wait_for("document.querySelectorAll('#trials tr.trial').length === 6", LIMIT, "6 rows"));
    let failed = ok(b.eval(
        "[...document.querySelectorAll('#trials tr.trial')].find(r => r.textContent.includes('failed')).dataset.id",
    ));
    ok(b.navigate(&format!("{url}#/sweep/escape/trial/{}", failed.as_str().expect("a failed trial")), LIMIT));
    ok(b.wait_for("document.body.dataset.page === 'trial'", LIMIT, "the failed trial's page"));
    let stderr = format!("document.querySelector('#stderr')?.textContent.includes({})", js(HOSTILE));
    ok(b.wait_for(&stderr, LIMIT, "its stderr, as text"));
    ok(b.screenshot(&shots.join("dashboard-escaped-trial.png"), true));
    let injected = ok(b.eval("[typeof window.pwned, document.querySelectorAll('main script, img[src=\"x\"]').length]"));
    assert_eq!(injected, serde_json::json!(["undefined", 0]), "markup from the sweep became HTML");
    assert!(b.errors().is_empty(), "JavaScript errors on the dashboard: {:?}", b.errors());
    interrupt(run, &run_lines, 3);
    eprintln!("browser test: {:.1} s; screenshots in {}", started.elapsed().as_secs_f64(), shots.display());
}

#[test]
fn a_browser_logs_in_to_a_coordinators_dashboard_and_sees_the_changes_it_may_make() {
    let Some(exe) = chromium() else { return };
    let sb = Sandbox::new();
    sb.write("token", "browser-t0ken\n");
    sb.write("wait.toml", &kappa_tests::noop_sweep("waiting", 30, "10ms"));
    let (_coord, addr, out) =
        sb.coordinator_out("127.0.0.1:0", &["--token-file", "token", "--ui-listen", "127.0.0.1:0"]);
    let url = out.wait_for("dashboard on ", Duration::from_secs(30)).unwrap_or_else(|| panic!("{}", out.text()));
    let coordinator = format!("http://{addr}");
    let submit = sb.kappa(&["submit", "wait.toml", "--coordinator", &coordinator, "--token-file", "token"]);
    assert_eq!(submit.status.code(), Some(0), "{}", show(&submit));
    let _worker = sb.worker(&addr, "w1", &["--token-file", "token", "--slots", "2"]);

    let mut b = Browser::launch(&exe, 1280, 900).unwrap_or_else(|e| panic!("cannot start chromium: {e}"));
    ok(b.navigate(&format!("{url}#/sweep/waiting"), LIMIT));
    ok(b.wait_for("document.body.dataset.page === 'login'", LIMIT, "the login form"));
    // A wrong token is refused with a message, and the form stays.
    ok(b.eval(&login_js("wrong")));
    ok(b.wait_for("!document.querySelector('#error').hidden", LIMIT, "the refusal shown"));
    assert_eq!(ok(b.eval("document.body.dataset.page")), "login");
    ok(b.eval(&login_js("browser-t0ken")));
    ok(b.wait_for("document.body.dataset.page === 'sweep'", LIMIT, "the sweep page after login"));
    ok(b.wait_for("document.querySelector('#progress')?.dataset.done === '30'", LIMIT, "every trial done"));
    assert_eq!(ok(b.eval("!!document.querySelector('#cancel') && !!document.querySelector('#retry')")), true);
    ok(b.screenshot(&artifacts().join("dashboard-logged-in.png"), false));
    // Requests refused before the login are the only errors.
    let unexpected: Vec<&String> =
        b.errors().iter().filter(|e| !(e.starts_with("network:") && e.contains("401"))).collect();
    assert!(unexpected.is_empty(), "JavaScript errors on the dashboard: {:?}", b.errors());
}

#[test]
fn a_browser_logs_in_with_a_personal_token_and_is_offered_cancel_only_on_its_own_sweeps() {
    let Some(exe) = chromium() else { return };
    let sb = Sandbox::new();
    let mut tokens = std::collections::HashMap::new();
    for (name, role) in [("alice", "submit"), ("bob", "submit"), ("node", "worker")] {
        tokens.insert(name, sb.issue_token(name, role, false));
    }
    let (_coord, addr, out) =
        sb.coordinator_out("127.0.0.1:0", &["--tokens", "tokens.toml", "--ui-listen", "127.0.0.1:0"]);
    let url = out.wait_for("dashboard on ", Duration::from_secs(30)).unwrap_or_else(|| panic!("{}", out.text()));
    let coordinator = format!("http://{addr}");
    for who in ["alice", "bob"] {
        sb.write(&format!("{who}.toml"), &kappa_tests::noop_sweep(&format!("{who}-lr"), 5, "10ms"));
        let file = format!("{who}.token");
        let out = sb.kappa(&["submit", &format!("{who}.toml"), "--coordinator", &coordinator, "--token-file", &file]);
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    }

    let mut b = Browser::launch(&exe, 1280, 900).unwrap_or_else(|e| panic!("cannot start chromium: {e}"));
    ok(b.navigate(&format!("{url}#/"), LIMIT));
    ok(b.wait_for("document.body.dataset.page === 'login'", LIMIT, "the login form"));
    // A worker's token cannot log in: the refusal names it.
    ok(b.eval(&login_js(&tokens["node"])));
    ok(b.wait_for(
        "document.querySelector('#error-text')?.textContent.includes('node (worker)')",
        LIMIT,
        "the refusal",
    ));
    ok(b.eval(&login_js(&tokens["bob"])));
    ok(b.wait_for("document.body.dataset.page === 'overview'", LIMIT, "the overview after login"));
    ok(b.wait_for("document.querySelector('#holder')?.textContent === 'bob (submit)'", LIMIT, "who is logged in"));
    let owner = "document.querySelector('#sweeps tr[data-sweep=\"alice-lr\"] td.owner')?.textContent === 'alice'";
    ok(b.wait_for(owner, LIMIT, "the owner column"));
    // alice's sweep: no cancel or retry for bob; his own: both.
    ok(b.navigate(&format!("{url}#/sweep/alice-lr"), LIMIT));
    ok(b.wait_for("document.querySelector('#owner')?.textContent === 'owner alice'", LIMIT, "alice's sweep"));
    assert_eq!(ok(b.eval("!!document.querySelector('#cancel') || !!document.querySelector('#retry')")), false);
    ok(b.navigate(&format!("{url}#/sweep/bob-lr"), LIMIT));
    ok(b.wait_for("document.querySelector('#owner')?.textContent === 'owner bob'", LIMIT, "bob's sweep"));
    ok(b.wait_for("!!document.querySelector('#cancel') && !!document.querySelector('#retry')", LIMIT, "his buttons"));
    ok(b.screenshot(&artifacts().join("dashboard-personal-token.png"), false));
    let unexpected: Vec<&String> = b
        .errors()
        .iter()
        .filter(|e| !(e.starts_with("network:") && (e.contains("401") || e.contains("403"))))
        .collect();
    assert!(unexpected.is_empty(), "JavaScript errors on the dashboard: {:?}", b.errors());
}

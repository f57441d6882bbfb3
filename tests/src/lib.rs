//! Helpers for kappa's end-to-end tests: the real `kappa` binary, run as a user would, in a
//! scratch directory, with its state database read back directly.

pub mod browser;
pub mod http;
pub mod skip;
pub mod wait;

pub use skip::{python_imports, skip, skip_here};
pub use wait::{lazy, try_wait_every, try_wait_until, wait_until};

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// Longest a single `kappa` invocation may take in a test.
pub const RUN_LIMIT: Duration = Duration::from_secs(120);

/// The `kappa` binary built by `cargo test --workspace` (it sits next to the test executables).
pub fn kappa_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> → target/<profile>/kappa
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join(format!("kappa{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (which builds it) or `cargo build -p kappa-cli` first",
        bin.display()
    );
    bin
}

/// A scratch directory to run kappa in.
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    /// A new empty directory.
    pub fn new() -> Sandbox {
        Sandbox { dir: tempfile::tempdir().expect("tempdir") }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file relative to the sandbox.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, text).expect("write file");
        p
    }

    /// A `kappa` command running in the sandbox.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(kappa_bin());
        c.args(args).current_dir(self.path()).env_remove("KAPPA_STATE");
        c
    }

    /// Every trial of the state directory `state`, as `kappa export --format jsonl` writes them.
    pub fn export_jsonl(&self, state: &str) -> Vec<serde_json::Value> {
        let out = self.kappa(&["export", "--state", state, "--format", "jsonl"]);
        assert!(out.status.success(), "{}", show(&out));
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
    }

    /// Runs `kappa` to completion; a run that takes longer than [`RUN_LIMIT`] is killed and fails
    /// the test (a hang is a bug, never a reason to wait).
    pub fn kappa(&self, args: &[&str]) -> Output {
        self.kappa_env(args, &[])
    }

    /// Issues a token with `kappa token new NAME --role ROLE [--commands] --tokens tokens.toml`
    /// and keeps it in `NAME.token`; returns it (stdout is the token and nothing else).
    pub fn issue_token(&self, name: &str, role: &str, commands: bool) -> String {
        let mut args = vec!["token", "new", name, "--role", role, "--tokens", "tokens.toml"];
        if commands {
            args.push("--commands");
        }
        let out = self.kappa(&args);
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        let token = String::from_utf8(out.stdout).expect("utf-8").trim().to_string();
        assert!(token.starts_with("kappa_") && !token.contains('\n'), "{token}");
        self.write(&format!("{name}.token"), &format!("{token}\n"));
        token
    }

    /// [`Sandbox::kappa`] with extra environment variables.
    pub fn kappa_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let out = self.path().join(".kappa-stdout");
        let err = self.path().join(".kappa-stderr");
        let mut child = self
            .command(args)
            .envs(env.iter().copied())
            .stdout(std::fs::File::create(&out).expect("stdout file"))
            .stderr(std::fs::File::create(&err).expect("stderr file"))
            .spawn()
            .expect("run kappa");
        let Some(status) = try_wait_until(RUN_LIMIT, || child.try_wait().expect("wait")) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "kappa {args:?} did not finish within {RUN_LIMIT:?}\n--- stderr\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        };
        Output {
            status,
            stdout: std::fs::read(&out).unwrap_or_default(),
            stderr: std::fs::read(&err).unwrap_or_default(),
        }
    }

    /// Opens a sweep's state database read-only.
    pub fn db(&self, state: &str) -> Connection {
        let path = self.path().join(state).join("kappa.db");
        Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open state db")
    }
}

/// Standard output and error of a finished command, for assertion messages.
pub fn show(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A small optimizer sweep: `lrs` × 2 optimizers × `seeds` seeds, each trial about `samples`/B steps.
pub fn sweep(name: &str, lrs: &[f64], seeds: u32, samples: u64, paths: u32) -> String {
    let lrs: Vec<String> = lrs.iter().map(|l| format!("{l:e}")).collect();
    let seeds: Vec<String> = (0..seeds).map(|s| s.to_string()).collect();
    format!(
        r#"version = 1
name = "{name}"

[task]
kind = "optimizer"
landscape = {{ kind = "quadratic", eigenvalues = [0.5, 1.0, 2.0, 4.0] }}
noise = {{ kind = "gaussian", sigma = 1.0 }}
x0 = 0.5
paths = {paths}
samples = {samples}
record_every = "10%"

[grid]
optimizer = ["sgd", "signsgd"]
lr = [{}]
seed = [{}]
"#,
        lrs.join(", "),
        seeds.join(", ")
    )
}

/// `trials` command trials (seeds 0..trials) of which the first `open` end at once and the rest
/// wait until a file `gate` exists in the working directory (or the sweep file `s.toml` is gone,
/// so that none outlives its test): trials that are sure to be running at a given moment.
pub fn gated_sweep(name: &str, trials: u64, open: u64) -> String {
    format!(
        r#"version = 1
name = "{name}"

[task]
kind = "command"
argv = ["sh", "-c", "[ {{seed}} -lt {open} ] || until [ -e gate ] || [ ! -e s.toml ]; do sleep 0.02; done"]

[grid]
optimizer = ["sgd"]
lr = [0.01]
seed = {{ linspace = [0, {}], num = {trials} }}
"#,
        trials - 1
    )
}

/// `trials` noop trials (seeds 0..trials) that each sleep `sleep` (e.g. `"300ms"`).
pub fn noop_sweep(name: &str, trials: u64, sleep: &str) -> String {
    format!(
        "version = 1\nname = \"{name}\"\n\n[task]\nkind = \"noop\"\nsleep = \"{sleep}\"\n\n[grid]\noptimizer = [\"sgd\"]\n\
         lr = [0.01]\nseed = {{ linspace = [0, {}], num = {trials} }}\n",
        trials.saturating_sub(1)
    )
}

/// (trial, attempts logged, attempts counted) for every trial of a store.
pub fn ledger(db: &Connection) -> Vec<(String, i64, i64)> {
    let mut stmt =
        db.prepare("SELECT trial_id, count(*), sum(counted) FROM attempts GROUP BY trial_id").expect("query");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).expect("query").map(Result::unwrap).collect()
}

/// The lines a background process prints on one of its pipes, collected by a thread.
#[derive(Clone)]
pub struct Lines {
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Lines {
    /// Collects the lines of `pipe` until it closes.
    pub fn follow(pipe: impl std::io::Read + Send + 'static) -> Lines {
        Lines::follow_into(pipe, None)
    }

    /// [`Lines::follow`], also appending each line to the file `copy`.
    pub fn follow_into(pipe: impl std::io::Read + Send + 'static, copy: Option<std::fs::File>) -> Lines {
        use std::io::{BufRead, Write};
        let lines = Lines { lines: Default::default() };
        let into = lines.lines.clone();
        std::thread::spawn(move || {
            let mut copy = copy;
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(f) = &mut copy {
                    let _ = writeln!(f, "{line}");
                }
                into.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        lines
    }

    /// Everything printed so far.
    pub fn text(&self) -> String {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).join("\n")
    }

    /// Waits (at most `limit`) for a line starting with `prefix`; returns the rest of it.
    pub fn wait_for(&self, prefix: &str, limit: Duration) -> Option<String> {
        self.wait_for_line(limit, |l| l.strip_prefix(prefix).map(str::to_string))
    }

    /// Waits (at most `limit`) for a line `found` makes something of; returns that.
    pub fn wait_for_line<T>(&self, limit: Duration, found: impl Fn(&str) -> Option<T>) -> Option<T> {
        try_wait_until(limit, || self.lines.lock().unwrap_or_else(|e| e.into_inner()).iter().find_map(|l| found(l)))
    }
}

/// A background `kappa` process, killed when dropped.
pub struct Proc {
    /// The process.
    pub child: std::process::Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Waits for the process to exit, at most `limit`; `what` names it in the failure.
    pub fn wait_exit(&mut self, limit: Duration, what: &str) -> std::process::ExitStatus {
        wait_until(what, limit, || self.child.try_wait().expect("wait"))
    }

    /// Sends a signal (e.g. `libc::SIGKILL`, `libc::SIGSTOP`).
    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }
}

impl Sandbox {
    /// Starts `kappa coordinator` on `listen` (use `127.0.0.1:0` for any port) and returns it with
    /// the address it listens on, read from its first line of output.
    pub fn coordinator(&self, listen: &str, extra: &[&str]) -> (Proc, String) {
        let (proc, addr, _) = self.coordinator_out(listen, extra);
        (proc, addr)
    }

    /// [`Sandbox::coordinator`], with every line it prints on stdout (e.g. the dashboard's URL).
    /// With `--log-format json` among `extra` it prints nothing there: the lines are its stderr's
    /// (JSON objects; the address is the `addr` field of the listening line), also written to
    /// `.coordinator-stderr` as in text mode.
    pub fn coordinator_out(&self, listen: &str, extra: &[&str]) -> (Proc, String, Lines) {
        const LISTENING: &str = "kappa coordinator listening on ";
        let json = extra.windows(2).any(|w| w == ["--log-format", "json"]);
        let mut args = vec!["coordinator", "--listen", listen, "--state", "cluster"];
        args.extend_from_slice(extra);
        let stderr_file = || std::fs::File::create(self.path().join(".coordinator-stderr")).expect("stderr file");
        let mut command = self.command(&args);
        if json {
            let stdout = std::fs::File::create(self.path().join(".coordinator-stdout")).expect("stdout file");
            command.stdout(stdout).stderr(std::process::Stdio::piped());
        } else {
            command.stdout(std::process::Stdio::piped()).stderr(stderr_file());
        }
        let mut child = command.spawn().expect("start coordinator");
        let lines = if json {
            Lines::follow_into(child.stderr.take().expect("stderr"), Some(stderr_file()))
        } else {
            Lines::follow(child.stdout.take().expect("stdout"))
        };
        let proc = Proc { child };
        let addr = if json {
            lines.wait_for_line(Duration::from_secs(30), |l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                let message = v["fields"]["message"].as_str()?;
                message.starts_with(LISTENING).then(|| v["fields"]["addr"].as_str().map(str::to_string))?
            })
        } else {
            lines
                .wait_for(LISTENING, Duration::from_secs(30))
                .map(|l| l.split(',').next().unwrap_or_default().to_string())
        };
        let addr = addr.unwrap_or_else(|| {
            panic!(
                "coordinator did not start: {}",
                std::fs::read_to_string(self.path().join(".coordinator-stderr")).unwrap_or_default()
            )
        });
        (proc, addr, lines)
    }

    /// Starts `kappa` with `args` in the background, following what it prints on stderr.
    pub fn spawn_stderr(&self, args: &[&str]) -> (Proc, Lines) {
        let mut child = self
            .command(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start kappa");
        let lines = Lines::follow(child.stderr.take().expect("stderr"));
        (Proc { child }, lines)
    }

    /// Starts `kappa worker` against `addr` (`host:port` for plain HTTP, or a full URL).
    pub fn worker(&self, addr: &str, name: &str, extra: &[&str]) -> Proc {
        self.worker_env(addr, name, extra, &[])
    }

    /// [`Sandbox::worker`] with extra environment variables.
    pub fn worker_env(&self, addr: &str, name: &str, extra: &[&str], env: &[(&str, &str)]) -> Proc {
        let url = if addr.contains("://") { addr.to_string() } else { format!("http://{addr}") };
        let mut args = vec!["worker", "--coordinator", url.as_str(), "--name", name];
        args.extend_from_slice(extra);
        let child = self
            .command(&args)
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(self.path().join(format!(".worker-{name}"))).expect("stderr file"))
            .spawn()
            .expect("start worker");
        Proc { child }
    }

    /// Polls the state database of a coordinator-run sweep until `done` says so, or panics.
    pub fn wait_for(&self, state: &str, what: &str, limit: Duration, done: impl Fn(&Connection) -> bool) {
        wait_for_db(&self.path().join(state), what, limit, done)
    }
}

/// Polls the state database in `dir` until `done` says so, or panics naming `what` (with
/// whatever `what` shows at that moment).
pub fn wait_for_db(dir: &Path, what: impl std::fmt::Display, limit: Duration, done: impl Fn(&Connection) -> bool) {
    let db = dir.join("kappa.db");
    wait_until(what, limit, || {
        db.exists()
            && Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).is_ok_and(|c| done(&c))
    })
}

/// Trials by status in a state database.
pub fn count(c: &Connection, status: &str) -> i64 {
    c.query_row("SELECT count(*) FROM trials WHERE status = ?1", [status], |r| r.get(0)).unwrap_or(0)
}

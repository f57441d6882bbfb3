//! `kind = "command"`: one child process per attempt.
//!
//! The argv template is filled in (never passed through a shell), the hyperparameters are also
//! given as `KAPPA_*` variables, and the child runs in its own process group in the worker's
//! working directory, dying with the worker. Each trial has a directory that outlives its
//! attempts (`KAPPA_TRIAL_DIR`, `{trial_dir}`): a program that checkpoints there resumes a later
//! attempt from it. Its stdout and stderr go to per-attempt log files
//! (`<logs>/<trial>.<attempt>.{stdout,stderr}`). Its metrics come from the source its task names
//! (`[task] metrics`, read by [`crate::metrics`]); by default stdout lines that are JSON objects
//! with a numeric `loss`:
//!
//! ```text
//! {"step": 100, "samples": 6400, "loss": 0.41, "test_accuracy": 0.93}
//! ```
//!
//! `step` and `samples` are optional (either is derived from the other through the batch size,
//! or counted from the lines); every other numeric key goes to the curve point's `extra` (a JSON
//! object without a `loss` gives its numbers to the point before it). Any other line is only
//! logged. A `loss` of `NaN`/`Infinity` (as Python's `json` writes them) or
//! `null` marks the run diverged. A program that exits 0 without one loss point from a source
//! its task names (any but the default) fails, with an error that says what was looked for and
//! what was found; without one JSON metrics line it succeeds with an empty curve, as before
//! sources existed.
//!
//! Exit status 0 is success (diverged if the last loss was not finite); another status is a
//! task error; death by a signal the worker did not send is a crash. A timeout or a cancel kills
//! the whole process group (SIGTERM, then SIGKILL after a grace period).

use crate::metrics::Metrics;
use kappa_core::{AttemptOutcome, FailureClass, Lease};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// Where and how commands run on this worker.
#[derive(Clone, Debug)]
pub struct CommandEnv {
    /// Working directory of every command.
    pub workdir: PathBuf,
    /// Where the per-attempt logs go.
    pub logs: PathBuf,
    /// Host name shown with log paths.
    pub host: String,
    /// Where trial directories are: `<trial_root>/<sweep>/<trial id>/`, or with `per_sweep`
    /// false (a state directory of one sweep, under `kappa run`) `<trial_root>/<trial id>/`.
    pub trial_root: PathBuf,
    /// Whether trial directories are grouped by sweep.
    pub per_sweep: bool,
}

impl CommandEnv {
    /// Where its trial directories are.
    pub fn trial_dirs(&self) -> TrialDirs {
        TrialDirs { root: self.trial_root.clone(), per_sweep: self.per_sweep }
    }

    /// The directory of `lease`'s trial, kept across its attempts (created when missing).
    fn trial_dir(&self, lease: &Lease) -> Result<PathBuf, String> {
        self.trial_dirs().dir(lease)
    }
}

/// Where a worker's trial directories are: each trial's is kept across its attempts (a
/// command's checkpoints, `{trial_dir}`; a training trial's under successive halving), so an
/// attempt on another worker that shares the root continues from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrialDirs {
    /// `<root>/<sweep>/<trial id>/`, or with `per_sweep` false `<root>/<trial id>/`.
    pub root: PathBuf,
    /// Whether trial directories are grouped by sweep.
    pub per_sweep: bool,
}

impl TrialDirs {
    /// The directory of `lease`'s trial (created when missing).
    pub fn dir(&self, lease: &Lease) -> Result<PathBuf, String> {
        let dir = self.path(lease)?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create the trial directory {}: {e}", dir.display()))?;
        std::path::absolute(&dir).map_err(|e| format!("cannot resolve the trial directory {}: {e}", dir.display()))
    }

    /// Where the directory of `lease`'s trial is (not created).
    pub fn path(&self, lease: &Lease) -> Result<PathBuf, String> {
        let mut dir = self.root.clone();
        if self.per_sweep {
            // The name comes over the wire: it must be one path component.
            let name = &*lease.sweep;
            if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\', '\0']) {
                return Err(format!("the coordinator named the sweep {name:?}, which cannot be a directory name"));
            }
            dir.push(name);
        }
        dir.push(lease.id.to_string());
        Ok(dir)
    }
}

/// How long a process group has between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(3);
/// How long a program that ended by SIGTERM waits for its worker to start draining before the
/// attempt is classified: a scheduler's SIGTERM to the whole job reaches both nearly at once.
const TERM_RACE: Duration = Duration::from_secs(2);

/// Bytes of stderr quoted in a failure message.
const STDERR_TAIL: usize = 2000;

/// One attempt of a command trial: the attempt `lease` hands out, running `task`, with the GPU
/// device ordinals `gpus` given to it (may be empty). Returns `None` when cancelled (revoked or
/// shutting down). Once `draining` turns true the program gets SIGTERM (to checkpoint): if it
/// then exits with status 0 it finished and its result counts; any other end is `Preempted`.
pub async fn run(
    env: &CommandEnv,
    task: &kappa_core::task::CommandTask,
    lease: &Lease,
    gpus: &[u32],
    cancel: &kappa_sim::Cancel,
    draining: &std::sync::atomic::AtomicBool,
) -> Option<AttemptOutcome> {
    match run_inner(env, task, lease, gpus, cancel, draining).await {
        Ok(o) => o,
        Err(error) => Some(AttemptOutcome::Failed { error, class: FailureClass::Error }),
    }
}

async fn run_inner(
    env: &CommandEnv,
    task: &kappa_core::task::CommandTask,
    lease: &Lease,
    gpus: &[u32],
    cancel: &kappa_sim::Cancel,
    draining: &std::sync::atomic::AtomicBool,
) -> Result<Option<AttemptOutcome>, String> {
    let (params, id, attempt) = (&lease.params, lease.id, lease.attempt);
    let trial_dir = env.trial_dir(lease)?;
    let trial_dir = trial_dir.to_string_lossy();
    let at = kappa_core::command::Attempt {
        id,
        attempt,
        trial_dir: &trial_dir,
        samples: lease.stop.map(|s| s.samples),
        schedule: &task.lr_schedule,
    };
    let argv: Vec<String> =
        task.argv.iter().map(|a| kappa_core::command::render(a, params, &at)).collect::<Result<_, _>>()?;
    let logs = Logs::create(env, lease)?;
    let out_log = tokio::fs::File::from_std(logs.out_file()?);
    let render = |t: &str| kappa_core::command::render(t, params, &at);
    let mut metrics = Metrics::new(&task.metrics, params.hyper.batch_size, render, &env.workdir, id.to_string())?;
    let mut child = spawn(env, task, &argv, lease, &at, gpus, logs.err_file()?)?;
    let watch = Watch { timeout: lease.timeout, cancel, draining };
    let (status, ended) = supervise(&mut child, &mut metrics, out_log, &watch).await;
    let status = status.map_err(|e| format!("waiting for `{}` failed: {e}", argv[0]))?;
    if let Some(outcome) = stopped_early(&status, &ended, &watch, &logs).await {
        return Ok(outcome);
    }
    if status.success() {
        metrics.end().await;
        let mut metrics = match metrics.finish(task.burn_in) {
            Ok(m) => m,
            Err(missing) => {
                return Ok(Some(AttemptOutcome::Failed {
                    error: format!("`{}` exited with status 0 without a loss: {missing} ({})", argv[0], logs.named),
                    class: FailureClass::Error,
                }));
            }
        };
        return Ok(Some(match metrics.curve.iter().position(|p| !p.loss_mean.is_finite()) {
            Some(i) => {
                // The curve keeps what came before, as the simulator's does.
                let step = metrics.curve[i].step;
                metrics.curve.truncate(i);
                AttemptOutcome::Diverged { step, metrics }
            }
            None => AttemptOutcome::Succeeded(metrics),
        }));
    }
    let tail = stderr_tail(&logs.err_path).await;
    let (what, class) = match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
        (Some(code), _) => (format!("exited with status {code}"), FailureClass::Error),
        (None, Some(sig)) => (format!("was killed by signal {sig}"), FailureClass::Crash),
        (None, None) => ("ended abnormally".to_string(), FailureClass::Crash),
    };
    let tail = if tail.is_empty() { String::new() } else { format!("; stderr ends with:\n{tail}") };
    Ok(Some(AttemptOutcome::Failed { error: format!("`{}` {what} ({}){tail}", argv[0], logs.named), class }))
}

/// An attempt's log files: `<logs>/<trial>.<attempt>.{stdout,stderr}`.
struct Logs {
    out_path: PathBuf,
    err_path: PathBuf,
    /// Where they are, for messages: `logs: HOST:PATH.stdout and .stderr`.
    named: String,
}

impl Logs {
    fn create(env: &CommandEnv, lease: &Lease) -> Result<Logs, String> {
        let logs = &env.logs;
        std::fs::create_dir_all(logs)
            .map_err(|e| format!("cannot create the log directory {}: {e}", logs.display()))?;
        let out_path = logs.join(format!("{}.{}.stdout", lease.id, lease.attempt));
        let err_path = logs.join(format!("{}.{}.stderr", lease.id, lease.attempt));
        let named = format!("logs: {}:{} and .stderr", env.host, out_path.display());
        Ok(Logs { out_path, err_path, named })
    }

    fn file(p: &Path) -> Result<std::fs::File, String> {
        std::fs::File::create(p).map_err(|e| format!("cannot create the log file {}: {e}", p.display()))
    }

    fn out_file(&self) -> Result<std::fs::File, String> {
        Logs::file(&self.out_path)
    }

    fn err_file(&self) -> Result<std::fs::File, String> {
        Logs::file(&self.err_path)
    }
}

/// Starts the program `argv` of `task` for `lease`: in its own process group in the working
/// directory, its stdout piped, its stderr to `err_log`, the `KAPPA_*` variables and the task's
/// own set, `CUDA_VISIBLE_DEVICES` naming `gpus`; it dies with the worker.
fn spawn(
    env: &CommandEnv,
    task: &kappa_core::task::CommandTask,
    argv: &[String],
    lease: &Lease,
    at: &kappa_core::command::Attempt<'_>,
    gpus: &[u32],
    err_log: std::fs::File,
) -> Result<tokio::process::Child, String> {
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(&env.workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(err_log))
        .process_group(0)
        .kill_on_drop(true);
    for (k, v) in kappa_core::command::env_vars(&lease.params, at) {
        cmd.env(k, v);
    }
    for (k, v) in &task.env {
        cmd.env(k, kappa_core::command::render(v, &lease.params, at)?);
    }
    // A worker that dies (kill -9, out of memory) takes its programs with it: the next attempt
    // must not share the trial directory with one still running.
    #[cfg(target_os = "linux")]
    // SAFETY: prctl is async-signal-safe; the closure only calls it between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    if !gpus.is_empty() {
        let list: Vec<String> = gpus.iter().map(u32::to_string).collect();
        cmd.env("CUDA_VISIBLE_DEVICES", list.join(","));
    }
    cmd.spawn().map_err(|e| format!("cannot start `{}` in {}: {e}", argv[0], env.workdir.display()))
}

/// What may stop a running program: its timeout, a cancel, the worker draining.
struct Watch<'a> {
    timeout: Option<Duration>,
    cancel: &'a kappa_sim::Cancel,
    draining: &'a std::sync::atomic::AtomicBool,
}

/// Whether the worker stopped a program, and why.
struct Ended {
    /// Why the worker stopped it, if it did (`cancelled` or `timeout`).
    stopped: Option<&'static str>,
    /// Whether the worker asked it to stop because the worker is draining (preemption).
    preempted: bool,
}

/// Reads the program's stdout into `metrics` and `out_log` until it ends (and its metrics files,
/// when its source reads files), stopping it (its whole process group) on a cancel or its
/// timeout, and asking it to stop (SIGTERM) when the worker drains. Returns its exit status, and
/// whether and why the worker stopped it.
async fn supervise(
    child: &mut tokio::process::Child,
    metrics: &mut Metrics,
    mut out_log: tokio::fs::File,
    watch: &Watch<'_>,
) -> (std::io::Result<std::process::ExitStatus>, Ended) {
    let pgid = child.id();
    let Some(stdout) = child.stdout.take() else {
        kill_group(pgid, libc::SIGKILL);
        let ended = Ended { stopped: None, preempted: false };
        return (Err(std::io::Error::other("its stdout was not captured")), ended);
    };
    let mut lines = BufReader::new(stdout).lines();
    let deadline = watch.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    let mut files = tokio::time::interval(crate::metrics::FILE_POLL);
    let reads_files = metrics.reads_files();
    let mut stopped: Option<&'static str> = None;
    let mut preempted = false;
    let mut stdout_open = true;
    let status = loop {
        tokio::select! {
            line = lines.next_line(), if stdout_open => match line {
                Ok(Some(line)) => {
                    metrics.line(&line);
                    let _ = out_log.write_all(line.as_bytes()).await;
                    let _ = out_log.write_all(b"\n").await;
                }
                Ok(None) | Err(_) => stdout_open = false,
            },
            status = child.wait(), if !stdout_open => break status,
            _ = files.tick(), if reads_files && stopped.is_none() => metrics.poll().await,
            _ = poll.tick() => {
                // A draining worker asks the program to stop at once (SIGTERM: time to save a
                // checkpoint), and waits for it to end until the drain runs out.
                if !preempted && stopped.is_none() && watch.draining.load(std::sync::atomic::Ordering::Relaxed) {
                    preempted = true;
                    kill_group(pgid, libc::SIGTERM);
                }
                let why = if watch.cancel.is_cancelled() {
                    Some("cancelled")
                } else if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                    Some("timeout")
                } else {
                    None
                };
                if let (Some(why), None) = (why, stopped) {
                    stopped = Some(why);
                    kill_group(pgid, libc::SIGTERM);
                    let grace_pgid = pgid;
                    tokio::spawn(async move {
                        tokio::time::sleep(KILL_GRACE).await;
                        kill_group(grace_pgid, libc::SIGKILL);
                    });
                    // Stop reading: a grandchild holding stdout open must not keep us here.
                    stdout_open = false;
                }
            }
        }
    };
    let _ = out_log.flush().await;
    // Whatever else is in the group goes with the leader.
    kill_group(pgid, libc::SIGKILL);
    (status, Ended { stopped, preempted })
}

/// The outcome of a program the worker stopped, or that a drain stopped: preempted, cancelled
/// (`Some(None)`: no report), or timed out; `None` when it ended on its own.
async fn stopped_early(
    status: &std::process::ExitStatus,
    ended: &Ended,
    watch: &Watch<'_>,
    logs: &Logs,
) -> Option<Option<AttemptOutcome>> {
    // Asked to stop for a drain and stopped short of success, or ended by SIGTERM while the
    // worker drains (the scheduler's SIGTERM reached the program too): preempted. A program that
    // exits 0 finished, drain or not; one that timed out, crashed otherwise or was cancelled
    // keeps that class.
    // (Ended by SIGTERM: killed by it, or exited 143 = 128 + SIGTERM after catching it.)
    let by_term = std::os::unix::process::ExitStatusExt::signal(status) == Some(libc::SIGTERM)
        || status.code() == Some(128 + libc::SIGTERM);
    let mut draining_now = watch.draining.load(std::sync::atomic::Ordering::Relaxed);
    if by_term && !draining_now && !ended.preempted && ended.stopped.is_none() {
        // A scheduler may signal every process of a job at once (SLURM's --signal does): the
        // program can end before this worker has handled its own SIGTERM. Give it a moment.
        let until = tokio::time::Instant::now() + TERM_RACE;
        while !draining_now && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
            draining_now = watch.draining.load(std::sync::atomic::Ordering::Relaxed);
        }
    }
    if !status.success() && (ended.preempted || (by_term && draining_now && ended.stopped.is_none())) {
        return Some(Some(AttemptOutcome::Preempted {
            reason: format!("its worker was draining and stopped it ({})", logs.named),
        }));
    }
    match ended.stopped {
        Some("cancelled") => Some(None),
        Some(_) => {
            let limit = watch.timeout.unwrap_or_default();
            Some(Some(AttemptOutcome::Failed {
                error: format!("timed out after {limit:.1?}; the process group was killed ({})", logs.named),
                class: FailureClass::Timeout,
            }))
        }
        None => None,
    }
}

fn kill_group(pgid: Option<u32>, sig: i32) {
    if let Some(pgid) = pgid.and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: killpg only sends a signal; a stale group id fails with ESRCH, which is fine.
        unsafe {
            libc::killpg(pgid, sig);
        }
    }
}

async fn stderr_tail(path: &Path) -> String {
    let Ok(mut f) = tokio::fs::File::open(path).await else { return String::new() };
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf).await;
    let start = buf.len().saturating_sub(STDERR_TAIL);
    let text = String::from_utf8_lossy(&buf[start..]);
    text.trim_end().to_string()
}

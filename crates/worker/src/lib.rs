//! kappa-worker: pulls trials from a coordinator, runs them, reports how they ended.
//!
//! The loop (after Ballista's executor poll loop): register, then lease as many trials as there
//! are free slots, run each on the rayon pool, and report it. A heartbeat task renews the leases
//! held; a lease the coordinator revokes is cancelled here. A panic inside a simulation is a failed
//! trial, never a dead worker.

#![warn(missing_docs)]

mod command;
mod executor;

pub use command::CommandEnv;
pub use executor::execute;

/// The version of the code that computes `task`'s results, part of every trial id: simulations
/// are `kappa_sim::VERSION`, training `kappa_train::VERSION` (commands and noops carry the
/// simulator's, which never changes what they run).
pub fn code_version(task: &TaskSpec) -> &'static str {
    match task {
        TaskSpec::Train(_) => kappa_train::VERSION,
        _ => kappa_sim::VERSION,
    }
}

use kappa_core::{AttemptOutcome, Hyperparams, TaskSpec, TrialId};
use kappa_proto::{PROTOCOL_VERSION, outcome_to_pb, parse_trial_id, pb};
use kappa_sim::Cancel;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};

/// Worker settings.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Coordinator URL, e.g. `http://127.0.0.1:7070`.
    pub coordinator: String,
    /// Name shown in the store and logs.
    pub name: String,
    /// Trials run at once.
    pub slots: usize,
    /// How long one lease call waits for work.
    pub lease_wait: Duration,
    /// Stop when the coordinator says the sweep is finished (local runs); a cluster worker keeps
    /// polling for the next sweep.
    pub exit_when_finished: bool,
    /// Bearer token for the coordinator, if it requires one.
    pub token: Option<String>,
    /// PEM certificate authority to trust for an `https://` coordinator.
    pub tls_ca: Option<Vec<u8>>,
    /// Log connection events on stderr.
    pub verbose: bool,
    /// Run `kind = "command"` trials (refused otherwise), in this working directory.
    pub commands: Option<CommandEnv>,
    /// GPU device ordinals this worker may hand to trials.
    pub gpus: Vec<u32>,
    /// Where simulations run, over the task's `backend` (`--backend`); `None` follows the task.
    pub backend: Option<kappa_core::task::Backend>,
    /// On shutdown, stop leasing and let running trials finish for up to this long before
    /// handing the rest back (zero: hand back at once).
    pub drain: Duration,
}

/// The GPUs not in use by a trial.
type GpuPool = Arc<Mutex<Vec<u32>>>;

/// Errors that stop a worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The coordinator could not be reached, or its address is malformed.
    #[error(transparent)]
    Connect(#[from] kappa_proto::ConnectError),
    /// The coordinator refused the worker.
    #[error("coordinator {0}: {1}")]
    Rpc(String, tonic::Status),
}

/// What a worker did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Attempts reported.
    pub reported: u64,
    /// Attempts abandoned (revoked or cancelled at shutdown).
    pub abandoned: u64,
}

type Held = Arc<Mutex<HashMap<(TrialId, u32), Cancel>>>;

/// How a session with the coordinator ended.
enum SessionEnd {
    /// Asked to stop (or the sweep finished and the worker exits then).
    Stop,
    /// The coordinator went away or forgot this worker: connect and register again.
    Lost(String),
}

/// Runs a worker until `shutdown` turns true or (with `exit_when_finished`) the sweep finishes.
/// A coordinator that goes away (restart, network) is reconnected to with backoff, forever for a
/// cluster worker; a local worker (`exit_when_finished`) gives up if the first connection fails.
pub async fn run(cfg: WorkerConfig, mut shutdown: watch::Receiver<bool>) -> Result<WorkerStats, WorkerError> {
    let stats = Arc::new(Mutex::new(WorkerStats::default()));
    let (reports, report_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut local = Local {
        held: Arc::default(),
        tasks: tokio::task::JoinSet::new(),
        reports,
        outbox: Arc::new(tokio::sync::Mutex::new(Outbox { rx: report_rx, unsent: Vec::new() })),
        slots: Arc::new(Semaphore::new(cfg.slots.max(1))),
        gpu_pool: Arc::new(Mutex::new(cfg.gpus.clone())),
    };
    let result = serve(&cfg, &mut shutdown, &stats, &mut local).await;
    // Whatever still runs (the worker is refused or stopping) is abandoned.
    cancel_all(&local.held);
    while local.tasks.join_next().await.is_some() {}
    result?;
    let stats = stats.lock().map(|s| *s).unwrap_or_default();
    Ok(stats)
}

/// What outlives a session with the coordinator: trials keep running while the worker
/// reconnects, and their reports wait in the outbox for the next session to deliver.
struct Local {
    held: Held,
    tasks: tokio::task::JoinSet<()>,
    /// Reports to send; the reporter fills in the worker id of the session that sends them.
    reports: tokio::sync::mpsc::UnboundedSender<pb::ReportRequest>,
    outbox: Arc<tokio::sync::Mutex<Outbox>>,
    slots: Arc<Semaphore>,
    gpu_pool: GpuPool,
}

/// Reports not yet delivered: queued ones, and a batch whose delivery was cut off.
struct Outbox {
    rx: tokio::sync::mpsc::UnboundedReceiver<pb::ReportRequest>,
    unsent: Vec<pb::ReportRequest>,
}

fn cancel_all(held: &Held) {
    if let Ok(h) = held.lock() {
        for c in h.values() {
            c.cancel();
        }
    }
}

async fn serve(
    cfg: &WorkerConfig,
    shutdown: &mut watch::Receiver<bool>,
    stats: &Arc<Mutex<WorkerStats>>,
    local: &mut Local,
) -> Result<(), WorkerError> {
    let mut backoff = Duration::from_millis(100);
    let mut connected_once = false;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let client =
            match kappa_proto::connect_with(&cfg.coordinator, cfg.token.as_deref(), cfg.tls_ca.as_deref()).await {
                Ok(c) => c,
                Err(e) if !connected_once && cfg.exit_when_finished => {
                    return Err(e.into());
                }
                Err(e) => {
                    log(cfg, &format!("{e}; retrying in {backoff:.1?}"));
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
        match session(cfg, client, shutdown, stats.clone(), local).await {
            Ok(SessionEnd::Stop) => break,
            Ok(SessionEnd::Lost(why)) => {
                connected_once = true;
                backoff = Duration::from_millis(100);
                let running = local.tasks.len();
                log(cfg, &format!("lost the coordinator ({why}); reconnecting ({running} trial(s) keep running)"));
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => {}
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn log(cfg: &WorkerConfig, msg: &str) {
    if cfg.verbose {
        eprintln!("[worker {}] {msg}", cfg.name);
    }
}

/// Whether a failed call means the coordinator is gone or forgot us (reconnect), rather than a
/// refusal that reconnecting cannot fix.
fn is_lost(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::NotFound
            | tonic::Code::Cancelled
            | tonic::Code::DeadlineExceeded
    )
}

async fn session(
    cfg: &WorkerConfig,
    mut client: kappa_proto::Client,
    shutdown: &mut watch::Receiver<bool>,
    stats: Arc<Mutex<WorkerStats>>,
    local: &mut Local,
) -> Result<SessionEnd, WorkerError> {
    let rpc = |s: tonic::Status| WorkerError::Rpc(cfg.coordinator.clone(), s);
    let reg = match client
        .register(pb::RegisterRequest {
            protocol_version: PROTOCOL_VERSION,
            name: cfg.name.clone(),
            slots: cfg.slots as u32,
            gpus: cfg.gpus.len() as u32,
        })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(s) if is_lost(&s) => return Ok(SessionEnd::Lost(s.message().to_string())),
        Err(s) => return Err(rpc(s)),
    };
    let worker_id = reg.worker_id;
    log(cfg, &format!("registered with {} as w{worker_id}", cfg.coordinator));
    let held = local.held.clone();
    let reports = local.reports.clone();
    let (finish, finish_rx) = watch::channel(false);
    let reporter = tokio::spawn(reporter(client.clone(), worker_id, local.outbox.clone(), finish_rx));
    let heartbeat = tokio::spawn(heartbeat_loop(
        client.clone(),
        worker_id,
        Duration::from_millis(u64::from(reg.heartbeat_interval_ms.max(50))),
        held.clone(),
    ));
    let slots = local.slots.clone();
    let gpu_pool = local.gpu_pool.clone();
    let free_gpus = || gpu_pool.lock().map(|p| p.len() as u32).unwrap_or(0);
    let tasks = &mut local.tasks;
    let mut parsed: Option<(String, Arc<TaskSpec>)> = None;
    let result = loop {
        if *shutdown.borrow() {
            break Ok(SessionEnd::Stop);
        }
        // Wait for a free slot, then take every free slot at once.
        let first = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break Ok(SessionEnd::Stop) },
            _ = shutdown.changed() => continue,
        };
        let mut permits = vec![first];
        while let Ok(p) = slots.clone().try_acquire_owned() {
            permits.push(p);
        }
        let request = pb::LeaseRequest {
            worker_id,
            max_trials: permits.len() as u32,
            // While some GPUs are busy, poll briefly: the long wait would hold a stale count of
            // free GPUs and miss the ones freed meanwhile.
            wait_ms: if free_gpus() < cfg.gpus.len() as u32 { 200 } else { cfg.lease_wait.as_millis() as u32 },
            free_gpus: free_gpus(),
        };
        let resp = tokio::select! {
            r = client.lease(request) => r,
            _ = shutdown.changed() => continue,
        };
        let resp = match resp {
            Ok(r) => r.into_inner(),
            Err(s) if is_lost(&s) => break Ok(SessionEnd::Lost(s.message().to_string())),
            Err(s) => break Err(rpc(s)),
        };
        if resp.leases.is_empty() && resp.sweep_finished {
            if cfg.exit_when_finished {
                break Ok(SessionEnd::Stop);
            }
            // Nothing to do until a new sweep arrives: poll once a second (a new submission is
            // picked up within a second, and idle workers cost one small call a second each).
            drop(permits);
            tokio::select! {
                _ = tokio::time::sleep(cfg.lease_wait.clamp(Duration::from_millis(100), Duration::from_secs(1))) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        for lease in resp.leases {
            let Some(permit) = permits.pop() else { break };
            let trial = match prepare(&lease, &mut parsed, &gpu_pool) {
                Ok(t) => t,
                Err(error) => {
                    // A trial this worker cannot even read fails its attempt, with the reason.
                    let _ = reports.send(report_request(
                        worker_id,
                        &lease.trial_id,
                        lease.attempt,
                        &AttemptOutcome::Failed { error, class: kappa_core::FailureClass::Error },
                        0.0,
                    ));
                    continue;
                }
            };
            let cancel = Cancel::new();
            if let Ok(mut h) = held.lock() {
                h.insert((trial.id, trial.attempt), cancel.clone());
            }
            let reports = reports.clone();
            let held = held.clone();
            let stats = stats.clone();
            let commands = cfg.commands.clone();
            let gpu_pool = gpu_pool.clone();
            let backend = cfg.backend;
            tasks.spawn(async move {
                let started = Instant::now();
                let outcome = match &*trial.task {
                    TaskSpec::Command(task) => match &commands {
                        Some(env) => {
                            command::run(
                                env,
                                task,
                                &trial.params,
                                trial.id,
                                trial.attempt,
                                &trial.gpus,
                                trial.timeout,
                                &cancel,
                            )
                            .await
                        }
                        None => Some(AttemptOutcome::Failed {
                            error: "this worker does not run commands (start it with --allow-commands)".into(),
                            class: kappa_core::FailureClass::Error,
                        }),
                    },
                    _ => run_on_pool(trial.clone(), cancel.clone(), backend).await,
                };
                if let Ok(mut pool) = gpu_pool.lock() {
                    pool.extend(&trial.gpus);
                }
                let still_held =
                    held.lock().map(|mut h| h.remove(&(trial.id, trial.attempt)).is_some()).unwrap_or(false);
                // Not held any more means revoked (or shutting down): a report would be late.
                match outcome {
                    Some(o) if still_held => {
                        let _ = reports.send(report_request(
                            worker_id,
                            &trial.id.to_string(),
                            trial.attempt,
                            &o,
                            started.elapsed().as_secs_f64(),
                        ));
                        if let Ok(mut s) = stats.lock() {
                            s.reported += 1;
                        }
                    }
                    _ => {
                        if let Ok(mut s) = stats.lock() {
                            s.abandoned += 1;
                        }
                    }
                }
                drop(permit);
            });
        }
        // Reap finished tasks so the set does not grow.
        while tasks.try_join_next().is_some() {}
    };
    if let Ok(SessionEnd::Lost(_)) = result {
        // The trials keep running; the next session renews their leases and delivers their
        // reports (a restarted coordinator accepts them while the leases are current).
        reporter.abort();
        heartbeat.abort();
        return result;
    }
    // Stopping: a draining worker first lets running trials finish (heartbeats go on meanwhile);
    // then what still runs is cancelled and its leases handed back.
    if !cfg.drain.is_zero() && !tasks.is_empty() {
        log(cfg, &format!("draining: waiting up to {:.0?} for {} running trial(s)", cfg.drain, tasks.len()));
        let _ = tokio::time::timeout(cfg.drain, async { while tasks.join_next().await.is_some() {} }).await;
    }
    cancel_all(&held);
    while tasks.join_next().await.is_some() {}
    // Deliver what finished before leaving.
    let _ = finish.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), reporter).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), client.deregister(pb::DeregisterRequest { worker_id })).await;
    heartbeat.abort();
    result
}

/// A leased trial, ready to run.
#[derive(Clone)]
struct Trial {
    id: TrialId,
    attempt: u32,
    task: Arc<TaskSpec>,
    params: Hyperparams,
    timeout: Option<Duration>,
    /// GPU ordinals taken from the pool for this trial (returned when it ends).
    gpus: Vec<u32>,
}

fn prepare(
    lease: &pb::TrialLease,
    parsed: &mut Option<(String, Arc<TaskSpec>)>,
    pool: &GpuPool,
) -> Result<Trial, String> {
    let id = parse_trial_id(&lease.trial_id).map_err(|e| e.to_string())?;
    let params: Hyperparams = lease
        .params
        .clone()
        .ok_or_else(|| "lease without hyperparameters".to_string())?
        .try_into()
        .map_err(|e: kappa_proto::ConvertError| e.to_string())?;
    // Every trial of a sweep carries the same task: parse it once.
    let task = match parsed {
        Some((text, task)) if *text == lease.task_json => task.clone(),
        _ => {
            let task: TaskSpec =
                serde_json::from_str(&lease.task_json).map_err(|e| format!("this worker cannot read the task: {e}"))?;
            let task = Arc::new(task);
            *parsed = Some((lease.task_json.clone(), task.clone()));
            task
        }
    };
    let timeout = (lease.timeout_ms > 0).then(|| Duration::from_millis(lease.timeout_ms));
    let need = lease.gpus as usize;
    let gpus = match pool.lock() {
        Ok(mut p) if p.len() >= need => p.drain(..need).collect(),
        _ => return Err(format!("the trial needs {need} GPU(s) and this worker has none free")),
    };
    Ok(Trial { id, attempt: lease.attempt, task, params, timeout, gpus })
}

/// Runs a trial on the rayon pool; `None` when it was cancelled.
/// Simulations run on the worker's `backend` (or the task's), on the trial's first GPU if it was
/// handed one.
async fn run_on_pool(
    trial: Trial,
    cancel: Cancel,
    backend: Option<kappa_core::task::Backend>,
) -> Option<AttemptOutcome> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let c = cancel.clone();
    let t = trial.clone();
    rayon::spawn(move || {
        let opts = kappa_sim::RunOptions { backend, gpu: t.gpus.first().copied() };
        let _ = tx.send(execute(&t.task, &t.params, t.id, &c, &opts));
    });
    let result = match trial.timeout {
        Some(limit) => match tokio::time::timeout(limit, rx).await {
            Ok(r) => r,
            Err(_) => {
                cancel.cancel();
                return Some(AttemptOutcome::Failed {
                    error: format!("timed out after {:.1?}", limit),
                    class: kappa_core::FailureClass::Timeout,
                });
            }
        },
        None => rx.await,
    };
    result.ok().flatten()
}

fn report_request(
    worker_id: u64,
    id: &str,
    attempt: u32,
    outcome: &AttemptOutcome,
    duration_s: f64,
) -> pb::ReportRequest {
    pb::ReportRequest {
        worker_id,
        trial_id: id.to_string(),
        attempt,
        outcome: Some(outcome_to_pb(outcome)),
        duration_s,
    }
}

/// Sends reports in batches, as session `worker_id`: whatever accumulated while the previous call
/// was in flight goes in the next one. A batch that cannot be delivered stays in the outbox for
/// the next session (the reporter is aborted when the coordinator is lost); one the coordinator
/// refuses is dropped (its leases expire and the trials run again, never counted twice). After
/// `finish`, it delivers what is queued and returns.
async fn reporter(
    mut client: kappa_proto::Client,
    worker_id: u64,
    outbox: Arc<tokio::sync::Mutex<Outbox>>,
    mut finish: watch::Receiver<bool>,
) {
    const MAX: usize = 1024;
    let mut guard = outbox.lock().await;
    let ob = &mut *guard;
    loop {
        if ob.unsent.is_empty() {
            if *finish.borrow() {
                match ob.rx.try_recv() {
                    Ok(r) => ob.unsent.push(r),
                    Err(_) => return,
                }
            } else {
                tokio::select! {
                    r = ob.rx.recv() => match r {
                        Some(r) => ob.unsent.push(r),
                        None => return,
                    },
                    _ = finish.changed() => continue,
                }
            }
        }
        while ob.unsent.len() < MAX {
            match ob.rx.try_recv() {
                Ok(r) => ob.unsent.push(r),
                Err(_) => break,
            }
        }
        for r in &mut ob.unsent {
            r.worker_id = worker_id;
        }
        let req = pb::ReportBatchRequest { reports: ob.unsent.clone() };
        let mut delay = Duration::from_millis(50);
        let mut delivered = false;
        for _ in 0..6 {
            match client.report_batch(req.clone()).await {
                Ok(_) => {
                    delivered = true;
                    break;
                }
                Err(s) if matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Unknown) => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(_) => {
                    delivered = true; // refused: dropping it is all that can be done
                    break;
                }
            }
        }
        if !delivered {
            // The coordinator is unreachable: keep the batch for the next session.
            return;
        }
        ob.unsent.clear();
    }
}

async fn heartbeat_loop(mut client: kappa_proto::Client, worker_id: u64, every: Duration, held: Held) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let leases: Vec<pb::LeaseRef> = match held.lock() {
            Ok(h) => {
                h.keys().map(|(id, attempt)| pb::LeaseRef { trial_id: id.to_string(), attempt: *attempt }).collect()
            }
            Err(_) => continue,
        };
        let req = pb::HeartbeatRequest { protocol_version: PROTOCOL_VERSION, worker_id, held: leases };
        if let Ok(resp) = client.heartbeat(req).await
            && let Ok(mut h) = held.lock()
        {
            for r in resp.into_inner().revoked {
                if let Ok(id) = parse_trial_id(&r.trial_id)
                    && let Some(c) = h.remove(&(id, r.attempt))
                {
                    c.cancel();
                }
            }
        }
    }
}

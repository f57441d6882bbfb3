//! kappa-worker: pulls trials from a coordinator, runs them, reports how they ended.
//!
//! The loop (after Ballista's executor poll loop): register, then lease as many trials as there
//! are free slots, run each on the rayon pool, and report it. A heartbeat task renews the leases
//! held; a lease the coordinator revokes is cancelled here. A panic inside a simulation is a failed
//! trial, never a dead worker.

#![warn(missing_docs)]

mod executor;

pub use executor::execute;

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
}

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
                    log(&cfg, &format!("{e}; retrying in {backoff:.1?}"));
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
        match session(&cfg, client, &mut shutdown, stats.clone()).await {
            Ok(SessionEnd::Stop) => break,
            Ok(SessionEnd::Lost(why)) => {
                connected_once = true;
                backoff = Duration::from_millis(100);
                log(&cfg, &format!("lost the coordinator ({why}); reconnecting"));
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => {}
                }
            }
            Err(e) => return Err(e),
        }
    }
    let stats = stats.lock().map(|s| *s).unwrap_or_default();
    Ok(stats)
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
) -> Result<SessionEnd, WorkerError> {
    let rpc = |s: tonic::Status| WorkerError::Rpc(cfg.coordinator.clone(), s);
    let reg = match client
        .register(pb::RegisterRequest {
            protocol_version: PROTOCOL_VERSION,
            name: cfg.name.clone(),
            slots: cfg.slots as u32,
            gpus: 0,
        })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(s) if is_lost(&s) => return Ok(SessionEnd::Lost(s.message().to_string())),
        Err(s) => return Err(rpc(s)),
    };
    let worker_id = reg.worker_id;
    log(cfg, &format!("registered with {} as w{worker_id}", cfg.coordinator));
    let held: Held = Arc::default();
    let (reports, report_rx) = tokio::sync::mpsc::unbounded_channel();
    let reporter = tokio::spawn(reporter(client.clone(), report_rx));
    let heartbeat = tokio::spawn(heartbeat_loop(
        client.clone(),
        worker_id,
        Duration::from_millis(u64::from(reg.heartbeat_interval_ms.max(50))),
        held.clone(),
    ));
    let slots = Arc::new(Semaphore::new(cfg.slots.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
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
            wait_ms: cfg.lease_wait.as_millis() as u32,
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
            // Nothing to do until a new sweep arrives: do not spin.
            drop(permits);
            tokio::select! {
                _ = tokio::time::sleep(cfg.lease_wait.max(Duration::from_millis(100))) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        for lease in resp.leases {
            let Some(permit) = permits.pop() else { break };
            let trial = match prepare(&lease, &mut parsed) {
                Ok(t) => t,
                Err(error) => {
                    // A trial this worker cannot even read fails its attempt, with the reason.
                    let _ = reports.send(report_request(
                        worker_id,
                        &lease.trial_id,
                        lease.attempt,
                        &AttemptOutcome::Failed { error },
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
            tasks.spawn(async move {
                let started = Instant::now();
                let outcome = run_on_pool(trial.clone(), cancel.clone()).await;
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
    // End of the session: cancel what runs, hand the leases back, wait for the tasks to notice.
    if let Ok(h) = held.lock() {
        for c in h.values() {
            c.cancel();
        }
    }
    while tasks.join_next().await.is_some() {}
    // Deliver what finished before leaving.
    drop(reports);
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
}

fn prepare(lease: &pb::TrialLease, parsed: &mut Option<(String, Arc<TaskSpec>)>) -> Result<Trial, String> {
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
    Ok(Trial { id, attempt: lease.attempt, task, params, timeout })
}

/// Runs a trial on the rayon pool; `None` when it was cancelled.
async fn run_on_pool(trial: Trial, cancel: Cancel) -> Option<AttemptOutcome> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let c = cancel.clone();
    let t = trial.clone();
    rayon::spawn(move || {
        let _ = tx.send(execute(&t.task, &t.params, t.id, &c));
    });
    let result = match trial.timeout {
        Some(limit) => match tokio::time::timeout(limit, rx).await {
            Ok(r) => r,
            Err(_) => {
                cancel.cancel();
                return Some(AttemptOutcome::Failed { error: format!("timed out after {:.1?}", limit) });
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

/// Sends reports in batches: whatever accumulated while the previous call was in flight goes in
/// the next one. Transient failures are retried briefly; a batch that cannot be delivered is
/// dropped, its leases expire and its trials run again (never counted twice).
async fn reporter(mut client: kappa_proto::Client, mut rx: tokio::sync::mpsc::UnboundedReceiver<pb::ReportRequest>) {
    const MAX: usize = 1024;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let req = pb::ReportBatchRequest { reports: batch };
        let mut delay = Duration::from_millis(50);
        for _ in 0..6 {
            match client.report_batch(req.clone()).await {
                Ok(_) => break,
                Err(s) if matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Unknown) => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(_) => break,
            }
        }
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

//! Sessions with the coordinator: connect (with backoff), register, lease as many trials as
//! there are free slots and start each, until the coordinator goes away (reconnect), the worker
//! is told to stop (drain, then hand back), or the sweep is finished (local workers).

use crate::held::Held;
use crate::reporter::{Outbox, ReportQueue, heartbeat, reporter};
use crate::trial::{AHEAD_WAIT, GpuPool, TaskCache, TrialEnv};
use crate::{WorkerConfig, WorkerError, WorkerStats};
use kappa_core::WorkerId;
use kappa_proto::{CallFailure, deregister_request, lease_from_pb, lease_request, register_request};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};

/// Runs a worker until `shutdown` turns true or (with `exit_when_finished`) the sweep finishes.
/// A coordinator that goes away (restart, network) is reconnected to with backoff, forever for a
/// cluster worker; a local worker (`exit_when_finished`) gives up if the first connection fails.
pub async fn run(cfg: WorkerConfig, mut shutdown: watch::Receiver<bool>) -> Result<WorkerStats, WorkerError> {
    let stats = Arc::new(Mutex::new(WorkerStats::default()));
    let mut local = Local::new(&cfg, stats.clone());
    let result = serve(&cfg, &mut shutdown, &mut local).await;
    // Whatever still runs (the worker is refused or stopping) is abandoned.
    local.abandon().await;
    result?;
    let stats = stats.lock().map(|s| *s).unwrap_or_default();
    Ok(stats)
}

/// What outlives a session with the coordinator: trials keep running while the worker
/// reconnects, and their reports wait in the outbox for the next session to deliver.
pub(crate) struct Local {
    env: TrialEnv,
    tasks: tokio::task::JoinSet<()>,
    outbox: Arc<tokio::sync::Mutex<Outbox>>,
    slots: Arc<Semaphore>,
}

impl Local {
    pub(crate) fn new(cfg: &WorkerConfig, stats: Arc<Mutex<WorkerStats>>) -> Local {
        let (reports, outbox) = ReportQueue::new();
        let held = Held::default();
        let gpu_pool: GpuPool = Arc::new(Mutex::new(cfg.gpus.clone()));
        Local {
            env: TrialEnv {
                held,
                reports,
                stats,
                gpu_pool,
                commands: cfg.commands.clone(),
                trials: cfg.trials.clone().or_else(|| cfg.commands.as_ref().map(crate::CommandEnv::trial_dirs)),
                backend: cfg.backend,
                draining: Arc::default(),
                recent_us: Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX)),
                ahead: Arc::default(),
            },
            tasks: tokio::task::JoinSet::new(),
            outbox: Arc::new(tokio::sync::Mutex::new(outbox)),
            slots: Arc::new(Semaphore::new(cfg.slots.max(1))),
        }
    }

    fn cancel_all(&self) {
        self.env.held.cancel_all();
    }

    /// Cancels whatever still runs and waits for it to stop; trials leased ahead are handed back.
    pub(crate) async fn abandon(&mut self) {
        self.env.hand_back_queued(Duration::ZERO, "its worker was stopping before it started it");
        self.cancel_all();
        while self.tasks.join_next().await.is_some() {}
    }

    fn free_gpus(&self) -> u32 {
        self.env.gpu_pool.lock().map(|p| p.len() as u32).unwrap_or(0)
    }
}

/// How a session with the coordinator ended.
enum SessionEnd {
    /// Asked to stop (or the sweep finished and the worker exits then).
    Stop,
    /// The coordinator went away or forgot this worker: connect and register again.
    Lost(String),
}

/// Sessions until the worker stops: a lost coordinator is reconnected to with backoff.
pub(crate) async fn serve(
    cfg: &WorkerConfig,
    shutdown: &mut watch::Receiver<bool>,
    local: &mut Local,
) -> Result<(), WorkerError> {
    let mut backoff = Duration::from_millis(100);
    let mut connected_once = false;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let client = match kappa_proto::connect_with(&cfg.coordinator, cfg.token.as_deref(), cfg.tls_ca.as_deref())
            .await
        {
            Ok(c) => c,
            Err(e) if !connected_once && cfg.exit_when_finished => return Err(e.into()),
            Err(e) => {
                tracing::warn!(coordinator = %cfg.coordinator, error = %e, retry_in_s = backoff.as_secs_f64(), "cannot reach the coordinator");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        match session(cfg, client, shutdown, local, connected_once).await? {
            SessionEnd::Stop => break,
            SessionEnd::Lost(why) => {
                connected_once = true;
                backoff = Duration::from_millis(100);
                tracing::warn!(
                    coordinator = %cfg.coordinator, why = %why, running = local.tasks.len(),
                    "lost the coordinator; reconnecting (running trials carry on)"
                );
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
    Ok(())
}

/// One session: register, start the reporter and the heartbeat, run the lease loop, and on a
/// stop drain and hand back what still runs.
async fn session(
    cfg: &WorkerConfig,
    mut client: kappa_proto::Client,
    shutdown: &mut watch::Receiver<bool>,
    local: &mut Local,
    reconnect: bool,
) -> Result<SessionEnd, WorkerError> {
    let rpc = |s: tonic::Status| WorkerError::Rpc(cfg.coordinator.clone(), s);
    let reg = match client.register(register_request(&cfg.name, cfg.slots, cfg.gpus.len(), &cfg.code_versions)).await {
        Ok(r) => r.into_inner(),
        Err(s) if CallFailure::of(&s) != CallFailure::Fatal => return Ok(SessionEnd::Lost(s.message().to_string())),
        Err(s) => return Err(rpc(s)),
    };
    let worker = WorkerId(reg.worker_id);
    tracing::info!(
        coordinator = %cfg.coordinator, worker = %cfg.name, id = worker.0, slots = cfg.slots, gpus = cfg.gpus.len(),
        "{}", if reconnect { "registered again" } else { "registered" }
    );
    let (finish, finish_rx) = watch::channel(false);
    let (delivered_tx, mut delivered) = watch::channel(0);
    let reporter = tokio::spawn(reporter(client.clone(), worker, local.outbox.clone(), finish_rx, delivered_tx));
    let every = Duration::from_millis(u64::from(reg.heartbeat_interval_ms.max(50)));
    let heartbeat = tokio::spawn(heartbeat(client.clone(), worker, every, local.env.held.clone()));
    let result = lease_loop(cfg, &mut client, worker, shutdown, local, &mut delivered).await.map_err(rpc);
    if let Ok(SessionEnd::Lost(_)) = result {
        // The trials keep running; the next session renews their leases and delivers their
        // reports (a restarted coordinator accepts them while the leases are current).
        reporter.abort();
        heartbeat.abort();
        return result;
    }
    // Stopping: a draining worker asks its programs to stop (SIGTERM: they checkpoint) and lets
    // running trials end for up to the drain (heartbeats go on meanwhile); then what still runs
    // is cancelled. Every attempt stopped this way is reported as preempted.
    local.env.draining.store(true, std::sync::atomic::Ordering::Relaxed);
    if !cfg.drain.is_zero() && !local.tasks.is_empty() {
        tracing::info!(running = local.tasks.len(), drain_s = cfg.drain.as_secs_f64(), "draining");
        let _ = tokio::time::timeout(cfg.drain, async { while local.tasks.join_next().await.is_some() {} }).await;
    }
    local.abandon().await;
    // Deliver what finished before leaving.
    let _ = finish.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), reporter).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), client.deregister(deregister_request(worker))).await;
    heartbeat.abort();
    result
}

/// Most trials asked for in one lease call (the coordinator's limit).
const MAX_LEASE: usize = 1024;

/// Leases as many trials as there are free slots (and short ones ahead of them) and starts
/// each, until the session ends.
/// `delivered` counts the reports the reporter has delivered; it closes when the reporter gives up.
async fn lease_loop(
    cfg: &WorkerConfig,
    client: &mut kappa_proto::Client,
    worker: WorkerId,
    shutdown: &mut watch::Receiver<bool>,
    local: &mut Local,
    delivered: &mut watch::Receiver<u64>,
) -> Result<SessionEnd, tonic::Status> {
    let mut tasks = TaskCache::default();
    loop {
        if *shutdown.borrow() {
            return Ok(SessionEnd::Stop);
        }
        // Wait for a free slot, then take every free slot at once. Meanwhile, trials leased
        // ahead that wait too long behind a long one are handed back for other workers.
        let first = loop {
            tokio::select! {
                p = local.slots.clone().acquire_owned() => match p {
                    Ok(p) => break Some(p),
                    Err(_) => return Ok(SessionEnd::Stop),
                },
                _ = tokio::time::sleep(AHEAD_WAIT / 4), if local.env.queued() > 0 => {
                    local.env.hand_back_queued(AHEAD_WAIT, "leased ahead, and the trial before it ran long: handed back unstarted");
                    continue;
                }
                _ = shutdown.changed() => break None,
            }
        };
        let Some(first) = first else { continue };
        let mut permits = vec![first];
        while let Ok(p) = local.slots.clone().try_acquire_owned() {
            permits.push(p);
        }
        // Trials leased ahead run first, in lease order, in the slots just freed.
        while !permits.is_empty()
            && let Some((w, trial)) = local.env.next_queued()
        {
            if let Some(p) = permits.pop() {
                local.tasks.spawn(local.env.clone().run(w, trial, p));
            }
        }
        if permits.is_empty() {
            continue;
        }
        // Ask for more work only once the coordinator has the reports of the trials that ended
        // before: it counts them first (a failure budget used up, a retry's backoff), so a slot
        // freed by a failure never runs a trial the failure should have held back.
        let queued = local.env.reports.queued();
        let ready = tokio::select! {
            r = delivered.wait_for(|d| *d >= queued) => r.is_ok(),
            _ = shutdown.changed() => continue,
        };
        if !ready {
            return Ok(SessionEnd::Lost("the reports of finished trials could not be delivered".into()));
        }
        // While some GPUs are busy, poll briefly: the long wait would hold a stale count of free
        // GPUs and miss the ones freed meanwhile.
        let free = local.free_gpus();
        let wait = if free < cfg.gpus.len() as u32 { Duration::from_millis(200) } else { cfg.lease_wait };
        // Short trials are leased ahead of the free slots (not on GPU workers: a trial leased
        // ahead would hold its GPUs while it waits).
        let ahead = if cfg.gpus.is_empty() { local.env.lease_ahead(permits.len(), MAX_LEASE) } else { 0 };
        let resp = tokio::select! {
            r = client.lease(lease_request(worker, permits.len() + ahead, wait, free)) => r,
            _ = shutdown.changed() => continue,
        };
        let resp = match resp {
            Ok(r) => r.into_inner(),
            Err(s) if CallFailure::of(&s) != CallFailure::Fatal => {
                return Ok(SessionEnd::Lost(s.message().to_string()));
            }
            Err(s) => return Err(s),
        };
        if resp.leases.is_empty() {
            // Idle: the next trials may be another sweep's, of another length (lease none ahead
            // until some of them have run).
            local.env.forget_durations();
        }
        if resp.leases.is_empty() && resp.sweep_finished {
            if cfg.exit_when_finished {
                return Ok(SessionEnd::Stop);
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
        let mut prepared = Vec::with_capacity(resp.leases.len());
        for lease in resp.leases {
            let lease = match lease_from_pb(lease) {
                Ok(l) => l,
                Err(bad) => {
                    // Unreadable: fail the attempt if it can be named; else its lease expires.
                    match bad.trial {
                        Some(attempt) => local.env.refuse(worker, attempt, format!("unreadable lease: {bad}")),
                        None => tracing::error!(error = %bad, "the coordinator sent a lease this worker cannot read"),
                    }
                    continue;
                }
            };
            if let Some(trial) = local.env.prepare(worker, lease, &mut tasks) {
                prepared.push(trial);
            }
        }
        // Those beyond the free slots are queued before the others start (a slot that finishes
        // at once runs the next of them, in lease order).
        let extra = prepared.split_off(permits.len().min(prepared.len()));
        for trial in extra {
            local.env.queue(worker, trial);
        }
        for (trial, p) in prepared.into_iter().zip(permits.drain(..)) {
            local.tasks.spawn(local.env.clone().run(worker, trial, p));
        }
        // Reap finished tasks so the set does not grow.
        while local.tasks.try_join_next().is_some() {}
    }
}

//! The `kappa.v1.Coordinator` gRPC service over a [`Hub`], with one table from errors to status
//! codes: malformed input INVALID_ARGUMENT, version mismatch FAILED_PRECONDITION, missing or wrong
//! token UNAUTHENTICATED, unknown worker NOT_FOUND (register again), conflicting submission
//! ALREADY_EXISTS, storage trouble INTERNAL. None of them stops the server.

use crate::hub::{Hub, HubError};
use kappa_core::WorkerId;
use kappa_core::sched::Disposition;
use kappa_proto::pb::coordinator_server::{Coordinator as CoordinatorRpc, CoordinatorServer};
use kappa_proto::{Auth, PROTOCOL_VERSION, outcome_from_pb, parse_trial_id, pb};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

/// Longest a lease call may wait for work.
const MAX_LEASE_WAIT: Duration = Duration::from_secs(30);
/// Largest number of trials one lease call may ask for.
const MAX_LEASE_BATCH: u32 = 1024;
/// Largest number of reports in one batch.
const MAX_REPORT_BATCH: usize = 4096;
/// Largest request accepted (a sweep file, a report with its curve).
pub const MAX_REQUEST_BYTES: usize = 16 << 20;

impl From<HubError> for Status {
    fn from(e: HubError) -> Status {
        match e {
            HubError::InvalidSweep(m) => Status::invalid_argument(m),
            HubError::Conflict(_) => Status::already_exists(e.to_string()),
            HubError::NoStateRoot => Status::failed_precondition(e.to_string()),
            HubError::NoSuchSweep(_) => Status::not_found(e.to_string()),
            HubError::Coordinator(_) | HubError::State(_) => Status::internal(e.to_string()),
        }
    }
}

/// Serves `hub` on `listener` until `shutdown` resolves (mini-redis style), checking `auth` on
/// every call. Also runs the lease-expiry clock.
pub async fn serve(
    listener: TcpListener,
    hub: Arc<Hub>,
    auth: Auth,
    tls: Option<tonic::transport::Identity>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let ticker = {
        let h = hub.clone();
        let period = (h.config().lease_timeout / 4).max(Duration::from_millis(50));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                h.expire();
            }
        })
    };
    let svc = CoordinatorServer::new(Service { hub, auth })
        .max_decoding_message_size(MAX_REQUEST_BYTES)
        .max_encoding_message_size(64 << 20);
    // The standard health service (for probes) and reflection (for grpcurl), unauthenticated:
    // they reveal nothing about sweeps.
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<CoordinatorServer<Service>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(kappa_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1();
    let mut builder = tonic::transport::Server::builder();
    if let Some(identity) = tls {
        builder = builder.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?;
    }
    let router = builder.add_service(svc).add_service(health);
    let router = match reflection {
        Ok(r) => router.add_service(r),
        Err(_) => router,
    };
    // Small request/response pairs must not wait for Nagle's algorithm (a 40 ms stall per round
    // trip against delayed ACKs): every accepted connection gets TCP_NODELAY.
    let incoming = TcpListenerStream::new(listener).map(|conn| {
        conn.inspect(|stream| {
            let _ = stream.set_nodelay(true);
        })
    });
    let result = router.serve_with_incoming_shutdown(incoming, shutdown).await;
    ticker.abort();
    result
}

struct Service {
    hub: Arc<Hub>,
    auth: Auth,
}

impl Service {
    fn worker(&self, id: u64) -> Result<WorkerId, Status> {
        let w = WorkerId(id);
        if self.hub.knows(w) {
            Ok(w)
        } else {
            Err(Status::not_found(format!("unknown worker id {id}: register again")))
        }
    }

    fn progress(&self, sweep: &str) -> Result<pb::Progress, Status> {
        let c = if sweep.is_empty() { self.hub.latest() } else { self.hub.sweep(sweep) };
        match c {
            Some(c) => Ok(c.progress()),
            None if sweep.is_empty() => Err(Status::not_found("no sweep submitted yet")),
            None => Err(Status::not_found(format!("no sweep named `{sweep}`"))),
        }
    }
}

fn check_version(v: u32) -> Result<(), Status> {
    if v == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(Status::failed_precondition(format!(
            "protocol version {v} is not supported: this coordinator speaks version {PROTOCOL_VERSION}"
        )))
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::Progress, Status>> + Send>>;
type ResultsStream = Pin<Box<dyn Stream<Item = Result<pb::ResultsChunk, Status>> + Send>>;

/// Trials per `Results` message.
const RESULTS_CHUNK: usize = 200;

#[tonic::async_trait]
impl CoordinatorRpc for Service {
    async fn register(&self, req: Request<pb::RegisterRequest>) -> Result<Response<pb::RegisterResponse>, Status> {
        self.auth.check(&req)?;
        let r = req.into_inner();
        check_version(r.protocol_version)?;
        if r.slots == 0 {
            return Err(Status::invalid_argument("slots must be at least 1"));
        }
        let name = if r.name.trim().is_empty() { "worker".to_string() } else { r.name.chars().take(128).collect() };
        let id = self.hub.register(&name, r.gpus);
        let cfg = self.hub.config();
        Ok(Response::new(pb::RegisterResponse {
            worker_id: id.0,
            heartbeat_interval_ms: cfg.heartbeat_interval.as_millis() as u32,
            lease_timeout_ms: cfg.lease_timeout.as_millis() as u32,
        }))
    }

    async fn lease(&self, req: Request<pb::LeaseRequest>) -> Result<Response<pb::LeaseResponse>, Status> {
        self.auth.check(&req)?;
        let r = req.into_inner();
        let worker = self.worker(r.worker_id)?;
        if r.max_trials == 0 || r.max_trials > MAX_LEASE_BATCH {
            return Err(Status::invalid_argument(format!("max_trials must be in 1..={MAX_LEASE_BATCH}")));
        }
        let wait = Duration::from_millis(u64::from(r.wait_ms)).min(MAX_LEASE_WAIT);
        let (grants, finished) = self.hub.lease(worker, r.max_trials as usize, wait, r.free_gpus).await;
        let leases = grants
            .iter()
            .map(|l| pb::TrialLease {
                trial_id: l.grant.id.to_string(),
                attempt: l.grant.attempt,
                task_json: l.task.to_string(),
                params: Some((&l.grant.params).into()),
                timeout_ms: l.timeout.map_or(0, |t| t.as_millis() as u64),
                gpus: l.gpus,
            })
            .collect();
        Ok(Response::new(pb::LeaseResponse { leases, sweep_finished: finished }))
    }

    async fn heartbeat(&self, req: Request<pb::HeartbeatRequest>) -> Result<Response<pb::HeartbeatResponse>, Status> {
        self.auth.check(&req)?;
        let r = req.into_inner();
        check_version(r.protocol_version)?;
        let worker = self.worker(r.worker_id)?;
        let held = r
            .held
            .iter()
            .map(|l| Ok((parse_trial_id(&l.trial_id)?, l.attempt)))
            .collect::<Result<Vec<_>, kappa_proto::ConvertError>>()?;
        let revoked = self
            .hub
            .heartbeat(worker, &held)
            .into_iter()
            .map(|(id, attempt)| pb::LeaseRef { trial_id: id.to_string(), attempt })
            .collect();
        Ok(Response::new(pb::HeartbeatResponse { revoked }))
    }

    async fn report(&self, req: Request<pb::ReportRequest>) -> Result<Response<pb::ReportResponse>, Status> {
        self.auth.check(&req)?;
        let r = req.into_inner();
        let id = parse_trial_id(&r.trial_id)?;
        let outcome = outcome_from_pb(r.outcome)?;
        let duration = if r.duration_s.is_finite() && r.duration_s >= 0.0 { r.duration_s } else { 0.0 };
        // A report from a worker this coordinator does not know (it restarted) is still recorded:
        // the scheduler fences it as late unless it matches a current lease.
        let disposition = self.hub.report(WorkerId(r.worker_id), id, r.attempt, outcome, duration);
        let d = match disposition {
            Disposition::Accepted { .. } => pb::Disposition::Accepted,
            Disposition::Late => pb::Disposition::Late,
            Disposition::Unknown => pb::Disposition::Unknown,
        };
        Ok(Response::new(pb::ReportResponse { disposition: d as i32 }))
    }

    async fn report_batch(
        &self,
        req: Request<pb::ReportBatchRequest>,
    ) -> Result<Response<pb::ReportBatchResponse>, Status> {
        self.auth.check(&req)?;
        let reports = req.into_inner().reports;
        if reports.len() > MAX_REPORT_BATCH {
            return Err(Status::invalid_argument(format!("at most {MAX_REPORT_BATCH} reports per batch")));
        }
        // Validate the whole batch before applying any of it.
        let mut parsed = Vec::with_capacity(reports.len());
        for r in reports {
            let id = parse_trial_id(&r.trial_id)?;
            let outcome = outcome_from_pb(r.outcome)?;
            let duration = if r.duration_s.is_finite() && r.duration_s >= 0.0 { r.duration_s } else { 0.0 };
            parsed.push((WorkerId(r.worker_id), id, r.attempt, outcome, duration));
        }
        let dispositions = parsed
            .into_iter()
            .map(|(w, id, attempt, outcome, duration)| match self.hub.report(w, id, attempt, outcome, duration) {
                Disposition::Accepted { .. } => pb::Disposition::Accepted as i32,
                Disposition::Late => pb::Disposition::Late as i32,
                Disposition::Unknown => pb::Disposition::Unknown as i32,
            })
            .collect();
        Ok(Response::new(pb::ReportBatchResponse { dispositions }))
    }

    async fn deregister(
        &self,
        req: Request<pb::DeregisterRequest>,
    ) -> Result<Response<pb::DeregisterResponse>, Status> {
        self.auth.check(&req)?;
        let worker = self.worker(req.into_inner().worker_id)?;
        self.hub.deregister(worker);
        Ok(Response::new(pb::DeregisterResponse {}))
    }

    async fn submit(&self, req: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResponse>, Status> {
        self.auth.check(&req)?;
        let r = req.into_inner();
        let file = if r.file_name.trim().is_empty() { "sweep.toml".to_string() } else { r.file_name };
        let hub = self.hub.clone();
        // Planning writes the store: keep it off the async threads.
        let done = tokio::task::spawn_blocking(move || hub.submit(&r.spec, &file))
            .await
            .map_err(|e| Status::internal(format!("planning crashed: {e}")))??;
        Ok(Response::new(pb::SubmitResponse {
            warning: self.hub.gpu_warning(&done.sweep).unwrap_or_default(),
            sweep: done.sweep,
            total: done.sync.total,
            new_trials: done.sync.new,
            reused: done.sync.reused,
        }))
    }

    async fn cancel(&self, req: Request<pb::CancelRequest>) -> Result<Response<pb::CancelResponse>, Status> {
        self.auth.check(&req)?;
        let name = req.into_inner().sweep;
        let hub = self.hub.clone();
        let (sweep, unfinished) = tokio::task::spawn_blocking(move || hub.cancel(&name))
            .await
            .map_err(|e| Status::internal(format!("cancel crashed: {e}")))??;
        Ok(Response::new(pb::CancelResponse { sweep, unfinished }))
    }

    async fn retry_failed(
        &self,
        req: Request<pb::RetryFailedRequest>,
    ) -> Result<Response<pb::RetryFailedResponse>, Status> {
        self.auth.check(&req)?;
        let name = req.into_inner().sweep;
        let hub = self.hub.clone();
        let (sweep, requeued) = tokio::task::spawn_blocking(move || hub.retry_failed(&name))
            .await
            .map_err(|e| Status::internal(format!("retry crashed: {e}")))??;
        Ok(Response::new(pb::RetryFailedResponse { sweep, requeued }))
    }

    async fn status(&self, req: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        self.auth.check(&req)?;
        let sweep = req.into_inner().sweep;
        let all = self.hub.progress();
        let progress = if all.is_empty() && sweep.is_empty() { None } else { Some(self.progress(&sweep)?) };
        Ok(Response::new(pb::StatusResponse { progress, sweeps: all }))
    }

    type ResultsStream = ResultsStream;

    async fn results(&self, req: Request<pb::ResultsRequest>) -> Result<Response<Self::ResultsStream>, Status> {
        self.auth.check(&req)?;
        let sweep = req.into_inner().sweep;
        let hub = self.hub.clone();
        let (info, trials) = tokio::task::spawn_blocking(move || hub.results(&sweep))
            .await
            .map_err(|e| Status::internal(format!("reading results failed: {e}")))??;
        // Chunks of at most RESULTS_CHUNK trials keep every message well under the 4 MiB that
        // gRPC clients accept by default.
        let mut chunks = Vec::with_capacity(trials.len() / RESULTS_CHUNK + 1);
        let mut first = Some((info.spec, info.spec_path));
        let mut iter = trials.into_iter().peekable();
        while first.is_some() || iter.peek().is_some() {
            let (spec, spec_path) = first.take().unwrap_or_default();
            let trials = iter
                .by_ref()
                .take(RESULTS_CHUNK)
                .map(|t| {
                    kappa_proto::trial_result_to_pb(t.id, &t.params, t.status, t.metrics.as_ref(), t.error.as_deref())
                })
                .collect();
            chunks.push(Ok(pb::ResultsChunk { sweep: info.name.clone(), spec, spec_path, trials }));
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    type WatchStream = WatchStream;

    async fn watch(&self, req: Request<pb::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        self.auth.check(&req)?;
        let sweep = req.into_inner().sweep;
        let c = if sweep.is_empty() { self.hub.latest() } else { self.hub.sweep(&sweep) };
        let c = c.ok_or_else(|| Status::not_found("no such sweep"))?;
        let mut rx = c.subscribe();
        let (tx, out) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let p = rx.borrow_and_update().clone();
                let finished = p.finished || p.cancelled;
                if tx.send(Ok(p)).await.is_err() || finished {
                    break;
                }
                // At most ten snapshots a second, whatever the trial rate.
                tokio::time::sleep(Duration::from_millis(100)).await;
                if rx.changed().await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(out))))
    }
}

//! The `kappa.v1.Coordinator` gRPC service over a [`Coordinator`]. Its errors are classified by
//! [`crate::ErrorCode`], the table the dashboard's HTTP API reads too: malformed input
//! INVALID_ARGUMENT, version mismatch FAILED_PRECONDITION, unknown worker NOT_FOUND (register
//! again), conflicting submission ALREADY_EXISTS, storage trouble INTERNAL. A missing or unknown
//! token is UNAUTHENTICATED and a role without the right PERMISSION_DENIED, both refused by the
//! server's guard before a request body is read (`guard`); what needs the body (whose sweep it
//! is, whether it runs commands) is checked here against the holder the guard passed on. Open
//! streams check their holder again before every message, so a revoked token ends them. None
//! of them stops the server.

use crate::access::{Access, Action, Holder, Refusal};
use crate::guard::holder;
use crate::{Coordinator, CoordinatorError, ErrorCode, blocking};
use kappa_core::{AttemptReport, WorkerId};
use kappa_proto::pb::coordinator_server::Coordinator as CoordinatorRpc;
use kappa_proto::{PROTOCOL_VERSION, disposition_to_pb, lease_refs_from_pb, lease_refs_to_pb, pb};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
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
/// Most code versions a worker may register.
const MAX_CODE_VERSIONS: usize = 16;
/// Trials per `Results` message.
const RESULTS_CHUNK: usize = 200;

pub(crate) struct Service {
    pub(crate) coordinator: Arc<Coordinator>,
    pub(crate) access: Arc<Access>,
}

impl Service {
    /// A registered worker, called for by the holder that registered it (or an admin).
    fn worker(&self, id: u64, by: &Holder, call: &str) -> Result<WorkerId, Status> {
        let w = WorkerId(id);
        self.owns(w, by, call)?;
        if self.coordinator.knows(w) {
            Ok(w)
        } else {
            Err(ErrorCode::NotFound.status(format!("unknown worker id {id}: register again")))
        }
    }

    /// Refuses a call for a worker that another holder registered (unless `by` is an admin); a
    /// worker this coordinator does not know (it restarted) is anyone's.
    fn owns(&self, w: WorkerId, by: &Holder, call: &str) -> Result<(), Status> {
        match self.coordinator.worker_holder(w) {
            Some(h) if !h.same_token(by) && by.role != crate::Role::Admin => {
                let r =
                    Refusal::denied(format!("{by} may not act for worker {}: it was registered by {}", w.0, h.name));
                self.access.refused(&r, call);
                Err(r.into())
            }
            _ => Ok(()),
        }
    }

    /// Runs `f` on the coordinator off the async threads (planning, store reads).
    async fn blocking<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(&Coordinator) -> Result<T, CoordinatorError> + Send + 'static,
    ) -> Result<T, Status> {
        let c = self.coordinator.clone();
        Ok(blocking(what, move || f(&c)).await?)
    }
}

fn worker_to_pb(w: &crate::WorkerInfo) -> pb::WorkerStatus {
    pb::WorkerStatus {
        name: w.name.clone(),
        slots: w.slots,
        gpus: w.gpus,
        code_versions: w.code_versions.clone(),
        silent_s: w.silent_s,
        lost: w.lost,
        blocked: w
            .blocked
            .iter()
            .map(|b| pb::BlockedSweep { sweep: b.sweep.clone(), needs: b.needs.clone(), pending: b.pending })
            .collect(),
    }
}

fn check_version(v: u32) -> Result<(), Status> {
    if v == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(ErrorCode::FailedPrecondition.status(format!(
            "protocol version {v} is not supported: this coordinator speaks version {PROTOCOL_VERSION}"
        )))
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::Progress, Status>> + Send>>;
type ResultsStream = Pin<Box<dyn Stream<Item = Result<pb::ResultsChunk, Status>> + Send>>;

#[tonic::async_trait]
impl CoordinatorRpc for Service {
    async fn register(&self, req: Request<pb::RegisterRequest>) -> Result<Response<pb::RegisterResponse>, Status> {
        let by = holder(&req)?;
        let r = req.into_inner();
        check_version(r.protocol_version)?;
        if r.slots == 0 {
            return Err(ErrorCode::InvalidArgument.status("slots must be at least 1"));
        }
        let name = if r.name.trim().is_empty() { "worker".to_string() } else { r.name.chars().take(128).collect() };
        if r.code_versions.len() > MAX_CODE_VERSIONS || r.code_versions.iter().any(|v| v.len() > 128) {
            return Err(ErrorCode::InvalidArgument
                .status(format!("at most {MAX_CODE_VERSIONS} code versions of at most 128 bytes each")));
        }
        let id = self.coordinator.register(by.clone(), &name, r.slots, r.gpus, r.code_versions);
        // A reload that revoked the token while this call was under way dropped the workers
        // registered so far: this one goes too.
        if let Err(refusal) = self.access.still(&by, Action::Work) {
            self.coordinator.deregister(id);
            self.access.refused(&refusal, "Register");
            return Err(refusal.into());
        }
        let cfg = self.coordinator.config();
        Ok(Response::new(pb::RegisterResponse {
            worker_id: id.0,
            heartbeat_interval_ms: cfg.heartbeat_interval.as_millis() as u32,
            lease_timeout_ms: cfg.lease_timeout.as_millis() as u32,
        }))
    }

    async fn lease(&self, req: Request<pb::LeaseRequest>) -> Result<Response<pb::LeaseResponse>, Status> {
        let by = holder(&req)?;
        let r = req.into_inner();
        let worker = self.worker(r.worker_id, &by, "Lease")?;
        if r.max_trials == 0 || r.max_trials > MAX_LEASE_BATCH {
            return Err(ErrorCode::InvalidArgument.status(format!("max_trials must be in 1..={MAX_LEASE_BATCH}")));
        }
        let wait = Duration::from_millis(u64::from(r.wait_ms)).min(MAX_LEASE_WAIT);
        let (leases, finished) = self.coordinator.lease(worker, r.max_trials as usize, wait, r.free_gpus).await;
        Ok(Response::new(pb::LeaseResponse {
            leases: leases.iter().map(Into::into).collect(),
            sweep_finished: finished,
        }))
    }

    async fn heartbeat(&self, req: Request<pb::HeartbeatRequest>) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let by = holder(&req)?;
        let r = req.into_inner();
        check_version(r.protocol_version)?;
        let worker = self.worker(r.worker_id, &by, "Heartbeat")?;
        let held = lease_refs_from_pb(&r.held)?;
        let revoked = lease_refs_to_pb(&self.coordinator.heartbeat(worker, &held));
        Ok(Response::new(pb::HeartbeatResponse { revoked }))
    }

    async fn report(&self, req: Request<pb::ReportRequest>) -> Result<Response<pb::ReportResponse>, Status> {
        // A report from a worker this coordinator does not know (it restarted) is still recorded:
        // the scheduler fences it as late unless it matches a current lease.
        let by = holder(&req)?;
        let report = AttemptReport::try_from(req.into_inner())?;
        self.owns(report.worker, &by, "Report")?;
        let d = disposition_to_pb(self.coordinator.report(report));
        Ok(Response::new(pb::ReportResponse { disposition: d as i32 }))
    }

    async fn report_batch(
        &self,
        req: Request<pb::ReportBatchRequest>,
    ) -> Result<Response<pb::ReportBatchResponse>, Status> {
        let by = holder(&req)?;
        let reports = req.into_inner().reports;
        if reports.len() > MAX_REPORT_BATCH {
            return Err(ErrorCode::InvalidArgument.status(format!("at most {MAX_REPORT_BATCH} reports per batch")));
        }
        // Validate the whole batch before applying any of it.
        let parsed = reports.into_iter().map(AttemptReport::try_from).collect::<Result<Vec<_>, _>>()?;
        // A batch is one worker's: its id is looked up in the registry once, not per report.
        let mut checked = None;
        for r in &parsed {
            if checked != Some(r.worker) {
                self.owns(r.worker, &by, "ReportBatch")?;
                checked = Some(r.worker);
            }
        }
        let dispositions = parsed.into_iter().map(|r| disposition_to_pb(self.coordinator.report(r)) as i32).collect();
        Ok(Response::new(pb::ReportBatchResponse { dispositions }))
    }

    async fn deregister(
        &self,
        req: Request<pb::DeregisterRequest>,
    ) -> Result<Response<pb::DeregisterResponse>, Status> {
        let by = holder(&req)?;
        let worker = self.worker(req.into_inner().worker_id, &by, "Deregister")?;
        self.coordinator.deregister(worker);
        Ok(Response::new(pb::DeregisterResponse {}))
    }

    async fn submit(&self, req: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResponse>, Status> {
        let by = holder(&req)?;
        let r = req.into_inner();
        let file = if r.file_name.trim().is_empty() { "sweep.toml".to_string() } else { r.file_name };
        // Planning writes the store: keep it off the async threads.
        let rerun = r.rerun_on_new_version;
        let done = self.blocking("planning", move |c| c.submit(&by, &r.spec, &file, rerun)).await?;
        let warnings: Vec<String> =
            [self.coordinator.gpu_warning(&done.sweep), self.coordinator.version_warning(&done.sweep)]
                .into_iter()
                .flatten()
                .collect();
        Ok(Response::new(pb::SubmitResponse {
            warning: warnings.join("\n"),
            sweep: done.sweep,
            total: done.sync.total,
            new_trials: done.sync.new,
            reused: done.sync.reused,
        }))
    }

    async fn cancel(&self, req: Request<pb::CancelRequest>) -> Result<Response<pb::CancelResponse>, Status> {
        let by = holder(&req)?;
        let name = req.into_inner().sweep;
        let (sweep, unfinished) = self.blocking("cancel", move |c| c.cancel(&by, &name)).await?;
        Ok(Response::new(pb::CancelResponse { sweep, unfinished }))
    }

    async fn retry_failed(
        &self,
        req: Request<pb::RetryFailedRequest>,
    ) -> Result<Response<pb::RetryFailedResponse>, Status> {
        let by = holder(&req)?;
        let name = req.into_inner().sweep;
        let (sweep, requeued) = self.blocking("retry", move |c| c.retry_failed(&by, &name)).await?;
        Ok(Response::new(pb::RetryFailedResponse { sweep, requeued }))
    }

    async fn status(&self, req: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        let sweep = req.into_inner().sweep;
        let all = self.coordinator.progress();
        let progress = if all.is_empty() && sweep.is_empty() {
            None
        } else {
            Some((&self.coordinator.sweep(&sweep)?.progress()).into())
        };
        Ok(Response::new(pb::StatusResponse {
            progress,
            sweeps: all.iter().map(Into::into).collect(),
            workers: self.coordinator.workers().iter().map(worker_to_pb).collect(),
        }))
    }

    type ResultsStream = ResultsStream;

    async fn results(&self, req: Request<pb::ResultsRequest>) -> Result<Response<Self::ResultsStream>, Status> {
        let by = holder(&req)?;
        let sweep = req.into_inner().sweep;
        // Every result reported so far is read, not only those the writer got to.
        if let Ok(runner) = self.coordinator.sweep(&sweep) {
            runner.flushed().await;
        }
        let (info, trials) = self.blocking("reading results", move |c| c.results(&sweep)).await?;
        // Chunks of at most RESULTS_CHUNK trials keep every message well under the 4 MiB that
        // gRPC clients accept by default; the first carries the sweep file.
        let mut chunks: Vec<Result<pb::ResultsChunk, Status>> = trials
            .chunks(RESULTS_CHUNK)
            .map(|c| {
                Ok(pb::ResultsChunk {
                    sweep: info.name.clone(),
                    trials: c.iter().map(|t| (&t.result).into()).collect(),
                    ..Default::default()
                })
            })
            .collect();
        if chunks.is_empty() {
            chunks.push(Ok(pb::ResultsChunk { sweep: info.name.clone(), ..Default::default() }));
        }
        if let Some(Ok(first)) = chunks.first_mut() {
            (first.spec, first.spec_path) = (info.spec, info.spec_path);
            first.code_version = info.code_version.map(|v| v.to_string()).unwrap_or_default();
        }
        // A token revoked while the results stream ends the stream at its next message.
        let access = self.access.clone();
        let mut revoked = false;
        let chunks = tokio_stream::iter(chunks).map_while(move |c| {
            if revoked {
                return None;
            }
            Some(match access.still(&by, Action::Read) {
                Ok(_) => c,
                Err(r) => {
                    revoked = true;
                    access.refused(&r, "Results");
                    Err(r.into())
                }
            })
        });
        Ok(Response::new(Box::pin(chunks)))
    }

    type WatchStream = WatchStream;

    async fn watch(&self, req: Request<pb::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let by = holder(&req)?;
        let sweep = req.into_inner().sweep;
        let runner = self.coordinator.sweep(&sweep)?;
        let mut rx = runner.subscribe();
        let (tx, out) = tokio::sync::mpsc::channel(4);
        let access = self.access.clone();
        tokio::spawn(async move {
            loop {
                // A token revoked while the stream is open ends it at its next message.
                if let Err(r) = access.still(&by, Action::Read) {
                    access.refused(&r, "Watch");
                    let _ = tx.send(Err(r.into())).await;
                    break;
                }
                let p = rx.borrow_and_update().clone();
                let finished = p.finished || p.cancelled;
                if finished {
                    // A watcher told "finished" may read the store next: every result is in it.
                    runner.flushed().await;
                }
                if tx.send(Ok((&p).into())).await.is_err() || finished {
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

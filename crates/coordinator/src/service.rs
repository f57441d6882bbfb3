//! The `kappa.v1.Coordinator` gRPC service over a [`Coordinator`].

use crate::Coordinator;
use kappa_core::WorkerId;
use kappa_core::sched::Disposition;
use kappa_proto::pb::coordinator_server::{Coordinator as CoordinatorRpc, CoordinatorServer};
use kappa_proto::{PROTOCOL_VERSION, outcome_from_pb, parse_trial_id, pb};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_stream::Stream;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// Longest a lease call may wait for work.
const MAX_LEASE_WAIT: Duration = Duration::from_secs(30);
/// Largest number of trials one lease call may ask for.
const MAX_LEASE_BATCH: u32 = 1024;

/// Serves the coordinator on `listener` until `shutdown` resolves (mini-redis style). Also runs
/// the lease-expiry clock.
pub async fn serve(
    listener: TcpListener,
    coordinator: Coordinator,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let ticker = {
        let c = coordinator.clone();
        let period = (c.config().lease_timeout / 4).max(Duration::from_millis(50));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                c.expire();
            }
        })
    };
    let svc = CoordinatorServer::new(Service { c: coordinator })
        .max_decoding_message_size(16 << 20)
        .max_encoding_message_size(64 << 20);
    let result = tonic::transport::Server::builder()
        .add_service(svc)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await;
    ticker.abort();
    result
}

struct Service {
    c: Coordinator,
}

impl Service {
    fn worker(&self, id: u64) -> Result<WorkerId, Status> {
        let w = WorkerId(id);
        if self.c.knows(w) { Ok(w) } else { Err(Status::not_found(format!("unknown worker id {id}: register again"))) }
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

#[tonic::async_trait]
impl CoordinatorRpc for Service {
    async fn register(&self, req: Request<pb::RegisterRequest>) -> Result<Response<pb::RegisterResponse>, Status> {
        let r = req.into_inner();
        check_version(r.protocol_version)?;
        if r.slots == 0 {
            return Err(Status::invalid_argument("slots must be at least 1"));
        }
        let name = if r.name.trim().is_empty() { "worker".to_string() } else { r.name.chars().take(128).collect() };
        let id = self.c.register(&name);
        let cfg = self.c.config();
        Ok(Response::new(pb::RegisterResponse {
            worker_id: id.0,
            heartbeat_interval_ms: cfg.heartbeat_interval.as_millis() as u32,
            lease_timeout_ms: cfg.lease_timeout.as_millis() as u32,
        }))
    }

    async fn lease(&self, req: Request<pb::LeaseRequest>) -> Result<Response<pb::LeaseResponse>, Status> {
        let r = req.into_inner();
        let worker = self.worker(r.worker_id)?;
        if r.max_trials == 0 || r.max_trials > MAX_LEASE_BATCH {
            return Err(Status::invalid_argument(format!("max_trials must be in 1..={MAX_LEASE_BATCH}")));
        }
        let wait = Duration::from_millis(u64::from(r.wait_ms)).min(MAX_LEASE_WAIT);
        let (grants, finished) = self.c.lease(worker, r.max_trials as usize, wait).await;
        let task_json = self.c.task_json();
        let timeout_ms = self.c.config().attempt_timeout.map_or(0, |t| t.as_millis() as u64);
        let leases = grants
            .iter()
            .map(|g| pb::TrialLease {
                trial_id: g.id.to_string(),
                attempt: g.attempt,
                task_json: task_json.to_string(),
                params: Some((&g.params).into()),
                timeout_ms,
            })
            .collect();
        Ok(Response::new(pb::LeaseResponse { leases, sweep_finished: finished }))
    }

    async fn heartbeat(&self, req: Request<pb::HeartbeatRequest>) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let r = req.into_inner();
        check_version(r.protocol_version)?;
        let worker = self.worker(r.worker_id)?;
        let held = r
            .held
            .iter()
            .map(|l| Ok((parse_trial_id(&l.trial_id)?, l.attempt)))
            .collect::<Result<Vec<_>, kappa_proto::ConvertError>>()?;
        let revoked = self
            .c
            .heartbeat(worker, &held)
            .into_iter()
            .map(|(id, attempt)| pb::LeaseRef { trial_id: id.to_string(), attempt })
            .collect();
        Ok(Response::new(pb::HeartbeatResponse { revoked }))
    }

    async fn report(&self, req: Request<pb::ReportRequest>) -> Result<Response<pb::ReportResponse>, Status> {
        let r = req.into_inner();
        let id = parse_trial_id(&r.trial_id)?;
        let outcome = outcome_from_pb(r.outcome)?;
        let duration = if r.duration_s.is_finite() && r.duration_s >= 0.0 { r.duration_s } else { 0.0 };
        // A report from a worker this coordinator does not know (it restarted) is still recorded:
        // the scheduler fences it as late unless it matches a current lease.
        let disposition = self.c.report(WorkerId(r.worker_id), id, r.attempt, outcome, duration);
        let d = match disposition {
            Disposition::Accepted { .. } => pb::Disposition::Accepted,
            Disposition::Late => pb::Disposition::Late,
            Disposition::Unknown => pb::Disposition::Unknown,
        };
        Ok(Response::new(pb::ReportResponse { disposition: d as i32 }))
    }

    async fn deregister(
        &self,
        req: Request<pb::DeregisterRequest>,
    ) -> Result<Response<pb::DeregisterResponse>, Status> {
        let worker = self.worker(req.into_inner().worker_id)?;
        self.c.deregister(worker);
        Ok(Response::new(pb::DeregisterResponse {}))
    }

    async fn status(&self, _req: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(pb::StatusResponse { progress: Some(self.c.progress()) }))
    }

    type WatchStream = WatchStream;

    async fn watch(&self, _req: Request<pb::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let mut rx = self.c.subscribe();
        let (tx, out) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let p = rx.borrow_and_update().clone();
                let finished = p.finished;
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

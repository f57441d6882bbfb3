//! The calls a session makes besides leasing: reports, sent in batches, and the heartbeat that
//! renews the leases held.

use crate::trial::Held;
use kappa_core::{AttemptReport, WorkerId};
use kappa_proto::{CallFailure, heartbeat_request, lease_refs_from_pb, report_batch_request};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Reports not yet delivered: queued ones, and a batch whose delivery was cut off. It outlives
/// sessions: the next session delivers what the last one could not.
pub(crate) struct Outbox {
    pub(crate) rx: mpsc::UnboundedReceiver<AttemptReport>,
    pub(crate) unsent: Vec<AttemptReport>,
}

/// Largest batch of reports in one call.
const MAX_BATCH: usize = 1024;

/// Sends reports in batches, as session `worker`: whatever accumulated while the previous call
/// was in flight goes in the next one. A batch that cannot be delivered stays in the outbox for
/// the next session (the reporter is aborted when the coordinator is lost); one the coordinator
/// refuses is dropped (its leases expire and the trials run again, never counted twice). After
/// `finish`, it delivers what is queued and returns.
pub(crate) async fn reporter(
    mut client: kappa_proto::Client,
    worker: WorkerId,
    outbox: Arc<tokio::sync::Mutex<Outbox>>,
    mut finish: watch::Receiver<bool>,
) {
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
        while ob.unsent.len() < MAX_BATCH {
            match ob.rx.try_recv() {
                Ok(r) => ob.unsent.push(r),
                Err(_) => break,
            }
        }
        let req = report_batch_request(worker, &ob.unsent);
        let mut delay = Duration::from_millis(50);
        let mut delivered = false;
        for _ in 0..6 {
            match client.report_batch(req.clone()).await {
                Ok(_) => {
                    delivered = true;
                    break;
                }
                Err(s) => match CallFailure::of(&s) {
                    CallFailure::Retry => {
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                    // The coordinator forgot this session: the next one delivers the batch.
                    CallFailure::Reregister => return,
                    CallFailure::Fatal => {
                        tracing::error!(reports = ob.unsent.len(), status = %s.message(), "the coordinator refused reports; dropped");
                        delivered = true; // refused: dropping it is all that can be done
                        break;
                    }
                },
            }
        }
        if !delivered {
            // The coordinator is unreachable: keep the batch for the next session.
            return;
        }
        ob.unsent.clear();
    }
}

/// Renews the leases in `held` every `every`; cancels the ones the coordinator revokes.
pub(crate) async fn heartbeat(mut client: kappa_proto::Client, worker: WorkerId, every: Duration, held: Held) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let leases: Vec<_> = match held.lock() {
            Ok(h) => h.keys().copied().collect(),
            Err(_) => continue,
        };
        let Ok(resp) = client.heartbeat(heartbeat_request(worker, &leases)).await else { continue };
        let Ok(revoked) = lease_refs_from_pb(&resp.into_inner().revoked) else { continue };
        if let Ok(mut h) = held.lock() {
            for key in revoked {
                if let Some(c) = h.remove(&key) {
                    tracing::info!(trial = %key.0, attempt = key.1, "lease revoked by the coordinator; trial stopped");
                    c.cancel();
                }
            }
        }
    }
}

//! The calls a session makes besides leasing: reports, sent in batches, and the heartbeat that
//! renews the leases held.

use crate::held::Held;
use kappa_core::{AttemptReport, WorkerId};
use kappa_proto::{CallFailure, heartbeat_request, lease_refs_from_pb, report_batch_request};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Where finished trials queue their reports, numbered in the order they are queued, so a lease
/// call can wait until every report queued before it has been delivered.
#[derive(Clone)]
pub(crate) struct ReportQueue(Arc<Mutex<Numbering>>);

/// The count of reports queued so far, and the channel they go down, numbered.
struct Numbering {
    queued: u64,
    tx: mpsc::UnboundedSender<Numbered>,
}

/// A report and its number in the order reports were queued (from 1).
struct Numbered {
    seq: u64,
    report: AttemptReport,
}

impl ReportQueue {
    /// A queue and the outbox it feeds.
    pub(crate) fn new() -> (ReportQueue, Outbox) {
        let (tx, rx) = mpsc::unbounded_channel();
        let outbox = Outbox { rx, unsent: Vec::new(), unsent_last: 0, delivered: 0 };
        (ReportQueue(Arc::new(Mutex::new(Numbering { queued: 0, tx }))), outbox)
    }

    /// Queues a report (numbering and sending under one lock keeps the channel in number order).
    pub(crate) fn push(&self, report: AttemptReport) {
        if let Ok(mut q) = self.0.lock() {
            q.queued += 1;
            let seq = q.queued;
            let _ = q.tx.send(Numbered { seq, report });
        }
    }

    /// How many reports were ever queued.
    pub(crate) fn queued(&self) -> u64 {
        self.0.lock().map(|q| q.queued).unwrap_or(0)
    }
}

/// Reports not yet delivered: queued ones, and a batch whose delivery was cut off. It outlives
/// sessions: the next session delivers what the last one could not.
pub(crate) struct Outbox {
    rx: mpsc::UnboundedReceiver<Numbered>,
    unsent: Vec<AttemptReport>,
    /// The number of the last report in `unsent`.
    unsent_last: u64,
    /// Every report numbered up to this one has been delivered (or refused and dropped).
    delivered: u64,
}

impl Outbox {
    fn take(&mut self, r: Numbered) {
        self.unsent.push(r.report);
        self.unsent_last = r.seq;
    }
}

/// Largest batch of reports in one call.
const MAX_BATCH: usize = 1024;

/// Sends reports in batches, as session `worker`: whatever accumulated while the previous call
/// was in flight goes in the next one. A batch that cannot be delivered stays in the outbox for
/// the next session (the reporter is aborted when the coordinator is lost); one the coordinator
/// refuses is dropped (its leases expire and the trials run again, never counted twice). After
/// `finish`, it delivers what is queued and returns. `delivered` follows the outbox's count of
/// delivered reports; it closes when the reporter returns.
pub(crate) async fn reporter(
    mut client: kappa_proto::Client,
    worker: WorkerId,
    outbox: Arc<tokio::sync::Mutex<Outbox>>,
    mut finish: watch::Receiver<bool>,
    delivered: watch::Sender<u64>,
) {
    let mut guard = outbox.lock().await;
    let ob = &mut *guard;
    delivered.send_replace(ob.delivered);
    loop {
        if ob.unsent.is_empty() {
            if *finish.borrow() {
                match ob.rx.try_recv() {
                    Ok(r) => ob.take(r),
                    Err(_) => return,
                }
            } else {
                tokio::select! {
                    r = ob.rx.recv() => match r {
                        Some(r) => ob.take(r),
                        None => return,
                    },
                    _ = finish.changed() => continue,
                }
            }
        }
        while ob.unsent.len() < MAX_BATCH {
            match ob.rx.try_recv() {
                Ok(r) => ob.take(r),
                Err(_) => break,
            }
        }
        let req = report_batch_request(worker, &ob.unsent);
        let mut delay = Duration::from_millis(50);
        let mut sent = false;
        for _ in 0..6 {
            match client.report_batch(req.clone()).await {
                Ok(_) => {
                    sent = true;
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
                        sent = true; // refused: dropping it is all that can be done
                        break;
                    }
                },
            }
        }
        if !sent {
            // The coordinator is unreachable: keep the batch for the next session.
            return;
        }
        ob.unsent.clear();
        ob.delivered = ob.unsent_last;
        delivered.send_replace(ob.delivered);
    }
}

/// Renews the leases in `held` every `every`; cancels the ones the coordinator revokes.
pub(crate) async fn heartbeat(mut client: kappa_proto::Client, worker: WorkerId, every: Duration, held: Held) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Ok(resp) = client.heartbeat(heartbeat_request(worker, &held.attempts())).await else { continue };
        let Ok(revoked) = lease_refs_from_pb(&resp.into_inner().revoked) else { continue };
        for a in revoked {
            if held.revoke(a) {
                tracing::info!(trial = %a.trial, attempt = a.attempt, "lease revoked by the coordinator; trial stopped");
            }
        }
    }
}

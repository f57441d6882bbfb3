//! Every conversion between wire messages and kappa-core types.

use crate::{ConvertError, PROTOCOL_VERSION, pb};
use kappa_core::sched::Disposition;
use kappa_core::{
    AttemptOutcome, AttemptRef, AttemptReport, Builtins, Counts, CurvePoint, Estimate, FailureClass, Hyperparams,
    Lease, Params, Progress, Theory, TheoryPoint, TrialId, TrialMetrics, TrialResult, WorkerId,
};
use std::time::Duration;

/// Parses a trial id field.
pub fn parse_trial_id(s: &str) -> Result<TrialId, ConvertError> {
    s.parse()
        .map_err(|e: kappa_core::id::InvalidTrialId| ConvertError::Invalid { field: "trial_id", reason: e.to_string() })
}

impl From<&Params> for pb::Hyperparams {
    fn from(p: &Params) -> Self {
        let h = &p.hyper;
        pb::Hyperparams {
            optimizer: h.optimizer.as_str().to_string(),
            batch_size: h.batch_size,
            lr: h.lr,
            beta1: h.beta1,
            beta2: h.beta2,
            eps: h.eps,
            weight_decay: h.weight_decay,
            seed: h.seed,
            builtins: if p.builtins.is_all() { 0 } else { p.builtins.bits() },
            named_json: if p.named.is_empty() {
                String::new()
            } else {
                serde_json::to_string(&p.named).unwrap_or_default()
            },
        }
    }
}

impl TryFrom<pb::Hyperparams> for Params {
    type Error = ConvertError;
    fn try_from(p: pb::Hyperparams) -> Result<Self, ConvertError> {
        let builtins = Builtins::from_bits(p.builtins);
        let named = if p.named_json.is_empty() {
            Default::default()
        } else {
            serde_json::from_str(&p.named_json)
                .map_err(|e| ConvertError::Invalid { field: "named_json", reason: e.to_string() })?
        };
        Ok(Params { hyper: Hyperparams::try_from(p)?, builtins, named })
    }
}

impl TryFrom<pb::Hyperparams> for Hyperparams {
    type Error = ConvertError;
    fn try_from(p: pb::Hyperparams) -> Result<Self, ConvertError> {
        let optimizer = p.optimizer.parse().map_err(|e: kappa_core::params::UnknownOptimizer| {
            ConvertError::Invalid { field: "optimizer", reason: e.to_string() }
        })?;
        if p.batch_size == 0 {
            return Err(ConvertError::Invalid { field: "batch_size", reason: "must be at least 1".into() });
        }
        Ok(Hyperparams {
            optimizer,
            batch_size: p.batch_size,
            lr: p.lr,
            beta1: p.beta1,
            beta2: p.beta2,
            eps: p.eps,
            weight_decay: p.weight_decay,
            seed: p.seed,
        })
    }
}

fn params_from_pb(p: Option<pb::Hyperparams>) -> Result<Params, ConvertError> {
    p.ok_or(ConvertError::Missing("params"))?.try_into()
}

impl From<&TrialMetrics> for pb::TrialMetrics {
    fn from(m: &TrialMetrics) -> Self {
        pb::TrialMetrics {
            curve: m
                .curve
                .iter()
                .map(|c| pb::CurvePoint {
                    samples: c.samples,
                    step: c.step,
                    loss_mean: c.loss_mean,
                    loss_se: c.loss_se,
                    loss_q10: c.loss_q10,
                    loss_q50: c.loss_q50,
                    loss_q90: c.loss_q90,
                    phases: c.phases.map(|p| p.to_vec()).unwrap_or_default(),
                    extra: c.extra.clone(),
                })
                .collect(),
            stationary_loss: m.stationary_loss.map(|e| pb::Estimate { mean: e.mean, se: e.se }),
            stationary_drift: m.stationary_drift.map(|e| pb::Estimate { mean: e.mean, se: e.se }),
            theory: m.theory.as_ref().map(|t| pb::Theory {
                stationary_loss: t.stationary_loss,
                curve: t
                    .curve
                    .iter()
                    .map(|p| pb::TheoryPoint { samples: p.samples, step: p.step, loss: p.loss })
                    .collect(),
            }),
            notes: m.notes.clone(),
            resumed_from: m.resumed_from,
        }
    }
}

impl From<pb::TrialMetrics> for TrialMetrics {
    fn from(m: pb::TrialMetrics) -> Self {
        TrialMetrics {
            curve: m
                .curve
                .into_iter()
                .map(|c| CurvePoint {
                    samples: c.samples,
                    step: c.step,
                    loss_mean: c.loss_mean,
                    loss_se: c.loss_se,
                    loss_q10: c.loss_q10,
                    loss_q50: c.loss_q50,
                    loss_q90: c.loss_q90,
                    phases: <[f64; 3]>::try_from(c.phases.as_slice()).ok(),
                    extra: c.extra,
                })
                .collect(),
            stationary_loss: m.stationary_loss.map(|e| Estimate { mean: e.mean, se: e.se }),
            stationary_drift: m.stationary_drift.map(|e| Estimate { mean: e.mean, se: e.se }),
            theory: m.theory.map(|t| Theory {
                stationary_loss: t.stationary_loss,
                curve: t
                    .curve
                    .into_iter()
                    .map(|p| TheoryPoint { samples: p.samples, step: p.step, loss: p.loss })
                    .collect(),
            }),
            notes: m.notes,
            resumed_from: m.resumed_from,
        }
    }
}

impl From<&AttemptOutcome> for pb::report_request::Outcome {
    fn from(o: &AttemptOutcome) -> Self {
        use pb::report_request::Outcome;
        match o {
            AttemptOutcome::Succeeded(m) => Outcome::Succeeded(m.into()),
            AttemptOutcome::Diverged { step, metrics } => {
                Outcome::Diverged(pb::Diverged { step: *step, metrics: Some(metrics.into()) })
            }
            AttemptOutcome::Failed { error, class } => {
                Outcome::Failed(pb::Failed { error: error.clone(), class: class.as_str().to_string() })
            }
            AttemptOutcome::Preempted { reason } => Outcome::Preempted(pb::Preempted { reason: reason.clone() }),
        }
    }
}

fn outcome_from_pb(o: Option<pb::report_request::Outcome>) -> Result<AttemptOutcome, ConvertError> {
    use pb::report_request::Outcome;
    Ok(match o.ok_or(ConvertError::Missing("outcome"))? {
        Outcome::Succeeded(m) => AttemptOutcome::Succeeded(m.into()),
        Outcome::Diverged(d) => {
            AttemptOutcome::Diverged { step: d.step, metrics: d.metrics.map(Into::into).unwrap_or_default() }
        }
        Outcome::Failed(f) => AttemptOutcome::Failed {
            error: f.error,
            class: if f.class.is_empty() {
                FailureClass::Error
            } else {
                f.class.parse().map_err(|reason| ConvertError::Invalid { field: "failed.class", reason })?
            },
        },
        Outcome::Preempted(p) => AttemptOutcome::Preempted { reason: p.reason },
    })
}

/// A run time as a report may give it: a negative or non-finite one reads as zero.
pub fn sanitize_duration(seconds: f64) -> f64 {
    if seconds.is_finite() && seconds >= 0.0 { seconds } else { 0.0 }
}

impl From<&AttemptReport> for pb::ReportRequest {
    fn from(r: &AttemptReport) -> Self {
        pb::ReportRequest {
            worker_id: r.worker.0,
            trial_id: r.id.to_string(),
            attempt: r.attempt,
            outcome: Some((&r.outcome).into()),
            duration_s: r.duration_s,
        }
    }
}

impl TryFrom<pb::ReportRequest> for AttemptReport {
    type Error = ConvertError;
    fn try_from(r: pb::ReportRequest) -> Result<Self, ConvertError> {
        Ok(AttemptReport {
            worker: WorkerId(r.worker_id),
            id: parse_trial_id(&r.trial_id)?,
            attempt: r.attempt,
            outcome: outcome_from_pb(r.outcome)?,
            duration_s: sanitize_duration(r.duration_s),
        })
    }
}

/// Several reports in one request, sent as session `worker` (a report queued in an earlier
/// session goes out under the current one's worker id).
pub fn report_batch_request(worker: WorkerId, reports: &[AttemptReport]) -> pb::ReportBatchRequest {
    pb::ReportBatchRequest {
        reports: reports.iter().map(|r| pb::ReportRequest { worker_id: worker.0, ..r.into() }).collect(),
    }
}

/// What the scheduler made of a report, on the wire.
pub fn disposition_to_pb(d: Disposition) -> pb::Disposition {
    match d {
        Disposition::Accepted { .. } => pb::Disposition::Accepted,
        Disposition::Late => pb::Disposition::Late,
        Disposition::Unknown => pb::Disposition::Unknown,
    }
}

impl From<&Lease> for pb::TrialLease {
    fn from(l: &Lease) -> Self {
        pb::TrialLease {
            trial_id: l.id.to_string(),
            attempt: l.attempt,
            task_json: l.task.to_string(),
            params: Some((&l.params).into()),
            timeout_ms: l.timeout.map_or(0, |t| t.as_millis() as u64),
            gpus: l.gpus,
            sweep: l.sweep.to_string(),
            rung: l.stop.map_or(0, |s| s.rung),
            stop_samples: l.stop.map_or(0, |s| s.samples),
            last_rung: l.stop.is_some_and(|s| s.last),
        }
    }
}

/// A lease a worker cannot read: `trial` names the attempt when its id at least was readable
/// (the worker then fails that attempt with the reason rather than letting its lease expire).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{error}")]
pub struct InvalidLease {
    /// The attempt, if its trial id parsed.
    pub trial: Option<AttemptRef>,
    /// What is wrong.
    pub error: ConvertError,
}

/// A lease from the wire.
pub fn lease_from_pb(l: pb::TrialLease) -> Result<Lease, InvalidLease> {
    let id = parse_trial_id(&l.trial_id).map_err(|error| InvalidLease { trial: None, error })?;
    let bad = |error| InvalidLease { trial: Some(AttemptRef::new(id, l.attempt)), error };
    let params = params_from_pb(l.params).map_err(bad)?;
    if l.task_json.is_empty() {
        return Err(bad(ConvertError::Missing("task_json")));
    }
    Ok(Lease {
        id,
        sweep: l.sweep.into(),
        attempt: l.attempt,
        params,
        task: l.task_json.into(),
        timeout: (l.timeout_ms > 0).then(|| Duration::from_millis(l.timeout_ms)),
        gpus: l.gpus,
        stop: (l.stop_samples > 0).then_some(kappa_core::Stop {
            rung: l.rung,
            samples: l.stop_samples,
            last: l.last_rung,
        }),
    })
}

/// References to leases (held or revoked), on the wire.
pub fn lease_refs_to_pb(refs: &[AttemptRef]) -> Vec<pb::LeaseRef> {
    refs.iter().map(|r| pb::LeaseRef { trial_id: r.trial.to_string(), attempt: r.attempt }).collect()
}

/// References to leases from the wire.
pub fn lease_refs_from_pb(refs: &[pb::LeaseRef]) -> Result<Vec<AttemptRef>, ConvertError> {
    refs.iter().map(|l| Ok(AttemptRef::new(parse_trial_id(&l.trial_id)?, l.attempt))).collect()
}

/// A worker's registration: it computes with the code `versions`.
pub fn register_request(name: &str, slots: usize, gpus: usize, versions: &[String]) -> pb::RegisterRequest {
    pb::RegisterRequest {
        protocol_version: PROTOCOL_VERSION,
        name: name.to_string(),
        slots: slots.min(u32::MAX as usize) as u32,
        gpus: gpus.min(u32::MAX as usize) as u32,
        code_versions: versions.to_vec(),
    }
}

/// A worker's request for up to `max` trials, waiting up to `wait` for work.
pub fn lease_request(worker: WorkerId, max: usize, wait: Duration, free_gpus: u32) -> pb::LeaseRequest {
    pb::LeaseRequest {
        worker_id: worker.0,
        max_trials: max.min(u32::MAX as usize) as u32,
        wait_ms: wait.as_millis().min(u128::from(u32::MAX)) as u32,
        free_gpus,
    }
}

/// A worker renewing the leases it holds.
pub fn heartbeat_request(worker: WorkerId, held: &[AttemptRef]) -> pb::HeartbeatRequest {
    pb::HeartbeatRequest { protocol_version: PROTOCOL_VERSION, worker_id: worker.0, held: lease_refs_to_pb(held) }
}

/// A worker leaving.
pub fn deregister_request(worker: WorkerId) -> pb::DeregisterRequest {
    pb::DeregisterRequest { worker_id: worker.0 }
}

impl From<&TrialResult> for pb::TrialResult {
    fn from(r: &TrialResult) -> Self {
        pb::TrialResult {
            trial_id: r.id.to_string(),
            params: Some((&r.params).into()),
            status: r.status.as_str().to_string(),
            metrics: r.metrics.as_ref().map(Into::into),
            error: r.error.clone().unwrap_or_default(),
            origin: r.origin.as_ref().map(kappa_core::Origin::to_json).unwrap_or_default(),
        }
    }
}

impl TryFrom<pb::TrialResult> for TrialResult {
    type Error = ConvertError;
    fn try_from(r: pb::TrialResult) -> Result<Self, ConvertError> {
        Ok(TrialResult {
            id: parse_trial_id(&r.trial_id)?,
            params: params_from_pb(r.params)?,
            status: r.status.parse().map_err(|e: kappa_core::trial::UnknownStatus| ConvertError::Invalid {
                field: "status",
                reason: e.to_string(),
            })?,
            metrics: r.metrics.map(Into::into),
            error: Some(r.error).filter(|e| !e.is_empty()),
            origin: match r.origin.as_str() {
                "" => None,
                o => Some(kappa_core::Origin::from_json(o).ok_or_else(|| ConvertError::Invalid {
                    field: "origin",
                    reason: format!("not a trial origin: {o}"),
                })?),
            },
        })
    }
}

impl From<&Progress> for pb::Progress {
    fn from(p: &Progress) -> Self {
        let c = &p.counts;
        pb::Progress {
            sweep: p.sweep.clone(),
            total: c.total,
            pending: c.pending,
            running: c.running,
            succeeded: c.succeeded,
            failed: c.failed,
            diverged: c.diverged,
            did_not_train: c.did_not_train,
            unstable: c.unstable,
            reused: p.reused,
            workers: p.workers,
            finished: p.finished,
            cancelled: p.cancelled,
            at_most: p.at_most.unwrap_or(0),
            stopped: c.stopped,
            rungs: p.rungs.iter().map(|r| pb::RungCount { samples: r.samples, reached: r.reached }).collect(),
            owner: p.owner.clone().unwrap_or_default(),
        }
    }
}

impl From<pb::Progress> for Progress {
    fn from(p: pb::Progress) -> Self {
        Progress {
            sweep: p.sweep,
            counts: Counts {
                total: p.total,
                pending: p.pending,
                running: p.running,
                succeeded: p.succeeded,
                failed: p.failed,
                diverged: p.diverged,
                did_not_train: p.did_not_train,
                unstable: p.unstable,
                stopped: p.stopped,
            },
            reused: p.reused,
            workers: p.workers,
            finished: p.finished,
            cancelled: p.cancelled,
            at_most: (p.at_most > 0).then_some(p.at_most),
            rungs: p.rungs.iter().map(|r| kappa_core::RungCount { samples: r.samples, reached: r.reached }).collect(),
            owner: Some(p.owner).filter(|o| !o.is_empty()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kappa_core::OptimizerKind;

    fn params() -> Params {
        Params::from(Hyperparams {
            optimizer: OptimizerKind::AdamW,
            batch_size: 64,
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1.0,
            seed: 3,
        })
    }

    #[test]
    fn hyperparams_round_trip_and_reject_bad_values() {
        let mut p = params();
        let wire = pb::Hyperparams::from(&p);
        assert_eq!(Params::try_from(wire.clone()).unwrap(), p);
        // Named axes and a partial set of built-ins travel too.
        p.named.insert("params.width".into(), 512.into());
        p.named.insert("task.noise.sigma".into(), 2.5.into());
        p.builtins = Builtins::SEED.with(kappa_core::AxisName::Lr);
        assert_eq!(Params::try_from(pb::Hyperparams::from(&p)).unwrap(), p);
        let bad = pb::Hyperparams { named_json: "[1]".into(), ..wire.clone() };
        assert!(matches!(Params::try_from(bad), Err(ConvertError::Invalid { field: "named_json", .. })));
        let bad = pb::Hyperparams { optimizer: "lamb".into(), ..wire.clone() };
        assert!(matches!(Hyperparams::try_from(bad), Err(ConvertError::Invalid { field: "optimizer", .. })));
        let bad = pb::Hyperparams { batch_size: 0, ..wire };
        assert!(Hyperparams::try_from(bad).is_err());
    }

    #[test]
    fn outcomes_round_trip() {
        let m = TrialMetrics {
            resumed_from: None,
            curve: vec![CurvePoint {
                samples: 4,
                step: 1,
                loss_mean: 0.5,
                loss_se: 0.1,
                loss_q10: 0.1,
                loss_q50: 0.4,
                loss_q90: 0.9,
                phases: Some([0.2, 0.3, 0.5]),
                extra: [("test_accuracy".to_string(), 0.75)].into(),
            }],
            stationary_loss: Some(Estimate { mean: 0.2, se: 0.01 }),
            stationary_drift: Some(Estimate { mean: -0.001, se: 0.002 }),
            theory: Some(Theory {
                stationary_loss: Some(0.19),
                curve: vec![TheoryPoint { samples: 4, step: 1, loss: 0.45 }],
            }),
            notes: vec!["a note".into()],
        };
        for o in [
            AttemptOutcome::Succeeded(m.clone()),
            AttemptOutcome::Diverged { step: 9, metrics: m },
            AttemptOutcome::Failed { error: "boom".into(), class: FailureClass::Timeout },
        ] {
            assert_eq!(outcome_from_pb(Some((&o).into())).unwrap(), o);
        }
        assert_eq!(outcome_from_pb(None), Err(ConvertError::Missing("outcome")));
    }

    #[test]
    fn leases_reports_results_and_progress_round_trip() {
        let lease = Lease {
            id: TrialId(0xabc),
            sweep: "s".into(),
            attempt: 3,
            params: params(),
            task: "{\"kind\":\"noop\"}".into(),
            timeout: Some(Duration::from_millis(1500)),
            gpus: 2,
            stop: Some(kappa_core::Stop { rung: 1, samples: 60_000, last: false }),
        };
        assert_eq!(lease_from_pb((&lease).into()).unwrap(), lease);
        let no_limit = Lease { timeout: None, stop: None, ..lease.clone() };
        assert_eq!(lease_from_pb((&no_limit).into()).unwrap(), no_limit);
        let bad = pb::TrialLease { params: None, ..(&lease).into() };
        assert_eq!(
            lease_from_pb(bad).unwrap_err().trial,
            Some(AttemptRef::new(TrialId(0xabc), 3)),
            "the attempt is still named"
        );
        let bad = pb::TrialLease { trial_id: "zz".into(), ..(&lease).into() };
        assert_eq!(lease_from_pb(bad).unwrap_err().trial, None);

        let report = AttemptReport {
            worker: WorkerId(7),
            id: TrialId(9),
            attempt: 2,
            outcome: AttemptOutcome::Failed { error: "x".into(), class: FailureClass::Crash },
            duration_s: 1.5,
        };
        assert_eq!(AttemptReport::try_from(pb::ReportRequest::from(&report)).unwrap(), report);
        let batch = report_batch_request(WorkerId(8), std::slice::from_ref(&report));
        assert_eq!(batch.reports[0].worker_id, 8, "sent as the current session");
        let odd = pb::ReportRequest { duration_s: f64::NAN, ..(&report).into() };
        assert_eq!(AttemptReport::try_from(odd).unwrap().duration_s, 0.0);

        let result = TrialResult {
            id: TrialId(5),
            params: params(),
            status: kappa_core::TrialStatus::Failed,
            metrics: None,
            error: Some("boom".into()),
            origin: Some(kappa_core::Origin::Probe {
                group: 2,
                round: 1,
                reason: kappa_core::Reason::Refine,
                start: None,
            }),
        };
        assert_eq!(TrialResult::try_from(pb::TrialResult::from(&result)).unwrap(), result);
        let ok = TrialResult { status: kappa_core::TrialStatus::Succeeded, error: None, origin: None, ..result };
        assert_eq!(TrialResult::try_from(pb::TrialResult::from(&ok)).unwrap(), ok);

        let progress = Progress {
            owner: Some("alice".into()),
            rungs: Vec::new(),
            sweep: "s".into(),
            counts: Counts {
                stopped: 0,
                total: 6,
                pending: 1,
                running: 1,
                succeeded: 2,
                failed: 1,
                diverged: 1,
                did_not_train: 1,
                unstable: 1,
            },
            reused: 2,
            workers: 3,
            finished: false,
            cancelled: true,
            at_most: Some(40),
        };
        assert_eq!(Progress::from(pb::Progress::from(&progress)), progress);
        let refs = vec![AttemptRef::new(TrialId(1), 1), AttemptRef::new(TrialId(2), 4)];
        assert_eq!(lease_refs_from_pb(&lease_refs_to_pb(&refs)).unwrap(), refs);
    }
}

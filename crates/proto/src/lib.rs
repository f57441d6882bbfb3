//! kappa-proto: the generated `kappa.v1` gRPC code and the one place that converts between wire
//! messages and kappa-core types. Nothing else in kappa builds or reads a wire message field by
//! field.

#![warn(missing_docs)]

pub mod codec;

/// Code generated from `proto/kappa/v1/kappa.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("kappa.v1");
}

use kappa_core::{
    AttemptOutcome, Counts, CurvePoint, Estimate, FailureClass, Hyperparams, Theory, TheoryPoint, TrialId,
    TrialMetrics, TrialStatus,
};

/// The encoded `FileDescriptorSet` of `kappa.v1`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kappa_descriptor.bin"));

/// The protocol version peers exchange on register and heartbeat; a mismatch is refused with
/// FAILED_PRECONDITION.
pub const PROTOCOL_VERSION: u32 = 1;

/// A message that does not convert to a valid core value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConvertError {
    /// A required field is absent.
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// A field holds an invalid value.
    #[error("invalid `{field}`: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl From<ConvertError> for tonic::Status {
    fn from(e: ConvertError) -> tonic::Status {
        tonic::Status::invalid_argument(e.to_string())
    }
}

/// Bearer-token authentication, the same on both ends: clients attach `authorization: Bearer
/// <token>` to every call; the server's [`Auth::check`] refuses a missing or wrong one with
/// UNAUTHENTICATED.
#[derive(Clone, Debug, Default)]
pub struct Auth {
    header: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl Auth {
    /// Authentication with `token`, or none.
    pub fn new(token: Option<&str>) -> Result<Auth, ConvertError> {
        let header = match token {
            Some(t) => Some(format!("Bearer {}", t.trim()).parse().map_err(|_| ConvertError::Invalid {
                field: "token",
                reason: "a token must be printable ASCII".into(),
            })?),
            None => None,
        };
        Ok(Auth { header })
    }

    /// Server side: whether `req` carries the token (always true without one).
    pub fn check<T>(&self, req: &tonic::Request<T>) -> Result<(), tonic::Status> {
        let Some(expected) = &self.header else { return Ok(()) };
        match req.metadata().get("authorization") {
            Some(v) if v.as_bytes() == expected.as_bytes() => Ok(()),
            Some(_) => Err(tonic::Status::unauthenticated("wrong token")),
            None => Err(tonic::Status::unauthenticated("missing token: pass --token-file or set KAPPA_TOKEN")),
        }
    }
}

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(h) = &self.header {
            req.metadata_mut().insert("authorization", h.clone());
        }
        Ok(req)
    }
}

/// A coordinator client that authenticates every call.
pub type Client = pb::coordinator_client::CoordinatorClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Auth>,
>;

/// Connects to a coordinator at `url` (e.g. `http://10.0.0.1:7070`, or `https://…` with TLS).
pub async fn connect(url: &str, token: Option<&str>) -> Result<Client, ConnectError> {
    connect_with(url, token, None).await
}

/// Connects to a coordinator, trusting the PEM certificate authority `ca` for `https://` URLs.
pub async fn connect_with(url: &str, token: Option<&str>, ca: Option<&[u8]>) -> Result<Client, ConnectError> {
    let mut endpoint = tonic::transport::Channel::from_shared(url.to_string())
        .map_err(|e| ConnectError::Address(url.to_string(), e.to_string()))?
        .connect_timeout(std::time::Duration::from_secs(10))
        // A coordinator that vanishes without closing the connection (a cut link, a dead node)
        // is noticed within ~30 s instead of the kernel's TCP retransmission timeout.
        .http2_keep_alive_interval(std::time::Duration::from_secs(10))
        .keep_alive_timeout(std::time::Duration::from_secs(20))
        .keep_alive_while_idle(true);
    if url.starts_with("https://") {
        let ca = ca.ok_or_else(|| {
            ConnectError::Address(
                url.to_string(),
                "an https:// coordinator needs --tls-ca (its certificate authority)".into(),
            )
        })?;
        let tls = tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(ca));
        endpoint = endpoint.tls_config(tls).map_err(|e| ConnectError::Address(url.to_string(), e.to_string()))?;
    }
    let channel = endpoint.connect().await.map_err(|e| ConnectError::Connect(url.to_string(), format!("{e:?}")))?;
    let auth = Auth::new(token).map_err(|e| ConnectError::Address(url.to_string(), e.to_string()))?;
    Ok(pb::coordinator_client::CoordinatorClient::with_interceptor(channel, auth)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(16 << 20))
}

/// Why a connection could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConnectError {
    /// The address is malformed.
    #[error("invalid coordinator address {0}: {1}")]
    Address(String, String),
    /// Nothing answered.
    #[error("cannot connect to coordinator {0}: {1}")]
    Connect(String, String),
}

/// Parses a trial id field.
pub fn parse_trial_id(s: &str) -> Result<TrialId, ConvertError> {
    s.parse()
        .map_err(|e: kappa_core::id::InvalidTrialId| ConvertError::Invalid { field: "trial_id", reason: e.to_string() })
}

impl From<&Hyperparams> for pb::Hyperparams {
    fn from(p: &Hyperparams) -> Self {
        pb::Hyperparams {
            optimizer: p.optimizer.as_str().to_string(),
            batch_size: p.batch_size,
            lr: p.lr,
            beta1: p.beta1,
            beta2: p.beta2,
            eps: p.eps,
            weight_decay: p.weight_decay,
            seed: p.seed,
        }
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
            theory: m.theory.as_ref().map(|t| pb::Theory {
                stationary_loss: t.stationary_loss,
                curve: t
                    .curve
                    .iter()
                    .map(|p| pb::TheoryPoint { samples: p.samples, step: p.step, loss: p.loss })
                    .collect(),
            }),
            notes: m.notes.clone(),
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
            theory: m.theory.map(|t| Theory {
                stationary_loss: t.stationary_loss,
                curve: t
                    .curve
                    .into_iter()
                    .map(|p| TheoryPoint { samples: p.samples, step: p.step, loss: p.loss })
                    .collect(),
            }),
            notes: m.notes,
        }
    }
}

/// The `outcome` oneof of a report, from a core outcome.
pub fn outcome_to_pb(o: &AttemptOutcome) -> pb::report_request::Outcome {
    use pb::report_request::Outcome;
    match o {
        AttemptOutcome::Succeeded(m) => Outcome::Succeeded(m.into()),
        AttemptOutcome::Diverged { step, metrics } => {
            Outcome::Diverged(pb::Diverged { step: *step, metrics: Some(metrics.into()) })
        }
        AttemptOutcome::Failed { error, class } => {
            Outcome::Failed(pb::Failed { error: error.clone(), class: class.as_str().to_string() })
        }
    }
}

/// A core outcome from the `outcome` oneof of a report.
pub fn outcome_from_pb(o: Option<pb::report_request::Outcome>) -> Result<AttemptOutcome, ConvertError> {
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
    })
}

/// One trial's result on the wire (`Results`).
pub fn trial_result_to_pb(
    id: TrialId,
    params: &Hyperparams,
    status: TrialStatus,
    metrics: Option<&TrialMetrics>,
    error: Option<&str>,
) -> pb::TrialResult {
    pb::TrialResult {
        trial_id: id.to_string(),
        params: Some(params.into()),
        status: status.as_str().to_string(),
        metrics: metrics.map(Into::into),
        error: error.unwrap_or_default().to_string(),
    }
}

/// A trial result read back from the wire: id, hyperparameters, status, metrics.
pub fn trial_result_from_pb(
    r: pb::TrialResult,
) -> Result<(TrialId, Hyperparams, TrialStatus, Option<TrialMetrics>), ConvertError> {
    let id = parse_trial_id(&r.trial_id)?;
    let params = r.params.ok_or(ConvertError::Missing("params"))?.try_into()?;
    let status = r.status.parse().map_err(|e: kappa_core::trial::UnknownStatus| ConvertError::Invalid {
        field: "status",
        reason: e.to_string(),
    })?;
    Ok((id, params, status, r.metrics.map(Into::into)))
}

/// A progress message from counts.
pub fn progress(sweep: &str, c: Counts, reused: u64, workers: u32, finished: bool) -> pb::Progress {
    pb::Progress {
        sweep: sweep.to_string(),
        total: c.total,
        pending: c.pending,
        running: c.running,
        succeeded: c.succeeded,
        failed: c.failed,
        diverged: c.diverged,
        reused,
        workers,
        finished,
        cancelled: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kappa_core::OptimizerKind;

    #[test]
    fn hyperparams_round_trip_and_reject_bad_values() {
        let p = Hyperparams {
            optimizer: OptimizerKind::AdamW,
            batch_size: 64,
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1.0,
            seed: 3,
        };
        let wire = pb::Hyperparams::from(&p);
        assert_eq!(Hyperparams::try_from(wire.clone()).unwrap(), p);
        let bad = pb::Hyperparams { optimizer: "lion".into(), ..wire.clone() };
        assert!(matches!(Hyperparams::try_from(bad), Err(ConvertError::Invalid { field: "optimizer", .. })));
        let bad = pb::Hyperparams { batch_size: 0, ..wire };
        assert!(Hyperparams::try_from(bad).is_err());
    }

    #[test]
    fn outcomes_round_trip() {
        let m = TrialMetrics {
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
            assert_eq!(outcome_from_pb(Some(outcome_to_pb(&o))).unwrap(), o);
        }
        assert_eq!(outcome_from_pb(None), Err(ConvertError::Missing("outcome")));
    }
}

//! Talking to a running coordinator as a client: connecting with the token and TLS authority,
//! refusals in words a user can act on, and a sweep's results streamed back.

use crate::args::CoordinatorArg;
use crate::exit::invalid;
use anyhow::anyhow;
use kappa_core::{CodeVersion, TrialResult};
use kappa_proto::pb;

/// A connected client.
pub async fn connect(c: &CoordinatorArg) -> anyhow::Result<kappa_proto::Client> {
    Ok(kappa_proto::connect_with(&c.coordinator, c.token.token()?.as_deref(), c.token.ca()?.as_deref()).await?)
}

/// A gRPC refusal in words a user can act on.
pub fn status_error(s: tonic::Status) -> anyhow::Error {
    match s.code() {
        tonic::Code::InvalidArgument => invalid(s.message().to_string()),
        tonic::Code::Unauthenticated => anyhow!("the coordinator refused the token: {}", s.message()),
        tonic::Code::PermissionDenied => anyhow!("the coordinator refused: {}", s.message()),
        _ => anyhow!("coordinator: {} ({:?})", s.message(), s.code()),
    }
}

/// A runtime for one client command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// A sweep's results as a coordinator serves them (`kappa report --coordinator`).
pub struct RemoteResults {
    /// The sweep's name.
    pub name: String,
    /// Path of the sweep file it was submitted from.
    pub spec_path: String,
    /// The sweep file's text.
    pub spec: String,
    /// The code version its trial ids are made with (`None`: a coordinator that did not say).
    pub code_version: Option<CodeVersion>,
    /// Every trial.
    pub trials: Vec<TrialResult>,
}

/// Fetches a sweep's results from a coordinator (empty name: its latest sweep).
pub fn fetch_results(c: &CoordinatorArg, sweep: &str) -> anyhow::Result<RemoteResults> {
    runtime()?.block_on(async {
        let mut cl = connect(c).await?;
        let mut stream =
            cl.results(pb::ResultsRequest { sweep: sweep.to_string() }).await.map_err(status_error)?.into_inner();
        let mut out = RemoteResults {
            name: String::new(),
            spec_path: String::new(),
            spec: String::new(),
            code_version: None,
            trials: Vec::new(),
        };
        while let Some(chunk) = stream.message().await.map_err(status_error)? {
            if out.name.is_empty() {
                (out.name, out.spec, out.spec_path) = (chunk.sweep, chunk.spec, chunk.spec_path);
                out.code_version =
                    Some(chunk.code_version).filter(|v| !v.is_empty()).map(|v| CodeVersion::from_record(&v));
            }
            for t in chunk.trials {
                out.trials.push(TrialResult::try_from(t).map_err(|e| anyhow!("bad result from the coordinator: {e}"))?);
            }
        }
        Ok(out)
    })
}

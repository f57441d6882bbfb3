//! Reaching a coordinator: the one way clients connect, and what a failed call means for them.

use crate::{Auth, pb};

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

/// What a failed call means for a client that keeps talking to the coordinator (a worker).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallFailure {
    /// The coordinator is unreachable for now (down, restarting, the network): try the same call
    /// again after a pause.
    Retry,
    /// The coordinator does not know this client any more (it restarted): register again.
    Reregister,
    /// A refusal no retry can fix (wrong token, protocol version, invalid request).
    Fatal,
}

impl CallFailure {
    /// The one table from gRPC status codes to what a client does next.
    pub fn of(status: &tonic::Status) -> CallFailure {
        use tonic::Code;
        match status.code() {
            Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded | Code::Aborted => {
                CallFailure::Retry
            }
            Code::NotFound => CallFailure::Reregister,
            _ => CallFailure::Fatal,
        }
    }
}

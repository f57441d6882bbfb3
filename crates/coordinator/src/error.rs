//! Coordinator errors and their one classification, [`ErrorCode`], which every transport reads:
//! the gRPC service turns a code into a status code, the dashboard's HTTP API into an HTTP
//! status (after quickwit's `ServiceErrorCode`), so an error means the same on both.

use kappa_core::SpecError;
use kappa_store::StoreError;
use std::path::PathBuf;
use tonic::codegen::http;

/// Coordinator errors, each classified by one [`ErrorCode`] ([`ServiceError::code`]).
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// The sweep file is invalid (its error names file, key, line and column).
    #[error(transparent)]
    InvalidSweep(#[from] SpecError),
    /// The sweep exists and is running with another definition.
    #[error(
        "sweep `{0}` is running with a different definition: wait for it to finish, cancel it (kappa cancel), or \
         submit under another name"
    )]
    Conflict(String),
    /// The sweep's state directory was planned with other code than this process computes with.
    #[error("sweep `{sweep}` in {}: {mismatch}", .dir.display())]
    NewVersion {
        /// The sweep.
        sweep: String,
        /// Its state directory.
        dir: PathBuf,
        /// The versions.
        mismatch: kappa_core::VersionMismatch,
    },
    /// `--rerun-on-new-version` for a sweep still running with its recorded version.
    #[error(
        "sweep `{0}` is still running with the code version it was planned with: wait for it to finish or cancel \
         it (kappa cancel), then submit it again with --rerun-on-new-version"
    )]
    RerunConflict(String),
    /// No sweep by that name (empty: none submitted yet).
    #[error("{}", if .0.is_empty() { "no sweep submitted yet".to_string() } else { format!("no sweep named `{}` here", .0) })]
    NoSuchSweep(String),
    /// A holder of a tokens file named no sweep and owns none here.
    #[error("{0} has no sweep here: name one (--sweep)")]
    NoSweepOf(String),
    /// This coordinator has no state root, so it cannot take new sweeps.
    #[error("this coordinator serves a fixed sweep and takes no submissions")]
    NoStateRoot,
    /// The state root could not be read or created.
    #[error("state directory {path}: {source}")]
    StateRoot {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The listening socket could not be used.
    #[error("the listening socket: {0}")]
    Socket(std::io::Error),
    /// A store could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A store writer stopped on an error: results are no longer recorded.
    #[error("writing results failed: {0}")]
    WriteFailed(String),
    /// Work run off the async threads panicked (a bug): what it was, and the panic.
    #[error("{0} crashed: {1}")]
    Crashed(&'static str, String),
    /// The gRPC server could not be started or failed.
    #[error("the server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The caller may not do this (its role, or someone else's sweep).
    #[error(transparent)]
    Refused(#[from] crate::Refusal),
}

/// What kind of failure an error is for the client that asked, whatever the transport: the one
/// classification both the gRPC service and the dashboard's HTTP API answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request is malformed or names something invalid (a sweep file with errors).
    InvalidArgument,
    /// What the request names does not exist (a sweep, a trial, a worker).
    NotFound,
    /// The request conflicts with what exists (a sweep running with another definition).
    AlreadyExists,
    /// The server cannot do it in its present state or setup (no state root to take
    /// submissions, a state directory planned with other code, another protocol version).
    FailedPrecondition,
    /// No token, or a wrong one.
    Unauthenticated,
    /// The caller is known but may not do this.
    PermissionDenied,
    /// The server failed (storage, socket): not the caller's doing.
    Internal,
}

impl ErrorCode {
    /// Every code.
    pub const ALL: [ErrorCode; 7] = [
        ErrorCode::InvalidArgument,
        ErrorCode::NotFound,
        ErrorCode::AlreadyExists,
        ErrorCode::FailedPrecondition,
        ErrorCode::Unauthenticated,
        ErrorCode::PermissionDenied,
        ErrorCode::Internal,
    ];

    /// The gRPC status code.
    pub fn grpc(self) -> tonic::Code {
        match self {
            ErrorCode::InvalidArgument => tonic::Code::InvalidArgument,
            ErrorCode::NotFound => tonic::Code::NotFound,
            ErrorCode::AlreadyExists => tonic::Code::AlreadyExists,
            ErrorCode::FailedPrecondition => tonic::Code::FailedPrecondition,
            ErrorCode::Unauthenticated => tonic::Code::Unauthenticated,
            ErrorCode::PermissionDenied => tonic::Code::PermissionDenied,
            ErrorCode::Internal => tonic::Code::Internal,
        }
    }

    /// The HTTP status (both kinds of conflict with the server's state are 409 Conflict).
    pub fn http(self) -> http::StatusCode {
        match self {
            ErrorCode::InvalidArgument => http::StatusCode::BAD_REQUEST,
            ErrorCode::NotFound => http::StatusCode::NOT_FOUND,
            ErrorCode::AlreadyExists | ErrorCode::FailedPrecondition => http::StatusCode::CONFLICT,
            ErrorCode::Unauthenticated => http::StatusCode::UNAUTHORIZED,
            ErrorCode::PermissionDenied => http::StatusCode::FORBIDDEN,
            ErrorCode::Internal => http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A gRPC status of this code with `message`.
    pub fn status(self, message: impl Into<String>) -> tonic::Status {
        tonic::Status::new(self.grpc(), message)
    }
}

/// An error a service answers with: its [`ErrorCode`].
pub trait ServiceError: std::error::Error {
    /// The error's classification.
    fn code(&self) -> ErrorCode;
}

impl ServiceError for CoordinatorError {
    fn code(&self) -> ErrorCode {
        match self {
            CoordinatorError::InvalidSweep(_) => ErrorCode::InvalidArgument,
            CoordinatorError::Conflict(_) | CoordinatorError::RerunConflict(_) => ErrorCode::AlreadyExists,
            CoordinatorError::NoStateRoot | CoordinatorError::NewVersion { .. } => ErrorCode::FailedPrecondition,
            CoordinatorError::NoSuchSweep(_) | CoordinatorError::NoSweepOf(_) => ErrorCode::NotFound,
            CoordinatorError::Store(e) => e.code(),
            CoordinatorError::StateRoot { .. }
            | CoordinatorError::Socket(_)
            | CoordinatorError::WriteFailed(_)
            | CoordinatorError::Crashed(..)
            | CoordinatorError::Transport(_) => ErrorCode::Internal,
            CoordinatorError::Refused(r) => r.code,
        }
    }
}

impl ServiceError for StoreError {
    fn code(&self) -> ErrorCode {
        match self {
            StoreError::NotFound(_) => ErrorCode::NotFound,
            StoreError::BadDir { .. }
            | StoreError::Corrupt { .. }
            | StoreError::OtherSweep { .. }
            | StoreError::Locked(_)
            | StoreError::Sqlite { .. } => ErrorCode::Internal,
        }
    }
}

/// The gRPC status of an error: its code's, with its message.
impl From<CoordinatorError> for tonic::Status {
    fn from(e: CoordinatorError) -> tonic::Status {
        e.code().status(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One error of every variant (the match below fails to compile when a variant is added, so
    /// the list cannot fall behind).
    pub(crate) fn one_of_each() -> Vec<CoordinatorError> {
        let io = || std::io::Error::other("disk on fire");
        let spec = kappa_core::Sweep::parse("bad.toml", "version = 1\nname = 3").expect_err("an invalid sweep");
        let transport = tonic::transport::Endpoint::from_shared("not a uri \u{0}").expect_err("a bad uri");
        let all = vec![
            CoordinatorError::InvalidSweep(spec),
            CoordinatorError::Conflict("s".into()),
            CoordinatorError::NewVersion {
                sweep: "s".into(),
                dir: "runs/s".into(),
                mismatch: kappa_core::VersionMismatch {
                    recorded: kappa_core::CodeVersion::code("kappa-sim/1"),
                    current: kappa_core::CodeVersion::code("kappa-sim/2"),
                },
            },
            CoordinatorError::RerunConflict("s".into()),
            CoordinatorError::NoSuchSweep("s".into()),
            CoordinatorError::NoSweepOf("alice".into()),
            CoordinatorError::NoStateRoot,
            CoordinatorError::StateRoot { path: "runs".into(), source: io() },
            CoordinatorError::Socket(io()),
            CoordinatorError::Store(StoreError::NotFound("runs/s".into())),
            CoordinatorError::Store(StoreError::Locked("runs/s".into())),
            CoordinatorError::WriteFailed("disk full".into()),
            CoordinatorError::Crashed("planning", "index out of bounds".into()),
            CoordinatorError::Transport(transport),
            CoordinatorError::Refused(crate::Refusal {
                code: ErrorCode::PermissionDenied,
                message: "alice (read) may not cancel sweeps".into(),
            }),
        ];
        for e in &all {
            match e {
                CoordinatorError::InvalidSweep(_)
                | CoordinatorError::Conflict(_)
                | CoordinatorError::NewVersion { .. }
                | CoordinatorError::RerunConflict(_)
                | CoordinatorError::NoSuchSweep(_)
                | CoordinatorError::NoSweepOf(_)
                | CoordinatorError::NoStateRoot
                | CoordinatorError::StateRoot { .. }
                | CoordinatorError::Socket(_)
                | CoordinatorError::Store(_)
                | CoordinatorError::WriteFailed(_)
                | CoordinatorError::Crashed(..)
                | CoordinatorError::Transport(_)
                | CoordinatorError::Refused(_) => {}
            }
        }
        all
    }

    #[test]
    fn every_error_has_one_code_and_the_grpc_status_is_that_codes() {
        let expected = [
            ErrorCode::InvalidArgument,
            ErrorCode::AlreadyExists,
            ErrorCode::FailedPrecondition,
            ErrorCode::AlreadyExists,
            ErrorCode::NotFound,
            ErrorCode::NotFound,
            ErrorCode::FailedPrecondition,
            ErrorCode::Internal,
            ErrorCode::Internal,
            ErrorCode::NotFound,
            ErrorCode::Internal,
            ErrorCode::Internal,
            ErrorCode::Internal,
            ErrorCode::Internal,
            ErrorCode::PermissionDenied,
        ];
        let all = one_of_each();
        assert_eq!(all.len(), expected.len());
        for (e, want) in all.into_iter().zip(expected) {
            assert_eq!(e.code(), want, "{e:?}");
            let message = e.to_string();
            let status = tonic::Status::from(e);
            assert_eq!((status.code(), status.message()), (want.grpc(), message.as_str()));
        }
    }

    #[test]
    fn each_code_is_one_grpc_code_and_one_http_status_that_agree() {
        use http::StatusCode as H;
        use tonic::Code as G;
        for code in ErrorCode::ALL {
            let pair = (code.grpc(), code.http());
            let agree = matches!(
                pair,
                (G::InvalidArgument, H::BAD_REQUEST)
                    | (G::NotFound, H::NOT_FOUND)
                    | (G::AlreadyExists | G::FailedPrecondition, H::CONFLICT)
                    | (G::Unauthenticated, H::UNAUTHORIZED)
                    | (G::PermissionDenied, H::FORBIDDEN)
                    | (G::Internal, H::INTERNAL_SERVER_ERROR)
            );
            assert!(agree, "{code:?}: {pair:?}");
        }
        let distinct: std::collections::HashSet<_> = ErrorCode::ALL.iter().map(|c| c.grpc()).collect();
        assert_eq!(distinct.len(), ErrorCode::ALL.len(), "one gRPC code per class");
    }
}

//! The API's errors: a classification ([`ErrorCode`], the coordinator's, which its gRPC service
//! answers with too) and a message in words, answered as `{"error": "..."}` with the code's
//! HTTP status.

use axum::response::{IntoResponse, Response};
use kappa_coordinator::{CoordinatorError, ErrorCode, ServiceError};
use kappa_store::StoreError;
use serde_json::json;

/// An API error: what kind of failure it is, and what went wrong in words.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
}

/// What a handler returns.
pub(crate) type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into() }
    }

    /// A request the API cannot read.
    pub(crate) fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::InvalidArgument, message)
    }

    /// A failure of the server's own.
    pub(crate) fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Internal, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.code.http(), axum::Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<CoordinatorError> for ApiError {
    fn from(e: CoordinatorError) -> ApiError {
        ApiError::new(e.code(), e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        ApiError::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn coordinator_errors_answer_with_the_status_their_code_names_as_grpc_does() {
        let version = kappa_core::VersionMismatch {
            recorded: kappa_core::CodeVersion::code("kappa-sim/1"),
            current: kappa_core::CodeVersion::code("kappa-sim/2"),
        };
        // The two that once disagreed between gRPC and HTTP, and one of each other code.
        for (e, http) in [
            (CoordinatorError::NoStateRoot, StatusCode::CONFLICT),
            (
                CoordinatorError::NewVersion { sweep: "s".into(), dir: "runs/s".into(), mismatch: version },
                StatusCode::CONFLICT,
            ),
            (CoordinatorError::NoSuchSweep("s".into()), StatusCode::NOT_FOUND),
            (CoordinatorError::Conflict("s".into()), StatusCode::CONFLICT),
            (CoordinatorError::WriteFailed("disk full".into()), StatusCode::INTERNAL_SERVER_ERROR),
            (CoordinatorError::Store(StoreError::NotFound("runs/s".into())), StatusCode::NOT_FOUND),
        ] {
            let code = e.code();
            let api = ApiError::from(e);
            assert_eq!((api.code, api.code.http()), (code, http), "{}", api.message);
            assert_eq!(api.into_response().status(), http);
        }
        let spec = kappa_core::Sweep::parse("bad.toml", "version = 1\nname = 3").expect_err("an invalid sweep");
        assert_eq!(
            ApiError::from(CoordinatorError::InvalidSweep(spec)).into_response().status(),
            StatusCode::BAD_REQUEST
        );
    }
}

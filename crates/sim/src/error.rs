//! Why a simulation ends without a result.

/// Errors that end a simulation without a result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    /// The run was cancelled (lease lost, shutdown).
    #[error("cancelled")]
    Cancelled,
    /// The trial's settings cannot be simulated.
    #[error("{0}")]
    Invalid(String),
}

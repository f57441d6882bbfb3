//! Store errors: each names the state directory or database file it is about.

use std::path::PathBuf;

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state directory holds no kappa database.
    #[error("no kappa state in {0} (run `kappa run` first, or pass --state DIR)")]
    NotFound(PathBuf),
    /// The path is not a usable directory.
    #[error("state directory {path}: {reason}")]
    BadDir {
        /// The directory.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// The file is not a kappa database, or is damaged.
    #[error("state database {path} is unreadable or corrupt: {reason}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What SQLite or the schema check said.
        reason: String,
    },
    /// The database belongs to another sweep.
    #[error("state directory {path} holds sweep `{found}`, not `{expected}` (use another --state)")]
    OtherSweep {
        /// The database file.
        path: PathBuf,
        /// The sweep recorded there.
        found: String,
        /// The sweep being run.
        expected: String,
    },
    /// Another process holds the state directory.
    #[error("state directory {0} is in use by another kappa process (wait for it, or pass another --state)")]
    Locked(PathBuf),
    /// Any other SQLite error.
    #[error("state database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The error.
        source: rusqlite::Error,
    },
}

//! kappa-coordinator: hands out trials to workers over gRPC and records how they ended.
//!
//! A [`Coordinator`] is what `kappa coordinator` runs (and `kappa run` runs in-process): every
//! sweep it serves, each a [`SweepRunner`], and the workers that pull trials from them. A runner
//! owns its sweep's scheduler (a [`kappa_core::Scheduler`] behind a mutex held only for
//! in-memory updates) and its store writer. Every state change is applied in memory first and
//! then queued for the writer, which commits in batches; the database is the durable truth that
//! a restarted coordinator recovers from. A [`Server`] hosts a coordinator on a socket.
//!
//! Module map: `coordinator` (the sweeps and workers of a process: leasing across sweeps,
//! report routing), `sweeps` (the sweep registry, and [`plan_into`], the one way a sweep is
//! planned into a store), `workers` (the worker registry), `runner` (one sweep), `writer` (group
//! commit), `service` (the gRPC service and its error-to-status table), `server` (hosting:
//! serve, the lease clock, write-failure watch, shutdown), `metrics` (Prometheus).

#![warn(missing_docs)]

mod coordinator;
pub mod metrics;
mod runner;
mod server;
mod service;
mod sweeps;
mod workers;
mod writer;

pub use coordinator::Coordinator;
pub use runner::SweepRunner;
pub use server::{ServeOptions, Server};
pub use sweeps::{Submitted, plan_into};
pub use workers::{Blocked, WorkerInfo};
pub use writer::StoreWriter;

use kappa_core::{SchedulerConfig, SpecError};
use kappa_store::StoreError;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of a coordinator process (each sweep brings its own `[execution]` settings).
#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    /// How often workers renew their leases.
    pub heartbeat_interval: Duration,
    /// A lease not renewed for this long expires (default: 3 missed heartbeats).
    pub lease_timeout: Duration,
    /// Wait before retrying a failed attempt, doubling with each failure (capped at a minute).
    pub retry_backoff: Duration,
    /// Attempts a stopped coordinator left running may still be reported by their workers, which
    /// outlive it (`kappa coordinator`): accept such a report while its lease would be current.
    /// `kappa run`'s workers die with it, so it re-queues them at once instead.
    pub adopt_in_flight: bool,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            heartbeat_interval: Duration::from_secs(5),
            lease_timeout: Duration::from_secs(15),
            retry_backoff: SchedulerConfig::DEFAULT_RETRY_BACKOFF,
            adopt_in_flight: true,
        }
    }
}

/// Coordinator errors, each mapped to one gRPC status by the service.
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
    /// The gRPC server could not be started or failed.
    #[error("the server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

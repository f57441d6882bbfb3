//! kappa-worker: pulls trials from a coordinator, runs them, reports how they ended.
//!
//! The loop (after Ballista's executor poll loop): register, then lease as many trials as there
//! are free slots, run each on the rayon pool (or as a child process), and report it. A
//! heartbeat task renews the leases held; a lease the coordinator revokes is cancelled here. A
//! panic inside a simulation is a failed trial, never a dead worker.
//!
//! Module map: `session` (connecting, registering, the lease loop, draining), `trial` (running
//! one leased trial to its report), `held` (the leases held and their trials' cancel switches),
//! `reporter` (reports in batches, and the heartbeat),
//! `executor` (a task kind → the code that runs it), `command` (`kind = "command"` child
//! processes), `metrics` (their metrics: stdout lines, TensorBoard event files, CSV), `config` ([`WorkerConfig`], [`WorkerError`], [`WorkerStats`]), `version` (the code
//! versions it computes with).

#![warn(missing_docs)]

mod command;
mod config;
mod executor;
mod held;
pub mod metrics;
mod reporter;
mod session;
mod trial;
mod version;

pub use command::{CommandEnv, TrialDirs};
pub use config::{WorkerConfig, WorkerError, WorkerStats};
pub use executor::{execute, execute_in};
pub use session::run;
pub use version::{code_version, code_versions};

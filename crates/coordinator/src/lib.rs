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
//! planned into a store), `workers` (the worker registry), `runner` (one sweep), `search` (a
//! sweep's search: replayed at its start, fed its final results), `writer` (group commit), `service` (the gRPC service), `server` (hosting: serve, the lease clock,
//! write-failure watch, shutdown), `metrics` (Prometheus), `config` ([`CoordinatorConfig`]),
//! `error` ([`CoordinatorError`] and [`ErrorCode`], the one classification of errors that gRPC
//! and the dashboard's HTTP API both read), `blocking` (work run off the async threads).

#![warn(missing_docs)]

pub mod access;
mod blocking;
mod config;
mod coordinator;
mod error;
mod guard;
mod halving;
pub mod metrics;
mod runner;
mod search;
mod server;
mod service;
mod sweeps;
mod workers;
mod writer;

pub use access::{Access, Action, Holder, Refusal, Role};
pub use blocking::blocking;
pub use config::CoordinatorConfig;
pub use coordinator::Coordinator;
pub use error::{CoordinatorError, ErrorCode, ServiceError};
pub use runner::SweepRunner;
pub use server::{ServeOptions, Server};
pub use sweeps::{PlanRequest, Submitted, plan_into};
pub use workers::{Blocked, WorkerInfo};
pub use writer::StoreWriter;

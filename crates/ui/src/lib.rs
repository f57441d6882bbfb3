//! kappa-ui: the live web dashboard, served by the processes that already run (`kappa coordinator
//! --ui-listen`, `kappa run --ui`) on the same tokio runtime as the gRPC service.
//!
//! It is a reader: it takes progress and workers from the
//! [`Coordinator`](kappa_coordinator::Coordinator)'s memory and pages of trials, trial details,
//! reports and exports from each sweep's store through a connection of its own (on tokio's blocking
//! pool, so the scheduler never waits on it). The browser never receives a whole sweep: the server
//! pages, filters, sorts and aggregates. Live updates go out as server-sent events from one sampler
//! task, at most once a second.
//!
//! Module map: `api` (the JSON API under `/api/`), `error` (its errors, classified by the
//! coordinator's `ErrorCode` like the gRPC service's), `auth` (the token: login cookie or bearer
//! header, the guard every request passes, the session calls), `reports` (reports built from
//! the store and cached), `live` (the sampler: rates, ETAs and the event stream), `assets` (the
//! page, its script and style, and the vendored uPlot, embedded in the binary), `dashboard`
//! ([`Dashboard`], the state the handlers share), `server` ([`UiServer`]: serving it), `sweeps`
//! (a sweep's runner and store as handlers reach them).

#![warn(missing_docs)]

mod api;
mod assets;
mod auth;
mod dashboard;
mod error;
mod live;
mod reports;
mod server;
mod sweeps;

pub use auth::SESSION_COOKIE;
pub use dashboard::Dashboard;
pub use server::{UiServer, is_loopback};

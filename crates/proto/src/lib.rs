//! kappa-proto: the generated `kappa.v1` gRPC code and the one place that converts between wire
//! messages and kappa-core types. Core values cross the wire only through the conversions here
//! (leases, reports, results, progress, hyperparameters, metrics); no other crate takes a core
//! value apart into wire fields or assembles one from them.
//!
//! Module map: `convert` (wire ⇄ core), `auth` (the bearer token, client and server side),
//! `client` (connecting, and the table of what a failed call means), `codec` (decode errors as
//! INVALID_ARGUMENT), `error` ([`ConvertError`]).

#![warn(missing_docs)]

mod auth;
mod client;
pub mod codec;
mod convert;
mod error;

/// Code generated from `proto/kappa/v1/kappa.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("kappa.v1");
}

pub use auth::Auth;
pub use client::{CallFailure, Client, ConnectError, connect, connect_with};
pub use convert::{
    InvalidLease, deregister_request, disposition_to_pb, heartbeat_request, lease_from_pb, lease_refs_from_pb,
    lease_refs_to_pb, lease_request, parse_trial_id, register_request, report_batch_request, sanitize_duration,
};
pub use error::ConvertError;

/// The encoded `FileDescriptorSet` of `kappa.v1`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kappa_descriptor.bin"));

/// The protocol version peers exchange on register and heartbeat; a mismatch is refused with
/// FAILED_PRECONDITION. Version 4: workers register the code versions they compute with (a
/// version 3 worker would be leased simulations it may compute differently). Version 5: leases
/// carry the rung of successive halving an attempt stops at (a version 4 worker would run the
/// whole budget, and a command's `{samples}` would be unknown to it). Version 6: command tasks
/// may name where their metrics come from (`metrics`: TensorBoard event files, CSV, a regex),
/// which a version 5 worker cannot read (it would fail those trials).
pub const PROTOCOL_VERSION: u32 = 6;

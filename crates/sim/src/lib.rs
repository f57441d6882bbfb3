//! kappa-sim: landscapes, gradient noise, the discrete optimizers and their simulation.
//!
//! Synchronous and deterministic: a trial's result depends only on its task, its hyperparameters,
//! its id and seed, never on the number of threads. Parallelism is rayon over blocks of paths.
//!
//! Module map: `trial` (one trial on its backend: [`run_trial`]), `run` (the CPU driver), `cuda`
//! (the GPU backend), `steps` ([`Steps`]), `landscape`, `noise`, `optim` (the discrete
//! optimizers), `sde`, `theory` (closed forms), `rng` and `normal` (random streams and normal
//! variates), `cancel` ([`Cancel`]), `error` ([`SimError`]).

#![warn(missing_docs)]

pub mod checkpoint;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod landscape;
pub mod noise;
pub mod normal;
pub mod optim;
pub mod rng;
pub mod run;
pub mod sde;
pub mod steps;
pub mod theory;

mod cancel;
mod error;
mod trial;

pub use cancel::Cancel;
pub use error::SimError;
pub use steps::{Rate, Steps};
pub use trial::{RunOptions, gpu_available, run_trial, run_trial_with};

/// The simulator's version: part of every trial id, so a change in what the simulator computes
/// must bump it (old results then stop being reused).
pub const VERSION: &str = "kappa-sim/3";

//! kappa-train: native training for `kind = "train"` tasks.
//!
//! Logistic regression and MLPs ([`model`]) on the shipped digits, a user's CSV table or
//! teacher–student data ([`data`]), trained with the simulator's own optimizers
//! ([`kappa_sim::optim::Optimizer`], on one flat parameter vector) or, in the paper's protocol
//! (full-batch gradients plus injected noise), with the optimizer's SDE integrated on the network
//! ([`kappa_sim::sde::Sde::substep_with_grad`]).
//!
//! Deterministic like the simulator: replicate `r` of a trial draws everything (initialisation,
//! minibatch order, injected noise) from `kappa_sim::rng::stream(id, seed, r)`, and replicates are
//! combined in order, so the outcome does not depend on the number of threads. The data and its
//! train/held-out split depend only on the task's data settings, so every trial of a sweep shares
//! them. Unlike kappa-sim, the last bits may differ between CPUs with different instruction sets:
//! the matrix products (matrixmultiply) and `exp` choose FMA kernels at run time where the CPU
//! has them. The crate's own loops never fuse multiply-adds (see `simd`).
//!
//! Performance: the per-replicate buffers (activations, deltas, gathered minibatch, gradient) are
//! allocated once; a step is two matrix products per layer forward and backward (ndarray's
//! `general_mat_mul` on contiguous views), a few vectorised loops and one optimizer step.

#![warn(missing_docs)]

pub mod bench;
mod checkpoint;
pub mod data;
pub mod model;
pub mod run;
mod simd;

pub use bench::{BenchConfig, BenchResult, bench_mlp};

/// The trainer's version: bump it when what a training trial computes changes (for trial ids, as
/// `kappa_sim::VERSION` is for simulations).
pub const VERSION: &str = "kappa-train/1";
pub use run::{CHECKPOINT, Continuation, run_train, run_train_with};

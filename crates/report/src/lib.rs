//! kappa-report: pure functions from a sweep's plan and its stored results to verdicts on
//! scaling-rule invariance (THEORY.md §5) and noise slopes (§4). No I/O: the CLI reads the store,
//! calls [`build`], and renders what comes back.
//!
//! Classes: every base grid point without its seed, under every rule, is one equivalence class;
//! seeds are replicates, averaged. Within a class each κ > 1 is compared with κ = 1 on the
//! samples-seen axis:
//! - plateau ratio R = stationary(κ) / stationary(1), with a delta-method SE;
//! - curve ratio r(s) = L_κ(s) / L_1(s) at the base curve's points (the scaled curve linearly
//!   interpolated), its largest deviation |r − 1|, and the earliest fraction of the budget from which
//!   the later points are within tolerance (a point is off once it exceeds tolerance + 2 SE; up to
//!   5% of them may be off, for noise, but never the last);
//! - the ratio the closed forms predict, where THEORY.md has them.
//!
//! SDE tracking (`tracking`): with a `task.kind` axis, each optimizer setting against the SDE
//! trials equal to it in everything else. Contrasts (`contrast`): with any other task axis, each
//! setting at every value of the axis against the same setting at its first value.
//!
//! A class *holds* when every κ's plateau is within tolerance and its curve is from 10% of the
//! budget on, *holds late* when that happens only later (but by 90%), and *fails* otherwise (a
//! diverged scaled trial fails too). A rule's verdict is the worst over its classes.
//!
//! Modules (this file only re-exports what they define):
//! - `report`: [`Report`], and [`build`] and [`build_stored`], which put the parts below together;
//! - `aggregate`: the trials of one setting, seeds pooled into one curve and stationary loss
//!   (what the classes, noise slopes, overlays and tracking read);
//! - `classes`: the classes, their verdicts and their rules' ([`ClassReport`], [`KappaReport`],
//!   [`RuleReport`], [`compare_curves`] and the thresholds [`HOLDS_FROM`], [`HOLDS_LATE_BY`],
//!   [`OFF_FRACTION`]);
//! - `noise`: the noise slopes ([`SlopeFit`]);
//! - `tracking`: SDE tracking in one sweep ([`Tracking`]);
//! - `contrast`: a setting across a task axis's values ([`Contrast`]);
//! - `overlay`: one setting's curves run several ways ([`Overlay`], [`overlays`] across sweeps);
//! - [`analysis`]: the best learning rate per batch size and the critical batch size (THEORY.md
//!   §7), and the fits behind them ([`log_log_slope`]);
//! - `check`: [`check()`] for `kappa report --check`;
//! - [`render`]: the terminal table, `summary.json`, the plots and `report.html`.

#![warn(missing_docs)]

mod aggregate;
pub mod analysis;
mod check;
mod classes;
mod contrast;
mod halving;
mod noise;
mod overlay;
pub mod render;
mod report;
mod search;
mod tracking;
mod trials;

pub use aggregate::SettleHint;
pub use analysis::{CriticalBatch, HeldOut, LrScaling, StableRange, log_log_slope};
pub use check::{check, undecided};
pub use classes::{
    ClassReport, CurveComparison, HOLDS_FROM, HOLDS_LATE_BY, KappaReport, OFF_FRACTION, PlateauRatio, RuleReport,
    compare_curves,
};
pub use contrast::{Contrast, ContrastEntry};
pub use halving::{HalvingGroup, HalvingReport, HalvingSetting};
pub use noise::SlopeFit;
pub use overlay::{Overlay, overlays};
pub use report::{Report, build, build_stored};
pub use search::{SearchGroup, SearchReport};
pub use tracking::Tracking;
pub use trials::Trials;

/// What the store (or a coordinator) says about one trial: the report's input.
pub use kappa_core::TrialResult;

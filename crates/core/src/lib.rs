//! kappa-core: sweep specs and their validation, lazy grid expansion, trial identity, and the
//! lease/attempt state machine. No I/O and no async: everything here is a pure function of its
//! inputs, so every other crate can rely on it and tests can drive it directly.

#![warn(missing_docs)]

pub mod command;
pub mod grid;
pub mod halving;
pub mod health;
pub mod id;
pub mod lease;
pub mod metrics;
pub mod objective;
pub mod optimizer;
pub mod origin;
pub mod params;
pub mod plan;
pub mod scaling;
pub mod sched;
pub mod schedule;
pub mod search;
pub mod spec;
pub mod task;
pub mod trial;
pub mod version;

pub use grid::{Axis, AxisValues, Grid};
pub use health::Health;
pub use id::{TrialId, canonical_task, trial_id};
pub use lease::{AttemptRef, AttemptReport, Lease, Stop, WorkerId};
pub use optimizer::{OPTIMIZERS, OptimizerInfo};
pub use origin::{Origin, Reason};
pub use params::{AxisName, Builtins, Hyperparams, OptimizerKind, Params, display_value, format_count, format_real};
pub use plan::Plan;
pub use scaling::{Scaling, ScalingRule, Verdict};
pub use sched::{Scheduler, SchedulerConfig};
pub use spec::{Execution, SpecError, Sweep, TaskVariant};
pub use task::TaskSpec;
pub use trial::{
    AttemptOutcome, Counts, CurvePoint, Estimate, FailureClass, FailureCounts, LeaseEnd, PlannedTrial, Progress,
    RetryPolicy, RungCount, Theory, TheoryPoint, TrialMetrics, TrialResult, TrialStatus,
};
pub use version::{CodeVersion, OnNewVersion, VersionMismatch};

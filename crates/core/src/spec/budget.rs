//! Checks across tables: the sample budget against batch sizes and κ, and SDE models against
//! optimizers and noise.

use super::SpecError;
use super::error::{Ctx, Seg, k};
use super::raw::RawGrid;
use crate::AxisName;
use crate::OptimizerKind;
use crate::grid::{AxisValues, Grid};
use crate::scaling::Scaling;
use crate::task::{SdeModel, TaskSpec};

/// Checks `task`, the sweep's task combination `combo`, against the batch sizes and optimizers
/// that occur with it.
pub(super) fn check_budget(
    ctx: &Ctx<'_>,
    task: &TaskSpec,
    grid: &Grid,
    combo: u64,
    zips: &[RawGrid],
    scaling: Option<&Scaling>,
) -> Result<(), SpecError> {
    let Some(samples) = task.samples() else { return Ok(()) };
    let axis_path = |key: &str| match zips.iter().position(|z| z.sets(key)) {
        Some(z) => vec![k("zip"), Seg::Index(z), k(key)],
        None => vec![k("grid"), k(key)],
    };
    let batches = match grid.axis_in_combination(AxisName::BatchSize, combo) {
        Some(AxisValues::Int(v)) => v,
        _ => vec![crate::params::Hyperparams::DEFAULT_BATCH_SIZE],
    };
    if let Some(&b) = batches.iter().find(|&&b| b > samples) {
        return Err(ctx.err(
            &axis_path("batch_size"),
            format!("batch size {b} is larger than the sample budget task.samples = {samples}: no step would run"),
        ));
    }
    if let Some(s) = scaling {
        let kmax = s.kappas.last().copied().unwrap_or(1);
        if let Some(&b) = batches.iter().find(|&&b| b.saturating_mul(kmax) > samples) {
            return Err(ctx.err(
                &[k("scaling"), k("kappa")],
                format!(
                    "κ = {kmax} scales batch size {b} to {}, larger than the sample budget task.samples = {}: \
                     no step would run",
                    b.saturating_mul(kmax),
                    samples
                ),
            ));
        }
    }
    let (sde_model, noise, schedule) = match task {
        TaskSpec::Sde(sim) => (sim.sde_model, Some(&sim.noise), &sim.lr_schedule),
        TaskSpec::Train(t) if t.sde => (t.sde_model, None, &t.lr_schedule),
        _ => return Ok(()),
    };
    if let Some(AxisValues::Optimizer(opts)) = grid.axis_in_combination(AxisName::Optimizer, combo) {
        for o in &opts {
            if !o.has_sde() {
                return Err(ctx.err(&axis_path("optimizer"), o.no_sde(false)));
            }
            if sde_model == SdeModel::Malladi && !o.info().malladi_sde {
                return Err(ctx.err(&axis_path("optimizer"), o.no_sde(true)));
            }
            if !schedule.is_constant() && *o != OptimizerKind::Sgd {
                return Err(ctx.err(
                    &axis_path("optimizer"),
                    format!(
                        "under a learning-rate schedule kind = \"sde\" runs SGD's SDE only (its time change is \
                         THEORY.md §8's); {o}'s SDE under a time-varying rate is not derived (use kind = \
                         \"optimizer\" to run {o} under the {} schedule)",
                        schedule.kind_name()
                    ),
                ));
            }
            if noise.is_some_and(|n| n.variance_factor().is_none()) && !o.sign_like() {
                return Err(ctx.err(
                    &axis_path("optimizer"),
                    format!(
                        "the {o} SDE needs finite noise variance, and Student-t noise with nu <= 2 has none; \
                         only signsgd has an SDE there (use kind = \"optimizer\" to run the {o} optimizer itself)"
                    ),
                ));
            }
        }
    }
    Ok(())
}

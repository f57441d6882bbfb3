//! `[scaling]`: κ values, rule presets and custom rules, and the tolerance.

use super::SpecError;
use super::axes::{check_name, flatten};
use super::error::{Ctx, Seg, k};
use super::range::as_f64;
use super::raw::{RawAxis, RawCustomRule, RawGrid, RawNamed, RawRule, RawRules, RawScaling};
use crate::AxisName;
use crate::grid::{AxisValues, Grid};
use crate::params::{Hyperparams, PARAM_PREFIX};
use crate::scaling::{Scaling, ScalingRule, Verdict};

/// Validates `[scaling]`: its κ values and tolerance, then each rule, checked against the grid
/// (the named axes it scales, and the β values it scales at every κ).
pub(super) fn scaling(ctx: &Ctx<'_>, raw: &RawScaling, grid: &Grid, zips: &[RawGrid]) -> Result<Scaling, SpecError> {
    if let Some(key) = raw.unknown.keys().next() {
        return Err(
            ctx.err(&at(&[k(key)]), format!("unknown key `{key}` in [scaling] (expected kappa, rules, tolerance)"))
        );
    }
    let kappas = kappas(ctx, raw.kappa.as_ref())?;
    let tolerance = tolerance(ctx, raw.tolerance.as_ref())?;
    let items = rule_items(ctx, raw.rules.as_ref())?;
    let mut rules: Vec<ScalingRule> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = at(&[k("rules"), Seg::Index(i)]);
        let rule = rule(ctx, &path, item, grid)?;
        if rules.iter().any(|r| r.name == rule.name) {
            return Err(ctx.err(&path, format!("rule `{}` is listed twice", rule.name)));
        }
        check_betas(ctx, &path, &rule, &kappas, grid, zips)?;
        rules.push(rule);
    }
    Ok(Scaling { kappas, rules, tolerance })
}

/// The key path `scaling.<p>`.
fn at(p: &[Seg]) -> Vec<Seg> {
    std::iter::once(k("scaling")).chain(p.iter().cloned()).collect()
}

/// `path` with one more key.
fn sub(path: &[Seg], key: &str) -> Vec<Seg> {
    let mut p = path.to_vec();
    p.push(k(key));
    p
}

/// The κ values: those written (whole numbers ≥ 1) and 1, ascending, at least one above 1.
fn kappas(ctx: &Ctx<'_>, kappa: Option<&toml::Value>) -> Result<Vec<u64>, SpecError> {
    let Some(toml::Value::Array(items)) = kappa else {
        return Err(ctx.err(&at(&[]), "[scaling] needs `kappa = [1, 2, 4, ...]`, the batch multipliers"));
    };
    let mut kappas = Vec::with_capacity(items.len() + 1);
    for (i, v) in items.iter().enumerate() {
        match v {
            toml::Value::Integer(n) if *n >= 1 => kappas.push(*n as u64),
            _ => {
                return Err(
                    ctx.err(&at(&[k("kappa"), Seg::Index(i)]), "κ values are batch multipliers: whole numbers >= 1")
                );
            }
        }
    }
    kappas.push(1);
    kappas.sort_unstable();
    kappas.dedup();
    if kappas.len() < 2 {
        return Err(ctx.err(&at(&[k("kappa")]), "[scaling] needs at least one κ > 1"));
    }
    Ok(kappas)
}

/// The tolerance: a relative deviation in (0, 1), or the default.
fn tolerance(ctx: &Ctx<'_>, tolerance: Option<&toml::Value>) -> Result<f64, SpecError> {
    match tolerance.map(as_f64) {
        None => Ok(Scaling::DEFAULT_TOLERANCE),
        Some(Some(x)) if x > 0.0 && x < 1.0 => Ok(x),
        Some(_) => Err(ctx.err(&at(&[k("tolerance")]), "tolerance is a relative deviation in (0, 1), e.g. 0.05")),
    }
}

/// The rules as written: a list of at least one.
fn rule_items<'r>(ctx: &Ctx<'_>, rules: Option<&'r RawRules>) -> Result<&'r [RawRule], SpecError> {
    let Some(RawRules::List(items)) = rules else {
        return Err(
            ctx.err(&at(&[]), "[scaling] needs `rules = [...]`: presets such as \"adamw-sqrt\" or custom exponents")
        );
    };
    if items.is_empty() {
        return Err(ctx.err(&at(&[k("rules")]), "`rules` is empty: name at least one rule"));
    }
    Ok(items)
}

/// The presets' names, for messages.
fn presets() -> String {
    crate::scaling::PRESETS.map(|(n, _)| n).join(", ")
}

/// One rule, at `path`: a preset by name, or a table.
fn rule(ctx: &Ctx<'_>, path: &[Seg], item: &RawRule, grid: &Grid) -> Result<ScalingRule, SpecError> {
    match item {
        RawRule::Preset(name) => ScalingRule::preset(name)
            .ok_or_else(|| ctx.err(path, format!("unknown scaling rule `{name}` (presets: {})", presets()))),
        RawRule::Custom(raw) => custom_rule(ctx, path, raw, grid),
        RawRule::Other => {
            Err(ctx.err(path, "a rule is a preset name or a table { name, lr, one_minus_beta, eps, weight_decay }"))
        }
    }
}

/// A rule's table: a preset (renamed if it has a `name`) or a named rule, with the exponents it
/// gives, the named axes and task fields it scales, and the verdict it expects.
fn custom_rule(ctx: &Ctx<'_>, path: &[Seg], raw: &RawCustomRule, grid: &Grid) -> Result<ScalingRule, SpecError> {
    if let Some(key) = raw.unknown.keys().next() {
        return Err(ctx.err(
            &sub(path, key),
            format!(
                "unknown key `{key}` in a rule (expected preset, or name, lr, one_minus_beta, eps, weight_decay, \
                 params, task; and expect)"
            ),
        ));
    }
    let mut rule = base_rule(ctx, path, raw)?;
    for (key, value, slot) in [
        ("lr", &raw.lr, &mut rule.lr),
        ("one_minus_beta", &raw.one_minus_beta, &mut rule.one_minus_beta),
        ("eps", &raw.eps, &mut rule.eps),
        ("weight_decay", &raw.weight_decay, &mut rule.weight_decay),
    ] {
        if let Some(v) = value {
            *slot = exponent(v)
                .ok_or_else(|| ctx.err(&sub(path, key), format!("`{key}` is an exponent of κ: a finite number")))?;
        }
    }
    if let Some(exponents) = &raw.params {
        param_exponents(ctx, &sub(path, "params"), exponents, grid, &mut rule)?;
    }
    if let Some(exponents) = &raw.task {
        task_exponents(ctx, &sub(path, "task"), exponents, grid, &mut rule)?;
    }
    if let Some(v) = &raw.expect {
        rule.expect = Some(match v.as_str() {
            Some("holds") => Verdict::Holds,
            Some("holds-late" | "holds late") => Verdict::HoldsLate,
            Some("fails") => Verdict::Fails,
            _ => return Err(ctx.err(&sub(path, "expect"), "expect must be \"holds\", \"holds-late\" or \"fails\"")),
        });
    }
    Ok(rule)
}

/// What a rule's table starts from: its preset, renamed when it gives a `name`; or, without a
/// preset, its `name` with every exponent 0.
fn base_rule(ctx: &Ctx<'_>, path: &[Seg], raw: &RawCustomRule) -> Result<ScalingRule, SpecError> {
    let name = match &raw.name {
        Some(toml::Value::String(n)) => Some(n),
        _ => None,
    };
    match &raw.preset {
        Some(toml::Value::String(p)) => {
            let mut rule = ScalingRule::preset(p).ok_or_else(|| {
                ctx.err(&sub(path, "preset"), format!("unknown preset `{p}` (presets: {})", presets()))
            })?;
            if let Some(n) = name {
                rule.name = n.clone();
            }
            Ok(rule)
        }
        Some(_) => Err(ctx.err(&sub(path, "preset"), "preset must be a rule name")),
        None => match name {
            Some(n) if !n.trim().is_empty() => Ok(ScalingRule {
                name: n.clone(),
                lr: 0.0,
                one_minus_beta: 0.0,
                eps: 0.0,
                weight_decay: 0.0,
                expect: None,
                named: Default::default(),
            }),
            _ => Err(ctx.err(path, "a custom rule needs `name` (or use `preset = \"...\"`)")),
        },
    }
}

/// An exponent of κ as written: a finite number.
fn exponent(v: &toml::Value) -> Option<f64> {
    as_f64(v).filter(|x| x.is_finite())
}

/// The exponents a rule gives `params.*` axes (`params = { warmup = -1.0 }`, at `path`): each an
/// axis of the grid with numeric values.
fn param_exponents(
    ctx: &Ctx<'_>,
    path: &[Seg],
    exponents: &toml::Value,
    grid: &Grid,
    rule: &mut ScalingRule,
) -> Result<(), SpecError> {
    let toml::Value::Table(exponents) = exponents else {
        return Err(ctx.err(path, "`params` maps parameter names to exponents: params = { warmup = -1.0 }"));
    };
    for (name, e) in exponents {
        let p = sub(path, name);
        let full = format!("{PARAM_PREFIX}{name}");
        let exponent = exponent(e)
            .ok_or_else(|| ctx.err(&p, format!("the exponent of `{full}` is an exponent of κ: a finite number")))?;
        match grid.named_axis(&full) {
            None => {
                return Err(
                    ctx.err(&p, format!("rule `{}` scales `{full}`, which is not an axis of the grid", rule.name))
                );
            }
            Some(AxisValues::Named(values)) if values.iter().all(|v| v.is_number()) => {}
            Some(_) => return Err(not_numeric(ctx, &p, &full)),
        }
        rule.named.insert(full, exponent);
    }
    Ok(())
}

/// The exponents a rule gives numeric `[task]` fields (`task = { samples = 1.0 }`, at `path`):
/// each scaled trial runs its own task, validated when the tasks are built.
fn task_exponents(
    ctx: &Ctx<'_>,
    path: &[Seg],
    exponents: &RawNamed,
    grid: &Grid,
    rule: &mut ScalingRule,
) -> Result<(), SpecError> {
    if let RawNamed::Value(RawAxis::List(_) | RawAxis::One(_)) = exponents {
        return Err(ctx.err(path, "`task` maps task fields to exponents: task = { samples = 1.0 }"));
    }
    let mut leaves = Vec::new();
    flatten(path.to_vec(), "task".into(), exponents, &mut leaves);
    for (p, full, e) in leaves {
        check_name(ctx, &p, &full)?;
        let exponent = match e {
            RawAxis::One(e) => exponent(e),
            _ => None,
        }
        .ok_or_else(|| ctx.err(&p, format!("the exponent of `{full}` is an exponent of κ: a finite number")))?;
        if let Some(AxisValues::Named(values)) = grid.named_axis(&full)
            && !values.iter().all(|v| v.is_number())
        {
            return Err(not_numeric(ctx, &p, &full));
        }
        rule.named.insert(full, exponent);
    }
    Ok(())
}

/// The error for an exponent of an axis whose values are not numbers.
fn not_numeric(ctx: &Ctx<'_>, path: &[Seg], full: &str) -> SpecError {
    ctx.err(path, format!("`{full}` is not numeric: only numbers can be scaled by a power of κ"))
}

/// Every β the rule scales (those of optimizers that read it) stays in (0, 1) at every κ. A rule
/// that leaves 1 − β alone (`sgd-linear`, `signsgd-sqrt`, `none`) keeps every β the grid accepts,
/// 0 included (heavy ball at μ = 0, Signum and Lion at β₁ = 0).
fn check_betas(
    ctx: &Ctx<'_>,
    path: &[Seg],
    rule: &ScalingRule,
    kappas: &[u64],
    grid: &Grid,
    zips: &[RawGrid],
) -> Result<(), SpecError> {
    if rule.one_minus_beta == 0.0 {
        return Ok(());
    }
    let optimizers = match grid.axis(AxisName::Optimizer) {
        Some(AxisValues::Optimizer(v)) => v.clone(),
        _ => Vec::new(),
    };
    for (axis, used) in [
        (AxisName::Beta1, optimizers.iter().any(|o| o.uses_beta1())),
        (AxisName::Beta2, optimizers.iter().any(|o| o.uses_beta2())),
    ] {
        if !used {
            continue;
        }
        let betas = match grid.axis(axis) {
            Some(AxisValues::Real(v)) => v.clone(),
            _ => vec![if axis == AxisName::Beta1 { Hyperparams::DEFAULT_BETA1 } else { Hyperparams::DEFAULT_BETA2 }],
        };
        for (bi, &beta) in betas.iter().enumerate() {
            for &kappa in kappas {
                let scaled = rule.scaled_beta(beta, kappa);
                if !(scaled > 0.0 && scaled < 1.0) {
                    let place = match zips.iter().position(|z| z.sets(axis.as_str())) {
                        Some(z) => format!("zip[{z}].{axis}[{bi}]"),
                        None if grid.axis(axis).is_some() => format!("grid.{axis}[{bi}]"),
                        None => format!("the default {axis}"),
                    };
                    return Err(ctx.err(
                        path,
                        format!(
                            "rule `{}` at κ = {kappa} scales base point {axis} = {beta} ({place}) to \
                             1 − κ^{}·(1 − β) = {scaled:.6}, outside (0, 1)",
                            rule.name, rule.one_minus_beta
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

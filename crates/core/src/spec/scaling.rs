//! `[scaling]`: κ values, rule presets and custom rules, and the tolerance.

use super::SpecError;
use super::error::{Ctx, Seg, k};
use super::grid::as_f64;
use crate::AxisName;
use crate::grid::{AxisValues, Grid};
use crate::params::Hyperparams;
use crate::scaling::{Scaling, ScalingRule, Verdict};

pub(super) fn scaling(ctx: &Ctx<'_>, t: &toml::Table, grid: &Grid, zips: &[toml::Table]) -> Result<Scaling, SpecError> {
    let at = |p: &[Seg]| -> Vec<Seg> { std::iter::once(k("scaling")).chain(p.iter().cloned()).collect() };
    for key in t.keys() {
        if !matches!(key.as_str(), "kappa" | "rules" | "tolerance") {
            return Err(
                ctx.err(&at(&[k(key)]), format!("unknown key `{key}` in [scaling] (expected kappa, rules, tolerance)"))
            );
        }
    }
    let mut kappas = Vec::new();
    match t.get("kappa") {
        Some(toml::Value::Array(items)) => {
            for (i, v) in items.iter().enumerate() {
                match v {
                    toml::Value::Integer(n) if *n >= 1 => kappas.push(*n as u64),
                    _ => {
                        return Err(ctx.err(
                            &at(&[k("kappa"), Seg::Index(i)]),
                            "κ values are batch multipliers: whole numbers >= 1",
                        ));
                    }
                }
            }
        }
        _ => return Err(ctx.err(&at(&[]), "[scaling] needs `kappa = [1, 2, 4, ...]`, the batch multipliers")),
    }
    kappas.push(1);
    kappas.sort_unstable();
    kappas.dedup();
    if kappas.len() < 2 {
        return Err(ctx.err(&at(&[k("kappa")]), "[scaling] needs at least one κ > 1"));
    }
    let tolerance = match t.get("tolerance") {
        None => Scaling::DEFAULT_TOLERANCE,
        Some(v) => match as_f64(v) {
            Some(x) if x > 0.0 && x < 1.0 => x,
            _ => return Err(ctx.err(&at(&[k("tolerance")]), "tolerance is a relative deviation in (0, 1), e.g. 0.05")),
        },
    };
    let Some(toml::Value::Array(items)) = t.get("rules") else {
        return Err(
            ctx.err(&at(&[]), "[scaling] needs `rules = [...]`: presets such as \"adamw-sqrt\" or custom exponents")
        );
    };
    if items.is_empty() {
        return Err(ctx.err(&at(&[k("rules")]), "`rules` is empty: name at least one rule"));
    }
    let presets = crate::scaling::PRESETS.map(|(n, _)| n).join(", ");
    let mut rules: Vec<ScalingRule> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = at(&[k("rules"), Seg::Index(i)]);
        let sub = |key: &str| {
            let mut p = path.clone();
            p.push(k(key));
            p
        };
        let rule = match item {
            toml::Value::String(name) => ScalingRule::preset(name)
                .ok_or_else(|| ctx.err(&path, format!("unknown scaling rule `{name}` (presets: {presets})")))?,
            toml::Value::Table(rt) => {
                for key in rt.keys() {
                    if !matches!(
                        key.as_str(),
                        "preset"
                            | "name"
                            | "lr"
                            | "one_minus_beta"
                            | "eps"
                            | "weight_decay"
                            | "expect"
                            | "params"
                            | "task"
                    ) {
                        return Err(ctx.err(
                            &sub(key),
                            format!("unknown key `{key}` in a rule (expected preset, or name, lr, one_minus_beta, eps, weight_decay, params, task; and expect)"),
                        ));
                    }
                }
                let mut rule = match rt.get("preset") {
                    Some(toml::Value::String(p)) => ScalingRule::preset(p)
                        .ok_or_else(|| ctx.err(&sub("preset"), format!("unknown preset `{p}` (presets: {presets})")))?,
                    Some(_) => return Err(ctx.err(&sub("preset"), "preset must be a rule name")),
                    None => {
                        let name = match rt.get("name") {
                            Some(toml::Value::String(n)) if !n.trim().is_empty() => n.clone(),
                            _ => return Err(ctx.err(&path, "a custom rule needs `name` (or use `preset = \"...\"`)")),
                        };
                        ScalingRule {
                            name,
                            lr: 0.0,
                            one_minus_beta: 0.0,
                            eps: 0.0,
                            weight_decay: 0.0,
                            expect: None,
                            named: Default::default(),
                        }
                    }
                };
                if rt.contains_key("preset")
                    && let Some(toml::Value::String(n)) = rt.get("name")
                {
                    rule.name = n.clone();
                }
                for (key, slot) in [
                    ("lr", &mut rule.lr),
                    ("one_minus_beta", &mut rule.one_minus_beta),
                    ("eps", &mut rule.eps),
                    ("weight_decay", &mut rule.weight_decay),
                ] {
                    if let Some(v) = rt.get(key) {
                        *slot = as_f64(v).filter(|x| x.is_finite()).ok_or_else(|| {
                            ctx.err(&sub(key), format!("`{key}` is an exponent of κ: a finite number"))
                        })?;
                    }
                }
                if let Some(v) = rt.get("params") {
                    let toml::Value::Table(exps) = v else {
                        return Err(ctx.err(
                            &sub("params"),
                            "`params` maps parameter names to exponents: params = { warmup = -1.0 }",
                        ));
                    };
                    for (name, e) in exps {
                        let mut p = sub("params");
                        p.push(k(name));
                        let full = format!("{}{name}", crate::params::PARAM_PREFIX);
                        let exponent = as_f64(e).filter(|x| x.is_finite()).ok_or_else(|| {
                            ctx.err(&p, format!("the exponent of `{full}` is an exponent of κ: a finite number"))
                        })?;
                        match grid.named_axis(&full) {
                            None => {
                                return Err(ctx.err(
                                    &p,
                                    format!("rule `{}` scales `{full}`, which is not an axis of the grid", rule.name),
                                ));
                            }
                            Some(AxisValues::Named(values)) if values.iter().all(|v| v.is_number()) => {}
                            Some(_) => {
                                return Err(ctx.err(
                                    &p,
                                    format!("`{full}` is not numeric: only numbers can be scaled by a power of κ"),
                                ));
                            }
                        }
                        rule.named.insert(full, exponent);
                    }
                }
                if let Some(v) = rt.get("task") {
                    // Exponents for numeric [task] fields (`task = { samples = 1.0 }`): each
                    // scaled trial runs its own task, validated when the tasks are built.
                    let toml::Value::Table(_) = v else {
                        return Err(
                            ctx.err(&sub("task"), "`task` maps task fields to exponents: task = { samples = 1.0 }")
                        );
                    };
                    let mut leaves = Vec::new();
                    super::axes::flatten(sub("task"), "task".into(), v, &mut leaves);
                    for (p, full, e) in leaves {
                        super::axes::check_name(ctx, &p, &full)?;
                        let exponent = as_f64(e).filter(|x| x.is_finite()).ok_or_else(|| {
                            ctx.err(&p, format!("the exponent of `{full}` is an exponent of κ: a finite number"))
                        })?;
                        if let Some(AxisValues::Named(values)) = grid.named_axis(&full)
                            && !values.iter().all(|v| v.is_number())
                        {
                            return Err(ctx.err(
                                &p,
                                format!("`{full}` is not numeric: only numbers can be scaled by a power of κ"),
                            ));
                        }
                        rule.named.insert(full, exponent);
                    }
                }
                if let Some(v) = rt.get("expect") {
                    rule.expect = Some(match v.as_str() {
                        Some("holds") => Verdict::Holds,
                        Some("holds-late" | "holds late") => Verdict::HoldsLate,
                        Some("fails") => Verdict::Fails,
                        _ => {
                            return Err(
                                ctx.err(&sub("expect"), "expect must be \"holds\", \"holds-late\" or \"fails\"")
                            );
                        }
                    });
                }
                rule
            }
            _ => {
                return Err(ctx
                    .err(&path, "a rule is a preset name or a table { name, lr, one_minus_beta, eps, weight_decay }"));
            }
        };
        if rules.iter().any(|r| r.name == rule.name) {
            return Err(ctx.err(&path, format!("rule `{}` is listed twice", rule.name)));
        }
        // Every β this rule scales must stay in (0, 1) at every κ.
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
                _ => {
                    vec![if axis == AxisName::Beta1 { Hyperparams::DEFAULT_BETA1 } else { Hyperparams::DEFAULT_BETA2 }]
                }
            };
            for (bi, &beta) in betas.iter().enumerate() {
                for &kappa in &kappas {
                    let scaled = rule.scaled_beta(beta, kappa);
                    if !(scaled > 0.0 && scaled < 1.0) {
                        let place = match zips.iter().position(|z| z.contains_key(axis.as_str())) {
                            Some(z) => format!("zip[{z}].{axis}[{bi}]"),
                            None if grid.axis(axis).is_some() => format!("grid.{axis}[{bi}]"),
                            None => format!("the default {axis}"),
                        };
                        return Err(ctx.err(
                            &path,
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
        rules.push(rule);
    }
    Ok(Scaling { kappas, rules, tolerance })
}

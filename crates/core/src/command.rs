//! Argument templates of `kind = "command"` tasks: `{lr}`-style placeholders and `KAPPA_*`
//! environment variables. Checked when the sweep file is read, filled in by the worker.
//!
//! Placeholders: the built-in axes a trial carries (`{optimizer}`, `{batch_size}`, `{lr}`,
//! `{beta1}`, `{beta2}`, `{eps}`, `{weight_decay}`, `{seed}`), `{trial_id}`, `{attempt}`,
//! `{trial_dir}` (the trial's directory, kept across its attempts: checkpoints go there),
//! `{samples}` under successive halving (the budget this attempt runs to, in samples seen: its
//! rung's, and `KAPPA_SAMPLES` in the environment), the task's learning-rate schedule
//! ([`SCHEDULE_PLACEHOLDERS`]: `{lr_schedule}` is its kind, `constant` without one; `{lr_warmup}`,
//! `{lr_decay}`, `{lr_min_factor}`, `{lr_factor}` and `{lr_at}` its fields as fractions of the
//! budget; `KAPPA_LR_SCHEDULE_JSON` the whole schedule as JSON; a parameter of the user's own
//! with one of these names keeps it), and each
//! user parameter by its short name (`params.width` is `{width}`, and `KAPPA_PARAM_WIDTH` in the
//! environment). `{{` and `}}` stand for literal braces.
//! Numbers are written in Rust's shortest round-trip form (`0.001`, `1e-8`), which Python's
//! `float()` and every other common parser reads back exactly.

use crate::id::TrialId;
use crate::params::AxisName;
use crate::params::{Builtins, Params, value_text};

/// Every built-in placeholder name, in the order `KAPPA_*` variables are listed.
pub const PLACEHOLDERS: [&str; 11] = [
    "optimizer",
    "batch_size",
    "lr",
    "beta1",
    "beta2",
    "eps",
    "weight_decay",
    "seed",
    "trial_id",
    "attempt",
    "trial_dir",
];

/// The placeholders of the task's learning-rate schedule (THEORY.md §8), always defined.
pub const SCHEDULE_PLACEHOLDERS: [&str; 6] =
    ["lr_schedule", "lr_warmup", "lr_decay", "lr_min_factor", "lr_factor", "lr_at"];

/// What an attempt's placeholders name besides the trial's parameters.
#[derive(Clone, Copy, Debug)]
pub struct Attempt<'a> {
    /// The trial.
    pub id: TrialId,
    /// The attempt number.
    pub attempt: u32,
    /// The trial's directory, kept across its attempts (checkpoints go there).
    pub trial_dir: &'a str,
    /// Under successive halving, the budget this attempt runs to (its rung's), in samples seen.
    pub samples: Option<u64>,
    /// The task's learning-rate schedule, for the program to follow.
    pub schedule: &'a crate::task::LrSchedule,
}

/// The value of every placeholder for one attempt: the built-ins the trial carries, its id,
/// attempt and directory, and its user parameters by their short names.
pub fn values(params: &Params, at: &Attempt<'_>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> =
        params.builtins.axes().map(|a| (a.as_str().to_string(), params.builtin_text(a))).collect();
    out.push(("trial_id".into(), at.id.to_string()));
    out.push(("attempt".into(), at.attempt.to_string()));
    out.push(("trial_dir".into(), at.trial_dir.to_string()));
    if let Some(s) = at.samples {
        out.push(("samples".into(), s.to_string()));
    }
    // A parameter of the user's own named like one of these (sweeps written before schedules
    // existed may have one) keeps its name: the schedule's value is left out.
    let schedule = std::iter::once(("lr_schedule".to_string(), at.schedule.kind_name().to_string()))
        .chain(at.schedule.fields().into_iter().map(|(k, v)| (format!("lr_{k}"), v)))
        .filter(|(k, _)| !params.user().any(|(u, _)| u == k));
    out.extend(schedule.collect::<Vec<_>>());
    out.extend(params.user().map(|(k, v)| (k.to_string(), value_text(v))));
    out
}

/// The `KAPPA_*` environment of an attempt: `KAPPA_LR=0.001`, `KAPPA_TRIAL_ID=…`,
/// `KAPPA_TRIAL_DIR=…`, `KAPPA_LR_SCHEDULE=cosine` and its fields (`KAPPA_LR_WARMUP=0.05`, …),
/// `KAPPA_LR_SCHEDULE_JSON={"kind":"cosine",…}`, and each user parameter as
/// `KAPPA_PARAM_<NAME>` (`KAPPA_PARAM_WIDTH=512`).
pub fn env_vars(params: &Params, at: &Attempt<'_>) -> Vec<(String, String)> {
    let user: std::collections::HashSet<&str> = params.user().map(|(k, _)| k).collect();
    let mut vars: Vec<(String, String)> = values(params, at)
        .into_iter()
        .map(|(k, v)| {
            let prefix = if user.contains(k.as_str()) { "KAPPA_PARAM_" } else { "KAPPA_" };
            (format!("{prefix}{}", k.to_uppercase()), v)
        })
        .collect();
    vars.push(("KAPPA_LR_SCHEDULE_JSON".into(), at.schedule.to_json()));
    vars
}

/// Checks a template's syntax: every `{name}` is a well-formed name and braces are balanced.
/// Which names exist is checked against the grid by [`check_names`].
pub fn check(template: &str) -> Result<(), String> {
    expand(template, &|_| Some(String::new())).map(|_| ())
}

/// The placeholders a template uses.
pub fn names(template: &str) -> Vec<String> {
    let found = std::cell::RefCell::new(Vec::new());
    let _ = expand(template, &|name| {
        found.borrow_mut().push(name.to_string());
        Some(String::new())
    });
    found.into_inner()
}

/// Checks that every placeholder of a template names a value each trial has: a built-in the
/// grid carries, `{trial_id}`, `{attempt}`, `{trial_dir}`, or one of `user` (the grid's
/// `params.*` names).
pub fn check_names(template: &str, builtins: Builtins, user: &[&str], halving: bool) -> Result<(), String> {
    for name in names(template) {
        if user.contains(&name.as_str())
            || matches!(name.as_str(), "trial_id" | "attempt" | "trial_dir")
            || SCHEDULE_PLACEHOLDERS.contains(&name.as_str())
        {
            continue;
        }
        if name == "samples" {
            if halving {
                continue;
            }
            return Err(format!(
                "`{{samples}}` in \"{template}\" is the budget of a rung of successive halving ([search] kind = \
                 \"halving\"); this sweep has no rungs: write the budget itself"
            ));
        }
        match AxisName::from_key(&name) {
            Some(a) if builtins.has(a) => continue,
            Some(a) => {
                return Err(format!(
                    "`{{{name}}}` in \"{template}\": the grid has no `{a}` axis (a sweep that names no \
                     optimizer and learning rate carries only the built-in axes it names, and the seed)"
                ));
            }
            None => {
                let mut known: Vec<String> = builtins
                    .axes()
                    .map(|a| format!("{{{a}}}"))
                    .chain(["{trial_id}".into(), "{attempt}".into(), "{trial_dir}".into()])
                    .chain(SCHEDULE_PLACEHOLDERS.map(|p| format!("{{{p}}}")))
                    .collect();
                known.extend(user.iter().map(|u| format!("{{{u}}}")));
                return Err(format!(
                    "unknown placeholder `{{{name}}}` in \"{template}\" (a parameter of your own needs an axis \
                     `params.{name} = [...]` in [grid]); known: {}",
                    known.join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// Fills a template in with one attempt's values.
pub fn render(template: &str, params: &Params, at: &Attempt<'_>) -> Result<String, String> {
    let vals = values(params, at);
    expand(template, &|name| vals.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
}

fn expand(template: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("{{") {
            out.push('{');
            rest = t;
        } else if let Some(t) = tail.strip_prefix("}}") {
            out.push('}');
            rest = t;
        } else if tail.starts_with('}') {
            return Err(format!("unmatched `}}` in \"{template}\" (write `}}}}` for a literal brace)"));
        } else {
            let end = tail.find('}').ok_or_else(|| format!("unclosed `{{` in \"{template}\""))?;
            let name = &tail[1..end];
            let word = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !word {
                return Err(format!(
                    "`{{{name}}}` in \"{template}\" is not a placeholder name (letters, digits and '_'; write \
                     `{{{{` and `}}}}` for literal braces)"
                ));
            }
            let value = lookup(name).ok_or_else(|| format!("unknown placeholder `{{{name}}}` in \"{template}\""))?;
            out.push_str(&value);
            rest = &tail[end + 1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::OptimizerKind;

    fn at(id: TrialId, attempt: u32) -> Attempt<'static> {
        Attempt { id, attempt, trial_dir: "/t/dir", samples: None, schedule: &crate::task::LrSchedule::Constant }
    }

    fn params() -> Params {
        Params::from(crate::params::Hyperparams {
            optimizer: OptimizerKind::AdamW,
            batch_size: 64,
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            seed: 7,
        })
    }

    #[test]
    fn placeholders_are_filled_in_and_braces_escaped() {
        let id = TrialId(0x0102030405060708);
        let s =
            render("--lr={lr} b{batch_size} {optimizer} {{x}} s{seed}/{attempt} {trial_dir}", &params(), &at(id, 2))
                .unwrap();
        assert_eq!(s, "--lr=0.001 b64 adamw {x} s7/2 /t/dir");
        assert_eq!(render("{trial_id}", &params(), &at(id, 1)).unwrap(), id.to_string());
    }

    #[test]
    fn bad_templates_are_refused_with_the_reason() {
        assert!(check("{lr}{beta1}").is_ok());
        assert!(check("{lr").unwrap_err().contains("unclosed"));
        assert!(check("lr}").unwrap_err().contains("unmatched"));
        assert!(check("{a b}").unwrap_err().contains("not a placeholder name"));
        let err = check_names("{learning_rate}", Builtins::ALL, &[], false).unwrap_err();
        assert!(err.contains("unknown placeholder `{learning_rate}`") && err.contains("params.learning_rate"), "{err}");
        assert!(check_names("{width}", Builtins::SEED, &["width"], false).is_ok());
        assert!(check_names("--stop-at={samples}", Builtins::SEED, &[], true).is_ok());
        let err = check_names("{samples}", Builtins::SEED, &[], false).unwrap_err();
        assert!(err.contains("successive halving"), "{err}");
        let err = check_names("{lr}", Builtins::SEED, &["width"], false).unwrap_err();
        assert!(err.contains("no `lr` axis"), "{err}");
    }

    #[test]
    fn user_parameters_fill_placeholders_and_the_environment() {
        let mut p = params();
        p.builtins = Builtins::SEED;
        p.named.insert("params.width".into(), 512.into());
        p.named.insert("params.act".into(), "gelu".into());
        p.named.insert("task.noise.sigma".into(), 2.0.into());
        assert_eq!(render("--w={width} --a={act} s{seed}", &p, &at(TrialId(0), 1)).unwrap(), "--w=512 --a=gelu s7");
        assert!(render("{lr}", &p, &at(TrialId(0), 1)).is_err(), "lr is not carried");
        let env = env_vars(&p, &at(TrialId(0), 1));
        assert!(env.contains(&("KAPPA_PARAM_WIDTH".to_string(), "512".to_string())));
        assert!(env.contains(&("KAPPA_PARAM_ACT".to_string(), "gelu".to_string())));
        assert!(env.contains(&("KAPPA_SEED".to_string(), "7".to_string())));
        assert!(!env.iter().any(|(k, _)| k == "KAPPA_LR" || k.contains("SIGMA")), "{env:?}");
    }

    #[test]
    fn environment_names_every_value() {
        let env = env_vars(&params(), &at(TrialId(0), 1));
        assert!(env.contains(&("KAPPA_LR".to_string(), "0.001".to_string())));
        assert!(env.contains(&("KAPPA_BATCH_SIZE".to_string(), "64".to_string())));
        assert!(env.contains(&("KAPPA_TRIAL_DIR".to_string(), "/t/dir".to_string())));
        assert!(env.contains(&("KAPPA_LR_SCHEDULE".to_string(), "constant".to_string())));
        assert_eq!(env.len(), PLACEHOLDERS.len() + SCHEDULE_PLACEHOLDERS.len() + 1);
    }

    #[test]
    fn a_parameter_named_like_a_schedule_placeholder_keeps_its_name() {
        let mut p = params();
        p.named.insert("params.lr_warmup".into(), 500.into());
        assert_eq!(render("--warmup {lr_warmup}", &p, &at(TrialId(0), 1)).unwrap(), "--warmup 500");
        let env = env_vars(&p, &at(TrialId(0), 1));
        assert!(env.contains(&("KAPPA_PARAM_LR_WARMUP".to_string(), "500".to_string())));
        assert!(!env.iter().any(|(k, _)| k == "KAPPA_LR_WARMUP"), "{env:?}");
    }

    #[test]
    fn the_schedule_fills_its_placeholders_and_the_environment() {
        let schedule = crate::task::LrSchedule::Step { at: vec![0.5, 0.75], factor: 0.1, warmup: 0.05 };
        let a = Attempt { schedule: &schedule, ..at(TrialId(0), 1) };
        let line = "--sched {lr_schedule} --w {lr_warmup} --at {lr_at} --f {lr_factor} --m {lr_min_factor}";
        assert_eq!(render(line, &params(), &a).unwrap(), "--sched step --w 0.05 --at 0.5,0.75 --f 0.1 --m 1");
        check_names(line, Builtins::ALL, &[], false).unwrap();
        let env = env_vars(&params(), &a);
        let json = &env.iter().find(|(k, _)| k == "KAPPA_LR_SCHEDULE_JSON").unwrap().1;
        let back: crate::task::LrSchedule = serde_json::from_str(json).unwrap();
        assert_eq!(back, schedule);
        assert!(env.contains(&("KAPPA_LR_WARMUP".to_string(), "0.05".to_string())));
    }
}

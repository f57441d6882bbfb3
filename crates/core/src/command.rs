//! Argument templates of `kind = "command"` tasks: `{lr}`-style placeholders and `KAPPA_*`
//! environment variables. Checked when the sweep file is read, filled in by the worker.
//!
//! Placeholders: `{optimizer}`, `{batch_size}`, `{lr}`, `{beta1}`, `{beta2}`, `{eps}`,
//! `{weight_decay}`, `{seed}`, `{trial_id}`, `{attempt}`. `{{` and `}}` stand for literal braces.
//! Numbers are written in Rust's shortest round-trip form (`0.001`, `1e-8`), which Python's
//! `float()` and every other common parser reads back exactly.

use crate::id::TrialId;
use crate::params::Hyperparams;

/// Every placeholder name, in the order `KAPPA_*` variables are listed.
pub const PLACEHOLDERS: [&str; 10] =
    ["optimizer", "batch_size", "lr", "beta1", "beta2", "eps", "weight_decay", "seed", "trial_id", "attempt"];

/// The value of every placeholder for one attempt.
pub fn values(params: &Hyperparams, id: TrialId, attempt: u32) -> [(&'static str, String); 10] {
    [
        ("optimizer", params.optimizer.as_str().to_string()),
        ("batch_size", params.batch_size.to_string()),
        ("lr", params.lr.to_string()),
        ("beta1", params.beta1.to_string()),
        ("beta2", params.beta2.to_string()),
        ("eps", params.eps.to_string()),
        ("weight_decay", params.weight_decay.to_string()),
        ("seed", params.seed.to_string()),
        ("trial_id", id.to_string()),
        ("attempt", attempt.to_string()),
    ]
}

/// The `KAPPA_*` environment of an attempt: `KAPPA_LR=0.001`, `KAPPA_TRIAL_ID=…`, ….
pub fn env_vars(params: &Hyperparams, id: TrialId, attempt: u32) -> Vec<(String, String)> {
    values(params, id, attempt).into_iter().map(|(k, v)| (format!("KAPPA_{}", k.to_uppercase()), v)).collect()
}

/// Checks a template: every `{name}` is a known placeholder and braces are balanced.
pub fn check(template: &str) -> Result<(), String> {
    expand(template, |name| PLACEHOLDERS.contains(&name).then(String::new)).map(|_| ())
}

/// Fills a template in with one attempt's values.
pub fn render(template: &str, params: &Hyperparams, id: TrialId, attempt: u32) -> Result<String, String> {
    let vals = values(params, id, attempt);
    expand(template, |name| vals.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()))
}

fn expand(template: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
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
            let value = lookup(name).ok_or_else(|| {
                format!(
                    "unknown placeholder `{{{name}}}` in \"{template}\"; known: {}",
                    PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
                )
            })?;
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

    fn params() -> Hyperparams {
        Hyperparams {
            optimizer: OptimizerKind::AdamW,
            batch_size: 64,
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            seed: 7,
        }
    }

    #[test]
    fn placeholders_are_filled_in_and_braces_escaped() {
        let id = TrialId(0x0102030405060708);
        let s = render("--lr={lr} b{batch_size} {optimizer} {{x}} s{seed}/{attempt}", &params(), id, 2).unwrap();
        assert_eq!(s, "--lr=0.001 b64 adamw {x} s7/2");
        assert_eq!(render("{trial_id}", &params(), id, 1).unwrap(), id.to_string());
    }

    #[test]
    fn bad_templates_are_refused_with_the_reason() {
        assert!(check("{lr}{beta1}").is_ok());
        assert!(check("{learning_rate}").unwrap_err().contains("unknown placeholder `{learning_rate}`"));
        assert!(check("{lr").unwrap_err().contains("unclosed"));
        assert!(check("lr}").unwrap_err().contains("unmatched"));
    }

    #[test]
    fn environment_names_every_value() {
        let env = env_vars(&params(), TrialId(0), 1);
        assert!(env.contains(&("KAPPA_LR".to_string(), "0.001".to_string())));
        assert!(env.contains(&("KAPPA_BATCH_SIZE".to_string(), "64".to_string())));
        assert_eq!(env.len(), PLACEHOLDERS.len());
    }
}

//! The `[execution]` table, and durations as sweep files and flags write them.

use super::error::{Ctx, Seg, k};
use super::raw::RawExecution;
use super::{Execution, SpecError};
use crate::trial::{FailureClass, RetryPolicy};
use std::time::Duration;

pub(super) fn validate_execution(ctx: &Ctx<'_>, raw: RawExecution) -> Result<Execution, SpecError> {
    let mut e = Execution::default();
    let path = [k("execution"), k("retries")];
    let count = |path: &[Seg], v: &toml::Value| -> Result<u32, SpecError> {
        v.as_integer()
            .and_then(|i| u32::try_from(i).ok())
            .filter(|&i| i <= 1000)
            .ok_or_else(|| ctx.err(path, format!("retries must be a whole number from 0 to 1000, got {v}")))
    };
    match &raw.retries {
        None => {}
        Some(toml::Value::Table(t)) => {
            for (class, v) in t {
                let p = [k("execution"), k("retries"), k(class)];
                let n = count(&p, v)?;
                match class.parse::<FailureClass>().map_err(|m| ctx.err(&p, m))? {
                    FailureClass::Error => e.retries.error = n,
                    FailureClass::Crash => e.retries.crash = n,
                    FailureClass::Timeout => e.retries.timeout = n,
                    FailureClass::Lost => e.retries.lost = n,
                }
            }
        }
        Some(v) => e.retries = RetryPolicy::uniform(count(&path, v)?),
    }
    if let Some(b) = raw.failure_budget {
        if b == 0 {
            return Err(ctx.err(&[k("execution"), k("failure_budget")], "failure_budget must be at least 1"));
        }
        e.failure_budget = Some(b);
    }
    if let Some(t) = raw.timeout {
        e.timeout = Some(parse_duration(&t).map_err(|m| ctx.err(&[k("execution"), k("timeout")], m))?);
    }
    if let Some(r) = raw.resources {
        if r.cpus == 0 {
            return Err(ctx.err(&[k("execution"), k("resources"), k("cpus")], "cpus must be at least 1"));
        }
        e.cpus = r.cpus;
        e.gpus = r.gpus;
    }
    if let Some(m) = raw.max_trials {
        if m == 0 {
            return Err(ctx.err(&[k("execution"), k("max_trials")], "max_trials must be at least 1"));
        }
        e.max_trials = m;
    }
    Ok(e)
}

/// Parses `"90s"`, `"10m"`, `"2h"`, `"500ms"`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!(r#"duration {s:?} must be a number with a unit, like "90s", "10m" or "2h""#))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!("unknown duration unit {other:?} in {s:?} (use ms, s, m or h)"));
        }
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("duration {s:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

//! Numbers as a sweep file writes them: a TOML number as a real, and the values of a range axis
//! (`{ log = [lo, hi], num = n }`, `{ linspace = … }`).

use super::SpecError;
use super::error::{Ctx, Seg, k};
use super::raw::RawRange;
use crate::grid::spaced;

/// The values of a range axis `{ log = [lo, hi], num = n }` or `{ linspace = [lo, hi], num = n }`,
/// rounded to whole numbers when `whole`.
pub(super) fn spaced_values(ctx: &Ctx<'_>, path: &[Seg], range: &RawRange, whole: bool) -> Result<Vec<f64>, SpecError> {
    let sub = |key: &str| {
        let mut p = path.to_vec();
        p.push(k(key));
        p
    };
    if let Some(key) = range.unknown.keys().next() {
        return Err(ctx
            .err(&sub(key), format!("unknown key `{key}` in a range axis (expected `log` or `linspace`, and `num`)")));
    }
    let (kind, log, ends) = match (&range.log, &range.linspace) {
        (Some(_), Some(_)) => {
            return Err(ctx.err(path, "give either `log` or `linspace`, not both"));
        }
        (Some(ends), None) => ("log", true, ends),
        (None, Some(ends)) => ("linspace", false, ends),
        (None, None) => {
            return Err(ctx.err(path, "a range axis needs `log = [lo, hi]` or `linspace = [lo, hi]`, and `num`"));
        }
    };
    let ends = match ends {
        toml::Value::Array(a) if a.len() == 2 => {
            let mut out = [0.0; 2];
            for (i, v) in a.iter().enumerate() {
                out[i] = as_f64(v).ok_or_else(|| {
                    let mut p = sub(kind);
                    p.push(Seg::Index(i));
                    ctx.err(&p, "range ends must be numbers")
                })?;
            }
            out
        }
        _ => {
            return Err(ctx.err(&sub(kind), format!("`{kind}` must be a list of two numbers [lo, hi]")));
        }
    };
    let num = match &range.num {
        Some(toml::Value::Integer(n)) if *n >= 1 && *n <= 1_000_000 => *n as usize,
        Some(_) => {
            return Err(ctx.err(&sub("num"), "`num` must be a whole number from 1 to 1000000"));
        }
        None => {
            return Err(ctx.err(path, format!("a `{kind}` range needs `num`, the number of values")));
        }
    };
    if !(ends[0].is_finite() && ends[1].is_finite()) {
        return Err(ctx.err(&sub(kind), "range ends must be finite"));
    }
    if log && !(ends[0] > 0.0 && ends[1] > 0.0) {
        return Err(ctx.err(&sub(kind), format!("a log range needs positive ends, got [{}, {}]", ends[0], ends[1])));
    }
    let mut values = spaced(ends[0], ends[1], num, log);
    if whole {
        for v in &mut values {
            *v = v.round();
        }
    }
    Ok(values)
}

/// A TOML number as a real.
pub(super) fn as_f64(v: &toml::Value) -> Option<f64> {
    match v {
        toml::Value::Float(f) => Some(*f),
        toml::Value::Integer(i) => Some(*i as f64),
        _ => None,
    }
}

//! Reading a sweep file as `run`, `plan` and `submit` do.

use crate::exit::invalid;
use kappa_core::Sweep;
use std::path::Path;

/// Reads and validates a sweep file; every problem is an invalid-input error naming the file
/// (and, for an invalid sweep, the key, line and column).
pub fn load(path: &Path) -> anyhow::Result<(Sweep, String)> {
    let shown = path.display().to_string();
    if path.is_dir() {
        return Err(invalid(format!("{shown} is a directory, not a sweep file")));
    }
    let bytes = std::fs::read(path).map_err(|e| invalid(format!("cannot read sweep file {shown}: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|_| invalid(format!("sweep file {shown} is not UTF-8 text")))?;
    let sweep = Sweep::parse(&shown, &text).map_err(|e| invalid(e.to_string()))?;
    Ok((sweep, text))
}

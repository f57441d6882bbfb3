//! What the spec tests share: their base sweep and the helpers around it.

use kappa_core::{Plan, SpecError, Sweep, TrialId};

/// A base sweep's text: an empty first line, `version`, `name = $name`, then `[task]` (an
/// optimizer on a 4-d quadratic with Gaussian noise) through `samples` on line 11, then `$rest`.
/// A literal, so that a test's base sweep is a `const` whose lines are those its expected errors name.
#[allow(unused_macros)] // not every test file builds on the base sweep
macro_rules! sweep {
    ($name:literal, $rest:literal) => {
        concat!(
            "\nversion = 1\nname = \"",
            $name,
            "\"\n\n[task]\nkind = \"optimizer\"\n",
            "landscape = { kind = \"quadratic\", eigenvalues = [0.5, 1.0, 2.0, 4.0] }\n",
            "noise = { kind = \"gaussian\", sigma = 1.0 }\nx0 = 0.5\npaths = 64\nsamples = 10_000\n",
            $rest
        )
    };
}
#[allow(unused_imports)]
pub(crate) use sweep;

/// Parses a sweep file's text as `sweep.toml`.
pub fn parse(text: &str) -> Result<Sweep, SpecError> {
    Sweep::parse("sweep.toml", text)
}

/// The ids of a valid sweep's trials, in plan order.
pub fn ids(text: &str) -> Vec<TrialId> {
    let s = parse(text).unwrap_or_else(|e| panic!("{e}"));
    Plan::new(&s, "v").trials().map(|t| t.id).collect()
}

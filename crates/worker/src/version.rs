//! The code versions a worker computes with: what trial ids carry and what it registers.

use kappa_core::{CodeVersion, TaskSpec};

/// The version of the code that computes `task`'s results, part of its trial ids: simulations
/// are `kappa_sim::VERSION`, training `kappa_train::VERSION`; commands and noops have none (no
/// code of kappa's computes them, so an upgrade never re-runs them).
pub fn code_version(task: &TaskSpec) -> CodeVersion {
    match task {
        TaskSpec::Optimizer(_) | TaskSpec::Sde(_) => CodeVersion::code(sim_version()),
        TaskSpec::Train(_) => CodeVersion::code(kappa_train::VERSION),
        TaskSpec::Command(_) | TaskSpec::Noop { .. } => CodeVersion::NONE,
    }
}

/// The code versions this build computes with, as a worker registers them.
pub fn code_versions() -> Vec<String> {
    vec![sim_version().to_string(), kappa_train::VERSION.to_string()]
}

/// Names the simulator's version as something else, for tests of upgrades and mixed-version
/// clusters only (it changes nothing that is computed, only what this process claims).
const TEST_SIM_VERSION: &str = "KAPPA_TEST_SIM_VERSION";

/// `kappa_sim::VERSION`, or what `KAPPA_TEST_SIM_VERSION` names.
fn sim_version() -> &'static str {
    static VERSION: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| match std::env::var(TEST_SIM_VERSION) {
        Ok(v) if !v.is_empty() => {
            const CLAIM: &str = "this process claims a simulator version it does not have (tests only)";
            // Commands without a log subscriber (plan, report, status) still say so.
            if tracing::dispatcher::has_been_set() {
                tracing::warn!(variable = TEST_SIM_VERSION, version = %v, "{CLAIM}");
            } else {
                eprintln!("warning: {TEST_SIM_VERSION}={v}: {CLAIM}");
            }
            Box::leak(v.into_boxed_str())
        }
        _ => kappa_sim::VERSION,
    })
}

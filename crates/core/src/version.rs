//! Code versions: which code computes a trial's result, part of its id, recorded by each state
//! directory at its first plan.
//!
//! A simulation's result depends on the simulator (`kappa-sim/3`), a native training's on the
//! trainer (`kappa-train/1`); a command's or a noop's on nothing of kappa's, so their ids carry no
//! version and a kappa upgrade never re-runs them. A state directory records the version its ids
//! were made with; every later plan, report and export of it uses the recorded one, so a new
//! binary reads and resumes an old directory. [`choose`] is the one rule for that choice.

use crate::task::TaskSpec;
use std::fmt;

/// The version of the code a trial's result depends on, or none (commands, noop).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CodeVersion(Option<String>);

/// How a store writes a [`CodeVersion::NONE`].
const NONE_TEXT: &str = "none";

impl CodeVersion {
    /// No code of kappa's computes the result (commands, noop): ids carry no version.
    pub const NONE: CodeVersion = CodeVersion(None);

    /// The version `v` of the code that computes the result.
    pub fn code(v: &str) -> CodeVersion {
        CodeVersion(Some(v.to_string()))
    }

    /// The version, if some code of kappa's computes the result.
    pub fn get(&self) -> Option<&str> {
        self.0.as_deref()
    }

    /// Which code it names, without the version: `kappa-sim` of `kappa-sim/3`.
    pub fn code_name(&self) -> Option<&str> {
        self.get().map(|v| v.split_once('/').map_or(v, |(name, _)| name))
    }

    /// Parses what [`fmt::Display`] wrote (a store's record).
    pub fn from_record(text: &str) -> CodeVersion {
        if text == NONE_TEXT { CodeVersion::NONE } else { CodeVersion::code(text) }
    }

    /// The version ids of a task of kind `kind` carried before state directories recorded
    /// theirs (kappa up to schema 2): the trainer's for `train`, the simulator's for every other
    /// kind, commands and noop included. Frozen: these are what old stores' ids were made with.
    pub fn legacy(kind: &str) -> CodeVersion {
        CodeVersion::code(if kind == "train" { "kappa-train/1" } else { "kappa-sim/3" })
    }

    /// [`CodeVersion::legacy`] for a task.
    pub fn legacy_of(task: &TaskSpec) -> CodeVersion {
        CodeVersion::legacy(task.kind_name())
    }
}

impl From<&str> for CodeVersion {
    fn from(v: &str) -> CodeVersion {
        CodeVersion::code(v)
    }
}

impl fmt::Display for CodeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get().unwrap_or(NONE_TEXT))
    }
}

/// A state directory planned with other code than the running binary's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "its trials were computed with {recorded} and this kappa computes {current}: new results would not be \
     comparable with the finished ones. Run it with the kappa that planned it, or pass --rerun-on-new-version \
     to plan it afresh (every trial runs again; the old results stay in the store, outside the plan)"
)]
pub struct VersionMismatch {
    /// The version the state directory recorded.
    pub recorded: CodeVersion,
    /// The running code's version.
    pub current: CodeVersion,
}

/// How a plan treats a state directory whose recorded version differs from the running code's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnNewVersion {
    /// Refuse ([`VersionMismatch`]): this process computes the trials itself (`kappa run`).
    Refuse,
    /// Keep the recorded version: the trials wait for workers that compute with it (a
    /// coordinator, whose workers may run other builds).
    Keep,
    /// Plan afresh with the running code's version (`--rerun-on-new-version`).
    Rerun,
}

/// The version a plan's ids are made with: the one its state directory recorded (`None`: never
/// planned), unless that is another version of the code `current` names (the running code's
/// version for the sweep's task): then `on_new` decides. A task no code of kappa's computes
/// (commands, noop) always keeps what was recorded, so its ids stay whatever runs it. A record
/// of other code (none, or the simulator's for a sweep that became a training) takes `current`:
/// none of the old trials can be in the new plan.
pub fn choose(
    recorded: Option<&CodeVersion>,
    current: &CodeVersion,
    on_new: OnNewVersion,
) -> Result<CodeVersion, VersionMismatch> {
    let Some(recorded) = recorded else { return Ok(current.clone()) };
    if current.get().is_none() {
        return Ok(recorded.clone());
    }
    if recorded == current || recorded.code_name() != current.code_name() || on_new == OnNewVersion::Rerun {
        return Ok(current.clone());
    }
    match on_new {
        OnNewVersion::Keep => Ok(recorded.clone()),
        _ => Err(VersionMismatch { recorded: recorded.clone(), current: current.clone() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIM3: &str = "kappa-sim/3";
    const SIM4: &str = "kappa-sim/4";

    #[test]
    fn a_fresh_directory_takes_the_running_version() {
        for on_new in [OnNewVersion::Refuse, OnNewVersion::Keep, OnNewVersion::Rerun] {
            assert_eq!(choose(None, &SIM4.into(), on_new), Ok(SIM4.into()));
            assert_eq!(choose(None, &CodeVersion::NONE, on_new), Ok(CodeVersion::NONE));
        }
    }

    #[test]
    fn a_simulation_planned_with_other_code_is_refused_kept_or_rerun() {
        let old = CodeVersion::code(SIM3);
        let err = choose(Some(&old), &SIM4.into(), OnNewVersion::Refuse).unwrap_err();
        assert!(err.to_string().contains("kappa-sim/3") && err.to_string().contains("--rerun-on-new-version"));
        assert_eq!(choose(Some(&old), &SIM4.into(), OnNewVersion::Keep), Ok(old.clone()));
        assert_eq!(choose(Some(&old), &SIM4.into(), OnNewVersion::Rerun), Ok(SIM4.into()));
        assert_eq!(choose(Some(&old), &SIM3.into(), OnNewVersion::Refuse), Ok(old));
    }

    #[test]
    fn commands_keep_the_ids_they_were_planned_with() {
        // A store made before commands stopped carrying the simulator's version keeps its ids.
        let legacy = CodeVersion::legacy("command");
        assert_eq!(legacy.get(), Some(SIM3));
        assert_eq!(choose(Some(&legacy), &CodeVersion::NONE, OnNewVersion::Refuse), Ok(legacy.clone()));
        // Even when asked to plan afresh: no new code changes what they compute.
        assert_eq!(choose(Some(&legacy), &CodeVersion::NONE, OnNewVersion::Rerun), Ok(legacy.clone()));
        // A command sweep whose task became a simulation takes the simulator's version.
        assert_eq!(choose(Some(&CodeVersion::NONE), &SIM3.into(), OnNewVersion::Refuse), Ok(SIM3.into()));
        // An old command store (its ids carried kappa-sim/3) edited into a simulation after a
        // simulator upgrade looks like an old simulation: refused, as one would be.
        assert_eq!(choose(Some(&legacy), &SIM4.into(), OnNewVersion::Refuse).unwrap_err().recorded, legacy);
    }

    #[test]
    fn a_record_of_other_code_is_no_version_change() {
        // A simulation sweep edited into a training one: none of its trials is in the new plan.
        let train = CodeVersion::code("kappa-train/1");
        assert_eq!(choose(Some(&SIM3.into()), &train, OnNewVersion::Refuse), Ok(train.clone()));
        assert_eq!(choose(Some(&train), &SIM4.into(), OnNewVersion::Keep), Ok(SIM4.into()));
        assert_eq!(CodeVersion::code(SIM3).code_name(), Some("kappa-sim"));
        assert_eq!(CodeVersion::NONE.code_name(), None);
    }

    #[test]
    fn records_round_trip() {
        for v in [CodeVersion::NONE, CodeVersion::code(SIM3)] {
            assert_eq!(CodeVersion::from_record(&v.to_string()), v);
        }
        assert_eq!(CodeVersion::legacy("train").get(), Some("kappa-train/1"));
    }
}

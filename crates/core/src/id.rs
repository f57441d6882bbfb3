//! Trial identity: a content hash of everything that determines a trial's result.
//!
//! # Canonical form
//!
//! A trial's id is the first 8 bytes (16 hex digits) of SHA-256 over the UTF-8 text of this JSON
//! value, serialised compactly with object keys sorted (serde_json's default map is ordered):
//!
//! ```json
//! {"canon":1,"params":{...Hyperparams...},"sim":"<code version>","task":{...TaskSpec...}}
//! ```
//!
//! `sim` is the [`CodeVersion`] of the code that computes the result (the simulator's or the
//! trainer's); a task no code of kappa's computes (a command, a noop) has none, and its value has
//! no `sim` key, so a kappa upgrade keeps its ids. (Before state directories recorded their
//! version, commands and noop carried the simulator's: such stores keep those ids, see
//! [`crate::version`].)
//!
//! `task` is the trial's effective typed task (`[task]` with its `task.*` axis values applied)
//! *after* defaults are filled in, and `params` holds every built-in hyperparameter the trial
//! carries, including the seed, and its user parameters (`"params.width": 512`), but not its
//! task axes: those are in `task`, so a value gives the same id wherever it was written. Numbers are written by serde_json (shortest round-trip form),
//! so `1e-3` and `0.001` in a sweep file give the same id. Because the value is built from typed
//! structs and keys are sorted, neither the order of keys in the file nor the order of grid axes
//! changes an id; changing one value changes exactly the trials that carry it. Execution settings
//! (retries, timeout) are not part of the id: they do not change what a trial computes.

use crate::params::Params;
use crate::task::TaskSpec;
use crate::version::CodeVersion;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// Version of the canonical form itself; bump it only with a migration note.
pub const CANONICAL_FORM: u32 = 1;

/// A trial's content id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrialId(pub u64);

impl fmt::Display for TrialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for TrialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrialId({self})")
    }
}

/// Error for a malformed trial id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid trial id `{0}` (expected 16 hex digits)")]
pub struct InvalidTrialId(pub String);

impl FromStr for TrialId {
    type Err = InvalidTrialId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 16 {
            return Err(InvalidTrialId(s.to_string()));
        }
        u64::from_str_radix(s, 16).map(TrialId).map_err(|_| InvalidTrialId(s.to_string()))
    }
}

impl Serialize for TrialId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TrialId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The canonical JSON of a task (defaults filled in, keys sorted).
pub fn canonical_task(task: &TaskSpec) -> serde_json::Value {
    // Serialising plain data structs to a JSON value cannot fail (no non-string map keys).
    serde_json::to_value(task).unwrap_or(serde_json::Value::Null)
}

/// Computes a trial id from the canonical task JSON, the parameters and the code version.
pub fn trial_id(task: &serde_json::Value, params: &Params, version: &CodeVersion) -> TrialId {
    IdHasher::new(task, version).id(params)
}

/// Makes the ids of many trials of one task and code version: the canonical form's text around
/// the parameters is written once, and each id hashes its parameters straight into SHA-256
/// (the same bytes as the [canonical form](self), keys in order: `canon`, `params`, `sim`,
/// `task`).
#[derive(Clone, Debug)]
pub struct IdHasher {
    /// `,"sim":…,"task":…}`.
    suffix: String,
}

impl IdHasher {
    /// The hasher of trials of `task` (canonical JSON) made with `version`.
    pub fn new(task: &serde_json::Value, version: &CodeVersion) -> IdHasher {
        let sim = version.get().map(|v| format!(",\"sim\":{}", serde_json::Value::from(v))).unwrap_or_default();
        IdHasher { suffix: format!("{sim},\"task\":{task}}}") }
    }

    /// The id of the trial with parameters `params`.
    pub fn id(&self, params: &Params) -> TrialId {
        struct Hashing(Sha256);
        impl std::io::Write for Hashing {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.update(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut h = Hashing(Sha256::new());
        h.0.update(format!("{{\"canon\":{CANONICAL_FORM},\"params\":").as_bytes());
        // Writing plain values into a hasher cannot fail.
        let _ = serde_json::to_writer(&mut h, &params.identity_ref());
        h.0.update(self.suffix.as_bytes());
        let digest = h.0.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        TrialId(u64::from_be_bytes(first))
    }
}

/// SHA-256 of `text`, first 16 bytes in hex: a content key for deduplicated blobs.
pub fn content_hash(text: &str) -> String {
    Sha256::digest(text.as_bytes())[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The canonical form as first written: a JSON value built and printed, then hashed.
    fn reference_id(task: &serde_json::Value, params: &Params, version: &CodeVersion) -> TrialId {
        let mut canon = serde_json::json!({ "canon": CANONICAL_FORM, "params": params.identity(), "task": task });
        if let (Some(v), Some(map)) = (version.get(), canon.as_object_mut()) {
            map.insert("sim".into(), v.into());
        }
        let digest = Sha256::digest(canon.to_string().as_bytes());
        TrialId(u64::from_be_bytes(digest[..8].try_into().unwrap()))
    }

    #[test]
    fn the_hasher_gives_the_ids_of_the_canonical_form() {
        use crate::params::{Builtins, Hyperparams, OptimizerKind};
        let task = serde_json::json!({"kind": "command", "argv": ["python", "t.py", "--x=\"1\""], "env": {"A": "é"}});
        let mut named = std::collections::BTreeMap::new();
        named.insert("params.width".to_string(), serde_json::json!(512));
        named.insert("params.act".to_string(), serde_json::json!("gelu"));
        named.insert("params.layers".to_string(), serde_json::json!([64, 64.5, true]));
        named.insert("task.steps".to_string(), serde_json::json!(1000));
        let hyper = Hyperparams { optimizer: OptimizerKind::Adam, lr: 3e-4, seed: 7, ..Hyperparams::defaults() };
        let all = Params { hyper: hyper.clone(), builtins: Builtins::ALL, named: named.clone() };
        let some = Params { hyper: hyper.clone(), builtins: Builtins::SEED, named };
        for params in [&all, &some, &Params::from(hyper)] {
            for version in [CodeVersion::NONE, CodeVersion::code("kappa-sim/3")] {
                assert_eq!(trial_id(&task, params, &version), reference_id(&task, params, &version));
            }
        }
    }

    #[test]
    fn display_and_parse_round_trip() {
        let id = TrialId(0x00ab_cdef_0123_4567);
        assert_eq!(id.to_string(), "00abcdef01234567");
        assert_eq!("00abcdef01234567".parse::<TrialId>().unwrap(), id);
        assert!("xyz".parse::<TrialId>().is_err());
        assert!("00abcdef0123456g".parse::<TrialId>().is_err());
    }
}

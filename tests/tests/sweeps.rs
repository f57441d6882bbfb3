//! Every example sweep shipped under sweeps/ parses and validates.

use kappa_core::Sweep;
use std::path::Path;

#[test]
fn every_example_sweep_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sweeps");
    let mut checked = 0;
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&p).unwrap();
                let sweep = Sweep::parse(&p.display().to_string(), &text).unwrap_or_else(|e| panic!("{e}"));
                assert!(!sweep.grid.is_empty(), "{} has no trial", p.display());
                checked += 1;
            }
        }
    }
    assert!(checked >= 1, "no sweep files found under {}", dir.display());
}

/// Trial ids are a user contract: every example sweep as it was before task and parameter axes
/// existed (copied to `tests/fixtures/ids/`, with the ids that build gave it) keeps every id
/// (command sweeps: in the state directories made then, which record the version their ids carry).
#[test]
fn ids_made_before_named_axes_are_kept() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/ids");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        let sweep = Sweep::parse(&p.display().to_string(), &text).unwrap_or_else(|e| panic!("{e}"));
        // A fresh plan keeps the ids of simulations and training; commands no longer carry the
        // simulator's version, and a store made before keeps theirs by recording it.
        let current = kappa_worker::code_version(&sweep.task);
        let version = if current.get().is_some() { current } else { kappa_core::CodeVersion::legacy_of(&sweep.task) };
        let plan = kappa_core::Plan::new(&sweep, version);
        let ids: Vec<String> = plan.trials().map(|t| t.id.to_string()).collect();
        let recorded = std::fs::read_to_string(p.with_extension("ids")).unwrap();
        let recorded: Vec<&str> = recorded.split_whitespace().collect();
        assert_eq!(ids, recorded, "{} changed its trial ids", p.display());
        checked += 1;
    }
    assert!(checked >= 18, "only {checked} recorded sweeps under {}", dir.display());
}

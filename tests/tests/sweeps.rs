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

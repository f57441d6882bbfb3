//! The `kappa` binary's own surface: help text and exit codes. (End-to-end runs live in tests/.)

use std::process::Command;

fn kappa(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kappa")).args(args).output().expect("run kappa")
}

#[test]
fn help_documents_commands_and_exit_codes() {
    let out = kappa(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["run", "plan", "status", "export", "Exit codes", "130"] {
        assert!(text.contains(needle), "--help lacks {needle:?}:\n{text}");
    }
    let out = kappa(&["run", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("--state") && text.contains("--workers") && text.contains("resumes"), "{text}");
}

#[test]
fn usage_errors_exit_with_invalid_input() {
    let out = kappa(&["run"]);
    assert_eq!(out.status.code(), Some(2));
    let out = kappa(&["export", "--format", "xml"]);
    assert_eq!(out.status.code(), Some(2));
    let out = kappa(&["run", "sweeps/quickstart.toml", "--workers", "0"]);
    assert_eq!(out.status.code(), Some(2));
}

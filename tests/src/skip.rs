//! Tests that cannot really run on this machine because an outside tool is missing (PyTorch,
//! SLURM, Chromium, promtool, a GPU). Such a test returns early, and passes, so the test
//! harness's summary alone would count it as passed and its output capture would swallow any
//! word about it. [`skip`] makes it visible: after the summary of the test binary, a list names
//! every test that did not run, what was missing and how to get it. Under `CI=true` a missing
//! tool is a failure instead: `.ci/run` installs every one.

use std::io::Write;
use std::sync::{Mutex, Once};

/// The tests of this binary that skipped, as lines of the list printed at exit.
static SKIPPED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Whether tests that need outside tools must run them: `CI` is set (`.ci/run` sets `CI=true`),
/// to anything but empty, `0` or `false`.
pub fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

/// Whether `python3` is on this machine and imports `modules` (`"torch, tensorboardX"`): what a
/// test that runs Python checks before it runs, and [`skip`]s on when it does not.
pub fn python_imports(modules: &str) -> bool {
    std::process::Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Skips the running test because `missing` is not on this machine; `fix` says how to get it.
/// Under `CI=true` it fails the test instead. The caller returns right after.
pub fn skip(missing: &str, fix: &str) {
    assert!(!required(), "CI=true and {missing}: .ci/run installs it ({fix})");
    skip_here(missing, fix);
}

/// [`skip`] for what no CI machine has either (a GPU, NVRTC, docker compose, network
/// namespaces where the kernel refuses them): listed, never a failure.
pub fn skip_here(missing: &str, fix: &str) {
    let test = std::thread::current().name().unwrap_or("a test").to_string();
    let line = format!("  {test}: {missing} (to run it: {fix})");
    SKIPPED.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    static AT_EXIT: Once = Once::new();
    AT_EXIT.call_once(|| {
        // SAFETY: registers a plain function with no arguments to run at process exit.
        unsafe {
            libc::atexit(report);
        }
    });
}

/// Prints the list after the harness's summary, on the process's real stderr (not the stream
/// the harness captures).
extern "C" fn report() {
    let skipped = SKIPPED.lock().unwrap_or_else(|e| e.into_inner());
    if skipped.is_empty() {
        return;
    }
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|s| s.rsplit_once('-').map_or(s.clone(), |(name, _hash)| name.to_string()))
        .unwrap_or_default();
    let n = skipped.len();
    let text = format!(
        "\nSKIPPED: {n} test{} of `{binary}` passed without running, for want of an outside tool:\n{}\n\
         (`bash .ci/run` installs every tool CI has, a GPU aside, and fails where one is missing.)\n\n",
        if n == 1 { "" } else { "s" },
        skipped.join("\n"),
    );
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

#[cfg(test)]
mod tests {
    /// Set by the test below for the run of this binary it starts.
    const DEMO: &str = "KAPPA_TEST_SKIP_DEMO";

    /// Skips, in the run that the test below starts; elsewhere passes at once.
    #[test]
    fn skip_demo() {
        if std::env::var_os(DEMO).is_some() {
            super::skip_here("a tool this demo pretends is missing", "nothing: it is a demo");
        }
    }

    #[test]
    fn a_skipped_test_is_listed_after_the_harness_summary_on_stderr() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "skip::tests::skip_demo", "--test-threads", "1"])
            .env(DEMO, "1")
            .env_remove("CI")
            .output()
            .unwrap();
        assert!(out.status.success());
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("test result: ok. 1 passed"), "{stdout}");
        assert!(
            stderr.contains("SKIPPED: 1 test of `kappa_tests` passed without running")
                && stderr.contains("skip::tests::skip_demo: a tool this demo pretends is missing (to run it: nothing"),
            "{stderr}"
        );
    }
}

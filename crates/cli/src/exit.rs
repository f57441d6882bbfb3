//! Exit codes (documented in `--help` and the README), and the error kind that selects code 2.

/// Every trial succeeded (or diverged: a divergence is a result).
pub const OK: u8 = 0;
/// An error stopped kappa (I/O, state database, network).
pub const ERROR: u8 = 1;
/// Invalid input: a bad command line, or a sweep file that cannot be read or is invalid.
pub const INVALID_INPUT: u8 = 2;
/// The sweep finished, but some trials failed on every attempt they were allowed.
pub const TRIALS_FAILED: u8 = 3;
/// `kappa report --check`: a rule's verdict differs from what the sweep expects.
pub const CHECK_FAILED: u8 = 4;
/// Interrupted (Ctrl-C or SIGTERM); run the same command again to resume.
pub const INTERRUPTED: u8 = 130;

/// The exit codes as `--help` shows them.
pub const HELP: &str = "\
Exit codes:
  0    every trial succeeded (diverged trials count as results)
  1    an error stopped kappa (I/O, state database, network)
  2    invalid input: bad arguments, a sweep file that is missing, unreadable or invalid, or
       a state directory planned with another simulator version (--rerun-on-new-version)
  3    the sweep finished but some trials failed on every attempt
  4    kappa report --check: a scaling rule's verdict is not the one the sweep expects
  130  interrupted (Ctrl-C / SIGTERM): run the same command again to resume";

/// An error caused by the user's input (exit code 2).
#[derive(Debug)]
pub struct InvalidInput(pub String);

impl std::fmt::Display for InvalidInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidInput {}

/// Wraps a message as an invalid-input error.
pub fn invalid(msg: impl Into<String>) -> anyhow::Error {
    InvalidInput(msg.into()).into()
}

/// The exit code of an error: 2 when the user's input caused it, else 1.
pub fn of(e: &anyhow::Error) -> u8 {
    if e.chain().any(|c| c.is::<InvalidInput>()) { INVALID_INPUT } else { ERROR }
}

//! Waiting for conditions, never for fixed sleeps: [`wait_until`] checks a condition until it
//! holds and, when it gives up, names what it waited for.

use std::fmt;
use std::time::{Duration, Instant};

/// How often a condition is checked.
const POLL: Duration = Duration::from_millis(20);

/// What a condition returns: `true`, or `Some(value)`, once it holds.
pub trait Done {
    /// What the wait returns once the condition holds.
    type Out;
    /// `Some` once it holds.
    fn done(self) -> Option<Self::Out>;
}

impl Done for bool {
    type Out = ();
    fn done(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Done for Option<T> {
    type Out = T;
    fn done(self) -> Option<T> {
        self
    }
}

/// Checks `condition` every 20 ms until it holds (returning what it gave) or `limit` has passed
/// (`None`).
pub fn try_wait_until<D: Done>(limit: Duration, condition: impl FnMut() -> D) -> Option<D::Out> {
    try_wait_every(POLL, limit, condition)
}

/// [`try_wait_until`], checking every `every` (for a condition that is costly to check).
pub fn try_wait_every<D: Done>(every: Duration, limit: Duration, mut condition: impl FnMut() -> D) -> Option<D::Out> {
    let started = Instant::now();
    loop {
        if let Some(out) = condition().done() {
            return Some(out);
        }
        if started.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// [`try_wait_until`], panicking after `limit` with "timed out after LIMIT waiting for WHAT".
/// `what` is formatted only then: [`lazy`] makes one that reads logs at that moment.
pub fn wait_until<D: Done>(what: impl fmt::Display, limit: Duration, condition: impl FnMut() -> D) -> D::Out {
    try_wait_until(limit, condition).unwrap_or_else(|| panic!("timed out after {limit:?} waiting for {what}"))
}

/// A description computed when it is shown (e.g. with the logs as they are when a wait fails).
pub fn lazy(f: impl Fn() -> String) -> impl fmt::Display {
    struct Lazy<F>(F);
    impl<F: Fn() -> String> fmt::Display for Lazy<F> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&(self.0)())
        }
    }
    Lazy(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_returns_what_the_condition_gave_or_names_what_it_waited_for() {
        let mut n = 0;
        assert_eq!(
            wait_until("the third call", Duration::from_secs(5), || {
                n += 1;
                (n == 3).then_some(n)
            }),
            3
        );
        assert_eq!(try_wait_until(Duration::ZERO, || false), None);
        let failed = std::panic::catch_unwind(|| wait_until(lazy(|| "godot".into()), Duration::ZERO, || false));
        let message = failed.unwrap_err().downcast::<String>().unwrap();
        assert_eq!(*message, "timed out after 0ns waiting for godot");
    }
}

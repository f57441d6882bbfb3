//! The settings of a coordinator process.

use kappa_core::SchedulerConfig;
use std::time::Duration;

/// Settings of a coordinator process (each sweep brings its own `[execution]` settings).
#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    /// How often workers renew their leases.
    pub heartbeat_interval: Duration,
    /// A lease not renewed for this long expires (default: 3 missed heartbeats).
    pub lease_timeout: Duration,
    /// Wait before retrying a failed attempt, doubling with each failure (capped at a minute).
    pub retry_backoff: Duration,
    /// Attempts a stopped coordinator left running may still be reported by their workers, which
    /// outlive it (`kappa coordinator`): accept such a report while its lease would be current.
    /// `kappa run`'s workers die with it, so it re-queues them at once instead.
    pub adopt_in_flight: bool,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            heartbeat_interval: Duration::from_secs(5),
            lease_timeout: Duration::from_secs(15),
            retry_backoff: SchedulerConfig::DEFAULT_RETRY_BACKOFF,
            adopt_in_flight: true,
        }
    }
}

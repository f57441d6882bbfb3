//! Structured logs (tracing) on stderr: `--log-level` / `KAPPA_LOG` and `--log-format` for
//! `kappa coordinator` and `kappa worker`; `kappa run` shows only warnings and errors.

use crate::exit::invalid;
use std::str::FromStr;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How logs are written.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line (timestamp, level, target, fields), for log collectors.
    Json,
}

/// Logging flags of long-running processes.
#[derive(clap::Args, Debug, Clone)]
pub struct LogArgs {
    /// What to log: a level (error, warn, info, debug, trace) for kappa's own events, or a
    /// RUST_LOG-style list of `target=level` directives (e.g. `warn,kappa_coordinator=debug`).
    #[arg(long, value_name = "FILTER", env = "KAPPA_LOG", default_value = "info")]
    pub log_level: String,
    /// `text` (default) or `json` lines on stderr.
    #[arg(long, value_name = "FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// kappa's own log targets.
const OWN: [&str; 3] = ["kappa", "kappa_coordinator", "kappa_worker"];

/// The filter a `--log-level` value names: a bare level applies to kappa's own events (other
/// crates stay at `warn`); anything else is read as `target=level` directives.
fn filter(spec: &str) -> anyhow::Result<Targets> {
    let spec = spec.trim();
    let bad = |e: &dyn std::fmt::Display| invalid(format!("--log-level / KAPPA_LOG `{spec}`: {e}"));
    if let Ok(level) = tracing::level_filters::LevelFilter::from_str(spec)
        && !spec.contains('=')
    {
        let mut t = Targets::new().with_default(tracing::Level::WARN);
        for target in OWN {
            t = t.with_target(target, level);
        }
        return Ok(t);
    }
    Targets::from_str(spec).map_err(|e| bad(&e))
}

/// Installs the subscriber of a long-running process.
pub fn init(args: &LogArgs) -> anyhow::Result<()> {
    install(filter(&args.log_level)?, args.log_format);
    Ok(())
}

/// `kappa run`: quiet except for warnings and errors, as text.
pub fn init_quiet() {
    let mut t = Targets::new();
    for target in OWN {
        t = t.with_target(target, tracing::Level::WARN);
    }
    install(t, LogFormat::Text);
}

fn install(filter: Targets, format: LogFormat) {
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(true);
    let registry = tracing_subscriber::registry().with(filter);
    // A second subscriber (there is none in the binary) would be refused; nothing to do then.
    let _ = match format {
        LogFormat::Text => registry.with(fmt).try_init(),
        LogFormat::Json => registry.with(fmt.json().flatten_event(false)).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::filter::LevelFilter;

    #[test]
    fn a_bare_level_is_kappas_and_directives_are_read_as_written() {
        let t = filter("debug").unwrap();
        assert!(t.would_enable("kappa_worker::session", &tracing::Level::DEBUG));
        assert!(!t.would_enable("h2::codec", &tracing::Level::INFO));
        let t = filter("warn,kappa_coordinator=trace").unwrap();
        assert!(t.would_enable("kappa_coordinator::runner", &tracing::Level::TRACE));
        assert!(!t.would_enable("kappa_worker", &tracing::Level::INFO));
        assert_eq!(filter("off").unwrap().default_level(), Some(LevelFilter::WARN));
        let e = filter("kappa=loud").unwrap_err().to_string();
        assert!(e.contains("KAPPA_LOG `kappa=loud`"), "{e}");
    }
}

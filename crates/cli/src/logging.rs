//! Structured logs (tracing) on stderr: `--log-level` / `KAPPA_LOG` and `--log-format` for
//! `kappa coordinator` and `kappa worker`; `kappa run` shows only warnings and errors.
//!
//! What a process tells its operator outside of events (the address it listens on, the
//! dashboard's URL, warnings, the error it exits with) goes through [`out`], [`note`],
//! [`warning`] and [`error`]: as plain lines in text mode, and in JSON mode as one JSON object
//! per line on stderr, shaped like the events (`timestamp`, `level`, `fields` with `message`,
//! `target`), whatever `--log-level` says, so that every line a log collector reads parses.

use crate::exit::invalid;
use serde_json::{Map, Value, json};
use std::io::Write;
use std::str::FromStr;
use std::sync::OnceLock;
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
    // Set first, so that even a bad --log-level is reported in the format asked for.
    let _ = FORMAT.set(args.log_format);
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

/// The format installed ([`LogFormat::Text`] until a subscriber is).
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

fn json_mode() -> bool {
    FORMAT.get() == Some(&LogFormat::Json)
}

/// The target of the lines written outside of events.
const CONSOLE_TARGET: &str = "kappa";

/// One line as a JSON object shaped like the subscriber's events.
fn json_line(level: &str, message: &str, fields: &[(&str, Value)]) -> String {
    use tracing_subscriber::fmt::time::FormatTime;
    let mut timestamp = String::new();
    let _ = tracing_subscriber::fmt::time::SystemTime
        .format_time(&mut tracing_subscriber::fmt::format::Writer::new(&mut timestamp));
    let mut f = Map::new();
    f.insert("message".into(), json!(message));
    for (k, v) in fields {
        f.insert((*k).to_string(), v.clone());
    }
    json!({ "timestamp": timestamp, "level": level, "fields": f, "target": CONSOLE_TARGET }).to_string()
}

/// Writes a line whole (so it does not interleave with events).
fn write_line(mut to: impl Write, line: &str) {
    let _ = to.write_all(format!("{line}\n").as_bytes());
}

fn console(level: &str, message: &str, fields: &[(&str, Value)], text: impl FnOnce()) {
    if json_mode() {
        write_line(std::io::stderr().lock(), &json_line(level, message, fields));
    } else {
        text();
    }
}

/// What the operator (or a supervisor) waits for: on stdout in text mode; an INFO line with
/// `fields` on stderr in JSON mode.
pub fn out(message: &str, fields: &[(&str, Value)]) {
    console("INFO", message, fields, || write_line(std::io::stdout().lock(), message));
}

/// A remark on stderr (an INFO line in JSON mode).
pub fn note(message: &str) {
    console("INFO", message, &[], || write_line(std::io::stderr().lock(), message));
}

/// `warning: ...` on stderr (a WARN line in JSON mode).
pub fn warning(message: &str) {
    console("WARN", message, &[], || write_line(std::io::stderr().lock(), &format!("warning: {message}")));
}

/// `error: ...` on stderr (an ERROR line in JSON mode): how a process says why it exits.
pub fn error(message: &str) {
    console("ERROR", message, &[], || write_line(std::io::stderr().lock(), &format!("error: {message}")));
}

fn install(filter: Targets, format: LogFormat) {
    let _ = FORMAT.set(format);
    if format == LogFormat::Json {
        // A panic's message is one JSON line too (the default hook writes two plain ones).
        std::panic::set_hook(Box::new(|info| {
            write_line(std::io::stderr().lock(), &json_line("ERROR", &format!("kappa panicked: {info}"), &[]));
        }));
    }
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
    fn a_console_line_in_json_is_shaped_like_an_event() {
        let line = json_line("WARN", "no token: \"any\" client", &[("addr", json!("127.0.0.1:1"))]);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["target"], "kappa");
        assert_eq!(v["fields"]["message"], "no token: \"any\" client");
        assert_eq!(v["fields"]["addr"], "127.0.0.1:1");
        let ts = v["timestamp"].as_str().unwrap();
        assert!(ts.len() >= 20 && ts.ends_with('Z') && ts.contains('T'), "{ts}");
        assert!(!line.contains('\n'));
    }

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

//! Where a command trial's metrics come from (`[task] metrics`): the program's stdout lines (JSON
//! objects, Python dicts, or a regular expression with named groups), TensorBoard event files, or
//! a CSV file. Every source yields the same curve points, so nothing downstream knows which one a
//! trial used. Checked when the sweep file is read; read by the worker (`kappa_worker::metrics`).
//!
//! ```toml
//! metrics = { from = "stdout", pattern = "json" }                  # the default: {"loss": 0.41, ...}
//! metrics = { from = "stdout", pattern = "python_dict" }           # {'loss': 0.41, 'epoch': 1.0}
//! metrics = { from = "stdout", pattern = 'Loss: (?P<loss>\S+)' }   # named groups are metrics
//! metrics = { from = "tensorboard", dir = "{trial_dir}/tb", loss = "train/loss" }
//! metrics = { from = "csv", path = "{trial_dir}/metrics.csv", loss = "train_loss", step = "step" }
//! ```

use serde::{Deserialize, Serialize};

/// The name of the loss where a source is not told otherwise.
pub const DEFAULT_LOSS: &str = "loss";

/// Where a command trial's metrics come from. The default (JSON lines on stdout with a `loss`
/// key) is left out of the canonical task, so trial ids of sweeps written before sources
/// existed are unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "lowercase", deny_unknown_fields)]
pub enum MetricsSource {
    /// The program's stdout, line by line.
    Stdout {
        /// How a line is read.
        pattern: LinePattern,
        /// The key (or regex group) that is the loss.
        #[serde(default = "default_loss", skip_serializing_if = "is_default_loss")]
        loss: String,
    },
    /// TensorBoard event files under a directory (and its subdirectories: runs), read as they grow.
    Tensorboard {
        /// The directory, a template with the argv placeholders (`{trial_dir}/tb`); relative to
        /// the command's working directory.
        dir: String,
        /// The scalar tag that is the loss; every other scalar is a metric named by its tag.
        #[serde(default = "default_loss", skip_serializing_if = "is_default_loss")]
        loss: String,
    },
    /// A CSV file with a header line, read as it grows (and again from the start when it is
    /// rewritten, as Lightning's `CSVLogger` does when a new column appears).
    Csv {
        /// The file, a template with the argv placeholders; relative to the working directory.
        path: String,
        /// The column that is the loss; every other numeric column is a metric.
        #[serde(default = "default_loss", skip_serializing_if = "is_default_loss")]
        loss: String,
        /// The column of the step (default: a column named `step`, else the row number).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<String>,
        /// The column of the samples seen (default: a column named `samples`, else step × B).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        samples: Option<String>,
    },
}

impl Default for MetricsSource {
    fn default() -> Self {
        MetricsSource::Stdout { pattern: LinePattern::Json, loss: DEFAULT_LOSS.to_string() }
    }
}

impl MetricsSource {
    /// Whether this is the default source (left out of the canonical task).
    pub fn is_default(&self) -> bool {
        *self == MetricsSource::default()
    }

    /// The name of the loss: a key, regex group, tag or column.
    pub fn loss(&self) -> &str {
        match self {
            MetricsSource::Stdout { loss, .. }
            | MetricsSource::Tensorboard { loss, .. }
            | MetricsSource::Csv { loss, .. } => loss,
        }
    }

    /// The file templates it reads (filled in with the argv placeholders), for their checks.
    pub fn templates(&self) -> Vec<(&'static str, &str)> {
        match self {
            MetricsSource::Stdout { .. } => Vec::new(),
            MetricsSource::Tensorboard { dir, .. } => vec![("dir", dir)],
            MetricsSource::Csv { path, .. } => vec![("path", path)],
        }
    }
}

fn default_loss() -> String {
    DEFAULT_LOSS.to_string()
}

fn is_default_loss(l: &String) -> bool {
    l == DEFAULT_LOSS
}

/// How a stdout line is read: `"json"`, `"python_dict"`, or a regular expression whose named
/// groups are the metrics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum LinePattern {
    /// A JSON object per line (`NaN`/`Infinity` as Python's `json` writes them).
    Json,
    /// A Python dict printed with `print(dict)`: `{'loss': 0.41, 'epoch': 1.0}` (`nan`, `inf`).
    PythonDict,
    /// A regular expression (Rust `regex` syntax, `(?P<name>...)` groups) searched in each line.
    Regex(String),
}

impl From<String> for LinePattern {
    fn from(s: String) -> Self {
        match s.as_str() {
            "json" => LinePattern::Json,
            "python_dict" => LinePattern::PythonDict,
            _ => LinePattern::Regex(s),
        }
    }
}

impl From<LinePattern> for String {
    fn from(p: LinePattern) -> String {
        match p {
            LinePattern::Json => "json".into(),
            LinePattern::PythonDict => "python_dict".into(),
            LinePattern::Regex(r) => r,
        }
    }
}

/// Compiles a metrics regex and checks it has a group named `loss` (the loss name): the message
/// says what is wrong, with the regex parser's own pointer at the position.
pub fn compile_pattern(pattern: &str, loss: &str) -> Result<regex::Regex, String> {
    let re = regex::RegexBuilder::new(pattern)
        .size_limit(1 << 22)
        .build()
        .map_err(|e| format!("invalid regular expression: {e}"))?;
    if !re.capture_names().flatten().any(|n| n == loss) {
        let groups: Vec<String> = re.capture_names().flatten().map(|n| format!("`{n}`")).collect();
        let found = if groups.is_empty() { "it has none".to_string() } else { format!("it has {}", groups.join(", ")) };
        return Err(format!(
            "the pattern needs a group named `{loss}` for the loss, such as `Loss: (?P<{loss}>[0-9.eE+-]+)` (named \
             groups are the metrics; `step` and `samples` groups are the step and the samples seen); {found}"
        ));
    }
    Ok(re)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_left_out_and_others_round_trip() {
        assert!(MetricsSource::default().is_default());
        let sources = [
            MetricsSource::Stdout { pattern: LinePattern::PythonDict, loss: "loss".into() },
            MetricsSource::Stdout { pattern: LinePattern::Regex(r"Loss: (?P<loss>\S+)".into()), loss: "loss".into() },
            MetricsSource::Tensorboard { dir: "{trial_dir}/tb".into(), loss: "train/loss".into() },
            MetricsSource::Csv {
                path: "m.csv".into(),
                loss: "train_loss".into(),
                step: Some("step".into()),
                samples: None,
            },
        ];
        for s in sources {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(serde_json::from_str::<MetricsSource>(&json).unwrap(), s, "{json}");
        }
        let json = serde_json::to_string(&MetricsSource::Tensorboard { dir: "d".into(), loss: "loss".into() }).unwrap();
        assert_eq!(json, r#"{"from":"tensorboard","dir":"d"}"#);
    }

    #[test]
    fn a_pattern_needs_the_loss_group_and_bad_ones_say_where() {
        assert!(compile_pattern(r"Loss: (?P<loss>[0-9.]+)", "loss").is_ok());
        let err = compile_pattern(r"Loss: (?P<lss>[0-9.]+)", "loss").unwrap_err();
        assert!(err.contains("group named `loss`") && err.contains("`lss`"), "{err}");
        let err = compile_pattern(r"Loss: ([0-9.]+)", "loss").unwrap_err();
        assert!(err.contains("it has none"), "{err}");
        let err = compile_pattern(r"Loss: (?P<loss>[0-9.+)", "loss").unwrap_err();
        assert!(err.contains("invalid regular expression") && err.contains('^'), "{err}");
    }
}

//! Rendering a [`Report`](crate::Report): the terminal table, `summary.json`, PNG and SVG plots
//! (text drawn with an embedded DejaVu Sans, so no system font is needed) and a self-contained
//! `report.html`.
//!
//! One file per concern: `table.rs` (the terminal table), `files.rs` (every file `kappa report`
//! writes), `html.rs` (`report.html`, also served in memory by the dashboard), `plot.rs` (which
//! plots a report has and the charts of its verdicts, noise slopes and overlays), `analysis.rs`
//! (the learning-rate and critical-batch analysis: its text lines and charts), `chart.rs` (the
//! drawing toolkit the charts share) and `text.rs` (how numbers, settings and verdicts read
//! everywhere).

use std::path::PathBuf;

mod analysis;
mod chart;
mod files;
mod html;
mod plot;
mod table;
mod text;

pub use analysis::analysis_lines;
pub use chart::{SIZE, log_ticks};
pub use files::write_all;
pub use html::html_report;
pub use table::verdict_table;
pub use text::short;

/// Rendering failures.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// Writing a file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Drawing failed.
    #[error("cannot draw {what}: {reason}")]
    Draw {
        /// The plot.
        what: String,
        /// Why.
        reason: String,
    },
}

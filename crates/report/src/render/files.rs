//! Writing a report's files: `summary.json`, every plot as PNG and SVG, and `report.html`.

use super::RenderError;
use super::chart::{SIZE, register_font};
use super::html::html;
use super::plot::{plots, svg};
use crate::report::Report;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// Writes summary.json, the plots and report.html into `out`; returns the files written.
pub fn write_all(report: &Report, out: &Path) -> Result<Vec<PathBuf>, RenderError> {
    register_font();
    std::fs::create_dir_all(out).map_err(|e| RenderError::Io { path: out.to_path_buf(), source: e })?;
    let mut files = Vec::new();
    let write = |name: &str, bytes: &[u8], files: &mut Vec<PathBuf>| -> Result<(), RenderError> {
        let path = out.join(name);
        std::fs::write(&path, bytes).map_err(|e| RenderError::Io { path: path.clone(), source: e })?;
        files.push(path);
        Ok(())
    };
    let json = serde_json::to_vec_pretty(report).unwrap_or_default();
    write("summary.json", &json, &mut files)?;
    let mut svgs: Vec<(String, String)> = Vec::new();
    for (name, plot) in &plots(report) {
        let svg = svg(name, plot, report)?;
        write(&format!("{name}.svg"), svg.as_bytes(), &mut files)?;
        let png = out.join(format!("{name}.png"));
        {
            let area = BitMapBackend::new(&png, SIZE).into_drawing_area();
            plot.draw(&area, report).map_err(|reason| RenderError::Draw { what: name.clone(), reason })?;
            area.present().map_err(|e| RenderError::Draw { what: name.clone(), reason: e.to_string() })?;
        }
        files.push(png);
        svgs.push((name.clone(), svg));
    }
    write("report.html", html(report, &svgs).as_bytes(), &mut files)?;
    Ok(files)
}

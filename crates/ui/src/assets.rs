//! The page, embedded in the binary: no CDN, no internet, no front-end build step. uPlot
//! (MIT, `assets/uPlot.LICENSE`) is vendored as published on the npm registry (version 1.6.32).

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

/// An embedded file: its path under `/`, content type and bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset { path: "/", content_type: "text/html; charset=utf-8", body: include_str!("../assets/index.html") },
    Asset {
        path: "/assets/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/app.js"),
    },
    Asset {
        path: "/assets/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../assets/style.css"),
    },
    Asset {
        path: "/assets/uPlot.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/uPlot.iife.min.js"),
    },
    Asset {
        path: "/assets/uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../assets/uPlot.min.css"),
    },
    Asset {
        path: "/assets/uPlot.LICENSE",
        content_type: "text/plain; charset=utf-8",
        body: include_str!("../assets/uPlot.LICENSE"),
    },
];

/// The embedded file at `path`, if there is one.
pub(crate) fn asset(path: &str) -> Option<Response> {
    let a = ASSETS.iter().find(|a| a.path == path)?;
    // The page may change with the binary: always revalidate.
    Some(([(CONTENT_TYPE, a.content_type), (CACHE_CONTROL, "no-cache")], a.body).into_response())
}

/// The paths served as files.
pub(crate) fn paths() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|a| a.path)
}

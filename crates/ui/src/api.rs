//! The JSON API under `/api/` (documented in the README), which the page uses and scripts can
//! too: sweeps, pages of trials, a trial's details, curves, exports, cancel and retry (the
//! session calls are in `auth`, reports in `reports`).

use crate::auth::{Caller, changer};
use crate::error::{ApiError, ApiResult};
use crate::reports::cached_report;
use crate::sweeps::{flushed, open, read, runner};
use crate::{Dashboard, assets, auth, live};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kappa_coordinator::{Action, CoordinatorError, ErrorCode};
use kappa_core::{TrialId, TrialStatus};
use kappa_store::{SortKey, TrialQuery, TrialRecord};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{ReceiverStream, WatchStream};

/// The most trials one page holds.
pub(crate) const MAX_LIMIT: u64 = 1000;
/// The longest axis whose values a sweep's description lists.
const MAX_AXIS_VALUES: usize = 100;
/// The most curves one call returns.
const MAX_CURVES: usize = 50;
/// Bytes of a command's stderr shown with its trial.
const STDERR_TAIL: u64 = 4096;

/// Every route of the dashboard.
pub(crate) fn router(d: Arc<Dashboard>) -> Router {
    let mut r = Router::new();
    for path in assets::paths() {
        r = r.route(
            path,
            get(move || async move { assets::asset(path).unwrap_or_else(|| StatusCode::NOT_FOUND.into_response()) }),
        );
    }
    r.merge(auth::routes(d.auth.clone()))
        .route("/api/sweeps", get(sweeps))
        .route("/api/events", get(events))
        .route("/api/sweeps/{name}", get(sweep))
        .route("/api/sweeps/{name}/trials", get(trials))
        .route("/api/sweeps/{name}/trials/{id}", get(trial))
        .route("/api/sweeps/{name}/curves", get(curves))
        .route("/api/sweeps/{name}/report", get(report))
        .route("/api/sweeps/{name}/report.html", get(report_html))
        .route("/api/sweeps/{name}/export.csv", get(export_csv))
        .route("/api/sweeps/{name}/export.jsonl", get(export_jsonl))
        .route("/api/sweeps/{name}/cancel", post(cancel))
        .route("/api/sweeps/{name}/retry", post(retry))
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such page") })
        .layer(axum::middleware::from_fn_with_state(d.auth.clone(), auth::guard))
        .with_state(d)
}

async fn sweeps(State(d): State<Arc<Dashboard>>) -> axum::Json<Value> {
    axum::Json(live::overview(&d.coordinator, &d.live))
}

/// The overview at connect, then whenever it changes (at most once per [`live::TICK`]); the
/// stream ends when the server stops, or before the next event once the holder's token is
/// revoked.
async fn events(State(d): State<Arc<Dashboard>>, Extension(caller): Extension<Caller>) -> impl IntoResponse {
    enum Msg {
        Overview(Arc<str>),
        Stop,
    }
    let overview = WatchStream::new(d.live.subscribe()).filter(|s| !s.is_empty()).map(Msg::Overview);
    let stop = WatchStream::new(d.stopping.subscribe()).filter(|s| *s).map(|_| Msg::Stop);
    // A token revoked (or a session ended) while the stream is open ends it before its next
    // event.
    let access = d.auth.access.clone();
    let current = move || caller.still_reads(&access, "/api/events");
    let stream =
        overview.merge(stop).take_while(move |m| matches!(m, Msg::Overview(_)) && current()).map(|m| match m {
            Msg::Overview(s) => Ok::<Event, Infallible>(Event::default().event("progress").data(&*s)),
            Msg::Stop => Ok(Event::default().comment("stopping")),
        });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn sweep(
    State(d): State<Arc<Dashboard>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let r = runner(&d.coordinator, &name)?;
    let mut out = live::sweep_json(&d.live, &r.progress());
    // Whether this session may cancel and retry this sweep (its own, or any for an admin; a
    // command sweep's retry also needs `commands`), as the coordinator decides.
    let may = |a| caller.0.as_ref().is_some_and(|h| d.coordinator.may(h, a, r.name()).is_ok());
    let (can_change, can_retry) = (may(Action::Cancel), may(Action::Retry));
    if let Value::Object(o) = &mut out {
        o.insert("can_change".into(), json!(can_change));
        o.insert("can_retry".into(), json!(can_retry));
    }
    let extra = read(move || {
        let store = open(&r)?;
        let info = store.sweep_info()?.ok_or_else(|| CoordinatorError::NoSuchSweep(name.clone()))?;
        // The built-ins in their usual order, then the named axes.
        let mut columns: Vec<String> = match store.first_trial()?.map(|t| serde_json::to_value(&t.result.params)) {
            Some(Ok(Value::Object(m))) => m.keys().cloned().collect(),
            _ => Vec::new(),
        };
        let rank = |c: &String| kappa_core::AxisName::ALL.iter().position(|a| a.as_str() == c).unwrap_or(usize::MAX);
        columns.sort_by_key(|c| rank(c));
        let mut axes = serde_json::Map::new();
        let mut rules = Vec::new();
        let mut kind = Value::Null;
        if let Ok(sweep) = kappa_core::Sweep::parse(&info.spec_path, &info.spec) {
            kind = json!(sweep.task.kind_name());
            for dim in sweep.grid.dims() {
                // A filter menu of 10⁶ seeds helps nobody: long axes are filtered by typing.
                for (axis, values) in dim.axes.iter().filter(|(_, v)| v.len() <= MAX_AXIS_VALUES) {
                    axes.insert(axis.name().to_string(), values.to_json());
                }
            }
            rules = sweep.scaling.iter().flat_map(|s| s.rules.iter().map(|r| r.name.clone())).collect();
        }
        Ok(json!({
            "file": info.spec_path, "sweep_text": info.spec, "kind": kind, "columns": columns, "axes": axes,
            "rules": rules,
        }))
    })
    .await?;
    if let (Value::Object(o), Value::Object(e)) = (&mut out, extra) {
        o.extend(e);
    }
    Ok(axum::Json(out))
}

/// A trial as a table row.
fn row_json(t: &TrialRecord) -> Value {
    let mut o = kappa_store::trial_fields(t);
    o.insert("stationary".into(), json!(t.result.metrics.as_ref().and_then(|m| m.stationary_loss)));
    o.insert("duration_s".into(), json!(t.duration_s));
    o.insert("finished_at".into(), json!(t.finished_at));
    Value::Object(o)
}

/// The query of `/trials`: `status`, `offset`, `limit`, `sort`, `order` and `p.NAME=VALUE`.
pub(crate) fn parse_query(pairs: &[(String, String)]) -> ApiResult<TrialQuery> {
    let mut q = TrialQuery::default();
    let number = |key: &str, v: &str| {
        v.parse::<u64>().map_err(|_| ApiError::bad(format!("`{key}` must be a whole number, not `{v}`")))
    };
    for (key, v) in pairs {
        match key.as_str() {
            "status" if v.is_empty() => {}
            "status" => {
                q.status = Some(v.parse::<TrialStatus>().map_err(|_| {
                    ApiError::bad(format!("unknown status `{v}`: one of pending, running, succeeded, failed, diverged"))
                })?)
            }
            "offset" => q.offset = number(key, v)?,
            "limit" => {
                q.limit = number(key, v)?;
                if q.limit == 0 || q.limit > MAX_LIMIT {
                    return Err(ApiError::bad(format!("`limit` must be between 1 and {MAX_LIMIT}, not {v}")));
                }
            }
            "sort" => {
                q.sort = match v.as_str() {
                    "" | "seq" => SortKey::Seq,
                    "status" => SortKey::Status,
                    "attempts" => SortKey::Attempts,
                    "duration_s" => SortKey::Duration,
                    "stationary" => SortKey::Stationary,
                    p if kappa_store::valid_param_name(p) => SortKey::Param(p.to_string()),
                    p => return Err(ApiError::bad(format!("cannot sort by `{p}`: not a parameter name"))),
                }
            }
            "order" => {
                q.descending = match v.as_str() {
                    "" | "asc" => false,
                    "desc" => true,
                    o => return Err(ApiError::bad(format!("`order` is asc or desc, not `{o}`"))),
                }
            }
            k => {
                let Some(name) = k.strip_prefix("p.") else {
                    return Err(ApiError::bad(format!(
                        "unknown query parameter `{k}` (status, offset, limit, sort, order, p.NAME=VALUE)"
                    )));
                };
                if !kappa_store::valid_param_name(name) {
                    return Err(ApiError::bad(format!("cannot filter on `{name}`: not a parameter name")));
                }
                let value = match v.as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    s => match s.parse::<f64>() {
                        Ok(x) if x.is_finite() => s.parse::<i64>().map_or_else(|_| json!(x), |i| json!(i)),
                        _ => Value::String(s.to_string()),
                    },
                };
                q.filters.push((name.to_string(), value));
            }
        }
    }
    Ok(q)
}

async fn trials(
    State(d): State<Arc<Dashboard>>,
    Path(name): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<axum::Json<Value>> {
    let r = flushed(&d.coordinator, &name).await?;
    let q = parse_query(&pairs)?;
    read(move || {
        let page = open(&r)?.trial_page(&q)?;
        let rows: Vec<Value> = page.trials.iter().map(row_json).collect();
        Ok(axum::Json(json!({ "total": page.total, "offset": q.offset, "limit": q.limit, "trials": rows })))
    })
    .await
}

fn parse_id(id: &str) -> ApiResult<TrialId> {
    id.parse().map_err(|e| ApiError::bad(format!("`{id}` is not a trial id: {e}")))
}

fn found(t: Option<TrialRecord>, id: TrialId, sweep: &str) -> ApiResult<TrialRecord> {
    t.ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("sweep `{sweep}` has no trial {id}")))
}

/// A trial's loss curve as `[samples, mean, se]` points.
fn curve(t: &TrialRecord) -> Vec<[f64; 3]> {
    t.result
        .metrics
        .as_ref()
        .map(|m| m.curve.iter().map(|p| [p.samples as f64, p.loss_mean, p.loss_se]).collect())
        .unwrap_or_default()
}

async fn trial(
    State(d): State<Arc<Dashboard>>,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<axum::Json<Value>> {
    let r = flushed(&d.coordinator, &name).await?;
    let id = parse_id(&id)?;
    read(move || {
        let store = open(&r)?;
        let t = found(store.trial(id)?, id, &name)?;
        let attempts = store.attempts_of(id)?;
        let mut out = row_json(&t);
        let m = t.result.metrics.as_ref();
        let mut extra: HashMap<&str, Vec<[f64; 2]>> = HashMap::new();
        for p in m.map(|m| m.curve.as_slice()).unwrap_or_default() {
            for (k, v) in &p.extra {
                extra.entry(k.as_str()).or_default().push([p.samples as f64, *v]);
            }
        }
        let stderr = attempts.last().and_then(|a| stderr_tail(r.dir(), id, a.attempt, a.error.as_deref()));
        let attempts: Vec<Value> = attempts
            .iter()
            .map(|a| {
                json!({
                    "attempt": a.attempt, "worker": a.worker, "started_at": a.started_at, "ended_at": a.ended_at,
                    "outcome": a.outcome, "error": a.error, "class": a.class, "counted": a.counted,
                })
            })
            .collect();
        if let Value::Object(o) = &mut out {
            o.insert("curve".into(), json!(curve(&t)));
            o.insert("extra".into(), json!(extra));
            o.insert("theory".into(), json!(m.and_then(|m| m.theory.as_ref()?.stationary_loss)));
            o.insert("notes".into(), json!(m.map(|m| m.notes.clone()).unwrap_or_default()));
            o.insert("attempts".into(), json!(attempts));
            o.insert("stderr_tail".into(), json!(stderr));
        }
        Ok(axum::Json(out))
    })
    .await
}

/// The end of a command trial's stderr: its log file where this process can read it (`kappa
/// run` keeps logs in the state directory), else what the failure message quoted.
fn stderr_tail(dir: &std::path::Path, id: TrialId, attempt: u32, error: Option<&str>) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let path = dir.join("logs").join(format!("{id}.{attempt}.stderr"));
    if let Ok(mut f) = std::fs::File::open(&path) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let mut tail = Vec::new();
        if f.seek(SeekFrom::Start(len.saturating_sub(STDERR_TAIL))).is_ok() && f.read_to_end(&mut tail).is_ok() {
            let text = String::from_utf8_lossy(&tail).into_owned();
            return (!text.trim().is_empty()).then_some(text);
        }
    }
    error.and_then(|e| e.split_once("stderr ends with:\n")).map(|(_, tail)| tail.to_string())
}

/// A short label of a trial's parameters (`sgd B=64 lr=0.003 seed=0`).
fn label(t: &TrialRecord) -> String {
    let Ok(Value::Object(m)) = serde_json::to_value(&t.result.params) else { return t.result.id.to_string() };
    m.iter()
        .map(|(k, v)| {
            let v = kappa_core::display_value(v);
            match k.as_str() {
                "optimizer" => v,
                "batch_size" => format!("B={v}"),
                k => format!("{}={v}", k.rsplit('.').next().unwrap_or(k)),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

async fn curves(
    State(d): State<Arc<Dashboard>>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<axum::Json<Value>> {
    let r = flushed(&d.coordinator, &name).await?;
    let ids: Vec<TrialId> = q
        .get("ids")
        .map(|s| s.split(',').filter(|s| !s.is_empty()).map(parse_id).collect::<ApiResult<_>>())
        .transpose()?
        .unwrap_or_default();
    if ids.len() > MAX_CURVES {
        return Err(ApiError::bad(format!("at most {MAX_CURVES} curves at once, not {}", ids.len())));
    }
    read(move || {
        let store = open(&r)?;
        let mut series = Vec::new();
        for id in ids {
            let t = found(store.trial(id)?, id, &name)?;
            series.push(json!({ "id": id, "label": label(&t), "curve": curve(&t) }));
        }
        Ok(axum::Json(json!({ "series": series })))
    })
    .await
}

async fn report(State(d): State<Arc<Dashboard>>, Path(name): Path<String>) -> ApiResult<axum::Json<Value>> {
    let r = runner(&d.coordinator, &name)?;
    let (report, computed_at) = cached_report(&d.reports, r).await?;
    let mut v = serde_json::to_value(&*report).map_err(|e| ApiError::internal(format!("the report: {e}")))?;
    if let Value::Object(o) = &mut v {
        o.insert("computed_at".into(), json!(computed_at));
    }
    Ok(axum::Json(v))
}

async fn report_html(State(d): State<Arc<Dashboard>>, Path(name): Path<String>) -> ApiResult<Response> {
    let r = runner(&d.coordinator, &name)?;
    let (report, _) = cached_report(&d.reports, r).await?;
    let html = read(move || {
        kappa_report::render::html_report(&report).map_err(|e| ApiError::internal(format!("drawing the report: {e}")))
    })
    .await?;
    Ok(([(CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response())
}

/// A writer that hands what is written to a response body in chunks (the export streams: one
/// trial in memory at a time).
struct ChunkWriter {
    buf: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 64 << 10 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the download was cancelled"))
    }
}

/// A streamed export download.
fn export(d: &Dashboard, name: &str, csv: bool) -> ApiResult<Response> {
    let r = runner(&d.coordinator, name)?;
    let store = open(&r)?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let mut w = ChunkWriter { buf: Vec::new(), tx: tx.clone() };
        let written =
            if csv { kappa_store::write_csv(&store, &mut w) } else { kappa_store::write_jsonl(&store, &mut w) };
        let flushed = std::io::Write::flush(&mut w);
        // A failure part way ends the body with an error, so the download is seen to be cut short.
        if let Some(e) = written.err().map(|e| e.to_string()).or(flushed.err().map(|e| e.to_string())) {
            let _ = tx.blocking_send(Err(std::io::Error::other(e)));
        }
    });
    let (ext, ty) = if csv { ("csv", "text/csv; charset=utf-8") } else { ("jsonl", "application/x-ndjson") };
    let file: String =
        r.name().chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    Ok((
        [(CONTENT_TYPE, ty.to_string()), (CONTENT_DISPOSITION, format!("attachment; filename=\"{file}.{ext}\""))],
        Body::from_stream(ReceiverStream::new(rx)),
    )
        .into_response())
}

async fn export_csv(State(d): State<Arc<Dashboard>>, Path(name): Path<String>) -> ApiResult<Response> {
    export(&d, &name, true)
}

async fn export_jsonl(State(d): State<Arc<Dashboard>>, Path(name): Path<String>) -> ApiResult<Response> {
    export(&d, &name, false)
}

/// What a session may change in a sweep.
#[derive(Clone, Copy)]
enum Change {
    Cancel,
    RetryFailed,
}

/// Cancels a sweep or retries its failed trials, through the coordinator as the RPCs do, as the
/// session's holder (the coordinator allows it on the holder's own sweeps, any for an admin, and
/// logs it).
async fn change(d: Arc<Dashboard>, caller: Caller, name: String, what: Change) -> ApiResult<axum::Json<Value>> {
    let action = match what {
        Change::Cancel => Action::Cancel,
        Change::RetryFailed => Action::Retry,
    };
    let by = changer(&d.auth, &caller, action)?;
    runner(&d.coordinator, &name)?;
    let c = d.coordinator.clone();
    let (sweep, n) = read(move || match what {
        Change::Cancel => Ok(c.cancel(&by, &name)?),
        Change::RetryFailed => Ok(c.retry_failed(&by, &name)?),
    })
    .await?;
    Ok(axum::Json(json!({ "sweep": sweep, "trials": n })))
}

async fn cancel(
    State(d): State<Arc<Dashboard>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    change(d, caller, name, Change::Cancel).await
}

async fn retry(
    State(d): State<Arc<Dashboard>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    change(d, caller, name, Change::RetryFailed).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_trial_query_is_parsed_and_bad_ones_are_named() {
        let q = parse_query(&pairs(&[
            ("status", "failed"),
            ("offset", "100"),
            ("limit", "20"),
            ("sort", "lr"),
            ("order", "desc"),
            ("p.optimizer", "sgd"),
            ("p.batch_size", "64"),
            ("p.lr", "0.001"),
            ("p.params.flag", "true"),
        ]))
        .unwrap();
        assert_eq!(q.status, Some(TrialStatus::Failed));
        assert_eq!((q.offset, q.limit, q.descending), (100, 20, true));
        assert_eq!(q.sort, SortKey::Param("lr".into()));
        assert_eq!(
            q.filters,
            vec![
                ("optimizer".into(), json!("sgd")),
                ("batch_size".into(), json!(64)),
                ("lr".into(), json!(0.001)),
                ("params.flag".into(), json!(true)),
            ]
        );
        for (bad, says) in [
            (("status", "done"), "unknown status `done`"),
            (("limit", "0"), "between 1 and 1000"),
            (("limit", "1001"), "between 1 and 1000"),
            (("offset", "-1"), "whole number"),
            (("order", "up"), "asc or desc"),
            (("sort", "lr;drop"), "cannot sort by"),
            (("p.a\"b", "1"), "cannot filter on"),
            (("colour", "red"), "unknown query parameter `colour`"),
        ] {
            let e = parse_query(&pairs(&[bad])).unwrap_err();
            assert_eq!(e.code, kappa_coordinator::ErrorCode::InvalidArgument);
            assert!(e.message.contains(says), "{bad:?}: {}", e.message);
        }
    }
}

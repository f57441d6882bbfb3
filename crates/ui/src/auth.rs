//! Who is asking: the coordinator's [`Access`] (no token, one shared token, or a tokens file of
//! holders with roles), presented as a bearer header (scripts) or as a session cookie set by the
//! login form (browsers). Without a token the dashboard is read-only and nobody is
//! authenticated; with one, nothing but the page itself, the session query and the login is
//! served without it, a holder whose role cannot read (a worker's token) is refused, and cancel
//! and retry go to the coordinator as the holder, which allows them on its own sweeps (any sweep
//! for an admin). The guard every request passes, and the session calls (`/api/session`,
//! `/api/login`, `/api/logout`), are here.

use crate::error::{ApiError, ApiResult};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kappa_coordinator::{Access, Action, ErrorCode, Holder};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The name of the session cookie the login sets.
pub const SESSION_COOKIE: &str = "kappa_session";

/// What the guard and the session calls read: who may connect, and whether only requests to
/// local names are answered.
pub(crate) struct Auth {
    pub(crate) access: Arc<Access>,
    /// Served on loopback without a token: only requests addressed to localhost or an IP are
    /// answered, so a web page whose name was rebound to 127.0.0.1 cannot read the sweeps (set
    /// once the address is bound).
    pub(crate) loopback_only: AtomicBool,
}

/// The holder a request was let in for (set by [`guard`]; none without a token), and the
/// session cookie it came with (none for a bearer header).
#[derive(Clone)]
pub(crate) struct Caller(pub(crate) Option<Arc<Holder>>, pub(crate) Option<String>);

impl Caller {
    /// Whether the caller may still read (an open stream asks before each event): its token not
    /// revoked, its session not expired. A refusal is logged.
    pub(crate) fn still_reads(&self, access: &Access, what: &str) -> bool {
        let Some(h) = &self.0 else { return true };
        let now = match &self.1 {
            Some(session) if access.session_holder(session).is_none() => Err(kappa_coordinator::Refusal {
                code: ErrorCode::Unauthenticated,
                message: format!("the session of {} ended", h.name),
            }),
            _ => access.still(h, Action::Read).map(drop),
        };
        match now {
            Ok(()) => true,
            Err(r) => {
                access.refused(&r, what);
                false
            }
        }
    }
}

impl Auth {
    pub(crate) fn new(access: Arc<Access>) -> Auth {
        Auth { access, loopback_only: AtomicBool::new(false) }
    }

    /// The holder a request presents: its bearer header (refused when wrong), else its session
    /// cookie (`Ok(None)`: neither).
    pub(crate) fn holder(&self, headers: &HeaderMap) -> Result<Option<Arc<Holder>>, kappa_coordinator::Refusal> {
        if !self.access.required() {
            return Ok(None);
        }
        if let Some(v) = headers.get(AUTHORIZATION) {
            return self.access.authenticate(Some(v.as_bytes())).map(Some);
        }
        Ok(cookie(headers, SESSION_COOKIE).and_then(|c| self.access.session_holder(c)))
    }
}

/// The session calls: `/api/session`, `/api/login`, `/api/logout`.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>(auth: Arc<Auth>) -> Router<S> {
    Router::new()
        .route("/api/session", get(session))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .with_state(auth)
}

/// The `Set-Cookie` value that ends a session.
pub(crate) fn logout_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// A cookie's value from the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether a `Host` header names this machine by `localhost` or by an IP address (not a name a
/// stranger's DNS could point here).
pub(crate) fn local_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => return v6.split(']').next().is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok()),
        None => host.rsplit_once(':').map_or(host, |(h, port)| if port.parse::<u16>().is_ok() { h } else { host }),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

/// Paths served without the token: the page itself (it holds no data) and the session calls.
fn public(path: &str) -> bool {
    !path.starts_with("/api/") || matches!(path, "/api/session" | "/api/login" | "/api/logout")
}

/// The token check before any handler, and the headers every answer carries: a strict content
/// security policy (no inline or foreign scripts, whatever a sweep file holds), no sniffing, no
/// framing, no referrer.
pub(crate) async fn guard(State(a): State<Arc<Auth>>, mut req: Request, next: Next) -> Response {
    let host = req.headers().get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let path = req.uri().path().to_string();
    let mut res = if a.loopback_only.load(Ordering::Relaxed) && !local_host(host) {
        ApiError::new(
            ErrorCode::PermissionDenied,
            format!(
                "this dashboard has no token and answers only requests to localhost or an IP address, not to `{host}`"
            ),
        )
        .into_response()
    } else {
        match a.holder(req.headers()) {
            _ if public(&path) => next.run(req).await,
            Ok(None) if !a.access.required() => {
                req.extensions_mut().insert(Caller(None, None));
                next.run(req).await
            }
            Ok(Some(h)) => match h.may(Action::Read) {
                Ok(()) => {
                    let session = match req.headers().get(AUTHORIZATION) {
                        Some(_) => None,
                        None => cookie(req.headers(), SESSION_COOKIE).map(str::to_string),
                    };
                    req.extensions_mut().insert(Caller(Some(h), session));
                    next.run(req).await
                }
                Err(r) => {
                    a.access.refused(&r, &path);
                    ApiError::new(r.code, r.message).into_response()
                }
            },
            Ok(None) => ApiError::new(
                ErrorCode::Unauthenticated,
                "log in with your token (or send `Authorization: Bearer TOKEN`)",
            )
            .into_response(),
            Err(r) => {
                a.access.refused(&r, &path);
                ApiError::new(r.code, r.message).into_response()
            }
        }
    };
    let h = res.headers_mut();
    for (k, v) in [
        (
            "content-security-policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
        ),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    res
}

async fn session(State(a): State<Arc<Auth>>, headers: HeaderMap) -> axum::Json<Value> {
    let holder = a.holder(&headers).ok().flatten().filter(|h| h.allows(Action::Read));
    axum::Json(json!({
        "token_required": a.access.required(),
        "authenticated": holder.is_some(),
        // Whether this holder may cancel or retry some sweep (each sweep says whether this one).
        "can_change": holder.as_ref().is_some_and(|h| h.allows(Action::Cancel)),
        "holder": holder.as_ref().map(|h| json!({ "name": h.name, "role": h.role.name() })),
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

async fn login(State(a): State<Arc<Auth>>, body: Bytes) -> ApiResult<Response> {
    #[derive(serde::Deserialize)]
    struct Login {
        token: String,
    }
    let login: Login = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad(format!("the login body must be JSON {{\"token\": \"...\"}}: {e}")))?;
    if !a.access.required() {
        return Err(ApiError::new(
            ErrorCode::FailedPrecondition,
            "this dashboard has no token: there is nothing to log in to",
        ));
    }
    let checked = a.access.check(Some(format!("Bearer {}", login.token).as_bytes()), Action::Read, "dashboard login");
    let holder = checked.map_err(|r| ApiError::new(r.code, r.message))?;
    let session = a.access.session_of(&holder).ok_or_else(|| ApiError::internal("no session for this holder"))?;
    tracing::info!(target: kappa_coordinator::access::AUDIT, event = "login", holder = %holder.name, role = %holder.role, "{holder} logged in to the dashboard");
    let max_age = kappa_coordinator::access::SESSION_HOURS * 3600;
    let cookie = format!("{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}");
    Ok((StatusCode::NO_CONTENT, [(SET_COOKIE, cookie)]).into_response())
}

async fn logout() -> Response {
    (StatusCode::NO_CONTENT, [(SET_COOKIE, logout_cookie())]).into_response()
}

/// The holder that may change sweeps (cancel, retry) in this session, or why none may: which
/// sweeps it may change the coordinator decides.
pub(crate) fn changer(a: &Auth, caller: &Caller, action: Action) -> ApiResult<Arc<Holder>> {
    match &caller.0 {
        Some(h) => match h.may(action) {
            Ok(()) => Ok(h.clone()),
            Err(r) => {
                a.access.refused(&r, action.describe());
                Err(ApiError::new(r.code, r.message))
            }
        },
        None if a.access.required() => Err(ApiError::new(ErrorCode::PermissionDenied, "log in to change sweeps")),
        None => Err(ApiError::new(
            ErrorCode::PermissionDenied,
            "this dashboard is read-only: serve it with a token (--token-file or --tokens) to cancel or retry from \
             the browser",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(axum::http::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_token_or_its_session_cookie_names_the_holder_and_nothing_else_does() {
        let a = Auth::new(Arc::new(Access::shared("s3cret\n")));
        let h = a.holder(&headers(&[(AUTHORIZATION, "Bearer s3cret")])).unwrap().unwrap();
        assert_eq!(h.name, "shared-token");
        let cookie = a.access.session_of(&h).unwrap();
        assert!(!cookie.contains("s3cret"), "the cookie must not carry the token: {cookie}");
        let with_cookie = headers(&[(COOKIE, &format!("theme=dark; {SESSION_COOKIE}={cookie}"))]);
        assert_eq!(a.holder(&with_cookie).unwrap().unwrap().name, "shared-token");
        assert!(a.holder(&headers(&[(AUTHORIZATION, "Bearer wrong")])).is_err());
        assert!(a.holder(&headers(&[(COOKIE, "kappa_session=00ff")])).unwrap().is_none());
        assert!(a.holder(&HeaderMap::new()).unwrap().is_none());
    }

    #[test]
    fn without_a_token_nobody_is_anyone_and_nobody_changes() {
        let a = Auth::new(Arc::new(Access::open()));
        assert!(a.holder(&headers(&[(AUTHORIZATION, "Bearer anything")])).unwrap().is_none());
        assert!(changer(&a, &Caller(None, None), Action::Cancel).is_err());
    }

    #[test]
    fn only_localhost_and_ip_addresses_are_local_hosts() {
        for h in ["localhost", "LOCALHOST:8080", "127.0.0.1:41234", "127.0.0.1", "[::1]:8080", "[::1]", "10.0.0.2:80"] {
            assert!(local_host(h), "{h}");
        }
        for h in ["", "evil.example", "evil.example:8080", "localhost.evil.example", "127.0.0.1.nip.io:80", "[evil]:80"]
        {
            assert!(!local_host(h), "{h}");
        }
    }
}

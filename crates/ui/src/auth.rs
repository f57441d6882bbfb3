//! The dashboard's token: the coordinator's shared token, presented as a bearer header (scripts)
//! or as a session cookie set by the login form (browsers). Without a token the dashboard is
//! read-only and nobody is authenticated; with one, nothing but the page itself, the session
//! query and the login is served without it. The guard every request passes, and the session
//! calls (`/api/session`, `/api/login`, `/api/logout`), are here.

use crate::error::{ApiError, ApiResult};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kappa_coordinator::ErrorCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The name of the session cookie the login sets.
pub const SESSION_COOKIE: &str = "kappa_session";

/// What the guard and the session calls read: the token, and whether only requests to local
/// names are answered.
pub(crate) struct Auth {
    pub(crate) token: TokenCheck,
    /// Served on loopback without a token: only requests addressed to localhost or an IP are
    /// answered, so a web page whose name was rebound to 127.0.0.1 cannot read the sweeps (set
    /// once the address is bound).
    pub(crate) loopback_only: AtomicBool,
}

impl Auth {
    pub(crate) fn new(token: Option<&str>) -> Auth {
        Auth { token: TokenCheck::new(token), loopback_only: AtomicBool::new(false) }
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

/// Checks requests against the token.
pub(crate) struct TokenCheck {
    /// SHA-256 of the token (compared digest to digest, so the time taken tells nothing).
    token: Option<[u8; 32]>,
    /// The session cookie's value: a digest of the token that is not the token itself.
    session: Option<String>,
}

fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Equal without an early exit.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl TokenCheck {
    pub(crate) fn new(token: Option<&str>) -> TokenCheck {
        let token = token.map(str::trim).filter(|t| !t.is_empty());
        TokenCheck {
            token: token.map(|t| digest(&[t.as_bytes()])),
            session: token
                .map(|t| digest(&[b"kappa-ui-session\0", t.as_bytes()]).iter().map(|b| format!("{b:02x}")).collect()),
        }
    }

    /// Whether a token is configured.
    pub(crate) fn required(&self) -> bool {
        self.token.is_some()
    }

    /// Whether `presented` is the token.
    pub(crate) fn is_token(&self, presented: &str) -> bool {
        self.token.is_some_and(|t| same(&t, &digest(&[presented.trim().as_bytes()])))
    }

    /// Whether the request carries the token (bearer header) or the session cookie.
    pub(crate) fn authenticated(&self, headers: &HeaderMap) -> bool {
        let Some(session) = &self.session else { return false };
        let bearer = headers
            .get_all(AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .any(|t| self.is_token(t));
        bearer || cookie(headers, SESSION_COOKIE).is_some_and(|c| same(c.as_bytes(), session.as_bytes()))
    }

    /// Whether the request may read sweeps.
    pub(crate) fn may_read(&self, headers: &HeaderMap) -> bool {
        !self.required() || self.authenticated(headers)
    }

    /// Whether the request may change sweeps (cancel, retry): only an authenticated session.
    pub(crate) fn may_change(&self, headers: &HeaderMap) -> bool {
        self.required() && self.authenticated(headers)
    }

    /// The `Set-Cookie` value of a logged-in session.
    pub(crate) fn login_cookie(&self) -> Option<String> {
        self.session.as_ref().map(|s| format!("{SESSION_COOKIE}={s}; Path=/; HttpOnly; SameSite=Strict"))
    }
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
pub(crate) async fn guard(State(a): State<Arc<Auth>>, req: Request, next: Next) -> Response {
    let host = req.headers().get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let mut res = if a.loopback_only.load(Ordering::Relaxed) && !local_host(host) {
        ApiError::new(
            ErrorCode::PermissionDenied,
            format!(
                "this dashboard has no token and answers only requests to localhost or an IP address, not to `{host}`"
            ),
        )
        .into_response()
    } else if public(req.uri().path()) || a.token.may_read(req.headers()) {
        next.run(req).await
    } else {
        ApiError::new(
            ErrorCode::Unauthenticated,
            "log in with the coordinator's token (or send `Authorization: Bearer TOKEN`)",
        )
        .into_response()
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
    axum::Json(json!({
        "token_required": a.token.required(),
        "authenticated": a.token.authenticated(&headers),
        "can_change": a.token.may_change(&headers),
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
    let Some(cookie) = a.token.login_cookie() else {
        return Err(ApiError::new(
            ErrorCode::FailedPrecondition,
            "this dashboard has no token: there is nothing to log in to",
        ));
    };
    if !a.token.is_token(&login.token) {
        return Err(ApiError::new(ErrorCode::Unauthenticated, "wrong token"));
    }
    Ok((StatusCode::NO_CONTENT, [(SET_COOKIE, cookie)]).into_response())
}

async fn logout() -> Response {
    (StatusCode::NO_CONTENT, [(SET_COOKIE, logout_cookie())]).into_response()
}

/// Refuses a change unless the session may make it.
pub(crate) fn may_change(a: &Auth, headers: &HeaderMap) -> ApiResult<()> {
    if a.token.may_change(headers) {
        Ok(())
    } else if a.token.required() {
        Err(ApiError::new(ErrorCode::PermissionDenied, "log in to change sweeps"))
    } else {
        Err(ApiError::new(
            ErrorCode::PermissionDenied,
            "this dashboard is read-only: serve it with a token (--token-file) to cancel or retry from the browser",
        ))
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
    fn the_token_or_its_session_cookie_authenticates_and_nothing_else() {
        let check = TokenCheck::new(Some("s3cret\n"));
        assert!(check.required());
        assert!(check.is_token("s3cret"));
        assert!(!check.is_token("s3cre"));
        let cookie = check.login_cookie().unwrap();
        assert!(!cookie.contains("s3cret"), "the cookie must not carry the token: {cookie}");
        let value = cookie.split(';').next().unwrap();
        assert!(check.authenticated(&headers(&[(COOKIE, &format!("theme=dark; {value}"))])));
        assert!(check.authenticated(&headers(&[(AUTHORIZATION, "Bearer s3cret")])));
        assert!(!check.authenticated(&headers(&[(AUTHORIZATION, "Bearer wrong")])));
        assert!(!check.authenticated(&headers(&[(COOKIE, "kappa_session=00ff")])));
        assert!(!check.authenticated(&HeaderMap::new()));
        assert!(!check.may_read(&HeaderMap::new()));
        assert!(check.may_change(&headers(&[(AUTHORIZATION, "Bearer s3cret")])));
    }

    #[test]
    fn without_a_token_everyone_reads_and_nobody_changes() {
        let check = TokenCheck::new(None);
        assert!(!check.required());
        assert!(check.may_read(&HeaderMap::new()));
        assert!(!check.may_change(&headers(&[(AUTHORIZATION, "Bearer anything")])));
        assert!(check.login_cookie().is_none());
        assert!(!check.is_token(""));
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

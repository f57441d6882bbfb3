//! The dashboard's token: the coordinator's shared token, presented as a bearer header (scripts)
//! or as a session cookie set by the login form (browsers). Without a token the dashboard is
//! read-only and nobody is authenticated; with one, nothing but the page itself, the session
//! query and the login is served without it.

use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, COOKIE};
use sha2::{Digest, Sha256};

/// The name of the session cookie the login sets.
pub const SESSION_COOKIE: &str = "kappa_session";

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
}

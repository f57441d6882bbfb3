//! Bearer-token authentication, the same token on both ends: clients attach `authorization:
//! Bearer <token>` to every call ([`Auth`] as a client interceptor); the server refuses a call
//! without it ([`RequireToken`], a server interceptor) before the request body is read or
//! decoded, so a client without the token gets UNAUTHENTICATED whatever it sends, cheaply.

use crate::ConvertError;

/// The shared token (or none), as a client sends it.
#[derive(Clone, Debug, Default)]
pub struct Auth {
    header: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl Auth {
    /// Authentication with `token`, or none.
    pub fn new(token: Option<&str>) -> Result<Auth, ConvertError> {
        let header = match token {
            Some(t) => Some(format!("Bearer {}", t.trim()).parse().map_err(|_| ConvertError::Invalid {
                field: "token",
                reason: "a token must be printable ASCII".into(),
            })?),
            None => None,
        };
        Ok(Auth { header })
    }

    /// Whether a token is set.
    pub fn is_set(&self) -> bool {
        self.header.is_some()
    }

    /// Server side: whether `req` carries the token (always true without one).
    pub fn check<T>(&self, req: &tonic::Request<T>) -> Result<(), tonic::Status> {
        let Some(expected) = &self.header else { return Ok(()) };
        match req.metadata().get("authorization") {
            Some(v) if v.as_bytes() == expected.as_bytes() => Ok(()),
            Some(_) => Err(tonic::Status::unauthenticated("wrong token")),
            None => Err(tonic::Status::unauthenticated("missing token: pass --token-file or set KAPPA_TOKEN")),
        }
    }

    /// The server-side check of this token, to wrap a service with.
    pub fn require(self) -> RequireToken {
        RequireToken(self)
    }
}

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(h) = &self.header {
            req.metadata_mut().insert("authorization", h.clone());
        }
        Ok(req)
    }
}

/// The server side of [`Auth`]: an interceptor that refuses calls without the token. tonic runs
/// it on the request headers, before the body is read, so no unauthenticated byte is decoded.
#[derive(Clone, Debug)]
pub struct RequireToken(Auth);

impl tonic::service::Interceptor for RequireToken {
    fn call(&mut self, req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        self.0.check(&req)?;
        Ok(req)
    }
}

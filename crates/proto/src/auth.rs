//! Bearer-token authentication, the client's side: clients attach `authorization: Bearer
//! <token>` to every call ([`Auth`] as a client interceptor). The server's side, which holder a
//! token names and what it may do, is kappa-coordinator's `access` module.

use crate::ConvertError;

/// A token (or none), as a client sends it.
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
}

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(h) = &self.header {
            req.metadata_mut().insert("authorization", h.clone());
        }
        Ok(req)
    }
}

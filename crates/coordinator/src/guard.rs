//! The check every `kappa.v1.Coordinator` call passes before its body is read: the token in the
//! `authorization` header names a holder ([`Access::authenticate`]), the method path names an
//! [`Action`], and the holder's role must allow it. A refused call is answered at once with
//! UNAUTHENTICATED or PERMISSION_DENIED, its body never decoded; an allowed one carries its
//! [`Holder`] to the handler as a request extension (for ownership, which needs the body).

use crate::access::{Access, Action, Holder, Refusal, Role};
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::codegen::http;
use tonic::codegen::{BoxFuture, Service};
use tonic::server::NamedService;

/// A service behind the token check (see the module's documentation).
#[derive(Clone)]
pub(crate) struct Guarded<S> {
    pub(crate) inner: S,
    pub(crate) access: Arc<Access>,
}

impl<S> Service<http::Request<Body>> for Guarded<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        let method = req.uri().path().rsplit('/').next().unwrap_or_default();
        let header = req.headers().get(http::header::AUTHORIZATION).map(|v| v.as_bytes());
        let checked = match Action::of_rpc(method) {
            Some(action) => self.access.check(header, action, method),
            // Not in the table (`access::RPCS`, which a test keeps complete): admins only, so a
            // method added without a row is never open to every holder. Tonic answers
            // UNIMPLEMENTED for a path that is no method at all.
            None => self.access.authenticate(header).and_then(|h| {
                if h.role == Role::Admin {
                    Ok(h)
                } else {
                    Err(Refusal::denied(format!("{h} may not call {method}: only an admin may")))
                }
            }),
        };
        if let (Err(r), None) = (&checked, Action::of_rpc(method)) {
            self.access.refused(r, method);
        }
        match checked {
            Ok(holder) => {
                req.extensions_mut().insert(holder);
                let fut = self.inner.call(req);
                Box::pin(fut)
            }
            Err(refusal) => {
                let status = tonic::Status::from(refusal);
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

impl<S: NamedService> NamedService for Guarded<S> {
    const NAME: &'static str = S::NAME;
}

/// The holder a request was allowed for (set by [`Guarded`]).
pub(crate) fn holder<T>(req: &tonic::Request<T>) -> Result<Arc<Holder>, tonic::Status> {
    req.extensions()
        .get::<Arc<Holder>>()
        .cloned()
        .ok_or_else(|| tonic::Status::internal("the call reached the service without passing the token check"))
}

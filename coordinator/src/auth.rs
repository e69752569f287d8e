//! Bearer-token authentication with two roles. Each gRPC service is wrapped in an
//! interceptor for its role: a missing or unknown token is UNAUTHENTICATED, a valid token of
//! the other role is PERMISSION_DENIED. Tokens are compared in constant time and never logged.

use std::sync::Arc;

use tonic::{Request, Status};

/// Who may call a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Users and scripts: submit, query, cancel, generate.
    Client,
    /// Training workers: register, lease, report, upload, download.
    Worker,
}

/// The configured tokens; `None` = authentication off (loopback only, enforced at startup).
#[derive(Clone, Default)]
pub struct Tokens {
    client: Option<Arc<str>>,
    worker: Option<Arc<str>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens(<redacted>)")
    }
}

/// Compares secrets in time that does not depend on where they differ.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Tokens {
    /// Tokens for both roles (both or neither; validated by the config).
    pub fn new(client: Option<String>, worker: Option<String>) -> Self {
        Tokens {
            client: client.map(Into::into),
            worker: worker.map(Into::into),
        }
    }

    /// Whether tokens are required.
    pub fn enabled(&self) -> bool {
        self.client.is_some() || self.worker.is_some()
    }

    /// Checks a request's `authorization: Bearer <token>` for `role`.
    pub fn check<T>(&self, req: &Request<T>, role: Role) -> Result<(), Status> {
        if !self.enabled() {
            return Ok(());
        }
        let Some(value) = req.metadata().get("authorization") else {
            return Err(Status::unauthenticated(
                "missing bearer token (authorization metadata)",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .ok_or_else(|| Status::unauthenticated("authorization must be `Bearer <token>`"))?;
        let is = |t: &Option<Arc<str>>| {
            t.as_ref()
                .is_some_and(|t| ct_eq(t.as_bytes(), token.as_bytes()))
        };
        let (mine, other) = match role {
            Role::Client => (is(&self.client), is(&self.worker)),
            Role::Worker => (is(&self.worker), is(&self.client)),
        };
        if mine {
            Ok(())
        } else if other {
            Err(Status::permission_denied(format!(
                "this token may not call {role:?} methods"
            )))
        } else {
            Err(Status::unauthenticated("invalid bearer token"))
        }
    }

    /// An interceptor for a service of `role`.
    pub fn interceptor(
        &self,
        role: Role,
    ) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone + Send + Sync + use<> {
        let tokens = self.clone();
        move |req| tokens.check(&req, role).map(|_| req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(token: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(t) = token {
            r.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        r
    }

    #[test]
    fn roles_and_codes() {
        let t = Tokens::new(
            Some("client-token-123456".into()),
            Some("worker-token-123456".into()),
        );
        assert!(
            t.check(&req(Some("client-token-123456")), Role::Client)
                .is_ok()
        );
        assert!(
            t.check(&req(Some("worker-token-123456")), Role::Worker)
                .is_ok()
        );
        assert_eq!(
            t.check(&req(None), Role::Client).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            t.check(&req(Some("nope")), Role::Client)
                .unwrap_err()
                .code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            t.check(&req(Some("worker-token-123456")), Role::Client)
                .unwrap_err()
                .code(),
            tonic::Code::PermissionDenied
        );
        assert!(!format!("{t:?}").contains("token-123456"));
    }

    #[test]
    fn disabled_lets_everything_through() {
        assert!(Tokens::default().check(&req(None), Role::Worker).is_ok());
    }
}

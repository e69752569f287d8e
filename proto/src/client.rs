//! One way to reach a coordinator, for the CLI, the worker and the tests: the endpoint (with
//! TLS, a CA to trust and, for mTLS, a client certificate), the bearer interceptor, and the
//! message limits and chunk size both sides agree on (SECURITY.md, finding 4). Before this
//! module each of them wrote these itself, and the limits had drifted apart.

use std::path::PathBuf;
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

use crate::v1::poet_client::PoetClient;
use crate::v1::worker_service_client::WorkerServiceClient;

/// Bytes per message of a streamed upload or download (checkpoints, datasets).
pub const CHUNK_BYTES: usize = 1 << 20;

/// Largest message the coordinator accepts (a chunk plus its envelope fits with room).
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

/// Largest message a client accepts from the coordinator: a generation's poems or a page of
/// run history can be large; nothing else comes close.
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// How to reach the coordinator.
#[derive(Debug, Clone, Default)]
pub struct Connect {
    /// `http://host:port`, or `https://host:port` for TLS.
    pub url: String,
    /// Bearer token sent on every call; `None` when the coordinator runs without tokens.
    pub token: Option<String>,
    /// PEM CA certificate to verify the coordinator with (else the system's roots).
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate for a coordinator that requires one (mTLS), with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// The name the coordinator's certificate is checked against, when it differs from the
    /// URL's host (an address reached through a tunnel, say).
    pub tls_domain: Option<String>,
}

/// Why a connection could not be set up. Each names the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL does not parse.
    #[error("coordinator address '{url}' is not a URL like http://127.0.0.1:50051: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// Why.
        reason: String,
    },
    /// The token cannot be sent as a header.
    #[error("the token is not a valid header value (printable ASCII only)")]
    BadToken,
    /// A TLS file is missing or unreadable, or the settings do not fit together.
    #[error("tls: {0}")]
    Tls(String),
}

/// Adds `authorization: Bearer <token>` to every call when a token is set.
#[derive(Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    /// With `None`, calls go out without a token.
    pub fn new(token: Option<&str>) -> Result<Self, ConnectError> {
        token
            .map(|t| {
                format!("Bearer {t}")
                    .parse()
                    .map_err(|_| ConnectError::BadToken)
            })
            .transpose()
            .map(Bearer)
    }
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Bearer(<redacted>)"
        } else {
            "Bearer(none)"
        })
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(h) = &self.0 {
            req.metadata_mut().insert("authorization", h.clone());
        }
        Ok(req)
    }
}

/// A client of the `Poet` service with its token and limits.
pub type Client = PoetClient<InterceptedService<Channel, Bearer>>;

/// A client of the `WorkerService` with its token and limits.
pub type Worker = WorkerServiceClient<InterceptedService<Channel, Bearer>>;

fn read(what: &str, path: &PathBuf) -> Result<Vec<u8>, ConnectError> {
    std::fs::read(path).map_err(|e| ConnectError::Tls(format!("{what} {}: {e}", path.display())))
}

impl Connect {
    /// A plain connection to `url` with `token`.
    pub fn new(url: impl Into<String>, token: Option<&str>) -> Self {
        Connect {
            url: url.into(),
            token: token.map(str::to_string),
            ..Default::default()
        }
    }

    /// The endpoint: TLS for `https://` (the CA, the client certificate and the domain as
    /// set). TLS files with an `http://` address are refused rather than ignored.
    pub fn endpoint(&self) -> Result<Endpoint, ConnectError> {
        let ep = Endpoint::from_shared(self.url.clone())
            .map_err(|e| ConnectError::BadUrl {
                url: self.url.clone(),
                reason: e.to_string(),
            })?
            .connect_timeout(Duration::from_secs(10))
            .tcp_keepalive(Some(Duration::from_secs(30)))
            .tcp_nodelay(true);
        let tls_files = self.tls_ca.is_some() || self.tls_cert.is_some() || self.tls_key.is_some();
        if !self.url.starts_with("https://") {
            if tls_files {
                return Err(ConnectError::Tls(format!(
                    "TLS files are set but '{}' is not an https:// address",
                    self.url
                )));
            }
            return Ok(ep);
        }
        let mut tls = ClientTlsConfig::new().with_native_roots();
        if let Some(ca) = &self.tls_ca {
            tls = tls.ca_certificate(Certificate::from_pem(read("CA certificate", ca)?));
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => {
                tls = tls.identity(Identity::from_pem(
                    read("client certificate", c)?,
                    read("client key", k)?,
                ));
            }
            (None, None) => {}
            _ => {
                return Err(ConnectError::Tls(
                    "a client certificate needs its key, and a key its certificate".into(),
                ));
            }
        }
        if let Some(d) = &self.tls_domain {
            tls = tls.domain_name(d.clone());
        }
        ep.tls_config(tls)
            .map_err(|e| ConnectError::Tls(e.to_string()))
    }

    /// The bearer interceptor for the token.
    pub fn bearer(&self) -> Result<Bearer, ConnectError> {
        Bearer::new(self.token.as_deref())
    }

    /// A `Poet` client on `channel` (from [`Self::endpoint`]).
    pub fn client(&self, channel: Channel) -> Result<Client, ConnectError> {
        // No encoding cap here: the coordinator enforces MAX_REQUEST_BYTES and answers with a
        // status that names the limit, which is the error a caller should see.
        Ok(PoetClient::with_interceptor(channel, self.bearer()?)
            .max_decoding_message_size(MAX_RESPONSE_BYTES))
    }

    /// A `WorkerService` client on `channel`.
    pub fn worker(&self, channel: Channel) -> Result<Worker, ConnectError> {
        Ok(
            WorkerServiceClient::with_interceptor(channel, self.bearer()?)
                .max_decoding_message_size(MAX_RESPONSE_BYTES),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_do_not_fit_are_refused_by_name() {
        let e = Connect::new("not a url", None).endpoint().unwrap_err();
        assert!(e.to_string().contains("'not a url'"), "{e}");
        let e = Connect::new("http://h:1", Some("bad\ntoken"))
            .bearer()
            .unwrap_err();
        assert!(matches!(e, ConnectError::BadToken));
        let c = Connect {
            tls_ca: Some("/nonexistent/ca.pem".into()),
            ..Connect::new("http://h:1", None)
        };
        assert!(
            c.endpoint()
                .unwrap_err()
                .to_string()
                .contains("not an https://")
        );
        let c = Connect {
            tls_ca: Some("/nonexistent/ca.pem".into()),
            ..Connect::new("https://h:1", None)
        };
        assert!(
            c.endpoint()
                .unwrap_err()
                .to_string()
                .contains("/nonexistent/ca.pem")
        );
        let c = Connect {
            tls_cert: Some("/x.pem".into()),
            ..Connect::new("https://h:1", None)
        };
        assert!(
            c.endpoint()
                .unwrap_err()
                .to_string()
                .contains("needs its key")
        );
        assert_eq!(
            format!("{:?}", Bearer::new(Some("s3cret")).unwrap()),
            "Bearer(<redacted>)"
        );
    }
}

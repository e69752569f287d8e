//! Connecting to the coordinator, and turning failures into one-line errors with exit codes.

use poet_proto::v1::poet_client::PoetClient;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};

use crate::args::{Cli, exit};

/// A command failure: message and exit code.
#[derive(Debug)]
pub struct CliError {
    /// Exit code (see `args::exit`).
    pub code: u8,
    /// One line for stderr.
    pub message: String,
}

impl CliError {
    /// An error with a code.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
        }
    }

    /// Bad input.
    pub fn input(message: impl Into<String>) -> Self {
        Self::new(exit::BAD_INPUT, message)
    }

    /// Generic failure.
    pub fn fail(message: impl Into<String>) -> Self {
        Self::new(exit::FAILURE, message)
    }
}

/// Result of a command.
pub type CliResult<T = ()> = Result<T, CliError>;

/// Adds the bearer token to every call.
#[derive(Clone)]
pub struct Auth(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl Interceptor for Auth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// The client type every command uses.
pub type Client = PoetClient<InterceptedService<Channel, Auth>>;

/// Connects to the coordinator named on the command line.
pub async fn connect(cli: &Cli) -> CliResult<Client> {
    let addr = &cli.coordinator;
    let mut ep = Endpoint::from_shared(addr.clone())
        .map_err(|_| {
            CliError::input(format!(
                "--coordinator: '{addr}' is not a URL like http://127.0.0.1:50051"
            ))
        })?
        .connect_timeout(std::time::Duration::from_secs(5));
    if addr.starts_with("https://") {
        let mut tls = ClientTlsConfig::new().with_native_roots();
        if let Some(ca) = &cli.tls_ca {
            let pem = std::fs::read(ca)
                .map_err(|e| CliError::input(format!("--tls-ca {}: {e}", ca.display())))?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        ep = ep
            .tls_config(tls)
            .map_err(|e| CliError::input(format!("tls: {e}")))?;
    }
    let channel = ep.connect().await.map_err(|e| {
        CliError::new(
            exit::UNAVAILABLE,
            format!(
                "cannot reach the coordinator at {addr}: {} (start a local stack with `poet up`, or set POET_COORDINATOR)",
                root_cause(&e)
            ),
        )
    })?;
    let token = match &cli.token {
        Some(t) => Some(
            format!("Bearer {t}")
                .parse()
                .map_err(|_| CliError::input("--token: not a valid header value"))?,
        ),
        None => None,
    };
    Ok(PoetClient::with_interceptor(channel, Auth(token)).max_decoding_message_size(64 << 20))
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Maps a gRPC status to an exit code and a line.
pub fn status(s: Status) -> CliError {
    let code = match s.code() {
        Code::InvalidArgument | Code::OutOfRange => exit::BAD_INPUT,
        Code::NotFound => exit::NOT_FOUND,
        Code::Unavailable | Code::DeadlineExceeded => exit::UNAVAILABLE,
        Code::FailedPrecondition | Code::AlreadyExists => exit::NOT_READY,
        Code::Unauthenticated | Code::PermissionDenied => exit::DENIED,
        _ => exit::FAILURE,
    };
    let hint = match s.code() {
        Code::Unauthenticated => " (set POET_CLIENT_TOKEN or --token)",
        Code::Unavailable => " (is the coordinator running? `poet up`)",
        _ => "",
    };
    CliError::new(code, format!("{}{hint}", s.message()))
}

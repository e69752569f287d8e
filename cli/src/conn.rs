//! Connecting to the coordinator, and turning failures into one-line errors with exit codes.

use tonic::{Code, Status};

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

/// The client type every command uses (`poet_proto::client`: token, TLS, limits).
pub type Client = poet_proto::client::Client;

/// Connects to the coordinator named on the command line.
pub async fn connect(cli: &Cli) -> CliResult<Client> {
    let addr = &cli.coordinator;
    let connect = poet_proto::client::Connect {
        url: addr.clone(),
        token: cli.token.clone(),
        tls_ca: cli.tls_ca.clone(),
        tls_cert: cli.tls_cert.clone(),
        tls_key: cli.tls_key.clone(),
        tls_domain: None,
    };
    let setting = |e: poet_proto::client::ConnectError| {
        let flag = match e {
            poet_proto::client::ConnectError::BadUrl { .. } => "--coordinator",
            poet_proto::client::ConnectError::BadToken => "--token",
            poet_proto::client::ConnectError::Tls(_) => "--tls-ca/--tls-cert/--tls-key",
        };
        CliError::input(format!("{flag}: {e}"))
    };
    let ep = connect
        .endpoint()
        .map_err(setting)?
        .connect_timeout(std::time::Duration::from_secs(5));
    let channel = ep.connect().await.map_err(|e| {
        CliError::new(
            exit::UNAVAILABLE,
            format!(
                "cannot reach the coordinator at {addr}: {} (start a local stack with `poet up`, or set POET_COORDINATOR)",
                root_cause(&e)
            ),
        )
    })?;
    connect.client(channel).map_err(setting)
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

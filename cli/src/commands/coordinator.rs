//! `poet coordinator`: the coordinator's entry point. Binds, installs the shutdown signals and
//! hands over to `poet_coordinator::run`; everything else is the library's.

use crate::args::{Cli, exit};
use crate::conn::{CliError, CliResult};
use crate::output::{self, outln};

pub async fn coordinator(cli: &Cli, cfg: poet_coordinator::CoordinatorConfig) -> CliResult {
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
                " (another coordinator? stop it with `poet down`, or choose --listen 127.0.0.1:0)"
            } else {
                ""
            };
            CliError::new(
                exit::UNAVAILABLE,
                format!("cannot listen on {}: {e}{hint}", cfg.listen),
            )
        })?;
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
    };
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::fail(e.to_string()))?;
    // With --json, one line on stdout a script can read the port from (`--listen 127.0.0.1:0`).
    if cli.json {
        outln!("{}", serde_json::json!({ "listening": addr.to_string() }));
        output::flush_stdout();
    } else if !cli.quiet {
        eprintln!("coordinator listening on {addr}");
    }
    poet_coordinator::run(cfg, listener, shutdown)
        .await
        .map_err(|e| {
            let code = match e {
                poet_coordinator::CoordinatorError::Config(_) => exit::BAD_INPUT,
                poet_coordinator::CoordinatorError::Db(_) => exit::UNAVAILABLE,
                _ => exit::FAILURE,
            };
            CliError::new(code, e.to_string())
        })
}

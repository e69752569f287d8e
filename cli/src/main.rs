//! `poet`: the one command for the whole job. Parses flags (every flag also reads a `POET_*`
//! variable), initialises logging and dispatches; the commands live in `commands/`.
//! Training and sampling run in the separate `poet-worker` binary (libtorch), which `poet
//! worker` and `poet train` launch, so this binary runs on machines without libtorch.

mod args;
mod commands;
mod conn;
mod output;
mod plot;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    output::init_color(cli.color);
    let filter = tracing_subscriber::EnvFilter::try_from_env("POET_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if cli.verbose { "info" } else { "warn" })
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(commands::run(cli));
    output::flush_stdout();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Messages can quote names and errors from other machines.
            eprintln!("error: {}", output::clean_text(&e.message));
            ExitCode::from(e.code)
        }
    }
}

//! Command implementations, one module per area.

mod data;
mod history;
mod poems;
mod stack;
mod tokens;

use crate::args::{Cli, Command};
use crate::conn::CliResult;

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> CliResult {
    match &cli.command {
        Command::Db(c) => stack::db(&cli, c).await,
        Command::Coordinator(cfg) => stack::coordinator((**cfg).clone()).await,
        Command::Worker { args } => stack::worker(&cli, "run", args).await,
        Command::Train { args } => stack::worker(&cli, "train", args).await,
        Command::Up(a) => stack::up(&cli, a).await,
        Command::Down { db } => stack::down(*db).await,
        Command::Ingest(a) => data::ingest(&cli, a).await,
        Command::Dataset(c) => data::dataset(&cli, c).await,
        Command::Sweep(c) => history::sweep(&cli, c).await,
        Command::Runs(c) => history::runs(&cli, c).await,
        Command::Workers { all } => history::workers(&cli, *all).await,
        Command::Plot(a) => history::plot(&cli, a).await,
        Command::Generate(a) => poems::generate(&cli, a).await,
        Command::Poems(c) => poems::poems(&cli, c).await,
        Command::Words(a) => poems::words(&cli, a).await,
        Command::Token(c) => tokens::token(&cli, c).await,
    }
}

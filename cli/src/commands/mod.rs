//! Command implementations, one module per area.

mod coordinator;
mod data;
mod db;
mod history;
pub(crate) mod poems;
mod stack;
mod supervise;
mod tokens;
mod worker;

use clap::CommandFactory;

use crate::args::{Cli, Command};
use crate::conn::{CliError, CliResult};
use crate::output;

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> CliResult {
    match &cli.command {
        Command::Db(c) => db::db(&cli, c).await,
        Command::Coordinator(cfg) => coordinator::coordinator(&cli, (**cfg).clone()).await,
        Command::Worker { args } => worker::worker(&cli, "run", args).await,
        Command::Train { args } => worker::worker(&cli, "train", args).await,
        Command::Up(a) => stack::up(&cli, a).await,
        Command::Down { db } => stack::down(&cli, *db).await,
        Command::Ingest(a) => data::ingest(&cli, a).await,
        Command::Datasets(c) => data::dataset(&cli, c).await,
        Command::Sweeps(c) => history::sweep(&cli, c).await,
        Command::Runs(c) => history::runs(&cli, c).await,
        Command::Workers { all } => history::workers(&cli, *all).await,
        Command::Plot(a) => history::plot(&cli, a).await,
        Command::Generate(a) => poems::generate(&cli, a).await,
        Command::Poems(c) => poems::poems(&cli, c).await,
        Command::Words(a) => poems::words(&cli, a).await,
        Command::Token(c) => tokens::token(&cli, c).await,
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "poet", &mut script);
            output::write_stdout_bytes(&script);
            Ok(())
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .map_err(|e| CliError::fail(format!("man page: {e}")))?;
            output::write_stdout_bytes(&page);
            Ok(())
        }
    }
}

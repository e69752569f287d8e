//! `poet db`: the private Postgres cluster, and where every command finds the database.

use poet_sql::cluster::{PrivateCluster, poet_home};

use crate::args::{Cli, DbCmd, exit};
use crate::conn::{CliError, CliResult};
use crate::output::{self, outln};

pub async fn db(cli: &Cli, cmd: &DbCmd) -> CliResult {
    let cluster = PrivateCluster::default_location();
    match cmd {
        DbCmd::Start => {
            let info = blocking(move || cluster.ensure_running()).await?;
            if cli.json {
                output::json(&info);
            } else {
                outln!(
                    "postgres running on 127.0.0.1:{} (data {})",
                    info.port,
                    info.data_dir.display()
                );
                outln!("{}", info.shown_url());
            }
        }
        DbCmd::Stop => {
            let was = blocking(move || cluster.stop()).await?;
            print_db_stopped(cli, was);
        }
        DbCmd::Status => {
            let running = {
                let c = cluster.clone();
                tokio::task::spawn_blocking(move || c.is_running())
                    .await
                    .expect("join")
            };
            let info = cluster.info();
            if cli.json {
                output::json(
                    &serde_json::json!({"running": running, "cluster": info, "home": poet_home()}),
                );
            } else {
                match info {
                    Some(i) => {
                        outln!(
                            "private postgres: {}",
                            if running { "running" } else { "stopped" }
                        );
                        outln!(
                            "  data: {}\n  log:  {}\n  url:  {}",
                            i.data_dir.display(),
                            i.log_file.display(),
                            i.shown_url()
                        );
                    }
                    None => outln!(
                        "private postgres: never started (home {})",
                        poet_home().display()
                    ),
                }
                if let Ok(u) = std::env::var("POET_DATABASE_URL") {
                    outln!(
                        "POET_DATABASE_URL is set: poet uses {}",
                        poet_sql::redact(&u)
                    );
                }
            }
        }
        DbCmd::Url => {
            let url = database_url(None).await?;
            if cli.json {
                output::json(&serde_json::json!({ "url": url }));
            } else {
                outln!("{url}");
            }
        }
    }
    Ok(())
}

/// What `db stop` and `down --db` say about the private Postgres.
pub(crate) fn print_db_stopped(cli: &Cli, was_running: bool) {
    if cli.json {
        output::json(&serde_json::json!({ "postgres_was_running": was_running }));
    } else if was_running {
        outln!("postgres stopped");
    } else {
        outln!("postgres was not running");
    }
}

/// POET_DATABASE_URL (or `explicit`), else the private cluster (started if needed).
pub async fn database_url(explicit: Option<String>) -> CliResult<String> {
    let explicit = explicit.or_else(|| std::env::var("POET_DATABASE_URL").ok());
    tokio::task::spawn_blocking(move || poet_sql::resolve_url(explicit.as_deref()))
        .await
        .expect("join")
        .map_err(|e| CliError::new(exit::UNAVAILABLE, e.to_string()))
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, poet_sql::cluster::ClusterError> + Send + 'static,
) -> CliResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .expect("join")
        .map_err(|e| CliError::new(exit::UNAVAILABLE, e.to_string()))
}

//! `poet ingest` and `poet datasets`: talk to Postgres directly (ingest is a bulk load; it
//! does not go through the coordinator).

use poet_coordinator::history::dataset_view;
use poet_ingest::{ErrorKind, IngestError};
use poet_proto::views;
use poet_sql::datasets::{self, DatasetError};

use crate::args::{Cli, DatasetCmd, IngestArgs, exit};
use crate::commands::db::database_url;
use crate::conn::{CliError, CliResult};
use crate::output::{self, Table, clean_line, clean_text, out, outln};

/// An ingest or dataset failure, its exit code by its kind.
pub fn ingest_error(e: IngestError) -> CliError {
    let code = match e.kind() {
        ErrorKind::Invalid => exit::BAD_INPUT,
        ErrorKind::NotFound => exit::NOT_FOUND,
        ErrorKind::Unavailable => exit::UNAVAILABLE,
        ErrorKind::Output | ErrorKind::Internal => exit::FAILURE,
    };
    CliError::new(code, e.to_string())
}

/// Exit codes by the kind of dataset error, never by its text.
pub fn dataset_error(e: DatasetError) -> CliError {
    let code = match &e {
        DatasetError::NotFound(_) => exit::NOT_FOUND,
        DatasetError::BadReference { .. } => exit::BAD_INPUT,
        DatasetError::Db(_) => exit::UNAVAILABLE,
        DatasetError::Output(_) | DatasetError::NotUtf8(_) => exit::FAILURE,
    };
    CliError::new(code, e.to_string())
}

async fn pool() -> CliResult<sqlx::PgPool> {
    let url = database_url(None).await?;
    poet_sql::connect(&url)
        .await
        .map_err(|e| CliError::new(exit::UNAVAILABLE, e.to_string()))
}

pub async fn ingest(cli: &Cli, a: &IngestArgs) -> CliResult {
    let mut opts = a.opts.clone();
    if cli.quiet {
        opts.no_progress = true;
    }
    if a.explain {
        let ex = poet_ingest::explain(&opts).await.map_err(ingest_error)?;
        for w in &ex.warnings {
            eprintln!("warning: {w}");
        }
        if cli.json {
            output::json(&ex);
        } else {
            // Samples quote the dump's documents: text from anyone.
            out!("{}", clean_text(&ex.to_string()));
        }
        return Ok(());
    }
    let pool = pool().await?;
    let summary = poet_ingest::ingest(&pool, &opts)
        .await
        .map_err(ingest_error)?;
    // Loud: on stderr, whatever the output format.
    for w in &summary.warnings {
        eprintln!("warning: {w}");
    }
    if cli.json {
        output::json(&summary);
    } else {
        out!("{}", clean_text(&summary.to_string()));
    }
    Ok(())
}

pub async fn dataset(cli: &Cli, cmd: &DatasetCmd) -> CliResult {
    let pool = pool().await?;
    match cmd {
        DatasetCmd::List => {
            let all = datasets::list_datasets(&pool)
                .await
                .map_err(dataset_error)?;
            if cli.json {
                // The web API's dataset view (`GET /api/v1/datasets`).
                let all: Vec<views::Dataset> = all.into_iter().map(dataset_view).collect();
                output::json(&all);
            } else {
                let mut t = Table::new(&[
                    "ID", "DATASET", "POEMS", "CHARS", "VOCAB", "HASH", "CREATED",
                ]);
                for d in &all {
                    t.row(vec![
                        d.id.to_string(),
                        format!("{}@{}", d.name, d.version),
                        d.poems.to_string(),
                        d.chars.to_string(),
                        d.vocab.chars().count().to_string(),
                        d.content_hash[..12.min(d.content_hash.len())].to_string(),
                        d.created_at.format("%Y-%m-%d %H:%M").to_string(),
                    ]);
                }
                out!("{}", t.render());
            }
        }
        DatasetCmd::Show { dataset } => {
            let d = datasets::find_dataset(&pool, dataset)
                .await
                .map_err(dataset_error)?;
            if cli.json {
                output::json(&dataset_view(d));
            } else {
                outln!(
                    "dataset {}@{} (id {})",
                    clean_line(&d.name),
                    d.version,
                    d.id
                );
                outln!(
                    "  poems {}  chars {}  vocabulary {} chars",
                    d.poems,
                    d.chars,
                    d.vocab.chars().count()
                );
                outln!("  content hash {}", d.content_hash);
                outln!(
                    "  shards {} (validation {:?})",
                    d.shards,
                    d.validation_shards
                );
                outln!("  counts {}", clean_line(&d.counts.to_string()));
                outln!("  params {}", clean_line(&d.params.to_string()));
            }
        }
        DatasetCmd::Rejects {
            dataset,
            reason,
            limit,
        } => {
            let d = datasets::find_dataset(&pool, dataset)
                .await
                .map_err(dataset_error)?;
            let counts = poet_ingest::reject_counts(&pool, d.id)
                .await
                .map_err(ingest_error)?;
            if let Some(r) = reason
                && !counts.iter().any(|c| &c.reason == r)
            {
                let known: Vec<&str> = counts.iter().map(|c| c.reason.as_str()).collect();
                return Err(CliError::new(
                    exit::NOT_FOUND,
                    format!(
                        "{}@{} has no rejects with reason '{}' (it has: {})",
                        d.name,
                        d.version,
                        clean_line(r),
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
            let rows = poet_ingest::rejects(&pool, d.id, reason.as_deref(), *limit)
                .await
                .map_err(ingest_error)?;
            if cli.json {
                output::json(&serde_json::json!({ "counts": counts, "rejects": rows }));
            } else {
                outln!("{}@{}: rejects by reason", clean_line(&d.name), d.version);
                for c in &counts {
                    outln!("  {:<20} {:>8}", clean_line(&c.reason), c.count);
                }
                let mut t = Table::new(&["WHERE", "ID", "REASON", "WHY"]);
                for r in &rows {
                    let why = r
                        .measures
                        .as_ref()
                        .and_then(|m| m.get("why"))
                        .and_then(|w| w.as_str())
                        .map_or(r.reason.clone(), str::to_string);
                    t.row(vec![
                        format!("{}:{}", r.file, r.line),
                        r.source_id.clone().unwrap_or_else(|| "-".into()),
                        if r.kind == "malformed" {
                            "malformed".into()
                        } else {
                            r.reason.clone()
                        },
                        why,
                    ]);
                }
                out!("{}", t.render());
                let total: i64 = counts
                    .iter()
                    .filter(|c| reason.as_ref().is_none_or(|r| &c.reason == r))
                    .map(|c| c.count)
                    .sum();
                if total > rows.len() as i64 {
                    outln!("({} of {total} shown; --limit for more)", rows.len());
                }
            }
        }
        DatasetCmd::Export {
            dataset,
            output: out,
            split,
        } => {
            let d = datasets::find_dataset(&pool, dataset)
                .await
                .map_err(dataset_error)?;
            let summary = if out.as_os_str() == "-" {
                let mut w = tokio::io::stdout();
                write_export(&pool, d.id, *split, &mut w).await?
            } else {
                let mut f = tokio::fs::File::create(out)
                    .await
                    .map_err(|e| CliError::input(format!("{}: {e}", out.display())))?;
                let s = write_export(&pool, d.id, *split, &mut f).await?;
                f.sync_all()
                    .await
                    .map_err(|e| CliError::fail(format!("{}: {e}", out.display())))?;
                s
            };
            if out.as_os_str() != "-" {
                if cli.json {
                    output::json(&summary);
                } else if !cli.quiet {
                    eprintln!("wrote {} ({}@{})", out.display(), d.name, d.version);
                }
            }
        }
    }
    Ok(())
}

async fn write_export<W: tokio::io::AsyncWrite + Unpin>(
    pool: &sqlx::PgPool,
    id: i64,
    split: Option<datasets::Split>,
    w: &mut W,
) -> CliResult<datasets::ExportSummary> {
    datasets::export_split(pool, id, split, w)
        .await
        .map_err(|e| {
            // `poet datasets export poetry | head`: the reader has what it wanted.
            if let DatasetError::Output(io) = &e
                && io.kind() == std::io::ErrorKind::BrokenPipe
            {
                output::stdout_failed(io);
            }
            dataset_error(e)
        })
}

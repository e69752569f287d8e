//! Runs an ingest (or `--explain`) outside the `poet` CLI: used by the benchmark in
//! `bench/ingest/` and for manual checks.
//! `cargo run --release -p poet-ingest --example ingest -- --database-url URL [--json] DUMP…`

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Postgres URL (migrations are applied).
    #[arg(long, env = "POET_DATABASE_URL")]
    database_url: Option<String>,
    /// Print the filter's distribution instead of ingesting (no database).
    #[arg(long)]
    explain: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    opts: poet_ingest::IngestOptions,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.explain {
        let e = poet_ingest::explain(&args.opts).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&e)?)
        } else {
            print!("{e}")
        }
        return Ok(());
    }
    let url = args
        .database_url
        .ok_or_else(|| anyhow::anyhow!("--database-url or POET_DATABASE_URL is required"))?;
    let pool = poet_sql::connect(&url).await?;
    let s = poet_ingest::ingest(&pool, &args.opts).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?)
    } else {
        print!("{s}")
    }
    Ok(())
}

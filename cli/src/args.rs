//! The command line: every subcommand, its flags and an example in its help.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Exit codes scripts can rely on (also in README.md).
pub mod exit {
    /// Something failed.
    pub const FAILURE: u8 = 1;
    /// Bad input: flags, spec, values.
    pub const BAD_INPUT: u8 = 2;
    /// An id or name that does not exist.
    pub const NOT_FOUND: u8 = 3;
    /// The coordinator or database cannot be reached.
    pub const UNAVAILABLE: u8 = 4;
    /// The thing exists but is not in a state that allows this (e.g. no checkpoint yet).
    pub const NOT_READY: u8 = 5;
    /// Authentication or permission refused.
    pub const DENIED: u8 = 6;
}

#[derive(Parser)]
#[command(
    name = "poet",
    version,
    about = "Train character-level LSTM poets at scale: ingest, sweeps, workers, history, poems",
    after_help = "Quick start:  poet up --workers 2 && poet ingest dump.ndjson.gz && poet sweep submit sweep.toml --watch\nExit codes: 0 ok, 1 failure, 2 bad input, 3 not found, 4 coordinator/database unavailable, 5 not ready, 6 denied."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Coordinator address.
    #[arg(
        long,
        global = true,
        env = "POET_COORDINATOR",
        default_value = "http://127.0.0.1:50051"
    )]
    pub coordinator: String,
    /// Bearer token for the coordinator's client role.
    #[arg(long, global = true, env = "POET_CLIENT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM CA certificate to verify a TLS coordinator (use an https:// address).
    #[arg(long, global = true, env = "POET_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true, env = "POET_JSON")]
    pub json: bool,
    /// Log more (or set POET_LOG=debug).
    #[arg(long, short, global = true)]
    pub verbose: bool,
}

#[derive(Subcommand)]
pub enum Command {
    /// The private Postgres cluster. Example: `poet db status`
    #[command(subcommand)]
    Db(DbCmd),
    /// Run the coordinator in the foreground. Example: `poet coordinator --listen 0.0.0.0:50051`
    Coordinator(Box<poet_coordinator::CoordinatorConfig>),
    /// Run a training worker (launches `poet-worker run`). Example: `poet worker --device cuda:0`
    #[command(disable_help_flag = true)]
    Worker {
        /// Flags for `poet-worker run` (see `poet worker --help`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Train standalone from a corpus file (launches `poet-worker train`).
    /// Example: `poet train --corpus corpus.txt --config run.toml`
    #[command(disable_help_flag = true)]
    Train {
        /// Flags for `poet-worker train`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Start a local stack in the background: private Postgres, coordinator, N workers.
    /// Example: `poet up --workers 2`
    Up(UpArgs),
    /// Stop the local stack. Example: `poet down --db`
    Down {
        /// Also stop the private Postgres.
        #[arg(long)]
        db: bool,
    },
    /// Ingest an Elasticsearch dump into a dataset version. Example: `poet ingest dump.ndjson.gz --name poetry --tag poetry`
    // Boxed: the ingest options (filter thresholds, caps) dwarf every other command.
    Ingest(Box<IngestArgs>),
    /// Dataset versions. Example: `poet dataset export poetry@1 -o corpus.txt`
    #[command(subcommand)]
    Dataset(DatasetCmd),
    /// Sweeps. Example: `poet sweep submit sweep.toml --watch`
    #[command(subcommand)]
    Sweep(SweepCmd),
    /// Runs and their history. Example: `poet runs list --sweep 1 --order-by best_val_loss`
    #[command(subcommand)]
    Runs(RunsCmd),
    /// Registered workers. Example: `poet workers`
    Workers {
        /// Include workers not seen for an hour.
        #[arg(long)]
        all: bool,
    },
    /// Generate poems from a run's checkpoint, with their plagiarism report.
    /// Example: `poet generate --sweep 1 --temperature 0.2,0.5,1.0 --poems 2`
    Generate(GenerateArgs),
    /// Stored generations. Example: `poet poems list --run 3`
    #[command(subcommand)]
    Poems(PoemsCmd),
    /// Most frequent words of a run's poems against the training set. Example: `poet words --run 3 -o words.svg`
    Words(WordsArgs),
    /// Plot loss curves of runs. Example: `poet plot --sweep 1 -o curves.png`
    Plot(PlotArgs),
    /// Tokens issued per identity (talks to Postgres directly). Example: `poet token create --role worker --name gpu-box-1`
    #[command(subcommand)]
    Token(TokenCmd),
}

#[derive(Subcommand)]
pub enum DbCmd {
    /// Start (initdb on first use) the private cluster and print its URL.
    Start,
    /// Stop it.
    Stop,
    /// Where it is and whether it runs.
    Status,
    /// Print the database URL poet uses (POET_DATABASE_URL or the private cluster's).
    Url,
}

#[derive(Args)]
pub struct UpArgs {
    /// Workers to start.
    #[arg(long, env = "POET_UP_WORKERS", default_value_t = 2)]
    pub workers: u32,
    /// Device of the workers: cpu, auto, or `cuda` to put worker i on cuda:i.
    #[arg(long, env = "POET_UP_DEVICE", default_value = "cpu")]
    pub device: String,
    /// Torch threads per worker (default: cores / workers, at least 1).
    #[arg(long, env = "POET_UP_THREADS")]
    pub threads: Option<u32>,
    /// Coordinator listen address.
    #[arg(long, env = "POET_UP_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: String,
    /// Address of the web dashboard (`off` to serve none).
    #[arg(long, env = "POET_UP_HTTP_LISTEN", default_value = "127.0.0.1:50052")]
    pub http_listen: String,
    /// Lease TTL of the local coordinator, seconds.
    #[arg(long, default_value_t = 30.0)]
    pub lease_ttl: f64,
}

#[derive(Args)]
pub struct IngestArgs {
    /// Ingest options.
    #[command(flatten)]
    pub opts: poet_ingest::IngestOptions,
    /// Store nothing: print each verdict's count, samples of documents on both sides of the
    /// line with their measures and reasons, and the measures' distributions.
    #[arg(long)]
    pub explain: bool,
}

#[derive(Subcommand)]
pub enum DatasetCmd {
    /// Every dataset version.
    List,
    /// One version: `NAME` (latest) or `NAME@V`.
    Show {
        /// Dataset reference.
        dataset: String,
    },
    /// Write the `++++\n`-framed corpus text.
    Export {
        /// Dataset reference.
        dataset: String,
        /// Output file (`-` = stdout).
        #[arg(short, long, default_value = "-")]
        output: PathBuf,
        /// Only one split.
        #[arg(long, value_enum)]
        split: Option<poet_ingest::Split>,
    },
    /// What an ingest left out and why: counts by reason, then the documents (file, line, id,
    /// the rule that decided and its measures). Example: `poet dataset rejects poetry@2 --reason hard_wrapped`
    Rejects {
        /// Dataset reference.
        dataset: String,
        /// Only this reason: a filter verdict (`hard_wrapped`, `paragraphs`, `sentence_per_line`,
        /// `list`, `long_lines`, `too_few_lines`, `empty`, `too_dense`, `long_line`) or
        /// `malformed` for lines that could not be used.
        #[arg(long)]
        reason: Option<String>,
        /// Most rows listed.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

#[derive(Subcommand)]
pub enum SweepCmd {
    /// Validate, expand and queue a sweep spec (TOML, YAML or JSON by extension).
    Submit {
        /// Spec file (`-` = stdin, TOML).
        spec: PathBuf,
        /// Override the spec's name.
        #[arg(long)]
        name: Option<String>,
        /// Validate and expand only.
        #[arg(long)]
        dry_run: bool,
        /// Then watch the runs until they finish.
        #[arg(long)]
        watch: bool,
    },
    /// Sweeps, newest first.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i32,
    },
    /// A sweep: counts by state, best run and its runs.
    Show {
        /// Sweep id.
        id: i64,
    },
    /// Cancel every unfinished run of a sweep.
    Cancel {
        /// Sweep id.
        id: i64,
    },
    /// Stop leasing a sweep's runs (running ones go on). Example: `poet sweep pause 3`
    Pause {
        /// Sweep id.
        id: i64,
    },
    /// Lease a paused sweep's runs again. Example: `poet sweep resume 3`
    Resume {
        /// Sweep id.
        id: i64,
    },
    /// Change a sweep's priority and its waiting runs'. Example: `poet sweep priority 3 10`
    Priority {
        /// Sweep id.
        id: i64,
        /// New priority, -1000..=1000 (higher runs first).
        #[arg(allow_negative_numbers = true)]
        priority: i32,
    },
}

#[derive(Subcommand)]
pub enum RunsCmd {
    /// Runs with filters.
    List {
        /// Only this sweep.
        #[arg(long)]
        sweep: Option<i64>,
        /// Only this state (queued, running, paused, stopped, succeeded, failed, cancelled).
        #[arg(long)]
        state: Option<String>,
        /// Config filter KEY=VALUE (repeatable), e.g. layers=2.
        #[arg(long = "where", value_name = "KEY=VALUE")]
        filters: Vec<String>,
        /// created, best_val_loss or duration.
        #[arg(long, default_value = "created")]
        order_by: String,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i32,
    },
    /// A run: config, attempts, epochs and a sparkline of its losses.
    Show {
        /// Run id.
        id: i64,
    },
    /// Configs side by side (differing keys marked) with best losses.
    Compare {
        /// Run ids.
        #[arg(required = true, num_args = 2..)]
        ids: Vec<i64>,
    },
    /// Live table of a sweep's runs until they all finish.
    Watch {
        /// Sweep id.
        #[arg(long)]
        sweep: i64,
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 2.0)]
        interval: f64,
        /// Print one table and exit.
        #[arg(long)]
        once: bool,
    },
    /// Cancel a run.
    Cancel {
        /// Run id.
        id: i64,
    },
    /// Requeue a failed, cancelled or stopped run; it resumes from its last checkpoint.
    /// Example: `poet runs retry 12`
    Retry {
        /// Run id.
        id: i64,
    },
    /// Train a succeeded or stopped run N more epochs from its last checkpoint.
    /// Example: `poet runs extend 12 --epochs 10`
    Extend {
        /// Run id.
        id: i64,
        /// Epochs to add.
        #[arg(long)]
        epochs: i32,
    },
    /// A new run warm-started from a checkpoint of this one, with changed settings.
    /// Example: `poet runs fork 12 --set learning_rate=0.0005 --set epochs=40`
    Fork {
        /// Run id.
        id: i64,
        /// Checkpoint id to start from (default: the run's best).
        #[arg(long)]
        checkpoint: Option<i64>,
        /// Config KEY=VALUE to change (repeatable; values are JSON: 0.0005, 40, "seq").
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
}

#[derive(Args)]
pub struct GenerateArgs {
    /// Run to sample from.
    #[arg(long, conflicts_with = "sweep", required_unless_present = "sweep")]
    pub run: Option<i64>,
    /// Use the best run (lowest validation loss) of this sweep.
    #[arg(long)]
    pub sweep: Option<i64>,
    /// best, latest or `epoch:N`.
    #[arg(long, default_value = "best")]
    pub checkpoint: String,
    /// Temperatures (comma-separated); 0 = greedy.
    #[arg(long, value_delimiter = ',', default_value = "0.5")]
    pub temperature: Vec<f64>,
    /// Characters sampled per stream.
    #[arg(long, default_value_t = 600)]
    pub chars: i32,
    /// Streams per temperature.
    #[arg(long, default_value_t = 1)]
    pub poems: i32,
    /// Seed: same seed and checkpoint, same poems.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Opening text after the `++++` seed window.
    #[arg(long, default_value = "")]
    pub prime: String,
    /// Seconds to wait for a worker to sample.
    #[arg(long, default_value_t = 300)]
    pub wait: i32,
}

#[derive(Subcommand)]
pub enum PoemsCmd {
    /// Generations of a run.
    List {
        /// Run id (default: all runs).
        #[arg(long)]
        run: Option<i64>,
    },
    /// One generation with its poems and reports.
    Show {
        /// Generation id.
        id: i64,
    },
}

#[derive(Args)]
pub struct WordsArgs {
    /// Run whose generated poems to count.
    #[arg(long)]
    pub run: i64,
    /// How many words.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// Also draw a bar chart (.svg or .png).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Database URL for the training corpus (default: POET_DATABASE_URL or the private cluster).
    #[arg(long, env = "POET_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

#[derive(Args)]
pub struct PlotArgs {
    /// Every run of this sweep.
    #[arg(long, required_unless_present = "runs")]
    pub sweep: Option<i64>,
    /// These runs (comma-separated ids).
    #[arg(long, value_delimiter = ',')]
    pub runs: Vec<i64>,
    /// Output file: .svg or .png.
    #[arg(short, long, default_value = "curves.svg")]
    pub output: PathBuf,
    /// Log-scale loss axis.
    #[arg(long)]
    pub log: bool,
    /// Chart title.
    #[arg(long)]
    pub title: Option<String>,
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Issue a token and print it (the only time it is shown; only its SHA-256 is stored).
    Create {
        /// What it may do: worker (train), client (submit, query, control) or viewer (read the
        /// dashboard and its API).
        #[arg(long, value_parser = ["worker", "client", "viewer"])]
        role: String,
        /// A unique name for whoever holds it, e.g. the machine: letters, digits, `._@-`.
        #[arg(long)]
        name: String,
    },
    /// Every issued token: role, creation, last use, revocation (never the token).
    List,
    /// Revoke the live token with this name; coordinators refuse it within two seconds.
    Revoke {
        /// The token's name.
        name: String,
    },
}

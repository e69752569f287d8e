//! The command line: every subcommand, its flags and an example in its help.

use std::path::PathBuf;
use std::str::FromStr;

use clap::builder::{
    BoolishValueParser, PossibleValue, StringValueParser, TypedValueParser, ValueParser,
};
use clap::{Args, Parser, Subcommand, ValueEnum};
use poet_coordinator::CoordinatorConfig;
use poet_proto::v1;

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
    after_help = "Quick start:  poet up --workers 2 && poet ingest dump.ndjson.gz && poet sweeps submit sweep.toml --watch\nExit codes: 0 ok, 1 failure, 2 bad input, 3 not found, 4 coordinator/database unavailable, 5 not ready, 6 denied."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Coordinator address.
    #[arg(
        long,
        global = true,
        env = "POET_COORDINATOR",
        default_value_t = format!("http://{}", CoordinatorConfig::default().listen)
    )]
    pub coordinator: String,
    /// Bearer token for the coordinator's client role.
    #[arg(long, global = true, env = "POET_CLIENT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM CA certificate to verify a TLS coordinator (use an https:// address).
    #[arg(long, global = true, env = "POET_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate, for a coordinator that requires one (mTLS).
    #[arg(long, global = true, env = "POET_TLS_CLIENT_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, global = true, env = "POET_TLS_CLIENT_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Print JSON instead of tables (POET_JSON takes 1/0, true/false, yes/no, on/off).
    #[arg(long, global = true, env = "POET_JSON", value_parser = BoolishValueParser::new())]
    pub json: bool,
    /// Colour: auto (on a terminal, unless NO_COLOR is set), always or never.
    #[arg(
        long,
        global = true,
        env = "POET_COLOR",
        value_enum,
        default_value_t = ColorChoice::Auto
    )]
    pub color: ColorChoice,
    /// No progress bars or informational lines on stderr (warnings and errors still show).
    #[arg(
        long,
        short,
        global = true,
        env = "POET_QUIET",
        value_parser = BoolishValueParser::new()
    )]
    pub quiet: bool,
    /// Log more (or set POET_LOG=debug).
    #[arg(long, short, global = true, env = "POET_VERBOSE", value_parser = BoolishValueParser::new())]
    pub verbose: bool,
}

/// When stdout gets colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless NO_COLOR is set.
    Auto,
    /// Always, even into a pipe or with NO_COLOR.
    Always,
    /// Never.
    Never,
}

#[derive(Subcommand)]
pub enum Command {
    /// The private Postgres cluster. Example: `poet db status`
    #[command(subcommand)]
    Db(DbCmd),
    /// Run the coordinator in the foreground. Example: `poet coordinator --listen 0.0.0.0:50051`
    Coordinator(Box<CoordinatorConfig>),
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
    /// Dataset versions. Example: `poet datasets export poetry@1 -o corpus.txt`
    #[command(subcommand, visible_alias = "dataset")]
    Datasets(DatasetCmd),
    /// Sweeps. Example: `poet sweeps submit sweep.toml --watch`
    #[command(subcommand, visible_alias = "sweep")]
    Sweeps(SweepCmd),
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
    /// Print a shell completion script. Example: `poet completions bash > ~/.local/share/bash-completion/completions/poet`
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff). Example: `poet man | man -l -`
    Man,
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
    /// Device of the workers: cpu, auto, `cuda` (or `gpu`) to put worker i on cuda:i, or
    /// cuda:N to put every worker on GPU N.
    #[arg(long, env = "POET_UP_DEVICE", default_value = "cpu", value_parser = UpDevice::parser())]
    pub device: UpDevice,
    /// Torch threads per worker (default: cores / workers, at least 1).
    #[arg(long, env = "POET_UP_THREADS")]
    pub threads: Option<u32>,
    /// Coordinator listen address.
    #[arg(long, env = "POET_UP_LISTEN", default_value_t = CoordinatorConfig::default().listen.to_string())]
    pub listen: String,
    /// Address of the web dashboard (`off` to serve none).
    #[arg(long, env = "POET_UP_HTTP_LISTEN", default_value = "127.0.0.1:50052")]
    pub http_listen: String,
    /// Lease TTL of the local coordinator, seconds.
    #[arg(long, default_value_t = CoordinatorConfig::default().lease_ttl_s)]
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
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["train", "validation"])
            .map(|s| s.parse::<poet_sql::datasets::Split>().expect("one of the listed values")))]
        split: Option<poet_sql::datasets::Split>,
    },
    /// What an ingest left out and why: counts by reason, then the documents (file, line, id,
    /// the rule that decided and its measures). Example: `poet datasets rejects poetry@2 --reason hard_wrapped`
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
    /// Stop leasing a sweep's runs (running ones go on). Example: `poet sweeps pause 3`
    Pause {
        /// Sweep id.
        id: i64,
    },
    /// Lease a paused sweep's runs again. Example: `poet sweeps resume 3`
    Resume {
        /// Sweep id.
        id: i64,
    },
    /// Change a sweep's priority and its waiting runs'. Example: `poet sweeps priority 3 10`
    Priority {
        /// Sweep id.
        id: i64,
        /// New priority, -1000..=1000 (higher runs first).
        #[arg(allow_negative_numbers = true)]
        priority: i32,
    },
    /// Tag a sweep (stored with your token's name and the time). Example: `poet sweeps tag 3 baseline`
    Tag {
        /// Sweep id.
        id: i64,
        /// Tags: 1 to 100 characters, no control characters.
        #[arg(required = true)]
        tags: Vec<String>,
    },
    /// Remove tags from a sweep. Example: `poet sweeps untag 3 baseline`
    Untag {
        /// Sweep id.
        id: i64,
        /// Tags to remove.
        #[arg(required = true)]
        tags: Vec<String>,
    },
    /// Leave a note on a sweep. Example: `poet sweeps note 3 "lr too high past 3e-3"`
    Note {
        /// Sweep id.
        id: i64,
        /// The note (1 to 10,000 characters).
        text: String,
    },
}

#[derive(Subcommand)]
pub enum RunsCmd {
    /// Runs with filters.
    List {
        /// Only this sweep.
        #[arg(long)]
        sweep: Option<i64>,
        /// Only runs in this state.
        #[arg(long, value_enum)]
        state: Option<StateArg>,
        /// Config filter KEY=VALUE (repeatable), e.g. layers=2.
        #[arg(long = "where", value_name = "KEY=VALUE")]
        filters: Vec<String>,
        /// A filter expression, e.g. "layers >= 2 and best_val_loss < 1.9 and formulation =
        /// 'seq'": config keys, best_val_loss (= min_val_loss), last_val_loss, last_train_loss,
        /// epochs_done, duration_s, chars_per_sec, metrics.KEY (last epoch), state, sweep,
        /// dataset, worker, id, created_at, started_at, finished_at; = != < <= > >= in (...),
        /// and, or, not, parentheses. Combined with the flags above by "and".
        #[arg(long, value_name = "EXPR")]
        filter: Option<String>,
        /// FIELD, FIELD:asc, FIELD:desc or -FIELD, e.g. best_val_loss, -config.units,
        /// metrics.val_bpc:desc; `created` is newest first, `duration` longest training first.
        /// Runs without the value come last; ties go by id.
        #[arg(
            long,
            default_value = "created",
            value_name = "ORDER",
            allow_hyphen_values = true
        )]
        order_by: OrderArg,
        /// At most this many (a page).
        #[arg(long, default_value_t = 50)]
        limit: i32,
        /// Continue after a previous page: the token it printed (same filter and order).
        #[arg(long, value_name = "TOKEN")]
        page_token: Option<String>,
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
    /// Tag a run (stored with your token's name and the time); `--filter "tag = 'x'"` finds
    /// it. Example: `poet runs tag 12 baseline`
    Tag {
        /// Run id.
        id: i64,
        /// Tags: 1 to 100 characters, no control characters.
        #[arg(required = true)]
        tags: Vec<String>,
    },
    /// Remove tags from a run. Example: `poet runs untag 12 baseline`
    Untag {
        /// Run id.
        id: i64,
        /// Tags to remove.
        #[arg(required = true)]
        tags: Vec<String>,
    },
    /// Leave a note on a run. Example: `poet runs note 12 "diverged after the lr warmup"`
    Note {
        /// Run id.
        id: i64,
        /// The note (1 to 10,000 characters).
        text: String,
    },
    /// Write runs matching a filter to CSV or JSON lines, one row per run (id, sweep, state,
    /// dataset, one column per config key, summary metrics, tags), or one per epoch with
    /// `--epochs`. Pages through the coordinator 1,000 runs at a time.
    /// Example: `poet runs export --filter "sweep = 3" -o runs.csv`
    Export {
        /// A filter expression (as `runs list --filter`).
        #[arg(long, value_name = "EXPR", default_value = "")]
        filter: String,
        /// An order (as `runs list --order-by`).
        #[arg(
            long,
            default_value = "created",
            value_name = "ORDER",
            allow_hyphen_values = true
        )]
        order_by: OrderArg,
        /// Output file; `-` is stdout.
        #[arg(short, long, value_name = "FILE")]
        output: String,
        /// csv or jsonl; by default from the file's extension (stdout: csv).
        #[arg(long)]
        format: Option<String>,
        /// One row per epoch (run id, epoch, losses, every metrics key) instead of per run.
        #[arg(long)]
        epochs: bool,
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
    /// Which checkpoint: best, latest or `epoch:N`.
    #[arg(long, default_value = "best", value_parser = CheckpointArg::parser())]
    pub checkpoint: CheckpointArg,
    /// Temperatures (comma-separated); 0 = greedy.
    #[arg(long, value_delimiter = ',', default_values_t = [poet_core::quality::defaults::TEMPERATURE])]
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
    #[command(flatten)]
    pub sampling: crate::commands::poems::SamplingArgs,
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

/// A run state as `--state` spells it: the names the database stores
/// ([`v1::RunState::db_name`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateArg(pub v1::RunState);

impl ValueEnum for StateArg {
    fn value_variants<'a>() -> &'a [Self] {
        use v1::RunState::*;
        &[
            StateArg(Queued),
            StateArg(Running),
            StateArg(Paused),
            StateArg(Stopped),
            StateArg(Succeeded),
            StateArg(Failed),
            StateArg(Cancelled),
        ]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.0.db_name()))
    }
}

/// `--order-by` of `runs list`: an order `ListRuns` reads ([`poet_core::filter::Order`]),
/// checked before any call. `best-val-loss`, the old spelling, is still read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderArg(pub String);

impl FromStr for OrderArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = if s == "best-val-loss" {
            "best_val_loss"
        } else {
            s
        };
        poet_core::filter::Order::parse(s)
            .map(|_| OrderArg(s.to_string()))
            .map_err(|e| e.to_string())
    }
}

/// A value parser for a type parsed with `FromStr` whose spellings are a few words and a
/// pattern (`epoch:N`), which `ValueEnum` cannot carry: parses with `FromStr` and lists the
/// spellings in `--help`, in completions and in errors, as `ValueEnum` would.
#[derive(Clone)]
struct Spelled<P> {
    inner: P,
    spellings: &'static [(&'static str, &'static str)],
}

fn spelled<T>(spellings: &'static [(&'static str, &'static str)]) -> ValueParser
where
    T: FromStr<Err = String> + Clone + Send + Sync + 'static,
{
    ValueParser::new(Spelled {
        inner: StringValueParser::new().try_map(|s| s.parse::<T>()),
        spellings,
    })
}

impl<P: TypedValueParser> TypedValueParser for Spelled<P> {
    type Value = P::Value;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Self::Value, clap::Error> {
        self.inner.parse_ref(cmd, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            self.spellings
                .iter()
                .map(|&(name, help)| PossibleValue::new(name).help(help)),
        ))
    }
}

/// `--checkpoint` of `generate`: which checkpoint of the run to sample from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointArg {
    /// The lowest validation loss.
    Best,
    /// The newest.
    Latest,
    /// The one saved at this epoch.
    Epoch(u32),
}

impl CheckpointArg {
    fn parser() -> ValueParser {
        spelled::<Self>(&[
            ("best", "the lowest validation loss"),
            ("latest", "the newest"),
            ("epoch:N", "the one saved at epoch N"),
        ])
    }
}

impl FromStr for CheckpointArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "best" => Ok(CheckpointArg::Best),
            "latest" => Ok(CheckpointArg::Latest),
            _ => s
                .strip_prefix("epoch:")
                .and_then(|n| n.parse().ok())
                .filter(|n| *n >= 1)
                .map(CheckpointArg::Epoch)
                .ok_or_else(|| format!("'{s}' is not best, latest or epoch:N (N from 1)")),
        }
    }
}

impl std::fmt::Display for CheckpointArg {
    /// The selector `Generate` takes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckpointArg::Best => f.write_str("best"),
            CheckpointArg::Latest => f.write_str("latest"),
            CheckpointArg::Epoch(n) => write!(f, "epoch:{n}"),
        }
    }
}

/// `--device` of `poet up`: where its workers train.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpDevice {
    /// The CPU.
    Cpu,
    /// A GPU when the worker sees one, else the CPU.
    Auto,
    /// One GPU per worker: worker i on cuda:i.
    EachGpu,
    /// Every worker on this GPU.
    Gpu(u32),
}

impl UpDevice {
    fn parser() -> ValueParser {
        spelled::<Self>(&[
            ("cpu", "the CPU"),
            ("auto", "a GPU when the worker sees one, else the CPU"),
            ("cuda", "worker i on cuda:i (also `gpu`)"),
            ("cuda:N", "every worker on GPU N"),
        ])
    }

    /// The `--device` of worker `i` (as `poet-worker` spells it).
    pub fn for_worker(self, i: usize) -> String {
        match self {
            UpDevice::Cpu => "cpu".into(),
            UpDevice::Auto => "auto".into(),
            UpDevice::EachGpu => format!("cuda:{i}"),
            UpDevice::Gpu(n) => format!("cuda:{n}"),
        }
    }
}

impl FromStr for UpDevice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(UpDevice::Cpu),
            "auto" => Ok(UpDevice::Auto),
            "cuda" | "gpu" => Ok(UpDevice::EachGpu),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(UpDevice::Gpu)
                .ok_or_else(|| format!("'{s}' is not cpu, auto, cuda or cuda:N")),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn typed_flags_keep_their_spellings() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("poet").chain(args.iter().copied()))
        };
        let Command::Runs(RunsCmd::List {
            state, order_by, ..
        }) = parse(&[
            "runs",
            "list",
            "--state",
            "cancelled",
            "--order-by",
            "best_val_loss",
        ])
        .unwrap()
        .command
        else {
            panic!("not runs list")
        };
        assert_eq!(state, Some(StateArg(v1::RunState::Cancelled)));
        assert_eq!(order_by.0, "best_val_loss");
        for (given, sent) in [
            ("best-val-loss", "best_val_loss"),
            ("-config.units", "-config.units"),
            ("-best_val_loss", "-best_val_loss"),
            ("units:desc", "units:desc"),
            ("duration", "duration"),
        ] {
            let Command::Runs(RunsCmd::List { order_by, .. }) =
                parse(&["runs", "list", "--order-by", given])
                    .unwrap()
                    .command
            else {
                panic!("not runs list")
            };
            assert_eq!(order_by.0, sent);
        }
        assert!(parse(&["runs", "list", "--state", "done"]).is_err());
        let e = parse(&["runs", "list", "--order-by", "loss"])
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("unknown field 'loss' ") && e.contains("^"),
            "{e}"
        );

        for (given, sent) in [
            ("best", "best"),
            ("latest", "latest"),
            ("epoch:3", "epoch:3"),
        ] {
            let Command::Generate(g) = parse(&["generate", "--run", "1", "--checkpoint", given])
                .unwrap()
                .command
            else {
                panic!("not generate")
            };
            assert_eq!(g.checkpoint.to_string(), sent);
        }
        for bad in ["epoch:0", "epoch:x", "newest"] {
            let e = parse(&["generate", "--run", "1", "--checkpoint", bad])
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains("is not best, latest or epoch:N"), "{e}");
        }

        for (given, worker_1) in [
            ("cpu", "cpu"),
            ("auto", "auto"),
            ("cuda", "cuda:1"),
            ("gpu", "cuda:1"),
            ("cuda:3", "cuda:3"),
        ] {
            let Command::Up(u) = parse(&["up", "--device", given]).unwrap().command else {
                panic!("not up")
            };
            assert_eq!(u.device.for_worker(1), worker_1, "{given}");
        }
        assert!(parse(&["up", "--device", "tpu"]).is_err());
    }

    #[test]
    fn help_lists_the_spellings() {
        let mut cmd = Cli::command();
        let help = cmd
            .find_subcommand_mut("generate")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(
            help.contains("epoch:N") && help.contains("latest"),
            "{help}"
        );
    }
}

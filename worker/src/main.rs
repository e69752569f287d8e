//! `poet-worker`: parses flags (each also read from a `POET_*` variable) and calls the library.

use clap::builder::BoolishValueParser;
use clap::{Parser, Subcommand};
use poet_worker::{commands, device, memory};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(version, about = "poet's training worker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Device: cpu, auto or cuda:N.
    #[arg(long, env = "POET_DEVICE", default_value = "auto", global = true)]
    device: device::DeviceSpec,
    /// Torch threads (default: all cores).
    #[arg(long, env = "POET_THREADS", global = true)]
    threads: Option<i32>,
    /// Freed memory: `retain` keeps it for the next batch (1.4-1.6x faster CPU training; RSS
    /// stays at its high-water mark), `system` is glibc's default.
    #[arg(long, env = "POET_MALLOC", value_enum, default_value_t = memory::Malloc::Retain, global = true)]
    malloc: memory::Malloc,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a coordinator.
    Run {
        /// Coordinator URL, e.g. http://coordinator:7070.
        #[arg(long, env = "POET_COORDINATOR")]
        coordinator: String,
        /// Bearer token for the coordinator (never logged).
        #[arg(long, env = "POET_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// PEM CA certificate to verify a TLS coordinator (an https:// address).
        #[arg(long, env = "POET_TLS_CA")]
        tls_ca: Option<PathBuf>,
        /// PEM client certificate, for a coordinator that requires one (mTLS).
        #[arg(long, env = "POET_TLS_CLIENT_CERT", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key of --tls-cert.
        #[arg(long, env = "POET_TLS_CLIENT_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Dataset and checkpoint cache.
        #[arg(long, env = "POET_CACHE_DIR", default_value = "/var/cache/poet-worker")]
        cache_dir: PathBuf,
        /// Do not serve generation jobs.
        #[arg(long, env = "POET_NO_GENERATION", value_parser = BoolishValueParser::new())]
        no_generation: bool,
        /// One worker process per listed GPU (overrides --device).
        #[arg(long, env = "POET_GPUS", value_delimiter = ',')]
        gpus: Vec<usize>,
        /// A `key=value` label announced to the coordinator (repeat for more); a sweep's
        /// `[resources] labels` only go to workers carrying them all, e.g. `--label zone=a`.
        #[arg(long = "label", env = "POET_LABELS", value_delimiter = ',',
              value_parser = poet_core::resources::parse_label)]
        labels: Vec<(String, String)>,
        /// Serve Prometheus metrics on this address at /metrics, e.g. 127.0.0.1:9101 (with
        /// --gpus, the k-th GPU's worker uses this port + k). No token: keep it on loopback
        /// or a network only Prometheus reaches.
        #[arg(long, env = "POET_WORKER_METRICS_ADDR", value_name = "ADDR")]
        metrics_addr: Option<std::net::SocketAddr>,
    },
    /// Train from a corpus file, without a coordinator.
    Train {
        /// Framed corpus text file.
        #[arg(long, env = "POET_CORPUS")]
        corpus: PathBuf,
        /// TOML file of TrainConfig keys.
        #[arg(long, env = "POET_CONFIG")]
        config: PathBuf,
        /// Tail fraction of the corpus held out for validation.
        #[arg(long, env = "POET_VALIDATION_FRACTION", default_value_t = 0.1)]
        validation_fraction: f64,
        /// Directory for checkpoints.
        #[arg(long, env = "POET_OUT", default_value = "checkpoints")]
        out: PathBuf,
    },
    /// Sample poems from a checkpoint file.
    Generate {
        /// Checkpoint file (safetensors).
        #[arg(long, env = "POET_CHECKPOINT")]
        checkpoint: PathBuf,
        /// Temperatures, comma-separated (0 = greedy).
        #[arg(
            long,
            env = "POET_TEMPERATURE",
            value_delimiter = ',',
            default_value = "0.2,0.5,1.0"
        )]
        temperature: Vec<f64>,
        /// Characters per stream.
        #[arg(long, env = "POET_CHARS", default_value_t = 400)]
        chars: usize,
        /// Streams per temperature.
        #[arg(long, env = "POET_POEMS", default_value_t = 1)]
        poems: usize,
        /// Random seed.
        #[arg(long, env = "POET_SEED", default_value_t = 0)]
        seed: u64,
        /// Text after the seed window.
        #[arg(long, env = "POET_PRIME", default_value = "")]
        prime: String,
        /// Print JSON.
        #[arg(long, env = "POET_JSON", value_parser = BoolishValueParser::new())]
        json: bool,
        /// Sliding-window sampling (the Keras reference): the same as --mode window.
        #[arg(long, env = "POET_WINDOW", value_parser = BoolishValueParser::new())]
        window: bool,
        /// The training corpus: aims line and stanza breaks at its figures and prints a
        /// quality report (generated vs corpus) per temperature.
        #[arg(long, env = "POET_CORPUS")]
        corpus: Option<PathBuf>,
        #[command(flatten)]
        sampling: commands::SamplingFlags,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let retained = memory::apply(cli.malloc);
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    tracing::debug!(retained, malloc = ?cli.malloc, "allocator policy");
    tch::set_num_threads(cli.threads.unwrap_or_else(device::default_threads));
    let result = match cli.command {
        Command::Run {
            coordinator,
            token,
            tls_ca,
            tls_cert,
            tls_key,
            cache_dir,
            no_generation,
            gpus,
            labels,
            metrics_addr,
        } => {
            let opts = commands::ServeOptions {
                coordinator,
                token,
                tls: poet_worker::agent::Tls {
                    ca: tls_ca,
                    cert: tls_cert,
                    key: tls_key,
                },
                cache_dir,
                serve_generation: !no_generation,
                gpus,
                device: cli.device,
                labels,
                metrics_addr,
            };
            commands::serve(opts, shutdown_signal())
        }
        Command::Train {
            corpus,
            config,
            validation_fraction,
            out,
        } => commands::train(&commands::TrainOptions {
            corpus,
            config,
            validation_fraction,
            out,
            device: cli.device,
        }),
        Command::Generate {
            checkpoint,
            temperature,
            chars,
            poems,
            seed,
            prime,
            json,
            window,
            corpus,
            mut sampling,
        } => {
            if window {
                sampling.mode = poet_worker::sample::SampleMode::Window;
            }
            let opts = commands::GenerateOptions {
                checkpoint,
                temperatures: temperature,
                chars,
                poems,
                seed,
                prime,
                json,
                sampling,
                corpus,
                device: cli.device,
            };
            commands::generate(&opts).map(|text| print!("{text}"))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Resolves on SIGTERM or ctrl-c.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("sigterm handler");
    tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term.recv() => {} }
}

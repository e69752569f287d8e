//! The standalone commands behind `poet-worker train` (no coordinator: corpus file in,
//! checkpoint files out) and `poet-worker generate` (offline sampling from a checkpoint
//! file), and how their failures map to exit codes.

use crate::checkpoint::Checkpoint;
use crate::device::DeviceSpec;
use crate::sample::{self, SampleError, SampleMode, SampleRequest, Sampling};
use crate::train::{Outcome, Progress, TrainError, Trainer};
use poet_core::config::TrainConfig;
use poet_core::ngrams::NgramSet;
use poet_core::quality::{self, Quality, Vocabulary};
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// A failed command: bad input (exit 2, names the input) or anything else (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// An input file or value is unusable.
    #[error("{input}: {reason}")]
    BadInput {
        /// Which input (`--corpus`, `--config`, ...).
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Anything else (I/O on outputs, a diverging run).
    #[error("{0}")]
    Other(String),
}

impl CommandError {
    fn bad(input: &str, reason: impl ToString) -> Self {
        CommandError::BadInput {
            input: input.into(),
            reason: reason.to_string(),
        }
    }

    /// The process exit code: 2 for bad input, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::BadInput { .. } => 2,
            CommandError::Other(_) => 1,
        }
    }
}

impl From<crate::agent::AgentError> for CommandError {
    fn from(e: crate::agent::AgentError) -> Self {
        use crate::agent::AgentError;
        match e {
            AgentError::BadUrl { .. } => CommandError::bad("--coordinator", e),
            AgentError::BadToken => CommandError::bad("--token", e),
            AgentError::Tls(_) => CommandError::bad("--tls-ca/--tls-cert/--tls-key", e),
            AgentError::Cache { .. } => CommandError::bad("--cache-dir", e),
            AgentError::Register(_) => CommandError::Other(e.to_string()),
            AgentError::Device(_) => CommandError::bad("--device", e),
        }
    }
}

/// Options of `poet-worker run`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Coordinator URL.
    pub coordinator: String,
    /// Bearer token, if the coordinator requires one.
    pub token: Option<String>,
    /// TLS files for an https:// coordinator.
    pub tls: crate::agent::Tls,
    /// Dataset and checkpoint cache.
    pub cache_dir: PathBuf,
    /// Whether to serve generation jobs.
    pub serve_generation: bool,
    /// One child process per listed GPU when not empty.
    pub gpus: Vec<usize>,
    /// Device when `gpus` is empty.
    pub device: DeviceSpec,
    /// `--label key=value` pairs announced at Register.
    pub labels: Vec<(String, String)>,
    /// Serve Prometheus metrics here; with `gpus`, the worker of the k-th listed GPU serves
    /// on this port + k.
    pub metrics_addr: Option<SocketAddr>,
}

/// Serves the coordinator until `shutdown`: in this process, or as one child per GPU.
pub fn serve(
    opts: ServeOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), CommandError> {
    let rt = tokio::runtime::Runtime::new()
        .map_err(|e| CommandError::Other(format!("tokio runtime: {e}")))?;
    if !opts.gpus.is_empty() {
        check_gpus(&opts.gpus, crate::device::cuda_devices())?;
        let mut base = vec![
            "--coordinator".into(),
            opts.coordinator,
            "--cache-dir".into(),
            opts.cache_dir.display().to_string(),
        ];
        if !opts.serve_generation {
            base.push("--no-generation".into());
        }
        for (k, v) in &opts.labels {
            base.extend(["--label".to_string(), format!("{k}={v}")]);
        }
        for (flag, path) in [
            ("--tls-ca", &opts.tls.ca),
            ("--tls-cert", &opts.tls.cert),
            ("--tls-key", &opts.tls.key),
        ] {
            if let Some(p) = path {
                base.extend([flag.to_string(), p.display().to_string()]);
            }
        }
        let metrics = gpu_metrics_addrs(opts.metrics_addr, opts.gpus.len())?;
        return rt.block_on(supervise_gpus(
            &opts.gpus,
            &base,
            &metrics,
            opts.token.as_deref(),
            shutdown,
        ));
    }
    let metrics = Arc::new(crate::metrics::WorkerMetrics::default());
    let server = match opts.metrics_addr {
        Some(addr) => {
            let listener = crate::metrics::bind(addr)
                .map_err(|e| CommandError::bad(&format!("--metrics-addr {addr}"), e))?;
            Some(rt.spawn(crate::metrics::serve(listener, metrics.clone())))
        }
        None => None,
    };
    let config = crate::agent::AgentConfig {
        device: opts.device,
        token: opts.token,
        tls: opts.tls,
        cache_dir: opts.cache_dir,
        serve_generation: opts.serve_generation,
        labels: opts.labels,
        metrics,
        ..crate::agent::AgentConfig::new(opts.coordinator)
    };
    let result = rt.block_on(crate::agent::run(config, shutdown));
    if let Some(s) = server {
        s.abort();
    }
    Ok(result?)
}

/// The metrics address of each GPU's worker: `addr`'s port + k for the k-th (port 0: each
/// picks a free one). Refuses a range that runs past port 65535.
pub fn gpu_metrics_addrs(
    addr: Option<SocketAddr>,
    gpus: usize,
) -> Result<Vec<Option<SocketAddr>>, CommandError> {
    (0..gpus)
        .map(|k| {
            let Some(a) = addr else { return Ok(None) };
            if a.port() == 0 {
                return Ok(Some(a));
            }
            u16::try_from(usize::from(a.port()) + k)
                .map(|p| Some(SocketAddr::new(a.ip(), p)))
                .map_err(|_| {
                    CommandError::bad(
                        &format!("--metrics-addr {a}"),
                        format!(
                            "{gpus} GPUs need ports {}..={}, past 65535",
                            a.port(),
                            usize::from(a.port()) + gpus - 1
                        ),
                    )
                })
        })
        .collect()
}

/// Refuses a `--gpus` list naming a GPU this machine (with `count` GPUs) lacks, or one GPU
/// twice, before any child starts.
pub fn check_gpus(gpus: &[usize], count: usize) -> Result<(), CommandError> {
    let list = gpus
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",");
    for (i, &gpu) in gpus.iter().enumerate() {
        crate::device::DeviceSpec::Cuda(gpu)
            .resolve_among(count)
            .map_err(|e| CommandError::bad(&format!("--gpus {list}"), e))?;
        if gpus[..i].contains(&gpu) {
            return Err(CommandError::bad(
                &format!("--gpus {list}"),
                format!("cuda:{gpu} is listed twice (one worker process per GPU)"),
            ));
        }
    }
    Ok(())
}

/// Runs one `poet-worker run` child process per GPU (`--device cuda:N` each) until
/// `shutdown`, then sends each child SIGTERM (so each releases its run) and waits for them.
/// One process per GPU keeps torch's process-global state (generator, thread pool) per run.
/// `base` are the child's arguments after `run` except `--device`; `token` travels in the
/// child's environment, never on its command line.
async fn supervise_gpus(
    gpus: &[usize],
    base: &[String],
    metrics: &[Option<SocketAddr>],
    token: Option<&str>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), CommandError> {
    let exe =
        std::env::current_exe().map_err(|e| CommandError::Other(format!("own executable: {e}")))?;
    let threads = (crate::device::default_threads() / gpus.len().max(1) as i32).max(1);
    let mut children = Vec::new();
    for (k, &gpu) in gpus.iter().enumerate() {
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.arg("--device")
            .arg(format!("cuda:{gpu}"))
            .arg("--threads")
            .arg(threads.to_string());
        cmd.arg("run")
            .args(base)
            .env_remove("POET_GPUS")
            .env_remove("POET_WORKER_METRICS_ADDR")
            .env_remove("POET_TOKEN");
        if let Some(Some(addr)) = metrics.get(k) {
            cmd.arg("--metrics-addr").arg(addr.to_string());
        }
        if let Some(t) = token {
            cmd.env("POET_TOKEN", t);
        }
        let child = cmd
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| CommandError::Other(format!("spawning worker for gpu {gpu}: {e}")))?;
        tracing::info!(gpu, pid = child.id(), "worker started");
        children.push(child);
    }
    let pids: Vec<u32> = children
        .iter()
        .filter_map(tokio::process::Child::id)
        .collect();
    {
        let all_exit = futures::future::join_all(children.iter_mut().map(|c| c.wait()));
        tokio::select! {
            _ = all_exit => return Err(CommandError::Other("every gpu worker exited".into())),
            _ = shutdown => {}
        }
    }
    for pid in pids {
        // std offers no SIGTERM and the crate forbids unsafe (libc::kill): use kill(1).
        let _ = tokio::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .await;
    }
    for c in &mut children {
        let _ = c.wait().await;
    }
    Ok(())
}

/// Options of `poet-worker train`.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Framed corpus text.
    pub corpus: PathBuf,
    /// TOML file of [`TrainConfig`] keys (missing keys take their defaults).
    pub config: PathBuf,
    /// Fraction of the corpus (its tail, cut at a `++++` frame) held out for validation.
    pub validation_fraction: f64,
    /// Directory for `epoch-NNNN.safetensors` and `latest.safetensors`.
    pub out: PathBuf,
    /// Device to train on.
    pub device: DeviceSpec,
}

/// Splits `text` into (train, validation) with about `fraction` of the chars in validation,
/// cutting at the first `++++` frame at or after the split point so no poem is shared.
pub fn split_corpus(text: &str, fraction: f64) -> (&str, &str) {
    if fraction <= 0.0 {
        return (text, "");
    }
    let target = ((text.len() as f64) * (1.0 - fraction)) as usize;
    let mut cut = (target..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    if let Some(frame) = text[cut..].find(poet_core::FRAME) {
        cut += frame;
    }
    text.split_at(cut)
}

/// Trains a run from a corpus file, writing a checkpoint after every epoch.
pub fn train(opts: &TrainOptions) -> Result<(), CommandError> {
    let corpus =
        std::fs::read_to_string(&opts.corpus).map_err(|e| CommandError::bad("--corpus", e))?;
    let config_text =
        std::fs::read_to_string(&opts.config).map_err(|e| CommandError::bad("--config", e))?;
    let cfg: TrainConfig =
        toml::from_str(&config_text).map_err(|e| CommandError::bad("--config", e.message()))?;
    cfg.validate()
        .map_err(|e| CommandError::bad("--config", e))?;
    if !(0.0..1.0).contains(&opts.validation_fraction) {
        return Err(CommandError::bad(
            "--validation-fraction",
            "must be in [0, 1)",
        ));
    }
    let device = opts
        .device
        .resolve()
        .map_err(|e| CommandError::bad("--device", e))?;
    std::fs::create_dir_all(&opts.out).map_err(|e| CommandError::bad("--out", e))?;
    let (train_text, val_text) = split_corpus(&corpus, opts.validation_fraction);
    let mut trainer =
        Trainer::new(cfg.clone(), train_text, val_text, device).map_err(|e| match e {
            TrainError::Data(r) => CommandError::bad("--corpus", r),
            TrainError::Config(r) => CommandError::bad("--config", r),
            e => CommandError::Other(e.to_string()),
        })?;
    eprintln!(
        "training {} params on {:?}: {} train chars, {} validation chars, {} batches/epoch",
        trainer.model().parameter_count(),
        device,
        train_text.chars().count(),
        val_text.chars().count(),
        trainer.batches_per_epoch()
    );
    let tty = std::io::stderr().is_terminal();
    let epochs = cfg.epochs;
    let mut progress = |p: Progress| {
        if tty {
            let left = (p.batches - p.batch) as f64 * cfg.batch_size as f64 * cfg.seq_len as f64
                / p.chars_per_sec.max(1e-9);
            eprint!(
                "\repoch {}/{epochs} batch {}/{} loss {:.4} {:.0} chars/s ETA {:.0}s   ",
                p.epoch, p.batch, p.batches, p.loss, p.chars_per_sec, left
            );
            let _ = std::io::stderr().flush();
        }
    };
    let mut write_error = None;
    let mut on_epoch = |r: crate::train::EpochReport| {
        if tty {
            eprintln!();
        }
        println!(
            "epoch {} train_loss {:.4} val_loss {:.4} duration_s {:.1} chars_per_sec {:.0}",
            r.epoch, r.train_loss, r.val_loss, r.duration_s, r.chars_per_sec
        );
        for name in [
            format!("epoch-{:04}.safetensors", r.epoch),
            "latest.safetensors".into(),
        ] {
            if let Err(e) = std::fs::write(opts.out.join(&name), &r.checkpoint) {
                write_error = Some(format!("writing {name}: {e}"));
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    };
    let outcome = trainer
        .run(&AtomicBool::new(false), &mut progress, &mut on_epoch)
        .map_err(|e| CommandError::Other(e.to_string()))?;
    match (outcome, write_error) {
        (_, Some(e)) => Err(CommandError::Other(e)),
        (Outcome::Finished, None) => Ok(()),
        (o, None) => Err(CommandError::Other(format!("training ended early: {o:?}"))),
    }
}

/// The sampler flags of `poet-worker generate` (each also read from a `POET_*` variable);
/// the coordinator's `GenerateRequest` carries the same settings.
#[derive(Debug, Clone, clap::Args)]
pub struct SamplingFlags {
    /// carry (state carried from char to char) or window (the Keras reference: re-run the last
    /// seq_len chars for every char, seq_len times the work).
    #[arg(long, env = "POET_MODE", default_value = "carry", value_parser = parse_mode)]
    pub mode: SampleMode,
    /// Nucleus: draw from the likeliest chars whose probability reaches this, in (0, 1].
    #[arg(long, env = "POET_TOP_P", default_value_t = sample::DEFAULT_TOP_P)]
    pub top_p: f64,
    /// Draw from the k likeliest chars only (0 = all).
    #[arg(long, env = "POET_TOP_K", default_value_t = sample::DEFAULT_TOP_K)]
    pub top_k: usize,
    /// A line may stand at most this many times in a poem (0 = no cap).
    #[arg(long, env = "POET_MAX_LINE_REPEATS", default_value_t = sample::DEFAULT_MAX_LINE_REPEATS)]
    pub max_line_repeats: usize,
    /// Pull (nats) of line and stanza breaks towards the corpus's shape; needs --corpus (0 = off).
    #[arg(long, env = "POET_SHAPE_BOOST", default_value_t = sample::DEFAULT_SHAPE_BOOST)]
    pub shape_boost: f64,
}

fn parse_mode(s: &str) -> Result<SampleMode, String> {
    SampleMode::parse(s).ok_or_else(|| format!("'{s}' is not carry or window"))
}

impl SamplingFlags {
    /// The sampler settings these flags ask for, aimed at `corpus`'s shape when known.
    pub fn sampling(&self, corpus: Option<&Quality>) -> Sampling {
        let s = Sampling {
            top_p: self.top_p,
            top_k: self.top_k,
            max_line_repeats: self.max_line_repeats,
            shape_boost: self.shape_boost,
            ..Sampling::off()
        };
        match corpus {
            Some(c) => s.towards(c.shape.mean_line_chars, c.shape.lines_per_stanza),
            None => s,
        }
    }
}

/// Options of `poet-worker generate`.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Checkpoint file.
    pub checkpoint: PathBuf,
    /// Temperatures.
    pub temperatures: Vec<f64>,
    /// Characters per stream.
    pub chars: usize,
    /// Streams per temperature.
    pub poems: usize,
    /// Seed.
    pub seed: u64,
    /// Opening text after the seed window.
    pub prime: String,
    /// Print JSON instead of text.
    pub json: bool,
    /// Mode and sampler settings.
    pub sampling: SamplingFlags,
    /// The training corpus: aims the shape pull at its figures and adds a quality report per
    /// temperature.
    pub corpus: Option<PathBuf>,
    /// Device to sample on.
    pub device: DeviceSpec,
}

/// A training corpus loaded for judging samples: its figures, words and 4-gram set.
pub struct Judge {
    /// The corpus's own figures.
    pub corpus: Quality,
    /// Its words.
    pub vocabulary: Vocabulary,
    /// Its 4-grams.
    pub ngrams: NgramSet,
}

impl Judge {
    /// Reads and measures a corpus file.
    pub fn load(path: &std::path::Path) -> Result<Judge, CommandError> {
        let text = std::fs::read_to_string(path).map_err(|e| CommandError::bad("--corpus", e))?;
        let (corpus, vocabulary) = quality::corpus_figures(&text);
        Ok(Judge {
            corpus,
            vocabulary,
            ngrams: NgramSet::from_corpus(&text),
        })
    }

    /// The report of the poems of `streams`.
    pub fn report<'a>(&self, streams: impl IntoIterator<Item = &'a str>) -> quality::Report {
        let poems: Vec<String> = streams.into_iter().flat_map(sample::split_poems).collect();
        let refs: Vec<&str> = poems.iter().map(String::as_str).collect();
        quality::Report::of(&refs, &self.vocabulary, &self.corpus, &self.ngrams)
    }
}

/// Samples from a checkpoint file; returns what to print.
pub fn generate(opts: &GenerateOptions) -> Result<String, CommandError> {
    let bytes =
        std::fs::read(&opts.checkpoint).map_err(|e| CommandError::bad("--checkpoint", e))?;
    let ckpt = Checkpoint::from_bytes(&bytes).map_err(|e| CommandError::bad("--checkpoint", e))?;
    let device = opts
        .device
        .resolve()
        .map_err(|e| CommandError::bad("--device", e))?;
    let model = ckpt
        .model(device)
        .map_err(|e| CommandError::bad("--checkpoint", e))?;
    let judge = opts.corpus.as_deref().map(Judge::load).transpose()?;
    let req = SampleRequest {
        temperatures: opts.temperatures.clone(),
        chars: opts.chars,
        streams_per_temperature: opts.poems,
        seed: opts.seed,
        prime: opts.prime.clone(),
        mode: opts.sampling.mode,
        sampling: opts.sampling.sampling(judge.as_ref().map(|j| &j.corpus)),
    };
    let streams =
        sample::sample(&model, &ckpt.vocab(), &ckpt.meta.config, &req).map_err(|e| match e {
            SampleError::Invalid { field, message } => {
                CommandError::bad(&format!("--{}", field.replace('_', "-")), message)
            }
            e => CommandError::bad("--temperature", e),
        })?;
    // One report per temperature, over its streams' poems.
    let reports: Vec<(f64, quality::Report)> = match &judge {
        None => vec![],
        Some(j) => opts
            .temperatures
            .iter()
            .map(|&t| {
                let texts = streams.iter().filter(|s| s.temperature == t);
                (t, j.report(texts.map(|s| s.text.as_str())))
            })
            .collect(),
    };
    if opts.json {
        let v: Vec<serde_json::Value> = streams
            .iter()
            .map(|s| serde_json::json!({"temperature": s.temperature, "text": s.text, "poems": sample::split_poems(&s.text)}))
            .collect();
        let quality: Vec<serde_json::Value> = reports
            .iter()
            .map(|(t, r)| serde_json::json!({"temperature": t, "quality": r}))
            .collect();
        let out = if judge.is_some() {
            serde_json::json!({"streams": v, "quality": quality})
        } else {
            serde_json::Value::Array(v)
        };
        return Ok(serde_json::to_string_pretty(&out).expect("json"));
    }
    let mut out = String::new();
    for (i, s) in streams.iter().enumerate() {
        out.push_str(&format!(
            "# stream {} temperature {}\n",
            i + 1,
            s.temperature
        ));
        for poem in sample::split_poems(&s.text) {
            out.push_str(&poem);
            out.push_str("\n\n");
        }
    }
    for (t, r) in &reports {
        out.push_str(&format!("# quality at temperature {t}\n{}\n", r.table()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_gpu_worker_gets_the_next_metrics_port() {
        let at = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        let ports = |v: Vec<Option<SocketAddr>>| -> Vec<u16> {
            v.iter().map(|a| a.unwrap().port()).collect()
        };
        assert_eq!(
            ports(gpu_metrics_addrs(at("0.0.0.0:9110"), 3).unwrap()),
            [9110, 9111, 9112]
        );
        assert_eq!(
            ports(gpu_metrics_addrs(at("127.0.0.1:0"), 2).unwrap()),
            [0, 0]
        );
        assert_eq!(gpu_metrics_addrs(None, 2).unwrap(), [None, None]);
        let e = gpu_metrics_addrs(at("127.0.0.1:65535"), 2).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string()
                .starts_with("--metrics-addr 127.0.0.1:65535: 2 GPUs need ports"),
            "{e}"
        );
    }

    #[test]
    fn split_cuts_at_a_frame() {
        let text = "++++\naaaa\n++++\nbbbb\n++++\ncc\n";
        let (t, v) = split_corpus(text, 0.5);
        assert_eq!(format!("{t}{v}"), text);
        assert!(v.starts_with("++++"), "{v:?}");
        assert_eq!(split_corpus(text, 0.0), (text, ""));
    }
}

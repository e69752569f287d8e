//! Benchmarks of the worker, driven by `bench/worker/run.sh` beside the PyTorch reference
//! (`bench/worker/torch_reference.py`). Each mode prints one JSON line per measurement.
//!
//! - `train`: training chars/s over a fixed number of batches (one warm-up epoch first);
//! - `quality`: validation loss against training wall clock, for time-to-quality;
//! - `sample`: sampling chars/s at a given number of streams.

use clap::{Parser, Subcommand};
use poet_core::config::{Formulation, TrainConfig};
use poet_worker::sample::{SampleMode, SampleRequest, sample};
use poet_worker::train::Trainer;
use poet_worker::{data, model::PoetModel, vocab::Vocab};
use std::sync::atomic::AtomicBool;
use std::time::Instant;
use tch::{Device, Kind};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    mode: Mode,
    /// Corpus file (framed poems).
    #[arg(long, global = true, default_value = "/work/shared/data/corpus-pd.txt")]
    corpus: String,
    #[arg(long, global = true, default_value_t = 2)]
    threads: i32,
    #[arg(long, global = true, default_value_t = 2)]
    layers: u32,
    #[arg(long, global = true, default_value_t = 64)]
    units: u32,
    #[arg(long, global = true, default_value_t = 40)]
    seq_len: u32,
    #[arg(long, global = true, default_value_t = 3)]
    step: u32,
    #[arg(long, global = true, default_value_t = 128)]
    batch: u32,
    #[arg(long, global = true, default_value = "keras")]
    formulation: String,
    #[arg(long, global = true, default_value = "cpu")]
    device: String,
    /// As `poet-worker --malloc`.
    #[arg(long, global = true, env = "POET_MALLOC", value_enum, default_value_t = poet_worker::memory::Malloc::Retain)]
    malloc: poet_worker::memory::Malloc,
}

#[derive(Subcommand)]
enum Mode {
    /// Training throughput over `batches` batches.
    Train {
        #[arg(long, default_value_t = 20)]
        batches: u32,
    },
    /// Validation loss (keras-style: next char after a full window) against training time.
    Quality {
        /// Training seconds to spend.
        #[arg(long, default_value_t = 120.0)]
        seconds: f64,
        /// Batches between evaluations.
        #[arg(long, default_value_t = 50)]
        eval_every: u32,
        #[arg(long, default_value_t = 0.01)]
        lr: f64,
    },
    /// Sampling throughput with `streams` rows.
    Sample {
        #[arg(long, default_value_t = 1)]
        streams: usize,
        #[arg(long, default_value_t = 200)]
        chars: usize,
    },
}

fn config(a: &Args) -> TrainConfig {
    TrainConfig {
        layers: a.layers,
        units: a.units,
        seq_len: a.seq_len,
        step: a.step,
        batch_size: a.batch,
        formulation: if a.formulation == "seq" {
            Formulation::Seq
        } else {
            Formulation::Keras
        },
        ..TrainConfig::default()
    }
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    poet_worker::memory::apply(a.malloc);
    tch::set_num_threads(a.threads);
    let device: poet_worker::device::DeviceSpec = a.device.parse()?;
    let device = device.resolve();
    let corpus = std::fs::read_to_string(&a.corpus)?;
    let (train, val) = poet_worker::commands::split_corpus(&corpus, 0.1);
    let cfg = config(&a);
    match a.mode {
        Mode::Train { batches } => {
            // A throwaway 1-batch run warms up the allocator and kernels; the measured run
            // has no validation text, so nothing but training is timed. batches = 0 is a
            // whole epoch.
            let cancel = AtomicBool::new(false);
            let warm = TrainConfig {
                max_batches: 1,
                epochs: 1,
                ..cfg.clone()
            };
            Trainer::new(warm, train, "", device)?.train_epoch(&cancel, &mut |_| {})?;
            let cfg = TrainConfig {
                max_batches: batches,
                epochs: 1,
                ..cfg
            };
            let mut t = Trainer::new(cfg.clone(), train, "", device)?;
            // A whole epoch's batches, to scale a partial measurement up to an epoch (the
            // trainer's ids are one per char).
            let starts = poet_worker::data::example_starts(train.chars().count(), &cfg);
            let epoch_batches =
                poet_worker::data::batch_starts(&starts, cfg.batch_size as usize, 0).len();
            let cpu = cpu_seconds();
            let r = t.train_epoch(&cancel, &mut |_| {})?.expect("not cancelled");
            let cpu = cpu_seconds() - cpu;
            println!(
                "{}",
                serde_json::json!({"impl": "poet-worker", "mode": "train", "layers": cfg.layers, "units": cfg.units,
                    "seq_len": cfg.seq_len, "batch": cfg.batch_size, "formulation": a.formulation, "batches": r.batches, "epoch_batches": epoch_batches,
                    "threads": a.threads, "seconds": r.duration_s, "chars_per_sec": r.chars_per_sec, "loss": r.train_loss,
                    "cpu_seconds": cpu, "chars_per_cpu_sec": r.chars_per_sec * r.duration_s / cpu})
            );
        }
        Mode::Quality {
            seconds,
            eval_every,
            lr,
        } => {
            let cfg = TrainConfig {
                max_batches: eval_every,
                epochs: 100_000,
                learning_rate: lr,
                ..cfg
            };
            let mut t = Trainer::new(cfg.clone(), train, "", device)?;
            let vocab = t.vocab().clone();
            let (val_ids, _) = vocab.encode_lossy(val);
            let cancel = AtomicBool::new(false);
            let mut clock = 0.0;
            let mut best = f64::INFINITY;
            while clock < seconds {
                let r = t.train_epoch(&cancel, &mut |_| {})?.expect("not cancelled");
                clock += r.duration_s;
                let v = window_loss(t.model(), &val_ids, cfg.seq_len as usize, device);
                best = best.min(v);
                println!(
                    "{}",
                    serde_json::json!({"impl": "poet-worker", "mode": "quality", "formulation": a.formulation,
                        "epoch": r.epoch, "train_seconds": clock, "train_loss": r.train_loss, "val_loss": v, "best_val_loss": best})
                );
            }
        }
        Mode::Sample { streams, chars } => {
            let vocab = Vocab::from_texts(&[&corpus]);
            tch::manual_seed(1);
            let model = PoetModel::new(&cfg, vocab.len(), device);
            let req = SampleRequest {
                temperatures: vec![1.0],
                chars,
                streams_per_temperature: streams,
                seed: 1,
                prime: String::new(),
                mode: SampleMode::Carry,
            };
            // Warm-up run, then the measured one.
            sample(
                &model,
                &vocab,
                &cfg,
                &SampleRequest {
                    chars: 10,
                    ..req.clone()
                },
            )?;
            let started = Instant::now();
            let cpu = cpu_seconds();
            sample(&model, &vocab, &cfg, &req)?;
            let cpu = cpu_seconds() - cpu;
            let secs = started.elapsed().as_secs_f64();
            println!(
                "{}",
                serde_json::json!({"impl": "poet-worker", "mode": "sample", "layers": cfg.layers, "units": cfg.units,
                    "streams": streams, "chars": chars, "threads": a.threads, "seconds": secs,
                    "chars_per_sec": (streams * chars) as f64 / secs, "cpu_seconds": cpu,
                    "chars_per_cpu_sec": (streams * chars) as f64 / cpu})
            );
        }
    }
    Ok(())
}

/// CPU seconds (user + system, all threads) this process has used, from `/proc/self/stat`;
/// under a shared machine's load it tracks work done better than wall time.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the ")" that closes the command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}

/// Mean loss of the char after each full `seq_len` window, over up to 2048 windows spread
/// across the validation text: the same metric for either formulation's model.
fn window_loss(model: &PoetModel, ids: &[i64], seq_len: usize, device: Device) -> f64 {
    let n = ids.len().saturating_sub(seq_len + 1);
    let stride = (n / 2048).max(1);
    let starts: Vec<usize> = (0..n).step_by(stride).take(2048).collect();
    let cfg = TrainConfig {
        seq_len: seq_len as u32,
        formulation: Formulation::Keras,
        ..TrainConfig::default()
    };
    let (mut sum, mut count) = (0.0, 0usize);
    tch::no_grad(|| {
        for chunk in starts.chunks(256) {
            let b = data::make_batch(ids, chunk, &cfg, device);
            let (h, _) = model.forward(&b.inputs, None, false);
            let logits = model.logits(&h.select(1, -1), false);
            let loss = logits.log_softmax(-1, Kind::Float).nll_loss(&b.targets);
            sum += f64::try_from(&loss).unwrap_or(f64::NAN) * chunk.len() as f64;
            count += chunk.len();
        }
    });
    sum / count.max(1) as f64
}

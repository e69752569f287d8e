//! Benchmarks of the worker, driven by `bench/worker/run.sh` beside the PyTorch reference
//! (`bench/worker/torch_reference.py`). Each mode prints one JSON line per measurement.
//!
//! - `train`: training chars/s over a fixed number of batches (one warm-up epoch first);
//! - `quality`: validation loss against training wall clock, for time-to-quality;
//! - `sample`: sampling chars/s at a given number of streams;
//! - `peak`: this machine's fp32 FMA ceiling (GFLOP/s over `--threads` threads), the hardware
//!   limit the figures above are read against.

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
    #[arg(long, global = true, default_value = "../shared/data/corpus-pd.txt")]
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
    /// fp32 FMA ceiling: independent vector FMA chains on `--threads` threads, no memory.
    Peak {
        /// Seconds to run (best of 3 slices of this length).
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
        /// Vector ISA: `auto` (the widest this CPU has), `avx512f` or `avx2+fma`.
        #[arg(long, default_value = "auto")]
        isa: String,
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
    if let Mode::Peak { seconds, isa } = &a.mode {
        let isa = match isa.as_str() {
            "auto" => peak::isa(),
            "avx512f" if peak::isa() == "avx512f" => "avx512f",
            "avx2+fma" if peak::isa() != "none" => "avx2+fma",
            other => anyhow::bail!("--isa {other}: this CPU's widest is {}", peak::isa()),
        };
        let gflops = peak::gflops(isa, a.threads.max(1) as usize, *seconds);
        println!(
            "{}",
            serde_json::json!({"impl": "poet-worker", "mode": "peak", "threads": a.threads,
                "isa": isa, "gflops": gflops})
        );
        return Ok(());
    }
    let device: poet_worker::device::DeviceSpec = a.device.parse()?;
    let device = device.resolve()?;
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
            // Training FLOPs per input char: 3 × forward, with a one-hot bottom input
            // (BENCHMARKS.md). Dense excluded: keras predicts one char per window.
            let flops_per_char = 3.0 * lstm_flops(&cfg, t.vocab().len());
            // What the coordinator's placement assumes (issue 20), for gpu.sh to set beside
            // the memory the GPU really used.
            let est_memory_bytes =
                poet_core::resources::estimate_memory_bytes(&cfg, t.vocab().len());
            println!(
                "{}",
                serde_json::json!({"impl": "poet-worker", "mode": "train", "flops_per_char": flops_per_char, "layers": cfg.layers, "units": cfg.units,
                    "seq_len": cfg.seq_len, "batch": cfg.batch_size, "formulation": a.formulation, "batches": r.batches, "epoch_batches": epoch_batches,
                    "threads": a.threads, "seconds": r.duration_s, "chars_per_sec": r.chars_per_sec, "loss": r.train_loss,
                    "cpu_seconds": cpu, "chars_per_cpu_sec": r.chars_per_sec * r.duration_s / cpu,
                    "est_memory_bytes": est_memory_bytes})
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
                sampling: poet_worker::sample::Sampling::off(),
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
            // Forward FLOPs per sampled char at the least a step can do: the bottom layer's
            // input is a row lookup (no input matmul), then the dense layer's 2·H·V.
            let flops_per_char =
                lstm_flops(&cfg, 0) + 2.0 * f64::from(cfg.units) * vocab.len() as f64;
            println!(
                "{}",
                serde_json::json!({"impl": "poet-worker", "mode": "sample", "layers": cfg.layers, "units": cfg.units,
                    "vocab": vocab.len(), "flops_per_char": flops_per_char,
                    "streams": streams, "chars": chars, "threads": a.threads, "seconds": secs,
                    "chars_per_sec": (streams * chars) as f64 / secs, "cpu_seconds": cpu,
                    "chars_per_cpu_sec": (streams * chars) as f64 / cpu})
            );
        }
        Mode::Peak { .. } => unreachable!("handled before the corpus is read"),
    }
    Ok(())
}

/// Forward FLOPs of the LSTM stack per input char: `8·H·(I+H)` per layer, where the bottom
/// layer's input width `I` is `bottom_input` and every upper layer's is `H`.
fn lstm_flops(cfg: &TrainConfig, bottom_input: usize) -> f64 {
    let h = f64::from(cfg.units);
    8.0 * h * (bottom_input as f64 + h) + f64::from(cfg.layers - 1) * 8.0 * h * 2.0 * h
}

/// CPU seconds (user + system, all threads) this process has used, at nanosecond
/// resolution (`/proc/self/stat`'s 10 ms ticks would be ±10 % of a short sampling run, and
/// Python's `time.process_time()` is this same clock); under a shared machine's load it
/// tracks work done better than wall time.
#[allow(unsafe_code)]
fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID)");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
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

/// The fp32 FMA ceiling: every thread runs independent chains of vector FMAs on registers
/// (enough chains to cover the FMA latency on every pipe), so nothing but the FMA units limits
/// it. AVX-512 where the CPU has it, else AVX2 + FMA.
mod peak {
    use std::time::Instant;

    /// Independent accumulator chains: latency 4 × 2 pipes needs ≥ 8; 12 leaves slack.
    const CHAINS: usize = 12;

    /// The vector ISA measured, or `"none"`.
    pub fn isa() -> &'static str {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return "avx512f";
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return "avx2+fma";
            }
        }
        "none"
    }

    /// Summed GFLOP/s of `threads` threads running `isa` (from [`isa`], or `"avx2+fma"` on an
    /// AVX-512 CPU), each the best of three `seconds`-long slices; `None` without a vector
    /// FMA ISA.
    pub fn gflops(isa: &'static str, threads: usize, seconds: f64) -> Option<f64> {
        if isa == "none" {
            return None;
        }
        let per_thread: Vec<f64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| s.spawn(move || (0..3).map(|_| slice(isa, seconds)).fold(0.0, f64::max)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("peak thread"))
                .collect()
        });
        Some(per_thread.iter().sum())
    }

    /// GFLOP/s of one thread over about `seconds`.
    fn slice(isa: &str, seconds: f64) -> f64 {
        let (mut iters, mut flops, started) = (1u64 << 16, 0.0, Instant::now());
        while started.elapsed().as_secs_f64() < seconds {
            flops += run(isa, iters);
            iters = iters.saturating_mul(2).min(1 << 24);
        }
        flops / started.elapsed().as_secs_f64() / 1e9
    }

    /// Runs `iters` rounds of `CHAINS` vector FMAs; returns the FLOPs done.
    #[allow(unsafe_code)]
    fn run(isa: &str, iters: u64) -> f64 {
        let iters = std::hint::black_box(iters);
        #[cfg(target_arch = "x86_64")]
        {
            if isa == "avx512f" && std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F, checked on the line above.
                std::hint::black_box(unsafe { avx512(iters) });
                return iters as f64 * (CHAINS * 16 * 2) as f64;
            }
            if isa == "avx2+fma"
                && std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU has AVX2 and FMA, checked on the lines above.
                std::hint::black_box(unsafe { avx2(iters) });
                return iters as f64 * (CHAINS * 8 * 2) as f64;
            }
        }
        let _ = (isa, iters);
        0.0
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn avx512(iters: u64) -> f32 {
        use std::arch::x86_64::*;
        let (m, b) = (_mm512_set1_ps(1.000_000_1), _mm512_set1_ps(1e-7));
        let mut acc = [_mm512_set1_ps(1.0); CHAINS];
        for _ in 0..iters {
            for a in &mut acc {
                *a = _mm512_fmadd_ps(*a, m, b);
            }
        }
        acc.iter().map(|a| _mm512_reduce_add_ps(*a)).sum()
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn avx2(iters: u64) -> f32 {
        use std::arch::x86_64::*;
        let (m, b) = (_mm256_set1_ps(1.000_000_1), _mm256_set1_ps(1e-7));
        let mut acc = [_mm256_set1_ps(1.0); CHAINS];
        for _ in 0..iters {
            for a in &mut acc {
                *a = _mm256_fmadd_ps(*a, m, b);
            }
        }
        // Every chain feeds the result, so none is optimised away.
        _mm256_cvtss_f32(
            acc.iter()
                .fold(_mm256_setzero_ps(), |s, a| _mm256_add_ps(s, *a)),
        )
    }
}

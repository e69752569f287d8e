//! The standalone commands behind `poet-worker train` (no coordinator: corpus file in,
//! checkpoint files out) and `poet-worker generate` (offline sampling from a checkpoint
//! file), and how their failures map to exit codes.

use crate::checkpoint::Checkpoint;
use crate::device::DeviceSpec;
use crate::sample::{self, SampleMode, SampleRequest};
use crate::train::{Outcome, Progress, TrainError, Trainer};
use poet_core::config::TrainConfig;
use std::io::{IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;
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
            AgentError::Cache { .. } => CommandError::bad("--cache-dir", e),
            AgentError::Register(_) => CommandError::Other(e.to_string()),
        }
    }
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
    std::fs::create_dir_all(&opts.out).map_err(|e| CommandError::bad("--out", e))?;
    let (train_text, val_text) = split_corpus(&corpus, opts.validation_fraction);
    let device = opts.device.resolve();
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
    /// Re-run a sliding window per char instead of carrying state.
    pub window: bool,
    /// Device to sample on.
    pub device: DeviceSpec,
}

/// Samples from a checkpoint file; returns what to print.
pub fn generate(opts: &GenerateOptions) -> Result<String, CommandError> {
    let bytes =
        std::fs::read(&opts.checkpoint).map_err(|e| CommandError::bad("--checkpoint", e))?;
    let ckpt = Checkpoint::from_bytes(&bytes).map_err(|e| CommandError::bad("--checkpoint", e))?;
    let model = ckpt
        .model(opts.device.resolve())
        .map_err(|e| CommandError::bad("--checkpoint", e))?;
    let req = SampleRequest {
        temperatures: opts.temperatures.clone(),
        chars: opts.chars,
        streams_per_temperature: opts.poems,
        seed: opts.seed,
        prime: opts.prime.clone(),
        mode: if opts.window {
            SampleMode::Window
        } else {
            SampleMode::Carry
        },
    };
    let streams = sample::sample(&model, &ckpt.vocab(), &ckpt.meta.config, &req)
        .map_err(|e| CommandError::bad("--temperature", e))?;
    if opts.json {
        let v: Vec<serde_json::Value> = streams
            .iter()
            .map(|s| serde_json::json!({"temperature": s.temperature, "text": s.text, "poems": sample::split_poems(&s.text)}))
            .collect();
        return Ok(serde_json::to_string_pretty(&v).expect("json"));
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
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_cuts_at_a_frame() {
        let text = "++++\naaaa\n++++\nbbbb\n++++\ncc\n";
        let (t, v) = split_corpus(text, 0.5);
        assert_eq!(format!("{t}{v}"), text);
        assert!(v.starts_with("++++"), "{v:?}");
        assert_eq!(split_corpus(text, 0.0), (text, ""));
    }
}

//! The sampler sweep behind the sampling defaults (issue 21; run through
//! `bench/poems/sampling.sh`): loads one checkpoint and its training corpus, samples the same
//! streams under each setting at each temperature, and prints every measure of the quality
//! report beside the corpus's own figures and the goals.

use std::path::PathBuf;

use clap::Parser;
use poet_worker::checkpoint::Checkpoint;
use poet_worker::commands::Judge;
use poet_worker::sample::{self, SampleMode, SampleRequest, Sampling};

#[derive(Parser)]
struct Args {
    /// Checkpoint file (safetensors).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The corpus it was trained on.
    #[arg(long)]
    corpus: PathBuf,
    /// Temperatures.
    #[arg(long, value_delimiter = ',', default_value = "0.2,0.5,0.8")]
    temperature: Vec<f64>,
    /// Streams per temperature and setting.
    #[arg(long, default_value_t = 8)]
    streams: usize,
    /// Chars per stream.
    #[arg(long, default_value_t = 1500)]
    chars: usize,
    /// Seed (the same for every setting).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also sweep the window sampler (seq_len times the work per char).
    #[arg(long)]
    window: bool,
    /// Shape pulls to sweep (nats), each with the repeat cap, with and without top-p.
    #[arg(long, value_delimiter = ',', default_value = "1.5,3,5,8")]
    boost: Vec<f64>,
    /// Only the settings whose name contains one of these (comma-separated; default all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let ckpt = Checkpoint::from_bytes(&std::fs::read(&a.checkpoint)?)?;
    let model = ckpt.model(tch::Device::Cpu)?;
    let judge = Judge::load(&a.corpus).map_err(|e| anyhow::anyhow!("{e}"))?;
    let c = &judge.corpus;
    println!(
        "corpus: {:.1} chars/line, {:.2} lines/stanza, {:.2} stanzas/poem, {} repeated lines; checkpoint epoch {}, val_loss {:.4}",
        c.shape.mean_line_chars,
        c.shape.lines_per_stanza,
        c.shape.stanzas_per_poem,
        c.shape.repeated_lines,
        ckpt.meta.epoch,
        ckpt.meta.history.last().map_or(f64::NAN, |h| h.val_loss),
    );
    println!(
        "goals: real words >= 90%, line and stanza ratio within 0.85-1.15, shared 4-grams <= 5%, copied run < 8, repeated lines 0"
    );
    let d = Sampling::default();
    let mut settings: Vec<(&str, SampleMode, Sampling)> = vec![
        ("plain (reference)", SampleMode::Carry, Sampling::off()),
        (
            "top_p 0.95",
            SampleMode::Carry,
            Sampling {
                top_p: 0.95,
                ..Sampling::off()
            },
        ),
        (
            "top_k 10",
            SampleMode::Carry,
            Sampling {
                top_k: 10,
                ..Sampling::off()
            },
        ),
        (
            "repeat cap 2",
            SampleMode::Carry,
            Sampling {
                max_line_repeats: 2,
                ..Sampling::off()
            },
        ),
    ];
    for &boost in &a.boost {
        for top_p in [1.0, 0.95] {
            settings.push((
                Box::leak(format!("cap 2, boost {boost}, top_p {top_p}").into_boxed_str()),
                SampleMode::Carry,
                Sampling {
                    top_p,
                    shape_boost: boost,
                    max_line_repeats: 2,
                    ..Sampling::off()
                },
            ));
        }
    }
    if !settings.iter().any(|(_, _, s)| *s == d) {
        settings.push(("defaults", SampleMode::Carry, d.clone()));
    }
    if a.window {
        settings.push(("window, plain", SampleMode::Window, Sampling::off()));
        settings.push(("window, defaults", SampleMode::Window, d));
    }
    settings.retain(|(name, _, _)| {
        a.only.is_empty() || a.only.iter().any(|o| name.contains(o.as_str()))
    });
    println!(
        "\n| setting | T | real words | line ratio | stanza ratio | stanzas/poem | shared 4-grams | longest copy | repeated lines |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, mode, s) in settings {
        let req = SampleRequest {
            temperatures: a.temperature.clone(),
            chars: a.chars,
            streams_per_temperature: a.streams,
            seed: a.seed,
            prime: String::new(),
            mode,
            sampling: s.towards(c.shape.mean_line_chars, c.shape.lines_per_stanza),
        };
        let streams = sample::sample(&model, &ckpt.vocab(), &ckpt.meta.config, &req)?;
        for &t in &a.temperature {
            let r = judge.report(
                streams
                    .iter()
                    .filter(|s| s.temperature == t)
                    .map(|s| s.text.as_str()),
            );
            let g = &r.generated.shape;
            println!(
                "| {name} | {t} | {:.1}% | {:.2} | {:.2} | {:.2} | {:.1}% | {} | {} |",
                100.0 * r.generated.real_word_share,
                g.mean_line_chars / c.shape.mean_line_chars,
                g.lines_per_stanza / c.shape.lines_per_stanza,
                g.stanzas_per_poem,
                100.0 * r.shared_4grams,
                r.longest_copied_run,
                g.repeated_lines,
            );
        }
    }
    Ok(())
}

//! `poet generate`, `poet poems` and `poet words`: poems from a run's checkpoint (sampled by a
//! worker, judged by the coordinator), and how their words compare with the training set.

use std::collections::HashMap;

use poet_proto::v1;
use serde_json::{Value, json};

use crate::args::{Cli, GenerateArgs, PoemsCmd, WordsArgs, exit};
use crate::conn::{CliError, CliResult, connect, status};
use crate::output::{self, Table, clean_line, clean_text, out, outln};
use crate::plot;

/// The sampler flags of `poet generate`; unset ones take the coordinator's measured defaults
/// (README, "Generation").
#[derive(clap::Args, Debug, Clone)]
pub struct SamplingArgs {
    /// carry (the LSTM state carried from char to char) or window (the Keras reference: every
    /// char re-runs the last seq_len chars; seq_len times the work). Default: carry.
    #[arg(long, value_parser = ["carry", "window"])]
    pub mode: Option<String>,
    /// Nucleus: draw from the likeliest chars whose probability reaches P, in (0, 1].
    #[arg(long, value_parser = top_p)]
    pub top_p: Option<f64>,
    /// Draw from the K likeliest chars only (0 = all).
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..=100_000))]
    pub top_k: Option<i32>,
    /// A line may stand at most N times in a poem (0 = no cap).
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..=1000))]
    pub max_line_repeats: Option<i32>,
    /// Pull, in nats (0 to 20), of line and stanza breaks towards the corpus's shape (0 = off).
    #[arg(long, value_parser = shape_boost)]
    pub shape_boost: Option<f64>,
}

fn top_p(s: &str) -> Result<f64, String> {
    let p: f64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if p > 0.0 && p <= 1.0 {
        Ok(p)
    } else {
        Err(format!("{p} is not in (0, 1]"))
    }
}

fn shape_boost(s: &str) -> Result<f64, String> {
    let b: f64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if (0.0..=poet_core::quality::defaults::MAX_SHAPE_BOOST).contains(&b) {
        Ok(b)
    } else {
        Err(format!(
            "{b} is not in [0, {}]",
            poet_core::quality::defaults::MAX_SHAPE_BOOST
        ))
    }
}

fn figures_json(f: &Option<v1::PoemFigures>) -> Value {
    match f {
        Some(f) => json!({"words": f.words, "real_word_share": f.real_word_share, "poems": f.poems,
            "lines": f.lines, "mean_line_chars": f.mean_line_chars, "lines_per_stanza": f.lines_per_stanza,
            "stanzas_per_poem": f.stanzas_per_poem, "repeated_lines": f.repeated_lines}),
        None => Value::Null,
    }
}

fn quality_json(q: &Option<v1::QualityReport>) -> Value {
    match q {
        Some(q) => {
            json!({"generated": figures_json(&q.generated), "corpus": figures_json(&q.corpus),
            "shared_4grams": q.shared_4grams, "longest_copied_run": q.longest_copied_run})
        }
        None => Value::Null,
    }
}

/// A stored report back in `poet_core`'s terms, to print with its table.
fn quality_core(q: &v1::QualityReport) -> poet_core::quality::Report {
    use poet_core::quality::{Quality, Report, Shape};
    let figures = |f: &Option<v1::PoemFigures>| {
        let f = f.unwrap_or_default();
        Quality {
            words: f.words.max(0) as usize,
            real_word_share: f.real_word_share,
            shape: Shape {
                poems: f.poems.max(0) as usize,
                lines: f.lines.max(0) as usize,
                mean_line_chars: f.mean_line_chars,
                lines_per_stanza: f.lines_per_stanza,
                stanzas_per_poem: f.stanzas_per_poem,
                repeated_lines: f.repeated_lines.max(0) as usize,
            },
        }
    };
    Report {
        generated: figures(&q.generated),
        corpus: figures(&q.corpus),
        shared_4grams: q.shared_4grams,
        longest_copied_run: q.longest_copied_run.max(0) as usize,
    }
}

fn report_json(r: &Option<v1::PlagiarismReport>) -> Value {
    match r {
        Some(r) => {
            json!({"ngrams": r.ngrams, "shared": r.shared, "shared_fraction": r.shared_fraction,
            "longest_copied_run": r.longest_copied_run, "flagged": r.flagged})
        }
        None => Value::Null,
    }
}

fn generation_json(g: &v1::Generation) -> Value {
    json!({
        "id": g.id, "run_id": g.run_id, "checkpoint_id": g.checkpoint_id, "epoch": g.epoch, "state": g.state,
        "params": serde_json::from_str::<Value>(&g.params_json).unwrap_or(Value::Null), "error": g.error,
        "created_at": output::time(&g.created_at),
        "poems": g.poems.iter().map(|p| json!({"index": p.index, "temperature": p.temperature, "text": p.text, "report": report_json(&p.report)})).collect::<Vec<_>>(),
        "overall": report_json(&g.overall),
        "quality": quality_json(&g.quality),
    })
}

fn describe(r: &Option<v1::PlagiarismReport>) -> String {
    match r {
        Some(r) => format!(
            "{} of {} word 4-grams found in training ({:.0}%), longest copied run {} words{}",
            r.shared.len(),
            r.ngrams,
            r.shared_fraction * 100.0,
            r.longest_copied_run,
            if r.flagged {
                "  [FLAGGED: likely copied]"
            } else {
                ""
            }
        ),
        None => "no report".into(),
    }
}

/// Prints a generation as JSON or for people.
fn show_generation(cli: &Cli, g: &v1::Generation) {
    if cli.json {
        output::json(&generation_json(g));
    } else {
        print_generation(g);
    }
}

/// Prints a generation for people.
pub fn print_generation(g: &v1::Generation) {
    outln!(
        "generation {} from run {}, checkpoint {} (epoch {}): {}",
        g.id,
        g.run_id,
        g.checkpoint_id,
        g.epoch,
        clean_line(&g.state)
    );
    if !g.error.is_empty() {
        outln!("error: {}", clean_text(&g.error));
    }
    for p in &g.poems {
        outln!(
            "\n── poem {} · temperature {} ──",
            p.index + 1,
            p.temperature
        );
        outln!("{}", clean_text(&p.text));
        outln!("   ↳ {}", describe(&p.report));
        if let Some(r) = &p.report
            && !r.shared.is_empty()
        {
            let shown: Vec<String> = r
                .shared
                .iter()
                .take(8)
                .map(|s| format!("\"{}\"", clean_line(s)))
                .collect();
            outln!(
                "     shared: {}{}",
                shown.join(", "),
                if r.shared.len() > 8 { ", …" } else { "" }
            );
        }
    }
    if g.state == "done" {
        outln!("\nall poems: {}", describe(&g.overall));
    }
    if let Some(q) = &g.quality {
        outln!("\nquality (all poems vs the training corpus):");
        out!("{}", quality_core(q).table());
    }
}

pub async fn generate(cli: &Cli, a: &GenerateArgs) -> CliResult {
    let mut client = connect(cli).await?;
    let run_id = match (a.run, a.sweep) {
        (Some(r), _) => r,
        (None, Some(s)) => {
            let sw = client
                .get_sweep(v1::GetSweepRequest { sweep_id: s })
                .await
                .map_err(status)?
                .into_inner();
            sw.best_run.map(|r| r.id).ok_or_else(|| {
                CliError::new(
                    exit::NOT_READY,
                    format!("sweep {s} has no run with a validation loss yet"),
                )
            })?
        }
        (None, None) => return Err(CliError::input("give --run ID or --sweep ID")),
    };
    let g = client
        .generate(v1::GenerateRequest {
            run_id,
            checkpoint: a.checkpoint.to_string(),
            temperatures: a.temperature.clone(),
            chars: a.chars,
            poems: a.poems,
            seed: a.seed,
            prime: a.prime.clone(),
            wait: a.wait > 0,
            wait_seconds: a.wait,
            mode: a.sampling.mode.clone().unwrap_or_default(),
            top_p: a.sampling.top_p,
            top_k: a.sampling.top_k,
            max_line_repeats: a.sampling.max_line_repeats,
            shape_boost: a.sampling.shape_boost,
        })
        .await
        .map_err(status)?
        .into_inner()
        .generation
        .unwrap_or_default();
    show_generation(cli, &g);
    match g.state.as_str() {
        "done" => Ok(()),
        "failed" => Err(CliError::fail(format!(
            "generation {} failed: {}",
            g.id, g.error
        ))),
        _ => Err(CliError::new(
            exit::NOT_READY,
            format!(
                "generation {} is still {} after {}s: no worker has served it (see `poet workers`); fetch it later with `poet poems show {}`",
                g.id, g.state, a.wait, g.id
            ),
        )),
    }
}

pub async fn poems(cli: &Cli, cmd: &PoemsCmd) -> CliResult {
    let mut client = connect(cli).await?;
    match cmd {
        PoemsCmd::List { run } => {
            let gens = client
                .list_generations(v1::ListGenerationsRequest {
                    run_id: run.unwrap_or(0),
                })
                .await
                .map_err(status)?
                .into_inner()
                .generations;
            if cli.json {
                output::json(&gens.iter().map(generation_json).collect::<Vec<_>>());
            } else {
                let mut t = Table::new(&[
                    "GENERATION",
                    "RUN",
                    "EPOCH",
                    "STATE",
                    "POEMS",
                    "FLAGGED",
                    "SHARED 4-GRAMS",
                    "CREATED",
                ]);
                for g in &gens {
                    let flagged = g
                        .poems
                        .iter()
                        .filter(|p| p.report.as_ref().is_some_and(|r| r.flagged))
                        .count();
                    let shared = g
                        .overall
                        .as_ref()
                        .map(|o| format!("{:.0}%", o.shared_fraction * 100.0))
                        .unwrap_or_else(|| "-".into());
                    t.row(vec![
                        g.id.to_string(),
                        g.run_id.to_string(),
                        g.epoch.to_string(),
                        g.state.clone(),
                        g.poems.len().to_string(),
                        flagged.to_string(),
                        shared,
                        output::time(&g.created_at),
                    ]);
                }
                out!("{}", t.render());
            }
        }
        PoemsCmd::Show { id } => {
            let g = client
                .get_generation(v1::GetGenerationRequest {
                    generation_id: *id,
                    wait_seconds: 0,
                })
                .await
                .map_err(status)?
                .into_inner()
                .generation
                .unwrap_or_default();
            show_generation(cli, &g);
        }
    }
    Ok(())
}

fn shares(counts: &[(String, usize)]) -> HashMap<String, f64> {
    let total: usize = counts.iter().map(|(_, n)| n).sum::<usize>().max(1);
    counts
        .iter()
        .map(|(w, n)| (w.clone(), *n as f64 / total as f64))
        .collect()
}

pub async fn words(cli: &Cli, a: &WordsArgs) -> CliResult {
    let mut client = connect(cli).await?;
    let run = client
        .get_run(v1::GetRunRequest { run_id: a.run })
        .await
        .map_err(status)?
        .into_inner()
        .run
        .unwrap_or_default();
    let gens = client
        .list_generations(v1::ListGenerationsRequest { run_id: a.run })
        .await
        .map_err(status)?
        .into_inner()
        .generations;
    let text: String = gens
        .iter()
        .flat_map(|g| g.poems.iter().map(|p| format!("{}\n++++\n", p.text)))
        .collect();
    if text.is_empty() {
        return Err(CliError::new(
            exit::NOT_READY,
            format!(
                "run {} has no generated poems yet; run `poet generate --run {}` first",
                a.run, a.run
            ),
        ));
    }
    let url = crate::commands::db::database_url(a.database_url.clone()).await?;
    let pool = poet_sql::connect(&url)
        .await
        .map_err(|e| CliError::new(exit::UNAVAILABLE, e.to_string()))?;
    let corpus =
        poet_sql::datasets::corpus_text(&pool, run.dataset_id, poet_sql::datasets::Split::Train)
            .await
            .map_err(crate::commands::data::dataset_error)?;
    let poem_counts = poet_core::ngrams::word_counts(&text);
    let train = shares(&poet_core::ngrams::word_counts(&corpus));
    let poem_share = shares(&poem_counts);
    let rows: Vec<(String, f64, f64)> = poem_counts
        .iter()
        .take(a.top)
        .map(|(w, _)| {
            (
                w.clone(),
                poem_share[w],
                train.get(w).copied().unwrap_or(0.0),
            )
        })
        .collect();
    if cli.json {
        output::json(
            &rows
                .iter()
                .map(|(w, p, t)| json!({"word": w, "poems": p, "training": t}))
                .collect::<Vec<_>>(),
        );
    } else {
        let mut t = Table::new(&["WORD", "IN POEMS", "IN TRAINING", "RATIO"]);
        for (w, p, tr) in &rows {
            let ratio = if *tr > 0.0 {
                format!("×{:.1}", p / tr)
            } else {
                "new".into()
            };
            t.row(vec![
                w.clone(),
                format!("{:.2}%", p * 100.0),
                format!("{:.2}%", tr * 100.0),
                ratio,
            ]);
        }
        out!("{}", t.render());
    }
    if let Some(out) = &a.output {
        plot::write_word_bars(
            out,
            &rows,
            &format!(
                "run {}: most frequent words of generated poems vs training set",
                a.run
            ),
        )
        .map_err(|e| CliError::input(e.to_string()))?;
        if !cli.json {
            outln!("wrote {}", out.display());
        }
    }
    Ok(())
}

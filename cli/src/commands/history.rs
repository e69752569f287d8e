//! Sweeps, runs, workers and loss plots: everything read from the coordinator's history.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::time::Duration;

use poet_proto::{v1, views};
use serde_json::{Value, json};

use crate::args::{Cli, PlotArgs, RunsCmd, SweepCmd, exit};
use crate::conn::{CliError, CliResult, Client, connect, status};
use crate::output::{self, Cell, Style, Table, clean_line, clean_text, loss, out, outln};
use crate::plot;

/// Lowercase state name of a run.
pub fn state_name(s: i32) -> &'static str {
    v1::RunState::try_from(s)
        .map(|s| s.db_name())
        .unwrap_or("unknown")
}

fn config(run: &v1::Run) -> BTreeMap<String, Value> {
    serde_json::from_str::<BTreeMap<String, Value>>(&run.config_json).unwrap_or_default()
}

/// Config keys whose values differ across `runs` (none for one run): the dashboard's
/// definition, [`poet_proto::views::varying_keys`].
pub fn differing_keys(runs: &[v1::Run]) -> Vec<String> {
    let configs: Vec<Value> = runs
        .iter()
        .map(|r| serde_json::from_str(&r.config_json).unwrap_or(Value::Null))
        .collect();
    poet_proto::views::varying_keys(&configs)
}

fn short(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `k=v k=v` of the given keys.
pub fn label(run: &v1::Run, keys: &[String]) -> String {
    let c = config(run);
    keys.iter()
        .map(|k| {
            // A key the stored config omits means its default (`cell=lstm`, not `cell=`).
            let v = c
                .get(k)
                .cloned()
                .or_else(|| poet_core::config::TrainConfig::implied(k));
            format!("{k}={}", v.as_ref().map(short).unwrap_or_default())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A run as `--json` prints it: the web API's run view (`poet_proto::views::Run`), the same
/// fields with the same nulls.
fn run_json(r: &v1::Run) -> Value {
    serde_json::to_value(poet_proto::views::Run::from(r.clone())).unwrap_or(Value::Null)
}

/// Prints the notes of a run or sweep, one block each.
fn print_notes(notes: &[v1::Note]) {
    for n in notes {
        outln!(
            "note by {} at {}:\n  {}",
            clean_line(&n.author),
            output::time(&n.at),
            clean_text(&n.text).replace('\n', "\n  ")
        );
    }
}

/// The six tag and note calls.
#[derive(Clone, Copy)]
enum Annotate {
    TagRun,
    UntagRun,
    NoteRun,
    TagSweep,
    UntagSweep,
    NoteSweep,
}

/// Tags, untags or notes (`words`: the tags, or the note's text) a run or sweep, and prints
/// its tags and notes after.
async fn annotate(
    cli: &Cli,
    client: &mut Client,
    call: Annotate,
    id: i64,
    words: &[String],
) -> CliResult {
    use Annotate::*;
    let tags = || v1::TagRequest {
        id,
        tags: words.to_vec(),
    };
    let note = || v1::NoteRequest {
        id,
        text: words.concat(),
    };
    let a = match call {
        TagRun => client.tag_run(tags()).await,
        UntagRun => client.untag_run(tags()).await,
        NoteRun => client.note_run(note()).await,
        TagSweep => client.tag_sweep(tags()).await,
        UntagSweep => client.untag_sweep(tags()).await,
        NoteSweep => client.note_sweep(note()).await,
    }
    .map_err(status)?
    .into_inner();
    let what = match call {
        TagRun | UntagRun | NoteRun => format!("run {id}"),
        _ => format!("sweep {id}"),
    };
    print_annotations(cli, &what, a);
    Ok(())
}

/// Prints a run's or sweep's tags and notes after a tag, untag or note.
fn print_annotations(cli: &Cli, what: &str, a: v1::Annotations) {
    if cli.json {
        output::json(&views::Annotations::from(a));
    } else {
        outln!("{what}: tags [{}]", clean_line(&a.tags.join(", ")));
        print_notes(&a.notes);
    }
}

/// The runs table used by `runs list`, `sweep show` and `runs watch`.
pub fn runs_table(runs: &[v1::Run]) -> String {
    let keys = differing_keys(runs);
    let mut t = Table::new(&[
        "RUN", "STATE", "EPOCH", "TRAIN", "VAL", "BEST VAL", "ATTEMPT", "CONFIG", "TAGS",
    ]);
    for r in runs {
        let mut st = state_name(r.state).to_string();
        if r.cancel_requested {
            st.push_str(" (cancelling)");
        }
        // Paused and stopped runs read apart from failed ones: where the scheduler halted them.
        if matches!(
            v1::RunState::try_from(r.state),
            Ok(v1::RunState::Paused | v1::RunState::Stopped)
        ) {
            st.push_str(&format!("@{}", r.epochs_done));
        }
        t.row(vec![
            r.id.to_string(),
            st,
            format!("{}/{}", r.epochs_done, r.epochs_total),
            loss(r.last_train_loss),
            loss(r.last_val_loss),
            loss(r.best_val_loss),
            format!("{}/{}", r.attempt, r.max_attempts),
            label(r, &keys),
            r.tags.join(","),
        ]);
    }
    t.render()
}

async fn sweep_runs(client: &mut Client, sweep: i64) -> CliResult<Vec<v1::Run>> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_runs(v1::ListRunsRequest {
                sweep_id: sweep,
                page_size: 1000,
                page_token: token,
                order_by: "created".into(),
                ..Default::default()
            })
            .await
            .map_err(status)?
            .into_inner();
        out.extend(page.runs);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    out.sort_by_key(|r| r.id);
    Ok(out)
}

pub async fn sweep(cli: &Cli, cmd: &SweepCmd) -> CliResult {
    let mut client = connect(cli).await?;
    match cmd {
        SweepCmd::Submit {
            spec,
            name,
            dry_run,
            watch: then_watch,
        } => {
            let text = if spec.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())
                    .map_err(|e| CliError::input(format!("stdin: {e}")))?
            } else {
                std::fs::read_to_string(spec)
                    .map_err(|e| CliError::input(format!("{}: {e}", spec.display())))?
            };
            let format =
                poet_core::sweep::SpecFormat::detect(&spec.display().to_string()).to_string();
            let r = client
                .submit_sweep(v1::SubmitSweepRequest {
                    spec: text,
                    format,
                    name: name.clone().unwrap_or_default(),
                    dry_run: *dry_run,
                })
                .await
                .map_err(|s| {
                    let mut e = status(s);
                    e.message = format!("{}: {}", spec.display(), e.message);
                    e
                })?
                .into_inner();
            if cli.json {
                output::json(&json!({
                    "sweep": r.sweep.clone().map(views::Sweep::from),
                    "created": r.created.iter().map(run_json).collect::<Vec<_>>(),
                    "existing": r.existing.iter().map(run_json).collect::<Vec<_>>(),
                    "duplicates_in_spec": r.duplicates_in_spec,
                    "warnings": r.warnings,
                }));
            } else {
                match &r.sweep {
                    Some(s) => outln!(
                        "sweep {} ({}): {} new run(s), {} already existed",
                        s.id,
                        clean_line(&s.name),
                        r.created.len(),
                        r.existing.len()
                    ),
                    None => outln!(
                        "dry run: {} run(s) would be created, {} already exist",
                        r.created.len(),
                        r.existing.len()
                    ),
                }
                if r.duplicates_in_spec > 0 {
                    outln!(
                        "{} duplicate config(s) in the spec were folded",
                        r.duplicates_in_spec
                    );
                }
                for e in &r.existing {
                    outln!(
                        "  run {} already has this config ({}, sweep {})",
                        e.id,
                        state_name(e.state),
                        e.sweep_id
                    );
                }
                for w in &r.warnings {
                    outln!("warning: {}", clean_line(w));
                }
                if *dry_run {
                    for c in &r.created {
                        outln!("  {}", clean_line(&c.config_json));
                    }
                }
            }
            if *then_watch && let Some(s) = r.sweep {
                watch(cli, &mut client, s.id, 2.0, false).await?;
            }
        }
        SweepCmd::List { limit } => {
            let r = client
                .list_sweeps(v1::ListSweepsRequest {
                    page_size: *limit,
                    page_token: String::new(),
                })
                .await
                .map_err(status)?
                .into_inner();
            if cli.json {
                // The web API's sweep view (`GET /api/v1/sweeps`).
                let sweeps: Vec<views::Sweep> = r.sweeps.iter().cloned().map(Into::into).collect();
                output::json(&sweeps);
            } else {
                let mut t = Table::new(&["SWEEP", "NAME", "DATASET", "RUNS", "CREATED"]);
                for s in &r.sweeps {
                    t.row(vec![
                        s.id.to_string(),
                        s.name.clone(),
                        s.dataset_id.to_string(),
                        s.runs.to_string(),
                        output::time(&s.created_at),
                    ]);
                }
                out!("{}", t.render());
            }
        }
        SweepCmd::Show { id } => {
            let s = client
                .get_sweep(v1::GetSweepRequest { sweep_id: *id })
                .await
                .map_err(status)?
                .into_inner();
            let runs = sweep_runs(&mut client, *id).await?;
            if cli.json {
                // The web API's sweep detail view (`GET /api/v1/sweeps/{id}`).
                output::json(&views::SweepDetail::new(s, runs));
            } else {
                let sw = s.sweep.unwrap_or_default();
                outln!(
                    "sweep {} ({}) on dataset {}, {} run(s)",
                    sw.id,
                    clean_line(&sw.name),
                    sw.dataset_id,
                    sw.runs
                );
                let counts: Vec<String> =
                    s.counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
                outln!("states: {}", clean_line(&counts.join(", ")));
                if !sw.tags.is_empty() {
                    outln!("tags: {}", clean_line(&sw.tags.join(", ")));
                }
                print_notes(&sw.notes);
                if let Some(b) = &s.best_run {
                    outln!(
                        "best: run {} val {} at epoch {}  {}",
                        b.id,
                        loss(b.best_val_loss),
                        b.best_epoch,
                        clean_line(&b.config_json)
                    );
                }
                if let Some(line) = plan_line(&s.plan_json, s.epochs_spent, s.hours_spent) {
                    outln!("plan: {}", clean_line(&line));
                }
                if sw.paused {
                    outln!(
                        "paused: its runs are not leased (poet sweeps resume {})",
                        sw.id
                    );
                }
                if sw.finished_at.is_some() {
                    outln!("finished at {}", output::time(&sw.finished_at));
                }
                out!("{}", runs_table(&runs));
                for r in runs.iter().filter(|r| !r.no_fit.is_empty()) {
                    outln!("run {}: {}", r.id, clean_line(&r.no_fit));
                }
                if let Some(t) = rungs_table(&s.plan_json, &runs) {
                    outln!("rungs:");
                    out!("{t}");
                }
                if !s.decisions.is_empty() {
                    outln!("decisions ({}):", s.decisions.len());
                    let mut t = Table::new(&["#", "RUN", "EPOCH", "KIND", "REASON"]);
                    for d in &s.decisions {
                        t.row(vec![
                            d.id.to_string(),
                            if d.run_id == 0 {
                                "-".into()
                            } else {
                                d.run_id.to_string()
                            },
                            d.epoch.to_string(),
                            d.kind.clone(),
                            d.reason.clone(),
                        ]);
                    }
                    out!("{}", t.render());
                }
            }
        }
        SweepCmd::Cancel { id } => {
            let c = client
                .cancel_sweep(v1::CancelSweepRequest {
                    sweep_id: *id,
                    reason: "cancelled with poet sweeps cancel".into(),
                })
                .await
                .map_err(status)?
                .into_inner();
            print_cancel(cli, &c);
        }
        SweepCmd::Pause { id } => {
            let r = client
                .pause_sweep(v1::SweepControlRequest { sweep_id: *id })
                .await
                .map_err(status)?
                .into_inner();
            print_sweep(cli, "paused", r.sweep);
        }
        SweepCmd::Resume { id } => {
            let r = client
                .resume_sweep(v1::SweepControlRequest { sweep_id: *id })
                .await
                .map_err(status)?
                .into_inner();
            print_sweep(cli, "resumed", r.sweep);
        }
        SweepCmd::Priority { id, priority } => {
            let r = client
                .set_sweep_priority(v1::SetSweepPriorityRequest {
                    sweep_id: *id,
                    priority: *priority,
                })
                .await
                .map_err(status)?
                .into_inner();
            print_sweep(cli, "reprioritised", r.sweep);
        }
        SweepCmd::Tag { id, tags } => {
            annotate(cli, &mut client, Annotate::TagSweep, *id, tags).await?
        }
        SweepCmd::Untag { id, tags } => {
            annotate(cli, &mut client, Annotate::UntagSweep, *id, tags).await?
        }
        SweepCmd::Note { id, text } => {
            annotate(
                cli,
                &mut client,
                Annotate::NoteSweep,
                *id,
                std::slice::from_ref(text),
            )
            .await?
        }
    }
    Ok(())
}

/// Prints a sweep after a control action.
fn print_sweep(cli: &Cli, what: &str, s: Option<v1::Sweep>) {
    let s = s.unwrap_or_default();
    if cli.json {
        output::json(&views::Sweep::from(s));
    } else {
        outln!(
            "sweep {} {what}: priority {}, {}",
            s.id,
            s.priority,
            if s.paused { "paused" } else { "leasing" }
        );
    }
}

/// Prints a run after a control action.
fn print_run(cli: &Cli, what: &str, r: Option<v1::Run>) {
    let r = r.unwrap_or_default();
    if cli.json {
        output::json(&run_json(&r));
    } else {
        outln!(
            "run {} {what}: {}, epoch {}/{}",
            r.id,
            state_name(r.state),
            r.epochs_done,
            r.epochs_total
        );
    }
}

/// The plan of a sweep in one line, from `GetSweep`'s `plan_json`.
fn plan_line(plan_json: &str, epochs_spent: i64, hours_spent: f64) -> Option<String> {
    use poet_core::plan::Search;
    use poet_core::schedule::{Budget, Rule};
    let plan: poet_core::plan::Plan = serde_json::from_str(plan_json).ok()?;
    let mut parts = vec![match &plan.search {
        Search::Grid => "search grid".to_string(),
        Search::Random => "search random".to_string(),
        Search::Tpe { trials, tpe, seed } => format!(
            "search tpe ({trials} trials, {} random first, seed {seed})",
            tpe.initial
        ),
    }];
    parts.push(match &plan.policy.rule {
        Rule::None => "no stopping rule".into(),
        Rule::Median {
            grace_epochs,
            min_runs,
        } => format!("median stopping (grace {grace_epochs} epochs, {min_runs} runs)"),
        Rule::Asha(r) => format!(
            "asha (rungs at epochs {:?}, eta {}, max {})",
            r.ladder(u64::from(r.min_epochs)),
            r.eta,
            r.max_epochs
        ),
        Rule::Hyperband(r) => format!(
            "hyperband ({} brackets from epoch {}, eta {}, max {})",
            r.brackets(),
            r.min_epochs,
            r.eta,
            r.max_epochs
        ),
    });
    if let Some(p) = plan.policy.patience {
        parts.push(format!(
            "patience {} epochs (min delta {})",
            p.epochs, p.min_delta
        ));
    }
    parts.push(match plan.policy.budget {
        Some(Budget::Epochs(b)) => format!(
            "budget {epochs_spent} of {b} epochs ({:.0}%)",
            100.0 * epochs_spent as f64 / b as f64
        ),
        Some(Budget::WorkerHours(h)) => format!(
            "budget {hours_spent:.3} of {h} worker-hours ({:.0}%)",
            100.0 * hours_spent / h
        ),
        None => format!("{epochs_spent} epochs spent"),
    });
    if let Some(m) = plan.max_concurrent {
        parts.push(format!("max {m} at once"));
    }
    Some(parts.join(", "))
}

/// Whether a sweep's scheduler must say it is finished (its runs alone cannot tell: a TPE
/// sweep proposes more, a paused run waits).
fn adaptive(plan_json: &str) -> bool {
    serde_json::from_str::<poet_core::plan::Plan>(plan_json).is_ok_and(|p| p.adaptive())
}

/// Per rung epoch: runs that reached it, went past it, wait there, were stopped there.
fn rungs_table(plan_json: &str, runs: &[v1::Run]) -> Option<String> {
    use poet_core::schedule::Rule;
    let plan: poet_core::plan::Plan = serde_json::from_str(plan_json).ok()?;
    let (Rule::Asha(r) | Rule::Hyperband(r)) = plan.policy.rule else {
        return None;
    };
    let mut epochs: Vec<u32> = (0..r.brackets())
        .flat_map(|b| r.ladder(u64::from(r.min_epochs) * u64::from(r.eta).pow(b)))
        .collect();
    epochs.sort_unstable();
    epochs.dedup();
    let mut t = Table::new(&[
        "RUNG EPOCH",
        "REACHED",
        "WENT ON",
        "PAUSED THERE",
        "STOPPED THERE",
    ]);
    for e in epochs {
        let e = e as i32;
        let at = |st: v1::RunState| {
            runs.iter()
                .filter(|x| x.epochs_done == e && x.state == st as i32)
                .count()
                .to_string()
        };
        t.row(vec![
            e.to_string(),
            runs.iter()
                .filter(|x| x.epochs_done >= e)
                .count()
                .to_string(),
            runs.iter()
                .filter(|x| x.epochs_done > e)
                .count()
                .to_string(),
            at(v1::RunState::Paused),
            at(v1::RunState::Stopped),
        ]);
    }
    Some(t.render())
}

fn print_cancel(cli: &Cli, c: &v1::CancelResponse) {
    if cli.json {
        output::json(&json!({"cancelled": c.cancelled, "cancel_requested": c.cancel_requested}));
    } else {
        outln!(
            "{} queued run(s) cancelled, {} running run(s) will stop at their next heartbeat",
            c.cancelled,
            c.cancel_requested
        );
    }
}

fn finished(r: &v1::Run) -> bool {
    matches!(
        v1::RunState::try_from(r.state),
        Ok(v1::RunState::Succeeded
            | v1::RunState::Failed
            | v1::RunState::Cancelled
            | v1::RunState::Stopped)
    )
}

async fn watch(cli: &Cli, client: &mut Client, sweep: i64, interval: f64, once: bool) -> CliResult {
    let tty = std::io::stdout().is_terminal();
    let mut last_states = String::new();
    let mut last_print = std::time::Instant::now();
    loop {
        let runs = sweep_runs(client, sweep).await?;
        let info = client
            .get_sweep(v1::GetSweepRequest { sweep_id: sweep })
            .await
            .map_err(status)?
            .into_inner();
        let table = runs_table(&runs);
        let done = runs.iter().filter(|r| finished(r)).count();
        // An adaptive sweep is done when its scheduler says so (a TPE sweep proposes more runs,
        // a paused run waits for a promotion); any other when every run is finished.
        let all_done = if adaptive(&info.plan_json) {
            info.sweep.as_ref().is_some_and(|s| s.finished_at.is_some())
        } else {
            runs.iter().all(finished)
        };
        let states: Vec<&str> = runs.iter().map(|r| state_name(r.state)).collect();
        let states = states.join(",");
        if cli.json {
            output::json(&runs.iter().map(run_json).collect::<Vec<_>>());
        } else if tty {
            out!("\x1b[2J\x1b[H");
            outln!(
                "sweep {sweep}: {done}/{} finished  (ctrl-c stops watching, not the runs)",
                runs.len()
            );
            out!("{table}");
        } else if states != last_states
            || all_done
            || last_print.elapsed() >= Duration::from_secs(20)
        {
            // Not a terminal (a log, CI): print when a run changes state, else every 20 s.
            outln!("sweep {sweep}: {done}/{} finished", runs.len());
            out!("{table}");
            last_print = std::time::Instant::now();
        }
        last_states = states;
        if once || all_done {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs_f64(interval.max(0.2))).await;
    }
}

pub async fn runs(cli: &Cli, cmd: &RunsCmd) -> CliResult {
    let mut client = connect(cli).await?;
    match cmd {
        RunsCmd::List {
            sweep,
            state,
            filters,
            filter,
            order_by,
            limit,
            page_token,
        } => {
            let mut config = std::collections::HashMap::new();
            for f in filters {
                let (k, v) = f
                    .split_once('=')
                    .ok_or_else(|| CliError::input(format!("--where: '{f}' is not KEY=VALUE")))?;
                config.insert(k.to_string(), v.to_string());
            }
            let filter = filter.clone().unwrap_or_default();
            // Checked here as well: a typo is exit 2, with the caret, without a ListRuns call.
            poet_core::filter::Filter::parse(&filter)
                .map_err(|e| CliError::input(format!("--filter: {e}")))?;
            let r = client
                .list_runs(v1::ListRunsRequest {
                    sweep_id: sweep.unwrap_or(0),
                    state: state.map_or(0, |s| s.0 as i32),
                    config,
                    order_by: order_by.0.clone(),
                    page_size: *limit,
                    page_token: page_token.clone().unwrap_or_default(),
                    filter,
                    ..Default::default()
                })
                .await
                .map_err(status)?
                .into_inner();
            if cli.json {
                output::json(&r.runs.iter().map(run_json).collect::<Vec<_>>());
            } else {
                out!("{}", runs_table(&r.runs));
            }
            // On stderr: stdout stays the table or the JSON array (`| head`, `| jq`).
            if !r.next_page_token.is_empty() && !cli.quiet {
                eprintln!("next page: --page-token {}", r.next_page_token);
            }
        }
        RunsCmd::Show { id } => show_run(cli, &mut client, *id).await?,
        RunsCmd::Compare { ids } => compare(cli, &mut client, ids).await?,
        RunsCmd::Watch {
            sweep,
            interval,
            once,
        } => watch(cli, &mut client, *sweep, *interval, *once).await?,
        RunsCmd::Cancel { id } => {
            let c = client
                .cancel_run(v1::CancelRunRequest {
                    run_id: *id,
                    reason: "cancelled with poet runs cancel".into(),
                })
                .await
                .map_err(status)?
                .into_inner();
            print_cancel(cli, &c);
        }
        RunsCmd::Retry { id } => {
            let r = client
                .retry_run(v1::RetryRunRequest { run_id: *id })
                .await
                .map_err(status)?
                .into_inner();
            print_run(cli, "retried", r.run);
        }
        RunsCmd::Extend { id, epochs } => {
            let r = client
                .extend_run(v1::ExtendRunRequest {
                    run_id: *id,
                    epochs: *epochs,
                })
                .await
                .map_err(status)?
                .into_inner();
            print_run(cli, "extended", r.run);
        }
        RunsCmd::Fork {
            id,
            checkpoint,
            set,
        } => {
            let mut overrides = serde_json::Map::new();
            for kv in set {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| CliError::input(format!("--set: '{kv}' is not KEY=VALUE")))?;
                // A bare word is a string (`formulation=seq`), anything else JSON.
                let v = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
                overrides.insert(k.to_string(), v);
            }
            let r = client
                .fork_run(v1::ForkRunRequest {
                    run_id: *id,
                    checkpoint_id: checkpoint.unwrap_or(0),
                    overrides_json: Value::Object(overrides).to_string(),
                })
                .await
                .map_err(status)?
                .into_inner();
            print_run(cli, &format!("forked from run {id}"), r.run);
        }
        RunsCmd::Tag { id, tags } => {
            annotate(cli, &mut client, Annotate::TagRun, *id, tags).await?
        }
        RunsCmd::Untag { id, tags } => {
            annotate(cli, &mut client, Annotate::UntagRun, *id, tags).await?
        }
        RunsCmd::Note { id, text } => {
            annotate(
                cli,
                &mut client,
                Annotate::NoteRun,
                *id,
                std::slice::from_ref(text),
            )
            .await?
        }
        RunsCmd::Export {
            filter,
            order_by,
            output,
            format,
            epochs,
        } => {
            export(
                cli,
                &mut client,
                filter,
                &order_by.0,
                output,
                format.as_deref(),
                *epochs,
            )
            .await?
        }
    }
    Ok(())
}

/// `poet runs export`: every matching run (pages of 1,000 through `ListRuns`), written as
/// CSV or JSON lines by [`poet_proto::views::export`], the rows of `GET /api/v1/runs/export`.
/// The config columns are the union of the runs' keys, so the runs are read before the first
/// row is written; `--epochs` reads each run's epochs (`GetRun`) as well.
async fn export(
    cli: &Cli,
    client: &mut Client,
    filter: &str,
    order_by: &str,
    path: &str,
    format: Option<&str>,
    epochs: bool,
) -> CliResult {
    use poet_proto::views::export::{self as ex, Format, Writer};
    let format = match format {
        Some(f) => Format::parse(f)
            .ok_or_else(|| CliError::input(format!("--format: '{f}' is not csv or jsonl")))?,
        None if path == "-" => Format::Csv,
        None => Format::from_path(path).ok_or_else(|| {
            CliError::input(format!(
                "-o {path}: say --format csv or jsonl (or end the name in .csv or .jsonl)"
            ))
        })?,
    };
    poet_core::filter::Filter::parse(filter)
        .map_err(|e| CliError::input(format!("--filter: {e}")))?;
    let mut runs: Vec<v1::Run> = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_runs(v1::ListRunsRequest {
                filter: filter.to_string(),
                order_by: order_by.to_string(),
                page_size: 1000,
                page_token: token,
                ..Default::default()
            })
            .await
            .map_err(status)?
            .into_inner();
        runs.extend(page.runs);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let out: Box<dyn std::io::Write> = if path == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| CliError::input(format!("-o {path}: {e}")))?,
        ))
    };
    let io = |e: std::io::Error| CliError::fail(format!("-o {path}: {e}"));
    let rows = if epochs {
        let mut all = Vec::new();
        for r in &runs {
            let full = client
                .get_run(v1::GetRunRequest { run_id: r.id })
                .await
                .map_err(status)?
                .into_inner();
            all.extend(full.epochs.into_iter().map(|e| (r.id, e)));
        }
        let keys = ex::metrics_keys(all.iter().map(|(_, e)| e));
        let mut w = Writer::new(out, format, ex::epoch_columns(&keys)).map_err(io)?;
        for (id, e) in &all {
            w.row(ex::epoch_row(*id, e, &keys)).map_err(io)?;
        }
        w.finish().map_err(io)?;
        all.len()
    } else {
        let views: Vec<poet_proto::views::Run> = runs.into_iter().map(Into::into).collect();
        let keys = ex::config_keys(&views);
        let mut w = Writer::new(out, format, ex::run_columns(&keys)).map_err(io)?;
        for r in &views {
            w.row(ex::run_row(r, &keys)).map_err(io)?;
        }
        w.finish().map_err(io)?;
        views.len()
    };
    if path != "-" && !cli.quiet {
        eprintln!("{rows} row(s) written to {path}");
    }
    Ok(())
}

async fn show_run(cli: &Cli, client: &mut Client, id: i64) -> CliResult {
    let r = client
        .get_run(v1::GetRunRequest { run_id: id })
        .await
        .map_err(status)?
        .into_inner();
    let run = r.run.clone().unwrap_or_default();
    if cli.json {
        // The web API's run detail (`GET /api/v1/runs/{id}`, less its generations).
        output::json(&views::RunDetail::from(r));
        return Ok(());
    }
    outln!(
        "run {} ({}), sweep {}, dataset {}",
        run.id,
        state_name(run.state),
        run.sweep_id,
        run.dataset_id
    );
    if !run.error.is_empty() {
        outln!("error: {}", clean_text(&run.error));
    }
    if !run.tags.is_empty() {
        outln!("tags: {}", clean_line(&run.tags.join(", ")));
    }
    print_notes(&run.notes);
    outln!("config: {}", clean_line(&run.config_json));
    outln!(
        "best val loss {} at epoch {}",
        loss(run.best_val_loss),
        run.best_epoch
    );
    let train: Vec<f64> = r.epochs.iter().map(|e| e.train_loss).collect();
    let val: Vec<f64> = r.epochs.iter().map(|e| e.val_loss).collect();
    if !train.is_empty() {
        outln!(
            "train {}  {} → {}",
            plot::sparkline(&train),
            loss(train[0]),
            loss(*train.last().expect("non-empty"))
        );
        outln!(
            "val   {}  {} → {}",
            plot::sparkline(&val),
            loss(val[0]),
            loss(*val.last().expect("non-empty"))
        );
    }
    outln!("\nattempts");
    let mut t = Table::new(&[
        "#",
        "WORKER",
        "HOST",
        "STARTED",
        "ENDED",
        "OUTCOME",
        "FROM EPOCH",
        "DETAIL",
    ]);
    for a in &r.attempts {
        t.row(vec![
            a.attempt.to_string(),
            a.worker_id.to_string(),
            a.worker_host.clone(),
            output::time(&a.started_at),
            output::time(&a.ended_at),
            if a.outcome.is_empty() {
                "running".into()
            } else {
                a.outcome.clone()
            },
            a.resumed_from_epoch.to_string(),
            a.detail.clone(),
        ]);
    }
    out!("{}", t.render());
    outln!("\nepochs");
    let mut t = Table::new(&["EPOCH", "ATTEMPT", "TRAIN", "VAL", "SECONDS", "CHARS/S"]);
    for e in &r.epochs {
        t.row(vec![
            e.epoch.to_string(),
            e.attempt.to_string(),
            loss(e.train_loss),
            loss(e.val_loss),
            format!("{:.1}", e.duration_s),
            format!("{:.0}", e.chars_per_sec),
        ]);
    }
    out!("{}", t.render());
    outln!("\ncheckpoints (kept)");
    let mut t = Table::new(&["ID", "EPOCH", "VAL", "BYTES", "SHA256", ""]);
    for c in &r.checkpoints {
        let best = if c.id == r.best_checkpoint_id {
            "best"
        } else {
            ""
        };
        t.row(vec![
            c.id.to_string(),
            c.epoch.to_string(),
            loss(c.val_loss),
            c.size.to_string(),
            c.sha256[..12.min(c.sha256.len())].to_string(),
            best.into(),
        ]);
    }
    out!("{}", t.render());
    Ok(())
}

async fn compare(cli: &Cli, client: &mut Client, ids: &[i64]) -> CliResult {
    let mut runs = Vec::new();
    for id in ids {
        runs.push(
            client
                .get_run(v1::GetRunRequest { run_id: *id })
                .await
                .map_err(status)?
                .into_inner()
                .run
                .unwrap_or_default(),
        );
    }
    let differing: BTreeSet<String> = differing_keys(&runs).into_iter().collect();
    let configs: Vec<_> = runs.iter().map(config).collect();
    let keys: BTreeSet<&String> = configs.iter().flat_map(|c| c.keys()).collect();
    if cli.json {
        output::json(&json!({
            "runs": runs.iter().map(run_json).collect::<Vec<_>>(),
            "differing_keys": differing,
        }));
        return Ok(());
    }
    let mut header = vec!["KEY".to_string()];
    header.extend(runs.iter().map(|r| format!("RUN {}", r.id)));
    let hdr: Vec<&str> = header.iter().map(|s| s.as_str()).collect();
    let mut t = Table::new(&hdr);
    for k in keys {
        let name = if differing.contains(k) {
            Cell::styled(format!("* {k}"), Style::Highlight)
        } else {
            Cell::from(format!("  {k}"))
        };
        let mut row = vec![name];
        row.extend(
            configs
                .iter()
                .map(|c| Cell::from(c.get(k).map(short).unwrap_or_else(|| "-".into()))),
        );
        t.row(row);
    }
    let mut best = vec!["  best val loss".to_string()];
    best.extend(
        runs.iter()
            .map(|r| format!("{} (epoch {})", loss(r.best_val_loss), r.best_epoch)),
    );
    t.row(best);
    let mut st = vec!["  state".to_string()];
    st.extend(runs.iter().map(|r| state_name(r.state).to_string()));
    t.row(st);
    out!("{}", t.render());
    outln!("(* = differs)");
    Ok(())
}

pub async fn workers(cli: &Cli, all: bool) -> CliResult {
    let mut client = connect(cli).await?;
    let ws = client
        .list_workers(v1::ListWorkersRequest { include_stale: all })
        .await
        .map_err(status)?
        .into_inner()
        .workers;
    if cli.json {
        // The web API's worker view: the same fields, null where idle.
        output::json(
            &ws.iter()
                .cloned()
                .map(poet_proto::views::Worker::from)
                .collect::<Vec<_>>(),
        );
    } else {
        let mut t = Table::new(&[
            "WORKER",
            "HOST",
            "DEVICE",
            "GPU",
            "MEMORY",
            "LABELS",
            "CHARS/S",
            "RUN",
            "LAST SEEN",
        ]);
        for w in &ws {
            // The memory its runs must fit in: the GPU's on a GPU worker, else the host's.
            let gib = |b: i64| format!("{:.0} GiB", b as f64 / (1u64 << 30) as f64);
            let mem = match (w.gpu_memory_bytes, w.memory_bytes) {
                (g, _) if g > 0 => gib(g),
                (_, m) if m > 0 && w.device == "cpu" => gib(m),
                _ => "-".into(),
            };
            let mut labels: Vec<String> =
                w.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            labels.sort();
            let labels = if labels.is_empty() {
                "-".into()
            } else {
                clean_line(&labels.join(",")).into_owned()
            };
            let speed = if w.chars_per_sec > 0.0 {
                format!("{:.0}", w.chars_per_sec)
            } else {
                "-".into()
            };
            let run = if w.current_run_id > 0 {
                w.current_run_id.to_string()
            } else {
                "idle".into()
            };
            t.row(vec![
                w.id.to_string(),
                w.host.clone(),
                w.device.clone(),
                if w.gpu_name.is_empty() {
                    "-".into()
                } else {
                    w.gpu_name.clone()
                },
                mem,
                labels,
                speed,
                run,
                output::time(&w.last_seen_at),
            ]);
        }
        out!("{}", t.render());
    }
    Ok(())
}

pub async fn plot(cli: &Cli, a: &PlotArgs) -> CliResult {
    let mut client = connect(cli).await?;
    let ids: Vec<i64> = match a.sweep {
        Some(s) => sweep_runs(&mut client, s)
            .await?
            .into_iter()
            .map(|r| r.id)
            .collect(),
        None => a.runs.clone(),
    };
    if ids.is_empty() {
        return Err(CliError::new(exit::NOT_FOUND, "no runs to plot"));
    }
    let mut details = Vec::new();
    for id in &ids {
        details.push(
            client
                .get_run(v1::GetRunRequest { run_id: *id })
                .await
                .map_err(status)?
                .into_inner(),
        );
    }
    let runs: Vec<v1::Run> = details
        .iter()
        .map(|d| d.run.clone().unwrap_or_default())
        .collect();
    let keys = differing_keys(&runs);
    let series: Vec<plot::Series> = details
        .iter()
        .map(|d| {
            let run = d.run.clone().unwrap_or_default();
            plot::Series {
                label: format!("run {}: {}", run.id, label(&run, &keys))
                    .trim_end_matches(": ")
                    .to_string(),
                points: d
                    .epochs
                    .iter()
                    .map(|e| plot::Point {
                        epoch: e.epoch as u32,
                        train_loss: e.train_loss,
                        val_loss: e.val_loss,
                    })
                    .collect(),
            }
        })
        .collect();
    let title = a.title.clone().unwrap_or_else(|| match a.sweep {
        Some(s) => format!("sweep {s}: train (dashed) and validation (solid) loss"),
        None => "train (dashed) and validation (solid) loss".into(),
    });
    let opts = plot::PlotOptions {
        title,
        log_y: a.log,
        ..Default::default()
    };
    plot::write_plot(&a.output, &series, &opts).map_err(|e| CliError::input(e.to_string()))?;
    if cli.json {
        output::json(&json!({"output": a.output, "runs": ids}));
    } else {
        outln!("wrote {} ({} runs)", a.output.display(), ids.len());
    }
    Ok(())
}

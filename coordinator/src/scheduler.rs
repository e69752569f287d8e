//! The sweep scheduler in the coordinator: after every epoch report of an adaptive sweep's run
//! (a stopping rule, a budget or TPE search), it loads the sweep's curves, asks
//! [`poet_core::schedule`] what to do, and stores the answer with its reason; after a run is
//! handed back, it proposes new TPE configs and, when nothing is left to run, stops the runs
//! still paused and marks the sweep finished.
//!
//! Safety with many replicas and worker kills:
//! - every decision is taken in one transaction that first locks the sweep's row
//!   (`for update`), so decisions of one sweep are taken one at a time, in the order the
//!   transactions get the lock, on whichever replica; the decisions table records that order;
//! - a report's decision is stored with the run (`halt_at`, `halt_state`, `decided_epoch`)
//!   before the reply leaves: a retried report (the worker never saw the answer) gets the
//!   stored answer instead of a new decision, so no rung is decided twice;
//! - a promotion moves a run from `paused` to `queued` with a conditional update
//!   (`where state = 'paused'`), so it happens once; the claim then resumes the run from its
//!   checkpoint at the rung, so no rung is trained twice;
//! - a pause or stop takes effect when the worker hands the run back (`CompleteRun`) after
//!   uploading the checkpoint of that epoch; a worker that dies first loses its lease, and the
//!   reaper applies the stored decision if that checkpoint is stored ([`crate::queue`]).
//!
//! Cost: a decision reads every epoch row of the sweep (one indexed query), fine for sweeps of
//! hundreds of runs; sweeps without a stopping rule, budget or TPE never come here.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use poet_core::config::TrainConfig;
use poet_core::plan::{Plan, Search};
use poet_core::schedule::{self, Reason, RunView, Spent, State, Verdict};
use poet_core::search::{self, Space};
use poet_core::sweep::{SpecFormat, SweepSpec};
use poet_proto::v1;
use sqlx::{Postgres, Row, Transaction};

use crate::error::{Result, ServiceError, fenced};
use crate::queue::LeaseRef;

/// One run of a sweep as the scheduler loads it.
struct Member {
    id: i64,
    state: State,
    epochs_total: u32,
    /// Created by this sweep (not attached from another).
    own: bool,
    config: String,
    curve: Vec<f64>,
    hours: f64,
}

/// A locked sweep with what decisions need.
struct Locked {
    id: i64,
    dataset_id: i64,
    priority: i32,
    max_attempts: i32,
    spec: SweepSpec,
    finished: bool,
    members: Vec<Member>,
}

impl Locked {
    fn plan(&self) -> &Plan {
        self.spec.plan()
    }

    fn views(&self) -> Vec<RunView<'_>> {
        self.members
            .iter()
            .enumerate()
            .map(|(i, m)| RunView {
                id: m.id,
                trial: i as u32,
                state: m.state,
                curve: &m.curve,
                epochs_total: m.epochs_total,
            })
            .collect()
    }

    fn spent(&self) -> Spent {
        self.members
            .iter()
            .filter(|m| m.own)
            .fold(Spent::default(), |s, m| Spent {
                epochs: s.epochs + m.curve.len() as u64,
                hours: s.hours + m.hours,
            })
    }

    fn active(&self) -> usize {
        self.members
            .iter()
            .filter(|m| m.own && m.state.active())
            .count()
    }
}

/// Locks sweep `id` and loads its runs and curves.
async fn lock_sweep(tx: &mut Transaction<'_, Postgres>, id: i64) -> Result<Locked> {
    let row = sqlx::query(
        "select id, dataset_id, spec, spec_format, priority, finished_at is not null as finished
         from sweeps where id = $1 for update",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| ServiceError::NotFound(format!("no sweep {id}")))?;
    let format: SpecFormat = row
        .get::<String, _>("spec_format")
        .parse()
        .map_err(|e: poet_core::sweep::SpecError| ServiceError::Invalid(e.to_string()))?;
    let spec = SweepSpec::parse(&row.get::<String, _>("spec"), format).map_err(|e| {
        ServiceError::Invalid(format!("sweep {id}: stored spec no longer parses: {e}"))
    })?;
    let max_attempts = spec.max_attempts;
    let runs = sqlx::query(
        "select r.id, r.state, r.epochs_total, r.config::text as config, r.sweep_id = $1 as own
         from sweep_runs sr join runs r on r.id = sr.run_id where sr.sweep_id = $1 order by r.id",
    )
    .bind(id)
    .fetch_all(&mut **tx)
    .await?;
    let ids: Vec<i64> = runs.iter().map(|r| r.get("id")).collect();
    let epochs = sqlx::query(
        "select run_id, val_loss, duration_s from epochs where run_id = any($1) order by run_id, epoch",
    )
    .bind(&ids)
    .fetch_all(&mut **tx)
    .await?;
    let mut curves: HashMap<i64, (Vec<f64>, f64)> = HashMap::new();
    for e in epochs {
        let c = curves.entry(e.get("run_id")).or_default();
        c.0.push(e.get("val_loss"));
        c.1 += e.get::<f64, _>("duration_s") / 3600.0;
    }
    let members = runs
        .into_iter()
        .map(|r| {
            let id: i64 = r.get("id");
            let (curve, hours) = curves.remove(&id).unwrap_or_default();
            Member {
                id,
                state: State::parse(r.get("state")).unwrap_or(State::Failed),
                epochs_total: r.get::<i32, _>("epochs_total") as u32,
                own: r.get("own"),
                config: r.get("config"),
                curve,
                hours,
            }
        })
        .collect();
    Ok(Locked {
        id,
        dataset_id: row.get("dataset_id"),
        priority: row.get("priority"),
        max_attempts,
        spec,
        finished: row.get("finished"),
        members,
    })
}

/// Stores one decision (the scheduler's, or a user's run-control action).
pub(crate) async fn record(
    tx: &mut Transaction<'_, Postgres>,
    sweep_id: i64,
    run_id: Option<i64>,
    epoch: i32,
    kind: &str,
    reason: &Reason,
    now: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "insert into sweep_decisions (sweep_id, run_id, epoch, kind, reason, detail, created_at)
         values ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(sweep_id)
    .bind(run_id)
    .bind(epoch)
    .bind(kind)
    .bind(&reason.text)
    .bind(&reason.detail)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A decision a user took (run control).
pub(crate) fn user_reason(text: String, detail: serde_json::Value) -> Reason {
    Reason { text, detail }
}

fn directive(state: &str, reason: String) -> v1::Directive {
    let action = if state == "paused" {
        v1::Action::Pause
    } else {
        v1::Action::Stop
    };
    v1::Directive {
        action: action as i32,
        reason,
    }
}

/// Decides for a run that has just stored epoch `epoch` under `lease`. `None`: train on.
#[tracing::instrument(name = "coordinator.scheduler.after_epoch", skip(pool))]
pub async fn after_epoch(
    pool: &sqlx::PgPool,
    lease: LeaseRef,
    epoch: i32,
    now: DateTime<Utc>,
) -> Result<Option<v1::Directive>> {
    let row = sqlx::query(
        "select r.sweep_id, s.adaptive from runs r join sweeps s on s.id = r.sweep_id where r.id = $1",
    )
    .bind(lease.run_id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Err(ServiceError::NotFound(format!("no run {}", lease.run_id)));
    };
    if !row.get::<bool, _>("adaptive") {
        return Ok(None);
    }
    let sweep_id: i64 = row.get("sweep_id");
    let mut tx = pool.begin().await?;
    let mut sweep = lock_sweep(&mut tx, sweep_id).await?;
    let run = sqlx::query(
        "select state, lease_id, decided_epoch, halt_at, halt_state, halt_reason from runs where id = $1 for update",
    )
    .bind(lease.run_id)
    .fetch_one(&mut *tx)
    .await?;
    if run.get::<String, _>("state") != "running"
        || run.get::<Option<uuid::Uuid>, _>("lease_id") != Some(lease.lease_id)
    {
        return Err(fenced(lease.run_id));
    }
    if run.get::<i32, _>("decided_epoch") >= epoch {
        // A retry: answer what was decided then.
        tx.commit().await?;
        return Ok(match run.get::<Option<i32>, _>("halt_at") {
            Some(h) if h == epoch => Some(directive(
                &run.get::<String, _>("halt_state"),
                run.get::<Option<String>, _>("halt_reason")
                    .unwrap_or_default(),
            )),
            _ => None,
        });
    }
    // The report was stored before this transaction: the member's curve holds it.
    if let Some(m) = sweep.members.iter_mut().find(|m| m.id == lease.run_id) {
        m.state = State::Running;
    }
    let d = schedule::on_epoch(
        &sweep.plan().policy,
        &sweep.views(),
        lease.run_id,
        sweep.spent(),
    );
    let mut answer = None;
    match &d.verdict {
        Verdict::Continue(None) => {}
        Verdict::Continue(Some(reason)) => {
            record(
                &mut tx,
                sweep_id,
                Some(lease.run_id),
                epoch,
                "promote",
                reason,
                now,
            )
            .await?;
        }
        Verdict::Pause(reason) | Verdict::Stop(reason) => {
            let (state, kind) = match d.verdict {
                Verdict::Pause(_) => ("paused", "pause"),
                _ => ("stopped", "stop"),
            };
            sqlx::query(
                "update runs set halt_at = $2, halt_state = $3, halt_reason = $4 where id = $1",
            )
            .bind(lease.run_id)
            .bind(epoch)
            .bind(state)
            .bind(&reason.text)
            .execute(&mut *tx)
            .await?;
            record(
                &mut tx,
                sweep_id,
                Some(lease.run_id),
                epoch,
                kind,
                reason,
                now,
            )
            .await?;
            answer = Some(directive(state, reason.text.clone()));
        }
    }
    let mut promotions: Vec<&schedule::Promotion> = d.promote.iter().collect();
    promotions.sort_by_key(|p| p.run);
    for p in promotions {
        if promote(&mut tx, &sweep, p, now).await?
            && let Some(m) = sweep.members.iter_mut().find(|m| m.id == p.run)
        {
            m.state = State::Queued;
        }
    }
    sqlx::query("update runs set decided_epoch = $2 where id = $1")
        .bind(lease.run_id)
        .bind(epoch)
        .execute(&mut *tx)
        .await?;
    if d.budget_spent {
        spend_budget(&mut tx, &sweep, now).await?;
    } else {
        top_up(&mut tx, &mut sweep, now).await?;
    }
    tx.commit().await?;
    Ok(answer)
}

/// Sends a paused run back to the queue (once: the update is conditional) and records why.
/// Whether it moved.
async fn promote(
    tx: &mut Transaction<'_, Postgres>,
    sweep: &Locked,
    p: &schedule::Promotion,
    now: DateTime<Utc>,
) -> Result<bool> {
    let moved = sqlx::query(
        "update runs set state = 'queued', halt_at = null, halt_state = null
         where id = $1 and state = 'paused'",
    )
    .bind(p.run)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if moved == 1 {
        let at = sweep
            .members
            .iter()
            .find(|m| m.id == p.run)
            .map_or(0, |m| m.curve.len() as i32);
        record(tx, sweep.id, Some(p.run), at, "promote", &p.reason, now).await?;
    }
    Ok(moved == 1)
}

/// Once the budget is spent: every queued and paused run of the sweep stops (recorded once).
async fn spend_budget(
    tx: &mut Transaction<'_, Postgres>,
    sweep: &Locked,
    now: DateTime<Utc>,
) -> Result<()> {
    let Some(reason) = sweep
        .plan()
        .policy
        .budget
        .and_then(|b| b.spent(sweep.spent()))
    else {
        return Ok(());
    };
    let already: bool = sqlx::query_scalar(
        "select exists (select 1 from sweep_decisions where sweep_id = $1 and kind = 'budget')",
    )
    .bind(sweep.id)
    .fetch_one(&mut **tx)
    .await?;
    if !already {
        record(tx, sweep.id, None, 0, "budget", &reason, now).await?;
    }
    let views = sweep.views();
    let mut stops = schedule::on_budget_spent(&views, &reason);
    stops.retain(|(id, _)| sweep.members.iter().any(|m| m.id == *id && m.own));
    stop_waiting(tx, sweep.id, &stops, now).await
}

/// Stops queued or paused runs (never one a worker holds).
async fn stop_waiting(
    tx: &mut Transaction<'_, Postgres>,
    sweep_id: i64,
    stops: &[(i64, Reason)],
    now: DateTime<Utc>,
) -> Result<()> {
    for (id, reason) in stops {
        let row = sqlx::query(
            "update runs set state = 'stopped', finished_at = $2, halt_at = null, halt_state = null,
                 halt_reason = $3
             where id = $1 and state in ('queued', 'paused') returning epochs_done",
        )
        .bind(id)
        .bind(now)
        .bind(&reason.text)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some(r) = row {
            record(
                tx,
                sweep_id,
                Some(*id),
                r.get("epochs_done"),
                "stop",
                reason,
                now,
            )
            .await?;
        }
    }
    Ok(())
}

/// Keeps a TPE sweep's proposal batch full: while fewer than `trials` configs exist and fewer
/// than `parallel` are queued or running, proposes one more.
async fn top_up(
    tx: &mut Transaction<'_, Postgres>,
    sweep: &mut Locked,
    now: DateTime<Utc>,
) -> Result<usize> {
    let Search::Tpe { trials, tpe, seed } = sweep.plan().search.clone() else {
        return Ok(0);
    };
    let parallel = sweep.plan().parallel() as usize;
    let mut created = sweep.members.iter().filter(|m| m.own).count();
    let mut active = sweep.active();
    if created >= trials as usize || active >= parallel {
        return Ok(0);
    }
    let content_hash: String =
        sqlx::query_scalar("select content_hash from datasets where id = $1")
            .bind(sweep.dataset_id)
            .fetch_one(&mut **tx)
            .await?;
    let mut hashes: HashSet<String> =
        sqlx::query_scalar("select config_hash from runs where dataset_id = $1")
            .bind(sweep.dataset_id)
            .fetch_all(&mut **tx)
            .await?
            .into_iter()
            .collect();
    let space = Space::from_spec(&sweep.spec);
    let mut added = 0;
    while created < trials as usize && active < parallel {
        let configs: Vec<TrainConfig> = sweep
            .members
            .iter()
            .map(|m| TrainConfig::from_json(&m.config).unwrap_or_default())
            .collect();
        let curves: Vec<(TrainConfig, &[f64])> = configs
            .iter()
            .cloned()
            .zip(sweep.members.iter().map(|m| &m.curve[..]))
            .collect();
        let observed = search::observations(&curves, tpe.initial as usize);
        let trial = created as u32;
        let exists = |c: &TrainConfig| hashes.contains(&c.run_hash(&content_hash));
        let Some(c) = search::propose(&space, &tpe, &observed, seed, trial, &exists) else {
            break;
        };
        let hash = c.run_hash(&content_hash);
        let id: i64 = sqlx::query_scalar(
            "insert into runs (sweep_id, dataset_id, config, config_hash, priority, max_attempts, epochs_total, created_at)
             values ($1, $2, $3::jsonb, $4, $5, $6, $7, $8) returning id",
        )
        .bind(sweep.id)
        .bind(sweep.dataset_id)
        .bind(c.canonical_json())
        .bind(&hash)
        .bind(sweep.priority)
        .bind(sweep.max_attempts)
        .bind(c.epochs as i32)
        .bind(now)
        .fetch_one(&mut **tx)
        .await?;
        sqlx::query("insert into sweep_runs (sweep_id, run_id) values ($1, $2)")
            .bind(sweep.id)
            .bind(id)
            .execute(&mut **tx)
            .await?;
        let model = observed.len() >= tpe.initial.max(2) as usize;
        let reason = Reason {
            text: if model {
                format!(
                    "proposed by TPE (trial {}): from {} observations",
                    trial + 1,
                    observed.len()
                )
            } else {
                format!(
                    "drawn at random (trial {}): {} of {} observations before TPE starts",
                    trial + 1,
                    observed.len(),
                    tpe.initial
                )
            },
            detail: serde_json::json!({"rule": "tpe", "trial": trial + 1, "observations": observed.len(),
                "model": model, "config": serde_json::from_str::<serde_json::Value>(&c.canonical_json()).unwrap_or_default()}),
        };
        record(tx, sweep.id, Some(id), 0, "propose", &reason, now).await?;
        hashes.insert(hash);
        sweep.members.push(Member {
            id,
            state: State::Queued,
            epochs_total: c.epochs,
            own: true,
            config: c.canonical_json(),
            curve: vec![],
            hours: 0.0,
        });
        created += 1;
        active += 1;
        added += 1;
    }
    Ok(added)
}

/// After a run of sweep `sweep_id` was handed back, failed or ended: proposes new TPE configs
/// and, when nothing is queued or running any more, stops the paused runs and marks the sweep
/// finished.
#[tracing::instrument(name = "coordinator.scheduler.after_run_end", skip(pool))]
pub async fn after_run_end(pool: &sqlx::PgPool, run_id: i64, now: DateTime<Utc>) -> Result<()> {
    let row = sqlx::query(
        "select r.sweep_id, s.adaptive, s.finished_at is not null as finished
         from runs r join sweeps s on s.id = r.sweep_id where r.id = $1",
    )
    .bind(run_id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(());
    };
    if !row.get::<bool, _>("adaptive") || row.get::<bool, _>("finished") {
        return Ok(());
    }
    settle(pool, row.get("sweep_id"), now).await
}

/// Tops a sweep up and finishes it when it is idle (also run by the reaper's pass).
pub async fn settle(pool: &sqlx::PgPool, sweep_id: i64, now: DateTime<Utc>) -> Result<()> {
    let mut tx = pool.begin().await?;
    let mut sweep = lock_sweep(&mut tx, sweep_id).await?;
    if sweep.finished {
        return Ok(());
    }
    let spent = sweep
        .plan()
        .policy
        .budget
        .and_then(|b| b.spent(sweep.spent()));
    if spent.is_some() {
        spend_budget(&mut tx, &sweep, now).await?;
    } else {
        top_up(&mut tx, &mut sweep, now).await?;
    }
    if sweep.active() == 0 {
        // Reload the states the budget or top-up may have changed.
        let sweep = lock_sweep(&mut tx, sweep_id).await?;
        let views = sweep.views();
        let own = |id: &i64| sweep.members.iter().any(|m| m.id == *id && m.own);
        let mut idle = schedule::on_idle(&sweep.plan().policy, &views);
        // Runs attached from another sweep are that sweep's to promote or stop.
        idle.promote.retain(|p| own(&p.run));
        idle.stop.retain(|(id, _)| own(id));
        if spent.is_none() && !idle.promote.is_empty() {
            for p in &idle.promote {
                promote(&mut tx, &sweep, p, now).await?;
            }
            tx.commit().await?;
            return Ok(());
        }
        stop_waiting(&mut tx, sweep_id, &idle.stop, now).await?;
        let counts = sweep.members.iter().filter(|m| m.own).count();
        let reason = Reason {
            text: format!(
                "finished: nothing left to run ({counts} runs, {} epochs spent)",
                sweep.spent().epochs
            ),
            detail: serde_json::json!({"rule": "finish", "runs": counts, "epochs": sweep.spent().epochs,
                "hours": sweep.spent().hours}),
        };
        record(&mut tx, sweep_id, None, 0, "finish", &reason, now).await?;
        sqlx::query("update sweeps set finished_at = $2 where id = $1")
            .bind(sweep_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tracing::info!(sweep_id, "sweep finished");
    }
    tx.commit().await?;
    Ok(())
}

/// Adaptive sweeps that are not finished and have nothing queued or running: the reaper
/// settles them, so a sweep whose last run ended by lease expiry still finishes.
pub async fn settle_idle(pool: &sqlx::PgPool, now: DateTime<Utc>) -> Result<usize> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "select s.id from sweeps s where s.adaptive and s.finished_at is null and not s.paused
           and not exists (select 1 from runs r where r.sweep_id = s.id and r.state in ('queued', 'running'))",
    )
    .fetch_all(pool)
    .await?;
    for &id in &ids {
        settle(pool, id, now).await?;
    }
    Ok(ids.len())
}

/// A sweep's decisions, oldest first.
pub async fn decisions(pool: &sqlx::PgPool, sweep_id: i64) -> Result<Vec<v1::Decision>> {
    let rows = sqlx::query(
        "select id, sweep_id, run_id, epoch, kind, reason, detail::text as detail, created_at
         from sweep_decisions where sweep_id = $1 order by id",
    )
    .bind(sweep_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| v1::Decision {
            id: r.get("id"),
            sweep_id: r.get("sweep_id"),
            run_id: r.get::<Option<i64>, _>("run_id").unwrap_or(0),
            epoch: r.get("epoch"),
            kind: r.get("kind"),
            reason: r.get("reason"),
            detail_json: r.get("detail"),
            created_at: Some(crate::history::ts(r.get("created_at"))),
        })
        .collect())
}

/// The plan of a stored sweep, JSON.
pub fn plan_json(spec: &str, format: &str) -> String {
    format
        .parse::<SpecFormat>()
        .ok()
        .and_then(|f| SweepSpec::parse(spec, f).ok())
        .map(|s| serde_json::to_string(s.plan()).unwrap_or_default())
        .unwrap_or_default()
}

//! Adaptive sweeps over real gRPC: ASHA pauses and promotions, median stopping, budgets, TPE
//! proposals, max_concurrent and run control, each decision checked in the database and in
//! `GetSweep`; and two replicas deciding one sweep under concurrent workers.

use std::collections::{HashMap, HashSet};

use poet_proto::v1::{self, upload_checkpoint_request::Part};
use sha2::{Digest, Sha256};
use sqlx::Row;
use tonic::Code;

use crate::helpers::{
    POEMS, Registered, Worker, fast_config, lease_run, register, seed_dataset, spawn, spawn_with,
};

fn adaptive_spec(runs: usize, epochs: u32, extra: &str) -> String {
    let seeds: Vec<String> = (0..runs).map(|i| i.to_string()).collect();
    format!(
        "dataset = \"tiny\"\nmax_attempts = 2\n{extra}\n[base]\nlayers = 1\nunits = 8\nseq_len = 16\nepochs = {epochs}\n[grid]\nseed = [{}]\n",
        seeds.join(", ")
    )
}

/// Reports `epoch` with validation loss `val` (no checkpoint); the answer.
async fn report_only(
    w: &mut Worker,
    lease: &v1::Lease,
    epoch: i32,
    val: f64,
) -> Result<v1::ReportEpochResponse, tonic::Status> {
    w.report_epoch(v1::ReportEpochRequest {
        lease: Some(lease.clone()),
        epoch: Some(v1::Epoch {
            epoch,
            train_loss: val + 0.1,
            val_loss: val,
            duration_s: 0.5,
            chars_per_sec: 1000.0,
            ..Default::default()
        }),
    })
    .await
    .map(|r| r.into_inner())
}

/// Reports `epoch` with validation loss `val` and uploads its checkpoint; the directive.
async fn report(w: &mut Worker, lease: &v1::Lease, epoch: i32, val: f64) -> Option<v1::Directive> {
    let answer = report_only(w, lease, epoch, val).await.expect("report");
    let data = format!("checkpoint of run {} epoch {epoch}", lease.run_id).into_bytes();
    let msgs = vec![
        v1::UploadCheckpointRequest {
            part: Some(Part::Header(v1::CheckpointHeader {
                lease: Some(lease.clone()),
                epoch,
                size: data.len() as i64,
                sha256: hex::encode(Sha256::digest(&data)),
            })),
        },
        v1::UploadCheckpointRequest {
            part: Some(Part::Data(data)),
        },
    ];
    w.upload_checkpoint(tokio_stream::iter(msgs))
        .await
        .expect("upload");
    answer.directive
}

async fn complete(w: &mut Worker, lease: &v1::Lease) {
    w.complete_run(v1::CompleteRunRequest {
        lease: Some(lease.clone()),
    })
    .await
    .expect("complete");
}

fn action(d: &Option<v1::Directive>) -> v1::Action {
    d.as_ref().map_or(v1::Action::Continue, |d| d.action())
}

async fn state(pool: &sqlx::PgPool, run: i64) -> String {
    sqlx::query_scalar("select state from runs where id = $1")
        .bind(run)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// (kind, run, epoch) of every decision of sweep 1, in order.
async fn decisions(pool: &sqlx::PgPool) -> Vec<(String, Option<i64>, i32)> {
    sqlx::query("select kind, run_id, epoch from sweep_decisions where sweep_id = 1 order by id")
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.get("kind"), r.get("run_id"), r.get("epoch")))
        .collect()
}

async fn submit(c: &crate::helpers::TestCoordinator, spec: String) -> v1::SubmitSweepResponse {
    c.client()
        .submit_sweep(v1::SubmitSweepRequest {
            spec,
            ..Default::default()
        })
        .await
        .expect("submit")
        .into_inner()
}

/// A coordinator on a fresh database with the `tiny` dataset, sweep `spec` submitted, and one
/// registered worker: the coordinator, the worker's client and the worker.
async fn start(spec: String) -> (crate::helpers::TestCoordinator, Worker, Registered) {
    let c = spawn().await;
    seed_dataset(&c.db.pool, "tiny", POEMS).await;
    submit(&c, spec).await;
    let mut w = c.worker();
    let wid = register(&mut w, "h").await;
    (c, w, wid)
}

#[tokio::test]
async fn asha_pauses_promotes_resumes_from_the_rung_and_finishes_with_reasons() {
    let (c, mut w, wid) = start(adaptive_spec(
        3,
        9,
        "[stopping]\nrule = \"asha\"\nmin_epochs = 1\neta = 3",
    ))
    .await;
    // Runs 1, 2, 3 reach rung 0 (epoch 1) with 2.0, 3.0, 2.5.
    let mut leases = HashMap::new();
    for (run, val) in [(1, 2.0), (2, 3.0), (3, 2.5)] {
        let l = lease_run(&mut w, wid, 1000).await.unwrap();
        let lease = l.lease.unwrap();
        assert_eq!(lease.run_id, run);
        let d = report(&mut w, &lease, 1, val).await;
        assert_eq!(action(&d), v1::Action::Pause, "run {run}: {d:?}");
        // A retried report gets the same answer, and no second decision.
        let again = report(&mut w, &lease, 1, val).await;
        assert_eq!(again, d);
        complete(&mut w, &lease).await;
        leases.insert(run, lease);
    }
    assert_eq!(
        decisions(&c.db.pool).await,
        vec![
            ("pause".into(), Some(1), 1),
            ("pause".into(), Some(2), 1),
            ("pause".into(), Some(3), 1),
            // The third arrival made the quota 1: run 1 (best, 2.0) goes on.
            ("promote".into(), Some(1), 1),
        ]
    );
    let reason: String = sqlx::query_scalar(
        "select reason from sweep_decisions where kind = 'pause' and run_id = 3",
    )
    .fetch_one(&c.db.pool)
    .await
    .unwrap();
    assert_eq!(
        reason,
        "paused at rung 0 (epoch 1): 2.5000 ranks 2 of 3, top 1 go on"
    );
    assert_eq!(state(&c.db.pool, 1).await, "queued");
    assert_eq!(state(&c.db.pool, 2).await, "paused");
    // Run 1 resumes from its checkpoint at the rung, under a new lease.
    let l = lease_run(&mut w, wid, 1000).await.unwrap();
    let lease = l.lease.clone().unwrap();
    assert_eq!((lease.run_id, lease.attempt), (1, 2));
    assert_eq!(l.resume_from.as_ref().map(|c| c.epoch), Some(1));
    assert_eq!(
        action(&report(&mut w, &lease, 2, 1.9).await),
        v1::Action::Continue
    );
    let d = report(&mut w, &lease, 3, 1.8).await;
    assert_eq!(action(&d), v1::Action::Pause, "alone at rung 1: {d:?}");
    // Past the halt, a report is refused: the worker must hand the run back.
    let past = report_only(&mut w, &lease, 4, 1.0).await.unwrap_err();
    assert_eq!(past.code(), Code::FailedPrecondition);
    complete(&mut w, &lease).await;
    // Nothing is queued or running, and nobody went past rung 1: the best run waiting there
    // (run 1, alone) goes on to the end rather than the sweep ending without a full run.
    assert_eq!(state(&c.db.pool, 1).await, "queued");
    let l = lease_run(&mut w, wid, 1000).await.unwrap();
    let lease = l.lease.clone().unwrap();
    assert_eq!((lease.run_id, lease.attempt), (1, 3));
    assert_eq!(l.resume_from.as_ref().map(|c| c.epoch), Some(3));
    for e in 4..=9 {
        assert_eq!(
            action(&report(&mut w, &lease, e, 1.8 - 0.01 * e as f64).await),
            v1::Action::Continue
        );
    }
    complete(&mut w, &lease).await;
    // Now a run went past every rung: the other paused runs stop and the sweep finishes.
    assert_eq!(state(&c.db.pool, 1).await, "succeeded");
    for run in [2, 3] {
        assert_eq!(state(&c.db.pool, run).await, "stopped", "run {run}");
    }
    let s = c
        .client()
        .get_sweep(v1::GetSweepRequest { sweep_id: 1 })
        .await
        .unwrap()
        .into_inner();
    assert!(s.sweep.unwrap().finished_at.is_some());
    assert_eq!(s.epochs_spent, 11);
    let kinds: Vec<&str> = s.decisions.iter().map(|d| d.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "pause", "pause", "pause", "promote", "pause", "promote", "stop", "stop", "finish"
        ]
    );
    assert!(s.plan_json.contains("\"asha\""), "{}", s.plan_json);
    let idle = &s.decisions[5];
    assert_eq!(
        idle.reason,
        "promoted at rung 1 (epoch 3) with nothing else left to run: 1.8000 ranks 1 of 1 and no run went on from there"
    );
    let stop3 = s
        .decisions
        .iter()
        .find(|d| d.kind == "stop" && d.run_id == 3)
        .unwrap();
    assert_eq!(
        stop3.reason,
        "stopped at rung 0 (epoch 1): 2.5000 ranked 2 of 3, top 1 went on; the sweep has nothing left to run"
    );
    let detail: serde_json::Value = serde_json::from_str(&stop3.detail_json).unwrap();
    assert_eq!(detail["rank"], 2);
    // Run 1's epochs are exactly 1..=9, each trained once: epoch 1 by attempt 1, 2-3 by 2,
    // 4-9 by 3.
    let epochs: Vec<(i32, i32)> =
        sqlx::query_as("select epoch, attempt from epochs where run_id = 1 order by epoch")
            .fetch_all(&c.db.pool)
            .await
            .unwrap();
    let want: Vec<(i32, i32)> = (1..=9)
        .map(|e| {
            (
                e,
                if e == 1 {
                    1
                } else if e <= 3 {
                    2
                } else {
                    3
                },
            )
        })
        .collect();
    assert_eq!(epochs, want);
    c.stop().await;
}

#[tokio::test]
async fn median_rule_stops_a_bad_run_and_keeps_its_history() {
    let (c, mut w, wid) = start(adaptive_spec(
        3,
        3,
        "[stopping]\nrule = \"median\"\nmin_runs = 2",
    ))
    .await;
    for curve in [[2.0, 1.9, 1.8], [2.2, 2.1, 2.0]] {
        let lease = lease_run(&mut w, wid, 1000).await.unwrap().lease.unwrap();
        for (e, v) in curve.iter().enumerate() {
            assert_eq!(
                action(&report(&mut w, &lease, e as i32 + 1, *v).await),
                v1::Action::Continue
            );
        }
        complete(&mut w, &lease).await;
    }
    let lease = lease_run(&mut w, wid, 1000).await.unwrap().lease.unwrap();
    let d = report(&mut w, &lease, 1, 3.0).await.expect("a directive");
    assert_eq!(d.action(), v1::Action::Stop);
    assert_eq!(
        d.reason,
        "stopped at epoch 1: best 3.0000 > median 2.1000 of 2 runs"
    );
    complete(&mut w, &lease).await;
    let r = c
        .client()
        .get_run(v1::GetRunRequest { run_id: 3 })
        .await
        .unwrap()
        .into_inner();
    let run = r.run.unwrap();
    assert_eq!(run.state, v1::RunState::Stopped as i32);
    assert!(run.finished_at.is_some());
    assert_eq!(run.halt_reason, d.reason);
    assert_eq!((r.epochs.len(), r.checkpoints.len()), (1, 1));
    c.stop().await;
}

#[tokio::test]
async fn a_spent_budget_stops_the_running_run_and_the_queued_ones() {
    let (c, mut w, wid) = start(adaptive_spec(3, 3, "[budget]\nepochs = 4")).await;
    let lease = lease_run(&mut w, wid, 1000).await.unwrap().lease.unwrap();
    for e in 1..=3 {
        assert_eq!(
            action(&report(&mut w, &lease, e, 2.0).await),
            v1::Action::Continue
        );
    }
    complete(&mut w, &lease).await;
    let lease = lease_run(&mut w, wid, 1000).await.unwrap().lease.unwrap();
    let d = report(&mut w, &lease, 1, 2.0).await.expect("stopped");
    assert_eq!(d.action(), v1::Action::Stop);
    assert_eq!(d.reason, "budget spent: 4 of 4 epochs");
    // The queued run never starts.
    assert_eq!(state(&c.db.pool, 3).await, "stopped");
    assert!(lease_run(&mut w, wid, 100).await.is_none());
    complete(&mut w, &lease).await;
    assert_eq!(state(&c.db.pool, 2).await, "stopped");
    let finished: bool =
        sqlx::query_scalar("select finished_at is not null from sweeps where id = 1")
            .fetch_one(&c.db.pool)
            .await
            .unwrap();
    assert!(finished);
    let kinds: Vec<String> = decisions(&c.db.pool)
        .await
        .into_iter()
        .map(|d| d.0)
        .collect();
    assert_eq!(kinds, ["stop", "budget", "stop", "finish"]);
    c.stop().await;
}

#[tokio::test]
async fn tpe_proposes_new_configs_as_results_arrive_and_never_repeats_one() {
    let c = spawn().await;
    seed_dataset(&c.db.pool, "tiny", POEMS).await;
    let spec = "dataset = \"tiny\"\nmax_concurrent = 2\n[base]\nlayers = 1\nseq_len = 16\nepochs = 1\n\
        [grid]\nunits = [8, 16, 32]\nlearning_rate = [0.001, 0.003, 0.01]\n\
        [search]\nmethod = \"tpe\"\ntrials = 6\ninitial = 2\nseed = 4\n";
    let r = submit(&c, spec.into()).await;
    assert_eq!(
        r.created.len(),
        2,
        "the first batch is max_concurrent configs"
    );
    let mut w = c.worker();
    let wid = register(&mut w, "h").await;
    let mut trained = 0;
    while let Some(l) = lease_run(&mut w, wid, 300).await {
        let lease = l.lease.unwrap();
        let cfg: serde_json::Value = serde_json::from_str(&l.config_json).unwrap();
        // A loss that prefers units 32 and learning rate 0.003.
        let val = 2.0
            + (32.0 - cfg["units"].as_f64().unwrap()) / 32.0
            + (cfg["learning_rate"].as_f64().unwrap() / 0.003).ln().abs();
        report(&mut w, &lease, 1, val).await;
        complete(&mut w, &lease).await;
        trained += 1;
    }
    assert_eq!(trained, 6);
    let hashes: Vec<String> = sqlx::query_scalar("select config_hash from runs")
        .fetch_all(&c.db.pool)
        .await
        .unwrap();
    assert_eq!(hashes.iter().collect::<HashSet<_>>().len(), 6);
    let kinds: Vec<String> = decisions(&c.db.pool)
        .await
        .into_iter()
        .map(|d| d.0)
        .collect();
    assert_eq!(kinds.iter().filter(|k| *k == "propose").count(), 4);
    assert_eq!(kinds.last().map(String::as_str), Some("finish"));
    let reasons: Vec<String> =
        sqlx::query_scalar("select reason from sweep_decisions where kind = 'propose' order by id")
            .fetch_all(&c.db.pool)
            .await
            .unwrap();
    // Trial 3 comes when one result is in (random: TPE starts at 2); trial 4 from the model.
    assert_eq!(
        reasons[0],
        "drawn at random (trial 3): 1 of 2 observations before TPE starts"
    );
    assert!(
        reasons[1].starts_with("proposed by TPE (trial 4): from 2 observations"),
        "{reasons:?}"
    );
    c.stop().await;
}

#[tokio::test]
async fn max_concurrent_pause_and_priority_gate_the_claim() {
    let (c, mut w, wid) = start(adaptive_spec(3, 1, "max_concurrent = 1")).await;
    let first = lease_run(&mut w, wid, 1000).await.unwrap().lease.unwrap();
    // The sweep is at its cap: nothing more is leased until the run ends.
    assert!(lease_run(&mut w, wid, 100).await.is_none());
    report(&mut w, &first, 1, 2.0).await;
    complete(&mut w, &first).await;
    let mut client = c.client();
    let s = client
        .pause_sweep(v1::SweepControlRequest { sweep_id: 1 })
        .await
        .unwrap()
        .into_inner()
        .sweep
        .unwrap();
    assert!(s.paused);
    assert!(lease_run(&mut w, wid, 100).await.is_none());
    client
        .set_sweep_priority(v1::SetSweepPriorityRequest {
            sweep_id: 1,
            priority: 7,
        })
        .await
        .unwrap();
    let priorities: Vec<i32> =
        sqlx::query_scalar("select priority from runs where state = 'queued' order by id")
            .fetch_all(&c.db.pool)
            .await
            .unwrap();
    assert_eq!(priorities, vec![7, 7]);
    client
        .resume_sweep(v1::SweepControlRequest { sweep_id: 1 })
        .await
        .unwrap();
    assert_eq!(
        lease_run(&mut w, wid, 1000)
            .await
            .unwrap()
            .lease
            .unwrap()
            .run_id,
        2
    );
    let bad = client
        .set_sweep_priority(v1::SetSweepPriorityRequest {
            sweep_id: 1,
            priority: 5000,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(
        bad.message().starts_with("priority: 5000"),
        "{}",
        bad.message()
    );
    let kinds: Vec<String> = decisions(&c.db.pool)
        .await
        .into_iter()
        .map(|d| d.0)
        .collect();
    assert_eq!(kinds, ["pause_sweep", "priority", "resume_sweep"]);
    c.stop().await;
}

#[tokio::test]
async fn retry_extend_and_fork_continue_from_checkpoints() {
    let (c, mut w, wid) = start(adaptive_spec(2, 2, "")).await;
    let lease = lease_run(&mut w, wid, 1000).await.unwrap().lease.unwrap();
    report(&mut w, &lease, 1, 2.0).await;
    report(&mut w, &lease, 2, 1.9).await;
    complete(&mut w, &lease).await;
    let mut client = c.client();
    // Not finished yet: run 2 cannot be extended.
    let e = client
        .extend_run(v1::ExtendRunRequest {
            run_id: 2,
            epochs: 2,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(
        e.message(),
        "run 2 is queued; only succeeded or stopped runs can be extended"
    );
    // Extend run 1: it resumes from epoch 2 and trains to 4 under its old config hash.
    let hash_before: String = sqlx::query_scalar("select config_hash from runs where id = 1")
        .fetch_one(&c.db.pool)
        .await
        .unwrap();
    let run = client
        .extend_run(v1::ExtendRunRequest {
            run_id: 1,
            epochs: 2,
        })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    assert_eq!(
        (run.state, run.epochs_total),
        (v1::RunState::Queued as i32, 4)
    );
    assert_eq!(run.config_hash, hash_before);
    let l = lease_run(&mut w, wid, 1000).await.unwrap();
    assert_eq!(l.lease.as_ref().unwrap().run_id, 1);
    let cfg: serde_json::Value = serde_json::from_str(&l.config_json).unwrap();
    assert_eq!(cfg["epochs"], 4);
    assert_eq!(l.resume_from.as_ref().unwrap().epoch, 2);
    let lease = l.lease.unwrap();
    report(&mut w, &lease, 3, 1.8).await;
    report(&mut w, &lease, 4, 1.7).await;
    complete(&mut w, &lease).await;
    assert_eq!(state(&c.db.pool, 1).await, "succeeded");
    // Fork run 1 from its oldest kept checkpoint with a lower learning rate.
    let (ck2, ck_epoch): (i64, i32) = sqlx::query_as(
        "select id, epoch from checkpoints where run_id = 1 and live order by epoch limit 1",
    )
    .fetch_one(&c.db.pool)
    .await
    .unwrap();
    let bad = client
        .fork_run(v1::ForkRunRequest {
            run_id: 1,
            checkpoint_id: ck2,
            overrides_json: r#"{"units": 64}"#.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(
        bad.message().starts_with("overrides_json.units:"),
        "{}",
        bad.message()
    );
    let bad = client
        .fork_run(v1::ForkRunRequest {
            run_id: 1,
            checkpoint_id: ck2,
            overrides_json: r#"{"cell": "gru", "epochs": 5}"#.into(),
        })
        .await
        .unwrap_err();
    assert!(
        bad.message().starts_with("overrides_json.cell:"),
        "{}",
        bad.message()
    );
    let fork = client
        .fork_run(v1::ForkRunRequest {
            run_id: 1,
            checkpoint_id: ck2,
            overrides_json: r#"{"learning_rate": 0.0005, "epochs": 5}"#.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    assert_eq!((fork.parent_run_id, fork.parent_checkpoint_id), (1, ck2));
    assert_eq!(
        fork.epochs_done, ck_epoch,
        "inherits the parent's epochs up to the checkpoint"
    );
    // Forking the same way again answers the same run, also when the override spells out a
    // shape key at the value the parent has by default (its stored config leaves `cell` out).
    let again = client
        .fork_run(v1::ForkRunRequest {
            run_id: 1,
            checkpoint_id: ck2,
            overrides_json: r#"{"learning_rate": 0.0005, "epochs": 5, "cell": "lstm"}"#.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    assert_eq!(again.id, fork.id);
    // Run 2 first, then the fork, which starts from the parent's checkpoint.
    let l2 = lease_run(&mut w, wid, 1000).await.unwrap().lease.unwrap();
    assert_eq!(l2.run_id, 2);
    w.fail_run(v1::FailRunRequest {
        lease: Some(l2.clone()),
        reason: "boom".into(),
        permanent: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let l = lease_run(&mut w, wid, 1000).await.unwrap();
    assert_eq!(l.lease.as_ref().unwrap().run_id, fork.id);
    assert_eq!(l.resume_from.as_ref().map(|c| c.id), Some(ck2));
    let cfg: serde_json::Value = serde_json::from_str(&l.config_json).unwrap();
    assert_eq!(cfg["learning_rate"], 0.0005);
    let lease = l.lease.unwrap();
    for e in ck_epoch + 1..=5 {
        report(&mut w, &lease, e, 1.75).await;
    }
    complete(&mut w, &lease).await;
    let epochs: Vec<(i32, i32)> =
        sqlx::query_as("select epoch, attempt from epochs where run_id = $1 order by epoch")
            .bind(fork.id)
            .fetch_all(&c.db.pool)
            .await
            .unwrap();
    let want: Vec<(i32, i32)> = (1..=5).map(|e| (e, i32::from(e > ck_epoch))).collect();
    assert_eq!(
        epochs, want,
        "inherited epochs are attempt 0, its own attempt 1"
    );
    // Retry the failed run: it is queued again with fresh attempts.
    let r = client
        .retry_run(v1::RetryRunRequest { run_id: 2 })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    assert_eq!(r.state, v1::RunState::Queued as i32);
    let e = client
        .retry_run(v1::RetryRunRequest { run_id: 2 })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let kinds: Vec<String> = decisions(&c.db.pool)
        .await
        .into_iter()
        .map(|d| d.0)
        .collect();
    assert_eq!(kinds, ["extend", "fork", "retry"]);
    c.stop().await;
}

/// Two replicas, nine workers racing on an ASHA sweep: every rung decided once, no run
/// promoted twice, no epoch trained twice, and the sweep finishes.
#[tokio::test]
async fn two_replicas_decide_each_rung_once_under_concurrent_workers() {
    let a = spawn().await;
    seed_dataset(&a.db.pool, "tiny", POEMS).await;
    let b = spawn_with(Some(a.db.clone()), fast_config()).await;
    submit(
        &a,
        adaptive_spec(9, 4, "[stopping]\nrule = \"asha\"\nmin_epochs = 1\neta = 2"),
    )
    .await;
    let mut tasks = Vec::new();
    for i in 0..6 {
        let mut w = if i % 2 == 0 { a.worker() } else { b.worker() };
        tasks.push(tokio::spawn(async move {
            let wid = register(&mut w, &format!("w{i}")).await;
            let mut idle = 0;
            while idle < 10 {
                let Some(l) = lease_run(&mut w, wid, 200).await else {
                    idle += 1;
                    continue;
                };
                idle = 0;
                let lease = l.lease.unwrap();
                let from = l.resume_from.map_or(0, |c| c.epoch);
                for e in from + 1..=4 {
                    // Each run's loss: a fixed level per run, falling with epochs.
                    let val = 1.0 + (lease.run_id * 7 % 9) as f64 / 10.0 + 1.0 / e as f64;
                    if action(&report(&mut w, &lease, e, val).await) != v1::Action::Continue {
                        break;
                    }
                }
                complete(&mut w, &lease).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let pool = &a.db.pool;
    let finished: bool =
        sqlx::query_scalar("select finished_at is not null from sweeps where id = 1")
            .fetch_one(pool)
            .await
            .unwrap();
    assert!(finished);
    let states: Vec<String> = sqlx::query_scalar("select state from runs")
        .fetch_all(pool)
        .await
        .unwrap();
    assert!(
        states.iter().all(|s| s == "stopped" || s == "succeeded"),
        "{states:?}"
    );
    // Promotions: at most one per (run, rung epoch).
    let promos: Vec<(i64, i32)> =
        sqlx::query_as("select run_id, epoch from sweep_decisions where kind = 'promote'")
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(
        promos.iter().collect::<HashSet<_>>().len(),
        promos.len(),
        "{promos:?}"
    );
    // Every promotion ranked inside the quota of its rung when it was taken, every pause
    // outside it (asynchronous ASHA: a run promoted early may later fall out of the top).
    let rungs: Vec<(String, serde_json::Value)> = sqlx::query_as(
        "select kind, detail from sweep_decisions where kind in ('promote', 'pause')
             and not detail ? 'idle'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(rungs.iter().any(|(k, _)| k == "promote"));
    for (kind, d) in &rungs {
        let (rank, quota) = (d["rank"].as_i64().unwrap(), d["quota"].as_i64().unwrap());
        assert_eq!(kind == "promote", rank <= quota, "{kind}: {d}");
    }
    // Every run's epochs are 1..=n, each trained by one attempt that resumed right before it.
    let rows = sqlx::query(
        "select e.run_id, e.epoch, a.resumed_from_epoch from epochs e
         join run_attempts a on a.run_id = e.run_id and a.attempt = e.attempt order by e.run_id, e.epoch",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut last: HashMap<i64, i32> = HashMap::new();
    for r in rows {
        let (run, epoch, from): (i64, i32, i32) =
            (r.get("run_id"), r.get("epoch"), r.get("resumed_from_epoch"));
        let prev = last.insert(run, epoch).unwrap_or(0);
        assert_eq!(epoch, prev + 1, "run {run}");
        assert!(
            from < epoch,
            "run {run} epoch {epoch} trained by an attempt resumed at {from}"
        );
    }
    let discarded_or_retrained: i64 = sqlx::query_scalar(
        "select count(*) from run_attempts where outcome is distinct from 'completed'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(discarded_or_retrained, 0);
    b.stop().await;
    a.stop().await;
}

/// A worker killed after its run was paused (checkpoint stored) but before it handed the run
/// back: the reaper applies the stored decision instead of requeueing, so the rung is not
/// trained again; killed before the checkpoint, the run is requeued and the retrained epoch
/// gets the same decision.
#[tokio::test]
async fn a_worker_killed_after_a_pause_leaves_the_run_paused_not_retrained() {
    let (c, mut w, wid) = start(adaptive_spec(
        2,
        9,
        "[stopping]\nrule = \"asha\"\nmin_epochs = 1\neta = 3",
    ))
    .await;
    let lease = lease_run(&mut w, wid, 1000).await.unwrap().lease.unwrap();
    assert_eq!(
        action(&report(&mut w, &lease, 1, 2.0).await),
        v1::Action::Pause
    );
    // The worker dies here. Its lease expires.
    let q =
        poet_coordinator::queue::Queue::new(c.db.pool.clone(), std::time::Duration::from_secs(30));
    let later = chrono::Utc::now() + chrono::TimeDelta::seconds(60);
    let reaped = q.reap(later).await.unwrap();
    assert_eq!(reaped.len(), 1);
    assert_eq!(reaped[0].state, "paused");
    assert_eq!(state(&c.db.pool, 1).await, "paused");
    // Run 2 pauses too; nothing is running: the sweep settles (both stop, quota 0 of 2).
    let lease2 = lease_run(&mut w, wid, 1000).await.unwrap().lease.unwrap();
    assert_eq!(lease2.run_id, 2);
    // Killed before its checkpoint: report without upload, then expire.
    let d = report_only(&mut w, &lease2, 1, 2.5)
        .await
        .unwrap()
        .directive;
    assert_eq!(action(&d), v1::Action::Pause);
    let reaped = q.reap(later).await.unwrap();
    assert_eq!(
        reaped.iter().map(|r| r.state.as_str()).collect::<Vec<_>>(),
        ["queued"]
    );
    // Retrained from scratch (no checkpoint): the same epoch gets the stored decision.
    let again = lease_run(&mut w, wid, 1000).await.unwrap().lease.unwrap();
    assert_eq!((again.run_id, again.attempt), (2, 2));
    assert_eq!(report(&mut w, &again, 1, 2.5).await, d);
    complete(&mut w, &again).await;
    let pauses: i64 = sqlx::query_scalar(
        "select count(*) from sweep_decisions where kind = 'pause' and run_id = 2",
    )
    .fetch_one(&c.db.pool)
    .await
    .unwrap();
    assert_eq!(pauses, 1, "the rung was decided once");
    c.stop().await;
}

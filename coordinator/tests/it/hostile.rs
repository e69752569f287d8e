//! Hostile input against the in-process coordinator: oversized messages, uploads that never
//! end, overrun or stall, bad hyperparameters, unknown ids, someone else's lease, huge
//! sweeps and keys a client tries to choose. Each is refused with the right code, nothing is
//! stored, and the coordinator keeps answering another client (a `ListSweeps` issued while
//! the attack is in flight).

use std::time::Duration;

use poet_proto::v1::{self, upload_checkpoint_request::Part};
use sha2::{Digest, Sha256};
use tonic::Code;

use crate::helpers::{
    POEMS, Registered, TestCoordinator, lease_one, leased_run, register, seed_dataset, spawn, spec,
};

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn header(lease: &v1::Lease, epoch: i32, size: i64, sha256: String) -> v1::UploadCheckpointRequest {
    v1::UploadCheckpointRequest {
        part: Some(Part::Header(v1::CheckpointHeader {
            lease: Some(lease.clone()),
            epoch,
            size,
            sha256,
        })),
    }
}

fn data(d: Vec<u8>) -> v1::UploadCheckpointRequest {
    v1::UploadCheckpointRequest {
        part: Some(Part::Data(d)),
    }
}

fn epoch(n: i32) -> v1::Epoch {
    v1::Epoch {
        epoch: n,
        train_loss: 2.0,
        val_loss: 2.1,
        duration_s: 0.5,
        chars_per_sec: 1000.0,
        ..Default::default()
    }
}

/// Another client is served promptly while an attack is in flight.
async fn still_answers(c: &TestCoordinator) {
    let mut other = c.client();
    tokio::time::timeout(
        Duration::from_secs(3),
        other.list_sweeps(v1::ListSweepsRequest::default()),
    )
    .await
    .expect("ListSweeps answered within 3 s during the attack")
    .expect("ListSweeps ok");
}

async fn counts(c: &TestCoordinator) -> (i64, i64, i64, i64) {
    sqlx::query_as(
        "select (select count(*) from sweeps), (select count(*) from runs), (select count(*) from epochs),
                (select count(*) from checkpoints)",
    )
    .fetch_one(&c.db.pool)
    .await
    .unwrap()
}

fn files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// A coordinator with one leased run whose epoch 1 is reported; returns the lease and the
/// worker holding it.
async fn leased(c: &TestCoordinator) -> (v1::Lease, Registered) {
    let (_, mut w, wid, l) = leased_run(c, 2, 3).await;
    w.report_epoch(v1::ReportEpochRequest {
        lease: Some(l.clone()),
        epoch: Some(epoch(1)),
    })
    .await
    .unwrap();
    (l, wid)
}

#[tokio::test]
async fn oversized_messages_are_refused_and_others_are_served() {
    let c = spawn().await;
    let mut client = c.client();
    let huge = format!("dataset = \"tiny\"\n# {}\n", "x".repeat(5 << 20));
    let attack = tokio::spawn(async move {
        client
            .submit_sweep(v1::SubmitSweepRequest {
                spec: huge,
                ..Default::default()
            })
            .await
    });
    still_answers(&c).await;
    let err = attack.await.unwrap().unwrap_err();
    assert!(
        matches!(err.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{err:?}"
    );
    assert_eq!(counts(&c).await, (0, 0, 0, 0));

    // A 5 MiB chunk inside an upload stream is refused too, and leaves no blob.
    let (l, _) = leased(&c).await;
    let mut w = c.worker();
    let blob = vec![7u8; 5 << 20];
    let msgs = vec![header(&l, 1, blob.len() as i64, sha(&blob)), data(blob)];
    let err = w
        .upload_checkpoint(futures::stream::iter(msgs))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.code(),
            Code::OutOfRange | Code::ResourceExhausted | Code::InvalidArgument
        ),
        "{err:?}"
    );
    assert_eq!(counts(&c).await.3, 0);
    still_answers(&c).await;
    assert_eq!(files(c.artifacts.path()), Vec::<String>::new());
    c.stop().await;
}

#[tokio::test]
async fn endless_overrunning_and_stalled_uploads_store_nothing() {
    let c = spawn().await;
    let (l, _) = leased(&c).await;

    // Never ends: declares 1 KiB, then streams data without end. Refused at the overrun.
    let mut w = c.worker();
    let l2 = l.clone();
    let endless = futures::stream::iter(std::iter::once(header(&l2, 1, 1024, sha(&[0; 1024]))))
        .chain(futures::stream::repeat_with(|| data(vec![0u8; 64 << 10])));
    use futures::StreamExt;
    let err = tokio::time::timeout(Duration::from_secs(10), w.upload_checkpoint(endless))
        .await
        .expect("an endless upload is cut off promptly")
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("more bytes"), "{err:?}");

    // Stalls: header and half the bytes, then silence with the stream held open.
    let body = vec![3u8; 4096];
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(header(&l, 1, body.len() as i64, sha(&body)))
        .await
        .unwrap();
    tx.send(data(body[..2048].to_vec())).await.unwrap();
    let mut w2 = c.worker();
    let stalled = tokio::spawn(async move { w2.upload_checkpoint(tokio_stream_from(rx)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    still_answers(&c).await;
    // The client gives up (its connection goes away): the server aborts the blob.
    stalled.abort();
    drop(tx);
    // A stream that ends early is a truncated upload.
    let mut w3 = c.worker();
    let err = w3
        .upload_checkpoint(futures::stream::iter(vec![
            header(&l, 1, body.len() as i64, sha(&body)),
            data(body[..100].to_vec()),
        ]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("truncated"), "{err:?}");

    // Nothing stored: no row, and (once the aborted handlers have run) no blob or staging file.
    let mut left = files(c.artifacts.path());
    for _ in 0..50 {
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = files(c.artifacts.path());
    }
    assert_eq!(counts(&c).await.3, 0);
    assert!(left.is_empty(), "blobs left behind: {left:?}");
    c.stop().await;
}

/// A stream over an mpsc receiver (no tokio-stream dependency needed).
fn tokio_stream_from<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}

#[tokio::test]
async fn bad_hyperparameters_are_refused_and_nothing_is_stored() {
    let c = spawn().await;
    seed_dataset(&c.db.pool, "tiny", POEMS).await;
    let mut client = c.client();
    let cases: &[(&str, &str, &str)] = &[
        (
            "toml",
            "dataset = \"tiny\"\n[base]\nlearning_rate = nan\n",
            "learning_rate",
        ),
        (
            "toml",
            "dataset = \"tiny\"\n[base]\nlearning_rate = -0.01\n",
            "learning_rate",
        ),
        (
            "toml",
            "dataset = \"tiny\"\n[base]\ndropout = -0.5\n",
            "dropout",
        ),
        ("toml", "dataset = \"tiny\"\n[base]\nunits = -8\n", "units"),
        ("toml", "dataset = \"tiny\"\n[base]\nepochs = 0\n", "epochs"),
        (
            "toml",
            "dataset = \"tiny\"\n[base]\ngrad_clip = inf\n",
            "grad_clip",
        ),
        (
            "toml",
            "dataset = \"tiny\"\n[grid]\nlearning_rate = [0.01, nan]\n",
            "learning_rate",
        ),
        (
            "toml",
            "dataset = \"tiny\"\n[random]\nsamples = 2\nlearning_rate = { log_uniform = [-1.0, 0.1] }\n",
            "learning_rate",
        ),
        (
            "json",
            "{\"dataset\": \"tiny\", \"base\": {\"learning_rate\": -1}}",
            "learning_rate",
        ),
        (
            "yaml",
            "dataset: tiny\nbase:\n  learning_rate: .nan\n",
            "learning_rate",
        ),
        (
            "toml",
            "dataset = \"tiny\"\nmax_attempts = -1\n",
            "max_attempts",
        ),
    ];
    for (format, text, field) in cases {
        let err = client
            .submit_sweep(v1::SubmitSweepRequest {
                spec: text.to_string(),
                format: format.to_string(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{text}: {err:?}");
        assert!(
            err.message().contains(field),
            "{field} not named for {text}: {}",
            err.message()
        );
    }
    assert_eq!(counts(&c).await, (0, 0, 0, 0));
    c.stop().await;
}

#[tokio::test]
async fn huge_sweeps_are_refused_quickly() {
    let c = spawn().await;
    seed_dataset(&c.db.pool, "tiny", POEMS).await;
    let mut client = c.client();
    let list = |n: usize| {
        (1..=n)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let specs = [
        // 1001 runs: one over the limit.
        format!("dataset = \"tiny\"\n[grid]\nseed = [{}]\n", list(1001)),
        // 10^15 runs: the count overflows any expansion; it must be refused before expanding.
        format!("dataset = \"tiny\"\n[grid]\nseed = [{0}]\nunits = [{0}]\nepochs = [{0}]\nlayers = [{1}]\n", list(1000), list(1000)),
        // Random samples beyond the limit.
        "dataset = \"tiny\"\n[random]\nsamples = 1000000000000\nlearning_rate = { log_uniform = [0.0001, 0.1] }\n".to_string(),
    ];
    for s in specs {
        let mut cl = client.clone();
        let attack = tokio::spawn(async move {
            cl.submit_sweep(v1::SubmitSweepRequest {
                spec: s,
                ..Default::default()
            })
            .await
        });
        still_answers(&c).await;
        let err = tokio::time::timeout(Duration::from_secs(10), attack)
            .await
            .expect("refused within 10 s")
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(err.code(), Code::InvalidArgument | Code::ResourceExhausted),
            "{err:?}"
        );
    }
    assert_eq!(counts(&c).await, (0, 0, 0, 0));
    // A legal sweep still goes through afterwards.
    client
        .submit_sweep(v1::SubmitSweepRequest {
            spec: spec("tiny", 2, 1),
            ..Default::default()
        })
        .await
        .unwrap();
    c.stop().await;
}

#[tokio::test]
async fn unknown_ids_are_not_found_everywhere() {
    let c = spawn().await;
    let (l, wid) = leased(&c).await;
    let mut client = c.client();
    let mut w = c.worker();
    let ghost = v1::Lease {
        run_id: 987_654,
        lease_id: uuid_like(),
        attempt: 1,
    };
    let codes = vec![
        (
            "GetRun",
            client
                .get_run(v1::GetRunRequest { run_id: 987_654 })
                .await
                .unwrap_err()
                .code(),
        ),
        (
            "GetSweep",
            client
                .get_sweep(v1::GetSweepRequest { sweep_id: 987_654 })
                .await
                .unwrap_err()
                .code(),
        ),
        (
            "CancelRun",
            client
                .cancel_run(v1::CancelRunRequest {
                    run_id: 987_654,
                    ..Default::default()
                })
                .await
                .unwrap_err()
                .code(),
        ),
        (
            "CancelSweep",
            client
                .cancel_sweep(v1::CancelSweepRequest {
                    sweep_id: 987_654,
                    ..Default::default()
                })
                .await
                .unwrap_err()
                .code(),
        ),
        (
            "LeaseRun",
            w.lease_run(v1::LeaseRunRequest {
                worker_id: 987_654,
                ..Default::default()
            })
            .await
            .unwrap_err()
            .code(),
        ),
        (
            "Heartbeat",
            w.heartbeat(v1::HeartbeatRequest {
                worker_id: 987_654,
                ..Default::default()
            })
            .await
            .unwrap_err()
            .code(),
        ),
        (
            "ReportEpoch",
            w.report_epoch(v1::ReportEpochRequest {
                lease: Some(ghost.clone()),
                epoch: Some(epoch(1)),
            })
            .await
            .unwrap_err()
            .code(),
        ),
        (
            "CompleteRun",
            w.complete_run(v1::CompleteRunRequest {
                lease: Some(ghost.clone()),
            })
            .await
            .unwrap_err()
            .code(),
        ),
        (
            "FailRun",
            w.fail_run(v1::FailRunRequest {
                lease: Some(ghost.clone()),
                ..Default::default()
            })
            .await
            .unwrap_err()
            .code(),
        ),
        (
            "DownloadCheckpoint",
            w.download_checkpoint(v1::DownloadCheckpointRequest {
                checkpoint_id: 987_654,
            })
            .await
            .unwrap_err()
            .code(),
        ),
        (
            "DownloadDataset",
            w.download_dataset(v1::DownloadDatasetRequest {
                dataset_id: 987_654,
            })
            .await
            .unwrap_err()
            .code(),
        ),
    ];
    for (rpc, code) in codes {
        assert_eq!(code, Code::NotFound, "{rpc}");
    }
    // A malformed lease id is an invalid argument, not a lookup.
    let bad = v1::Lease {
        lease_id: "../../etc".into(),
        ..l.clone()
    };
    let err = w
        .report_epoch(v1::ReportEpochRequest {
            lease: Some(bad),
            epoch: Some(epoch(2)),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // The heartbeat of a known worker with a ghost lease is fenced.
    let err = w
        .heartbeat(v1::HeartbeatRequest {
            worker_id: wid.id,
            worker_secret: wid.secret(),
            lease: Some(ghost),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err.code(), Code::FailedPrecondition | Code::NotFound),
        "{err:?}"
    );
    assert_eq!(
        counts(&c).await.2,
        1,
        "only the one legitimate epoch is stored"
    );
    c.stop().await;
}

fn uuid_like() -> String {
    "6f1c1f4e-93a7-4c55-8a53-2f0d2d6f5b11".into()
}

#[tokio::test]
async fn another_workers_lease_is_fenced() {
    let c = spawn().await;
    let (la, _) = leased(&c).await;
    // Worker B leases the other run, then tries to write to A's run with its own lease id.
    let mut w = c.worker();
    let wb = register(&mut w, "other").await;
    let lb = lease_one(&mut w, wb).await;
    assert_ne!(la.run_id, lb.run_id);
    let stolen = v1::Lease {
        run_id: la.run_id,
        lease_id: lb.lease_id.clone(),
        attempt: lb.attempt,
    };
    let before = counts(&c).await;
    let e1 = w
        .report_epoch(v1::ReportEpochRequest {
            lease: Some(stolen.clone()),
            epoch: Some(epoch(2)),
        })
        .await
        .unwrap_err();
    let e2 = w
        .complete_run(v1::CompleteRunRequest {
            lease: Some(stolen.clone()),
        })
        .await
        .unwrap_err();
    let e3 = w
        .fail_run(v1::FailRunRequest {
            lease: Some(stolen.clone()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let blob = b"not yours".to_vec();
    let e4 = w
        .upload_checkpoint(futures::stream::iter(vec![
            header(&stolen, 1, blob.len() as i64, sha(&blob)),
            data(blob),
        ]))
        .await
        .unwrap_err();
    let e5 = w
        .heartbeat(v1::HeartbeatRequest {
            worker_id: wb.id,
            worker_secret: wb.secret(),
            lease: Some(stolen),
            ..Default::default()
        })
        .await
        .unwrap_err();
    for (rpc, e) in [
        ("ReportEpoch", e1),
        ("CompleteRun", e2),
        ("FailRun", e3),
        ("UploadCheckpoint", e4),
        ("Heartbeat", e5),
    ] {
        assert_eq!(e.code(), Code::FailedPrecondition, "{rpc}: {e:?}");
    }
    assert_eq!(counts(&c).await, before, "nothing stored");
    let state: String = sqlx::query_scalar("select state from runs where id = $1")
        .bind(la.run_id)
        .fetch_one(&c.db.pool)
        .await
        .unwrap();
    assert_eq!(state, "running", "A's run is untouched");
    assert!(files(c.artifacts.path()).is_empty());
    c.stop().await;
}

#[tokio::test]
async fn clients_cannot_choose_artifact_keys() {
    let c = spawn().await;
    let (l, _) = leased(&c).await;
    let mut w = c.worker();
    let body = b"checkpoint bytes".to_vec();
    // The only client-supplied text in a key is the sha256, which must be 64 hex digits.
    for evil in [
        "../../../../etc/passwd",
        "..%2f..%2fetc%2fpasswd",
        &format!("../{}", &sha(&body)[3..]),
        "/abs/path",
    ] {
        let err = w
            .upload_checkpoint(futures::stream::iter(vec![
                header(&l, 1, body.len() as i64, evil.to_string()),
                data(body.clone()),
            ]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{evil}");
    }
    assert!(files(c.artifacts.path()).is_empty());
    // A valid upload is stored under a key derived from run, epoch, attempt and digest.
    let ck = w
        .upload_checkpoint(futures::stream::iter(vec![
            header(&l, 1, body.len() as i64, sha(&body).to_uppercase()),
            data(body.clone()),
        ]))
        .await
        .unwrap()
        .into_inner()
        .checkpoint
        .unwrap();
    let key: String = sqlx::query_scalar("select key from checkpoints where id = $1")
        .bind(ck.id)
        .fetch_one(&c.db.pool)
        .await
        .unwrap();
    let want = format!(
        "runs/{}/epoch-00001-a{}-{}.ckpt",
        l.run_id,
        l.attempt,
        &sha(&body)[..16]
    );
    assert_eq!(key, want);
    assert_eq!(files(c.artifacts.path()), vec![want]);
    c.stop().await;
}

/// Regression: a client that disconnects after sending a whole checkpoint, while the
/// coordinator is committing it, must not leave a blob without its row. The commit is held
/// (a SHARE lock on `checkpoints` blocks the insert) until the client has gone away; the
/// coordinator used to drop the handler there, leaving an orphan blob.
#[tokio::test]
async fn a_client_gone_mid_commit_leaves_blob_and_row_together() {
    let c = spawn().await;
    let (l, _) = leased(&c).await;
    let mut blocker = c.db.pool.begin().await.unwrap();
    sqlx::query("lock table checkpoints in share mode")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let body = vec![9u8; 3000];
    let key = format!(
        "runs/{}/epoch-00001-a{}-{}.ckpt",
        l.run_id,
        l.attempt,
        &sha(&body)[..16]
    );
    let mut w = c.worker();
    let msgs = vec![
        header(&l, 1, body.len() as i64, sha(&body)),
        data(body.clone()),
    ];
    let upload =
        tokio::spawn(async move { w.upload_checkpoint(futures::stream::iter(msgs)).await });
    // The blob is durable once its file exists: the handler is now blocked in the commit.
    for _ in 0..100 {
        if files(c.artifacts.path()).contains(&key) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        files(c.artifacts.path()).contains(&key),
        "the blob was never stored"
    );
    upload.abort();
    let _ = upload.await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    blocker.commit().await.unwrap();
    // The commit completes without its client: row and blob agree.
    let mut rows = 0;
    for _ in 0..100 {
        rows = counts(&c).await.3;
        if rows == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        rows, 1,
        "the checkpoint row was never committed: its blob is an orphan"
    );
    assert_eq!(files(c.artifacts.path()), vec![key]);
    c.stop().await;
}

/// Every client-chosen string the coordinator stores is bounded (SECURITY.md, finding 6): a
/// cancel reason (copied into each run a sweep-wide cancel touches), names and labels, specs
/// and JSON. Over the limit is INVALID_ARGUMENT naming the field and the limit, and nothing
/// is stored; at the limit (counted in characters, not bytes) is accepted.
#[tokio::test]
async fn oversized_strings_are_refused_naming_the_field_and_limit() {
    let c = spawn().await;
    let (l, _) = leased(&c).await;
    let mut client = c.client();
    let mut w = c.worker();
    let sweep_id: i64 = sqlx::query_scalar("select sweep_id from runs where id = $1")
        .bind(l.run_id)
        .fetch_one(&c.db.pool)
        .await
        .unwrap();
    let workers = || async {
        let n: i64 = sqlx::query_scalar("select count(*) from workers")
            .fetch_one(&c.db.pool)
            .await
            .unwrap();
        n
    };
    let before = (counts(&c).await, workers().await);
    let long = |n: usize| "é".repeat(n);
    let mut refusals: Vec<(&str, &str, tonic::Status)> = vec![];

    // 4 MiB of reason would be copied into each of a sweep's runs.
    let attack = {
        let mut cl = client.clone();
        let reason = "x".repeat(3 << 20);
        tokio::spawn(async move {
            cl.cancel_sweep(v1::CancelSweepRequest { sweep_id, reason })
                .await
        })
    };
    still_answers(&c).await;
    refusals.push(("reason", "1000", attack.await.unwrap().unwrap_err()));
    refusals.push((
        "reason",
        "1000",
        client
            .cancel_run(v1::CancelRunRequest {
                run_id: l.run_id,
                reason: long(1001),
            })
            .await
            .unwrap_err(),
    ));
    for (name, spec_text) in [
        (long(201), spec("tiny", 1, 1)),
        (
            String::new(),
            format!("name = \"{}\"\n{}", long(201), spec("tiny", 1, 1)),
        ),
    ] {
        refusals.push((
            "name",
            "200",
            client
                .submit_sweep(v1::SubmitSweepRequest {
                    spec: spec_text,
                    name,
                    ..Default::default()
                })
                .await
                .unwrap_err(),
        ));
    }
    refusals.push((
        "spec",
        "262144",
        client
            .submit_sweep(v1::SubmitSweepRequest {
                spec: format!("{}# {}\n", spec("tiny", 1, 1), "x".repeat(256 << 10)),
                ..Default::default()
            })
            .await
            .unwrap_err(),
    ));
    refusals.push((
        "overrides_json",
        "65536",
        client
            .fork_run(v1::ForkRunRequest {
                run_id: l.run_id,
                overrides_json: format!("{{\"note\": \"{}\"}}", "x".repeat(64 << 10)),
                ..Default::default()
            })
            .await
            .unwrap_err(),
    ));
    refusals.push((
        "checkpoint",
        "200",
        client
            .generate(v1::GenerateRequest {
                run_id: l.run_id,
                checkpoint: long(201),
                ..Default::default()
            })
            .await
            .unwrap_err(),
    ));
    for field in ["host", "device", "gpu_name", "version"] {
        let mut reg = v1::RegisterRequest {
            host: "h".into(),
            device: "cpu".into(),
            ..Default::default()
        };
        let v = long(201);
        match field {
            "host" => reg.host = v,
            "device" => reg.device = v,
            "gpu_name" => reg.gpu_name = v,
            _ => reg.version = v,
        }
        refusals.push((field, "200", w.register(reg).await.unwrap_err()));
    }
    refusals.push((
        "epoch.metrics_json",
        "65536",
        w.report_epoch(v1::ReportEpochRequest {
            lease: Some(l.clone()),
            epoch: Some(v1::Epoch {
                metrics_json: format!("{{\"note\": \"{}\"}}", "x".repeat(64 << 10)),
                ..epoch(2)
            }),
        })
        .await
        .unwrap_err(),
    ));
    for (field, limit, e) in &refusals {
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e:?}");
        assert!(
            e.message().starts_with(&format!("{field}: "))
                && e.message().contains(&format!("limit of {limit}")),
            "{field}: {}",
            e.message()
        );
    }
    assert_eq!(
        (counts(&c).await, workers().await),
        before,
        "nothing stored"
    );
    let (state, error): (String, Option<String>) =
        sqlx::query_as("select state, error from runs where id = $1")
            .bind(l.run_id)
            .fetch_one(&c.db.pool)
            .await
            .unwrap();
    assert_eq!((state.as_str(), error), ("running", None));

    // At the limit, in characters (2000 bytes here), the reason is stored whole.
    let c2 = client
        .cancel_sweep(v1::CancelSweepRequest {
            sweep_id,
            reason: long(1000),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(c2.cancelled + c2.cancel_requested, 2);
    let errors: Vec<String> =
        sqlx::query_scalar("select error from runs where sweep_id = $1 order by id")
            .bind(sweep_id)
            .fetch_all(&c.db.pool)
            .await
            .unwrap();
    assert_eq!(errors, vec![long(1000), long(1000)]);
    c.stop().await;
}

/// An upload that sends its header and then holds the stream open; dropping it ends the
/// upload (the client goes away).
struct HeldUpload {
    _tx: tokio::sync::mpsc::Sender<v1::UploadCheckpointRequest>,
    task: tokio::task::JoinHandle<
        Result<tonic::Response<v1::UploadCheckpointResponse>, tonic::Status>,
    >,
}

impl HeldUpload {
    async fn start(c: &TestCoordinator, lease: &v1::Lease) -> HeldUpload {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(header(lease, 1, 4096, sha(&[0; 4096])))
            .await
            .unwrap();
        let mut w = c.worker();
        let task = tokio::spawn(async move { w.upload_checkpoint(tokio_stream_from(rx)).await });
        HeldUpload { _tx: tx, task }
    }
}

impl Drop for HeldUpload {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Uploads in flight are capped per lease and per worker (SECURITY.md, finding 17): one
/// lease, or one worker holding several, cannot tie up the coordinator with uploads that
/// never finish. Over the cap is RESOURCE_EXHAUSTED, nothing is stored, and a place comes
/// back when an upload ends.
#[tokio::test]
async fn concurrent_uploads_are_capped_per_lease_and_per_worker() {
    let c = spawn().await;
    // One worker holding the leases of three runs.
    let (_, mut w, wid, first) = leased_run(&c, 3, 2).await;
    let mut leases = vec![];
    for i in 0..3 {
        let l = match i {
            0 => first.clone(),
            _ => lease_one(&mut w, wid).await,
        };
        w.report_epoch(v1::ReportEpochRequest {
            lease: Some(l.clone()),
            epoch: Some(epoch(1)),
        })
        .await
        .unwrap();
        leases.push(l);
    }
    let body = b"checkpoint".to_vec();
    let upload = |l: &v1::Lease| {
        let mut w = c.worker();
        let msgs = vec![
            header(l, 1, body.len() as i64, sha(&body)),
            data(body.clone()),
        ];
        async move { w.upload_checkpoint(futures::stream::iter(msgs)).await }
    };
    // Headers read, places taken: the handlers then wait for data.
    let settle = || tokio::time::sleep(Duration::from_millis(500));

    let a1 = HeldUpload::start(&c, &leases[0]).await;
    let a2 = HeldUpload::start(&c, &leases[0]).await;
    settle().await;
    let e = upload(&leases[0]).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("limit per lease is 2"), "{e:?}");

    let b = [
        HeldUpload::start(&c, &leases[1]).await,
        HeldUpload::start(&c, &leases[1]).await,
    ];
    settle().await;
    let e = upload(&leases[2]).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("limit per worker is 4"), "{e:?}");
    still_answers(&c).await;
    assert_eq!(counts(&c).await.3, 0, "nothing stored");

    // One held upload goes away: its place comes back and a whole upload is stored.
    drop(a1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match upload(&leases[0]).await {
            Ok(_) => break,
            Err(e) if e.code() == Code::ResourceExhausted => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the place never came back"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(counts(&c).await.3, 1);
    drop((a2, b));
    c.stop().await;
}

/// One worker cannot speak for another (SECURITY.md, finding 9): every call that names a
/// worker id needs the secret `Register` returned with it (ids are sequential), and a
/// generation job's completion needs its current lease id, as a run's writes do.
#[tokio::test]
async fn workers_speak_only_for_themselves_and_generation_leases_are_fenced() {
    let c = spawn().await;
    let pool = &c.db.pool;
    let (l, a) = leased(&c).await;
    let mut w = c.worker();
    let b = register(&mut w, "intruder").await;
    assert_ne!(a.secret, b.secret);
    let expires = || async {
        let t: chrono::DateTime<chrono::Utc> =
            sqlx::query_scalar("select lease_expires_at from runs where id = $1")
                .bind(l.run_id)
                .fetch_one(pool)
                .await
                .unwrap();
        t
    };
    let before = expires().await;

    // B names A's id with no secret, with its own, with garbage: refused everywhere.
    for secret in [String::new(), b.secret(), "../../etc".into()] {
        let refusals = [
            (
                "Heartbeat",
                w.heartbeat(v1::HeartbeatRequest {
                    worker_id: a.id,
                    worker_secret: secret.clone(),
                    lease: Some(l.clone()),
                    ..Default::default()
                })
                .await
                .unwrap_err(),
            ),
            (
                "LeaseRun",
                w.lease_run(v1::LeaseRunRequest {
                    worker_id: a.id,
                    worker_secret: secret.clone(),
                    wait_ms: 0,
                })
                .await
                .unwrap_err(),
            ),
            (
                "LeaseGeneration",
                w.lease_generation(v1::LeaseGenerationRequest {
                    worker_id: a.id,
                    worker_secret: secret.clone(),
                    wait_ms: 0,
                })
                .await
                .unwrap_err(),
            ),
            (
                "CompleteGeneration",
                w.complete_generation(v1::CompleteGenerationRequest {
                    worker_id: a.id,
                    worker_secret: secret.clone(),
                    generation_id: 1,
                    lease_id: uuid_like(),
                    ..Default::default()
                })
                .await
                .unwrap_err(),
            ),
            (
                "Register",
                w.register(v1::RegisterRequest {
                    host: "taken-over".into(),
                    device: "cpu".into(),
                    worker_id: a.id,
                    worker_secret: secret.clone(),
                    ..Default::default()
                })
                .await
                .unwrap_err(),
            ),
        ];
        for (rpc, e) in refusals {
            assert_eq!(
                e.code(),
                Code::PermissionDenied,
                "{rpc} with {secret:?}: {e:?}"
            );
            assert!(e.message().contains("worker_secret"), "{rpc}: {e:?}");
        }
    }
    // Nothing was done in A's name: its lease was not extended, its row not rewritten.
    assert_eq!(expires().await, before);
    let host: String = sqlx::query_scalar("select host from workers where id = $1")
        .bind(a.id)
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(host, "h");

    // A itself may: its heartbeat extends the lease, and re-registering keeps id and secret.
    w.heartbeat(v1::HeartbeatRequest {
        worker_id: a.id,
        worker_secret: a.secret(),
        lease: Some(l.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(expires().await > before);
    let again = w
        .register(v1::RegisterRequest {
            host: "h2".into(),
            device: "cpu".into(),
            worker_id: a.id,
            worker_secret: a.secret(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.worker_id, again.worker_secret), (a.id, a.secret()));

    // A generation job, leased by A, expired, and leased by A again: the first lease id is
    // stale, and B cannot complete A's job even with the current one.
    let body = b"checkpoint".to_vec();
    w.upload_checkpoint(futures::stream::iter(vec![
        header(&l, 1, body.len() as i64, sha(&body)),
        data(body),
    ]))
    .await
    .unwrap();
    let g = c
        .client()
        .generate(v1::GenerateRequest {
            run_id: l.run_id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .generation
        .unwrap();
    let lease_generation = |who: Registered| {
        let mut w = c.worker();
        async move {
            w.lease_generation(v1::LeaseGenerationRequest {
                worker_id: who.id,
                worker_secret: who.secret(),
                wait_ms: 2000,
            })
            .await
            .unwrap()
            .into_inner()
            .job
            .expect("a queued generation")
        }
    };
    let first = lease_generation(a).await;
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    assert_eq!(
        poet_coordinator::generation::reap(pool, later)
            .await
            .unwrap(),
        1
    );
    let second = lease_generation(a).await;
    assert_eq!(first.generation_id, second.generation_id);
    assert_ne!(first.lease_id, second.lease_id);
    let complete = |who: Registered, lease_id: &str| {
        let mut w = c.worker();
        let req = v1::CompleteGenerationRequest {
            worker_id: who.id,
            worker_secret: who.secret(),
            generation_id: g.id,
            lease_id: lease_id.to_string(),
            streams: vec![v1::SampledStream {
                temperature: 0.5,
                text: "a lamp\nin the rain\n++++\n".into(),
            }],
            ..Default::default()
        };
        async move { w.complete_generation(req).await }
    };
    for (who, lease_id, code) in [
        (a, first.lease_id.as_str(), Code::FailedPrecondition),
        (b, second.lease_id.as_str(), Code::FailedPrecondition),
        (a, "not-a-lease", Code::InvalidArgument),
    ] {
        let e = complete(who, lease_id).await.unwrap_err();
        assert_eq!(e.code(), code, "{lease_id}: {e:?}");
    }
    let (state, poems): (String, i64) = sqlx::query_as(
        "select state, (select count(*) from generated_poems where generation_id = $1) from generations where id = $1",
    )
    .bind(g.id)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!((state.as_str(), poems), ("running", 0));
    complete(a, &second.lease_id).await.unwrap();
    let state: String = sqlx::query_scalar("select state from generations where id = $1")
        .bind(g.id)
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(state, "done");
    // A retry of that completion finds the lease over.
    let e = complete(a, &second.lease_id).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    c.stop().await;
}

/// Dataset downloads stream from a cursor and only so many run at once (SECURITY.md,
/// finding 7): a client that opens a download and stops reading holds one place, not the
/// coordinator's memory; a download beyond `--max-dataset-downloads` is RESOURCE_EXHAUSTED;
/// the place comes back when the client goes away; a download read to the end is the whole
/// corpus in chunks of at most 1 MiB, matching its header.
#[tokio::test]
async fn dataset_downloads_are_bounded_and_streamed() {
    let c = crate::helpers::spawn_with(
        None,
        poet_coordinator::CoordinatorConfig {
            max_dataset_downloads: 1,
            ..crate::helpers::fast_config()
        },
    )
    .await;
    // 24 MB: more than the HTTP/2 windows and the buffers between a reader that stopped and
    // the cursor, so that download stays in flight.
    let poems: Vec<String> = (0..800)
        .map(|i| {
            format!(
                "poem {i}\n{}",
                "the rain on the roof of the mill\n".repeat(900)
            )
        })
        .collect();
    let refs: Vec<&str> = poems.iter().map(String::as_str).collect();
    let id = seed_dataset(&c.db.pool, "big", &refs).await;
    let ask = || {
        let mut w = c.worker();
        async move {
            w.download_dataset(v1::DownloadDatasetRequest { dataset_id: id })
                .await
        }
    };

    let mut stalled = ask().await.unwrap().into_inner();
    let first = stalled.message().await.unwrap().unwrap();
    assert!(matches!(
        first.part,
        Some(v1::dataset_chunk::Part::Header(_))
    ));
    let e = ask().await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("--max-dataset-downloads"), "{e:?}");
    still_answers(&c).await;

    drop(stalled);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match ask().await {
            Ok(s) => break s.into_inner(),
            Err(e) if e.code() == Code::ResourceExhausted => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the place never came back"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    };
    let (mut header, mut train, mut val, mut chunks) = (None, vec![], vec![], 0);
    while let Some(m) = stream.message().await.unwrap() {
        match m.part.unwrap() {
            v1::dataset_chunk::Part::Header(h) => header = Some(h),
            v1::dataset_chunk::Part::Train(b) => {
                assert!(b.len() <= 1 << 20);
                chunks += 1;
                train.extend(b);
            }
            v1::dataset_chunk::Part::Validation(b) => {
                assert!(b.len() <= 1 << 20);
                val.extend(b);
            }
        }
    }
    let h = header.unwrap();
    assert_eq!(
        (h.train_bytes, h.validation_bytes),
        (train.len() as i64, val.len() as i64)
    );
    assert_eq!(sha(&[train.as_slice(), &val].concat()), h.sha256);
    assert!(chunks > 10, "{chunks} training chunks");
    let whole = poet_coordinator::datasets::corpus(&c.db.pool, id)
        .await
        .unwrap();
    assert!(train == whole.train.as_bytes() && val == whole.validation.as_bytes());
    c.stop().await;
}

/// A run with a checkpoint (epoch 1) and its worker: what a generation needs.
async fn checkpointed(c: &TestCoordinator) -> (v1::Lease, Registered) {
    let (l, a) = leased(c).await;
    let body = b"checkpoint".to_vec();
    c.worker()
        .upload_checkpoint(futures::stream::iter(vec![
            header(&l, 1, body.len() as i64, sha(&body)),
            data(body),
        ]))
        .await
        .unwrap();
    (l, a)
}

/// Leases the next generation job to `who` (waiting up to 2 s for one).
async fn lease_generation(c: &TestCoordinator, who: Registered) -> v1::GenerationJob {
    c.worker()
        .lease_generation(v1::LeaseGenerationRequest {
            worker_id: who.id,
            worker_secret: who.secret(),
            wait_ms: 2000,
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .expect("a queued generation")
}

/// Generations are bounded (SECURITY.md, finding 8): one request samples at most 262144
/// characters in all (so the worker's answer fits its 4 MiB message; 16 temperatures x 256
/// poems x 100000 chars used to be queued, fail to come back and be retried on the GPU), a
/// worker stores no more than the job asked for, and at most `--max-queued-generations` are
/// queued or running at once (RESOURCE_EXHAUSTED beyond).
#[tokio::test]
async fn generation_requests_are_bounded_in_size_and_number() {
    let c = crate::helpers::spawn_with(
        None,
        poet_coordinator::CoordinatorConfig {
            max_queued_generations: 3,
            ..crate::helpers::fast_config()
        },
    )
    .await;
    let (l, a) = checkpointed(&c).await;
    let mut client = c.client();
    let ask = |temperatures: usize, poems: i32, chars: i32| v1::GenerateRequest {
        run_id: l.run_id,
        temperatures: vec![0.5; temperatures],
        poems,
        chars,
        ..Default::default()
    };
    let queued = || async {
        let n: i64 = sqlx::query_scalar("select count(*) from generations")
            .fetch_one(&c.db.pool)
            .await
            .unwrap();
        n
    };

    let small = client.generate(ask(1, 1, 10)).await.unwrap();
    for (t, p, n) in [(16, 256, 100_000), (4, 64, 1025)] {
        let e = client.generate(ask(t, p, n)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(
            e.message().starts_with("chars: ") && e.message().contains("limit of 262144"),
            "{e:?}"
        );
    }
    client.generate(ask(4, 64, 1024)).await.unwrap();
    client.generate(ask(1, 1, 0)).await.unwrap();
    let e = client.generate(ask(1, 1, 0)).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("--max-queued-generations"), "{e:?}");
    assert_eq!(queued().await, 3);

    // The worker may not store more than was asked: 1 stream of 10 characters.
    let job = lease_generation(&c, a).await;
    let small = small.into_inner().generation.unwrap();
    assert_eq!(job.generation_id, small.id);
    let complete = |texts: &[&str]| {
        let mut w = c.worker();
        let req = v1::CompleteGenerationRequest {
            worker_id: a.id,
            worker_secret: a.secret(),
            generation_id: job.generation_id,
            lease_id: job.lease_id.clone(),
            streams: texts
                .iter()
                .map(|t| v1::SampledStream {
                    temperature: 0.5,
                    text: t.to_string(),
                })
                .collect(),
            ..Default::default()
        };
        async move { w.complete_generation(req).await }
    };
    for texts in [&["eleven char"][..], &["a", "b"]] {
        let e = complete(texts).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{texts:?}: {e:?}");
        assert!(e.message().starts_with("streams: "), "{e:?}");
    }
    complete(&["ten chars!"]).await.unwrap();
    // One finished: there is room again.
    client.generate(ask(1, 1, 0)).await.unwrap();
    assert_eq!(queued().await, 4);
    c.stop().await;
}

/// A client waiting on a generation is woken by the NOTIFY of its completion, not by polling
/// (SECURITY.md, finding 8: every waiting client used to read the database every 150 ms).
/// While the client waits, `generated_poems` (which every read of a generation touches) is
/// locked: a polling waiter would queue behind the lock within 150 ms; this one must not
/// read at all, and must answer as soon as the worker completes the job.
#[tokio::test]
async fn waiting_clients_are_woken_by_notify_not_by_polling() {
    let c = spawn().await;
    let pool = &c.db.pool;
    let (l, a) = checkpointed(&c).await;
    let mut client = c.client();
    let g = client
        .generate(v1::GenerateRequest {
            run_id: l.run_id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .generation
        .unwrap();
    let readers_waiting = || async {
        let n: i64 = sqlx::query_scalar(
            "select count(*) from pg_locks l join pg_database d on d.oid = l.database
             where d.datname = current_database() and not l.granted
               and l.relation = 'generated_poems'::regclass",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        n
    };
    let lock = || async {
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("lock table generated_poems in access exclusive mode")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx
    };

    // The coordinator's NOTIFY listener connects in the background and, once its LISTEN has
    // returned, wakes every waiter once (anything may have finished while it was away): wait
    // for that, so that one wake-up is not taken for polling (it was, twice, on a loaded
    // machine: once before this wait existed, once when it only waited for the LISTEN to be
    // sent). The wake-up follows the LISTEN's answer in the same task, without another await;
    // the settle below covers that task's scheduling.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let listening: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity
             where datname = current_database() and query ilike 'listen%' and state = 'idle'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if listening > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the coordinator never listened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The waiter's first read queues behind the lock: that is how the test knows it began.
    let locked = lock().await;
    let waiter = tokio::spawn(async move {
        client
            .get_generation(v1::GetGenerationRequest {
                generation_id: g.id,
                wait_seconds: 20,
            })
            .await
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while readers_waiting().await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the waiter never read"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Its first read finishes (the generation is queued), then it waits. The table is locked
    // again at once (behind that read) and held: no further read may arrive.
    locked.commit().await.unwrap();
    let locked = lock().await;
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(readers_waiting().await, 0, "the waiter polled the database");
    }
    locked.commit().await.unwrap();
    assert!(!waiter.is_finished());

    // The worker completes the job: the waiter answers at once, not at a later poll.
    let job = lease_generation(&c, a).await;
    let done_at = tokio::time::Instant::now();
    c.worker()
        .complete_generation(v1::CompleteGenerationRequest {
            worker_id: a.id,
            worker_secret: a.secret(),
            generation_id: job.generation_id,
            lease_id: job.lease_id,
            streams: vec![v1::SampledStream {
                temperature: 0.5,
                text: "a lamp\nin the rain\n++++\n".into(),
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    let got = waiter
        .await
        .unwrap()
        .unwrap()
        .into_inner()
        .generation
        .unwrap();
    assert_eq!(got.state, "done");
    assert!(
        done_at.elapsed() < Duration::from_secs(2),
        "woken {:?} after the completion",
        done_at.elapsed()
    );
    c.stop().await;
}

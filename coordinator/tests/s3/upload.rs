//! Checkpoints through a real coordinator whose artifact store is S3.

use std::time::Duration;

use futures::StreamExt;
use poet_coordinator::CoordinatorConfig;
use poet_coordinator::artifacts::Artifacts;
use poet_coordinator::testing::{TestCoordinator, Worker, fast_config};
use poet_proto::v1::{self, upload_checkpoint_request::Part};
use sha2::{Digest, Sha256};

use crate::helpers::leased_run;
use crate::moto::{bucket, run_keys};
use crate::store::noise;

/// A coordinator storing artifacts at `spec`, with `keep` checkpoints kept per run.
pub async fn coordinator(spec: &str, keep: u32) -> TestCoordinator {
    let cfg = CoordinatorConfig {
        artifacts: Some(spec.to_string()),
        keep_last_checkpoints: keep,
        ..fast_config()
    };
    TestCoordinator::start(cfg, None).await
}

fn header(lease: &v1::Lease, epoch: i32, blob: &[u8]) -> v1::UploadCheckpointRequest {
    v1::UploadCheckpointRequest {
        part: Some(Part::Header(v1::CheckpointHeader {
            lease: Some(lease.clone()),
            epoch,
            size: blob.len() as i64,
            sha256: hex::encode(Sha256::digest(blob)),
        })),
    }
}

/// The upload messages a worker sends: the header, then 64 KiB chunks.
fn messages(lease: &v1::Lease, epoch: i32, blob: &[u8]) -> Vec<v1::UploadCheckpointRequest> {
    std::iter::once(header(lease, epoch, blob))
        .chain(blob.chunks(64 << 10).map(|c| v1::UploadCheckpointRequest {
            part: Some(Part::Data(c.to_vec())),
        }))
        .collect()
}

/// Reports epoch `n` of the lease's run (a checkpoint must follow its epoch's report), each
/// better than the last: retention keeps the best checkpoint besides the last ones, so the
/// newest is then the only one kept with `keep = 1`.
pub async fn report(w: &mut Worker, lease: &v1::Lease, n: i32) {
    w.report_epoch(v1::ReportEpochRequest {
        lease: Some(lease.clone()),
        epoch: Some(v1::Epoch {
            epoch: n,
            train_loss: 2.0,
            val_loss: 3.0 - 0.1 * f64::from(n),
            duration_s: 0.5,
            chars_per_sec: 1000.0,
            ..Default::default()
        }),
    })
    .await
    .expect("report_epoch");
}

/// Uploads `blob` as the checkpoint of epoch `epoch`.
pub async fn upload(
    w: &mut Worker,
    lease: &v1::Lease,
    epoch: i32,
    blob: &[u8],
) -> Result<v1::Checkpoint, tonic::Status> {
    let r = w
        .upload_checkpoint(futures::stream::iter(messages(lease, epoch, blob)))
        .await?;
    Ok(r.into_inner().checkpoint.expect("the stored checkpoint"))
}

/// (key, live) of every checkpoint row, by epoch.
pub async fn rows(c: &TestCoordinator) -> Vec<(String, bool)> {
    sqlx::query_as("select key, live from checkpoints order by epoch, id")
        .fetch_all(&c.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_multipart_checkpoint_goes_to_s3_and_a_resuming_worker_reads_it_back_exactly() {
    let spec = bucket("poet").await;
    let c = coordinator(&spec, 2).await;
    let store = Artifacts::open(&spec).unwrap();
    let (_, mut w, wid, lease) = leased_run(&c, 1, 3).await;
    report(&mut w, &lease, 1).await;
    // Over object_store's 5 MiB part size: the coordinator's write is a multipart upload.
    let blob = noise((11 << 20) + 333, 3);
    let ckpt = upload(&mut w, &lease, 1, &blob).await.unwrap();
    assert_eq!(ckpt.size, blob.len() as i64);
    let (key, live) = rows(&c).await.remove(0);
    assert!(live);
    assert_eq!(run_keys(&store).await, std::slice::from_ref(&key));
    let etag = store.object_meta(&key).await.unwrap().unwrap().e_tag;
    assert!(
        etag.as_deref()
            .unwrap_or("")
            .trim_matches('"')
            .ends_with("-3"),
        "a 3-part upload, ETag {etag:?}"
    );

    // The attempt fails; the next lease resumes from that checkpoint and downloads it, as a
    // worker does, from S3 through the coordinator.
    w.fail_run(v1::FailRunRequest {
        lease: Some(lease.clone()),
        reason: "test: resume from the checkpoint".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let again = crate::helpers::lease_run(&mut w, wid, 1000)
        .await
        .expect("the run requeued");
    assert_eq!(again.lease.as_ref().unwrap().run_id, lease.run_id);
    let from = again
        .resume_from
        .expect("resumes from the stored checkpoint");
    assert_eq!((from.id, from.epoch), (ckpt.id, 1));
    let mut chunks = w
        .download_checkpoint(v1::DownloadCheckpointRequest {
            checkpoint_id: from.id,
        })
        .await
        .unwrap()
        .into_inner();
    let mut back = Vec::new();
    while let Some(chunk) = chunks.next().await {
        back.extend_from_slice(&chunk.unwrap().data);
    }
    assert!(
        back == blob,
        "downloaded {} bytes, not the uploaded ones",
        back.len()
    );
    c.stop().await;
}

#[tokio::test]
async fn retention_deletes_the_dropped_checkpoints_blob_from_s3() {
    let spec = bucket("").await;
    let c = coordinator(&spec, 1).await;
    let store = Artifacts::open(&spec).unwrap();
    let (_, mut w, _, lease) = leased_run(&c, 1, 3).await;
    for epoch in 1..=3 {
        report(&mut w, &lease, epoch).await;
        upload(&mut w, &lease, epoch, &noise(5000, epoch as u64))
            .await
            .unwrap();
    }
    let rows = rows(&c).await;
    assert_eq!(
        rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        [false, false, true]
    );
    // Only the kept checkpoint's blob is left in the bucket.
    assert_eq!(run_keys(&store).await, [rows[2].0.clone()]);
    c.stop().await;
}

/// A coordinator in a runtime of its own, so the test can kill it the way SIGKILL would:
/// every task (the upload's, its store task) dropped where it stands, sockets closed.
fn doomed(cfg: CoordinatorConfig) -> (String, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        poet_coordinator::run(cfg, listener, std::future::pending()).await
    });
    (url, rt)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_killed_mid_upload_leaves_no_row_and_the_retry_succeeds() {
    let spec = bucket("restart").await;
    let c = coordinator(&spec, 2).await;
    let store = Artifacts::open(&spec).unwrap();
    let (_, mut w, _, lease) = leased_run(&c, 1, 2).await;
    report(&mut w, &lease, 1).await;
    let blob = noise(12 << 20, 4);

    // A second coordinator on the same database and bucket receives the upload.
    let cfg = CoordinatorConfig {
        database_url: Some(c.db.url.clone()),
        artifacts: Some(spec.clone()),
        ..fast_config()
    };
    let (url, rt) = doomed(cfg);
    let channel = tonic::transport::Channel::from_shared(url.clone())
        .unwrap()
        .connect_lazy();
    let mut dw = poet_proto::client::Connect::new(url, None)
        .worker(channel)
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let sending = tokio::spawn(async move {
        let stream =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
        dw.upload_checkpoint(stream).await
    });
    let msgs = messages(&lease, 1, &blob);
    let half = msgs.len() / 2;
    let mut msgs = msgs.into_iter();
    // The doomed coordinator may still be starting: the first send waits for it.
    for m in msgs.by_ref().take(half) {
        tokio::time::timeout(Duration::from_secs(60), tx.send(m))
            .await
            .expect("the doomed coordinator reads the upload")
            .unwrap();
    }
    // Past a 5 MiB part: the coordinator's multipart upload to S3 has started.
    tokio::time::sleep(Duration::from_millis(300)).await;
    rt.shutdown_background();
    drop(msgs);
    drop(tx);
    let cut = sending.await.unwrap();
    assert!(cut.is_err(), "an upload to a killed coordinator fails");

    // The half-written upload left no row and no visible blob.
    assert!(rows(&c).await.is_empty());
    assert!(run_keys(&store).await.is_empty());

    // The worker retries on the other coordinator (as after a restart): stored, exactly.
    let ckpt = upload(&mut w, &lease, 1, &blob).await.unwrap();
    let rows = rows(&c).await;
    assert_eq!(rows.len(), 1);
    assert!(rows[0].1);
    assert_eq!(run_keys(&store).await, [rows[0].0.clone()]);
    let stored = store.get(&rows[0].0).await.unwrap().unwrap();
    assert!(stored == blob);
    assert_eq!(ckpt.size, blob.len() as i64);
    c.stop().await;
}

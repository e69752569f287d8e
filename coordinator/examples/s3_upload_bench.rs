//! Checkpoint uploads to S3 (moto), streamed through the coordinator vs direct: the
//! coordinator's CPU time and the wall time per checkpoint, at the reference model's
//! checkpoint size and at a small one. See BENCHMARKS.md, "Checkpoint uploads to S3".
//!
//! ```sh
//! # moto from ./poet.sh test's venv (or any moto_server binary)
//! POET_MOTO_SERVER=~/.cache/poet/moto-5.2.5/bin/moto_server \
//!   cargo run --release --locked -p poet-coordinator --features s3 --example s3_upload_bench
//! ```
//!
//! *Streamed* is what runs today: `UploadCheckpoint` over gRPC, the coordinator hashes the
//! bytes and writes them to S3 as a multipart upload, then commits the row. *Direct* is the
//! design MLflow and Determined use, prototyped with the same parts: the coordinator presigns a
//! PUT URL, the client PUTs the bytes to S3 itself, then the coordinator checks the object
//! (HEAD) and commits the row (`Queue::commit_checkpoint`, retention deletes included). The
//! coordinator runs on a runtime of its own whose threads' CPU time (`/proc/self/task/*/
//! schedstat`) is its cost; the client, moto and Postgres are outside it.

#[allow(dead_code)]
#[path = "../tests/s3/moto.rs"]
mod moto;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use object_store::signer::Signer;
use poet_coordinator::CoordinatorConfig;
use poet_coordinator::queue::{LeaseRef, Queue};
use poet_coordinator::testing::{TestCoordinator, fast_config, lease_run, register};
use poet_proto::v1::{self, upload_checkpoint_request::Part};
use sha2::{Digest, Sha256};

/// The reference model (V = 97 one-hot, 3 × LSTM(300), dense): 1 952 797 f32 parameters,
/// stored three times (weights, Adam m and v) = 23 433 564 bytes, plus a few KB of header.
const REFERENCE: usize = 23_433_564 + 8 * 1024;
/// A test-sized model's checkpoint.
const SMALL: usize = 64 * 1024;

/// Nanoseconds on CPU of the threads in `tids` so far.
fn cpu_ns(tids: &Mutex<Vec<String>>) -> u64 {
    tids.lock()
        .unwrap()
        .iter()
        .filter_map(|t| std::fs::read_to_string(format!("/proc/self/task/{t}/schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn upload_msgs(
    lease: &v1::Lease,
    epoch: i32,
    blob: &[u8],
    sha: &str,
) -> Vec<v1::UploadCheckpointRequest> {
    std::iter::once(v1::UploadCheckpointRequest {
        part: Some(Part::Header(v1::CheckpointHeader {
            lease: Some(lease.clone()),
            epoch,
            size: blob.len() as i64,
            sha256: sha.to_string(),
        })),
    })
    .chain(blob.chunks(1 << 20).map(|c| v1::UploadCheckpointRequest {
        part: Some(Part::Data(c.to_vec())),
    }))
    .collect()
}

fn main() -> anyhow::Result<()> {
    // First, before any runtime: it sets the AWS_* variables for moto.
    moto::server();
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let spec = client_rt.block_on(moto::bucket("bench"));
    let bucket = spec
        .trim_start_matches("s3://")
        .trim_end_matches("/bench")
        .to_string();

    // The coordinator's runtime: every thread it starts is recorded, to read its CPU time.
    let tids = Arc::new(Mutex::new(Vec::<String>::new()));
    let t2 = tids.clone();
    let coord_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            if let Ok(p) = std::fs::read_link("/proc/thread-self")
                && let Some(tid) = p.file_name()
            {
                t2.lock().unwrap().push(tid.to_string_lossy().into_owned());
            }
        })
        .build()?;
    let cfg = CoordinatorConfig {
        artifacts: Some(spec.clone()),
        keep_last_checkpoints: 2,
        ..fast_config()
    };
    let c = coord_rt.block_on(TestCoordinator::start(cfg, None));
    let pool = c.db.pool.clone();
    let (iters_big, iters_small) = (4usize, 20usize);
    let epochs = 2 * (iters_big + iters_small);
    let (mut w, lease) = client_rt.block_on(async {
        poet_sql::testing::seed_dataset(&pool, "tiny", &["a poem\nof two lines"]).await?;
        c.client()
            .submit_sweep(v1::SubmitSweepRequest {
                spec: format!(
                    "dataset = \"tiny\"\n[base]\nlayers = 1\nunits = 8\nseq_len = 16\nepochs = {epochs}\n"
                ),
                ..Default::default()
            })
            .await?;
        let mut w = c.worker();
        let id = register(&mut w, "bench").await;
        let lease = lease_run(&mut w, id, 1000).await.expect("a run").lease.expect("lease");
        for e in 1..=epochs as i32 {
            w.report_epoch(v1::ReportEpochRequest {
                lease: Some(lease.clone()),
                epoch: Some(v1::Epoch { epoch: e, train_loss: 2.0, val_loss: 2.0, ..Default::default() }),
            })
            .await?;
        }
        anyhow::Ok((w, lease))
    })?;

    // The direct path's coordinator side, on the coordinator's runtime.
    let s3 = Arc::new(
        object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(&bucket)
            .build()?,
    );
    let queue = Queue::new(pool.clone(), Duration::from_secs(30));
    let lref = LeaseRef {
        run_id: lease.run_id,
        lease_id: lease.lease_id.parse()?,
    };
    let http = reqwest::Client::new();

    println!("| checkpoint | path | coordinator CPU ms / checkpoint | wall ms / checkpoint |");
    println!("|---|---|---|---|");
    let mut epoch = 0i32;
    for (label, size, iters) in [
        ("reference 3×300 + Adam", REFERENCE, iters_big),
        ("small (64 KiB)", SMALL, iters_small),
    ] {
        let blob: Vec<u8> = (0..size)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let sha = hex::encode(Sha256::digest(&blob));
        // Streamed through the coordinator.
        let (cpu0, t0) = (cpu_ns(&tids), Instant::now());
        for _ in 0..iters {
            epoch += 1;
            let msgs = upload_msgs(&lease, epoch, &blob, &sha);
            client_rt.block_on(w.upload_checkpoint(futures::stream::iter(msgs)))?;
        }
        let (cpu, wall) = (cpu_ns(&tids) - cpu0, t0.elapsed());
        println!(
            "| {label}: {size} B | streamed | {:.1} | {:.1} |",
            cpu as f64 / 1e6 / iters as f64,
            wall.as_secs_f64() * 1e3 / iters as f64
        );
        // Direct: presign, the client's PUT, HEAD + commit.
        let (cpu0, t0) = (cpu_ns(&tids), Instant::now());
        for _ in 0..iters {
            epoch += 1;
            let key = poet_coordinator::artifacts::Artifacts::checkpoint_key(
                lease.run_id,
                epoch,
                1,
                &sha,
            );
            let path = object_store::path::Path::from(format!("bench/{key}"));
            let (s, p) = (s3.clone(), path.clone());
            let url = client_rt.block_on(coord_rt.spawn(async move {
                s.signed_url(reqwest::Method::PUT, &p, Duration::from_secs(900))
                    .await
            }))??;
            let r = client_rt.block_on(http.put(url).body(blob.clone()).send())?;
            anyhow::ensure!(r.status().is_success(), "PUT: {}", r.status());
            let (s, q, sha2, size) = (s3.clone(), queue.clone(), sha.clone(), blob.len() as i64);
            client_rt.block_on(coord_rt.spawn(async move {
                let meta = s.head(&path).await?;
                anyhow::ensure!(meta.size as i64 == size, "size");
                let (_, drop) = q
                    .commit_checkpoint(lref, epoch, &key, size, &sha2, 2, chrono::Utc::now())
                    .await?;
                for k in drop {
                    s.delete(&object_store::path::Path::from(format!("bench/{k}")))
                        .await?;
                }
                anyhow::Ok(())
            }))??;
        }
        let (cpu, wall) = (cpu_ns(&tids) - cpu0, t0.elapsed());
        println!(
            "| {label}: {size} B | direct (presigned PUT) | {:.1} | {:.1} |",
            cpu as f64 / 1e6 / iters as f64,
            wall.as_secs_f64() * 1e3 / iters as f64
        );
    }
    Ok(())
}

//! The lease loop: takes one run at a time and drives it. The run trains on a thread of its
//! own ([`Trainer::run`]); its epoch reports come back through a bounded channel and become
//! `ReportEpoch` + `UploadCheckpoint` calls, then `CompleteRun` or `FailRun`.

use super::cache::{FetchError, fetch_checkpoint, fetch_dataset};
use super::retry::{CallError, retryable, with_retry};
use super::{RunSlot, StopReason, Worker};
use crate::checkpoint::Checkpoint;
use crate::train::{EpochReport, Outcome, TrainError, Trainer};
use poet_core::config::TrainConfig;
use poet_core::retry::Backoff;
use poet_proto::v1::{self as pb, upload_checkpoint_request};
use sha2::{Digest, Sha256};
use std::ops::ControlFlow;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tonic::Code;
use tracing::{debug, info, warn};

/// Upload chunk size (the contract's maximum).
const CHUNK: usize = poet_proto::client::CHUNK_BYTES;

pub(super) async fn lease_loop(worker: Worker, mut stop: watch::Receiver<bool>) {
    let mut client = worker.client.clone();
    let mut backoff = Backoff::worker();
    while !*stop.borrow() {
        let req = pb::LeaseRunRequest {
            worker_id: worker.id,
            wait_ms: worker.lease_wait.as_millis() as i64,
            worker_secret: worker.secret.clone(),
        };
        let res = tokio::select! {
            r = client.lease_run(req) => r,
            _ = stop.changed() => return,
        };
        match res {
            Ok(r) => {
                backoff.reset();
                if let Some(lease) = r.into_inner().lease {
                    train_run(&worker, lease, &stop).await;
                }
            }
            Err(s) => {
                warn!(error = %s, "lease_run failed");
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }
}

/// What the training thread tells the lease loop.
enum Event {
    /// An epoch finished; report it and upload its checkpoint.
    Epoch(Box<EpochReport>),
    /// The trainer returned.
    Done(Result<Outcome, TrainError>),
}

/// Drives one leased run from setup to its final call.
async fn train_run(worker: &Worker, run: pb::RunLease, stop: &watch::Receiver<bool>) {
    let Some(lease) = run.lease.clone() else {
        return;
    };
    let run_id = lease.run_id;
    let slot = Arc::new(RunSlot {
        lease: lease.clone(),
        cancel: Arc::new(AtomicBool::new(false)),
        stop: Mutex::new(None),
        progress: Mutex::new((0, 0.0)),
        last_ok: Mutex::new(Instant::now()),
    });
    *worker.slot.lock().expect("slot lock") = Some(slot.clone());
    worker.metrics.run_leased(run_id);
    // Shutdown raises the flag first and then looks for a slot; looking at the flag after
    // installing the slot closes the gap where a lease arrives during shutdown.
    if *stop.borrow() {
        slot.request_stop(StopReason::Shutdown);
    }
    info!(run_id, attempt = lease.attempt, "run leased");
    let ttl = if run.lease_ttl_ms > 0 {
        Duration::from_millis(run.lease_ttl_ms as u64)
    } else {
        worker.lease_ttl
    };
    let result = drive(worker, &run, &slot, ttl).await;
    *worker.slot.lock().expect("slot lock") = None;
    worker.metrics.run_ended(matches!(
        slot.stop_reason(),
        Some(StopReason::Fenced | StopReason::Expired)
    ));
    let mut client = worker.client.clone();
    let fail = |reason: String, release: bool, permanent: bool| pb::FailRunRequest {
        lease: Some(lease.clone()),
        reason,
        release,
        permanent,
    };
    let final_call = match (result, slot.stop_reason()) {
        (_, Some(StopReason::Shutdown)) => Some(fail("worker shutting down".into(), true, false)),
        (_, Some(StopReason::Halted)) | (Ok(()), None) => {
            let res = with_retry(&slot, ttl, || {
                let mut c = client.clone();
                let req = pb::CompleteRunRequest {
                    lease: Some(lease.clone()),
                };
                async move { c.complete_run(req).await }
            })
            .await;
            match res {
                Ok(_) => info!(
                    run_id,
                    halted = slot.stop_reason().is_some(),
                    "run handed back"
                ),
                Err(e) => warn!(run_id, error = %e, "complete_run failed"),
            }
            None
        }
        (_, Some(why)) => {
            info!(run_id, reason = ?why, "run abandoned");
            None
        }
        (Err(RunFailure { reason, permanent }), None) => {
            warn!(run_id, %reason, permanent, "run failed");
            Some(fail(reason, false, permanent))
        }
    };
    if let Some(req) = final_call {
        // Released or failed runs are bounded by the lease: after it the coordinator's reaper
        // requeues the run anyway, so a few quick retries suffice.
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(2));
        for _ in 0..5 {
            match client.fail_run(req.clone()).await {
                Ok(_) => break,
                Err(s) if retryable(&s) => tokio::time::sleep(backoff.next_delay()).await,
                Err(s) => {
                    warn!(run_id, error = %s, "fail_run refused");
                    break;
                }
            }
        }
    }
}

/// A run that ended in error: what to tell the coordinator.
struct RunFailure {
    reason: String,
    permanent: bool,
}

impl RunFailure {
    fn new(reason: impl Into<String>, permanent: bool) -> Self {
        RunFailure {
            reason: reason.into(),
            permanent,
        }
    }
}

/// Sets the run up, trains it on its own thread and reports each epoch. `Ok` when every
/// epoch was reported (or the run stopped: see the slot's stop reason).
async fn drive(
    worker: &Worker,
    run: &pb::RunLease,
    slot: &Arc<RunSlot>,
    ttl: Duration,
) -> Result<(), RunFailure> {
    let cfg = TrainConfig::from_json(&run.config_json)
        .map_err(|e| RunFailure::new(format!("config: {e}"), true))?;
    let dataset = run
        .dataset
        .clone()
        .ok_or_else(|| RunFailure::new("lease carries no dataset", true))?;
    let mut backoff = Backoff::worker();
    let (train_text, val_text) = loop {
        match fetch_dataset(worker, &dataset).await {
            Ok(texts) => break texts,
            // The coordinator's downloads are all taken: wait for one.
            Err(FetchError::Rpc(s))
                if s.code() == Code::ResourceExhausted && slot.stop_reason().is_none() =>
            {
                let delay = backoff.next_delay();
                debug!(
                    dataset_id = dataset.id,
                    ?delay,
                    "dataset downloads busy, retrying"
                );
                tokio::time::sleep(delay).await;
            }
            Err(e) => {
                return Err(RunFailure::new(
                    format!("dataset {}: {e}", dataset.id),
                    false,
                ));
            }
        }
    };
    let resume = match &run.resume_from {
        Some(c) => {
            let bytes = fetch_checkpoint(worker, c)
                .await
                .map_err(|e| RunFailure::new(format!("checkpoint {}: {e}", c.id), false))?;
            Some(
                Checkpoint::from_bytes(&bytes)
                    .map_err(|e| RunFailure::new(format!("checkpoint {}: {e}", c.id), true))?,
            )
        }
        None => None,
    };
    let (tx, mut rx) = mpsc::channel::<Event>(1);
    let cancel = slot.cancel.clone();
    let device = worker.device;
    let progress_slot = slot.clone();
    let thread = std::thread::Builder::new()
        .name(format!(
            "train-{}",
            run.lease.as_ref().map_or(0, |l| l.run_id)
        ))
        .spawn(move || {
            let trainer = match &resume {
                Some(ckpt) => Trainer::resume(cfg, ckpt, &train_text, &val_text, device),
                None => Trainer::new(cfg, &train_text, &val_text, device),
            };
            let result = trainer.and_then(|mut t| {
                let mut progress = |p: crate::train::Progress| {
                    *progress_slot.progress.lock().expect("progress lock") =
                        (p.epoch, p.batch as f64 / p.batches.max(1) as f64);
                };
                let mut on_epoch =
                    |r: EpochReport| match tx.blocking_send(Event::Epoch(Box::new(r))) {
                        Ok(()) => ControlFlow::Continue(()),
                        Err(_) => ControlFlow::Break(()),
                    };
                t.run(&cancel, &mut progress, &mut on_epoch)
            });
            let _ = tx.blocking_send(Event::Done(result));
        })
        .map_err(|e| RunFailure::new(format!("cannot start training thread: {e}"), false))?;
    let mut outcome = Ok(());
    loop {
        match rx.recv().await {
            None => break,
            Some(Event::Epoch(report)) => {
                if slot.stop_reason().is_some() {
                    continue;
                }
                match report_epoch(worker, slot, ttl, &report).await {
                    Ok(()) => worker.metrics.epoch_done(report.chars_per_sec),
                    Err(e) => {
                        warn!(run_id = slot.lease.run_id, epoch = report.epoch, error = %e, "epoch report abandoned");
                        slot.request_stop(e.stop_reason());
                    }
                }
            }
            Some(Event::Done(Ok(_))) => break,
            Some(Event::Done(Err(e))) => {
                outcome = Err(RunFailure::new(e.to_string(), e.is_permanent()));
                break;
            }
        }
    }
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    outcome
}

async fn report_epoch(
    worker: &Worker,
    slot: &RunSlot,
    ttl: Duration,
    r: &EpochReport,
) -> Result<(), CallError> {
    let lease = slot.lease.clone();
    let metrics = serde_json::json!({
        "val_duration_s": r.val_duration_s,
        "formulation_val_loss": r.formulation_val_loss,
        "grad_norm_mean": r.grad_norm_mean,
        "batches": r.batches,
        "checkpoint_bytes": r.checkpoint.len(),
    });
    let epoch = pb::Epoch {
        epoch: r.epoch as i32,
        attempt: lease.attempt,
        train_loss: r.train_loss,
        val_loss: r.val_loss,
        duration_s: r.duration_s,
        chars_per_sec: r.chars_per_sec,
        metrics_json: metrics.to_string(),
        reported_at: None,
    };
    let answer = with_retry(slot, ttl, || {
        let mut c = worker.client.clone();
        let req = pb::ReportEpochRequest {
            lease: Some(lease.clone()),
            epoch: Some(epoch.clone()),
        };
        async move { c.report_epoch(req).await }
    })
    .await?;
    let halt = answer
        .directive
        .as_ref()
        .filter(|d| d.action() != pb::Action::Continue);
    let messages = upload_messages(&lease, r.epoch, &r.checkpoint);
    with_retry(slot, ttl, || {
        let mut c = worker.client.clone();
        let stream = tokio_stream::iter(messages.clone());
        async move { c.upload_checkpoint(stream).await }
    })
    .await?;
    info!(
        run_id = lease.run_id,
        epoch = r.epoch,
        train_loss = r.train_loss,
        val_loss = r.val_loss,
        "epoch reported"
    );
    if let Some(d) = halt {
        // The checkpoint of this epoch is stored: stop training and hand the run back.
        info!(run_id = lease.run_id, epoch = r.epoch, action = ?d.action(), reason = %d.reason, "run halted by the sweep's scheduler");
        slot.request_stop(StopReason::Halted);
    }
    Ok(())
}

/// The messages of one checkpoint upload: header, then chunks of at most 1 MiB.
fn upload_messages(
    lease: &pb::Lease,
    epoch: u32,
    bytes: &[u8],
) -> Vec<pb::UploadCheckpointRequest> {
    use upload_checkpoint_request::Part;
    let header = pb::CheckpointHeader {
        lease: Some(lease.clone()),
        epoch: epoch as i32,
        size: bytes.len() as i64,
        sha256: hex::encode(Sha256::digest(bytes)),
    };
    std::iter::once(Part::Header(header))
        .chain(bytes.chunks(CHUNK).map(|c| Part::Data(c.to_vec())))
        .map(|p| pb::UploadCheckpointRequest { part: Some(p) })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_are_header_then_bounded_chunks() {
        let lease = pb::Lease {
            run_id: 1,
            lease_id: "l".into(),
            attempt: 2,
        };
        let bytes = vec![7u8; CHUNK * 2 + 5];
        let msgs = upload_messages(&lease, 3, &bytes);
        assert_eq!(msgs.len(), 4);
        let Some(upload_checkpoint_request::Part::Header(h)) = &msgs[0].part else {
            panic!("header first")
        };
        assert_eq!((h.epoch, h.size), (3, bytes.len() as i64));
        assert_eq!(h.sha256, hex::encode(Sha256::digest(&bytes)));
        let sizes: Vec<usize> = msgs[1..]
            .iter()
            .map(|m| match &m.part {
                Some(upload_checkpoint_request::Part::Data(d)) => d.len(),
                _ => panic!("data after header"),
            })
            .collect();
        assert_eq!(sizes, vec![CHUNK, CHUNK, 5]);
    }
}

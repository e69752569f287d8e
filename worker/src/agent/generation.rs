//! The generation task: long-polls `LeaseGeneration`, samples each job on a thread of its
//! own beside training, and completes it with the sampled streams (or the error).

use super::Worker;
use super::cache::fetch_checkpoint;
use super::retry::retryable;
use crate::checkpoint::Checkpoint;
use crate::sample::{self, SampleRequest};
use poet_core::retry::Backoff;
use poet_proto::v1 as pb;
use std::time::Duration;
use tokio::sync::watch;
use tonic::Code;
use tracing::{debug, info, warn};

pub(super) async fn generation_loop(worker: Worker, mut stop: watch::Receiver<bool>) {
    let mut client = worker.client.clone();
    let mut backoff = Backoff::worker();
    while !*stop.borrow() {
        let req = pb::LeaseGenerationRequest {
            worker_id: worker.id,
            wait_ms: worker.lease_wait.as_millis() as i64,
            worker_secret: worker.secret.clone(),
        };
        let res = tokio::select! {
            r = client.lease_generation(req) => r,
            _ = stop.changed() => return,
        };
        let job = match res {
            Ok(r) => {
                backoff.reset();
                match r.into_inner().job {
                    Some(job) => job,
                    None => continue,
                }
            }
            Err(s) => {
                // A coordinator without the generation service: ask again in about a minute.
                let delay = if s.code() == Code::Unimplemented {
                    backoff.jitter(Duration::from_secs(60))
                } else {
                    backoff.next_delay()
                };
                debug!(error = %s, ?delay, "lease_generation failed");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => return,
                }
                continue;
            }
        };
        let (generation_id, lease_id) = (job.generation_id, job.lease_id.clone());
        info!(generation_id, "generation leased");
        let (streams, error) = match generate(&worker, job).await {
            Ok(streams) => (streams, String::new()),
            Err(e) => {
                warn!(generation_id, error = %e, "generation failed");
                (Vec::new(), e)
            }
        };
        let req = pb::CompleteGenerationRequest {
            worker_id: worker.id,
            generation_id,
            streams,
            error,
            lease_id,
            worker_secret: worker.secret.clone(),
        };
        let mut retry = Backoff::new(Duration::from_secs(1), Duration::from_secs(4));
        for _ in 0..5 {
            match client.complete_generation(req.clone()).await {
                Ok(_) => break,
                Err(s) if retryable(&s) => tokio::time::sleep(retry.next_delay()).await,
                Err(s) => {
                    warn!(generation_id, error = %s, "complete_generation refused");
                    break;
                }
            }
        }
    }
}

/// Downloads the job's checkpoint and samples on a thread of its own.
async fn generate(
    worker: &Worker,
    job: pb::GenerationJob,
) -> Result<Vec<pb::SampledStream>, String> {
    let ckpt = job.checkpoint.clone().ok_or("job carries no checkpoint")?;
    let bytes = fetch_checkpoint(worker, &ckpt)
        .await
        .map_err(|e| format!("checkpoint {}: {e}", ckpt.id))?;
    let device = worker.device;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("sample-{}", job.generation_id))
        .spawn(move || {
            let result = (|| {
                let ckpt = Checkpoint::from_bytes(&bytes).map_err(|e| e.to_string())?;
                let model = ckpt.model(device).map_err(|e| e.to_string())?;
                let req = SampleRequest::of_job(&job)?;
                sample::sample(&model, &ckpt.vocab(), &ckpt.meta.config, &req)
                    .map_err(|e| e.to_string())
            })();
            let _ = tx.send(result);
        })
        .map_err(|e| format!("cannot start sampling thread: {e}"))?;
    let streams = rx.await.map_err(|_| "sampling thread died".to_string())??;
    Ok(streams
        .into_iter()
        .map(|s| pb::SampledStream {
            temperature: s.temperature,
            text: s.text,
        })
        .collect())
}

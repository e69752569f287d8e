//! The heartbeat task: beats every `heartbeat_interval` whatever the trainer does, carrying
//! the current lease, epoch and progress, and turns the coordinator's answers into stop
//! reasons (cancelled, fenced, expired) on the run's slot.

use super::{StopReason, Worker};
use poet_proto::v1 as pb;
use tonic::Code;
use tracing::{debug, info, warn};

/// Beats until aborted, also during shutdown, so the lease lives while the trainer stops.
pub(super) async fn heartbeat_loop(worker: Worker) {
    let mut client = worker.client.clone();
    let mut tick = tokio::time::interval(worker.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let slot = worker.slot.lock().expect("slot lock").clone();
        let (lease, (epoch, progress)) = match &slot {
            Some(s) => (
                Some(s.lease.clone()),
                *s.progress.lock().expect("progress lock"),
            ),
            None => (None, (0, 0.0)),
        };
        let req = pb::HeartbeatRequest {
            worker_id: worker.id,
            lease,
            epoch: epoch as i32,
            progress,
            worker_secret: worker.secret.clone(),
        };
        let res = client.heartbeat(req).await;
        if res.is_ok() {
            worker.metrics.heartbeat_ok();
        }
        let Some(slot) = slot else {
            if let Err(e) = res {
                debug!(error = %e, "idle heartbeat failed");
            }
            continue;
        };
        match res {
            Ok(r) if r.get_ref().cancel => {
                info!(run_id = slot.lease.run_id, "run cancelled by coordinator");
                slot.request_stop(StopReason::Cancelled);
            }
            Ok(_) => slot.touch(),
            Err(s) if s.code() == Code::FailedPrecondition => {
                warn!(run_id = slot.lease.run_id, "lease lost");
                slot.request_stop(StopReason::Fenced);
            }
            Err(s) => {
                warn!(run_id = slot.lease.run_id, error = %s, "heartbeat failed");
                if slot.expired(worker.lease_ttl) {
                    slot.request_stop(StopReason::Expired);
                }
            }
        }
    }
}

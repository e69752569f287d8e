//! The client-facing gRPC service: sweeps, run history, cancel, workers, datasets and
//! generation requests.

use std::time::Duration;

use chrono::Utc;
use poet_proto::v1::{self, poet_server::Poet};
use tonic::{Request, Response, Status};

use super::Shared;
use crate::error::ServiceError;
use crate::history::Target;

/// How long a waiting client goes without looking at its generation when no notification
/// comes: only a listener that cannot reconnect at all needs it (a reconnect wakes everyone).
const WAIT_RECHECK: Duration = Duration::from_secs(5);

impl Shared {
    /// Tags or untags (`add`) a run or sweep as the request's caller.
    async fn tag(
        &self,
        req: Request<v1::TagRequest>,
        target: Target,
        add: bool,
    ) -> Result<Response<v1::Annotations>, Status> {
        let author = crate::history::author(&self.pool, req.extensions().get()).await?;
        let r = req.into_inner();
        let a = if add {
            crate::history::tag(&self.pool, target, r.id, &r.tags, &author).await?
        } else {
            crate::history::untag(&self.pool, target, r.id, &r.tags).await?
        };
        Ok(Response::new(a))
    }

    /// Leaves a note on a run or sweep as the request's caller.
    async fn note(
        &self,
        req: Request<v1::NoteRequest>,
        target: Target,
    ) -> Result<Response<v1::Annotations>, Status> {
        let author = crate::history::author(&self.pool, req.extensions().get()).await?;
        let r = req.into_inner();
        Ok(Response::new(
            crate::history::note(&self.pool, target, r.id, &r.text, &author).await?,
        ))
    }

    /// A control action's answer: the sweep after it, with its tags and notes (the sweep as
    /// `ListSweeps` and `GetSweep` show it).
    async fn sweep_reply(
        &self,
        s: crate::history::SweepRow,
    ) -> Result<Response<v1::SweepControlResponse>, Status> {
        let mut sweep = [v1::Sweep::from(s)];
        crate::history::annotate_sweeps(&self.pool, &mut sweep).await?;
        let [sweep] = sweep;
        Ok(Response::new(v1::SweepControlResponse {
            sweep: Some(sweep),
        }))
    }

    /// The generation once it is done or failed, or as it is after `wait`. The database is
    /// read again only when its NOTIFY arrives (SECURITY.md, finding 8: waiting clients used
    /// to poll every 150 ms).
    async fn wait_generation(
        &self,
        id: i64,
        wait: Duration,
    ) -> Result<v1::Generation, ServiceError> {
        use tokio::sync::broadcast::error::RecvError;
        let deadline = tokio::time::Instant::now() + wait;
        // Subscribed before the first read: a finish between the read and the wait is heard.
        let mut finished = self.generations_finished.subscribe();
        loop {
            let g = crate::generation::load(&self.pool, Some(id), 0)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| ServiceError::NotFound(format!("no generation {id}")))?;
            let now = tokio::time::Instant::now();
            if g.state == "done" || g.state == "failed" || now >= deadline {
                return Ok(g);
            }
            let recheck = deadline.min(now + WAIT_RECHECK);
            loop {
                match tokio::time::timeout_at(recheck, finished.recv()).await {
                    Ok(Ok(Some(other))) if other != id => continue,
                    // Ours, a reconnected listener, or missed notifications: look again.
                    Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) | Err(_) => break,
                    Ok(Err(RecvError::Closed)) => {
                        tokio::time::sleep_until(recheck).await;
                        break;
                    }
                }
            }
        }
    }
}

#[tonic::async_trait]
impl Poet for Shared {
    async fn submit_sweep(
        &self,
        req: Request<v1::SubmitSweepRequest>,
    ) -> Result<Response<v1::SubmitSweepResponse>, Status> {
        let _t = self.metrics.timer("SubmitSweep");
        let r = req.into_inner();
        let s = crate::sweeps::submit(
            &self.pool,
            &r.spec,
            &r.format,
            &r.name,
            r.dry_run,
            self.cfg.max_sweep_runs,
        )
        .await?;
        let mut created: Vec<v1::Run> = s.created.into_iter().map(Into::into).collect();
        if r.dry_run {
            created = s
                .planned
                .into_iter()
                .map(|c| v1::Run {
                    config_json: c,
                    state: v1::RunState::Unspecified as i32,
                    ..Default::default()
                })
                .collect();
        }
        Ok(Response::new(v1::SubmitSweepResponse {
            sweep: s.sweep.map(Into::into),
            created,
            existing: s.existing.into_iter().map(Into::into).collect(),
            duplicates_in_spec: s.duplicates_in_spec as i32,
            warnings: s.warnings,
        }))
    }

    async fn list_sweeps(
        &self,
        req: Request<v1::ListSweepsRequest>,
    ) -> Result<Response<v1::ListSweepsResponse>, Status> {
        let _t = self.metrics.timer("ListSweeps");
        let r = req.into_inner();
        let (rows, next) =
            crate::history::list_sweeps(&self.pool, r.page_size, &r.page_token).await?;
        Ok(Response::new(v1::ListSweepsResponse {
            sweeps: rows,
            next_page_token: next,
        }))
    }

    async fn get_sweep(
        &self,
        req: Request<v1::GetSweepRequest>,
    ) -> Result<Response<v1::GetSweepResponse>, Status> {
        let _t = self.metrics.timer("GetSweep");
        Ok(Response::new(
            crate::history::get_sweep(&self.pool, req.into_inner().sweep_id).await?,
        ))
    }

    async fn list_runs(
        &self,
        req: Request<v1::ListRunsRequest>,
    ) -> Result<Response<v1::ListRunsResponse>, Status> {
        let _t = self.metrics.timer("ListRuns");
        let (mut runs, next) = crate::history::list_runs(&self.pool, req.get_ref()).await?;
        crate::sweeps::fill_no_fit(&self.pool, &mut runs).await?;
        Ok(Response::new(v1::ListRunsResponse {
            runs,
            next_page_token: next,
        }))
    }

    async fn get_run(
        &self,
        req: Request<v1::GetRunRequest>,
    ) -> Result<Response<v1::GetRunResponse>, Status> {
        let _t = self.metrics.timer("GetRun");
        Ok(Response::new(
            crate::history::get_run(&self.pool, req.into_inner().run_id).await?,
        ))
    }

    async fn retry_run(
        &self,
        req: Request<v1::RetryRunRequest>,
    ) -> Result<Response<v1::RunControlResponse>, Status> {
        let _t = self.metrics.timer("RetryRun");
        let run =
            crate::control::retry_run(&self.pool, req.into_inner().run_id, Utc::now()).await?;
        Ok(Response::new(v1::RunControlResponse {
            run: Some(run.into()),
        }))
    }

    async fn extend_run(
        &self,
        req: Request<v1::ExtendRunRequest>,
    ) -> Result<Response<v1::RunControlResponse>, Status> {
        let _t = self.metrics.timer("ExtendRun");
        let r = req.into_inner();
        let run = crate::control::extend_run(&self.pool, r.run_id, r.epochs, Utc::now()).await?;
        Ok(Response::new(v1::RunControlResponse {
            run: Some(run.into()),
        }))
    }

    async fn fork_run(
        &self,
        req: Request<v1::ForkRunRequest>,
    ) -> Result<Response<v1::RunControlResponse>, Status> {
        let _t = self.metrics.timer("ForkRun");
        let r = req.into_inner();
        let run = crate::control::fork_run(
            &self.pool,
            r.run_id,
            r.checkpoint_id,
            &r.overrides_json,
            Utc::now(),
        )
        .await?;
        Ok(Response::new(v1::RunControlResponse {
            run: Some(run.into()),
        }))
    }

    async fn pause_sweep(
        &self,
        req: Request<v1::SweepControlRequest>,
    ) -> Result<Response<v1::SweepControlResponse>, Status> {
        let _t = self.metrics.timer("PauseSweep");
        let s = crate::control::set_paused(&self.pool, req.into_inner().sweep_id, true, Utc::now())
            .await?;
        self.sweep_reply(s).await
    }

    async fn resume_sweep(
        &self,
        req: Request<v1::SweepControlRequest>,
    ) -> Result<Response<v1::SweepControlResponse>, Status> {
        let _t = self.metrics.timer("ResumeSweep");
        let s =
            crate::control::set_paused(&self.pool, req.into_inner().sweep_id, false, Utc::now())
                .await?;
        self.sweep_reply(s).await
    }

    async fn set_sweep_priority(
        &self,
        req: Request<v1::SetSweepPriorityRequest>,
    ) -> Result<Response<v1::SweepControlResponse>, Status> {
        let _t = self.metrics.timer("SetSweepPriority");
        let r = req.into_inner();
        let s =
            crate::control::set_priority(&self.pool, r.sweep_id, r.priority, Utc::now()).await?;
        self.sweep_reply(s).await
    }

    async fn cancel_run(
        &self,
        req: Request<v1::CancelRunRequest>,
    ) -> Result<Response<v1::CancelResponse>, Status> {
        let _t = self.metrics.timer("CancelRun");
        let r = req.into_inner();
        let c = self
            .queue
            .cancel_run(r.run_id, &r.reason, Utc::now())
            .await?;
        Ok(Response::new(v1::CancelResponse {
            cancelled: c.cancelled,
            cancel_requested: c.requested,
        }))
    }

    async fn cancel_sweep(
        &self,
        req: Request<v1::CancelSweepRequest>,
    ) -> Result<Response<v1::CancelResponse>, Status> {
        let _t = self.metrics.timer("CancelSweep");
        let r = req.into_inner();
        let c = self
            .queue
            .cancel_sweep(r.sweep_id, &r.reason, Utc::now())
            .await?;
        Ok(Response::new(v1::CancelResponse {
            cancelled: c.cancelled,
            cancel_requested: c.requested,
        }))
    }

    async fn list_workers(
        &self,
        req: Request<v1::ListWorkersRequest>,
    ) -> Result<Response<v1::ListWorkersResponse>, Status> {
        let _t = self.metrics.timer("ListWorkers");
        let workers =
            crate::history::list_workers(&self.pool, req.into_inner().include_stale).await?;
        Ok(Response::new(v1::ListWorkersResponse { workers }))
    }

    async fn list_datasets(
        &self,
        req: Request<v1::ListDatasetsRequest>,
    ) -> Result<Response<v1::ListDatasetsResponse>, Status> {
        let _t = self.metrics.timer("ListDatasets");
        let datasets = crate::history::list_datasets(&self.pool, &req.into_inner().name)
            .await?
            .into_iter()
            .map(|d| crate::history::dataset_view(d).into())
            .collect();
        Ok(Response::new(v1::ListDatasetsResponse { datasets }))
    }

    async fn generate(
        &self,
        req: Request<v1::GenerateRequest>,
    ) -> Result<Response<v1::GenerateResponse>, Status> {
        let _t = self.metrics.timer("Generate");
        let r = req.into_inner();
        let params = crate::generation::GenParams::from_request(&r)?;
        let id = crate::generation::request(
            &self.pool,
            r.run_id,
            &params,
            self.cfg.max_queued_generations,
        )
        .await?;
        tracing::info!(generation_id = id, run_id = r.run_id, "generation queued");
        let wait = if r.wait {
            Duration::from_secs(if r.wait_seconds <= 0 {
                120
            } else {
                r.wait_seconds.min(600) as u64
            })
        } else {
            Duration::ZERO
        };
        let g = self.wait_generation(id, wait).await?;
        Ok(Response::new(v1::GenerateResponse {
            generation: Some(g),
        }))
    }

    async fn get_generation(
        &self,
        req: Request<v1::GetGenerationRequest>,
    ) -> Result<Response<v1::GetGenerationResponse>, Status> {
        let _t = self.metrics.timer("GetGeneration");
        let r = req.into_inner();
        let g = self
            .wait_generation(
                r.generation_id,
                Duration::from_secs(r.wait_seconds.clamp(0, 600) as u64),
            )
            .await?;
        Ok(Response::new(v1::GetGenerationResponse {
            generation: Some(g),
        }))
    }

    async fn list_generations(
        &self,
        req: Request<v1::ListGenerationsRequest>,
    ) -> Result<Response<v1::ListGenerationsResponse>, Status> {
        let _t = self.metrics.timer("ListGenerations");
        let run_id = req.into_inner().run_id;
        if run_id != 0 {
            crate::history::require_run(&self.pool, run_id).await?;
        }
        let generations = crate::generation::load(&self.pool, None, run_id).await?;
        Ok(Response::new(v1::ListGenerationsResponse { generations }))
    }

    async fn tag_run(
        &self,
        req: Request<v1::TagRequest>,
    ) -> Result<Response<v1::Annotations>, Status> {
        let _t = self.metrics.timer("TagRun");
        self.tag(req, Target::Run, true).await
    }

    async fn untag_run(
        &self,
        req: Request<v1::TagRequest>,
    ) -> Result<Response<v1::Annotations>, Status> {
        let _t = self.metrics.timer("UntagRun");
        self.tag(req, Target::Run, false).await
    }

    async fn note_run(
        &self,
        req: Request<v1::NoteRequest>,
    ) -> Result<Response<v1::Annotations>, Status> {
        let _t = self.metrics.timer("NoteRun");
        self.note(req, Target::Run).await
    }

    async fn tag_sweep(
        &self,
        req: Request<v1::TagRequest>,
    ) -> Result<Response<v1::Annotations>, Status> {
        let _t = self.metrics.timer("TagSweep");
        self.tag(req, Target::Sweep, true).await
    }

    async fn untag_sweep(
        &self,
        req: Request<v1::TagRequest>,
    ) -> Result<Response<v1::Annotations>, Status> {
        let _t = self.metrics.timer("UntagSweep");
        self.tag(req, Target::Sweep, false).await
    }

    async fn note_sweep(
        &self,
        req: Request<v1::NoteRequest>,
    ) -> Result<Response<v1::Annotations>, Status> {
        let _t = self.metrics.timer("NoteSweep");
        self.note(req, Target::Sweep).await
    }
}

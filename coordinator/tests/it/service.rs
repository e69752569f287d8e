//! The services over real gRPC: health and reflection, sweeps, the worker protocol,
//! checkpoint uploads, replicas, cancel, generation and auth.

use std::collections::HashSet;

use poet_coordinator::CoordinatorConfig;
use poet_proto::v1::{self, upload_checkpoint_request::Part};
use sha2::{Digest, Sha256};
use tonic::Code;

use crate::helpers::{
    POEMS, fast_config, lease_run, leased_run, register, seed_dataset, spawn, spawn_with, spec,
};

fn upload_msgs(
    lease: &v1::Lease,
    epoch: i32,
    data: &[u8],
    declared_size: i64,
    sha: String,
) -> Vec<v1::UploadCheckpointRequest> {
    let mut msgs = vec![v1::UploadCheckpointRequest {
        part: Some(Part::Header(v1::CheckpointHeader {
            lease: Some(lease.clone()),
            epoch,
            size: declared_size,
            sha256: sha,
        })),
    }];
    for c in data.chunks(7) {
        msgs.push(v1::UploadCheckpointRequest {
            part: Some(Part::Data(c.to_vec())),
        });
    }
    msgs
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn epoch(n: i32, loss: f64) -> v1::Epoch {
    v1::Epoch {
        epoch: n,
        train_loss: loss,
        val_loss: loss + 0.1,
        duration_s: 0.5,
        chars_per_sec: 1000.0,
        ..Default::default()
    }
}

#[tokio::test]
async fn health_serving_and_reflection_lists_services() {
    let c = spawn().await;
    let ch = tonic::transport::Channel::from_shared(format!("http://{}", c.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut h = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    for svc in ["", "poet.v1.Poet", "poet.v1.WorkerService"] {
        let r = h
            .check(tonic_health::pb::HealthCheckRequest {
                service: svc.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{svc}"
        );
    }
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut r = ServerReflectionClient::new(ch);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = r
        .server_reflection_info(futures::stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected reply")
    };
    let names: HashSet<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "poet.v1.Poet",
        "poet.v1.WorkerService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(want), "{want} missing from {names:?}");
    }
    c.stop().await;
}

#[tokio::test]
async fn sweep_validation_names_the_field_and_stores_nothing() {
    let c = spawn().await;
    seed_dataset(&c.db.pool, "tiny", POEMS).await;
    let mut client = c.client();
    let cases = [
        ("dataset = \"tiny\"\n[base]\nlayerz = 2\n", "layerz"),
        (
            "dataset = \"tiny\"\n[grid]\ndropout = [0.1, 1.5]\n",
            "dropout",
        ),
        ("dataset = \"nope\"\n", "dataset"),
        (
            "dataset = \"tiny\"\n[grid]\nseed = [1,2,3,4,5,6,7,8,9,10]\nunits = [1,2,3,4,5,6,7,8,9,10]\nlayers = [1,2,3,4,5,6,7,8,9,10]\nepochs = [1,2]\n",
            "grid",
        ),
    ];
    for (text, field) in cases {
        let err = client
            .submit_sweep(v1::SubmitSweepRequest {
                spec: text.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{text}");
        assert!(
            err.message().contains(field),
            "{field} not named in: {}",
            err.message()
        );
    }
    let (sweeps, runs): (i64, i64) =
        sqlx::query_as("select (select count(*) from sweeps), (select count(*) from runs)")
            .fetch_one(&c.db.pool)
            .await
            .unwrap();
    assert_eq!((sweeps, runs), (0, 0), "nothing partial stored");
    c.stop().await;
}

#[tokio::test]
async fn identical_configs_are_one_run_across_sweeps() {
    let c = spawn().await;
    seed_dataset(&c.db.pool, "tiny", POEMS).await;
    let mut client = c.client();
    let first = client
        .submit_sweep(v1::SubmitSweepRequest {
            spec: spec("tiny", 3, 1),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.created.len(), 3);
    let second = client
        .submit_sweep(v1::SubmitSweepRequest {
            spec: spec("tiny", 5, 1),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((second.created.len(), second.existing.len()), (2, 3));
    let listed = client
        .list_runs(v1::ListRunsRequest {
            sweep_id: second.sweep.unwrap().id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.runs.len(),
        5,
        "existing runs are attached to the new sweep"
    );
    c.stop().await;
}

#[tokio::test]
async fn worker_protocol_end_to_end_with_checkpoint_checks() {
    let c = spawn().await;
    seed_dataset(&c.db.pool, "tiny", POEMS).await;
    let mut client = c.client();
    client
        .submit_sweep(v1::SubmitSweepRequest {
            spec: spec("tiny", 1, 2),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut w = c.worker();
    let wid = register(&mut w, "test-host").await;
    let lease = lease_run(&mut w, wid, 1000).await.unwrap();
    let l = lease.lease.clone().unwrap();
    assert!(lease.resume_from.is_none());
    let cfg = poet_core::config::TrainConfig::from_json(&lease.config_json).unwrap();
    assert_eq!((cfg.layers, cfg.units, cfg.epochs), (1, 8, 2));

    // The dataset stream matches its header.
    let mut stream = w
        .download_dataset(v1::DownloadDatasetRequest {
            dataset_id: lease.dataset.unwrap().id,
        })
        .await
        .unwrap()
        .into_inner();
    let mut header = None;
    let (mut train, mut val) = (Vec::new(), Vec::new());
    while let Some(m) = stream.message().await.unwrap() {
        match m.part.unwrap() {
            v1::dataset_chunk::Part::Header(h) => header = Some(h),
            v1::dataset_chunk::Part::Train(b) => train.extend(b),
            v1::dataset_chunk::Part::Validation(b) => val.extend(b),
        }
    }
    let header = header.unwrap();
    assert_eq!(
        (train.len() as i64, val.len() as i64),
        (header.train_bytes, header.validation_bytes)
    );
    assert!(
        !val.is_empty()
            && String::from_utf8(train.clone())
                .unwrap()
                .starts_with("++++\n")
    );
    assert_eq!(sha(&[train, val].concat()), header.sha256);

    let hb = w
        .heartbeat(v1::HeartbeatRequest {
            worker_id: wid.id,
            worker_secret: wid.secret(),
            lease: Some(l.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!hb.cancel);

    // A checkpoint before its epoch report is refused.
    let data = b"pretend checkpoint bytes".to_vec();
    let early = w
        .upload_checkpoint(futures::stream::iter(upload_msgs(
            &l,
            1,
            &data,
            data.len() as i64,
            sha(&data),
        )))
        .await
        .unwrap_err();
    assert_eq!(early.code(), Code::FailedPrecondition);

    w.report_epoch(v1::ReportEpochRequest {
        lease: Some(l.clone()),
        epoch: Some(epoch(1, 2.0)),
    })
    .await
    .unwrap();
    // Corrupted (wrong sha), truncated and oversized uploads are refused and leave no row.
    let bad_sha = w
        .upload_checkpoint(futures::stream::iter(upload_msgs(
            &l,
            1,
            &data,
            data.len() as i64,
            sha(b"other"),
        )))
        .await
        .unwrap_err();
    assert_eq!(bad_sha.code(), Code::InvalidArgument, "{bad_sha:?}");
    assert!(bad_sha.message().contains("sha256"));
    let truncated = w
        .upload_checkpoint(futures::stream::iter(upload_msgs(
            &l,
            1,
            &data[..5],
            data.len() as i64,
            sha(&data),
        )))
        .await
        .unwrap_err();
    assert!(truncated.message().contains("truncated"), "{truncated:?}");
    let too_many = w
        .upload_checkpoint(futures::stream::iter(upload_msgs(
            &l,
            1,
            &data,
            3,
            sha(&data),
        )))
        .await
        .unwrap_err();
    assert!(too_many.message().contains("more bytes"), "{too_many:?}");
    let rows: i64 = sqlx::query_scalar("select count(*) from checkpoints")
        .fetch_one(&c.db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 0);
    let blobs = walk(c.artifacts.path());
    assert!(blobs.is_empty(), "no blob without a row: {blobs:?}");

    let ok = w
        .upload_checkpoint(futures::stream::iter(upload_msgs(
            &l,
            1,
            &data,
            data.len() as i64,
            sha(&data),
        )))
        .await
        .unwrap()
        .into_inner();
    let ck = ok.checkpoint.unwrap();
    assert_eq!((ck.epoch, ck.size), (1, data.len() as i64));
    // Round trip.
    let mut down = w
        .download_checkpoint(v1::DownloadCheckpointRequest {
            checkpoint_id: ck.id,
        })
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(m) = down.message().await.unwrap() {
        got.extend(m.data);
    }
    assert_eq!(got, data);

    w.report_epoch(v1::ReportEpochRequest {
        lease: Some(l.clone()),
        epoch: Some(epoch(2, 1.5)),
    })
    .await
    .unwrap();
    w.complete_run(v1::CompleteRunRequest {
        lease: Some(l.clone()),
    })
    .await
    .unwrap();
    // After completion every write is fenced.
    let late = w
        .report_epoch(v1::ReportEpochRequest {
            lease: Some(l.clone()),
            epoch: Some(epoch(2, 1.5)),
        })
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);

    let run = client
        .get_run(v1::GetRunRequest { run_id: l.run_id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        run.run.as_ref().unwrap().state,
        v1::RunState::Succeeded as i32
    );
    assert_eq!(
        run.epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(run.attempts.len(), 1);
    assert_eq!(run.attempts[0].outcome, "completed");
    assert_eq!(run.attempts[0].worker_host, "test-host");
    assert_eq!(run.best_checkpoint_id, ck.id);
    let workers = client
        .list_workers(v1::ListWorkersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .workers;
    assert_eq!(workers.len(), 1);
    c.stop().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn two_replicas_never_lease_a_run_twice() {
    let a = spawn().await;
    seed_dataset(&a.db.pool, "tiny", POEMS).await;
    let b = spawn_with(Some(a.db.clone()), fast_config()).await;
    a.client()
        .submit_sweep(v1::SubmitSweepRequest {
            spec: spec("tiny", 30, 1),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..12 {
        let mut w = if i % 2 == 0 { a.worker() } else { b.worker() };
        tasks.push(tokio::spawn(async move {
            let wid = register(&mut w, &format!("w{i}")).await;
            let mut got = Vec::new();
            loop {
                match lease_run(&mut w, wid, 200).await {
                    Some(l) => got.push(l.lease.unwrap().run_id),
                    None => return got,
                }
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    assert_eq!(all.len(), 30);
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 30);
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn long_poll_wakes_when_a_sweep_arrives() {
    let c = spawn().await;
    seed_dataset(&c.db.pool, "tiny", POEMS).await;
    let mut w = c.worker();
    let wid = register(&mut w, "h").await;
    let waiting = tokio::spawn(async move {
        let t = std::time::Instant::now();
        let leased = lease_run(&mut w, wid, 20_000).await;
        (leased.is_some(), t.elapsed())
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    c.client()
        .submit_sweep(v1::SubmitSweepRequest {
            spec: spec("tiny", 1, 1),
            ..Default::default()
        })
        .await
        .unwrap();
    let (got, waited) = waiting.await.unwrap();
    assert!(got, "the waiting worker got the new run");
    assert!(
        waited < std::time::Duration::from_secs(15),
        "woken before its deadline: {waited:?}"
    );
    c.stop().await;
}

#[tokio::test]
async fn cancel_reaches_the_worker_at_its_next_heartbeat() {
    let c = spawn().await;
    let (mut client, mut w, wid, l) = leased_run(&c, 1, 3).await;
    let r = client
        .cancel_run(v1::CancelRunRequest {
            run_id: l.run_id,
            reason: "user".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.cancel_requested, 1);
    let hb = w
        .heartbeat(v1::HeartbeatRequest {
            worker_id: wid.id,
            worker_secret: wid.secret(),
            lease: Some(l.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(hb.cancel);
    let run = client
        .get_run(v1::GetRunRequest { run_id: l.run_id })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    assert_eq!(run.state, v1::RunState::Cancelled as i32);
    let missing = client
        .cancel_run(v1::CancelRunRequest {
            run_id: 999_999,
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    c.stop().await;
}

#[tokio::test]
async fn generation_is_served_by_a_worker_and_judged_for_plagiarism() {
    let c = spawn().await;
    let (mut client, mut w, wid, l) = leased_run(&c, 1, 1).await;
    // No checkpoint yet: a clear refusal.
    let none = client
        .generate(v1::GenerateRequest {
            run_id: l.run_id,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(none.code(), Code::FailedPrecondition);
    assert!(none.message().contains("no checkpoint"));
    w.report_epoch(v1::ReportEpochRequest {
        lease: Some(l.clone()),
        epoch: Some(epoch(1, 2.0)),
    })
    .await
    .unwrap();
    let data = b"ckpt".to_vec();
    w.upload_checkpoint(futures::stream::iter(upload_msgs(
        &l,
        1,
        &data,
        4,
        sha(&data),
    )))
    .await
    .unwrap();
    for (bad, field) in [
        (
            v1::GenerateRequest {
                run_id: l.run_id,
                temperatures: vec![f64::NAN],
                ..Default::default()
            },
            "temperatures",
        ),
        (
            v1::GenerateRequest {
                run_id: l.run_id,
                temperatures: vec![-1.0],
                ..Default::default()
            },
            "temperatures",
        ),
        (
            v1::GenerateRequest {
                run_id: l.run_id,
                chars: 10_000_000,
                ..Default::default()
            },
            "chars",
        ),
        (
            v1::GenerateRequest {
                run_id: l.run_id,
                top_p: Some(0.0),
                ..Default::default()
            },
            "top_p",
        ),
        (
            v1::GenerateRequest {
                run_id: l.run_id,
                top_p: Some(1.5),
                ..Default::default()
            },
            "top_p",
        ),
        (
            v1::GenerateRequest {
                run_id: l.run_id,
                top_k: Some(-1),
                ..Default::default()
            },
            "top_k",
        ),
        (
            v1::GenerateRequest {
                run_id: l.run_id,
                max_line_repeats: Some(-1),
                ..Default::default()
            },
            "max_line_repeats",
        ),
        (
            v1::GenerateRequest {
                run_id: l.run_id,
                shape_boost: Some(f64::INFINITY),
                ..Default::default()
            },
            "shape_boost",
        ),
        (
            v1::GenerateRequest {
                run_id: l.run_id,
                mode: "sideways".into(),
                ..Default::default()
            },
            "mode",
        ),
    ] {
        let e = client.generate(bad).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains(field), "{e:?}");
    }
    let unknown = client
        .generate(v1::GenerateRequest {
            run_id: 424242,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    let g = client
        .generate(v1::GenerateRequest {
            run_id: l.run_id,
            temperatures: vec![0.5, 1.0],
            seed: 7,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .generation
        .unwrap();
    assert_eq!(g.state, "queued");
    let job = w
        .lease_generation(v1::LeaseGenerationRequest {
            worker_id: wid.id,
            wait_ms: 2000,
            worker_secret: wid.secret(),
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert_eq!(job.temperatures, vec![0.5, 1.0]);
    assert_eq!(job.checkpoint.unwrap().epoch, 1);
    // Unset sampler fields take the defaults; the shape target is the corpus's.
    use poet_core::quality::{self, defaults};
    assert_eq!(
        (
            job.mode.as_str(),
            job.top_p,
            job.top_k,
            job.max_line_repeats,
            job.shape_boost
        ),
        (
            "carry",
            defaults::TOP_P,
            defaults::TOP_K as i32,
            defaults::MAX_LINE_REPEATS as i32,
            defaults::SHAPE_BOOST
        )
    );
    let dataset: i64 = sqlx::query_scalar("select dataset_id from runs where id = $1")
        .bind(l.run_id)
        .fetch_one(&c.db.pool)
        .await
        .unwrap();
    let corpus = poet_coordinator::datasets::text(&c.db.pool, dataset)
        .await
        .unwrap();
    let (figures, words) = quality::corpus_figures(&corpus);
    assert!(figures.shape.lines > 0);
    assert_eq!(
        (job.line_chars, job.stanza_lines),
        (
            figures.shape.mean_line_chars,
            figures.shape.lines_per_stanza
        )
    );
    let copied = POEMS[1]; // verbatim from the corpus
    let original =
        "violet engines hum beneath\nthe quiet orchard of my teeth\nno river ever learned my name";
    w.complete_generation(v1::CompleteGenerationRequest {
        worker_id: wid.id,
        worker_secret: wid.secret(),
        lease_id: job.lease_id.clone(),
        generation_id: job.generation_id,
        streams: vec![
            v1::SampledStream {
                temperature: 0.5,
                text: format!("{copied}\n++++\n"),
            },
            v1::SampledStream {
                temperature: 1.0,
                text: format!("++++\n{original}\n++++\n\n++++"),
            },
        ],
        error: String::new(),
    })
    .await
    .unwrap();
    let done = client
        .get_generation(v1::GetGenerationRequest {
            generation_id: job.generation_id,
            wait_seconds: 5,
        })
        .await
        .unwrap()
        .into_inner()
        .generation
        .unwrap();
    assert_eq!(done.state, "done");
    assert_eq!(
        done.poems.len(),
        2,
        "split on ++++, empty fragments dropped"
    );
    let copied_report = done.poems[0].report.as_ref().unwrap();
    assert!(
        copied_report.flagged && copied_report.shared_fraction > 0.9,
        "{copied_report:?}"
    );
    let original_report = done.poems[1].report.as_ref().unwrap();
    assert!(
        !original_report.flagged && original_report.shared.is_empty(),
        "{original_report:?}"
    );
    // The stored quality report: the stored poems against the corpus, beside its figures.
    let texts: Vec<&str> = done.poems.iter().map(|p| p.text.as_str()).collect();
    let measured = quality::measure(&texts, &words);
    let q = done
        .quality
        .as_ref()
        .expect("a done generation has a report");
    let (generated, corpus_side) = (q.generated.unwrap(), q.corpus.unwrap());
    assert_eq!(
        (generated.words, generated.real_word_share, generated.lines),
        (
            measured.words as i64,
            measured.real_word_share,
            measured.shape.lines as i64
        )
    );
    assert_eq!(
        (
            generated.mean_line_chars,
            generated.lines_per_stanza,
            generated.stanzas_per_poem
        ),
        (
            measured.shape.mean_line_chars,
            measured.shape.lines_per_stanza,
            measured.shape.stanzas_per_poem
        )
    );
    assert!(
        generated.real_word_share < 1.0 && generated.real_word_share > 0.3,
        "{q:?}"
    );
    assert_eq!(
        (
            corpus_side.mean_line_chars,
            corpus_side.lines_per_stanza,
            corpus_side.real_word_share
        ),
        (
            figures.shape.mean_line_chars,
            figures.shape.lines_per_stanza,
            1.0
        )
    );
    let overall = done.overall.as_ref().unwrap();
    assert_eq!(
        (q.shared_4grams, q.longest_copied_run),
        (overall.shared_fraction, overall.longest_copied_run)
    );
    let listed = client
        .list_generations(v1::ListGenerationsRequest { run_id: l.run_id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.generations.len(), 1);
    c.stop().await;
}

#[tokio::test]
async fn tokens_roles_and_codes() {
    let cfg = CoordinatorConfig {
        client_token: Some("client-6f3a8d1c5e9b2074f6a1d8c3e5b97a20".into()),
        worker_token: Some("worker-1e7c4a9f2d6b8053e1c7a4f9d2b68e35".into()),
        ..fast_config()
    };
    let c = spawn_with(None, cfg).await;
    let mut client = c.client();
    let no_token = client
        .list_sweeps(v1::ListSweepsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(no_token.code(), Code::Unauthenticated);
    let with = |t: &str| {
        let mut r = tonic::Request::new(v1::ListSweepsRequest::default());
        r.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
        r
    };
    assert_eq!(
        client
            .list_sweeps(with("wrong-token"))
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    assert_eq!(
        client
            .list_sweeps(with("worker-1e7c4a9f2d6b8053e1c7a4f9d2b68e35"))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert!(
        client
            .list_sweeps(with("client-6f3a8d1c5e9b2074f6a1d8c3e5b97a20"))
            .await
            .is_ok()
    );
    let mut w = c.worker();
    let mut reg = tonic::Request::new(v1::RegisterRequest {
        host: "h".into(),
        device: "cpu".into(),
        ..Default::default()
    });
    reg.metadata_mut().insert(
        "authorization",
        "Bearer client-6f3a8d1c5e9b2074f6a1d8c3e5b97a20"
            .parse()
            .unwrap(),
    );
    assert_eq!(
        w.register(reg).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    c.stop().await;
}

#[test]
fn non_loopback_without_tokens_is_refused() {
    let cfg = CoordinatorConfig::default();
    let e = cfg.validate("0.0.0.0:50051".parse().unwrap()).unwrap_err();
    assert!(e.to_string().contains("without tokens"), "{e}");
    assert!(cfg.validate("127.0.0.1:50051".parse().unwrap()).is_ok());
}

/// SECURITY.md, finding 3: the deploy examples' placeholders and short tokens are refused at
/// startup, with a line that says how to make a good one.
#[test]
fn placeholder_and_short_tokens_are_refused_at_startup() {
    let addr = "0.0.0.0:50051".parse().unwrap();
    let good_worker = "worker-1e7c4a9f2d6b8053e1c7a4f9d2b68e35";
    for (client, want) in [
        ("REPLACE_ME-client-token-openssl-rand-hex-32", "placeholder"),
        ("client-token-0123456789", "at least 32"),
        (
            "abababababababababababababababababab",
            "does not look random",
        ),
    ] {
        let cfg = CoordinatorConfig {
            client_token: Some(client.into()),
            worker_token: Some(good_worker.into()),
            ..CoordinatorConfig::default()
        };
        let e = cfg.validate(addr).unwrap_err().to_string();
        assert!(
            e.contains("POET_CLIENT_TOKEN") && e.contains(want),
            "{client}: {e}"
        );
        assert!(e.contains("openssl rand -hex 32"), "{e}");
    }
    let ok = CoordinatorConfig {
        client_token: Some("client-6f3a8d1c5e9b2074f6a1d8c3e5b97a20".into()),
        worker_token: Some(good_worker.into()),
        ..CoordinatorConfig::default()
    };
    ok.validate(addr).unwrap();
}

#[tokio::test]
async fn orphan_sweep_deletes_blobs_without_a_live_row_and_keeps_the_rest() {
    let c = spawn().await;
    let (_, mut w, _, l) = leased_run(&c, 1, 1).await;
    w.report_epoch(v1::ReportEpochRequest {
        lease: Some(l.clone()),
        epoch: Some(epoch(1, 2.0)),
    })
    .await
    .unwrap();
    let data = b"kept".to_vec();
    w.upload_checkpoint(futures::stream::iter(upload_msgs(
        &l,
        1,
        &data,
        4,
        sha(&data),
    )))
    .await
    .unwrap();
    // A blob left by a coordinator killed between writing it and committing its row.
    let artifacts =
        poet_coordinator::artifacts::Artifacts::open(&c.artifacts.path().display().to_string())
            .unwrap();
    artifacts
        .put(
            "runs/77/epoch-00001-a1-deadbeefdeadbeef.ckpt",
            bytes::Bytes::from_static(b"orphan"),
        )
        .await
        .unwrap();
    // Within the grace period nothing is touched.
    let young = poet_coordinator::retention::sweep_orphans(
        &c.db.pool,
        &artifacts,
        std::time::Duration::from_secs(3600),
    )
    .await
    .unwrap();
    assert_eq!(young.deleted, 0);
    let n = poet_coordinator::retention::sweep_orphans(
        &c.db.pool,
        &artifacts,
        std::time::Duration::ZERO,
    )
    .await
    .unwrap();
    assert_eq!(n.deleted, 1);
    let left = walk(c.artifacts.path());
    assert_eq!(left.len(), 1, "{left:?}");
    let live: String = sqlx::query_scalar("select key from checkpoints where live")
        .fetch_one(&c.db.pool)
        .await
        .unwrap();
    assert!(left[0].ends_with(&live));
    c.stop().await;
}

/// Fetches `/metrics` over plain HTTP and returns each sample as `name{labels}` → value.
async fn scrape(addr: std::net::SocketAddr, path: &str) -> (String, Vec<(String, f64)>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut text = String::new();
    sock.read_to_string(&mut text).await.unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.lines().next().unwrap().to_string();
    if !status.contains("200") {
        return (status, Vec::new());
    }
    let samples = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse::<f64>().unwrap())
        })
        .collect();
    (status, samples)
}

/// A pool of one connection on a fresh database (the test then holds it to starve scrapes).
async fn one_connection_pool() -> (poet_sql::testing::TestDb, sqlx::PgPool) {
    let db = poet_sql::testing::fresh_db().await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(30))
        .connect(&db.url)
        .await
        .unwrap();
    (db, pool)
}

/// SECURITY.md, finding 5: scrapes read runs by state from a cache, so a pool with no free
/// connection (the state concurrent scrapes used to drive it into) does not stall them.
#[tokio::test]
async fn metrics_scrapes_answer_from_the_cache_when_the_pool_is_exhausted() {
    let (_db, pool) = one_connection_pool().await;
    let metrics = std::sync::Arc::new(poet_coordinator::metrics::Metrics::default());
    let first = metrics.render(&pool).await;
    assert!(first.contains("# TYPE poet_runs gauge"), "{first}");
    let held = pool.acquire().await.unwrap();
    let scrapes = futures::future::join_all((0..20).map(|_| metrics.render(&pool)));
    let texts = tokio::time::timeout(std::time::Duration::from_secs(2), scrapes)
        .await
        .expect("scrapes waited for a database connection");
    assert!(texts.iter().all(|t| t == &texts[0]));
    drop(held);
}

/// SECURITY.md, finding 5: scrapes beyond the cap get no answer but "busy" at once. Four
/// scrapes wait on a refresh that cannot get a database connection; the fifth is refused
/// without waiting, and once they are done a scrape is served again.
#[tokio::test]
async fn metrics_scrapes_beyond_the_cap_are_refused_at_once() {
    use poet_coordinator::metrics::{MAX_CONCURRENT_SCRAPES, Metrics};
    let (_db, pool) = one_connection_pool().await;
    // No cache: every scrape refreshes, and the refresh waits for the one connection.
    let metrics = std::sync::Arc::new(Metrics::with_cache(std::time::Duration::ZERO));
    let held = pool.acquire().await.unwrap();
    let mut waiting = Vec::new();
    for _ in 0..MAX_CONCURRENT_SCRAPES {
        let (m, p) = (metrics.clone(), pool.clone());
        waiting.push(tokio::spawn(async move { m.try_render(&p).await }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let t = std::time::Instant::now();
    assert!(
        metrics.try_render(&pool).await.is_none(),
        "a fifth scrape was served"
    );
    assert!(
        t.elapsed() < std::time::Duration::from_millis(100),
        "and refused at once"
    );
    drop(held);
    for w in waiting {
        assert!(w.await.unwrap().is_some());
    }
    assert!(metrics.try_render(&pool).await.is_some());
}

#[test]
fn metrics_off_loopback_without_tokens_is_refused() {
    let cfg = CoordinatorConfig {
        metrics_listen: Some("0.0.0.0:9464".parse().unwrap()),
        ..CoordinatorConfig::default()
    };
    let e = cfg
        .validate("127.0.0.1:50051".parse().unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("refusing to serve metrics"), "{e}");
}

#[tokio::test]
async fn metrics_endpoint_counts_runs_leases_reports_fencing_and_latency() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let c = spawn_with(
        None,
        CoordinatorConfig {
            metrics_listen: Some(port),
            ..fast_config()
        },
    )
    .await;
    let (_client, mut w, _wid, lease) = leased_run(&c, 3, 2).await;
    w.report_epoch(v1::ReportEpochRequest {
        lease: Some(lease.clone()),
        epoch: Some(epoch(1, 2.0)),
    })
    .await
    .unwrap();
    let stale = v1::Lease {
        lease_id: uuid::Uuid::new_v4().to_string(),
        ..lease.clone()
    };
    let fenced = w
        .report_epoch(v1::ReportEpochRequest {
            lease: Some(stale),
            epoch: Some(epoch(2, 1.0)),
        })
        .await
        .unwrap_err();
    assert_eq!(fenced.code(), Code::FailedPrecondition);

    let (status, samples) = scrape(port, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let get = |k: &str| {
        samples
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no sample {k} in {samples:?}"))
    };
    assert_eq!(get("poet_runs{state=\"queued\"}"), 2.0);
    assert_eq!(get("poet_runs{state=\"running\"}"), 1.0);
    assert_eq!(get("poet_leases_total"), 1.0);
    assert_eq!(get("poet_epochs_reported_total"), 1.0);
    assert_eq!(get("poet_fenced_writes_total"), 1.0);
    assert_eq!(get("poet_lease_expiries_total"), 0.0);
    // Two ReportEpoch calls were timed; the buckets are cumulative and end at the count.
    let report_buckets: Vec<f64> = samples
        .iter()
        .filter(|(k, _)| {
            k.starts_with("poet_rpc_duration_seconds_bucket{")
                && k.contains("method=\"ReportEpoch\"")
        })
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(report_buckets.len(), 13, "12 bounds and +Inf: {samples:?}");
    assert!(
        report_buckets.windows(2).all(|w| w[0] <= w[1]),
        "{report_buckets:?}"
    );
    assert_eq!(*report_buckets.last().unwrap(), 2.0);
    assert_eq!(
        get("poet_rpc_duration_seconds_count{method=\"ReportEpoch\"}"),
        2.0
    );
    assert!(get("poet_rpc_duration_seconds_sum{method=\"ReportEpoch\"}") > 0.0);

    let (status, _) = scrape(port, "/elsewhere").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    c.stop().await;
}

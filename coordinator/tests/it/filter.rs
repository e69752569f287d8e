//! `ListRuns` with a filter, an order and page tokens, over real gRPC, on runs trained
//! (simulated) through the worker protocol: every answer is checked against the same question
//! asked of the known data in Rust. Malformed input is INVALID_ARGUMENT with the column; keys
//! and values that try SQL injection stay data.

use std::cmp::Ordering;

use poet_core::filter::{self, Cmp, Expr, Field, Filter, Op, Order, Param};
use poet_proto::v1;
use serde_json::{Value, json};
use tonic::Code;

use crate::helpers::{Client, POEMS, TestCoordinator, lease_one, register, seed_dataset, spawn};

/// A metrics key and a value built to break out of SQL quoting, if anything quoted them.
const EVIL_KEY: &str = "x'); drop table runs; --";
const EVIL_VALUE: &str = "a'b\"c";
/// The sweep's name: a quote, a double quote, a statement.
const SWEEP_NAME: &str = "grid o'hara\"); drop table runs; --";

/// What a run is after seeding, to ask the same questions of in Rust.
struct Sim {
    id: i64,
    layers: i64,
    formulation: String,
    state: &'static str,
    /// Validation loss of each reported epoch.
    val: Vec<f64>,
    duration: Vec<f64>,
    chars_per_sec: Vec<f64>,
    metrics: Vec<Value>,
    /// Host of the worker that leased it.
    host: Option<String>,
    worker_id: Option<i64>,
    /// When it was leased, from `ListRuns`.
    started: Option<(i64, i32)>,
}

impl Sim {
    fn best(&self) -> Option<f64> {
        self.val.iter().copied().reduce(f64::min)
    }

    fn last_val(&self) -> Option<f64> {
        self.val.last().copied()
    }

    fn duration(&self) -> Option<f64> {
        (!self.duration.is_empty()).then(|| self.duration.iter().fold(0.0, |a, b| a + b))
    }

    fn cps(&self) -> Option<f64> {
        self.chars_per_sec.last().copied()
    }

    fn metric(&self, k: &str) -> Option<Value> {
        self.metrics.last().and_then(|m| m.get(k).cloned())
    }
}

/// Six runs of one sweep (layers 1..3 × keras/seq, 3 epochs): four trained and completed,
/// one running after one epoch, one still queued. Runs 0 and 2 have the same curve (a tie
/// on every loss). Workers alternate between two hosts.
async fn seeded() -> (TestCoordinator, Vec<Sim>, i64) {
    let c = spawn().await;
    seed_dataset(&c.db.pool, "tiny", POEMS).await;
    let mut client = c.client();
    let spec = "dataset = \"tiny\"\nmax_attempts = 2\n[base]\nunits = 8\nseq_len = 16\nepochs = 3\n\
                [grid]\nlayers = [1, 2, 3]\nformulation = [\"keras\", \"seq\"]\n";
    let sweep_id = client
        .submit_sweep(v1::SubmitSweepRequest {
            spec: spec.into(),
            name: SWEEP_NAME.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sweep
        .unwrap()
        .id;
    let mut sims: Vec<Sim> = list(&mut client, "", "id", 100)
        .await
        .iter()
        .map(|r| {
            let cfg: Value = serde_json::from_str(&r.config_json).unwrap();
            Sim {
                id: r.id,
                layers: cfg["layers"].as_i64().unwrap(),
                formulation: cfg["formulation"].as_str().unwrap().to_string(),
                state: "queued",
                val: vec![],
                duration: vec![],
                chars_per_sec: vec![],
                metrics: vec![],
                host: None,
                worker_id: None,
                started: None,
            }
        })
        .collect();
    assert_eq!(sims.len(), 6);
    let bases = [2.0, 2.3, 2.0, 1.8, 2.6];
    let epochs = [3, 3, 3, 3, 1];
    let mut w = c.worker();
    for (i, sim) in sims.iter_mut().take(5).enumerate() {
        let host = format!("host-{}", i % 2);
        let wid = register(&mut w, &host).await;
        let lease = lease_one(&mut w, wid).await;
        assert_eq!(lease.run_id, sim.id, "runs are leased in id order");
        for e in 1..=epochs[i] {
            let val = bases[i] - 0.1 * e as f64;
            let mut metrics = json!({"val_bpc": val * std::f64::consts::LOG2_E, "tag": format!("e{e}"), "better": e > 1});
            if i == 0 && e == epochs[i] {
                metrics[EVIL_KEY] = json!(EVIL_VALUE);
            }
            let (duration, cps) = (1.5 + i as f64, 1000.0 * e as f64 + i as f64);
            w.report_epoch(v1::ReportEpochRequest {
                lease: Some(lease.clone()),
                epoch: Some(v1::Epoch {
                    epoch: e,
                    train_loss: val - 0.05,
                    val_loss: val,
                    duration_s: duration,
                    chars_per_sec: cps,
                    metrics_json: metrics.to_string(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
            sim.val.push(val);
            sim.duration.push(duration);
            sim.chars_per_sec.push(cps);
            sim.metrics.push(metrics);
        }
        sim.state = "running";
        if epochs[i] == 3 {
            w.complete_run(v1::CompleteRunRequest { lease: Some(lease) })
                .await
                .unwrap();
            sim.state = "succeeded";
        }
        sim.host = Some(host);
        sim.worker_id = Some(wid.id);
    }
    for r in list(&mut client, "", "id", 100).await {
        let sim = sims.iter_mut().find(|s| s.id == r.id).unwrap();
        sim.started = r.started_at.map(|t| (t.seconds, t.nanos));
    }
    (c, sims, sweep_id)
}

/// Every run the filter matches, in `order`, fetched `page_size` at a time through the page
/// tokens.
async fn list(client: &mut Client, filter: &str, order: &str, page_size: i32) -> Vec<v1::Run> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_runs(v1::ListRunsRequest {
                filter: filter.into(),
                order_by: order.into(),
                page_size,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{filter} / {order}: {e}"))
            .into_inner();
        assert!(page.runs.len() <= page_size as usize);
        out.extend(page.runs);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

async fn ids(client: &mut Client, filter: &str) -> Vec<i64> {
    list(client, filter, "id", 1000)
        .await
        .iter()
        .map(|r| r.id)
        .collect()
}

type Pred = Box<dyn Fn(&Sim) -> bool>;

#[tokio::test]
async fn filters_answer_what_the_data_says() {
    let (c, sims, sweep_id) = seeded().await;
    let mut client = c.client();
    let host1_worker = sims[1].worker_id.unwrap();
    let (first, last) = (sims[0].id, sims[5].id);
    let cases: Vec<(String, Pred)> = vec![
        (
            "layers >= 2 and best_val_loss < 2.15 and formulation = 'seq'".into(),
            Box::new(|r| {
                r.layers >= 2 && r.best().is_some_and(|b| b < 2.15) && r.formulation == "seq"
            }),
        ),
        ("config.layers = 2.0".into(), Box::new(|r| r.layers == 2)),
        (
            "formulation != 'keras'".into(),
            Box::new(|r| r.formulation != "keras"),
        ),
        (
            "layers != 'x' or formulation > 2".into(),
            Box::new(|_| false),
        ),
        ("not (layers = 1)".into(), Box::new(|r| r.layers != 1)),
        (
            "formulation >= 'l'".into(),
            Box::new(|r| r.formulation.as_str() >= "l"),
        ),
        (
            "best_val_loss >= 0".into(),
            Box::new(|r| r.best().is_some()),
        ),
        (
            "not best_val_loss >= 0".into(),
            Box::new(|r| r.best().is_none()),
        ),
        (
            "min_val_loss < 1.8".into(),
            Box::new(|r| r.best().is_some_and(|b| b < 1.8)),
        ),
        (
            "last_val_loss > 2.3".into(),
            Box::new(|r| r.last_val().is_some_and(|v| v > 2.3)),
        ),
        ("epochs_done = 3".into(), Box::new(|r| r.val.len() == 3)),
        ("epochs_done < 3".into(), Box::new(|r| r.val.len() < 3)),
        (
            "duration_s > 7".into(),
            Box::new(|r| r.duration().is_some_and(|d| d > 7.0)),
        ),
        (
            "chars_per_sec >= 3002".into(),
            Box::new(|r| r.cps().is_some_and(|v| v >= 3002.0)),
        ),
        (
            "metrics.val_bpc < 2.7".into(),
            Box::new(|r| {
                r.metric("val_bpc")
                    .is_some_and(|v| v.as_f64().unwrap() < 2.7)
            }),
        ),
        (
            "metrics.tag = 'e3'".into(),
            Box::new(|r| r.metric("tag") == Some(json!("e3"))),
        ),
        (
            "metrics.tag in ('e1', \"e2\")".into(),
            Box::new(|r| matches!(r.metric("tag"), Some(t) if t == "e1" || t == "e2")),
        ),
        (
            "metrics.better = true".into(),
            Box::new(|r| r.metric("better") == Some(json!(true))),
        ),
        (
            "metrics.better != true".into(),
            Box::new(|r| r.metric("better") == Some(json!(false))),
        ),
        ("metrics.nope = 1".into(), Box::new(|_| false)),
        ("not metrics.nope = 1".into(), Box::new(|_| true)),
        (
            "state = 'succeeded'".into(),
            Box::new(|r| r.state == "succeeded"),
        ),
        (
            "state in ('running', 'queued')".into(),
            Box::new(|r| r.state == "running" || r.state == "queued"),
        ),
        (
            "state not in ('succeeded')".into(),
            Box::new(|r| r.state != "succeeded"),
        ),
        (
            "worker = 'host-0'".into(),
            Box::new(|r| r.host.as_deref() == Some("host-0")),
        ),
        (
            format!("worker = {host1_worker}"),
            Box::new(move |r| r.worker_id == Some(host1_worker)),
        ),
        (
            "worker != 'host-0'".into(),
            Box::new(|r| r.host.as_deref() != Some("host-0")),
        ),
        (format!("sweep = {sweep_id}"), Box::new(|_| true)),
        (
            format!("sweep = '{}'", SWEEP_NAME.replace('\'', "''")),
            Box::new(|_| true),
        ),
        ("sweep = 999 or sweep = 'nope'".into(), Box::new(|_| false)),
        ("dataset = 'tiny'".into(), Box::new(|_| true)),
        (
            "dataset = 'nope' or dataset != 'tiny'".into(),
            Box::new(|_| false),
        ),
        (
            "created_at >= '2000-01-01' and created_at < '2100-01-01T00:00:00Z'".into(),
            Box::new(|_| true),
        ),
        (
            "started_at >= '2000-01-01 00:00'".into(),
            Box::new(|r| r.host.is_some()),
        ),
        (
            "finished_at > '2000-01-01'".into(),
            Box::new(|r| r.state == "succeeded"),
        ),
        (
            format!("id in ({first}, {last})"),
            Box::new(move |r| r.id == first || r.id == last),
        ),
        (
            "(layers = 1 or layers = 3) AND NOT formulation = 'seq' or state = 'queued'".into(),
            Box::new(|r| {
                (r.layers == 1 || r.layers == 3) && r.formulation != "seq" || r.state == "queued"
            }),
        ),
    ];
    for (f, pred) in &cases {
        let want: Vec<i64> = sims.iter().filter(|r| pred(r)).map(|r| r.id).collect();
        assert_eq!(ids(&mut client, f).await, want, "{f}");
    }
    // The request's typed fields join the filter by `and`, the old config pairs included.
    let r = client
        .list_runs(v1::ListRunsRequest {
            sweep_id,
            state: v1::RunState::Succeeded as i32,
            config: [("formulation".to_string(), "seq".to_string())].into(),
            filter: "layers >= 2".into(),
            order_by: "id".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let want: Vec<i64> = sims
        .iter()
        .filter(|s| s.state == "succeeded" && s.formulation == "seq" && s.layers >= 2)
        .map(|s| s.id)
        .collect();
    assert_eq!(r.runs.iter().map(|r| r.id).collect::<Vec<_>>(), want);
    c.stop().await;
}

/// A sort key value as the test compares it.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum K {
    N(f64),
    S(String),
    T((i64, i32)),
}

/// The expected order: by key (missing last), ties by id, both reversed for descending.
fn expected(sims: &[Sim], key: &dyn Fn(&Sim) -> Option<K>, desc: bool) -> Vec<i64> {
    let mut v: Vec<(Option<K>, i64)> = sims.iter().map(|s| (key(s), s.id)).collect();
    v.sort_by(|a, b| match (&a.0, &b.0) {
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (x, y) => {
            let o = x.partial_cmp(y).unwrap().then(a.1.cmp(&b.1));
            if desc { o.reverse() } else { o }
        }
    });
    v.into_iter().map(|(_, id)| id).collect()
}

type Key = Box<dyn Fn(&Sim) -> Option<K>>;

#[tokio::test]
async fn orders_page_through_every_run_once_in_a_total_order() {
    let (c, sims, _) = seeded().await;
    let mut client = c.client();
    let cases: Vec<(&str, Key, bool)> = vec![
        ("best_val_loss", Box::new(|s| s.best().map(K::N)), false),
        ("-best_val_loss", Box::new(|s| s.best().map(K::N)), true),
        ("min_val_loss:desc", Box::new(|s| s.best().map(K::N)), true),
        ("last_val_loss", Box::new(|s| s.last_val().map(K::N)), false),
        ("layers", Box::new(|s| Some(K::N(s.layers as f64))), false),
        (
            "config.layers:desc",
            Box::new(|s| Some(K::N(s.layers as f64))),
            true,
        ),
        (
            "-config.formulation",
            Box::new(|s| Some(K::S(s.formulation.clone()))),
            true,
        ),
        (
            "metrics.val_bpc:desc",
            Box::new(|s| s.metric("val_bpc").map(|v| K::N(v.as_f64().unwrap()))),
            true,
        ),
        (
            "metrics.tag",
            Box::new(|s| s.metric("tag").map(|v| K::S(v.as_str().unwrap().into()))),
            false,
        ),
        ("duration_s", Box::new(|s| s.duration().map(K::N)), false),
        ("duration", Box::new(|s| s.duration().map(K::N)), true),
        ("-chars_per_sec", Box::new(|s| s.cps().map(K::N)), true),
        (
            "epochs_done",
            Box::new(|s| Some(K::N(s.val.len() as f64))),
            false,
        ),
        ("created", Box::new(|s| Some(K::N(s.id as f64))), true),
        ("", Box::new(|s| Some(K::N(s.id as f64))), true),
        ("state", Box::new(|s| Some(K::S(s.state.into()))), false),
        ("-started_at", Box::new(|s| s.started.map(K::T)), true),
        (
            "-metrics.\"x'); drop table runs; --\"",
            Box::new(|s| s.metric(EVIL_KEY).map(|v| K::S(v.as_str().unwrap().into()))),
            true,
        ),
    ];
    for (order, key, desc) in &cases {
        let want = expected(&sims, key.as_ref(), *desc);
        for page_size in [1, 2, 4, 1000] {
            let got: Vec<i64> = list(&mut client, "", order, page_size)
                .await
                .iter()
                .map(|r| r.id)
                .collect();
            assert_eq!(got, want, "order {order:?}, pages of {page_size}");
        }
    }
    // With a filter: the token carries on within the filtered set.
    let got: Vec<i64> = list(&mut client, "best_val_loss < 2.5", "best_val_loss", 1)
        .await
        .iter()
        .map(|r| r.id)
        .collect();
    let subset: Vec<Sim> = sims
        .into_iter()
        .filter(|s| s.best().is_some_and(|b| b < 2.5))
        .collect();
    assert_eq!(got, expected(&subset, &|s| s.best().map(K::N), false));
    c.stop().await;
}

#[tokio::test]
async fn malformed_filters_orders_and_tokens_are_invalid_argument_with_the_column() {
    let (c, _sims, _) = seeded().await;
    let mut client = c.client();
    let call = |filter: &str, order: &str, token: &str| v1::ListRunsRequest {
        filter: filter.into(),
        order_by: order.into(),
        page_token: token.into(),
        page_size: 1,
        ..Default::default()
    };
    let e = client
        .list_runs(call("layers >= 2 and best_val_los < 1.9", "", ""))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(
        e.message(),
        "filter: unknown field 'best_val_los' (fields: config keys such as layers or config.units, \
         id, epochs_done, epochs_total, best_val_loss, min_val_loss, last_val_loss, last_train_loss, \
         duration_s, chars_per_sec, created_at, started_at, finished_at, state, sweep, dataset, \
         worker, tag, tags, metrics.<key>) at column 17\n  layers >= 2 and best_val_los < 1.9\n                  ^"
    );
    for (req, needle) in [
        (call("layers >=", "", ""), "filter: expected a value"),
        (call("", "loss", ""), "order_by: unknown field 'loss'"),
        (
            call("", "sweep", ""),
            "order_by: runs cannot be ordered by sweep",
        ),
        (
            call("", "", "zzz"),
            "page_token: not a token from a previous page",
        ),
        (
            call("", "", "50"),
            "page_token: not a token from a previous page",
        ),
    ] {
        let e = client.list_runs(req).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{needle}: {e:?}");
        assert!(e.message().starts_with(needle), "{needle}: {}", e.message());
    }
    // A token is tied to its filter and order.
    let token = client
        .list_runs(call("layers >= 1", "best_val_loss", ""))
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    assert!(!token.is_empty());
    for (f, o) in [
        ("layers >= 2", "best_val_loss"),
        ("layers >= 1", "-best_val_loss"),
    ] {
        let e = client.list_runs(call(f, o, &token)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
    }
    client
        .list_runs(call("layers >= 1", "best_val_loss", &token))
        .await
        .unwrap();
    // The old config pairs still refuse an unknown key.
    let e = client
        .list_runs(v1::ListRunsRequest {
            config: [(EVIL_KEY.to_string(), "1".to_string())].into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    c.stop().await;
}

#[tokio::test]
async fn sql_injection_through_keys_and_values_is_only_data() {
    let (c, sims, _) = seeded().await;
    let mut client = c.client();
    let pool = &c.db.pool;
    // Through gRPC: a metrics key and values with quotes match exactly the run that has them.
    for f in [
        format!("metrics.\"{EVIL_KEY}\" = 'a''b\"c'"),
        format!("metrics.\"{EVIL_KEY}\" = \"a'b\"\"c\""),
        format!("metrics.\"{EVIL_KEY}\" >= 'a' and metrics.\"{EVIL_KEY}\" != 'x'"),
        format!("metrics.\"{EVIL_KEY}\" in ('x''); drop table runs; --', 'a''b\"c')"),
    ] {
        assert_eq!(ids(&mut client, &f).await, vec![sims[0].id], "{f}");
    }
    assert_eq!(
        ids(&mut client, "formulation = 'seq''); drop table runs; --'").await,
        Vec::<i64>::new()
    );
    assert_eq!(
        ids(
            &mut client,
            &format!("sweep = '{}'", SWEEP_NAME.replace('\'', "''"))
        )
        .await
        .len(),
        6
    );
    let r = client
        .list_runs(v1::ListRunsRequest {
            config: [(
                "formulation".to_string(),
                "\"seq'); drop table runs; --\"".to_string(),
            )]
            .into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.runs.is_empty());

    // Straight at Postgres, past the parser's allow-list of config keys: the key is bound.
    let evil = Expr::Cmp(Cmp {
        field: Field::Config(EVIL_KEY.into()),
        op: Op::Ne,
        value: Param::Json(json!(EVIL_VALUE)),
    });
    let layers2 = Filter::parse("layers = 2").unwrap().0.unwrap();
    let f = Filter(Some(Expr::Or(vec![evil, layers2])));
    for order in [
        Order::parse("id").unwrap(),
        Order {
            key: filter::SortKey::Config(EVIL_KEY.into()),
            desc: true,
        },
    ] {
        let compiled = filter::compile(&f, &order, None);
        let sql = format!(
            "select r.id from runs r where {} order by {}",
            compiled.where_sql, compiled.order_sql
        );
        assert!(!sql.contains("drop"), "{sql}");
        let q = sqlx::query_scalar_with::<_, i64, _>(
            &sql,
            poet_coordinator::history::arguments(compiled.params.into_vec()),
        );
        let mut got = q.fetch_all(pool).await.unwrap();
        got.sort();
        let want: Vec<i64> = sims
            .iter()
            .filter(|s| s.layers == 2)
            .map(|s| s.id)
            .collect();
        assert_eq!(got, want, "{sql}");
    }

    // The table is intact: every run, every epoch.
    let (runs, epochs): (i64, i64) =
        sqlx::query_as("select (select count(*) from runs), (select count(*) from epochs)")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!((runs, epochs), (6, 13));
    c.stop().await;
}

#[tokio::test]
async fn summaries_follow_reports_and_discarded_epochs() {
    let (c, sims, _) = seeded().await;
    let pool = &c.db.pool;
    let summary = |id: i64| async move {
        sqlx::query_as::<_, (Option<f64>, Option<f64>, Option<Value>)>(
            "select total_duration_s, last_chars_per_sec, last_metrics from runs where id = $1",
        )
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
    };
    for s in &sims {
        assert_eq!(
            summary(s.id).await,
            (s.duration(), s.cps(), s.metrics.last().cloned()),
            "run {}",
            s.id
        );
    }
    // The queued run: two epochs, then handed back with no checkpoint, so the next claim
    // discards both epochs and recomputes the summaries from what is left (nothing).
    let queued = sims[5].id;
    let mut w = c.worker();
    let wid = register(&mut w, "host-9").await;
    let lease = lease_one(&mut w, wid).await;
    assert_eq!(lease.run_id, queued);
    for (e, d) in [(1, 0.25), (2, 0.5)] {
        w.report_epoch(v1::ReportEpochRequest {
            lease: Some(lease.clone()),
            epoch: Some(v1::Epoch {
                epoch: e,
                train_loss: 2.0,
                val_loss: 2.1,
                duration_s: d,
                chars_per_sec: 10.0 * e as f64,
                metrics_json: format!("{{\"step\": {e}}}"),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    }
    assert_eq!(
        summary(queued).await,
        (Some(0.75), Some(20.0), Some(json!({"step": 2})))
    );
    w.fail_run(v1::FailRunRequest {
        lease: Some(lease),
        reason: "shutting down".into(),
        release: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let again = lease_one(&mut w, wid).await;
    assert_eq!(again.run_id, queued);
    assert_eq!(summary(queued).await, (None, None, None));
    c.stop().await;
}

/// Tags over gRPC: tagged with the caller's identity (an issued client token's name) and the
/// time, found by `tag = ...`, `tags in (...)` and `not tag = ...` (a semi-join on `run_tags`),
/// shown on the run, its sweep and ListRuns; an untag of a tag the run lacks removes nothing;
/// bad tags, unknown runs and a worker token are refused.
#[tokio::test]
async fn tags_are_filtered_on_and_carry_their_author() {
    let (c, sims, sweep_id) = seeded().await;
    let mut client = c.client();
    let tag = |id: i64, tags: &[&str]| v1::TagRequest {
        id,
        tags: tags.iter().map(|t| t.to_string()).collect(),
    };
    let a = client
        .tag_run(tag(
            sims[0].id,
            &["baseline", "o'hara\"); drop table runs; --"],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.tags.len(), 2);
    client.tag_run(tag(sims[2].id, &["seq"])).await.unwrap();
    client
        .tag_run(tag(sims[3].id, &["baseline", "seq"]))
        .await
        .unwrap();
    // Tagging twice changes nothing.
    client.tag_run(tag(sims[3].id, &["seq"])).await.unwrap();

    let (r0, r2, r3) = (sims[0].id, sims[2].id, sims[3].id);
    let others: Vec<i64> = sims
        .iter()
        .map(|s| s.id)
        .filter(|i| *i != r0 && *i != r3)
        .collect();
    for (f, want) in [
        ("tag = 'baseline'", vec![r0, r3]),
        ("tags = 'seq'", vec![r2, r3]),
        ("tags in ('seq', 'baseline')", vec![r0, r2, r3]),
        ("tag = 'baseline' and tag = 'seq'", vec![r3]),
        ("tag = 'o''hara\"); drop table runs; --'", vec![r0]),
        ("tag = 'none'", vec![]),
        ("not tag = 'baseline'", others.clone()),
        ("tag != 'baseline'", others),
    ] {
        assert_eq!(ids(&mut client, f).await, want, "{f}");
    }
    let listed = list(&mut client, "tag = 'baseline'", "id", 10).await;
    assert_eq!(
        listed[1].tags,
        vec!["baseline".to_string(), "seq".to_string()]
    );

    // Untag: all or nothing.
    let e = client
        .untag_run(tag(r3, &["seq", "never"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(
        e.message()
            .contains(&format!("run {r3} has no tag \"never\"")),
        "{e:?}"
    );
    let a = client
        .untag_run(tag(r3, &["seq"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.tags, vec!["baseline".to_string()]);
    assert_eq!(ids(&mut client, "tags = 'seq'").await, vec![r2]);

    // Bad input names what is wrong.
    for (req, code, want) in [
        (tag(r0, &[""]), Code::InvalidArgument, "tag \"\""),
        (
            tag(r0, &["a\nb"]),
            Code::InvalidArgument,
            "control characters",
        ),
        (tag(r0, &[]), Code::InvalidArgument, "at least one tag"),
        (tag(999_999, &["a"]), Code::NotFound, "no run 999999"),
    ] {
        let e = client.tag_run(req).await.unwrap_err();
        assert_eq!(e.code(), code, "{e:?}");
        assert!(e.message().contains(want), "{want}: {e:?}");
    }
    let e = client
        .note_sweep(v1::NoteRequest {
            id: sweep_id,
            text: "x".repeat(10_001),
        })
        .await
        .unwrap_err();
    assert!(
        e.message()
            .contains("note: 10001 characters is over the limit of 10000"),
        "{e:?}"
    );

    // Sweeps: tags and notes show in GetSweep.
    client.tag_sweep(tag(sweep_id, &["grid"])).await.unwrap();
    client
        .note_sweep(v1::NoteRequest {
            id: sweep_id,
            text: "first look".into(),
        })
        .await
        .unwrap();
    let s = client
        .get_sweep(v1::GetSweepRequest { sweep_id })
        .await
        .unwrap()
        .into_inner()
        .sweep
        .unwrap();
    assert_eq!(s.tags, vec!["grid".to_string()]);
    assert_eq!(
        (s.notes[0].text.as_str(), s.notes[0].author.as_str()),
        ("first look", "client")
    );

    // Orders cannot use tags (a run has several).
    let e = client
        .list_runs(v1::ListRunsRequest {
            order_by: "tag".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("cannot be ordered by tag"), "{e:?}");
}

/// With tokens on, the author is the issued token's name (or the role of a static token), the
/// time is the server's, and a worker token cannot tag.
#[tokio::test]
async fn tags_and_notes_store_the_callers_identity() {
    let c = poet_coordinator::testing::TestCoordinator::start(
        poet_coordinator::testing::fast_config(),
        Some((
            "client-5d2e8b1f9a7c3064e1b8d2f5a9c7e043",
            "worker-8e4a2c6f1b9d7053a2e6c4f8b1d9a276",
        )),
    )
    .await;
    seed_dataset(&c.db.pool, "tiny", POEMS).await;
    let mut client = c.client();
    client
        .submit_sweep(v1::SubmitSweepRequest {
            spec: crate::helpers::spec("tiny", 1, 2),
            ..Default::default()
        })
        .await
        .unwrap();
    let run = list(&mut client, "", "id", 10).await[0].id;
    let (issued, _) = poet_coordinator::auth::issue_token(
        &c.db.pool,
        poet_coordinator::auth::Role::Client,
        "alice",
    )
    .await
    .unwrap();
    let mut alice = poet_proto::client::Connect::new(c.url(), Some(&issued))
        .client(c.channel())
        .unwrap();
    let before = chrono::Utc::now().timestamp() - 5;
    // Accepted once a refresh has seen it (every two seconds).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let a = loop {
        match alice
            .note_run(v1::NoteRequest {
                id: run,
                text: "from alice".into(),
            })
            .await
        {
            Ok(a) => break a.into_inner(),
            Err(e) if e.code() == Code::Unauthenticated && std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await
            }
            Err(e) => panic!("{e:?}"),
        }
    };
    client
        .note_run(v1::NoteRequest {
            id: run,
            text: "from the static token".into(),
        })
        .await
        .unwrap();
    let notes = client
        .get_run(v1::GetRunRequest { run_id: run })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap()
        .notes;
    assert_eq!(a.notes.len(), 1);
    let who: Vec<(&str, &str)> = notes
        .iter()
        .map(|n| (n.text.as_str(), n.author.as_str()))
        .collect();
    assert_eq!(
        who,
        vec![("from alice", "alice"), ("from the static token", "client")]
    );
    let at = notes[0].at.unwrap().seconds;
    assert!(
        at >= before && at <= chrono::Utc::now().timestamp() + 5,
        "{at}"
    );

    let mut worker_as_client =
        poet_proto::client::Connect::new(c.url(), Some("worker-8e4a2c6f1b9d7053a2e6c4f8b1d9a276"))
            .client(c.channel())
            .unwrap();
    let e = worker_as_client
        .tag_run(v1::TagRequest {
            id: run,
            tags: vec!["x".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let n: i64 = sqlx::query_scalar("select count(*) from run_tags")
        .fetch_one(&c.db.pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
}

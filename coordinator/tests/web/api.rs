//! The JSON API over real HTTP: every endpoint with data, unknown ids, bad ids, unknown
//! paths, tokens (missing 401, wrong 401, worker 403, client via header or cookie), the
//! `?token=` cookie exchange and the login form, and read-only methods.

use poet_proto::v1;
use reqwest::StatusCode;
use serde_json::Value;

use crate::stack::{CLIENT_TOKEN, Stack, WORKER_TOKEN, seed};

async fn get(url: &str) -> (StatusCode, Value) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn error_message(v: &Value) -> &str {
    v["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error document: {v}"))
}

#[tokio::test]
async fn every_endpoint_answers_with_the_seeded_stack() {
    let s = Stack::spawn(false).await;
    let seeded = seed(&s, 3, |i| [4, 2, 0][i]).await;

    let (st, sweeps) = get(&s.url("/api/v1/sweeps")).await;
    assert_eq!(st, StatusCode::OK);
    let sw = &sweeps.as_array().unwrap()[0];
    assert_eq!(sw["id"], seeded.sweep_id);
    assert_eq!(sw["name"], "units-sweep");
    assert_eq!(sw["run_count"], 3);
    assert_eq!(sw["counts"]["running"], 3);
    assert_eq!(
        sw["best_run_id"], seeded.runs[0],
        "run 0 trained longest, so it is best: {sw}"
    );
    let best = sw["best_val_loss"].as_f64().unwrap();
    assert!((best - crate::stack::epoch(4, 0).val_loss).abs() < 1e-9);

    let (st, detail) = get(&s.url(&format!("/api/v1/sweeps/{}", seeded.sweep_id))).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(detail["runs"].as_array().unwrap().len(), 3);
    assert_eq!(detail["varying"], serde_json::json!(["units"]));
    assert_eq!(detail["runs"][0]["config"]["units"], 8);
    assert_eq!(detail["runs"][1]["epochs_done"], 2);
    assert!(
        detail["runs"][2]["best_val_loss"].is_null(),
        "no epoch yet is null, not NaN"
    );

    let (st, curves) = get(&s.url(&format!("/api/v1/sweeps/{}/curves", seeded.sweep_id))).await;
    assert_eq!(st, StatusCode::OK);
    let cs = curves["curves"].as_array().unwrap();
    assert_eq!(cs.len(), 2, "runs without epochs have no curve");
    assert_eq!(cs[0]["epochs"], serde_json::json!([1, 2, 3, 4]));
    assert_eq!(cs[1]["val"].as_array().unwrap().len(), 2);
    // The other x axes: characters seen is chars/s x seconds summed (52,000 x 1.5 an epoch);
    // wall time grows from the run's start and never goes back.
    assert_eq!(
        cs[0]["chars"],
        serde_json::json!([78000.0, 156000.0, 234000.0, 312000.0])
    );
    let wall: Vec<f64> = serde_json::from_value(cs[0]["wall_s"].clone()).unwrap();
    assert_eq!(wall.len(), 4);
    assert!(
        wall[0] >= 0.0 && wall.windows(2).all(|w| w[0] <= w[1]),
        "{wall:?}"
    );

    let (st, run) = get(&s.url(&format!("/api/v1/runs/{}", seeded.runs[0]))).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(run["run"]["state"], "running");
    assert_eq!(run["epochs"].as_array().unwrap().len(), 4);
    assert_eq!(run["epochs"][0]["metrics"]["lr"], 0.002);
    assert_eq!(run["attempts"][0]["worker_host"], "gpu-host-0");
    assert_eq!(run["checkpoints"][0]["best"], true);
    let g = &run["generations"][0];
    assert_eq!(g["state"], "done");
    let poems = g["poems"].as_array().unwrap();
    assert_eq!(poems.len(), 2);
    let copied: Vec<&str> = poems[0]["segments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["copied"] == true)
        .map(|s| s["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        copied,
        vec!["Under the hill the old roads sleep"],
        "{}",
        poems[0]
    );
    assert!(
        poems[1]["segments"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["copied"] == false)
    );

    let (st, workers) = get(&s.url("/api/v1/workers")).await;
    assert_eq!(st, StatusCode::OK);
    let ws = workers.as_array().unwrap();
    assert_eq!(ws.len(), 3);
    let w0 = ws.iter().find(|w| w["id"] == seeded.worker_ids[0]).unwrap();
    assert_eq!(
        (w0["gpu_name"].as_str(), w0["device"].as_str()),
        (Some("NVIDIA H100"), Some("cuda:0"))
    );
    let holding = ws
        .iter()
        .find(|w| w["current_run_id"] == seeded.runs[0])
        .expect("a worker holds run 0");
    assert_eq!(holding["current_epoch"], 4);
    let (st, stale) = get(&s.url("/api/v1/workers?include_stale=true")).await;
    assert_eq!((st, stale.as_array().unwrap().len()), (StatusCode::OK, 3));

    let (st, datasets) = get(&s.url("/api/v1/datasets")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(datasets[0]["name"], "tiny");
    assert_eq!(datasets[0]["params"]["min_lines"], 2);
    assert_eq!(datasets[0]["counts"]["lines"]["duplicates"], 2);
    assert_eq!(datasets[0]["counts"]["input_bytes"], 900);
    assert_eq!(datasets[0]["vocab_size"], 26);

    let (st, openapi) = get(&s.url("/api/v1/openapi.json")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(openapi["openapi"], "3.0.3");
    for p in [
        "/sweeps",
        "/sweeps/{id}",
        "/sweeps/{id}/curves",
        "/runs",
        "/runs/{id}",
        "/workers",
        "/datasets",
    ] {
        assert!(openapi["paths"][p]["get"].is_object(), "{p} undocumented");
    }
    s.stop().await;
}

#[tokio::test]
async fn runs_are_filtered_ordered_and_paged() {
    let s = Stack::spawn(false).await;
    let seeded = seed(&s, 3, |i| [4, 2, 0][i]).await;
    let runs_url = |params: &[(&str, &str)]| {
        reqwest::Url::parse_with_params(&s.url("/api/v1/runs"), params)
            .unwrap()
            .to_string()
    };
    // Units 8, 16, 24 (runs 0, 1, 2); run 2 has no epoch yet.
    let (st, page) = get(&runs_url(&[
        ("filter", "units >= 16 and state = 'running'"),
        ("order_by", "-units"),
        ("page_size", "1"),
    ]))
    .await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert_eq!(page["runs"].as_array().unwrap().len(), 1);
    assert_eq!(page["runs"][0]["id"], seeded.runs[2]);
    assert_eq!(page["runs"][0]["config"]["units"], 24);
    let token = page["next_page_token"].as_str().unwrap().to_string();
    assert!(!token.is_empty());
    let (st, page) = get(&runs_url(&[
        ("filter", "units >= 16 and state = 'running'"),
        ("order_by", "-units"),
        ("page_size", "1"),
        ("page_token", &token),
    ]))
    .await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert_eq!(page["runs"][0]["id"], seeded.runs[1]);
    assert_eq!(page["next_page_token"], "");

    let (st, page) = get(&runs_url(&[
        ("filter", "metrics.lr = 0.002 and epochs_done > 2"),
        ("order_by", "best_val_loss"),
    ]))
    .await;
    assert_eq!(st, StatusCode::OK, "{page}");
    let ids: Vec<&Value> = page["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["id"])
        .collect();
    assert_eq!(ids, vec![&seeded.runs[0]]);
    let (_, all) = get(&s.url("/api/v1/runs")).await;
    assert_eq!(
        all["runs"].as_array().unwrap().len(),
        3,
        "no filter: every run"
    );
    assert_eq!(all["runs"][0]["id"], seeded.runs[2], "newest first");

    for (params, needle) in [
        (vec![("filter", "units >= and")], "at column 10"),
        (vec![("order_by", "loss")], "order_by: unknown field 'loss'"),
        (vec![("page_token", "nope")], "page_token: not a token"),
        (vec![("page_size", "many")], "page_size: 'many' is not"),
    ] {
        let (st, body) = get(&runs_url(&params)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{params:?}: {body}");
        assert!(error_message(&body).contains(needle), "{params:?}: {body}");
    }
    let (_, body) = get(&runs_url(&[("filter", "units >= and")])).await;
    assert!(
        error_message(&body).ends_with("\n  units >= and\n           ^"),
        "{body}"
    );
    s.stop().await;
}

#[tokio::test]
async fn unknown_and_bad_ids_are_json_errors() {
    let s = Stack::spawn(false).await;
    for (path, msg) in [
        ("/api/v1/sweeps/424242", "no sweep 424242"),
        ("/api/v1/sweeps/424242/curves", "no sweep 424242"),
        ("/api/v1/runs/424242", "no run 424242"),
    ] {
        let (st, body) = get(&s.url(path)).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(error_message(&body), msg);
        assert_eq!(body["error"]["status"], 404);
    }
    let (st, body) = get(&s.url("/api/v1/runs/abc")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(error_message(&body).contains("'abc' is not an id"));
    for path in ["/api/v1/nothing", "/api/v2/sweeps"] {
        let (st, body) = get(&s.url(path)).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}");
        assert!(error_message(&body).contains("no such endpoint"));
    }
    // Empty lists are lists.
    for path in ["/api/v1/sweeps", "/api/v1/workers", "/api/v1/datasets"] {
        let (st, body) = get(&s.url(path)).await;
        assert_eq!((st, body), (StatusCode::OK, Value::Array(vec![])), "{path}");
    }
    // Read-only: no writes through this port.
    let r = reqwest::Client::new()
        .post(s.url("/api/v1/sweeps"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    // Unknown pages are a 404 page, unknown run pages too.
    assert_eq!(
        reqwest::get(s.url("/runs/424242")).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        reqwest::get(s.url("/sweeps/424242"))
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        reqwest::get(s.url("/nope")).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    s.stop().await;
}

#[tokio::test]
async fn tokens_guard_the_api_and_the_pages() {
    let s = Stack::spawn(true).await;
    let seeded = seed(&s, 1, |_| 1).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let endpoints = [
        "/api/v1/sweeps".to_string(),
        format!("/api/v1/sweeps/{}", seeded.sweep_id),
        format!("/api/v1/sweeps/{}/curves", seeded.sweep_id),
        format!("/api/v1/runs/{}", seeded.runs[0]),
        "/api/v1/workers".to_string(),
        "/api/v1/datasets".to_string(),
        "/api/v1/runs/424242".to_string(),
    ];
    for path in &endpoints {
        let missing = http.get(s.url(path)).send().await.unwrap();
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(missing.headers()["www-authenticate"], "Bearer");
        assert!(error_message(&missing.json().await.unwrap()).contains("missing bearer token"));
        let wrong = http
            .get(s.url(path))
            .bearer_auth("not-the-token-at-all")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED, "{path}");
        let worker = http
            .get(s.url(path))
            .bearer_auth(WORKER_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(worker.status(), StatusCode::FORBIDDEN, "{path}");
        assert!(error_message(&worker.json().await.unwrap()).contains("worker token may not"));
        let ok = http
            .get(s.url(path))
            .bearer_auth(CLIENT_TOKEN)
            .send()
            .await
            .unwrap();
        let want = if path.ends_with("424242") {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        };
        assert_eq!(ok.status(), want, "{path}");
        // The old raw-token cookie is not a credential any more.
        let raw = http
            .get(s.url(path))
            .header("cookie", format!("other=1; poet_token={CLIENT_TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            raw.status(),
            StatusCode::UNAUTHORIZED,
            "{path} by raw cookie"
        );
    }
    // The OpenAPI document and the assets are public.
    assert_eq!(
        http.get(s.url("/api/v1/openapi.json"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        http.get(s.url("/assets/app.js"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    // Pages: the login form without a session; `?token=` is refused, never exchanged.
    let page = format!("/runs/{}", seeded.runs[0]);
    let anon = http.get(s.url(&page)).send().await.unwrap();
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);
    assert!(anon.text().await.unwrap().contains("action=\"/login\""));
    let in_address = http
        .get(s.url(&format!("{page}?token={CLIENT_TOKEN}")))
        .send()
        .await
        .unwrap();
    assert_eq!(in_address.status(), StatusCode::BAD_REQUEST);
    assert!(in_address.headers().get("set-cookie").is_none());

    // The login form: an opaque, read-only session that holds no token, and back on site.
    let login = http
        .post(s.url("/login"))
        .form(&[("token", CLIENT_TOKEN), ("next", "/workers")])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    assert_eq!(login.headers()["location"], "/workers");
    let set = login.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set.starts_with("poet_session=")
            && set.contains("HttpOnly")
            && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(
        !set.contains(CLIENT_TOKEN) && !set.contains(&CLIENT_TOKEN[7..20]),
        "{set}"
    );
    assert!(
        set.contains("Max-Age=43200"),
        "12 hours, not 30 days: {set}"
    );
    let session = set.split(';').next().unwrap().to_string();
    let with_cookie = http
        .get(s.url(&page))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(with_cookie.status(), StatusCode::OK);
    assert!(
        with_cookie
            .text()
            .await
            .unwrap()
            .contains("data-page=\"run\"")
    );
    let api = http
        .get(s.url("/api/v1/sweeps"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::OK);
    // The session is a viewer: it cannot drive a control POST (nor can a forged one read).
    let control = http
        .post(s.url(&format!("/api/v1/runs/{}/retry", seeded.runs[0])))
        .header("cookie", &session)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(control.status(), StatusCode::FORBIDDEN);
    let forged = session.replacen("poet_session=v1.", "poet_session=v1.9", 1);
    let forged = http
        .get(s.url(&page))
        .header("cookie", forged)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);

    // Behind a TLS proxy the cookie is Secure and __Host- prefixed.
    let tls = http
        .post(s.url("/login"))
        .header("x-forwarded-proto", "https")
        .form(&[("token", CLIENT_TOKEN), ("next", "/")])
        .send()
        .await
        .unwrap();
    let set = tls.headers()["set-cookie"].to_str().unwrap();
    assert!(
        set.starts_with("__Host-poet_session=") && set.contains("; Secure"),
        "{set}"
    );

    // Never an open redirect, whatever `next` says.
    for evil in [
        "//evil.example/",
        "/\\evil.example",
        "https://evil.example/",
    ] {
        let offsite = http
            .post(s.url("/login"))
            .form(&[("token", CLIENT_TOKEN), ("next", evil)])
            .send()
            .await
            .unwrap();
        assert_eq!(offsite.headers()["location"], "/", "{evil}");
    }
    let wrong = http
        .post(s.url("/login"))
        .form(&[("token", "nope"), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let as_worker = http
        .post(s.url("/login"))
        .form(&[("token", WORKER_TOKEN), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(as_worker.status(), StatusCode::FORBIDDEN);
    s.stop().await;
}

/// SECURITY.md, finding 13: without tokens the dashboard answers loopback names only, so a
/// page whose own name resolves to 127.0.0.1 (DNS rebinding) cannot read it.
#[tokio::test]
async fn without_tokens_only_loopback_host_names_are_served() {
    let s = Stack::spawn(false).await;
    let http = reqwest::Client::new();
    for path in ["/", "/api/v1/sweeps"] {
        let rebound = http
            .get(s.url(path))
            .header("host", "evil.example")
            .send()
            .await
            .unwrap();
        assert_eq!(rebound.status(), StatusCode::MISDIRECTED_REQUEST, "{path}");
        let local = http
            .get(s.url(path))
            .header("host", "localhost")
            .send()
            .await
            .unwrap();
        assert_eq!(local.status(), StatusCode::OK, "{path}");
    }
    s.stop().await;
}

/// SECURITY.md, finding 4: a viewer token issued per identity reads the dashboard and its API,
/// may not control anything nor call gRPC, and stops working once revoked.
#[tokio::test]
async fn issued_viewer_tokens_read_only_and_die_when_revoked() {
    let s = Stack::spawn(true).await;
    let pool = s.db().pool.clone();
    let (viewer, _) =
        poet_coordinator::auth::issue_token(&pool, poet_coordinator::auth::Role::Viewer, "dash")
            .await
            .unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // Accepted once a refresh has seen it (every two seconds).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = http
            .get(s.url("/api/v1/sweeps"))
            .bearer_auth(&viewer)
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::OK {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never accepted: {}",
            r.status()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let control = http
        .post(s.url("/api/v1/sweeps/1/pause"))
        .bearer_auth(&viewer)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(control.status(), StatusCode::FORBIDDEN);
    let login = http
        .post(s.url("/login"))
        .form(&[("token", viewer.as_str()), ("next", "/")])
        .send()
        .await
        .unwrap();
    let session = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let mut client = poet_proto::v1::poet_client::PoetClient::new(s.channel().await);
    let mut req = tonic::Request::new(poet_proto::v1::ListSweepsRequest::default());
    req.metadata_mut()
        .insert("authorization", format!("Bearer {viewer}").parse().unwrap());
    assert_eq!(
        client.list_sweeps(req).await.unwrap_err().code(),
        tonic::Code::PermissionDenied
    );

    poet_coordinator::auth::revoke_token(&pool, "dash")
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let bearer = http
            .get(s.url("/api/v1/sweeps"))
            .bearer_auth(&viewer)
            .send()
            .await
            .unwrap();
        let cookie = http
            .get(s.url("/"))
            .header("cookie", &session)
            .send()
            .await
            .unwrap();
        if bearer.status() == StatusCode::UNAUTHORIZED
            && cookie.status() == StatusCode::UNAUTHORIZED
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still accepted after revocation"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let listed = poet_coordinator::auth::list_tokens(&pool).await.unwrap();
    assert!(
        listed[0].last_used_at.is_some() && listed[0].revoked_at.is_some(),
        "{listed:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_public_dashboard_address_needs_tokens() {
    let db = poet_sql::testing::fresh_db().await;
    let cfg = poet_coordinator::CoordinatorConfig {
        database_url: Some(db.url.clone()),
        artifacts: Some(
            std::env::temp_dir()
                .join("poet-web-test-artifacts")
                .display()
                .to_string(),
        ),
        http_listen: Some("0.0.0.0:0".parse().unwrap()),
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = poet_coordinator::run(cfg, listener, std::future::pending())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("without tokens"), "{err}");
}

#[tokio::test]
async fn a_thousand_run_sweep_is_one_quick_page() {
    let s = Stack::spawn(false).await;
    crate::stack::seed_dataset(&s.db().pool, "tiny").await;
    let seeds: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
    let spec = format!(
        "dataset = \"tiny\"\n[base]\nlayers = 1\nunits = 8\nepochs = 300\n[grid]\nseed = [{}]\n",
        seeds.join(", ")
    );
    let sweep_id = crate::stack::submit(&s, spec).await;
    // 300 epochs for every run, written straight to the table (300,000 rows).
    sqlx::query(
        "insert into epochs (run_id, epoch, attempt, train_loss, val_loss, duration_s, chars_per_sec)
         select r.id, e, 1, 3.0 / e, 3.1 / e, 1, 1000 from runs r, generate_series(1, 300) e",
    )
    .execute(&s.db().pool)
    .await
    .unwrap();
    let t = std::time::Instant::now();
    let (st, curves) = get(&s.url(&format!("/api/v1/sweeps/{sweep_id}/curves"))).await;
    let curves_s = t.elapsed().as_secs_f64();
    assert_eq!(st, StatusCode::OK);
    let cs = curves["curves"].as_array().unwrap();
    assert_eq!(cs.len(), 1000);
    assert!(
        cs.iter()
            .all(|c| c["epochs"].as_array().unwrap().len() == 200 && c["thinned"] == true)
    );
    let t = std::time::Instant::now();
    let (st, detail) = get(&s.url(&format!("/api/v1/sweeps/{sweep_id}"))).await;
    let detail_s = t.elapsed().as_secs_f64();
    assert_eq!(
        (st, detail["runs"].as_array().unwrap().len()),
        (StatusCode::OK, 1000)
    );
    eprintln!("1000-run sweep: curves {curves_s:.3} s, runs {detail_s:.3} s");
    // Generous bounds for a shared debug build; the figures are printed above.
    assert!(curves_s < 10.0 && detail_s < 5.0);
    s.stop().await;
}

#[tokio::test]
async fn control_endpoints_take_json_and_the_sweep_lists_its_decisions() {
    let s = Stack::spawn(false).await;
    let seeded = seed(&s, 2, |i| [2, 1][i]).await;
    let http = reqwest::Client::new();
    let post = |path: String, body: Value| {
        let req = http.post(s.url(&path)).json(&body);
        async move {
            let r = req.send().await.unwrap();
            let st = r.status();
            (st, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let sweep = seeded.sweep_id;
    // A form post (not JSON) is refused: a cross-site form cannot reach these.
    let form = http
        .post(s.url(&format!("/api/v1/sweeps/{sweep}/pause")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("x=1")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (st, d) = post(
        format!("/api/v1/sweeps/{sweep}/pause"),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{d}");
    assert_eq!(d["paused"], true);
    let (st, d) = post(
        format!("/api/v1/sweeps/{sweep}/priority"),
        serde_json::json!({"priority": 9}),
    )
    .await;
    assert_eq!(
        (st, &d["priority"]),
        (StatusCode::OK, &serde_json::json!(9))
    );
    let kinds: Vec<&str> = d["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["pause_sweep", "priority"]);
    assert!(
        d["decisions"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("from 0 to 9")
    );
    // A running run cannot be retried: 409 with the reason.
    let run = seeded.runs[0];
    let (st, e) = post(format!("/api/v1/runs/{run}/retry"), serde_json::json!({})).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(
        error_message(&e),
        format!("run {run} is running; only failed, cancelled or stopped runs can be retried")
    );
    let (st, e) = post(format!("/api/v1/runs/{run}/explode"), serde_json::json!({})).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(error_message(&e).contains("retry, extend or fork"));
    // A fork of run 0 from its checkpoint: a new run linked to its parent.
    let (st, f) = post(
        format!("/api/v1/runs/{run}/fork"),
        serde_json::json!({"overrides": {"learning_rate": 0.0005}}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{f}");
    assert_eq!(f["parent_run_id"], run);
    assert_eq!(f["config"]["learning_rate"], 0.0005);
    let (_, detail) = get(&s.url(&format!("/api/v1/sweeps/{sweep}"))).await;
    assert_eq!(detail["decisions"].as_array().unwrap().len(), 3);
    assert_eq!(detail["counts"]["paused"], 0);
    assert!(
        detail["plan"]["search"]["method"] == "grid",
        "{}",
        detail["plan"]
    );
    s.stop().await;
}

/// Checks `value` against an OpenAPI 3.0 `schema` of `doc`: types, `nullable`, enums, and for
/// an object with `properties` every property present and none extra. Pushes one line per
/// mismatch, with the JSON path.
fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    // A nullable reference is `{"allOf": [{"$ref": ...}], "nullable": true}` (OpenAPI 3.0
    // ignores the siblings of a `$ref`).
    if value.is_null() && schema["nullable"] == true {
        return;
    }
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        let target = &doc["components"]["schemas"][name];
        assert!(target.is_object(), "{at}: dangling $ref {r}");
        return conforms(doc, target, value, at, errors);
    }
    if let Some(all) = schema["allOf"].as_array() {
        for s in all {
            conforms(doc, s, value, at, errors);
        }
        return;
    }
    if value.is_null() {
        if schema["nullable"] != true {
            errors.push(format!("{at}: null, but not nullable"));
        }
        return;
    }
    let ty = schema["type"].as_str().unwrap_or("");
    let ok = match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "" => true,
        other => panic!("{at}: schema type {other} not handled"),
    };
    if !ok {
        errors.push(format!("{at}: {value} is not of type {ty}"));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        errors.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    if let (Some(props), Some(obj)) = (schema["properties"].as_object(), value.as_object()) {
        for k in obj.keys().filter(|k| !props.contains_key(*k)) {
            errors.push(format!("{at}.{k}: in the answer, not in the document"));
        }
        for (k, p) in props {
            match obj.get(k) {
                Some(v) => conforms(doc, p, v, &format!("{at}.{k}"), errors),
                None => errors.push(format!("{at}.{k}: in the document, not in the answer")),
            }
        }
    }
    if let (Some(extra), Some(obj)) = (schema.get("additionalProperties"), value.as_object()) {
        for (k, v) in obj {
            conforms(doc, extra, v, &format!("{at}.{k}"), errors);
        }
    }
    if let Some(items) = value.as_array() {
        for (i, v) in items.iter().enumerate() {
            conforms(doc, &schema["items"], v, &format!("{at}[{i}]"), errors);
        }
    }
}

/// The OpenAPI document describes what the API answers: every GET endpoint's real response,
/// from a seeded stack with tags and notes, matches its documented schema exactly (no
/// property missing, none extra, every type and enum right).
#[tokio::test]
async fn openapi_document_matches_every_get_response() {
    let s = Stack::spawn(false).await;
    let seeded = seed(&s, 3, |i| [4, 2, 0][i]).await;
    let mut client = s.client();
    client
        .tag_run(v1::TagRequest {
            id: seeded.runs[0],
            tags: vec!["baseline".into()],
        })
        .await
        .unwrap();
    client
        .note_run(v1::NoteRequest {
            id: seeded.runs[0],
            text: "a note".into(),
        })
        .await
        .unwrap();
    client
        .note_sweep(v1::NoteRequest {
            id: seeded.sweep_id,
            text: "sweep note".into(),
        })
        .await
        .unwrap();
    client
        .tag_sweep(v1::TagRequest {
            id: seeded.sweep_id,
            tags: vec!["grid".into()],
        })
        .await
        .unwrap();
    // Decisions to describe: a pause and a resume.
    for pause in [true, false] {
        let req = v1::SweepControlRequest {
            sweep_id: seeded.sweep_id,
        };
        if pause {
            client.pause_sweep(req).await.unwrap();
        } else {
            client.resume_sweep(req).await.unwrap();
        }
    }
    let (_, sweeps) = get(&s.url("/api/v1/sweeps")).await;
    assert_eq!(sweeps[0]["tags"], serde_json::json!(["grid"]));
    // Every part of the sweep and dataset views is there to be checked, none empty or null.
    let (_, sweep) = get(&s.url(&format!("/api/v1/sweeps/{}", seeded.sweep_id))).await;
    assert_eq!(sweep["decisions"].as_array().unwrap().len(), 2, "{sweep}");
    assert_eq!(sweep["best_run"]["id"], seeded.runs[0]);
    assert_eq!(sweep["notes"].as_array().unwrap().len(), 1);
    let (_, datasets) = get(&s.url("/api/v1/datasets")).await;
    assert_eq!(
        datasets[0]["counts"]["not_poems_by_reason"]["hard_wrapped"],
        1
    );
    let (_, doc) = get(&s.url("/api/v1/openapi.json")).await;
    let mut checked = 0;
    let mut errors = vec![];
    for (path, item) in doc["paths"].as_object().unwrap() {
        let Some(schema) =
            item["get"]["responses"]["200"]["content"]["application/json"].get("schema")
        else {
            continue;
        };
        if path == "/openapi.json" {
            continue;
        }
        let id = if path.starts_with("/runs/") {
            seeded.runs[0]
        } else {
            seeded.sweep_id
        };
        let url = s.url(&format!("/api/v1{}", path.replace("{id}", &id.to_string())));
        let (st, body) = get(&url).await;
        assert_eq!(st, StatusCode::OK, "{url}: {body}");
        conforms(&doc, schema, &body, path, &mut errors);
        checked += 1;
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    assert_eq!(checked, 7, "every JSON GET endpoint was checked");
    // The checker itself catches a missing, an extra and a mistyped property.
    let (_, mut run) = get(&s.url(&format!("/api/v1/runs/{}", seeded.runs[0]))).await;
    let r = run["run"].as_object_mut().unwrap();
    r.remove("tags");
    r.insert("surprise".into(), Value::Bool(true));
    r.insert("epochs_done".into(), Value::String("4".into()));
    let mut found = vec![];
    let detail = serde_json::json!({"$ref": "#/components/schemas/RunDetail"});
    conforms(&doc, &detail, &run, "run", &mut found);
    found.sort();
    assert_eq!(
        found,
        [
            "run.run.epochs_done: \"4\" is not of type integer",
            "run.run.surprise: in the answer, not in the document",
            "run.run.tags: in the document, not in the answer",
        ]
    );
    // ... and in the sweep and dataset views, nested ones included.
    let (_, mut sweep) = get(&s.url(&format!("/api/v1/sweeps/{}", seeded.sweep_id))).await;
    sweep["counts"]
        .as_object_mut()
        .unwrap()
        .insert("queued".into(), Value::Null);
    sweep["decisions"][0]
        .as_object_mut()
        .unwrap()
        .remove("sweep_id");
    let (_, mut datasets) = get(&s.url("/api/v1/datasets")).await;
    datasets[0]["counts"]["lines"]
        .as_object_mut()
        .unwrap()
        .remove("kept");
    datasets[0]["counts"]["not_poems_by_reason"]["hard_wrapped"] = Value::String("1".into());
    let mut found = vec![];
    let schema = |name: &str| serde_json::json!({"$ref": format!("#/components/schemas/{name}")});
    conforms(&doc, &schema("SweepDetail"), &sweep, "sweep", &mut found);
    conforms(
        &doc,
        &schema("Dataset"),
        &datasets[0],
        "dataset",
        &mut found,
    );
    found.sort();
    assert_eq!(
        found,
        [
            "dataset.counts.lines.kept: in the document, not in the answer",
            "dataset.counts.not_poems_by_reason.hard_wrapped: \"1\" is not of type integer",
            "sweep.counts.queued: null, but not nullable",
            "sweep.decisions[0].sweep_id: in the document, not in the answer",
        ]
    );
    s.stop().await;
}

/// Tags and notes through the web API: the client token writes them (stored with its role as
/// the author, and the time), a viewer or worker token and a dashboard session cannot, bad
/// input is a 400 that names it, and the run's and sweep's JSON carry them.
#[tokio::test]
async fn tags_and_notes_need_the_client_role_and_show_in_the_json() {
    let s = Stack::spawn(true).await;
    let seeded = seed(&s, 2, |i| [2, 1][i]).await;
    let run = seeded.runs[1];
    let http = reqwest::Client::new();
    let post = |path: String, token: &'static str, body: Value| {
        http.post(s.url(&path))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let before = chrono::Utc::now() - chrono::Duration::seconds(5);
    let r = post(
        format!("/api/v1/runs/{run}/tags"),
        CLIENT_TOKEN,
        serde_json::json!({"tags": ["baseline", "lr-low"]}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let a: Value = r.json().await.unwrap();
    assert_eq!(a["tags"], serde_json::json!(["baseline", "lr-low"]));
    let r = post(
        format!("/api/v1/runs/{run}/notes"),
        CLIENT_TOKEN,
        serde_json::json!({"text": "diverged\nafter warmup"}),
    )
    .await
    .unwrap();
    let a: Value = r.json().await.unwrap();
    assert_eq!(a["notes"][0]["text"], "diverged\nafter warmup");
    assert_eq!(a["notes"][0]["author"], "client");
    let at: chrono::DateTime<chrono::Utc> = a["notes"][0]["at"].as_str().unwrap().parse().unwrap();
    assert!(at > before && at < chrono::Utc::now() + chrono::Duration::seconds(5));

    // A worker token cannot write, nor can an issued viewer token.
    let r = post(
        format!("/api/v1/runs/{run}/tags"),
        WORKER_TOKEN,
        serde_json::json!({"tags": ["x"]}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (viewer, _) = poet_coordinator::auth::issue_token(
        &s.db().pool,
        poet_coordinator::auth::Role::Viewer,
        "dash",
    )
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = http
            .get(s.url("/api/v1/sweeps"))
            .bearer_auth(&viewer)
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::OK {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "viewer never accepted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    for (method, path) in [
        (reqwest::Method::POST, format!("/api/v1/runs/{run}/tags")),
        (reqwest::Method::DELETE, format!("/api/v1/runs/{run}/tags")),
        (reqwest::Method::POST, format!("/api/v1/runs/{run}/notes")),
        (
            reqwest::Method::POST,
            format!("/api/v1/sweeps/{}/tags", seeded.sweep_id),
        ),
    ] {
        let r = http
            .request(method.clone(), s.url(&path))
            .bearer_auth(&viewer)
            .json(&serde_json::json!({"tags": ["x"], "text": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{method} {path}");
    }

    // Bad input: named, and nothing stored.
    for (path, body, want, status) in [
        (
            format!("/api/v1/runs/{run}/tags"),
            serde_json::json!({"tags": [""]}),
            "tag \"\"",
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/api/v1/runs/{run}/tags"),
            serde_json::json!({"tags": ["a\u{7}"]}),
            "control characters",
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/api/v1/runs/{run}/tags"),
            serde_json::json!({"tags": ["x".repeat(101)]}),
            "over the limit of 100",
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/api/v1/runs/{run}/notes"),
            serde_json::json!({"text": " "}),
            "note: empty",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/runs/99999/tags".to_string(),
            serde_json::json!({"tags": ["a"]}),
            "no run 99999",
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/v1/sweeps/99999/notes".to_string(),
            serde_json::json!({"text": "a"}),
            "no sweep 99999",
            StatusCode::NOT_FOUND,
        ),
    ] {
        let r = post(path.clone(), CLIENT_TOKEN, body).await.unwrap();
        assert_eq!(r.status(), status, "{path}");
        let v: Value = r.json().await.unwrap();
        assert!(error_message(&v).contains(want), "{path}: {v}");
    }
    let r = http
        .delete(s.url(&format!("/api/v1/runs/{run}/tags")))
        .bearer_auth(CLIENT_TOKEN)
        .json(&serde_json::json!({"tags": ["lr-low", "never-set"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let v: Value = r.json().await.unwrap();
    assert!(
        error_message(&v).contains("has no tag \"never-set\""),
        "{v}"
    );

    let detail: Value = http
        .get(s.url(&format!("/api/v1/runs/{run}")))
        .bearer_auth(CLIENT_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        detail["run"]["tags"],
        serde_json::json!(["baseline", "lr-low"]),
        "a refused untag removed nothing"
    );
    assert_eq!(detail["run"]["notes"].as_array().unwrap().len(), 1);
    let page: Value = http
        .get(s.url("/api/v1/runs?filter=tag%20%3D%20%27baseline%27"))
        .bearer_auth(CLIENT_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<i64> = page["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![run]);
    s.stop().await;
}

/// `GET /api/v1/runs/export`: CSV and JSON lines, read back, agree with `/api/v1/runs`.
#[tokio::test]
async fn export_streams_the_runs_as_csv_and_json_lines() {
    let s = Stack::spawn(false).await;
    let seeded = seed(&s, 3, |i| [4, 2, 0][i]).await;
    let (_, page) = get(&s.url("/api/v1/runs?order_by=id")).await;
    let runs = page["runs"].as_array().unwrap();
    let r = reqwest::get(s.url("/api/v1/runs/export?order_by=id"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = r.text().await.unwrap();
    let mut rd = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = rd.headers().unwrap().iter().map(String::from).collect();
    assert!(header.contains(&"config.units".to_string()), "{header:?}");
    let rows: Vec<csv::StringRecord> = rd.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), seeded.runs.len());
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    for (row, run) in rows.iter().zip(runs) {
        assert_eq!(row[col("id")], run["id"].to_string());
        assert_eq!(&row[col("state")], run["state"].as_str().unwrap());
        assert_eq!(row[col("config.units")], run["config"]["units"].to_string());
        match run["best_val_loss"].as_f64() {
            Some(b) => assert_eq!(row[col("best_val_loss")].parse::<f64>().unwrap(), b),
            None => assert_eq!(&row[col("best_val_loss")], ""),
        }
    }
    let text = reqwest::get(
        s.url("/api/v1/runs/export?format=jsonl&filter=epochs_done%20%3E%3D%202&order_by=id"),
    )
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["id"], seeded.runs[0]);
    assert_eq!(lines[0]["epochs_done"], 4);
    let (st, v) = get(&s.url("/api/v1/runs/export?filter=layers%20%3E")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(error_message(&v).contains("filter"), "{v}");
    let (st, v) = get(&s.url("/api/v1/runs/export?format=xml")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(error_message(&v).contains("format: 'xml'"), "{v}");
    s.stop().await;
}

//! The pages in real headless Chromium, driven over WebDriver (chromedriver, plain HTTP from
//! reqwest): the sweep chart draws one line per run, the run page shows its epochs and poems
//! with copied words marked, and a new epoch reported over gRPC appears without a reload.
//! Screenshots go to `target/web-screenshots/` for people to look at.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`./poet.sh setup` installs them); set
//! `POET_CHROMIUM` / `POET_CHROMEDRIVER` to use other binaries.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use poet_proto::v1;
use serde_json::{Value, json};

use crate::stack::{CLIENT_TOKEN, Stack, epoch, free_port, seed};

fn find(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH")?;
    names
        .iter()
        .flat_map(|n| std::env::split_paths(&path).map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

fn tools() -> (PathBuf, PathBuf) {
    let chromium = find(
        "POET_CHROMIUM",
        &["chromium", "chromium-browser", "google-chrome"],
    );
    let driver = find("POET_CHROMEDRIVER", &["chromedriver"]);
    match (chromium, driver) {
        (Some(c), Some(d)) => (c, d),
        _ => panic!(
            "browser tests need Chromium and chromedriver: install them with \
             `apt-get update && apt-get install -y chromium chromium-driver` (or run `./poet.sh setup`), \
             or point POET_CHROMIUM and POET_CHROMEDRIVER at other binaries"
        ),
    }
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("web-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A chromedriver process and one headless Chromium session.
struct Browser {
    driver: Child,
    base: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        let (chromium, chromedriver) = tools();
        let port = free_port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer on {base}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let mut b = Browser {
            driver,
            base,
            http,
            _profile: profile,
        };
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                     "--window-size=1400,1000", format!("--user-data-dir={}", b._profile.path().display())]
        }}}});
        let r = b
            .http
            .post(format!("{}/session", b.base))
            .json(&caps)
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        b.base = format!("{}/session/{id}", b.base);
        b
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if !body.is_null() {
            req = req.json(&body);
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        if v["value"].get("error").is_some() {
            panic!("webdriver {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    /// Opens `url`, signs in on the login page it shows with the client token, and waits to be
    /// back on `url`'s page.
    async fn sign_in(&self, url: &str) {
        self.goto(url).await;
        self.wait(
            "the login form",
            "return !!document.querySelector('form.login')",
        )
        .await;
        self.js(&format!(
            "document.querySelector('form.login input[name=token]').value = '{CLIENT_TOKEN}'; document.querySelector('form.login').submit(); return true;"
        ))
        .await;
        self.wait(
            "the page after signing in",
            "return !document.querySelector('form.login') && document.body.dataset.page !== 'login'",
        )
        .await;
    }

    /// Runs `script` (a function body; `return` a value) in the page.
    async fn js(&self, script: &str) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
        .await
    }

    /// Polls `script` until it returns `true`; panics with `what` and the last value after 60 s
    /// (generous: CI runs these beside the other tests on two cores).
    async fn wait(&self, what: &str, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.js(script).await;
            if v == Value::Bool(true) {
                return;
            }
            if Instant::now() > deadline {
                let live = self.js("return document.getElementById('live') && document.getElementById('live').textContent").await;
                panic!("timed out waiting for {what}: last {v}, live indicator {live}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A PNG of the whole page (the window grows to the page's height, up to 4000 px).
    async fn screenshot(&self, name: &str) -> PathBuf {
        let height = self
            .js("return document.documentElement.scrollHeight")
            .await
            .as_i64()
            .unwrap_or(1000);
        self.cmd(
            reqwest::Method::POST,
            "/window/rect",
            json!({"width": 1400, "height": height.clamp(1000, 4000) + 140}),
        )
        .await;
        // Let the resized page lay out and paint before the capture.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let v = self
            .cmd(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let path = screenshot_dir().join(name);
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }

    async fn quit(mut self) {
        let _ = self.http.delete(&self.base).send().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A panicking test must not leave chromedriver behind.
        let _ = self.driver.kill();
    }
}

#[tokio::test]
async fn sweep_chart_draws_one_line_per_run_and_lists_render() {
    tools(); // fail fast, with the install hint, before building the stack
    let s = Stack::spawn(true).await;
    let seeded = seed(&s, 5, |i| [6, 5, 4, 3, 2][i]).await;
    let b = Browser::start().await;

    // Signing in once gives a session cookie; later pages need nothing.
    b.sign_in(&s.url(&format!("/sweeps/{}", seeded.sweep_id)))
        .await;
    b.wait(
        "one validation line per run",
        "return document.querySelectorAll('svg.chart path.series[data-series=val]').length === 5",
    )
    .await;
    let runs = b.js("return [...document.querySelectorAll('svg.chart path.series')].map(p => +p.dataset.run).sort((a,b)=>a-b)").await;
    assert_eq!(runs, json!(seeded.runs));
    let colours = b.js("return new Set([...document.querySelectorAll('svg.chart path.series')].map(p => p.getAttribute('stroke'))).size").await;
    assert_eq!(colours, json!(5), "coloured by units, five values");
    assert_eq!(
        b.js("return document.getElementById('colour-by').value")
            .await,
        json!("units")
    );
    assert_eq!(
        b.js("return document.querySelectorAll('#runs tbody tr').length")
            .await,
        json!(5)
    );

    // Hover: the tooltip names the run, epoch and loss of the nearest point.
    let tip = b
        .js("const p = document.querySelector('svg.chart path.series'); const svg = p.ownerSVGElement;
             const pt = p.getPointAtLength(0).matrixTransform(p.getScreenCTM());
             svg.dispatchEvent(new MouseEvent('mousemove', {clientX: pt.x, clientY: pt.y, bubbles: true}));
             return document.querySelector('.tip').textContent")
        .await;
    assert!(tip.as_str().unwrap().contains("epoch 1"), "{tip}");
    b.screenshot("sweep.png").await;

    // Both series, log scale, one run hidden.
    b.js("const s = document.getElementById('series'); s.value = 'both'; s.dispatchEvent(new Event('change')); return 0").await;
    b.wait(
        "train and validation lines",
        "return document.querySelectorAll('svg.chart path.series').length === 10",
    )
    .await;
    b.js("document.getElementById('log-scale').click(); return 0")
        .await;
    b.js("document.querySelector('#runs tbody tr input[type=checkbox]').click(); return 0")
        .await;
    b.wait(
        "a hidden run",
        "return document.querySelectorAll('svg.chart path.series').length === 8",
    )
    .await;
    // Sorting by a column header reorders the rows.
    b.js("document.querySelector('#runs th[data-key=id]').click(); return 0")
        .await;
    let ids = b
        .js("return [...document.querySelectorAll('#runs tbody tr')].map(r => +r.dataset.run)")
        .await;
    assert_eq!(ids, json!(seeded.runs));
    b.screenshot("sweep-both-log.png").await;

    b.goto(&s.url("/")).await;
    b.wait(
        "the sweep list",
        "return document.querySelectorAll('#sweeps tbody tr').length === 1",
    )
    .await;
    assert!(
        b.js("return document.querySelector('#sweeps').textContent")
            .await
            .as_str()
            .unwrap()
            .contains("units-sweep")
    );
    b.screenshot("sweeps.png").await;

    b.goto(&s.url("/workers")).await;
    b.wait(
        "five workers",
        "return document.querySelectorAll('#workers tbody tr').length === 5",
    )
    .await;
    let text = b
        .js("return document.querySelector('#workers').textContent")
        .await;
    assert!(
        text.as_str().unwrap().contains("NVIDIA H100") && text.as_str().unwrap().contains("6/6"),
        "{text}"
    );
    b.screenshot("workers.png").await;

    b.goto(&s.url("/datasets")).await;
    b.wait(
        "the dataset",
        "return document.querySelectorAll('#datasets tbody tr').length === 1",
    )
    .await;
    assert!(
        b.js("return document.querySelector('#datasets').textContent")
            .await
            .as_str()
            .unwrap()
            .contains("min_lines=2")
    );
    b.screenshot("datasets.png").await;
    b.quit().await;
    s.stop().await;
}

#[tokio::test]
async fn run_page_shows_epochs_and_poems_and_updates_live() {
    tools();
    let s = Stack::spawn(true).await;
    let seeded = seed(&s, 2, |i| [4, 2][i]).await;
    let b = Browser::start().await;
    let run = seeded.runs[0];
    b.sign_in(&s.url(&format!("/runs/{run}"))).await;
    b.wait(
        "four epochs",
        "return document.querySelectorAll('#epochs tbody tr').length === 4",
    )
    .await;
    assert_eq!(
        b.js("return document.querySelectorAll('svg.chart path.series').length")
            .await,
        json!(2),
        "train and validation"
    );
    assert_eq!(
        b.js("return document.querySelectorAll('#attempts tbody tr').length")
            .await,
        json!(1)
    );
    assert_eq!(
        b.js("return document.querySelectorAll('#checkpoints tbody tr').length")
            .await,
        json!(1)
    );
    let marks = b
        .js("return [...document.querySelectorAll('.poem mark')].map(m => m.textContent)")
        .await;
    assert_eq!(marks, json!(["Under the hill the old roads sleep"]));
    assert_eq!(
        b.js("return document.querySelectorAll('.poem').length")
            .await,
        json!(2)
    );
    // quality.js adds the generation's quality report beside its poems: a header row and
    // seven measures, the corpus's line length beside the poems'.
    b.wait(
        "the quality block",
        "return document.querySelectorAll('[data-generation] > .quality-block table.quality tr').length === 8",
    )
    .await;
    let first = b
        .js("return [...document.querySelectorAll('.quality-block tr')[2].children].map(c => c.textContent)")
        .await;
    assert_eq!(first[0], json!("chars per line"), "{first}");
    b.screenshot("run.png").await;

    // A new epoch through gRPC shows up without a reload.
    b.js("window.__sameDocument = true; return 0").await;
    let mut w = s.worker();
    w.report_epoch(v1::ReportEpochRequest {
        lease: Some(seeded.leases[0].clone()),
        epoch: Some(epoch(5, 0)),
    })
    .await
    .unwrap();
    let t = Instant::now();
    b.wait("the fifth epoch", "return document.querySelectorAll('#epochs tbody tr').length === 5 && document.getElementById('epochs-done').textContent === '5'").await;
    eprintln!("live update shown after {:.2} s", t.elapsed().as_secs_f64());
    assert_eq!(
        b.js("return window.__sameDocument === true").await,
        json!(true),
        "the page was not reloaded"
    );
    b.screenshot("run-live.png").await;

    // The sweep page follows too: its run 0 line grows to five points.
    b.goto(&s.url(&format!("/sweeps/{}", seeded.sweep_id)))
        .await;
    b.wait(
        "two lines",
        "return document.querySelectorAll('svg.chart path.series').length === 2",
    )
    .await;
    b.js("window.__sameDocument = true; return 0").await;
    w.report_epoch(v1::ReportEpochRequest {
        lease: Some(seeded.leases[1].clone()),
        epoch: Some(epoch(3, 1)),
    })
    .await
    .unwrap();
    b.wait(
        "run 1's line to reach epoch 3",
        &format!(
            "const run = {};
             const path = document.querySelector(`svg.chart path.series[data-run=\"${{run}}\"]`);
             return document.querySelector(`#runs tr[data-run=\"${{run}}\"]`).textContent.includes('3/6')
                 && path.getAttribute('d').split('L').length === 3",
            seeded.runs[1]
        ),
    )
    .await;
    assert_eq!(
        b.js("return window.__sameDocument === true").await,
        json!(true)
    );
    b.quit().await;
    s.stop().await;
}

#[tokio::test]
async fn a_thousand_run_sweep_draws_quickly() {
    tools();
    let s = Stack::spawn(false).await;
    crate::stack::seed_dataset(&s.db().pool, "tiny").await;
    let mut client = s.client();
    let seeds: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    let spec = format!(
        "dataset = \"tiny\"\n[base]\nlayers = 1\nunits = 8\nepochs = 50\n[grid]\nseed = [{}]\n\
         learning_rate = [0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01]\n",
        seeds.join(", ")
    );
    let sweep_id = client
        .submit_sweep(v1::SubmitSweepRequest {
            spec,
            name: "lr-by-seed".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sweep
        .unwrap()
        .id;
    // 50 epochs per run (50,000 rows), the loss level set by the learning rate.
    sqlx::query(
        "insert into epochs (run_id, epoch, attempt, train_loss, val_loss, duration_s, chars_per_sec)
         select r.id, e, 1, l - 0.05, l, 1, 1000
         from runs r, generate_series(1, 50) e,
              lateral (select 1.2 + 60 * abs((r.config->>'learning_rate')::float8 - 0.003) + 2.0 / e
                       + 0.0004 * (r.config->>'seed')::int as l) loss",
    )
    .execute(&s.db().pool)
    .await
    .unwrap();
    sqlx::query(
        "update runs r set epochs_done = 50, last_train_loss = e.train_loss, last_val_loss = e.val_loss,
             best_val_loss = e.val_loss, best_epoch = 50
         from epochs e where e.run_id = r.id and e.epoch = 50",
    )
    .execute(&s.db().pool)
    .await
    .unwrap();
    let b = Browser::start().await;
    let t = Instant::now();
    b.goto(&s.url(&format!("/sweeps/{sweep_id}"))).await;
    b.wait(
        "1,000 lines",
        "return document.querySelectorAll('svg.chart path.series').length === 1000",
    )
    .await;
    let first = t.elapsed().as_secs_f64();
    // A redraw (log scale) measured inside the page: data to pixels for 1,000 lines.
    let redraw = b
        .js("const t = performance.now(); document.getElementById('log-scale').click(); return performance.now() - t")
        .await;
    let redraw_ms = redraw.as_f64().unwrap();
    eprintln!(
        "1000-run sweep page: first paint {first:.2} s (debug coordinator), redraw {redraw_ms:.0} ms"
    );
    assert!(redraw_ms < 2000.0, "redraw took {redraw_ms} ms");
    b.js("const s = document.getElementById('colour-by'); s.value = 'learning_rate'; s.dispatchEvent(new Event('change')); return 0")
        .await;
    b.screenshot("sweep-1000.png").await;
    b.quit().await;
    s.stop().await;
}

/// An ASHA sweep's chart marks its rungs (epochs 1 and 3 of 9, eta 3: a dashed line each,
/// where the curves reach) and puts the scheduler's decisions on the curves: three pauses and
/// one promotion at rung 1.
#[tokio::test]
async fn an_asha_sweep_draws_its_rungs_and_decisions_on_the_chart() {
    tools();
    let s = Stack::spawn(false).await;
    crate::stack::seed_dataset(&s.db().pool, "tiny").await;
    let spec = "dataset = \"tiny\"\n[base]\nlayers = 1\nunits = 8\nseq_len = 16\nepochs = 9\n[grid]\nseed = [1, 2, 3]\n[stopping]\nrule = \"asha\"\nmin_epochs = 1\neta = 3\n";
    let sweep_id = crate::stack::submit(&s, spec.into()).await;
    let mut w = s.worker();
    let wid = poet_coordinator::testing::register(&mut w, "h").await;
    // The first arrival is the best and the third is not, so all three wait at the rung and
    // the third arrival promotes the first (as in the scheduler's own test).
    for (i, level) in [2, 0, 1].into_iter().enumerate() {
        let lease = poet_coordinator::testing::lease_run(&mut w, wid, 1000)
            .await
            .unwrap()
            .lease
            .unwrap();
        let d = w
            .report_epoch(v1::ReportEpochRequest {
                lease: Some(lease.clone()),
                epoch: Some(epoch(1, level)),
            })
            .await
            .unwrap()
            .into_inner()
            .directive;
        assert_eq!(d.map(|d| d.action()), Some(v1::Action::Pause));
        // A paused run hands back the checkpoint of its rung epoch first.
        let data = format!("checkpoint {i}").into_bytes();
        let header = v1::CheckpointHeader {
            lease: Some(lease.clone()),
            epoch: 1,
            size: data.len() as i64,
            sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data)),
        };
        let msgs = vec![
            v1::UploadCheckpointRequest {
                part: Some(v1::upload_checkpoint_request::Part::Header(header)),
            },
            v1::UploadCheckpointRequest {
                part: Some(v1::upload_checkpoint_request::Part::Data(data)),
            },
        ];
        w.upload_checkpoint(futures::stream::iter(msgs))
            .await
            .unwrap();
        w.complete_run(v1::CompleteRunRequest { lease: Some(lease) })
            .await
            .unwrap();
    }
    let b = Browser::start().await;
    b.goto(&s.url(&format!("/sweeps/{sweep_id}"))).await;
    b.wait(
        "three curves",
        "return document.querySelectorAll('svg.chart path.series').length === 3",
    )
    .await;
    let rungs = b
        .js("return [...document.querySelectorAll('svg.chart line.rung')].map((l) => +l.dataset.epoch)")
        .await;
    // Rungs 1 and 3 of 9; only those within the epochs drawn so far appear.
    assert_eq!(rungs, json!([1]));
    let marks = b
        .js("return [...document.querySelectorAll('svg.chart .mark')].map((m) => m.getAttribute('class') + '@' + m.dataset.epoch).sort()")
        .await;
    assert_eq!(
        marks,
        json!([
            "mark mark-pause@1",
            "mark mark-pause@1",
            "mark mark-pause@1",
            "mark mark-promote@1"
        ])
    );
    // Hiding a run takes its marks off the chart with its line.
    b.js("document.querySelector('#runs tbody tr input[type=checkbox]').click(); return 0")
        .await;
    b.wait(
        "two curves",
        "return document.querySelectorAll('svg.chart path.series').length === 2",
    )
    .await;
    let left = b
        .js("return document.querySelectorAll('svg.chart .mark').length")
        .await;
    assert!(left.as_u64().unwrap() < 4, "{left}");
    b.screenshot("sweep-asha-rungs.png").await;
    b.quit().await;
    s.stop().await;
}

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

    /// The WebDriver id of the first element matching `css`.
    async fn element(&self, css: &str) -> String {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        v["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    /// Types `text` into the element matching `css` as a user would (key events; WebDriver
    /// focuses it first). `\u{E007}` is Enter, `\u{E00D}` Space.
    async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    /// Empties the text field matching `css`.
    async fn clear(&self, css: &str) {
        let id = self.element(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{id}/clear"),
            json!({}),
        )
        .await;
    }

    /// Chooses `value` in the `<select id=...>` as a user would (the page sees a change).
    async fn select(&self, id: &str, value: &str) {
        self.js(&format!(
            "const s = document.getElementById('{id}'); s.value = '{value}'; s.dispatchEvent(new Event('change')); return 0"
        ))
        .await;
    }

    /// Drags a rectangle across the middle of the loss chart (`#loss`), waits for it to show
    /// the zoomed range, then double-clicks and waits for the whole range again.
    async fn zoom_loss_chart_and_back(&self) {
        let (from, to) = (
            self.point("const s = document.querySelector('#loss svg.chart'); s.scrollIntoView({block: 'center'}); const r = s.getBoundingClientRect(); return [r.left + r.width * 0.3, r.top + 40]").await,
            self.point("const r = document.querySelector('#loss svg.chart').getBoundingClientRect(); return [r.left + r.width * 0.7, r.top + 200]").await,
        );
        self.drag(from, to).await;
        self.wait(
            "the zoomed chart",
            "return !!document.querySelector('#loss svg.chart text.zoomed')",
        )
        .await;
        self.js("document.querySelector('#loss svg.chart').dispatchEvent(new MouseEvent('dblclick', {bubbles: true})); return 0").await;
        self.wait(
            "the whole chart again",
            "return !document.querySelector('#loss svg.chart text.zoomed')",
        )
        .await;
    }

    /// Brushes the `units` axis of the parallel coordinates from its top down to position
    /// `to` (1 is the top, 0 the bottom).
    async fn brush_units_from_the_top_to(&self, to: f64) {
        let from = self
            .point("const r = document.querySelector('#parcoords .pc-hit[data-axis=units]'); r.scrollIntoView({block: 'center'});
                    const b = r.getBoundingClientRect(); return [b.left + b.width / 2, b.top + 3]")
            .await;
        let to = self
            .point(&format!(
                "const b = document.querySelector('#parcoords .pc-hit[data-axis=units]').getBoundingClientRect();
                 return [b.left + b.width / 2, b.top + 8 + {} * (b.height - 16)]",
                1.0 - to
            ))
            .await;
        self.drag(from, to).await;
    }

    /// Drags a rectangle in the scatter around the dots of runs `r0` and `r1`.
    async fn scatter_rectangle_around(&self, r0: i64, r1: i64) {
        let corners = self
            .js(&format!(
                "document.getElementById('scatter').scrollIntoView({{block: 'center'}});
                 const a = document.querySelector('#scatter circle[data-run=\"{r0}\"]').getBoundingClientRect();
                 const c = document.querySelector('#scatter circle[data-run=\"{r1}\"]').getBoundingClientRect();
                 return [Math.min(a.left, c.left) - 10, Math.min(a.top, c.top) - 10, Math.max(a.right, c.right) + 10, Math.max(a.bottom, c.bottom) + 10]"
            ))
            .await;
        let c: Vec<f64> = serde_json::from_value(corners).unwrap();
        self.drag((c[0], c[1]), (c[2], c[3])).await;
    }

    /// Reloads the page (the browser's reload: same address).
    async fn reload(&self) {
        self.cmd(reqwest::Method::POST, "/refresh", json!({})).await;
    }

    /// A real mouse drag (WebDriver actions) from one viewport point to another.
    async fn drag(&self, from: (f64, f64), to: (f64, f64)) {
        let (x0, y0, x1, y1) = (
            from.0.round() as i64,
            from.1.round() as i64,
            to.0.round() as i64,
            to.1.round() as i64,
        );
        self.cmd(
            reqwest::Method::POST,
            "/actions",
            json!({"actions": [{"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"}, "actions": [
                {"type": "pointerMove", "duration": 0, "x": x0, "y": y0, "origin": "viewport"},
                {"type": "pointerDown", "button": 0},
                {"type": "pointerMove", "duration": 150, "x": (x0 + x1) / 2, "y": (y0 + y1) / 2, "origin": "viewport"},
                {"type": "pointerMove", "duration": 150, "x": x1, "y": y1, "origin": "viewport"},
                {"type": "pointerUp", "button": 0}
            ]}]}),
        )
        .await;
        let _ = self
            .http
            .delete(format!("{}/actions", self.base))
            .send()
            .await;
    }

    /// `[x, y]` (viewport pixels) that `script` returns, as a pair; the script scrolls what it
    /// measures into view first.
    async fn point(&self, script: &str) -> (f64, f64) {
        let v = self.js(script).await;
        (
            v[0].as_f64().unwrap_or_else(|| panic!("not a point: {v}")),
            v[1].as_f64().unwrap_or_else(|| panic!("not a point: {v}")),
        )
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
    b.select("series", "both").await;
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
    let runs = b
        .js("const t = document.querySelector('#sweeps'); \
             const i = [...t.querySelectorAll('thead th')].findIndex((th) => th.textContent.startsWith('Runs')); \
             return t.querySelector('tbody tr').children[i].textContent")
        .await;
    assert_eq!(
        runs,
        json!(seeded.runs.len().to_string()),
        "the Runs column"
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
        text.as_str().unwrap().contains("NVIDIA H100")
            && text.as_str().unwrap().contains("6/6")
            && text.as_str().unwrap().contains("Chars/s (last epoch)"),
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
    // Per-epoch metrics are charts: one per measurement, the worker's `lr` among them.
    let metrics = b
        .js("return [...document.querySelectorAll('#metrics svg.mchart')].map((s) => s.dataset.metric + ':' + s.querySelectorAll('path.series').length)")
        .await;
    assert_eq!(
        metrics,
        json!(["chars_per_sec:1", "duration_s:1", "metrics.lr:1"])
    );
    // Zoom: drag across the middle of the loss chart, double-click to go back.
    b.zoom_loss_chart_and_back().await;
    // Another x axis: characters seen (chars/s x seconds, summed), in the address too.
    b.select("x-axis", "chars").await;
    b.wait(
        "characters on the x axis",
        "return document.querySelector('#loss svg.chart text.x-label').textContent === 'characters seen' && location.search === '?x=chars'",
    )
    .await;
    assert_eq!(
        b.js("return document.querySelectorAll('#loss svg.chart path.series').length")
            .await,
        json!(2)
    );
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
    // Open the spec and hover a line: a refresh must keep both.
    b.js("document.querySelector('#spec summary').click(); return 0")
        .await;
    let tip = b
        .js("const p = document.querySelector('svg.chart path.series'); const r = p.ownerSVGElement.getBoundingClientRect();
             const d = p.getAttribute('d').slice(1).split('L')[0].split(',').map(Number);
             p.ownerSVGElement.dispatchEvent(new MouseEvent('mousemove', {clientX: r.left + d[0], clientY: r.top + d[1], bubbles: true}));
             return document.querySelector('#loss .tip').textContent")
        .await;
    assert!(tip.as_str().unwrap().contains("epoch 1"), "{tip}");
    let renders = b.js("return document.body.dataset.renders").await;
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
    let after = b
        .js("return [document.body.dataset.renders, document.getElementById('spec').open,
                     getComputedStyle(document.querySelector('#loss .tip')).display, document.querySelector('#loss .tip').textContent]")
        .await;
    assert_ne!(after[0], renders, "the page was drawn again");
    assert_eq!(after[1], json!(true), "the spec stays open: {after}");
    assert_eq!(after[2], json!("block"), "the tooltip stays: {after}");
    assert!(after[3].as_str().unwrap().contains("epoch 1"), "{after}");
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
    b.select("colour-by", "learning_rate").await;
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
    // On another x axis the decisions stay on their curves; a rung is an epoch, drawn on the
    // epoch axis only.
    b.select("x-axis", "chars").await;
    b.wait(
        "characters on the x axis",
        "return document.querySelector('#loss svg.chart text.x-label').textContent === 'characters seen'",
    )
    .await;
    assert_eq!(
        b.js("return [document.querySelectorAll('svg.chart line.rung').length, document.querySelectorAll('svg.chart .mark').length, document.querySelectorAll('svg.chart path.series').length]")
            .await,
        json!([0, 4, 3])
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

/// The `units` of the run table's rows, top to bottom.
const TABLE_UNITS: &str = "const i = [...document.querySelectorAll('#runs thead th')].findIndex((th) => th.dataset.key === 'cfg.units');
     return [...document.querySelectorAll('#runs tbody tr')].map((tr) => +tr.children[i].textContent)";

/// A stack without tokens, a five-run sweep over units 8..40 (three epochs each) and a browser
/// on its page, its run table drawn.
async fn five_run_sweep_page() -> (Stack, crate::stack::Seeded, Browser) {
    tools();
    let s = Stack::spawn(false).await;
    let seeded = seed(&s, 5, |_| 3).await;
    let b = Browser::start().await;
    b.goto(&s.url(&format!("/sweeps/{}", seeded.sweep_id)))
        .await;
    b.wait(
        "five runs",
        "return document.querySelectorAll('#runs tbody tr').length === 5",
    )
    .await;
    (s, seeded, b)
}

/// The filter box narrows the run table (on the server, in the `--filter` language) and a bad
/// filter shows the server's error with the column moved into the text typed; headers sort from
/// the keyboard and say so in aria-sort; sort, colour, hidden runs, scale and filter are in
/// the address and a reload shows the same view. The charts are drawn in pixels.
#[tokio::test]
async fn the_filter_keyboard_sort_and_url_state_of_a_sweep_page() {
    let (s, seeded, b) = five_run_sweep_page().await;
    // One SVG unit is one pixel: the viewBox is the drawn size, nothing is stretched.
    let sized = b
        .js("const svg = document.querySelector('svg.chart'); const r = svg.getBoundingClientRect();
             return [svg.getAttribute('viewBox'), `0 0 ${r.width} ${r.height}`, svg.hasAttribute('preserveAspectRatio')]")
        .await;
    assert_eq!(sized[0], sized[1], "{sized}");
    assert_eq!(sized[2], json!(false));

    b.type_into("#filter", "units >= 24").await;
    b.wait(
        "three runs with units >= 24",
        "return document.querySelectorAll('#runs tbody tr').length === 3",
    )
    .await;
    let mut units: Vec<i64> = serde_json::from_value(b.js(TABLE_UNITS).await).unwrap();
    units.sort();
    assert_eq!(units, vec![24, 32, 40]);
    assert_eq!(
        b.js("return document.querySelectorAll('svg.chart path.series').length")
            .await,
        json!(3),
        "the chart follows the filter"
    );
    assert_eq!(
        b.js("return new URLSearchParams(location.search).get('filter')")
            .await,
        json!("units >= 24")
    );

    // A bad filter: the error and a caret under column 10 of what was typed; the table keeps
    // the last good selection.
    b.clear("#filter").await;
    b.type_into("#filter", "units >= and").await;
    b.wait(
        "the filter error",
        "return document.getElementById('filter-error').dataset.column === '10'",
    )
    .await;
    let err = b
        .js("const e = document.getElementById('filter-error'); return [e.querySelector('.error').textContent, e.querySelector('pre').textContent]")
        .await;
    assert!(err[0].as_str().unwrap().ends_with("at column 10"), "{err}");
    assert_eq!(err[1], json!(format!("units >= and\n{}^", " ".repeat(9))));
    assert_eq!(
        b.js("return document.querySelectorAll('#runs tbody tr').length")
            .await,
        json!(3)
    );
    b.screenshot("sweep-filter-error.png").await;

    b.clear("#filter").await;
    b.type_into("#filter", "units >= 16\u{E007}").await;
    b.wait(
        "four runs and no error",
        "return document.querySelectorAll('#runs tbody tr').length === 4 && !document.getElementById('filter-error').textContent",
    )
    .await;

    // Keyboard: Enter on the units header sorts ascending, Space then descending.
    b.type_into("#runs th[data-key='cfg.units'] button", "\u{E007}")
        .await;
    b.wait(
        "sorted by units, ascending",
        "return document.querySelector(\"#runs th[data-key='cfg.units']\").getAttribute('aria-sort') === 'ascending'",
    )
    .await;
    assert_eq!(b.js(TABLE_UNITS).await, json!([16, 24, 32, 40]));
    assert_eq!(
        b.js("return document.activeElement === document.querySelector(\"#runs th[data-key='cfg.units'] button\")")
            .await,
        json!(true),
        "the focus stays on the header"
    );
    b.type_into("#runs th[data-key='cfg.units'] button", "\u{E00D}")
        .await;
    b.wait(
        "sorted by units, descending",
        "return document.querySelector(\"#runs th[data-key='cfg.units']\").getAttribute('aria-sort') === 'descending'",
    )
    .await;
    assert_eq!(b.js(TABLE_UNITS).await, json!([40, 32, 24, 16]));
    assert_eq!(
        b.js("return [...document.querySelectorAll('#runs th[aria-sort]')].filter((th) => th.getAttribute('aria-sort') !== 'none').length")
            .await,
        json!(1)
    );

    // Colour by another key, hide the units=32 run, log scale; then reload.
    b.select("colour-by", "seq_len").await;
    b.js("document.querySelectorAll('#runs tbody tr')[1].querySelector('input.show').click(); return 0").await;
    b.js("document.getElementById('log-scale').click(); return 0")
        .await;
    b.wait(
        "three lines",
        "return document.querySelectorAll('svg.chart path.series').length === 3",
    )
    .await;
    let hidden_run = seeded.runs[3];
    let before = b.js("return location.search").await;
    let q = before.as_str().unwrap();
    for part in [
        "sort=cfg.units%3Adesc",
        "colour=seq_len",
        &format!("hidden={hidden_run}"),
        "scale=log",
        "filter=units+%3E%3D+16",
    ] {
        assert!(q.contains(part), "{part} not in {q}");
    }
    b.reload().await;
    b.wait(
        "the same four runs after the reload",
        "return document.querySelectorAll('#runs tbody tr').length === 4",
    )
    .await;
    assert_eq!(b.js("return location.search").await, before);
    assert_eq!(b.js(TABLE_UNITS).await, json!([40, 32, 24, 16]));
    let view = b
        .js(&format!(
            "return [document.getElementById('filter').value, document.getElementById('colour-by').value,
                     document.getElementById('log-scale').checked,
                     document.querySelector(\"#runs th[data-key='cfg.units']\").getAttribute('aria-sort'),
                     document.querySelector('#runs tr[data-run=\"{hidden_run}\"] input.show').checked,
                     document.querySelectorAll('svg.chart path.series').length,
                     [...document.querySelectorAll('svg.chart text')].some((t) => t.textContent.endsWith(', log'))]"
        ))
        .await;
    assert_eq!(
        view,
        json!(["units >= 16", "seq_len", true, "descending", false, 3, true])
    );
    assert_eq!(
        b.js("return /\\bnull\\b|undefined|NaN/.test(document.getElementById('view').innerText)")
            .await,
        json!(false),
        "no placeholder leaks into the page"
    );
    b.screenshot("sweep-url-state.png").await;
    b.quit().await;
    s.stop().await;
}

/// Brushing an axis of the parallel coordinates, or a rectangle of the scatter, narrows the
/// run table to the runs inside; ticking two runs opens the compare page: a config diff that
/// highlights exactly the differing key, one curve per run and each run's best checkpoint.
#[tokio::test]
async fn brushes_select_runs_and_the_compare_page_diffs_them() {
    let (s, seeded, b) = five_run_sweep_page().await;
    b.wait(
        "five lines in the parallel coordinates",
        "return document.querySelectorAll('#parcoords path.pc-line').length === 5",
    )
    .await;
    let axes = b
        .js("return [...document.querySelectorAll('#parcoords .pc-hit')].map((r) => r.dataset.axis)")
        .await;
    assert_eq!(axes, json!(["units", "best_val_loss"]));
    // Units 8..40 sit at 0, .25, .5, .75, 1 of the axis: drag from its top to 0.6.
    b.brush_units_from_the_top_to(0.6).await;
    b.wait(
        "two runs brushed",
        "return document.querySelectorAll('#runs tbody tr').length === 2",
    )
    .await;
    let mut units: Vec<i64> = serde_json::from_value(b.js(TABLE_UNITS).await).unwrap();
    units.sort();
    assert_eq!(units, vec![32, 40]);
    assert_eq!(
        b.js("return document.querySelectorAll('#parcoords path.pc-line:not(.dim)').length")
            .await,
        json!(2)
    );
    assert!(
        b.js("return document.getElementById('selection-count').textContent")
            .await
            .as_str()
            .unwrap()
            .starts_with("2 of 5 runs")
    );
    b.screenshot("sweep-parcoords-brush.png").await;
    b.js("document.getElementById('clear-brushes').click(); return 0")
        .await;
    b.wait(
        "all five runs again",
        "return document.querySelectorAll('#runs tbody tr').length === 5",
    )
    .await;

    // The scatter (units against best validation loss): a rectangle around the first two runs.
    assert_eq!(
        b.js("return [document.getElementById('scatter-x').value, document.getElementById('scatter-y').value]")
            .await,
        json!(["units", "best_val_loss"])
    );
    let (r0, r1) = (seeded.runs[0], seeded.runs[1]);
    b.scatter_rectangle_around(r0, r1).await;
    b.wait(
        "two runs inside the rectangle",
        "return document.querySelectorAll('#runs tbody tr').length === 2",
    )
    .await;
    let mut rows: Vec<i64> = serde_json::from_value(
        b.js(
            "return [...document.querySelectorAll('#runs tbody tr')].map((tr) => +tr.dataset.run)",
        )
        .await,
    )
    .unwrap();
    rows.sort();
    assert_eq!(rows, vec![r0, r1]);
    assert_eq!(
        b.js("return document.querySelectorAll('#scatter circle.sc-dot:not(.dim)').length")
            .await,
        json!(2)
    );
    b.screenshot("sweep-scatter-brush.png").await;

    // Compare the first and the third run.
    let r2 = seeded.runs[2];
    b.js("document.getElementById('clear-brushes').click(); return 0")
        .await;
    b.wait(
        "all five runs again",
        "return document.querySelectorAll('#runs tbody tr').length === 5",
    )
    .await;
    for r in [r0, r2] {
        b.js(&format!(
            "document.querySelector('#runs tr[data-run=\"{r}\"] input.pick').click(); return 0"
        ))
        .await;
    }
    b.wait(
        "the compare link",
        "return !!document.getElementById('compare-link')",
    )
    .await;
    b.js("document.getElementById('compare-link').click(); return 0")
        .await;
    b.wait(
        "the config diff",
        "return document.body.dataset.page === 'compare' && document.querySelectorAll('#config-diff tbody tr').length > 0",
    )
    .await;
    assert_eq!(
        b.js("return location.pathname + location.search").await,
        json!(format!("/compare?runs={r0},{r2}"))
    );
    let diff = b
        .js("return [[...document.querySelectorAll('#config-diff tbody tr')].map((tr) => tr.dataset.key),
                     [...document.querySelectorAll('#config-diff tbody tr.differs')].map((tr) => tr.dataset.key),
                     [...document.querySelectorAll('#config-diff td.diff')].map((td) => td.textContent)]")
        .await;
    assert_eq!(diff, json!([["units"], ["units"], ["8", "24"]]));
    b.js("document.getElementById('all-keys').click(); return 0")
        .await;
    b.wait(
        "every key",
        "return document.querySelectorAll('#config-diff tbody tr').length > 5",
    )
    .await;
    assert_eq!(
        b.js("return [...document.querySelectorAll('#config-diff tbody tr.differs')].map((tr) => tr.dataset.key)")
            .await,
        json!(["units"]),
        "the keys that are the same are not highlighted"
    );
    let curves = b
        .js("return [...document.querySelectorAll('svg.chart path.series')].map((p) => +p.dataset.run)")
        .await;
    assert_eq!(curves, json!([r0, r2]), "one curve per run");
    let best = b
        .js("return [...document.querySelectorAll('#best-checkpoints tbody tr')].map((tr) => [+tr.dataset.run, ...[...tr.children].slice(1).map((td) => td.textContent)])")
        .await;
    assert_eq!(best[0][0], json!(r0));
    assert_eq!(best[0][1], json!("3"), "run 0 kept epoch 3: {best}");
    assert_eq!(best[0][2], json!("2.1610"), "{best}");
    assert_eq!(best[1][0], json!(r2));
    assert_eq!(best[1][3], json!("none kept yet"), "{best}");
    assert_eq!(
        b.js("return /\\bnull\\b|undefined|NaN/.test(document.getElementById('view').innerText)")
            .await,
        json!(false),
        "no placeholder leaks into the page"
    );
    b.screenshot("compare.png").await;
    b.quit().await;
    s.stop().await;
}

/// The sweep chart has the run page's x axes (epoch, wall time, characters seen), zoom and
/// smoothing, from the same chart code, and keeps them in the address.
#[tokio::test]
async fn the_sweep_chart_offers_the_x_axes_zoom_and_smoothing_of_the_run_page() {
    let (s, _seeded, b) = five_run_sweep_page().await;
    b.wait(
        "five lines",
        "return document.querySelectorAll('#loss svg.chart path.series').length === 5",
    )
    .await;
    assert_eq!(
        b.js("return [...document.getElementById('x-axis').options].map((o) => o.value)")
            .await,
        json!(["epoch", "wall", "chars"])
    );
    b.select("x-axis", "chars").await;
    b.wait(
        "characters on the x axis",
        "return document.querySelector('#loss svg.chart text.x-label').textContent === 'characters seen'
             && new URLSearchParams(location.search).get('x') === 'chars'",
    )
    .await;
    // Each epoch is 52,000 chars/s x 1.5 s: a run's first point is at 78k characters.
    let tip = b
        .js("const p = document.querySelector('#loss svg.chart path.series'); const r = p.ownerSVGElement.getBoundingClientRect();
             const d = p.getAttribute('d').slice(1).split('L')[0].split(',').map(Number);
             p.ownerSVGElement.dispatchEvent(new MouseEvent('mousemove', {clientX: r.left + d[0], clientY: r.top + d[1], bubbles: true}));
             return document.querySelector('#loss .tip').textContent")
        .await;
    assert!(
        tip.as_str().unwrap().contains("characters seen 78k"),
        "{tip}"
    );
    b.select("x-axis", "wall").await;
    b.wait(
        "wall time on the x axis",
        "return document.querySelector('#loss svg.chart text.x-label').textContent === 'wall time'",
    )
    .await;
    // Zoom: drag across the chart; double-click to go back.
    b.zoom_loss_chart_and_back().await;
    // Smoothing: the smoothed line over a faint raw one, per run.
    b.select("smooth", "0.5").await;
    b.wait(
        "five raw lines under the smoothed ones",
        "return document.querySelectorAll('#loss svg.chart path.raw').length === 5",
    )
    .await;
    b.reload().await;
    b.wait(
        "the same chart after the reload",
        "return document.querySelectorAll('#loss svg.chart path.raw').length === 5
             && document.querySelector('#loss svg.chart text.x-label').textContent === 'wall time'",
    )
    .await;
    assert_eq!(
        b.js("return [document.getElementById('x-axis').value, document.getElementById('smooth').value]")
            .await,
        json!(["wall", "0.5"])
    );
    b.screenshot("sweep-wall-smoothed.png").await;
    b.quit().await;
    s.stop().await;
}

/// The run ids of the run table's rows, top to bottom.
const TABLE_RUNS: &str =
    "return [...document.querySelectorAll('#runs tbody tr')].map((tr) => +tr.dataset.run)";

/// Both brushes are in the address: a reload (or the link) filters the same rows.
#[tokio::test]
async fn brushes_are_kept_in_the_address() {
    let (s, seeded, b) = five_run_sweep_page().await;
    b.wait(
        "five lines in the parallel coordinates",
        "return document.querySelectorAll('#parcoords path.pc-line').length === 5",
    )
    .await;
    b.brush_units_from_the_top_to(0.6).await;
    b.wait(
        "two runs brushed",
        "return document.querySelectorAll('#runs tbody tr').length === 2",
    )
    .await;
    let rows = b.js(TABLE_RUNS).await;
    let brush = b
        .js("return new URLSearchParams(location.search).get('brush')")
        .await;
    let text = brush
        .as_str()
        .unwrap_or_else(|| panic!("no brush: {brush}"));
    assert!(
        text.starts_with("units:0.") && text.ends_with(":1"),
        "{text}"
    );
    b.reload().await;
    b.wait(
        "the same two runs after the reload",
        "return document.querySelectorAll('#parcoords path.pc-line').length === 5
             && document.querySelectorAll('#runs tbody tr').length === 2",
    )
    .await;
    assert_eq!(b.js(TABLE_RUNS).await, rows);
    assert_eq!(
        b.js("return [document.querySelectorAll('#parcoords path.pc-line:not(.dim)').length,
                      document.querySelector('#parcoords .pc-brush[data-axis=units]').getAttribute('visibility'),
                      document.getElementById('selection-count').textContent]")
            .await,
        json!([2, "visible", "2 of 5 runs selected by 1 brush"])
    );
    b.js("document.getElementById('clear-brushes').click(); return 0")
        .await;
    b.wait(
        "five runs and no brush in the address",
        "return document.querySelectorAll('#runs tbody tr').length === 5 && !new URLSearchParams(location.search).has('brush')",
    )
    .await;

    // The scatter's rectangle around the first two runs, then a reload.
    let (r0, r1) = (seeded.runs[0], seeded.runs[1]);
    b.scatter_rectangle_around(r0, r1).await;
    b.wait(
        "two runs inside the rectangle, in the address",
        "return document.querySelectorAll('#runs tbody tr').length === 2 && new URLSearchParams(location.search).has('rect')",
    )
    .await;
    b.reload().await;
    b.wait(
        "the same rectangle after the reload",
        "return document.querySelectorAll('#scatter circle.sc-dot').length === 5
             && document.querySelectorAll('#runs tbody tr').length === 2",
    )
    .await;
    let mut rows: Vec<i64> = serde_json::from_value(b.js(TABLE_RUNS).await).unwrap();
    rows.sort();
    assert_eq!(rows, vec![r0, r1]);
    assert_eq!(
        b.js(
            "return [document.querySelectorAll('#scatter circle.sc-dot:not(.dim)').length,
                      document.querySelector('#scatter rect.sc-brush').getAttribute('visibility')]"
        )
        .await,
        json!([2, "visible"])
    );
    b.screenshot("sweep-brushes-reloaded.png").await;
    b.quit().await;
    s.stop().await;
}

/// `/runs`: every run of every sweep in one table, filtered, ordered (from the keyboard too)
/// and paged by the server; colour, hidden runs, chart settings, the page and the runs ticked
/// for comparison are in the address, so a reload shows the same view; ticked runs of two
/// sweeps open the compare page.
#[tokio::test]
async fn the_runs_page_filters_orders_and_pages_every_run_and_keeps_its_view() {
    tools();
    let s = Stack::spawn(false).await;
    // Sweep A: units 8, 16, 24 with three epochs each; sweep B: units 32, 48, queued.
    let seeded = seed(&s, 3, |_| 3).await;
    let sweep_b = crate::stack::submit(
        &s,
        "dataset = \"tiny\"\n[base]\nlayers = 1\nseq_len = 16\nepochs = 4\n[grid]\nunits = [32, 48]\n".into(),
    )
    .await;
    let b_runs: Vec<i64> =
        sqlx::query_scalar("select run_id from sweep_runs where sweep_id = $1 order by run_id")
            .bind(sweep_b)
            .fetch_all(&s.db().pool)
            .await
            .unwrap();
    let [a0, a1, a2] = seeded.runs[..] else {
        panic!("three runs in sweep A")
    };
    let [b0, b1] = b_runs[..] else {
        panic!("two runs in sweep B")
    };
    let b = Browser::start().await;
    b.goto(&s.url("/runs?size=2")).await;
    let rows_are = |ids: &[i64]| {
        format!(
            "return JSON.stringify([...document.querySelectorAll('#runs tbody tr')].map((tr) => +tr.dataset.run)) === '{}'",
            serde_json::to_string(ids).unwrap()
        )
    };
    // Newest first, two a page.
    b.wait("the newest two runs", &rows_are(&[b1, b0])).await;
    assert_eq!(
        b.js("return [!!document.querySelector('nav a[href=\"/runs\"]'), document.getElementById('prev-page').disabled,
                      document.getElementById('next-page').disabled, document.getElementById('page-info').textContent]")
            .await,
        json!([true, true, false, "page 1 · runs 1–2"])
    );
    b.js("document.getElementById('next-page').click(); return 0")
        .await;
    b.wait("the second page", &rows_are(&[a2, a1])).await;
    let sweeps = b
        .js("return [...document.querySelectorAll('#runs tbody tr')].map((tr) => tr.querySelector('a[href^=\"/sweeps/\"]').textContent)")
        .await;
    let a = format!("#{}", seeded.sweep_id);
    assert_eq!(sweeps, json!([a, a]));
    assert_eq!(
        b.js("return document.querySelectorAll('#loss svg.chart path.series').length")
            .await,
        json!(2),
        "the page's two runs with epochs"
    );
    b.js("document.getElementById('next-page').click(); return 0")
        .await;
    b.wait("the last page", &rows_are(&[a0])).await;
    assert_eq!(
        b.js("return document.getElementById('next-page').disabled")
            .await,
        json!(true)
    );

    // A bad filter: the server's error under the box, the table as it was.
    b.type_into("#filter", "units >= and").await;
    b.wait(
        "the filter error",
        "return document.getElementById('filter-error').dataset.column === '10'",
    )
    .await;
    assert_eq!(b.js(TABLE_RUNS).await, json!([a0]));
    b.clear("#filter").await;
    b.type_into("#filter", "units >= 16\u{E007}").await;
    b.wait(
        "the first page of the filtered runs",
        &format!(
            "{} && !document.getElementById('filter-error').textContent",
            rows_are(&[b1, b0])
        ),
    )
    .await;

    // Keyboard: Enter on the best-val header orders by it on the server (runs without a loss
    // last), from the first page; the focus stays on the header.
    b.type_into("#runs th[data-key='best_val_loss'] button", "\u{E007}")
        .await;
    b.wait("the best two", &rows_are(&[a2, a1])).await;
    assert_eq!(
        b.js("return [document.querySelector(\"#runs th[data-key='best_val_loss']\").getAttribute('aria-sort'),
                      document.activeElement === document.querySelector(\"#runs th[data-key='best_val_loss'] button\")]")
            .await,
        json!(["ascending", true])
    );

    // Colour by units, hide a1, log scale, characters on the x axis, tick a2; next page, tick b0.
    b.select("colour-by", "units").await;
    b.js(&format!(
        "document.querySelector('#runs tr[data-run=\"{a1}\"] input.show').click(); return 0"
    ))
    .await;
    b.js("document.getElementById('log-scale').click(); return 0")
        .await;
    b.select("x-axis", "chars").await;
    b.js(&format!(
        "document.querySelector('#runs tr[data-run=\"{a2}\"] input.pick').click(); return 0"
    ))
    .await;
    b.wait(
        "one curve, on characters",
        "return document.querySelectorAll('#loss svg.chart path.series').length === 1
             && document.querySelector('#loss svg.chart text.x-label').textContent === 'characters seen'",
    )
    .await;
    b.js("document.getElementById('next-page').click(); return 0")
        .await;
    b.wait("the runs without a loss", &rows_are(&[b0, b1]))
        .await;
    b.js(&format!(
        "document.querySelector('#runs tr[data-run=\"{b0}\"] input.pick').click(); return 0"
    ))
    .await;
    b.wait(
        "the compare link",
        "return (document.getElementById('compare-link') || {}).textContent === 'compare 2 selected'",
    )
    .await;
    let before = b.js("return location.search").await;
    let q = before.as_str().unwrap().to_string();
    for part in [
        "filter=units+%3E%3D+16".to_string(),
        "sort=best_val_loss%3Aasc".into(),
        "pages=".into(),
        "size=2".into(),
        "colour=units".into(),
        format!("hidden={a1}"),
        format!("pick={a2},{b0}"),
        "scale=log".into(),
        "x=chars".into(),
    ] {
        assert!(q.contains(&part), "{part} not in {q}");
    }
    b.reload().await;
    b.wait("the same page after the reload", &rows_are(&[b0, b1]))
        .await;
    assert_eq!(b.js("return location.search").await, before);
    assert_eq!(
        b.js("return [document.getElementById('filter').value, document.getElementById('colour-by').value,
                      document.getElementById('x-axis').value, document.getElementById('log-scale').checked,
                      document.querySelector(\"#runs th[data-key='best_val_loss']\").getAttribute('aria-sort'),
                      document.getElementById('compare-link').textContent, document.getElementById('page-info').textContent]")
            .await,
        json!([
            "units >= 16",
            "units",
            "chars",
            true,
            "ascending",
            "compare 2 selected",
            "page 2 · runs 3–4"
        ])
    );
    assert_eq!(
        b.js("return /\\bnull\\b|undefined|NaN/.test(document.getElementById('view').innerText)")
            .await,
        json!(false),
        "no placeholder leaks into the page"
    );
    b.js("document.getElementById('prev-page').click(); return 0")
        .await;
    b.wait("the first page again", &rows_are(&[a2, a1])).await;
    b.wait(
        "a1 still hidden",
        &format!(
            "return document.querySelectorAll('#loss svg.chart path.series').length === 1
                 && !document.querySelector('#runs tr[data-run=\"{a1}\"] input.show').checked"
        ),
    )
    .await;
    b.screenshot("runs.png").await;

    // The ticked runs of two sweeps, compared.
    b.js("document.getElementById('compare-link').click(); return 0")
        .await;
    b.wait(
        "the config diff",
        "return document.body.dataset.page === 'compare' && document.querySelectorAll('#config-diff tbody tr').length > 0",
    )
    .await;
    assert_eq!(
        b.js("return location.pathname + location.search").await,
        json!(format!("/compare?runs={a2},{b0}"))
    );
    assert_eq!(
        b.js("return [...document.querySelectorAll('#config-diff tbody tr.differs')].map((tr) => tr.dataset.key)")
            .await,
        json!(["epochs", "units"])
    );
    b.quit().await;
    s.stop().await;
}

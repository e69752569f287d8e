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
        return Some(PathBuf::from(p));
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

    /// Runs `script` (a function body; `return` a value) in the page.
    async fn js(&self, script: &str) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
        .await
    }

    /// Polls `script` until it returns `true`; panics with `what` and the last value after 20 s.
    async fn wait(&self, what: &str, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
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

    async fn screenshot(&self, name: &str) -> PathBuf {
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
    let s = Stack::spawn(true).await;
    let seeded = seed(&s, 5, |i| [6, 5, 4, 3, 2][i]).await;
    let b = Browser::start().await;

    // The token is exchanged for a cookie once; later pages need nothing.
    b.goto(&s.url(&format!("/sweeps/{}?token={CLIENT_TOKEN}", seeded.sweep_id)))
        .await;
    b.wait(
        "the address to drop the token",
        "return !location.search.includes('token')",
    )
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
    let s = Stack::spawn(true).await;
    let seeded = seed(&s, 2, |i| [4, 2][i]).await;
    let b = Browser::start().await;
    let run = seeded.runs[0];
    b.goto(&s.url(&format!("/runs/{run}?token={CLIENT_TOKEN}")))
        .await;
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
    b.screenshot("run.png").await;

    // A new epoch through gRPC shows up without a reload.
    b.js("window.__sameDocument = true; return 0").await;
    let mut w = s.worker().await;
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
        &format!("return document.querySelector('#runs tr[data-run=\"{}\"]').textContent.includes('3/6')", seeded.runs[1]),
    )
    .await;
    assert_eq!(
        b.js("return window.__sameDocument === true").await,
        json!(true)
    );
    b.quit().await;
    s.stop().await;
}

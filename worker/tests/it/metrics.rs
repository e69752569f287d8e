//! The worker's `/metrics` (issue 20), from the real `poet-worker` binary: it trains runs
//! leased by a real coordinator (in-process, over gRPC on a free port) while the test scrapes
//! it over HTTP, and bad `--metrics-addr` values fail at startup naming the flag.

use crate::agent::{config, seed, submit, until, wait_state};
use crate::helpers::tiny;
use poet_coordinator::testing::TestCoordinator;
use poet_core::config::{Formulation, TrainConfig};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The worker process, killed when dropped so a failing test leaves nothing behind.
struct Worker {
    child: Child,
    /// Its stderr lines, as read so far by a reader thread.
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Worker {
    fn start(args: &[&str]) -> Worker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_poet-worker"))
            .args(["--device", "cpu", "--threads", "1", "run"])
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn poet-worker");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Worker {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first stderr line containing `needle` (60 s at most).
    fn wait_line(&mut self, needle: &str) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(e) => panic!("no {needle:?} from poet-worker ({e}): {:#?}", self.seen),
            }
        }
    }

    /// Where it serves `/metrics`, from its "metrics on /metrics addr=..." log line.
    fn metrics_addr(&mut self) -> SocketAddr {
        let line = self.wait_line("metrics on /metrics");
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("addr="))
            .unwrap_or_else(|| panic!("no addr= in {line:?}"));
        addr.parse().unwrap()
    }
}

/// GET `path` over plain HTTP/1.1: (status line, body).
fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

/// The value of the sample named exactly `name` (labels included when written), if present.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn scrape(addr: SocketAddr) -> String {
    let (status, body) = get(addr, "/metrics");
    assert!(status.contains("200"), "{status}: {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_binary_serves_its_metrics_while_it_trains() {
    let c = TestCoordinator::start(config(), None).await;
    let mut client = c.client();
    seed(&c, "tiny").await;
    let cache = tempfile::tempdir().unwrap();
    let url = c.url();
    let mut w = Worker::start(&[
        "--coordinator",
        &url,
        "--cache-dir",
        cache.path().to_str().unwrap(),
        "--metrics-addr",
        "127.0.0.1:0",
    ]);
    // The endpoint is up before the worker has registered: no heartbeat age or identity yet
    // is acceptable, but the counters are there from the start.
    let addr = w.metrics_addr();
    let (status, _) = get(addr, "/nothing");
    assert!(status.contains("404"), "{status}");

    let three = TrainConfig {
        epochs: 3,
        ..tiny(Formulation::Seq)
    };
    let run = submit(&mut client, "tiny", &three).await;
    wait_state(&c.db.pool, run, "succeeded").await;
    let pool = &c.db.pool;
    let (worker_id, epochs): (i64, i64) = sqlx::query_as(
        "select a.worker_id, (select count(*) from epochs e where e.run_id = a.run_id)
         from run_attempts a where a.run_id = $1",
    )
    .bind(run)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(epochs, 3);
    // The counter is bumped right after the checkpoint upload is acknowledged; the run's
    // state flips on the CompleteRun that follows, so it is already 3 here.
    let text = scrape(addr);
    assert_eq!(
        sample(&text, "poet_worker_epochs_total"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "poet_worker_leases_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "poet_worker_leases_lost_total"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(sample(&text, "poet_worker_run_id"), Some(0.0), "{text}");
    let cps = sample(&text, "poet_worker_epoch_chars_per_second").expect(&text);
    assert!(cps > 0.0, "{text}");
    // Heartbeats every 0.2 s: the age is a fraction of a second on a quiet machine; 10 s
    // only says "the heartbeat loop is alive", not how fast anything is.
    let age = sample(&text, "poet_worker_heartbeat_age_seconds").expect(&text);
    assert!((0.0..10.0).contains(&age), "heartbeat age {age}: {text}");
    assert!(
        text.contains(&format!(
            "poet_worker_info{{worker_id=\"{worker_id}\",device=\"cpu\""
        )),
        "{text}"
    );
    // A CPU worker: the GPU series are absent, not zero.
    assert!(!text.contains("poet_worker_gpu"), "{text}");

    // While a run trains, its id is the current run.
    let endless = TrainConfig {
        epochs: 1000,
        seed: 9,
        ..tiny(Formulation::Seq)
    };
    let long = submit(&mut client, "tiny", &endless).await;
    until("the long run's first epoch on the worker", || async {
        let t = scrape(addr);
        (sample(&t, "poet_worker_run_id") == Some(long as f64)
            && sample(&t, "poet_worker_epochs_total").is_some_and(|n| n >= 4.0))
        .then_some(())
    })
    .await;
    let text = scrape(addr);
    assert_eq!(
        sample(&text, "poet_worker_leases_total"),
        Some(2.0),
        "{text}"
    );
    drop(w);
}

#[test]
fn a_bad_metrics_addr_fails_at_startup_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let cache = tempfile::tempdir().unwrap();
    for (value, says) in [
        (
            "nonsense",
            "invalid value 'nonsense' for '--metrics-addr <ADDR>'",
        ),
        (taken.as_str(), "--metrics-addr"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_poet-worker"))
            .args([
                "--device",
                "cpu",
                "run",
                "--coordinator",
                "http://127.0.0.1:1",
            ])
            .args(["--cache-dir", cache.path().to_str().unwrap()])
            .args(["--metrics-addr", value])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{value}: {err}");
        assert!(err.contains(says), "{value}: {err}");
        if value == taken {
            assert!(
                err.contains(&format!("--metrics-addr {taken}")) && err.contains("in use"),
                "{err}"
            );
        }
    }
}

//! One moto S3 server per test process, and a fresh bucket per test.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use poet_coordinator::artifacts::Artifacts;

/// The running server. Its stdin is a pipe held by this process: the wrapper shell kills moto
/// when the pipe closes, that is when the test process exits however it ends.
struct Server {
    endpoint: String,
    _child: Child,
}

static SERVER: OnceLock<Server> = OnceLock::new();

// The one unsafe block: the coordinator reads its S3 settings from the environment, as in a
// deployment, and the port is only known here.
#[allow(unsafe_code)]
fn start() -> Server {
    let bin = std::env::var("POET_MOTO_SERVER").unwrap_or_else(|_| {
        panic!(
            "POET_MOTO_SERVER is not set: the S3 tests need moto's S3 server. Run them with \
             `./poet.sh test` (it installs moto into ~/.cache/poet/ and builds with \
             `--features poet-coordinator/s3`), or set POET_MOTO_SERVER to a `moto_server` binary"
        )
    });
    if let Err(e) = Artifacts::open("s3://probe") {
        panic!(
            "{e}: the S3 tests need `--features poet-coordinator/s3` (run them with `./poet.sh test`)"
        );
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    // `read` returns when our end of stdin closes; then the shell stops moto.
    let script = r#""$0" -H 127.0.0.1 -p "$1" >/dev/null 2>&1 & m=$!; read _; kill $m"#;
    let mut child = Command::new("sh")
        .args(["-c", script, &bin, &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
    let endpoint = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("{bin} exited ({status}) before serving: {err}");
        }
        assert!(
            Instant::now() < deadline,
            "{bin} did not listen on {port} within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // object_store's S3 client reads these (AmazonS3Builder::from_env), as a deployment does.
    // SAFETY: set once, inside the OnceLock's initialisation, which every test of this binary
    // (and the benchmark) passes through first, before it opens a database or starts a
    // coordinator; threads that come later wait on the OnceLock, so no other thread of this
    // process reads the environment meanwhile.
    unsafe {
        std::env::set_var("AWS_ENDPOINT", &endpoint);
        std::env::set_var("AWS_ALLOW_HTTP", "true");
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::set_var("AWS_REGION", "us-east-1");
    }
    Server {
        endpoint,
        _child: child,
    }
}

/// Starts the shared server unless it runs; every test calls this first (see `start`).
pub fn server() -> &'static str {
    // Blocks the calling thread for moto's start (a few seconds, once); a panic here reaches
    // the test with its message.
    &SERVER.get_or_init(start).endpoint
}

/// A fresh, empty bucket on the shared server; returns the artifact spec
/// `s3://<bucket>/<prefix>`.
pub async fn bucket(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let endpoint = server();
    let name = format!(
        "poet-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    // moto accepts an unsigned CreateBucket; object_store has no call for it.
    let r = reqwest::Client::new()
        .put(format!("{endpoint}/{name}"))
        .send()
        .await
        .expect("CreateBucket");
    assert!(
        r.status().is_success(),
        "CreateBucket {name}: {}",
        r.status()
    );
    format!("s3://{name}/{prefix}")
}

/// Every key under `runs/` in `store`, sorted.
pub async fn run_keys(store: &Artifacts) -> Vec<String> {
    let mut keys = store
        .list_older_than("runs", Duration::ZERO)
        .await
        .expect("list");
    keys.sort();
    keys
}

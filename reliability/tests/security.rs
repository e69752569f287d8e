//! Security of a spawned `poet coordinator`: TLS is required when configured (a plaintext
//! client fails, a client trusting the CA succeeds), and neither the bearer tokens nor the
//! database password ever reach its logs, even at `POET_LOG=debug`.

use std::time::Duration;

use anyhow::Result;
use poet_proto::v1::{self, poet_client::PoetClient, worker_service_client::WorkerServiceClient};
use poet_reliability::procs::{CoordinatorProc, CoordinatorSpec};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

fn spec(
    dir: &std::path::Path,
    database_url: String,
    env: Vec<(String, String)>,
) -> CoordinatorSpec {
    CoordinatorSpec {
        database_url,
        artifacts: dir.join("artifacts"),
        lease_ttl_s: 10.0,
        heartbeat_s: 2.0,
        reaper_s: 1.0,
        env,
        log_dir: dir.join("logs"),
    }
}

fn bearer<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    r
}

#[tokio::test]
async fn tls_is_required_when_configured() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem())?;
    std::fs::write(&key, ck.key_pair.serialize_pem())?;
    let db = poet_sql::testing::fresh_db().await;
    let env = vec![
        ("POET_TLS_CERT".to_string(), cert.display().to_string()),
        ("POET_TLS_KEY".to_string(), key.display().to_string()),
    ];
    let mut c =
        CoordinatorProc::start(&spec(dir.path(), db.url.clone(), env), "127.0.0.1:0", "tls")
            .await?;

    // Plaintext HTTP/2 against the TLS port: no answer but an error.
    let plain = tokio::time::timeout(Duration::from_secs(10), async {
        let ch = Channel::from_shared(format!("http://{}", c.addr))?
            .connect()
            .await?;
        Ok::<_, anyhow::Error>(
            PoetClient::new(ch)
                .list_sweeps(v1::ListSweepsRequest::default())
                .await?,
        )
    })
    .await
    .expect("the plaintext client gets its error promptly");
    assert!(
        plain.is_err(),
        "a plaintext client was answered by a TLS coordinator"
    );

    // TLS without trusting the self-signed CA: refused by the client's verification.
    let untrusted = async {
        let tls = ClientTlsConfig::new().domain_name("localhost");
        let ch = Channel::from_shared(format!("https://{}", c.addr))?
            .tls_config(tls)?
            .connect()
            .await?;
        Ok::<_, anyhow::Error>(
            PoetClient::new(ch)
                .list_sweeps(v1::ListSweepsRequest::default())
                .await?,
        )
    }
    .await;
    assert!(
        untrusted.is_err(),
        "a client that does not trust the CA must not connect"
    );

    // TLS trusting the CA: served.
    let tls = ClientTlsConfig::new()
        .domain_name("localhost")
        .ca_certificate(Certificate::from_pem(ck.cert.pem()));
    let ch = Channel::from_shared(format!("https://{}", c.addr))?
        .tls_config(tls)?
        .connect()
        .await?;
    PoetClient::new(ch)
        .list_sweeps(v1::ListSweepsRequest::default())
        .await?;
    c.kill().await;
    Ok(())
}

/// A CA, and a certificate it signs for `name` (server or client use).
struct Pki {
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

impl Pki {
    fn new() -> Result<Pki> {
        let ca_key = rcgen::KeyPair::generate()?;
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new())?;
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "poet test CA");
        let ca = p.self_signed(&ca_key)?;
        Ok(Pki { ca, ca_key })
    }

    /// Writes `<stem>.pem` and `<stem>.key` for `name`; returns their paths.
    fn issue(
        &self,
        dir: &std::path::Path,
        stem: &str,
        name: &str,
        usage: rcgen::ExtendedKeyUsagePurpose,
    ) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
        let key = rcgen::KeyPair::generate()?;
        let mut p = rcgen::CertificateParams::new(vec![name.to_string()])?;
        p.extended_key_usages = vec![usage];
        let cert = p.signed_by(&key, &self.ca, &self.ca_key)?;
        let (c, k) = (
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::write(&c, cert.pem())?;
        std::fs::write(&k, key.serialize_pem())?;
        Ok((c, k))
    }
}

/// SECURITY.md, finding 4: with `--tls-client-ca` a client without a certificate from that CA
/// fails the handshake; the shared client module (which the CLI and the worker use) with one
/// is served, on both services.
#[tokio::test]
async fn mtls_refuses_clients_without_a_certificate_from_the_ca() -> Result<()> {
    use poet_proto::client::Connect;
    use rcgen::ExtendedKeyUsagePurpose::ClientAuth;
    let dir = tempfile::tempdir()?;
    // The CA and certificates come from the documented command (deploy/tls/make-certs.sh).
    let tls = dir.path().join("tls");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/tls/make-certs.sh");
    for args in [vec!["localhost", "127.0.0.1"], vec!["--client", "worker-1"]] {
        let out = std::process::Command::new(script)
            .arg(&tls)
            .args(&args)
            .output()?;
        assert!(
            out.status.success(),
            "make-certs.sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (ca, cert, key) = (
        tls.join("ca.pem"),
        tls.join("cert.pem"),
        tls.join("key.pem"),
    );
    let (ccert, ckey) = (tls.join("worker-1.pem"), tls.join("worker-1.key"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key)?.permissions().mode() & 0o777, 0o600);
    let other = Pki::new()?;
    let (xcert, xkey) = other.issue(dir.path(), "stranger", "stranger", ClientAuth)?;
    let db = poet_sql::testing::fresh_db().await;
    let env = vec![
        ("POET_TLS_CERT".to_string(), cert.display().to_string()),
        ("POET_TLS_KEY".to_string(), key.display().to_string()),
        ("POET_TLS_CLIENT_CA".to_string(), ca.display().to_string()),
    ];
    let mut c = CoordinatorProc::start(
        &spec(dir.path(), db.url.clone(), env),
        "127.0.0.1:0",
        "mtls",
    )
    .await?;
    let base = Connect {
        url: format!("https://{}", c.addr),
        tls_ca: Some(ca.clone()),
        tls_domain: Some("localhost".into()),
        ..Default::default()
    };
    let list = |conn: Connect| async move {
        let ch = conn.endpoint()?.connect().await?;
        conn.client(ch)?
            .list_sweeps(v1::ListSweepsRequest::default())
            .await?;
        Ok::<_, anyhow::Error>(())
    };
    let without = tokio::time::timeout(Duration::from_secs(10), list(base.clone())).await?;
    assert!(without.is_err(), "served a client without a certificate");
    let stranger = Connect {
        tls_cert: Some(xcert),
        tls_key: Some(xkey),
        ..base.clone()
    };
    let stranger = tokio::time::timeout(Duration::from_secs(10), list(stranger)).await?;
    assert!(stranger.is_err(), "served a certificate from another CA");
    let worker = Connect {
        tls_cert: Some(ccert),
        tls_key: Some(ckey),
        ..base.clone()
    };
    list(worker.clone()).await?;
    let ch = worker.endpoint()?.connect().await?;
    worker
        .worker(ch)?
        .register(v1::RegisterRequest {
            host: "h".into(),
            device: "cpu".into(),
            ..Default::default()
        })
        .await?;
    c.kill().await;
    Ok(())
}

#[tokio::test]
async fn tokens_and_database_password_never_reach_the_logs() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = poet_sql::testing::fresh_db().await;
    // The test cluster requires its password (SECURITY.md, finding 1): the URL carries it in
    // the user info. A second copy as `?password=` (finding 12) must be masked as well.
    let password = db
        .url
        .strip_prefix("postgres://poet:")
        .and_then(|rest| rest.split_once('@'))
        .map(|(pw, _)| pw.to_string())
        .expect("the test database URL carries a password");
    assert!(password.len() >= 32, "a generated password");
    let password = password.as_str();
    let url = format!("{}?password={password}", db.url);
    let (client_token, worker_token, wrong) = (
        "client-tok-5b8e1d0f9a2c7e3f1a6d4b9c8e2f0a1d",
        "worker-tok-c41e7a9b3d06f2e8a5c1b7d9e3f4a6b0",
        "wrong-tok-0e9d8c7b6a55f1e2d3c4b5a69788a7b6",
    );
    let env = vec![
        ("POET_LOG".to_string(), "debug".to_string()),
        ("POET_CLIENT_TOKEN".to_string(), client_token.to_string()),
        ("POET_WORKER_TOKEN".to_string(), worker_token.to_string()),
    ];
    // A token issued per identity (finding 4) is a credential too.
    let (issued, _) = poet_coordinator::auth::issue_token(
        &db.pool,
        poet_coordinator::auth::Role::Client,
        "log-test",
    )
    .await?;
    let mut c =
        CoordinatorProc::start(&spec(dir.path(), url, env), "127.0.0.1:0", "secrets").await?;
    let ch = Channel::from_shared(format!("http://{}", c.addr))?
        .connect()
        .await?;
    let mut client = PoetClient::new(ch.clone());
    let mut worker = WorkerServiceClient::new(ch);
    // Good calls, wrong-role calls, wrong tokens, and an error path that names the request.
    client
        .list_sweeps(bearer(v1::ListSweepsRequest::default(), client_token))
        .await?;
    let e = client
        .list_sweeps(bearer(v1::ListSweepsRequest::default(), wrong))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let e = client
        .list_sweeps(bearer(v1::ListSweepsRequest::default(), worker_token))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    let e = client
        .submit_sweep(bearer(
            v1::SubmitSweepRequest {
                spec: "dataset = \"nope\"\n".into(),
                ..Default::default()
            },
            client_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let reg = v1::RegisterRequest {
        host: "h".into(),
        device: "cpu".into(),
        ..Default::default()
    };
    client
        .list_sweeps(bearer(v1::ListSweepsRequest::default(), &issued))
        .await?;
    // The worker secret Register hands out (finding 9) is a credential too.
    let worker_secret = worker
        .register(bearer(reg.clone(), worker_token))
        .await?
        .into_inner()
        .worker_secret;
    assert!(worker_secret.len() >= 32, "a random secret");
    assert!(worker.register(bearer(reg, client_token)).await.is_err());
    // SIGTERM-free: kill, then read everything it wrote.
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.kill().await;
    let log = std::fs::read_to_string(&c.stderr)?;
    assert!(
        log.contains("coordinator serving"),
        "the log was captured:\n{log}"
    );
    assert!(log.lines().count() > 5, "debug logging was on");
    for secret in [
        password,
        client_token,
        worker_token,
        wrong,
        issued.as_str(),
        worker_secret.as_str(),
    ] {
        assert!(
            !log.contains(secret),
            "{secret} appears in the coordinator's log"
        );
    }
    Ok(())
}

//! The private cluster requires its password (no trust, no socket), converts a cluster made
//! with `--auth=trust`, and refuses symlinks planted where it writes.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use poet_sql::cluster::{ClusterError, PrivateCluster};
use sqlx::{Connection, PgConnection};

/// A folder for a cluster. Under root the cluster runs as `postgres`, which must be able to
/// reach it, so the temporary folder is opened up to 0755 (tempfile makes it 0700).
fn cluster_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let root = tmp.path().join("cluster");
    (tmp, root)
}

async fn connects(url: &str) -> Result<(), String> {
    match PgConnection::connect(url).await {
        Ok(c) => {
            c.close().await.ok();
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn start(c: &PrivateCluster) -> poet_sql::cluster::ClusterInfo {
    c.ensure_running()
        .unwrap_or_else(|e| panic!("private cluster: {e}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_without_the_password_is_refused() {
    let (_tmp, root) = cluster_dir();
    let c = PrivateCluster::at(&root);
    let info = tokio::task::block_in_place(|| start(&c));
    let port = info.port;

    connects(&info.url()).await.expect("the cluster's own url");
    let no_password = format!("postgres://poet@127.0.0.1:{port}/poet");
    let err = connects(&no_password).await.unwrap_err();
    assert!(err.contains("password"), "refused for the password: {err}");
    let wrong = format!("postgres://poet:{}@127.0.0.1:{port}/poet", "0".repeat(64));
    let err = connects(&wrong).await.unwrap_err();
    assert!(err.contains("password authentication failed"), "{err}");
    for user in ["postgres", "root"] {
        let other = format!("postgres://{user}@127.0.0.1:{port}/poet");
        assert!(connects(&other).await.is_err(), "{user} without a password");
    }

    // The secret lives in a 0600 file; the state file and the debug form do not hold it.
    assert_eq!(mode(&info.password_file), 0o600);
    let password = fs::read_to_string(&info.password_file).unwrap();
    let password = password.trim();
    assert_eq!(password.len(), 64, "two uuids of hex");
    let state = fs::read_to_string(root.join("poet-cluster.json")).unwrap();
    assert!(!state.contains(password), "state file leaks the password");
    assert!(!format!("{info:?}").contains(password));
    assert!(!info.shown_url().contains(password));
    // No Unix socket is opened: nothing in the data folder or /tmp is named for the port.
    let socket = format!(".s.PGSQL.{port}");
    assert!(!Path::new("/tmp").join(&socket).exists());
    assert!(!info.data_dir.join(&socket).exists());

    // A second call reuses the running server and the same password.
    let again = tokio::task::block_in_place(|| start(&c));
    assert_eq!(again.url(), info.url());
    assert!(tokio::task::block_in_place(|| c.stop()).unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trust_cluster_from_an_older_poet_is_converted() {
    let (_tmp, root) = cluster_dir();
    let c = PrivateCluster::at(&root);
    let info = tokio::task::block_in_place(|| start(&c));
    let mut conn = PgConnection::connect(&info.url()).await.unwrap();
    sqlx::raw_sql("create table kept (v int); insert into kept values (7)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    tokio::task::block_in_place(|| c.stop()).unwrap();

    // What poet made before: trust for everyone on loopback, and no password file.
    fs::write(
        info.data_dir.join("pg_hba.conf"),
        "host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n",
    )
    .unwrap();
    fs::remove_file(&info.password_file).unwrap();

    let converted = tokio::task::block_in_place(|| start(&c));
    let no_password = format!("postgres://poet@127.0.0.1:{}/poet", converted.port);
    assert!(connects(&no_password).await.is_err(), "trust is gone");
    assert_ne!(converted.url(), info.url(), "a new password");
    let mut conn = PgConnection::connect(&converted.url()).await.unwrap();
    let kept: i32 = sqlx::query_scalar("select v from kept")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(kept, 7, "the data survives the conversion");
    conn.close().await.unwrap();
    assert_eq!(mode(&converted.password_file), 0o600);
    tokio::task::block_in_place(|| c.stop()).unwrap();
}

#[test]
fn symlinks_planted_where_the_cluster_writes_are_refused() {
    for name in [".lock", "poet-cluster.json", "password", "log", "data"] {
        let (tmp, root) = cluster_dir();
        fs::create_dir_all(&root).unwrap();
        let victim = tmp.path().join("victim");
        fs::write(&victim, "precious\n").unwrap();
        symlink(&victim, root.join(name)).unwrap();

        let err = PrivateCluster::at(&root).ensure_running().unwrap_err();
        assert!(matches!(err, ClusterError::Symlink { .. }), "{name}: {err}");
        assert!(err.to_string().contains(name), "names the link: {err}");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n", "{name}");
        assert_eq!(
            mode(&victim),
            0o644,
            "{name}: the target's mode is untouched"
        );
    }
    // The cluster folder itself.
    let (tmp, root) = cluster_dir();
    let elsewhere = tmp.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    symlink(&elsewhere, &root).unwrap();
    let err = PrivateCluster::at(&root).ensure_running().unwrap_err();
    assert!(matches!(err, ClusterError::Symlink { .. }), "{err}");
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
}

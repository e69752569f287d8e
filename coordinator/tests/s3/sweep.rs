//! The orphan sweep (`retention::sweep_orphans`) on S3 and on a local folder: the blobs a
//! coordinator killed at the wrong moment leaves behind are deleted once they are older than
//! the grace period, live blobs never, and only one replica sweeps at a time.

use std::time::Duration;

use bytes::Bytes;
use poet_coordinator::artifacts::Artifacts;
use poet_coordinator::retention::{SWEEP_LOCK, SweepReport, sweep_orphans};
use poet_coordinator::testing::TestCoordinator;

use crate::helpers::leased_run;
use crate::moto::{bucket, run_keys};
use crate::store::noise;
use crate::upload::{coordinator, report, rows, upload};

/// Leaves one live checkpoint, one stale blob (its row no longer live: a kill between the
/// commit and the retention delete) and one orphan (no row: a kill between storing the blob
/// and committing its row), then sweeps. Returns the coordinator, the store and the live key.
async fn scenario(spec: &str) -> (TestCoordinator, Artifacts, String) {
    let c = coordinator(spec, 1).await;
    let store = Artifacts::open(spec).unwrap();
    let (_, mut w, _, lease) = leased_run(&c, 1, 3).await;
    let first = noise(4000, 11);
    report(&mut w, &lease, 1).await;
    upload(&mut w, &lease, 1, &first).await.unwrap();
    report(&mut w, &lease, 2).await;
    upload(&mut w, &lease, 2, &noise(4000, 12)).await.unwrap();
    let rows = rows(&c).await;
    let (stale, live) = (rows[0].0.clone(), rows[1].0.clone());
    assert!(!rows[0].1 && rows[1].1);
    store.put(&stale, Bytes::from(first)).await.unwrap();
    let orphan = format!("runs/{}/epoch-00003-a1-0123456789abcdef.ckpt", lease.run_id);
    store
        .put(&orphan, Bytes::from_static(b"no row"))
        .await
        .unwrap();
    let mut all = vec![stale.clone(), live.clone(), orphan.clone()];
    all.sort();
    assert_eq!(run_keys(&store).await, all);
    let pool = &c.db.pool;

    // Younger than the grace period: kept (an upload may still be committing its row).
    let r = sweep_orphans(pool, &store, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(
        r,
        SweepReport {
            ran: true,
            ..Default::default()
        }
    );
    assert_eq!(run_keys(&store).await, all);

    // Another replica is sweeping (holds the lock): this one skips its round.
    let mut other = pool.begin().await.unwrap();
    sqlx::query("select pg_advisory_xact_lock($1)")
        .bind(SWEEP_LOCK)
        .execute(&mut *other)
        .await
        .unwrap();
    let r = sweep_orphans(pool, &store, Duration::ZERO).await.unwrap();
    assert!(!r.ran, "{r:?}");
    assert_eq!(run_keys(&store).await, all);
    other.rollback().await.unwrap();

    // Past the grace period: the stale blob and the orphan go, the live one stays.
    let r = sweep_orphans(pool, &store, Duration::ZERO).await.unwrap();
    assert_eq!((r.ran, r.examined, r.deleted), (true, 3, 2), "{r:?}");
    assert_eq!(run_keys(&store).await, std::slice::from_ref(&live));
    assert!(store.get(&live).await.unwrap().is_some());
    (c, store, live)
}

#[tokio::test]
async fn the_sweep_deletes_stale_and_orphan_blobs_on_s3() {
    let spec = bucket("sweep").await;
    let (c, store, live) = scenario(&spec).await;
    let pool = &c.db.pool;
    // A second pass finds nothing more.
    let r = sweep_orphans(pool, &store, Duration::ZERO).await.unwrap();
    assert_eq!((r.examined, r.deleted), (1, 0));
    assert_eq!(run_keys(&store).await, [live]);
    c.stop().await;
}

#[tokio::test]
async fn the_sweep_deletes_stale_orphan_and_staging_files_on_a_local_folder() {
    // No S3 here, but the shared server's start sets the environment: it must come first.
    crate::moto::server();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().display().to_string();
    let (c, store, live) = scenario(&spec).await;
    let pool = &c.db.pool;
    // A coordinator killed mid-upload leaves object_store's staging file `<key>#<n>`, which
    // listing never shows.
    let run_dir = dir.path().join(&live).parent().unwrap().to_path_buf();
    let staging = run_dir.join("epoch-00004-a1-fedcba9876543210.ckpt#3");
    std::fs::write(&staging, b"half an upload").unwrap();
    let r = sweep_orphans(pool, &store, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(r.staging_deleted, 0, "young: kept");
    assert!(staging.exists());
    let r = sweep_orphans(pool, &store, Duration::ZERO).await.unwrap();
    assert_eq!((r.deleted, r.staging_deleted), (0, 1), "{r:?}");
    assert!(!staging.exists());
    assert!(dir.path().join(&live).exists());
    c.stop().await;
}

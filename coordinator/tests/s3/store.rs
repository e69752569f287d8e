//! `Artifacts` itself against S3: a small blob, and a multipart one.

use std::time::Duration;

use bytes::Bytes;
use poet_coordinator::artifacts::Artifacts;

use crate::moto::{bucket, run_keys};

/// Deterministic, incompressible-looking bytes (a xorshift stream), so a part boundary bug
/// cannot hide behind repeated content.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[tokio::test]
async fn a_small_blob_is_stored_listed_read_and_deleted() {
    let spec = bucket("pfx/a").await;
    let store = Artifacts::open(&spec).unwrap();
    assert_eq!(store.describe(), spec.as_str());
    let data = noise(1000, 1);
    store
        .put("runs/1/a.ckpt", Bytes::from(data.clone()))
        .await
        .unwrap();
    assert_eq!(store.get("runs/1/a.ckpt").await.unwrap().unwrap(), data);
    assert_eq!(run_keys(&store).await, ["runs/1/a.ckpt"]);
    // Not older than an hour: the sweep's listing leaves it alone.
    assert!(
        store
            .list_older_than("runs", Duration::from_secs(3600))
            .await
            .unwrap()
            .is_empty()
    );
    // The prefix is honoured: another prefix in the same bucket sees nothing.
    let other = Artifacts::open(&spec.replace("pfx/a", "pfx/b")).unwrap();
    assert!(run_keys(&other).await.is_empty());
    assert_eq!(other.get("runs/1/a.ckpt").await.unwrap(), None);
    store.delete("runs/1/a.ckpt").await.unwrap();
    store.delete("runs/1/a.ckpt").await.unwrap();
    assert_eq!(store.get("runs/1/a.ckpt").await.unwrap(), None);
    assert!(run_keys(&store).await.is_empty());
}

#[tokio::test]
async fn a_blob_over_the_part_size_is_a_multipart_upload_read_back_exactly() {
    let store = Artifacts::open(&bucket("").await).unwrap();
    // object_store's WriteMultipart cuts 5 MiB parts: 12 MiB + 1 is three parts.
    let data = noise((12 << 20) + 1, 2);
    let mut w = store.writer("runs/7/big.ckpt").await.unwrap();
    for chunk in data.chunks(64 << 10) {
        w.write(chunk);
    }
    // Nothing is visible before the upload completes.
    assert_eq!(store.get("runs/7/big.ckpt").await.unwrap(), None);
    w.finish().await.unwrap();
    let back = store.get("runs/7/big.ckpt").await.unwrap().unwrap();
    assert!(back == data, "read back {} bytes, not the same", back.len());
    // S3 names a multipart object's ETag `<md5 of the part md5s>-<parts>`.
    let etag = etag(&store, "runs/7/big.ckpt").await;
    assert!(etag.trim_matches('"').ends_with("-3"), "ETag {etag}");

    // An aborted multipart upload leaves nothing visible.
    let mut w = store.writer("runs/7/aborted.ckpt").await.unwrap();
    w.write(&data[..6 << 20]);
    w.abort().await;
    assert_eq!(run_keys(&store).await, ["runs/7/big.ckpt"]);
}

async fn etag(store: &Artifacts, key: &str) -> String {
    store
        .object_meta(key)
        .await
        .unwrap()
        .and_then(|m| m.e_tag)
        .expect("an ETag")
}

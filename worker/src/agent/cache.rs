//! The worker's caches. Datasets live under `<cache_dir>/datasets/<content_hash>/` and
//! checkpoints under `<cache_dir>/checkpoints/<sha256>`; both are verified by sha256 before
//! use, and an entry that fails the check is downloaded again. A dataset download streams into
//! the cache entry's temporary folder and becomes the entry only once its sizes and sha256
//! match the coordinator's header.

use super::Worker;
use poet_proto::v1::{self as pb, dataset_chunk};
use sha2::{Digest, Sha256};
use std::path::Path;
use tonic::Status;
use tracing::{debug, warn};

/// Why a download is unusable.
#[derive(Debug, thiserror::Error)]
pub(super) enum FetchError {
    #[error("{0}")]
    Rpc(#[from] Status),
    #[error("{0}")]
    Invalid(String),
    #[error("cache: {0}")]
    Io(#[from] std::io::Error),
}

/// The dataset's training and validation text, from the cache when a verified copy is there.
pub(super) async fn fetch_dataset(
    worker: &Worker,
    dataset: &pb::Dataset,
) -> Result<(String, String), FetchError> {
    let key = if !dataset.content_hash.is_empty()
        && dataset.content_hash.chars().all(|c| c.is_ascii_hexdigit())
    {
        dataset.content_hash.clone()
    } else {
        format!("id-{}", dataset.id)
    };
    let dir = worker.cache_dir.join("datasets").join(key);
    if let Some(texts) = read_cached_dataset(&dir) {
        debug!(dataset_id = dataset.id, "dataset cache hit");
        return Ok(texts);
    }
    if dir.exists() {
        warn!(dataset_id = dataset.id, path = %dir.display(), "cached dataset fails its sha256 check; downloading it again");
    }
    let mut client = worker.client.clone();
    let stream = client
        .download_dataset(pb::DownloadDatasetRequest {
            dataset_id: dataset.id,
        })
        .await?
        .into_inner();
    download_dataset(stream, &dir).await?;
    read_cached_dataset(&dir).ok_or_else(|| {
        // Sizes and hash matched the header: the text itself is not UTF-8.
        let _ = std::fs::remove_dir_all(&dir);
        FetchError::Invalid("downloaded text is not UTF-8".into())
    })
}

/// Writes a dataset download into a temporary folder beside `dir`, chunk by chunk, checks its
/// sizes and sha256 against the header, then renames it to `dir`: a corrupt or cut download
/// never becomes a cache entry.
async fn download_dataset<S>(mut stream: S, dir: &Path) -> Result<(), FetchError>
where
    S: futures::Stream<Item = Result<pb::DatasetChunk, Status>> + Unpin,
{
    use futures::StreamExt;
    use std::io::Write;
    let parent = dir.parent().expect("dataset dir has a parent");
    let tmp = parent.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&tmp)?;
    let written = async {
        let mut train = std::fs::File::create(tmp.join("train.txt"))?;
        let mut val = std::fs::File::create(tmp.join("validation.txt"))?;
        let (mut header, mut sizes, mut hasher) = (None, [0i64; 2], Sha256::new());
        while let Some(msg) = stream.next().await {
            match msg?.part {
                Some(dataset_chunk::Part::Header(h)) => header = Some(h),
                Some(dataset_chunk::Part::Train(b)) => {
                    train.write_all(&b)?;
                    hasher.update(&b);
                    sizes[0] += b.len() as i64;
                }
                Some(dataset_chunk::Part::Validation(b)) => {
                    val.write_all(&b)?;
                    hasher.update(&b);
                    sizes[1] += b.len() as i64;
                }
                None => {}
            }
        }
        let h = header.ok_or_else(|| FetchError::Invalid("download has no header".into()))?;
        if [h.train_bytes, h.validation_bytes] != sizes {
            return Err(FetchError::Invalid(format!(
                "sizes {}+{} differ from header {}+{}",
                sizes[0], sizes[1], h.train_bytes, h.validation_bytes
            )));
        }
        let sha = hex::encode(hasher.finalize());
        if !sha.eq_ignore_ascii_case(&h.sha256) {
            return Err(FetchError::Invalid("sha256 mismatch".into()));
        }
        std::fs::write(tmp.join("sha256"), &sha)?;
        Ok(())
    }
    .await;
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&tmp, dir)?;
    Ok(())
}

fn sha_of(train: &[u8], val: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(train);
    h.update(val);
    hex::encode(h.finalize())
}

fn read_cached_dataset(dir: &Path) -> Option<(String, String)> {
    let train = std::fs::read_to_string(dir.join("train.txt")).ok()?;
    let val = std::fs::read_to_string(dir.join("validation.txt")).ok()?;
    let sha = std::fs::read_to_string(dir.join("sha256")).ok()?;
    (sha_of(train.as_bytes(), val.as_bytes()) == sha.trim()).then_some((train, val))
}

/// A checkpoint's bytes, verified against its size and sha256; cached by sha256.
pub(super) async fn fetch_checkpoint(
    worker: &Worker,
    ckpt: &pb::Checkpoint,
) -> Result<Vec<u8>, FetchError> {
    let sha = ckpt.sha256.to_ascii_lowercase();
    let cached = (!sha.is_empty() && sha.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| worker.cache_dir.join("checkpoints").join(&sha));
    if let Some(path) = &cached
        && let Ok(bytes) = std::fs::read(path)
        && hex::encode(Sha256::digest(&bytes)) == sha
    {
        return Ok(bytes);
    }
    let mut client = worker.client.clone();
    let mut stream = client
        .download_checkpoint(pb::DownloadCheckpointRequest {
            checkpoint_id: ckpt.id,
        })
        .await?
        .into_inner();
    let mut bytes = Vec::with_capacity(ckpt.size.max(0) as usize);
    while let Some(chunk) = stream.message().await? {
        bytes.extend_from_slice(&chunk.data);
    }
    if bytes.len() as i64 != ckpt.size {
        return Err(FetchError::Invalid(format!(
            "size {} differs from {}",
            bytes.len(),
            ckpt.size
        )));
    }
    if hex::encode(Sha256::digest(&bytes)) != sha {
        return Err(FetchError::Invalid("sha256 mismatch".into()));
    }
    if let Some(path) = cached {
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(tmp, path)?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A download as the coordinator streams it: header, then chunks; `sha` as announced.
    fn download(train: &str, val: &str, sha: String) -> Vec<Result<pb::DatasetChunk, Status>> {
        use dataset_chunk::Part;
        let header = pb::DatasetHeader {
            dataset: None,
            train_bytes: train.len() as i64,
            validation_bytes: val.len() as i64,
            sha256: sha,
        };
        let (t, v) = train.split_at(2);
        [
            Part::Header(header),
            Part::Train(t.into()),
            Part::Train(v.into()),
            Part::Validation(val.into()),
        ]
        .into_iter()
        .map(|p| Ok(pb::DatasetChunk { part: Some(p) }))
        .collect()
    }

    #[tokio::test]
    async fn dataset_cache_entries_are_verified_downloads() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("abc");
        let good = download("train", "val", sha_of(b"train", b"val"));
        download_dataset(futures::stream::iter(good), &d)
            .await
            .unwrap();
        assert_eq!(
            read_cached_dataset(&d),
            Some(("train".into(), "val".into()))
        );
        // A corrupt file fails the check (and is then downloaded again).
        std::fs::write(d.join("train.txt"), "trian").unwrap();
        assert_eq!(read_cached_dataset(&d), None);
        // A download that does not match its header never becomes an entry.
        let e = dir.path().join("def");
        let bad = download("train", "val", sha_of(b"other", b"val"));
        let err = download_dataset(futures::stream::iter(bad), &e)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("sha256"), "{err}");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from("abc")],
            "no entry, no temp folder"
        );
    }
}

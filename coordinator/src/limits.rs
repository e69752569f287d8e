//! What one request, lease or worker may ask of the coordinator at once. Every string a client
//! or worker sends that ends up in Postgres is bounded here, and a refusal names the field and
//! the limit (SECURITY.md, finding 6); so are the size of a generation (finding 8) and the
//! checkpoint uploads in flight per lease and per worker (finding 17).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use crate::error::{Result, ServiceError};

/// Names and labels: a sweep's name, a worker's host, device, GPU model and version, a
/// checkpoint selector. Dataset names are shorter still (100, checked by ingest).
pub const MAX_NAME_CHARS: usize = 200;

/// A cancel reason. It is copied into every run a cancel touches: a sweep-wide cancel
/// writes it up to `--max-sweep-runs` times.
pub const MAX_REASON_CHARS: usize = 1000;

/// A worker's error text (a failed run's or generation's). Kept, but cut to this length rather
/// than refused: refusing would lose the failure itself.
pub const MAX_ERROR_CHARS: usize = 4000;

/// A sweep spec as submitted (stored once with its sweep). The largest legal sweeps, a
/// thousand-value grid axis or a TPE search, are a few KiB.
pub const MAX_SPEC_BYTES: usize = 256 << 10;

/// JSON handed over to be stored: a fork's overrides, an epoch's extra metrics.
pub const MAX_JSON_BYTES: usize = 64 << 10;

/// A tag on a run or a sweep (the database's CHECK says the same).
pub const MAX_TAG_CHARS: usize = 100;

/// Tags one request may add or remove.
pub const MAX_TAGS_PER_REQUEST: usize = 32;

/// A note on a run or a sweep (the database's CHECK says the same).
pub const MAX_NOTE_CHARS: usize = 10_000;

/// Refuses a tag that is empty (or only spaces), over [`MAX_TAG_CHARS`], or holds a control
/// character (a tag is shown in one table cell).
pub fn check_tag(tag: &str) -> Result<()> {
    if tag.trim().is_empty() {
        return Err(ServiceError::Invalid(format!(
            "tag {tag:?}: a tag has 1 to {MAX_TAG_CHARS} characters, not only spaces"
        )));
    }
    check_chars(&format!("tag {tag:?}"), tag, MAX_TAG_CHARS)?;
    if tag.chars().any(char::is_control) {
        return Err(ServiceError::Invalid(format!(
            "tag {tag:?}: control characters are not allowed in a tag"
        )));
    }
    Ok(())
}

/// Refuses a note that is empty (or only spaces), over [`MAX_NOTE_CHARS`], or holds a
/// control character other than a newline or a tab.
pub fn check_note(text: &str) -> Result<()> {
    if text.trim().is_empty() {
        return Err(ServiceError::Invalid(
            "note: empty; a note has 1 to 10000 characters".into(),
        ));
    }
    check_chars("note", text, MAX_NOTE_CHARS)?;
    if let Some(c) = text
        .chars()
        .find(|c| c.is_control() && *c != '\n' && *c != '\t')
    {
        return Err(ServiceError::Invalid(format!(
            "note: control character {c:?} is not allowed (newlines and tabs are)"
        )));
    }
    Ok(())
}

/// Refuses `value` when it has more than `max` characters (Unicode scalar values).
pub fn check_chars(field: &str, value: &str, max: usize) -> Result<()> {
    // `nth` stops at the limit: a long string costs no more to check than a legal one.
    if value.chars().nth(max).is_some() {
        return Err(ServiceError::Invalid(format!(
            "{field}: {} characters is over the limit of {max}",
            value.chars().count()
        )));
    }
    Ok(())
}

/// Refuses `value` when it is longer than `max` bytes.
pub fn check_bytes(field: &str, value: &str, max: usize) -> Result<()> {
    if value.len() > max {
        return Err(ServiceError::Invalid(format!(
            "{field}: {} bytes is over the limit of {max}",
            value.len()
        )));
    }
    Ok(())
}

/// `value` cut to at most `max` characters.
pub fn truncate_chars(value: &str, max: usize) -> &str {
    match value.char_indices().nth(max) {
        Some((end, _)) => &value[..end],
        None => value,
    }
}

/// Characters one generation may sample in all (temperatures x poems x chars). The worker
/// returns them in one `CompleteGeneration` message, which may be 4 MiB
/// ([`MAX_MESSAGE_BYTES`](crate::server::MAX_MESSAGE_BYTES)): at 4 bytes per character at
/// worst that is a quarter of it, leaving room for the framing. The client's answer carries
/// the same text plus the plagiarism reports and has a 64 MiB limit.
pub const MAX_GENERATION_CHARS: usize = crate::server::MAX_MESSAGE_BYTES / 16;

/// Checkpoint uploads in flight at once under one lease, on one coordinator replica. A worker
/// uploads one checkpoint at a time; the second place lets its retry overlap an upload that
/// stalled (which keeps its place until its 60 s idle limit).
pub const MAX_UPLOADS_PER_LEASE: usize = 2;

/// Checkpoint uploads in flight at once for one worker (the owner of the leases), on one
/// coordinator replica: a worker may hold several leases.
pub const MAX_UPLOADS_PER_WORKER: usize = 4;

/// The checkpoint uploads in flight on this replica, by lease and by worker. The counts are
/// per replica, like the connections that carry the uploads.
#[derive(Debug, Default)]
pub struct Uploads {
    counts: Mutex<UploadCounts>,
}

#[derive(Debug, Default)]
struct UploadCounts {
    by_lease: HashMap<Uuid, usize>,
    by_worker: HashMap<i64, usize>,
}

/// One upload's place; given back when dropped (the upload was stored or refused, or its
/// client went away).
#[derive(Debug)]
pub struct UploadSlot {
    uploads: Arc<Uploads>,
    lease: Uuid,
    worker: i64,
}

impl Uploads {
    /// A place for an upload under `lease`, held by `worker`; RESOURCE_EXHAUSTED when either
    /// already has its maximum in flight.
    pub fn take(self: &Arc<Self>, lease: Uuid, worker: i64) -> Result<UploadSlot> {
        let mut c = self.counts.lock().expect("uploads lock");
        let under_lease = c.by_lease.get(&lease).copied().unwrap_or(0);
        if under_lease >= MAX_UPLOADS_PER_LEASE {
            return Err(ServiceError::Busy(format!(
                "upload: {under_lease} uploads under this lease are in flight, the limit per lease is {MAX_UPLOADS_PER_LEASE}; retry when one has finished"
            )));
        }
        let by_worker = c.by_worker.get(&worker).copied().unwrap_or(0);
        if by_worker >= MAX_UPLOADS_PER_WORKER {
            return Err(ServiceError::Busy(format!(
                "upload: {by_worker} uploads of worker {worker} are in flight, the limit per worker is {MAX_UPLOADS_PER_WORKER}; retry when one has finished"
            )));
        }
        *c.by_lease.entry(lease).or_default() += 1;
        *c.by_worker.entry(worker).or_default() += 1;
        Ok(UploadSlot {
            uploads: self.clone(),
            lease,
            worker,
        })
    }
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        let mut c = self.uploads.counts.lock().expect("uploads lock");
        fn give_back<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: K) {
            if let Some(n) = map.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&key);
                }
            }
        }
        give_back(&mut c.by_lease, self.lease);
        give_back(&mut c.by_worker, self.worker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_not_bytes_are_counted() {
        let e = "é".repeat(MAX_REASON_CHARS);
        assert!(check_chars("reason", &e, MAX_REASON_CHARS).is_ok());
        let over = format!("{e}x");
        let err = check_chars("reason", &over, MAX_REASON_CHARS).unwrap_err();
        assert_eq!(
            err.to_string(),
            "reason: 1001 characters is over the limit of 1000"
        );
        assert!(check_bytes("spec", &e, 2 * MAX_REASON_CHARS).is_ok());
        assert!(check_bytes("spec", &over, 2 * MAX_REASON_CHARS).is_err());
    }

    #[test]
    fn upload_places_are_bounded_and_given_back() {
        let uploads = Arc::new(Uploads::default());
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let a1 = uploads.take(a, 1).unwrap();
        let _a2 = uploads.take(a, 1).unwrap();
        let e = uploads.take(a, 1).unwrap_err();
        assert!(e.to_string().contains("limit per lease is 2"), "{e}");
        let _b = [uploads.take(b, 1).unwrap(), uploads.take(b, 1).unwrap()];
        let e = uploads.take(c, 1).unwrap_err();
        assert!(e.to_string().contains("limit per worker is 4"), "{e}");
        assert!(
            uploads.take(c, 2).is_ok(),
            "another worker is not held back"
        );
        drop(a1);
        assert!(uploads.take(c, 1).is_ok());
        drop(_b);
        drop(_a2);
        let c = uploads.counts.lock().unwrap();
        assert!(c.by_lease.is_empty() && c.by_worker.is_empty(), "{c:?}");
    }

    #[test]
    fn tags_and_notes_are_named_in_refusals() {
        assert!(check_tag("baseline").is_ok());
        assert!(check_tag("lr 1e-3 / ünits").is_ok());
        for (bad, want) in [
            ("", "tag \"\": a tag has 1 to 100"),
            ("  ", "not only spaces"),
            ("a\u{7}b", "tag \"a\\u{7}b\": control characters"),
        ] {
            let e = check_tag(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad:?}: {e}");
        }
        let long = "x".repeat(MAX_TAG_CHARS + 1);
        assert!(
            check_tag(&long)
                .unwrap_err()
                .to_string()
                .contains("101 characters is over the limit of 100")
        );
        assert!(check_note("line one\n\tline two").is_ok());
        assert!(
            check_note(" ")
                .unwrap_err()
                .to_string()
                .contains("note: empty")
        );
        assert!(
            check_note("a\u{1b}[2J")
                .unwrap_err()
                .to_string()
                .contains("control character '\\u{1b}'")
        );
        assert!(check_note(&"é".repeat(MAX_NOTE_CHARS)).is_ok());
        assert!(check_note(&"é".repeat(MAX_NOTE_CHARS + 1)).is_err());
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate_chars("héllo", 2), "hé");
        assert_eq!(truncate_chars("hé", 5), "hé");
        assert_eq!(truncate_chars("", 0), "");
    }
}

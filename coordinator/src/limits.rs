//! What one request may ask of the coordinator: the longest text it may have stored. Every
//! string a client or worker sends that ends up in Postgres is bounded here, and a refusal
//! names the field and the limit (SECURITY.md, finding 6).

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
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate_chars("héllo", 2), "hé");
        assert_eq!(truncate_chars("hé", 5), "hé");
        assert_eq!(truncate_chars("", 0), "");
    }
}

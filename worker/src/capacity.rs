//! What this worker announces at Register so that the coordinator only leases it runs it can
//! hold: threads, host memory and the operator's `--label key=value` pairs (the GPU's name and
//! memory come from `nvidia-smi` in [`crate::agent`]).

use std::collections::HashMap;

/// Host memory in bytes: `MemTotal` of `/proc/meminfo`, 0 where it cannot be read (the
/// coordinator then does not check host memory for this worker).
pub fn host_memory_bytes() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| parse_mem_total(&text))
        .unwrap_or(0)
}

/// `MemTotal:  16318412 kB` -> bytes.
fn parse_mem_total(meminfo: &str) -> Option<i64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The labels as the Register request carries them.
pub fn labels_map(labels: &[(String, String)]) -> HashMap<String, String> {
    labels.iter().cloned().collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn mem_total_is_read_in_bytes() {
        let text = "MemTotal:       16318412 kB\nMemFree:         1000 kB\n";
        assert_eq!(super::parse_mem_total(text), Some(16318412 * 1024));
        assert_eq!(super::parse_mem_total("MemFree: 1 kB"), None);
        assert!(
            super::host_memory_bytes() > 0,
            "this machine has /proc/meminfo"
        );
    }
}

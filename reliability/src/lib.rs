//! Helpers for the fault tests in `tests/`: spawning the real `poet` and `poet-worker`
//! processes, a TCP proxy that can cut links, and the invariant checks.
//!
//! Layout:
//! - [`procs`]: finding the binaries, starting coordinators and workers as child processes
//!   (killed on drop, logs kept in files so a failing test can show them);
//! - [`proxy`]: a loopback TCP proxy with cut/refuse switches and swappable backends;
//! - [`check`]: the end-of-test invariants (every run succeeded once, contiguous epochs,
//!   resumes from real checkpoints, blobs and rows agree) and their figures;
//! - [`fixtures`]: a deterministic corpus and tiny sweep specs;
//! - [`scale`]: the CI and the large sizes (`POET_CHAOS_SCALE`).

pub mod check;
pub mod fixtures;
pub mod procs;
pub mod proxy;

/// How big the chaos tests are: `POET_CHAOS_SCALE=large` for the long run, CI size otherwise.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    /// Runs in the sweep.
    pub runs: usize,
    /// Epochs per run.
    pub epochs: u32,
    /// Batches per epoch (bounds the epoch time).
    pub max_batches: u32,
    /// Seconds between injected faults.
    pub fault_every_s: f64,
    /// Whole-test deadline, seconds.
    pub deadline_s: u64,
}

/// The scale chosen by `POET_CHAOS_SCALE` (`small`, the default, or `large`).
pub fn scale() -> Scale {
    match std::env::var("POET_CHAOS_SCALE").as_deref() {
        Ok("large") => Scale {
            runs: 36,
            epochs: 8,
            max_batches: 100,
            fault_every_s: 1.5,
            deadline_s: 900,
        },
        _ => Scale {
            runs: 12,
            // Long enough that a quiet machine still sees several faults before the end.
            epochs: 10,
            max_batches: 100,
            fault_every_s: 1.2,
            deadline_s: 170,
        },
    }
}

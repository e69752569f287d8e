//! The process's allocator policy for training: keep freed memory for the next batch.
//!
//! A training step allocates and frees hundreds of MB of activations: for the reference 3×300
//! at batch 128 and 300 chars, one layer's gate pre-activations alone are 128·300·1200 floats
//! (184 MB). glibc serves every block above its mmap threshold (32 MB at most) with a fresh
//! `mmap` and `munmap`s it on free, so every batch page-faults all of it back in, 4 KB at a
//! time. Measured on the 2-core CPU machine: 2.9 M minor faults and 5.5 s of the 13 s of a
//! 4-batch 3×300 run spent in the kernel. [`retain_freed_memory`] makes glibc serve every block
//! from one heap (the main arena, for every thread) and never give that heap back, so from the
//! second batch on the same pages are reused: that run's kernel time fell to 1.1 s and training
//! went from 12.4 k to 18.2 k chars per CPU-second (BENCHMARKS.md). The cost is that the
//! process keeps its high-water mark: peak RSS 1.9 → 2.9 GB for that run. On a GPU the
//! activations live in CUDA's caching allocator and this changes little; on CPU, tensors under
//! 32 MB were already reused by glibc, so small models gain less.
//!
//! `poet-worker --malloc system` (`POET_MALLOC=system`) leaves glibc's defaults. On other C
//! libraries the policy does nothing. `tests/memory.rs` checks the effect in a process of its
//! own (the policy is process-wide and must be set before other threads pick their arenas).

/// What the process does with the memory it frees (`--malloc`, `POET_MALLOC`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Malloc {
    /// Keep it for the next batch ([`retain_freed_memory`]).
    #[default]
    Retain,
    /// glibc's defaults.
    System,
}

/// Applies `policy`; returns whether freed memory is now retained. Call it at the start of
/// `main`, before other threads start and before libtorch allocates.
pub fn apply(policy: Malloc) -> bool {
    match policy {
        Malloc::Retain => retain_freed_memory(),
        Malloc::System => false,
    }
}

/// Serves every block from the main arena's heap and never trims it; false where that cannot
/// be done (not glibc).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // FFI: glibc's mallopt has no safe wrapper.
pub fn retain_freed_memory() -> bool {
    // SAFETY: mallopt only sets glibc's malloc parameters; it is safe to call at any time.
    unsafe {
        // One arena for every thread: a thread arena (64 MB heaps) cannot hold a large
        // block and would fall back to mmap whatever M_MMAP_MAX says. The main arena grows
        // with sbrk.
        libc::mallopt(libc::M_ARENA_MAX, 1) == 1
            // No mmap'd blocks: large blocks come from that heap.
            && libc::mallopt(libc::M_MMAP_MAX, 0) == 1
            // Never trim the heap's free top back to the kernel.
            && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
    }
}

/// Serves every block from the main arena's heap and never trims it; false where that cannot
/// be done (not glibc).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn retain_freed_memory() -> bool {
    false
}

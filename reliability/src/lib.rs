//! Helpers for the fault tests in `tests/`: spawning the real `poet` and `poet-worker`
//! processes, a TCP proxy that can cut links, and the invariant checks.

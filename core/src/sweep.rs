//! Sweep specs (placeholder until the sweep module lands).

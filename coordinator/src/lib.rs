//! Coordinator (placeholder).

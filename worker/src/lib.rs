//! Worker (placeholder).

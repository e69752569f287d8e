//! Ingest (placeholder).

//! poet-sql (placeholder).

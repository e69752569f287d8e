//! `sqlx::migrate!` embeds `migrations/` at compile time, but stable Rust cannot tell cargo
//! to watch that folder from a proc macro: without this, a new migration file is missed by
//! incremental builds until something else in the crate changes.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}

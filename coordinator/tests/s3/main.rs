//! Artifact storage against a real S3 server: moto's standalone server, started by these tests
//! on a free loopback port (no Docker), with a real coordinator over real gRPC and a real
//! Postgres. Covers plain and multipart uploads, a coordinator killed mid-upload, retention
//! deletes, the download a resuming worker makes, and the orphan sweep (here and on a local
//! folder).
//!
//! `./poet.sh test` installs moto into a venv under `~/.cache/poet/`, sets `POET_MOTO_SERVER`
//! and builds with `--features poet-coordinator/s3`. Without either, every test here fails
//! with that command rather than passing silently.

#[allow(dead_code)] // shared with the `it` binary, which uses the rest
#[path = "../it/helpers.rs"]
mod helpers;
mod moto;
mod store;
mod sweep;
mod upload;

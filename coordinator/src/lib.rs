//! poet's coordinator: users submit hyperparameter sweeps, GPU workers lease the runs, and
//! everything that happens is kept in Postgres, so any process can die without losing work.
//! The coordinator itself is stateless: run as many replicas as you like against one database.
//!
//! # Layout
//! - [`server::run`]: wiring; takes the listener and a shutdown future (tests bind `127.0.0.1:0`).
//! - [`queue`]: the job queue (claim, heartbeat, fenced writes, reaper, cancel); [`batch`]:
//!   concurrent claims, reports and completions share statements.
//! - [`sweeps`]: spec validation, expansion and storage.
//! - [`scheduler`]: adaptive sweeps: early stopping, ASHA promotions, TPE proposals, budgets,
//!   each decision stored with its reason; [`control`]: retry, extend, fork, pause, priority.
//! - [`history`]: run-history queries and row → proto conversion.
//! - [`generation`]: generation requests and the plagiarism check.
//! - [`datasets`]: dataset text for workers.
//! - [`artifacts`]: the object store for checkpoints and 4-gram sets; [`retention`]: the
//!   periodic sweep of blobs no live checkpoint row names.
//! - [`web`]: the browser dashboard and its JSON API (`--http-listen`).
//! - [`limits`]: the longest text a request may store, the largest generation, uploads in
//!   flight per lease and worker.
//! - [`auth`], [`config`], [`error`], [`metrics`], [`service`].
//! - `testing` (feature `test-util`): a real coordinator on a fresh test database, for this
//!   crate's tests and the worker's and the CLI's.

pub mod artifacts;
pub mod auth;
pub mod batch;
pub mod config;
pub mod control;
pub mod datasets;
pub mod error;
pub mod generation;
pub mod history;
pub mod limits;
pub mod metrics;
pub mod queue;
pub mod retention;
pub mod scheduler;
pub mod server;
pub mod service;
pub mod sweeps;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod web;

pub use config::CoordinatorConfig;
pub use server::{CoordinatorError, run};

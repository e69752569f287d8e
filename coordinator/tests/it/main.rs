//! Coordinator integration tests: real Postgres (fresh database per test), real gRPC over a
//! socket on 127.0.0.1:0.

mod filter;
mod fleet;
mod helpers;
mod hostile;
mod queue;
mod scheduler;
mod service;
mod web;

//! poet's training worker: the character-LSTM poet in tch (libtorch), its training loop,
//! checkpoints and sampling, and the agent that serves a coordinator.
//!
//! # Layout
//! - [`vocab`]: characters <-> ids.
//! - [`data`]: examples and batches for the `keras` and `seq` formulations.
//! - [`model`]: [`model::PoetModel`], the LSTM stack with Keras-style dropout.
//! - [`optim`]: Adam with saveable state, gradient clipping.
//! - [`checkpoint`]: the safetensors + JSON checkpoint format.
//! - [`train`]: [`train::Trainer`], epochs, resume, cancel, progress.
//! - [`sample`]: batched generation and poem splitting.
//! - [`agent`]: the worker process against a coordinator ([`agent::run`]).
//! - [`capacity`]: what the worker announces at Register (memory, threads, labels).
//! - [`metrics`]: the worker's Prometheus metrics on `--metrics-addr`.
//! - [`device`]: choosing the torch device and thread count.
//! - [`memory`]: the allocator policy that keeps freed activations for the next batch.
//! - [`commands`]: the standalone `train` and `generate` commands.

pub mod agent;
pub mod capacity;
pub mod checkpoint;
pub mod commands;
pub mod data;
pub mod device;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod sample;
pub mod train;
pub mod vocab;

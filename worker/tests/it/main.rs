//! Integration tests of poet-worker: real libtorch on the CPU, tiny models, fixed seeds; the
//! agent against a real gRPC server on a free port.

mod agent;
mod device;
mod helpers;
mod metrics;
mod model;
mod recipe;
mod sample;
mod train;

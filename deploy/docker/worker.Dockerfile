# syntax=docker/dockerfile:1.7
#
# The worker image: `poet-worker run` linked against PyTorch 2.11's libtorch.
# Build from the repository root:
#   docker build -f deploy/docker/worker.Dockerfile -t poet-worker .
#
# Base: a slim Python plus the official torch wheel rather than a CUDA base image. The CUDA
# wheels carry their CUDA runtime, cuBLAS and cuDNN as nvidia-* wheels (found through
# torch's RPATH), so only the host's driver is needed, which the NVIDIA container toolkit
# mounts. `pytorch/pytorch:2.11.0-cuda13.0-cudnn9-runtime` works too (torch then lives under
# /opt/conda, so change LD_LIBRARY_PATH), but is several GB larger.
# Builder and runtime share the `torch` stage, so torch sits at the same path in both and
# the RPATH written at link time stays valid.

ARG PYTHON_VERSION=3.12
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS rust

FROM python:${PYTHON_VERSION}-slim-bookworm AS torch
ARG TORCH_VERSION=2.11.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

FROM torch AS build
# g++ compiles torch-sys' C++ shim against torch's headers.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=rust /usr/local/cargo /usr/local/cargo
COPY --from=rust /usr/local/rustup /usr/local/rustup
# torch-sys finds libtorch through the first python3 on PATH (the venv's).
ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/opt/venv/bin:/usr/local/cargo/bin:$PATH \
    LIBTORCH_USE_PYTORCH=1
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    python3 -c "import torch; assert torch.__version__.startswith('2.11.0'), torch.__version__" \
 && cargo build --release --locked -p poet-worker \
 && mkdir -p /out && cp target/release/poet-worker /out/poet-worker

FROM torch AS runtime
ARG PYTHON_VERSION
RUN groupadd --system --gid 10001 poet \
 && useradd --system --uid 10001 --gid poet --home-dir /var/cache/poet-worker --shell /usr/sbin/nologin poet \
 && mkdir -p /var/cache/poet-worker \
 && chown poet:poet /var/cache/poet-worker
COPY --from=build /out/poet-worker /usr/local/bin/poet-worker
# libtorch's shared libraries, wherever the binary was linked.
# NVIDIA_VISIBLE_DEVICES is deliberately not set: in Kubernetes the device plugin sets it to
# the GPU it assigned, and an image default of `all` would expose every GPU on the node.
ENV LD_LIBRARY_PATH=/opt/venv/lib/python${PYTHON_VERSION}/site-packages/torch/lib \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    POET_CACHE_DIR=/var/cache/poet-worker \
    RUST_LOG=info
WORKDIR /var/cache/poet-worker
USER 10001:10001
# SIGTERM: the worker stops training, hands its run back (requeued at once) and exits.
# Give it time to finish an upload: `docker stop -t 120`, compose stop_grace_period,
# Kubernetes terminationGracePeriodSeconds.
STOPSIGNAL SIGTERM
ENTRYPOINT ["poet-worker", "run"]

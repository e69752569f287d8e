# syntax=docker/dockerfile:1.7
#
# The coordinator image: the `poet` CLI (no libtorch) serving `poet coordinator`.
# Build from the repository root:
#   docker build -f deploy/docker/coordinator.Dockerfile -t poet-coordinator .
# Built with S3 artifact support by default; `--build-arg CARGO_FEATURES=` drops it.
# The image never starts a private Postgres (it has no initdb): set POET_DATABASE_URL.

ARG RUST_VERSION=1.95
ARG GO_VERSION=1.25

# grpc_health_probe for the HEALTHCHECK (Kubernetes uses its built-in grpc probe instead).
FROM golang:${GO_VERSION}-bookworm AS probe
ARG GRPC_HEALTH_PROBE_VERSION=v0.4.59
RUN CGO_ENABLED=0 GOBIN=/out go install -trimpath -ldflags="-s -w" \
        github.com/grpc-ecosystem/grpc-health-probe@${GRPC_HEALTH_PROBE_VERSION} \
 && mv /out/grpc-health-probe /out/grpc_health_probe

FROM rust:${RUST_VERSION}-slim-bookworm AS build
ARG CARGO_FEATURES=poet-coordinator/s3
WORKDIR /src
COPY . .
# The caches keep the registry and target folder between builds; the binary is copied out
# in the same step because a cache mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p poet-cli --features "${CARGO_FEATURES}" \
 && mkdir -p /out && cp target/release/poet /out/poet

FROM debian:bookworm-slim AS runtime
# ca-certificates: the S3 client verifies TLS against the system roots.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 poet \
 && useradd --system --uid 10001 --gid poet --home-dir /var/lib/poet --shell /usr/sbin/nologin poet \
 && mkdir -p /var/lib/poet/artifacts \
 && chown -R poet:poet /var/lib/poet
COPY --from=build /out/poet /usr/local/bin/poet
COPY --from=probe /out/grpc_health_probe /usr/local/bin/grpc_health_probe
# Listening beyond loopback makes the coordinator require POET_CLIENT_TOKEN and
# POET_WORKER_TOKEN; it refuses to start without them.
ENV POET_LISTEN=0.0.0.0:50051 \
    POET_METRICS_LISTEN=0.0.0.0:9464 \
    POET_HOME=/var/lib/poet \
    POET_ARTIFACTS=/var/lib/poet/artifacts \
    RUST_LOG=info
WORKDIR /var/lib/poet
# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 50051 9464
STOPSIGNAL SIGTERM
# Plaintext probe of the standard grpc.health.v1.Health service (it needs no token). With
# POET_TLS_CERT set, override it with `-tls -tls-no-verify` or a CA file.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["grpc_health_probe", "-addr=127.0.0.1:50051", "-connect-timeout=2s", "-rpc-timeout=2s"]
ENTRYPOINT ["poet", "coordinator"]

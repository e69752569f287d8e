//! The deploy files pass every check, and every check fails when its file is broken: each
//! test below edits one line of a copy of the real tree and expects that check to say so.

use poet_deploy_check::{Accepted, Tree, check_all, compose, docker, k8s, systemd, text};

fn tree() -> Tree {
    Tree::load().expect("load deploy files and sources")
}

fn accepted(t: &Tree) -> Accepted {
    Accepted::from_tree(t).expect("read the binaries' flags")
}

/// Asserts that `problems` has one containing `needle`.
#[track_caller]
fn reports(problems: Vec<String>, needle: &str) {
    assert!(
        problems.iter().any(|p| p.contains(needle)),
        "expected a problem mentioning {needle:?}, got:\n{}",
        problems.join("\n")
    );
}

const BASE_K: &str = "deploy/k8s/base/kustomization.yaml";
const OVERLAY_K: &str = "deploy/k8s/overlays/example/kustomization.yaml";
const COORD_DEP: &str = "deploy/k8s/base/coordinator-deployment.yaml";
const WORKER_DEP: &str = "deploy/k8s/base/worker-deployment.yaml";
const SERVICE: &str = "deploy/k8s/base/coordinator-service.yaml";
const SECRETS: &str = "deploy/k8s/overlays/example/secrets.yaml";

/// Runs the k8s checks on an edited tree.
fn k8s_on(t: &Tree) -> Vec<String> {
    k8s::check(t, &accepted(t))
}

#[test]
fn deploy_files_pass_every_check() {
    let problems = check_all(&tree());
    assert!(
        problems.is_empty(),
        "deploy problems:\n{}",
        problems.join("\n")
    );
}

#[test]
fn accepted_names_come_from_the_sources() {
    let t = tree();
    let a = accepted(&t);
    for n in [
        "POET_LISTEN",
        "POET_CLIENT_TOKEN",
        "POET_WORKER_TOKEN",
        "POET_METRICS_LISTEN",
        "POET_HOME",
    ] {
        assert!(a.coordinator_env.contains(n), "{n}");
    }
    for n in [
        "POET_COORDINATOR",
        "POET_TOKEN",
        "POET_DEVICE",
        "POET_CACHE_DIR",
    ] {
        assert!(a.worker_env.contains(n), "{n}");
    }
    assert!(a.worker_flags.contains("--cache-dir") && a.worker_flags.contains("--device"));
    assert!(a.coordinator_flags.contains("--database-url"));
    // Sources whose shape changed must not make every name look unknown silently.
    let gutted = t.edit(
        poet_deploy_check::WORKER_MAIN,
        "env = \"POET_COORDINATOR\"",
        "env_x = 1",
    );
    assert!(!accepted(&gutted).worker_env.contains("POET_COORDINATOR"));
}

#[test]
fn broken_yaml_is_caught() {
    let t = tree().edit(SERVICE, "  ports:\n", "  ports: [\n");
    reports(text::check_yaml_parses(&t), SERVICE);
}

#[test]
fn an_env_name_no_binary_reads_is_caught() {
    let t = tree().edit(BASE_K, "POET_LEASE_TTL=30", "POET_LEASE_TTL_S=30");
    reports(text::check_env_names(&t, &accepted(&t)), "POET_LEASE_TTL_S");
    let t = tree().edit(
        "deploy/docker/worker.Dockerfile",
        "POET_CACHE_DIR=",
        "POET_CACHE=",
    );
    reports(text::check_env_names(&t, &accepted(&t)), "POET_CACHE ");
}

#[test]
fn a_coordinator_name_on_the_worker_is_caught() {
    let t = tree().edit(BASE_K, "      - POET_THREADS=4", "      - POET_LEASE_TTL=4");
    reports(k8s_on(&t), "POET_LEASE_TTL is not read by poet-worker");
}

#[test]
fn docs_must_name_the_real_metrics() {
    let t = tree().edit_all(
        poet_deploy_check::OPERATIONS_DOC,
        "poet_fenced_writes_total",
        "poet_fenced_total",
    );
    let p = text::check_docs(&t);
    reports(p.clone(), "does not mention the metric poet_fenced_writes");
    reports(p, "poet_fenced_total");
    // The worker's metrics are held to the same rule.
    let t = tree().edit_all(
        poet_deploy_check::OPERATIONS_DOC,
        "poet_worker_leases_lost_total",
        "poet_worker_lost_total",
    );
    let p = text::check_docs(&t);
    reports(
        p.clone(),
        "does not mention the metric poet_worker_leases_lost",
    );
    reports(p, "poet_worker_lost_total");
}

#[test]
fn a_missing_secret_is_caught() {
    let t = tree().edit(SECRETS, "name: poet-s3", "name: poet-s3-creds");
    reports(k8s_on(&t), "names Secret poet-s3");
    let t = tree().edit(SECRETS, "worker-token:", "worker_token:");
    reports(k8s_on(&t), "names key worker-token");
}

#[test]
fn coordinator_replicas_below_two_are_caught() {
    let t = tree().edit(OVERLAY_K, "    count: 2", "    count: 1");
    reports(k8s_on(&t), "1 coordinator replica(s)");
}

#[test]
fn a_loopback_or_tokenless_coordinator_is_caught() {
    let t = tree().edit(
        BASE_K,
        "POET_LISTEN=0.0.0.0:50051",
        "POET_LISTEN=127.0.0.1:50051",
    );
    reports(k8s_on(&t), "is loopback");
    let t = tree().edit(
        COORD_DEP,
        "            - name: POET_CLIENT_TOKEN\n              valueFrom:\n                secretKeyRef:\n                  name: poet-tokens\n                  key: client-token\n",
        "",
    );
    reports(k8s_on(&t), "POET_CLIENT_TOKEN does not come from a Secret");
    let t = tree().edit(COORD_DEP, "key: client-token", "key: worker-token");
    reports(k8s_on(&t), "same Secret key");
    let t = tree().edit(
        SECRETS,
        "client-token: REPLACE_ME-client-token-openssl-rand-hex-32",
        "client-token: short",
    );
    reports(k8s_on(&t), "shorter than 32");
}

#[test]
fn disagreeing_ports_are_caught() {
    let t = tree().edit(SERVICE, "port: 9464", "port: 9465");
    reports(k8s_on(&t), "forwards to");
    let t = tree().edit(COORD_DEP, "containerPort: 9464", "containerPort: 9465");
    reports(k8s_on(&t), "no containerPort 9464");
    let t = tree().edit(
        BASE_K,
        "POET_LISTEN=0.0.0.0:50051",
        "POET_LISTEN=0.0.0.0:7070",
    );
    reports(k8s_on(&t), "is not port 50051");
    let t = tree().edit(
        BASE_K,
        "POET_METRICS_LISTEN=0.0.0.0:9464",
        "POET_METRICS_LISTEN=0.0.0.0:9100",
    );
    reports(k8s_on(&t), "POET_METRICS_LISTEN 0.0.0.0:9100");
    let t = tree().edit(
        BASE_K,
        "https://poet-coordinator:50051",
        "https://poet-coordinator:7070",
    );
    reports(k8s_on(&t), "is not port 50051");
    let t = tree().edit(
        "deploy/k8s/overlays/example/servicemonitor.yaml",
        "port: metrics",
        "port: grpc",
    );
    reports(k8s_on(&t), "endpoint port");
}

/// The coordinator's TLS Secret comes from cert-manager's Certificate in the overlay: without
/// it, the volumes refer to a Secret nothing makes.
#[test]
fn the_tls_secret_must_come_from_somewhere() {
    let t = tree().edit(
        "deploy/k8s/overlays/example/kustomization.yaml",
        "  - certificate.yaml\n",
        "",
    );
    reports(k8s_on(&t), "volume uses Secret poet-coordinator-tls");
}

#[test]
fn probes_must_use_grpc_health() {
    let t = tree().edit(
        COORD_DEP,
        "          readinessProbe:\n            exec:\n              command: [\"/usr/local/bin/grpc_health_probe\", \"-addr=:50051\"",
        "          readinessProbe:\n            exec:\n              command: [\"/bin/true\", \"-addr=:50051\"",
    );
    reports(
        k8s_on(&t),
        "readinessProbe must use the gRPC health service",
    );
    let t = tree().edit(
        COORD_DEP,
        "          livenessProbe:\n            exec:\n              command: [\"/usr/local/bin/grpc_health_probe\", \"-addr=:50051\"",
        "          livenessProbe:\n            exec:\n              command: [\"/usr/local/bin/grpc_health_probe\", \"-addr=:9464\"",
    );
    reports(k8s_on(&t), "livenessProbe must use the gRPC health service");
}

#[test]
fn worker_gpu_and_grace_are_checked() {
    let t = tree().edit(WORKER_DEP, "nvidia.com/gpu: 1", "nvidia.com/gpu: 2");
    reports(k8s_on(&t), "limits nvidia.com/gpu");
    let t = tree().edit(
        WORKER_DEP,
        "terminationGracePeriodSeconds: 150",
        "terminationGracePeriodSeconds: 60",
    );
    reports(k8s_on(&t), "terminationGracePeriodSeconds 60");
    let t = tree().edit(BASE_K, "POET_DEVICE=cuda:0", "POET_DEVICE=cuda:1");
    reports(k8s_on(&t), "POET_DEVICE cuda:1");
}

#[test]
fn selectors_pdb_and_artifacts_are_checked() {
    let t = tree().edit(
        "deploy/k8s/base/coordinator-pdb.yaml",
        "app.kubernetes.io/name: poet-coordinator",
        "app.kubernetes.io/name: poet",
    );
    reports(k8s_on(&t), "no PodDisruptionBudget");
    let t = tree().edit(
        SERVICE,
        "  selector:\n    app.kubernetes.io/name: poet-coordinator",
        "  selector:\n    app.kubernetes.io/name: poet-coord",
    );
    reports(k8s_on(&t), "no Service selects");
    let t = tree().edit(
        OVERLAY_K,
        "POET_ARTIFACTS=s3://poet-artifacts/prod",
        "POET_ARTIFACTS=/var/lib/poet/artifacts",
    );
    reports(k8s_on(&t), "one shared store");
    let t = tree().edit(
        BASE_K,
        "POET_HEARTBEAT_INTERVAL=5",
        "POET_HEARTBEAT_INTERVAL=20",
    );
    reports(k8s_on(&t), "at most half");
}

#[test]
fn unknown_kustomize_features_are_refused() {
    let t = tree().edit(
        OVERLAY_K,
        "replicas:\n",
        "patches:\n  - path: x.yaml\nreplicas:\n",
    );
    reports(k8s_on(&t), "`patches` is not understood");
}

const COMPOSE: &str = compose::COMPOSE;

fn compose_on(t: &Tree) -> Vec<String> {
    compose::check(t, &accepted(t))
}

#[test]
fn compose_workers_are_checked() {
    let t = tree().edit(COMPOSE, "device_ids: [\"1\"]", "device_ids: [\"0\"]");
    reports(compose_on(&t), "GPU 0 is reserved by another worker");
    let t = tree().edit(COMPOSE, "stop_grace_period: 150s", "stop_grace_period: 10s");
    reports(compose_on(&t), "stop_grace_period");
    let t = tree().edit(
        COMPOSE,
        "POET_TOKEN: ${POET_WORKER_TOKEN",
        "POET_TOKEN: ${POET_CLIENT_TOKEN",
    );
    reports(compose_on(&t), "POET_TOKEN must interpolate");
    let t = tree().edit(COMPOSE, "POET_DEVICE: cuda:0", "POET_DEVICE: cuda:1");
    reports(compose_on(&t), "POET_DEVICE cuda:1");
    let t = tree().edit(
        COMPOSE,
        "- driver: nvidia\n              device_ids: [\"1\"]",
        "- driver: nvidia\n              count: all",
    );
    reports(compose_on(&t), "exactly one GPU");
}

#[test]
fn compose_coordinator_is_checked() {
    let t = tree().edit(
        COMPOSE,
        "POET_CLIENT_TOKEN: ${POET_CLIENT_TOKEN:?set POET_CLIENT_TOKEN in .env}",
        "POET_CLIENT_TOKEN: hardcoded-token-0123456789",
    );
    reports(
        compose_on(&t),
        "POET_CLIENT_TOKEN must be set from the env file",
    );
    let t = tree().edit(COMPOSE, "\"50051:50051\"", "\"50051:50052\"");
    reports(compose_on(&t), "does not publish container port 50051");
    let t = tree().edit(COMPOSE, "-addr=127.0.0.1:50051", "-addr=127.0.0.1:9464");
    reports(compose_on(&t), "healthcheck must run grpc_health_probe");
    let t = tree().edit(COMPOSE, "      - artifacts:/var/lib/poet/artifacts\n", "");
    reports(compose_on(&t), "is not on a volume");
    let t = tree().edit(COMPOSE, "  worker-1-cache:\n", "");
    reports(compose_on(&t), "worker-1-cache, which is not declared");
}

fn systemd_on(t: &Tree) -> Vec<String> {
    systemd::check(t, &accepted(t))
}

#[test]
fn systemd_units_are_checked() {
    let w = systemd::WORKER_UNIT;
    let c = systemd::COORDINATOR_UNIT;
    reports(
        systemd_on(&tree().edit(w, "--device cuda:%i", "--device cuda:0")),
        "--device cuda:%i",
    );
    reports(
        systemd_on(&tree().edit(w, "--cache-dir", "--cache")),
        "--cache is not a flag",
    );
    reports(
        systemd_on(&tree().edit(w, "TimeoutStopSec=120", "TimeoutStopSec=30")),
        "TimeoutStopSec",
    );
    reports(
        systemd_on(&tree().edit(w, "KillSignal=SIGTERM", "KillSignal=SIGKILL")),
        "KillSignal must be SIGTERM",
    );
    reports(
        systemd_on(&tree().edit(
            w,
            "NoNewPrivileges=yes",
            "PrivateDevices=yes\nNoNewPrivileges=yes",
        )),
        "breaks CUDA",
    );
    reports(
        systemd_on(&tree().edit(c, "Restart=on-failure", "Restart=no")),
        "Restart must be on-failure",
    );
    reports(
        systemd_on(&tree().edit(c, "User=poet", "User=root")),
        "non-root user",
    );
    reports(
        systemd_on(&tree().edit(
            c,
            "ExecStart=/usr/local/bin/poet coordinator",
            "ExecStart=/usr/local/bin/poet serve",
        )),
        "ExecStart",
    );
    reports(
        systemd_on(&tree().remove("deploy/systemd/coordinator.env.example")),
        "has no example",
    );
    let t = tree().edit(
        "deploy/systemd/coordinator.env.example",
        "POET_WORKER_TOKEN=REPLACE_ME-worker-token-openssl-rand-hex-32",
        "POET_WORKER_TOKEN=REPLACE_ME-client-token-openssl-rand-hex-32",
    );
    reports(systemd_on(&t), "32+ characters, different");
}

fn docker_on(t: &Tree) -> Vec<String> {
    docker::check(t, &accepted(t))
}

#[test]
fn dockerfiles_are_checked() {
    let c = docker::COORDINATOR;
    let w = docker::WORKER;
    reports(
        docker_on(&tree().edit(c, "EXPOSE 50051 9464", "EXPOSE 50051")),
        "does not EXPOSE 9464",
    );
    reports(
        docker_on(&tree().edit(c, "USER 10001:10001", "USER root")),
        "non-root USER",
    );
    reports(
        docker_on(&tree().edit(
            c,
            "ENTRYPOINT [\"poet\", \"coordinator\"]",
            "ENTRYPOINT [\"poet\"]",
        )),
        "ENTRYPOINT must be",
    );
    reports(
        docker_on(&tree().edit(c, "-addr=127.0.0.1:50051", "-addr=127.0.0.1:5005")),
        "HEALTHCHECK must run grpc_health_probe",
    );
    reports(
        docker_on(&tree().edit(
            c,
            "/out/grpc_health_probe /usr/local/bin/grpc_health_probe",
            "/out/grpc_health_probe /usr/local/bin/probe",
        )),
        "never copies it in",
    );
    reports(
        docker_on(&tree().edit(
            c,
            "install -y --no-install-recommends ca-certificates",
            "install -y --no-install-recommends curl",
        )),
        "ca-certificates",
    );
    reports(
        docker_on(&tree().edit(c, "POET_LISTEN=0.0.0.0:50051", "POET_LISTEN=0.0.0.0:8080")),
        "ENV POET_LISTEN",
    );
    reports(
        docker_on(&tree().edit(w, "STOPSIGNAL SIGTERM", "STOPSIGNAL SIGINT")),
        "STOPSIGNAL",
    );
    reports(
        docker_on(&tree().edit(w, "    LIBTORCH_USE_PYTORCH=1", "    LIBTORCH_STATIC=0")),
        "LIBTORCH_USE_PYTORCH=1",
    );
    reports(
        docker_on(&tree().edit(
            w,
            "ENV LD_LIBRARY_PATH=/opt/venv/",
            "ENV LD_LIBRARY_PATH=/usr/",
        )),
        "outside the venv",
    );
    reports(
        docker_on(&tree().edit(
            w,
            "FROM torch AS runtime",
            "FROM python:3.12-slim-bookworm AS runtime",
        )),
        "same path in both",
    );
    reports(
        docker_on(&tree().edit(w, "ARG TORCH_VERSION=2.11.0", "ARG TORCH_VERSION=2.10.0")),
        "torch 2.11.0",
    );
}

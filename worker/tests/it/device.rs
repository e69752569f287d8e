//! `poet-worker` as a user runs it with a device this machine does not have: a one-line error
//! naming the flag, exit code 2, before any work starts (libtorch alone would fail at the
//! first tensor with a C++ backtrace). One past the last GPU is missing on every machine.

use std::process::{Command, Output};

fn poet_worker(args: &[&str], dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_poet-worker"))
        .args(args)
        .current_dir(dir)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("poet-worker runs")
}

fn assert_refused(out: &Output, flag: &str, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with(&format!("error: {flag}: ")) && stderr.contains(what),
        "{stderr}"
    );
}

#[test]
fn a_missing_gpu_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("corpus.txt"),
        "++++\nthe sun is up\nand so am i\n++++\nthe moon is low\nthe night is deep\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("run.toml"),
        "layers = 1\nunits = 8\nseq_len = 10\nepochs = 1\n",
    )
    .unwrap();
    let count = poet_worker::device::cuda_devices();
    let missing = format!("cuda:{count}");
    let what = format!("device {missing}: ");

    let train = [
        "--device",
        &missing,
        "train",
        "--corpus",
        "corpus.txt",
        "--config",
        "run.toml",
        "--out",
        "out",
    ];
    let out = poet_worker(&train, dir.path());
    assert_refused(&out, "--device", &what);
    assert!(
        !dir.path()
            .join("out")
            .join("checkpoint.safetensors")
            .exists()
    );

    // The agent refuses before it dials the coordinator (nothing listens on port 1).
    let serve = [
        "--device",
        &missing,
        "run",
        "--coordinator",
        "http://127.0.0.1:1",
    ];
    assert_refused(&poet_worker(&serve, dir.path()), "--device", &what);

    let list = format!("{count}");
    let gpus = [
        "run",
        "--coordinator",
        "http://127.0.0.1:1",
        "--gpus",
        &list,
    ];
    assert_refused(
        &poet_worker(&gpus, dir.path()),
        &format!("--gpus {count}"),
        &what,
    );
}

#[test]
fn a_gpu_listed_twice_is_refused() {
    let err = poet_worker::commands::check_gpus(&[0, 0], 2).unwrap_err();
    assert_eq!(
        err.to_string(),
        "--gpus 0,0: cuda:0 is listed twice (one worker process per GPU)"
    );
    assert_eq!(err.exit_code(), 2);
    assert!(poet_worker::commands::check_gpus(&[0, 1], 2).is_ok());
    let err = poet_worker::commands::check_gpus(&[0, 2], 2).unwrap_err();
    assert_eq!(
        err.to_string(),
        "--gpus 0,2: device cuda:2: this machine has 2 CUDA device(s), cuda:0 to cuda:1"
    );
}

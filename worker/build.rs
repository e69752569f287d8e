//! Bakes an rpath to the libtorch the worker was linked against, so `poet-worker` (and its
//! tests) start without `LD_LIBRARY_PATH`. The directory is found the way torch-sys finds it:
//! `LIBTORCH_LIB/lib`, else `LIBTORCH/lib`, else (with `LIBTORCH_USE_PYTORCH`) the `torch/lib`
//! folder of the Python on `PATH`.

use std::path::PathBuf;
use std::process::Command;

fn main() -> anyhow::Result<()> {
    for var in [
        "LIBTORCH",
        "LIBTORCH_LIB",
        "LIBTORCH_USE_PYTORCH",
        "PYTHON_SYS_EXECUTABLE",
        "PATH",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=build.rs");
    if let Some(dir) = libtorch_lib_dir()? {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
        // torch-sys links libtorch_cuda when present, but `--as-needed` drops it because no
        // symbol is referenced directly; without it CUDA is never initialised.
        if dir.join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
    } else {
        println!("cargo:warning=libtorch lib dir not found; set LD_LIBRARY_PATH at run time");
    }
    Ok(())
}

fn libtorch_lib_dir() -> anyhow::Result<Option<PathBuf>> {
    // torch-sys reads both as the libtorch root whose `lib/` holds the shared objects.
    for var in ["LIBTORCH_LIB", "LIBTORCH"] {
        if let Ok(root) = std::env::var(var) {
            return Ok(Some(PathBuf::from(root).join("lib")));
        }
    }
    if std::env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        let python = std::env::var("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|_| "python3".into());
        let out = Command::new(&python)
            .args([
                "-c",
                "import torch,os;print(os.path.join(os.path.dirname(torch.__file__),'lib'))",
            ])
            .output()?;
        anyhow::ensure!(out.status.success(), "{python} could not import torch");
        let dir = String::from_utf8(out.stdout)?.trim().to_string();
        return Ok(Some(PathBuf::from(dir)));
    }
    Ok(None)
}

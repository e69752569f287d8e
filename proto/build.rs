//! Generates the poet.v1 code with a vendored protoc, so no machine needs protoc installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let include = protoc_bin_vendored::include_path()?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = [
        "proto/poet/v1/types.proto",
        "proto/poet/v1/poet.proto",
        "proto/poet/v1/worker.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("poet_v1_descriptor.bin"))
        .compile_with_config(
            config,
            &protos.map(std::path::PathBuf::from),
            &[std::path::PathBuf::from("proto"), include],
        )?;
    Ok(())
}

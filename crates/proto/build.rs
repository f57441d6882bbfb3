//! Compiles proto/kappa/v1/*.proto with protox (a pure-Rust protoc), so no system protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time, not with env!(): a build script compiled for one checkout may be reused by
    // another that shares the target directory.
    let manifest = std::env::var("CARGO_MANIFEST_DIR")?;
    let root = std::path::Path::new(&manifest).join("../../proto");
    let file = root.join("kappa/v1/kappa.proto");
    // Relative to this package, so a target directory shared by two checkouts tracks the right file.
    println!("cargo:rerun-if-changed=../../proto/kappa/v1/kappa.proto");
    let fds = protox::compile([&file], [&root])?;
    // The descriptor set is served by gRPC server reflection (so grpcurl needs no .proto files).
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("kappa_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    // Decode errors are the client's fault: the codec says INVALID_ARGUMENT, not INTERNAL.
    tonic_prost_build::configure().btree_map(".").codec_path("crate::codec::StrictCodec").compile_fds(fds)?;
    Ok(())
}

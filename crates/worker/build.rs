//! Compiles proto/tensorboard.proto (the few fields of TensorBoard's event files that a worker
//! reads) with protox, a pure-Rust protoc, as kappa-proto compiles the wire contract.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = std::env::var("CARGO_MANIFEST_DIR")?;
    let root = std::path::Path::new(&manifest).join("proto");
    println!("cargo:rerun-if-changed=proto/tensorboard.proto");
    let fds = protox::compile([root.join("tensorboard.proto")], [&root])?;
    tonic_prost_build::configure().build_client(false).build_server(false).compile_fds(fds)?;
    Ok(())
}

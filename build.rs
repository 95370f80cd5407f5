//! Compiles proto/merit/v1 with protox (no system protoc), generates the tonic client and
//! server, the proto3 JSON mapping (pbjson), and writes the descriptor set for reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let files = [
        "merit/v1/value.proto",
        "merit/v1/outcome.proto",
        "merit/v1/classification_service.proto",
        "merit/v1/rule_set_service.proto",
        "merit/v1/evaluation_service.proto",
        "merit/v1/replay_service.proto",
    ];
    let fds = protox::Compiler::new(["proto"])?.include_imports(true).include_source_info(true).open_files(files)?.file_descriptor_set();
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let bytes = prost::Message::encode_to_vec(&fds);
    std::fs::write(out.join("merit_descriptor.bin"), &bytes)?;
    tonic_prost_build::configure().build_client(true).build_server(true).btree_map(".").compile_fds(fds)?;
    pbjson_build::Builder::new().register_descriptors(&bytes)?.btree_map(["."]).emit_fields().build(&[".merit.v1"])?;
    Ok(())
}

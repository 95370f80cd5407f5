//! Compiles proto/merit/v1 with protox (no system protoc), generates the tonic client and
//! server, the proto3 JSON mapping (pbjson), and writes the descriptor set for reflection.
//!
//! `pb` gets the messages, the clients and the JSON mapping; the servers are generated apart,
//! into `inbound/`, with merit's codec (`service::codec`: a request that does not parse is
//! INVALID_ARGUMENT). There the messages that hold a request's record are generated anew so they
//! keep each record as the bytes it arrived in (`service::wire::RawRecord`), and the server
//! decodes a record straight into the schema's slots instead of first building the value tree;
//! `Classify` answers with bytes encoded straight from the outcome
//! (`service::encoded::EncodedResponse`). Every other message is the one generated for `pb`.

use std::path::PathBuf;

/// The messages generated anew for the inbound side: those that hold a record.
const INBOUND: [&str; 4] = ["ClassifyRequest", "BatchRecord", "ClassifyBatchRequest", "ClassifyCohortRequest"];

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
    tonic_prost_build::configure().build_client(true).build_server(false).btree_map(".").compile_fds(fds.clone())?;
    pbjson_build::Builder::new().register_descriptors(&bytes)?.btree_map(["."]).emit_fields().build(&[".merit.v1"])?;

    let inbound_dir = out.join("inbound");
    std::fs::create_dir_all(&inbound_dir)?;
    let mut inbound = tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .btree_map(".")
        .codec_path("crate::service::codec::Codec")
        .out_dir(&inbound_dir);
    for file in &fds.file {
        let package = format!(".{}", file.package());
        for name in file.message_type.iter().map(|m| m.name().to_string()).chain(file.enum_type.iter().map(|e| e.name().to_string())) {
            if INBOUND.contains(&name.as_str()) {
                continue;
            }
            let rust = match name.as_str() {
                "RecordValue" => "crate::service::wire::RawRecord".to_string(),
                "ClassifyResponse" => "crate::service::encoded::EncodedResponse".to_string(),
                _ => format!("crate::service::pb::{name}"),
            };
            inbound = inbound.extern_path(format!("{package}.{name}"), rust);
        }
    }
    inbound.compile_fds(fds)?;
    Ok(())
}

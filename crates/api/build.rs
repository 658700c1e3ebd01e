//! Generates the etcd v3 protobuf messages, oxcd's peer protocol and their gRPC stubs with a vendored
//! `protoc`, so building never depends on a system protobuf installation.

const PROTOS: &[&str] = &[
    "proto/mvccpb/kv.proto",
    "proto/authpb/auth.proto",
    "proto/membershippb/membership.proto",
    "proto/etcdserverpb/rpc.proto",
    "proto/etcdserverpb/raft_internal.proto",
    "proto/v3electionpb/v3election.proto",
    "proto/v3lockpb/v3lock.proto",
    "proto/oxcdpeer/peer.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded at this point; nothing else
    // reads or writes the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };

    println!("cargo:rerun-if-changed=proto");

    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = out_dir.join("descriptors.bin");
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptors)
        .build_server(true)
        .build_client(true)
        // Raft messages as `Bytes`: decoding slices them out of the received frame without a
        // copy, and raft-rs (protobuf 2 with `bytes`) then parses entry payloads as further
        // slices of the same buffer.
        .bytes(".oxcdpeer.RaftBatch.messages")
        .compile_protos(PROTOS, &["proto"])?;

    // proto3 JSON (serde) for the client API, as etcd's gRPC gateway speaks it: original field
    // names (`create_revision`, `TTL`), defaults left out, 64-bit integers as strings, bytes as
    // base64, enums by name; unknown fields are ignored as grpc-gateway's decoder does. Only
    // serde impls are added: the protobuf encoding stays prost's.
    pbjson_build::Builder::new()
        .register_descriptors(&std::fs::read(&descriptors)?)?
        .preserve_proto_field_names()
        .ignore_unknown_fields()
        .build(&[
            ".mvccpb",
            ".authpb",
            ".membershippb",
            ".etcdserverpb",
            ".v3electionpb",
            ".v3lockpb",
        ])?;
    Ok(())
}

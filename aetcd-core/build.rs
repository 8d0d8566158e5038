//! Compiles the etcd wire definitions in `../proto` with a pure-Rust protobuf
//! parser (`protox`), so building needs no `protoc` on the machine.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let proto_dir = manifest.join("..").join("proto");
    let files = ["etcdserverpb/rpc.proto", "v3lockpb/v3lock.proto", "v3electionpb/v3election.proto"];
    println!("cargo:rerun-if-changed={}", proto_dir.display());
    for f in &files {
        println!("cargo:rerun-if-changed={}", proto_dir.join(f).display());
    }
    let descriptors = match protox::compile(files, [&proto_dir]) {
        Ok(d) => d,
        Err(e) => panic!("cannot parse the etcd wire definitions in {}: {e}", proto_dir.display()),
    };
    let mut config = prost_build::Config::new();
    // Every bytes field is a `bytes::Bytes`: decoding from a `Bytes` buffer slices it
    // instead of copying, so keys and values travel from the wire to the user without copies.
    config.bytes(["."]);
    if let Err(e) = config.compile_fds(descriptors) {
        panic!("cannot generate Rust code for the etcd wire definitions: {e}");
    }
}

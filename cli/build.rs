//! Generates the gRPC client of the part of etcd's API that `dsss bench region --against-etcd`
//! calls (proto/etcdserverpb/rpc.proto), the way dsss-wire generates the DSSS protocol.

/// The `.proto` file of package `etcdserverpb`, relative to the crate root.
const PROTO_FILE: &str = "proto/etcdserverpb/rpc.proto";

/// The include root that the file's path is relative to.
const PROTO_INCLUDE: &str = "proto";

fn main() {
    println!("cargo:rerun-if-env-changed=PROTOC");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={PROTO_FILE}");
    // dsss-wire, which this crate depends on, already checked that protoc can be found and
    // says how to install it when not.
    let result = tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .build_transport(true)
        .compile_protos(&[PROTO_FILE], &[PROTO_INCLUDE]);
    if let Err(error) = result {
        panic!("dsss-cli: compiling {PROTO_FILE} failed: {error}");
    }
}

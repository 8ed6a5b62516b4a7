//! Generates the Rust code of the DSSS protocol buffers.
//!
//! The prost messages are always generated. The tonic clients and servers are generated only
//! with the `grpc` feature, so that the sans-IO protocol crates, which turn that feature off,
//! never see tonic code.

use std::env;
use std::path::PathBuf;

/// The `.proto` files of package `dsss.v1`, relative to the crate root.
const PROTO_FILES: [&str; 4] = [
    "proto/dsss/v1/common.proto",
    "proto/dsss/v1/client.proto",
    "proto/dsss/v1/region.proto",
    "proto/dsss/v1/coordinator.proto",
];

/// The include root that the imports inside the `.proto` files are relative to.
const PROTO_INCLUDE: &str = "proto";

fn main() {
    // Cargo sets CARGO_FEATURE_<NAME> for every enabled feature of this package.
    let grpc = env::var_os("CARGO_FEATURE_GRPC").is_some();
    println!("cargo:rerun-if-env-changed=PROTOC");
    // Naming what the build reads replaces cargo's default of rerunning on any change in the
    // package, so every .proto file must be named, or edits to it would be missed.
    println!("cargo:rerun-if-changed=build.rs");
    for file in PROTO_FILES {
        println!("cargo:rerun-if-changed={file}");
    }

    if let Err(message) = ensure_protoc() {
        panic!("{message}");
    }

    let result = tonic_prost_build::configure()
        .build_client(grpc)
        .build_server(grpc)
        .build_transport(grpc)
        .compile_protos(&PROTO_FILES, &[PROTO_INCLUDE]);
    if let Err(error) = result {
        panic!("dsss-wire: compiling the protocol buffers in {PROTO_INCLUDE}/ failed: {error}");
    }
}

/// Checks that a `protoc` binary can be found, the way prost-build looks for it (the `PROTOC`
/// variable first, then the `PATH`), so that a missing compiler fails with instructions rather
/// than with a bare "file not found".
fn ensure_protoc() -> Result<(), String> {
    const INSTALL_HINT: &str = "install the protocol buffer compiler: `apt-get install \
                                protobuf-compiler` on Debian and Ubuntu, or set PROTOC to the \
                                path of a protoc binary";
    if let Some(explicit) = env::var_os("PROTOC") {
        let explicit = PathBuf::from(explicit);
        if explicit.is_file() {
            return Ok(());
        }
        return Err(format!(
            "dsss-wire: PROTOC is set to {} but no file is there; {INSTALL_HINT}",
            explicit.display()
        ));
    }
    let path = env::var_os("PATH").unwrap_or_default();
    let found = env::split_paths(&path).any(|directory| directory.join("protoc").is_file());
    if found {
        Ok(())
    } else {
        Err(format!(
            "dsss-wire: protoc was not found on the PATH; {INSTALL_HINT}"
        ))
    }
}

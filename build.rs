//! Generates the gRPC code of `proto/` (apache.rocketmq.v2) with no system `protoc`: protox
//! compiles the .proto files in Rust, tonic-prost-build writes the messages and services.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(["apache/rocketmq/v2/service.proto"], ["proto"])?;
    tonic_prost_build::configure()
        // Bodies stay `Bytes`: a received body is handed to storage without a copy.
        .bytes(".apache.rocketmq.v2.Message.body")
        .compile_fds(descriptors)?;
    Ok(())
}

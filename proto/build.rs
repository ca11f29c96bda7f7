//! Generates the tonic/prost code for `bote/v1/*.proto`. Uses `$PROTOC` when
//! set, else the vendored protoc, so no install step is needed. `bytes`
//! fields become `bytes::Bytes` so message payloads cross without copies.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // SAFETY: the build script is single-threaded here; prost-build reads
        // PROTOC from the environment to find the compiler.
        unsafe { std::env::set_var("PROTOC", protoc) };
    }
    let include = protoc_bin_vendored::include_path()?;
    println!("cargo:rerun-if-changed=bote/v1/inter_router.proto");
    // `Batch` is written by hand (src/batch.rs): same wire form, each frame
    // sized once.
    tonic_prost_build::configure()
        .bytes(".")
        .extern_path(".bote.v1.Batch", "crate::batch::Batch")
        .compile_protos(
            &[std::path::PathBuf::from("bote/v1/inter_router.proto")],
            &[std::path::PathBuf::from("."), include],
        )?;
    Ok(())
}

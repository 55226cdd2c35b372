//! Hashes labpipe's sources for the code identity in cache keys (src/cache/code_identity.rs), and compiles
//! src/cuda/kernels.cu to PTX when the `cuda` feature is on (candle-kernels needs nvcc for that feature
//! already). The PTX targets compute capability 7.5 so one binary runs on every GPU from Turing on; the driver
//! compiles it for the card at first use and caches the result.

#[allow(dead_code)]
#[path = "src/cache/code_identity.rs"]
mod code_identity;

fn main() {
    // A directory makes Cargo rerun this script when anything under it changes (kernels.cu included).
    for root in code_identity::HASHED_ROOTS {
        println!("cargo:rerun-if-changed={root}");
    }
    println!("cargo:rerun-if-env-changed=NVCC");
    write_source_hashes();
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let ptx = out.join("labpipe_kernels.ptx");
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".to_string());
    // -fmad=false: `a * b + c` rounds as on the CPU, so CPU and GPU optimizer updates agree bit for bit.
    let status = std::process::Command::new(&nvcc)
        .args(["--ptx", "-arch=compute_75", "-O3", "-fmad=false", "-o"])
        .arg(&ptx)
        .arg("src/cuda/kernels.cu")
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "`{nvcc} --ptx src/cuda/kernels.cu` failed ({s}); the `cuda` feature needs the CUDA toolkit"
        ),
        Err(e) => panic!(
            "could not run `{nvcc}` ({e}): the `cuda` feature needs the CUDA toolkit's nvcc on PATH \
             (scripts/cuda/toolkit.sh installs one)"
        ),
    }
}

/// `$OUT_DIR/source_hashes.rs` (every hashed file's blake3) and `LABPIPE_CANDLE_VERSION` (Candle's version in
/// Cargo.lock), which src/cache/key.rs embeds.
fn write_source_hashes() {
    let root = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let table = code_identity::hash_tree(&root).expect("hashing labpipe's sources");
    std::fs::write(out.join("source_hashes.rs"), code_identity::to_rust(&table))
        .expect("writing source_hashes.rs");
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap_or_default();
    let candle = code_identity::locked_version(&lock, "candle-core").unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=LABPIPE_CANDLE_VERSION={candle}");
}

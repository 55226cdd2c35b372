//! Compiles src/cuda/kernels.cu to PTX when the `cuda` feature is on (candle-kernels needs nvcc for that
//! feature already). The PTX targets compute capability 7.5 so one binary runs on every GPU from Turing on;
//! the driver compiles it for the card at first use and caches the result.

fn main() {
    println!("cargo:rerun-if-changed=src/cuda/kernels.cu");
    println!("cargo:rerun-if-env-changed=NVCC");
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

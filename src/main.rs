//! The `labpipe` command line: the only place errors become exit codes (0 ok, 1 a run failed, 2 bad input,
//! 130 interrupted).

use mimalloc::MiMalloc;

// Candle's CPU training spends half its time in page faults with glibc malloc; mimalloc halves step time.
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

mod cli;

fn main() {
    // `labpipe report | head` must end quietly like other Unix tools, not panic on a closed pipe.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Candle's elementwise thread pool spin-waits and competes with labpipe's rayon kernels on few cores:
    // on 2 cores one Candle thread trains ResNet-18 8-26% faster with ~11% less CPU per step, and costs
    // evaluation nothing now that its BatchNorm is fused (measured; see BENCHMARKS.md, CANDLE_NUM_THREADS).
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: no other thread exists yet at the start of main.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
    }
    labpipe::memory::keep_freed_pages();
    std::process::exit(cli::main());
}

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
    std::process::exit(cli::main());
}

//! Running the real `labpipe` binary: to completion, or in the background to be watched and signalled.
//!
//! Each child gets its working directory and environment through `Command`; the test process's own (one
//! process for every test module) is never changed.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `labpipe ARGS` in `dir`, not started yet (to add environment variables or other arguments).
pub fn command(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_labpipe"));
    c.args(args).current_dir(dir);
    c
}

/// Run `labpipe ARGS` in `dir` to completion.
pub fn labpipe(dir: &Path, args: &[&str]) -> Output {
    command(dir, args).output().expect("running labpipe")
}

/// Start `labpipe ARGS` in `dir` with stdout and stderr going to `log` (read it while the process runs).
pub fn spawn(dir: &Path, args: &[&str], log: &Path) -> Child {
    let f = std::fs::File::create(log).unwrap();
    command(dir, args)
        .stdout(Stdio::from(f.try_clone().unwrap()))
        .stderr(Stdio::from(f))
        .spawn()
        .expect("starting labpipe")
}

/// A finished run's stdout, as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A finished run's stderr, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Poll `ready` every 5 ms; panic with `what` after `secs` seconds.
pub fn wait_for(secs: u64, what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out after {secs}s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Send `signal` (libc::SIGKILL, libc::SIGINT) to a child.
pub fn signal(child: &Child, signal: i32) {
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped yet.
    let rc = unsafe { libc::kill(child.id() as i32, signal) };
    assert_eq!(rc, 0, "kill({}, {signal}) failed", child.id());
}

//! `run --jobs N`: up to N runs at once on this machine, each a child `labpipe run … --run NAME` of this same
//! binary on the same out directory, with the CPU threads (or the listed GPUs) shared out between them.
//!
//! Every line a child prints comes out prefixed with its run's name. Children live in their own process
//! group, so a Ctrl-C at the terminal reaches only this process, which passes each Ctrl-C on to every child:
//! the first lets each finish its batch and keep its checkpoint, a second stops them at once, as for one
//! `labpipe run`. A child whose parent dies is sent SIGINT by the kernel (Linux), so none trains on unseen.

use super::RunTask;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The environment variable that sizes rayon's pool (labpipe's CPU kernels and Candle's matrix products).
pub const THREADS_VAR: &str = "RAYON_NUM_THREADS";

/// Runs to compute as child processes, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalJobs {
    /// The labpipe executable the children run (this one: `std::env::current_exe`).
    pub labpipe: PathBuf,
    /// `--out` of every child.
    pub out: PathBuf,
    /// `-S PATH=VALUE` overrides, the same for every child.
    pub overrides: Vec<String>,
    /// More `labpipe run` arguments for every child (`--workers 1`, `--quiet`).
    pub run_args: Vec<String>,
    /// The runs, started in this order.
    pub tasks: Vec<RunTask>,
    /// Devices as `--device` takes them; the child in slot `i` computes on `devices[i % len]`.
    pub devices: Vec<String>,
    /// How many children run at once (at least 1).
    pub jobs: usize,
    /// `RAYON_NUM_THREADS` for each child; `None` leaves the environment as it is.
    pub threads: Option<usize>,
    /// Prefix lines with `pipeline/run` rather than `run` (when runs of several pipelines share names).
    pub long_labels: bool,
}

/// How a child ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildEnd {
    /// It exited with this status code (0 done, 1 a run failed, 2 bad input, 130 interrupted).
    Exited(i32),
    /// A signal killed it.
    Killed(i32),
    /// It could not be started.
    NotStarted(String),
    /// Ctrl-C came before its turn: it was never started.
    Skipped,
}

impl ChildEnd {
    fn of(status: ExitStatus) -> ChildEnd {
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            if let Some(signal) = status.signal() {
                return ChildEnd::Killed(signal);
            }
        }
        ChildEnd::Exited(status.code().unwrap_or(1))
    }

    /// Whether the run completed.
    pub fn is_success(&self) -> bool {
        *self == ChildEnd::Exited(0)
    }

    /// Whether Ctrl-C stopped it, or it never started because of one.
    pub fn is_interrupted(&self) -> bool {
        matches!(
            self,
            ChildEnd::Exited(130) | ChildEnd::Killed(2) | ChildEnd::Skipped
        )
    }
}

impl std::fmt::Display for ChildEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChildEnd::Exited(0) => f.write_str("done"),
            ChildEnd::Exited(130) => f.write_str("interrupted"),
            ChildEnd::Exited(code) => write!(f, "failed (exit code {code})"),
            ChildEnd::Killed(signal) => write!(f, "killed by signal {signal}"),
            ChildEnd::NotStarted(why) => write!(f, "could not start: {why}"),
            ChildEnd::Skipped => f.write_str("not started (interrupted)"),
        }
    }
}

/// One task and how its child ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskEnd {
    /// The run.
    pub task: RunTask,
    /// The device it was given.
    pub device: Option<String>,
    /// How its child ended.
    pub end: ChildEnd,
    /// Wall-clock seconds the child ran.
    pub seconds: f64,
}

/// A child that is running.
struct Running {
    task: usize,
    slot: usize,
    child: Child,
    readers: Vec<JoinHandle<()>>,
    started: Instant,
}

impl LocalJobs {
    /// The arguments of the child that computes `task` on `device`.
    pub fn child_args(&self, task: &RunTask, device: &str) -> Vec<String> {
        let mut args = vec![
            "run".to_string(),
            task.pipeline.display().to_string(),
            "--out".into(),
            self.out.display().to_string(),
            "--run".into(),
            task.run.clone(),
            "--device".into(),
            device.to_string(),
        ];
        for o in &self.overrides {
            args.push("-S".into());
            args.push(o.clone());
        }
        args.extend(self.run_args.iter().cloned());
        args
    }

    /// How a task's lines are labelled.
    pub fn label(&self, task: &RunTask) -> String {
        if self.long_labels {
            let stem = task
                .pipeline
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned());
            format!("{}/{}", stem.unwrap_or_default(), task.run)
        } else {
            task.run.clone()
        }
    }

    fn spawn(&self, index: usize, slot: usize) -> Result<Running, String> {
        let task = &self.tasks[index];
        let device = &self.devices[slot % self.devices.len()];
        let mut command = Command::new(&self.labpipe);
        command
            .args(self.child_args(task, device))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(n) = self.threads {
            command.env(THREADS_VAR, n.to_string());
        }
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            // Own process group: a terminal's Ctrl-C reaches only the parent, which passes it on once.
            command.process_group(0);
            #[cfg(target_os = "linux")]
            // SAFETY: prctl(2) with PR_SET_PDEATHSIG and signal(2) only change the calling (forked) process;
            // both are async-signal-safe and allocate nothing.
            unsafe {
                command.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // A parent started in the background by a script ignores SIGINT, and an ignored signal is
                    // inherited: the child must hear the SIGINT this parent passes on (and the death signal).
                    if libc::signal(libc::SIGINT, libc::SIG_DFL) == libc::SIG_ERR {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = command.spawn().map_err(|e| e.to_string())?;
        let label = self.label(task);
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(relay(out, label.clone(), false));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(relay(err, label, true));
        }
        Ok(Running {
            task: index,
            slot,
            child,
            readers,
            started: Instant::now(),
        })
    }

    /// Runs every task, `jobs` at a time, and returns how each ended, in task order.
    ///
    /// `interrupts` counts Ctrl-Cs (the caller's signal handler adds one each time): once it is above zero
    /// no further child starts, and every increase is passed on to the running children as a SIGINT.
    /// `on_end` hears of each child as it ends.
    pub fn run(&self, interrupts: &AtomicUsize, mut on_end: impl FnMut(&TaskEnd)) -> Vec<TaskEnd> {
        let jobs = self.jobs.max(1);
        let mut ends: Vec<Option<TaskEnd>> = vec![None; self.tasks.len()];
        let mut next = 0;
        let mut free: Vec<usize> = (0..jobs).rev().collect();
        let mut running: Vec<Running> = Vec::new();
        let mut passed_on = 0;
        loop {
            let seen = interrupts.load(Ordering::SeqCst);
            if seen > passed_on {
                for r in &running {
                    send_interrupt(&r.child);
                }
                passed_on = seen;
            }
            while seen == 0 && next < self.tasks.len() {
                let Some(slot) = free.pop() else { break };
                match self.spawn(next, slot) {
                    Ok(r) => running.push(r),
                    Err(why) => {
                        free.push(slot);
                        let end = self.end(next, slot, ChildEnd::NotStarted(why), 0.0);
                        on_end(&end);
                        ends[next] = Some(end);
                    }
                }
                next += 1;
            }
            let mut i = 0;
            while i < running.len() {
                match running[i].child.try_wait() {
                    Ok(Some(status)) => {
                        let r = running.swap_remove(i);
                        for reader in r.readers {
                            let _ = reader.join();
                        }
                        free.push(r.slot);
                        let seconds = r.started.elapsed().as_secs_f64();
                        let end = self.end(r.task, r.slot, ChildEnd::of(status), seconds);
                        on_end(&end);
                        ends[r.task] = Some(end);
                    }
                    Ok(None) => i += 1,
                    Err(e) => {
                        let mut r = running.swap_remove(i);
                        let _ = r.child.kill();
                        let _ = r.child.wait();
                        free.push(r.slot);
                        let end = self.end(r.task, r.slot, ChildEnd::NotStarted(e.to_string()), 0.0);
                        on_end(&end);
                        ends[r.task] = Some(end);
                    }
                }
            }
            let nothing_to_start = next >= self.tasks.len() || interrupts.load(Ordering::SeqCst) > 0;
            if running.is_empty() && nothing_to_start {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        ends.into_iter()
            .enumerate()
            .map(|(i, e)| e.unwrap_or_else(|| self.end(i, 0, ChildEnd::Skipped, 0.0)))
            .collect()
    }

    fn end(&self, task: usize, slot: usize, end: ChildEnd, seconds: f64) -> TaskEnd {
        let device = match end {
            ChildEnd::Skipped => None,
            _ => Some(self.devices[slot % self.devices.len()].clone()),
        };
        TaskEnd {
            task: self.tasks[task].clone(),
            device,
            end,
            seconds,
        }
    }
}

/// Passes a Ctrl-C on to a child.
fn send_interrupt(child: &Child) {
    #[cfg(unix)]
    // SAFETY: kill(2) on the pid of a child this process started and has not reaped yet.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    #[cfg(not(unix))]
    let _ = child;
}

/// Copies a child's output to this process's stdout or stderr, a whole line at a time, each prefixed with
/// `[label] ` (lines of two children never interleave within a line).
fn relay(pipe: impl Read + Send + 'static, label: String, to_stderr: bool) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\n', '\r']);
            let out = format!("[{label}] {text}\n");
            // A closed stdout (`| head`) must not stop the child: keep reading, drop what cannot be written.
            let _ = if to_stderr {
                std::io::stderr().lock().write_all(out.as_bytes())
            } else {
                std::io::stdout().lock().write_all(out.as_bytes())
            };
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn fake(dir: &Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("labpipe");
        std::fs::write(&path, format!("#!/bin/bash\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn jobs(labpipe: PathBuf, runs: &[&str], jobs: usize) -> LocalJobs {
        LocalJobs {
            labpipe,
            out: "/lab/out".into(),
            overrides: vec!["train.epochs=1".into()],
            run_args: vec!["--workers".into(), "1".into()],
            tasks: runs
                .iter()
                .map(|r| RunTask {
                    pipeline: "/lab/ci.yaml".into(),
                    run: r.to_string(),
                })
                .collect(),
            devices: vec!["cuda:0".into(), "cuda:1".into()],
            jobs,
            threads: Some(3),
            long_labels: false,
        }
    }

    #[test]
    fn child_arguments_select_exactly_one_run() {
        let j = jobs("/bin/labpipe".into(), &["lr[lr=0.01,scheduler=step]"], 1);
        assert_eq!(
            j.child_args(&j.tasks[0], "cuda:1"),
            [
                "run",
                "/lab/ci.yaml",
                "--out",
                "/lab/out",
                "--run",
                "lr[lr=0.01,scheduler=step]",
                "--device",
                "cuda:1",
                "-S",
                "train.epochs=1",
                "--workers",
                "1"
            ]
        );
        let mut long = j.clone();
        long.long_labels = true;
        assert_eq!(long.label(&j.tasks[0]), "ci/lr[lr=0.01,scheduler=step]");
    }

    #[test]
    fn runs_every_task_at_most_jobs_at_a_time_with_its_device_and_threads() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("log");
        // Each child notes when it starts and ends, its run, device and thread count, and how many
        // children are running alongside it (a count file guarded by flock).
        let body = format!(
            r#"run=$6; dev=$8
exec 9>>'{0}.lock'; flock 9; n=$(( $(cat '{0}.n' 2>/dev/null || echo 0) + 1 )); echo $n > '{0}.n'; echo "start $run $dev $RAYON_NUM_THREADS $n" >> '{0}'; flock -u 9
echo "training $run"; echo "progress $run" >&2; sleep 0.3
flock 9; echo $(( $(cat '{0}.n') - 1 )) > '{0}.n'; echo "end $run" >> '{0}'; flock -u 9
[[ $run != bad ]] || exit 1"#,
            log.display()
        );
        let j = jobs(fake(tmp.path(), &body), &["a", "b", "bad", "d", "e"], 2);
        let mut heard = Vec::new();
        let ends = j.run(&AtomicUsize::new(0), |e| heard.push(e.task.run.clone()));
        assert_eq!(
            ends.iter()
                .map(|e| (e.task.run.as_str(), e.end.clone()))
                .collect::<Vec<_>>(),
            [
                ("a", ChildEnd::Exited(0)),
                ("b", ChildEnd::Exited(0)),
                ("bad", ChildEnd::Exited(1)),
                ("d", ChildEnd::Exited(0)),
                ("e", ChildEnd::Exited(0))
            ]
        );
        heard.sort();
        assert_eq!(heard, ["a", "b", "bad", "d", "e"]);
        let text = std::fs::read_to_string(&log).unwrap();
        let starts: Vec<Vec<&str>> = text
            .lines()
            .filter_map(|l| l.strip_prefix("start "))
            .map(|l| l.split(' ').collect())
            .collect();
        assert_eq!(starts.len(), 5, "{text}");
        // Never more than two at once, and two at once at some point; each on its slot's device.
        assert!(starts.iter().all(|s| s[3] == "1" || s[3] == "2"), "{text}");
        assert!(starts.iter().any(|s| s[3] == "2"), "{text}");
        assert!(
            starts.iter().all(|s| s[1] == "cuda:0" || s[1] == "cuda:1"),
            "{text}"
        );
        assert!(starts.iter().all(|s| s[2] == "3"), "{text}");
        let first_two: Vec<&str> = starts[..2].iter().map(|s| s[1]).collect();
        assert!(
            first_two.contains(&"cuda:0") && first_two.contains(&"cuda:1"),
            "{text}"
        );
    }

    #[test]
    fn an_interrupt_reaches_every_child_and_starts_no_more() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("log");
        // A child that, like labpipe, exits 130 on SIGINT. It sleeps through `wait`, which a trapped signal
        // interrupts at once (bash defers a trap while a foreground `sleep` runs). Run it with SIGINT ignored
        // (`(cargo test … &)` from a script) too: the parent must reset it for its children.
        let body = format!(
            "trap 'echo \"stopped $6\" >> \"{0}\"; exit 130' INT\necho \"started $6\" >> '{0}'\nfor i in $(seq 200); do sleep 0.05 & wait $!; done\nexit 0",
            log.display()
        );
        let j = jobs(fake(tmp.path(), &body), &["a", "b", "c"], 2);
        let interrupts = AtomicUsize::new(0);
        let ends = std::thread::scope(|s| {
            let handle = s.spawn(|| j.run(&interrupts, |_| {}));
            let started = || std::fs::read_to_string(&log).unwrap_or_default().lines().count();
            let t = Instant::now();
            while started() < 2 {
                assert!(t.elapsed() < Duration::from_secs(20), "children did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
            interrupts.fetch_add(1, Ordering::SeqCst);
            handle.join().unwrap()
        });
        let got: Vec<ChildEnd> = ends.iter().map(|e| e.end.clone()).collect();
        assert_eq!(
            got,
            [ChildEnd::Exited(130), ChildEnd::Exited(130), ChildEnd::Skipped]
        );
        assert!(ends.iter().all(|e| e.end.is_interrupted()));
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("stopped a") && text.contains("stopped b"), "{text}");
        assert!(!text.contains("started c"), "{text}");
    }

    #[test]
    fn a_missing_program_is_reported_per_task() {
        let j = jobs("/nonexistent/labpipe".into(), &["a"], 1);
        let ends = j.run(&AtomicUsize::new(0), |_| {});
        assert!(matches!(ends[0].end, ChildEnd::NotStarted(_)), "{:?}", ends[0]);
        assert!(!ends[0].end.is_success());
    }
}

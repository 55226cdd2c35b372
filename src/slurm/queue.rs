//! What Slurm says about a submitted job: the state of each array element, and waiting for the end.
//!
//! labpipe asks `scontrol -o show job <id>`, not squeue or sacct: squeue forgets a job as soon as it ends,
//! sacct needs slurmdbd (which a small cluster may not run), while slurmctld keeps a finished job for
//! MinJobAge (default 300 s) with its state and exit code, and `show job` of an array lists every element.

use std::fmt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::job::{JobId, Submission};
use super::submit::SlurmTools;

/// Where a job or array element stands, from Slurm's JobState (and Reason and ExitCode where they matter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    /// Waiting to start; `reason` is Slurm's (Resources, Priority, Dependency, JobHeldUser...).
    Pending {
        /// Slurm's reason.
        reason: String,
    },
    /// Running.
    Running,
    /// Suspended by an administrator or a preemption.
    Suspended,
    /// Finished; Slurm is still cleaning up on the node.
    Completing,
    /// Exited with status 0.
    Completed,
    /// Exited non-zero, was killed by a signal, or could not be launched.
    Failed {
        /// The exit status (the `E` in `ExitCode=E:S`).
        exit_code: i32,
        /// The signal that ended it, or Slurm's launch error code (`S`; 53 when the log folder is missing).
        signal: i32,
        /// Slurm's reason: NonZeroExitCode, JobLaunchFailure...
        reason: String,
    },
    /// Cancelled (scancel, or an unsatisfiable dependency).
    Cancelled,
    /// Killed at its time limit.
    Timeout,
    /// Its node failed.
    NodeFail,
    /// Killed for using more memory than it asked for.
    OutOfMemory,
    /// Preempted by a higher-priority job and not requeued.
    Preempted,
    /// Its node failed to boot.
    BootFail,
    /// Did not start before its deadline.
    Deadline,
    /// A transitional state labpipe does not interpret (CONFIGURING, REQUEUED, RESIZING, STOPPED,
    /// SIGNALING, STAGE_OUT...); the job is still in the queue.
    Other {
        /// Slurm's JobState.
        state: String,
    },
}

impl TaskState {
    /// Whether the job has left the queue for good (anything but pending, running and the transitions).
    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            TaskState::Pending { .. }
                | TaskState::Running
                | TaskState::Suspended
                | TaskState::Completing
                | TaskState::Other { .. }
        )
    }

    /// Whether it ended with exit status 0.
    pub fn is_success(&self) -> bool {
        *self == TaskState::Completed
    }

    fn from_slurm(state: &str, reason: &str, exit_code: i32, signal: i32) -> TaskState {
        match state {
            "PENDING" => TaskState::Pending {
                reason: reason.to_string(),
            },
            "RUNNING" => TaskState::Running,
            "SUSPENDED" => TaskState::Suspended,
            "COMPLETING" => TaskState::Completing,
            "COMPLETED" => TaskState::Completed,
            "FAILED" => TaskState::Failed {
                exit_code,
                signal,
                reason: reason.to_string(),
            },
            "CANCELLED" => TaskState::Cancelled,
            "TIMEOUT" => TaskState::Timeout,
            "NODE_FAIL" => TaskState::NodeFail,
            "OUT_OF_MEMORY" => TaskState::OutOfMemory,
            "PREEMPTED" => TaskState::Preempted,
            "BOOT_FAIL" => TaskState::BootFail,
            "DEADLINE" => TaskState::Deadline,
            other => TaskState::Other {
                state: other.to_string(),
            },
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskState::Pending { reason } => write!(f, "pending ({reason})"),
            TaskState::Running => f.write_str("running"),
            TaskState::Suspended => f.write_str("suspended"),
            TaskState::Completing => f.write_str("completing"),
            TaskState::Completed => f.write_str("completed"),
            TaskState::Failed {
                exit_code,
                signal,
                reason,
            } => {
                let mut why = Vec::new();
                if *exit_code != 0 {
                    why.push(format!("exit code {exit_code}"));
                }
                if reason == "JobLaunchFailure" {
                    why.push("could not start: does its log folder exist?".to_string());
                } else if *signal != 0 {
                    why.push(format!("signal {signal}"));
                }
                if why.is_empty() {
                    why.push(reason.clone());
                }
                write!(f, "failed ({})", why.join(", "))
            }
            TaskState::Cancelled => f.write_str("cancelled"),
            TaskState::Timeout => f.write_str("timed out"),
            TaskState::NodeFail => f.write_str("node failed"),
            TaskState::OutOfMemory => f.write_str("out of memory"),
            TaskState::Preempted => f.write_str("preempted"),
            TaskState::BootFail => f.write_str("node boot failed"),
            TaskState::Deadline => f.write_str("missed its deadline"),
            TaskState::Other { state } => write!(f, "{}", state.to_lowercase()),
        }
    }
}

/// One array element (or a single job): its index, state and log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// The array index (`$SLURM_ARRAY_TASK_ID`); `None` for a job that is not an array.
    pub index: Option<u32>,
    /// Where it stands.
    pub state: TaskState,
    /// Its log (stdout and stderr), whether or not Slurm has created it yet.
    pub log: PathBuf,
}

/// How [`SlurmTools::wait`] polls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitOptions {
    /// Time between two queries.
    pub poll: Duration,
    /// Give up after this long (`None`: wait as long as it takes).
    pub timeout: Option<Duration>,
    /// How long queries may keep failing (slurmctld restarting, network) before waiting stops.
    pub patience: Duration,
}

impl Default for WaitOptions {
    fn default() -> Self {
        WaitOptions {
            poll: Duration::from_secs(5),
            timeout: None,
            patience: Duration::from_secs(120),
        }
    }
}

/// Why the state of a job could not be had.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// No such program: Slurm's client tools are not installed here.
    #[error(
        "`{}` was not found: install Slurm's client tools to follow Slurm jobs",
        program.display()
    )]
    NotInstalled {
        /// The program looked for.
        program: PathBuf,
    },
    /// The program exists but could not be started.
    #[error("cannot run `{}`: {source}", program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// slurmctld does not know the job: it ended longer ago than MinJobAge, or never existed.
    #[error(
        "Slurm no longer knows job {job}: it ended longer ago than the cluster keeps finished jobs \
         (MinJobAge), or the ID is wrong; its logs are in {}",
        dir.display()
    )]
    UnknownJob {
        /// The job.
        job: JobId,
        /// Its submission folder.
        dir: PathBuf,
    },
    /// scontrol failed for another reason; `stderr` is its message, verbatim.
    #[error("`scontrol show job {job}` failed: {}", stderr.trim_end())]
    Query {
        /// The job.
        job: JobId,
        /// What scontrol wrote to stderr.
        stderr: String,
    },
    /// scontrol printed something labpipe cannot read.
    #[error("cannot read scontrol's answer ({problem}): `{line}`")]
    Parse {
        /// The line.
        line: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The job was still in the queue when the wait's time ran out.
    #[error("job {job} was still in the queue after {} s", after.as_secs())]
    TimedOut {
        /// The job.
        job: JobId,
        /// How long the wait lasted.
        after: Duration,
        /// Its elements at the last query.
        last: Vec<Element>,
    },
}

/// One `scontrol -o show job` record: a job, an array element, or the array's still-pending elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    /// The array indexes it stands for (empty for a job that is not an array).
    pub indexes: Vec<u32>,
    /// Their common state.
    pub state: TaskState,
}

/// Reads the output of `scontrol -o show job <id>`: one record per line.
pub fn parse_show_job(text: &str) -> Result<Vec<JobRecord>, QueueError> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(parse_record)
        .collect()
}

/// `Key=Value` fields of one line. Values may hold spaces (`WorkDir=/my lab`), so a field runs until the
/// next word that looks like a key (`Name=`, a capital first and no `=` before it except the one).
fn fields(line: &str) -> Vec<(&str, String)> {
    let is_key = |w: &str| {
        w.split_once('=').is_some_and(|(k, _)| {
            k.starts_with(|c: char| c.is_ascii_uppercase())
                && k.chars().all(|c| c.is_ascii_alphanumeric() || "_:/".contains(c))
        })
    };
    let mut out: Vec<(&str, String)> = Vec::new();
    for word in line.split(' ') {
        match (is_key(word), out.last_mut()) {
            (true, _) => {
                let (k, v) = word.split_once('=').expect("is_key checked the `=`");
                out.push((k, v.to_string()));
            }
            (false, Some((_, v))) => {
                v.push(' ');
                v.push_str(word);
            }
            (false, None) => {}
        }
    }
    for (_, v) in &mut out {
        v.truncate(v.trim_end().len());
    }
    out
}

fn parse_record(line: &str) -> Result<JobRecord, QueueError> {
    let bad = |problem: &str| QueueError::Parse {
        line: line.to_string(),
        problem: problem.to_string(),
    };
    let fields = fields(line);
    let get = |key: &str| fields.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str());
    let state = get("JobState").ok_or_else(|| bad("no JobState"))?;
    // `CANCELLED by 0` in some versions: the state is the first word.
    let state = state.split(' ').next().unwrap_or(state);
    let reason = get("Reason").unwrap_or("None");
    let (exit_code, signal) = match get("ExitCode") {
        Some(code) => {
            let (e, s) = code.split_once(':').ok_or_else(|| bad("ExitCode is not E:S"))?;
            let e = e.parse().map_err(|_| bad("ExitCode is not E:S"))?;
            let s = s.parse().map_err(|_| bad("ExitCode is not E:S"))?;
            (e, s)
        }
        None => (0, 0),
    };
    let indexes = match get("ArrayTaskId") {
        Some(ids) => parse_indexes(ids).ok_or_else(|| bad("ArrayTaskId is not a list of indexes"))?,
        None => Vec::new(),
    };
    Ok(JobRecord {
        indexes,
        state: TaskState::from_slurm(state, reason, exit_code, signal),
    })
}

/// `3`, `0-3%2` (a throttle after `%`), `1,3,5-7`.
fn parse_indexes(text: &str) -> Option<Vec<u32>> {
    let list = text.split('%').next()?;
    let mut out = Vec::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if a > b {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

/// The records as one element per array index (or the one job), sorted by index.
fn elements(records: Vec<JobRecord>, submission: &Submission) -> Vec<Element> {
    let mut out: Vec<Element> = Vec::new();
    for r in records {
        if r.indexes.is_empty() {
            out.push(Element {
                index: None,
                log: submission.log_path(None),
                state: r.state,
            });
        } else {
            for i in r.indexes {
                out.push(Element {
                    index: Some(i),
                    log: submission.log_path(Some(i)),
                    state: r.state.clone(),
                });
            }
        }
    }
    out.sort_by_key(|e| e.index);
    out
}

impl SlurmTools {
    /// The job's elements as slurmctld sees them now.
    pub fn elements(&self, submission: &Submission) -> Result<Vec<Element>, QueueError> {
        let job = submission.id;
        let output = Command::new(&self.scontrol)
            .args(["-o", "show", "job", &job.to_string()])
            .output()
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => QueueError::NotInstalled {
                    program: self.scontrol.clone(),
                },
                _ => QueueError::Spawn {
                    program: self.scontrol.clone(),
                    source,
                },
            })?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            if stderr.contains("Invalid job id specified") {
                return Err(QueueError::UnknownJob {
                    job,
                    dir: submission.dir.clone(),
                });
            }
            return Err(QueueError::Query {
                job,
                stderr: stderr.into_owned(),
            });
        }
        let records = parse_show_job(&String::from_utf8_lossy(&output.stdout))?;
        if records.is_empty() {
            return Err(QueueError::UnknownJob {
                job,
                dir: submission.dir.clone(),
            });
        }
        Ok(elements(records, submission))
    }

    /// Polls until every element has left the queue for good and returns their final states.
    ///
    /// `on_poll` sees each successful query's elements (to print progress). A query that fails is retried
    /// until queries have failed for `options.patience` in a row; a job Slurm does not know fails at once.
    pub fn wait(
        &self,
        submission: &Submission,
        options: &WaitOptions,
        mut on_poll: impl FnMut(&[Element]),
    ) -> Result<Vec<Element>, QueueError> {
        let start = Instant::now();
        let mut failing_since: Option<Instant> = None;
        let mut last = Vec::new();
        loop {
            match self.elements(submission) {
                Ok(elements) => {
                    failing_since = None;
                    on_poll(&elements);
                    if elements.iter().all(|e| e.state.is_final()) {
                        return Ok(elements);
                    }
                    last = elements;
                }
                Err(e @ QueueError::Query { .. }) => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= options.patience {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
            if let Some(limit) = options.timeout
                && start.elapsed() + options.poll > limit
            {
                return Err(QueueError::TimedOut {
                    job: submission.id,
                    after: start.elapsed(),
                    last,
                });
            }
            std::thread::sleep(options.poll);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slurm::submit::tests::fake_program;
    use std::path::Path;

    // Every fixture is real `scontrol -o show job` output (or stderr) from slurm-wlm 22.05.8 (Debian 12) on
    // the single-node cluster of .ci/slurm-single-node.sh, with logs under a folder whose name has a space.

    fn sub(id: u64) -> Submission {
        Submission {
            id: JobId(id),
            script: "/tmp/sl exp/array.sbatch".into(),
            dir: "/tmp/sl exp/logs".into(),
        }
    }

    fn states(text: &str, id: u64) -> Vec<(Option<u32>, TaskState)> {
        elements(parse_show_job(text).unwrap(), &sub(id))
            .into_iter()
            .map(|e| (e.index, e.state))
            .collect()
    }

    fn pending(reason: &str) -> TaskState {
        TaskState::Pending {
            reason: reason.into(),
        }
    }

    #[test]
    fn running_array() {
        assert_eq!(
            states(include_str!("fixtures/array_running.txt"), 24),
            [
                (Some(0), TaskState::Running),
                (Some(1), TaskState::Running),
                (Some(2), pending("Resources"))
            ]
        );
    }

    #[test]
    fn finished_array_with_one_failure() {
        let els = elements(
            parse_show_job(include_str!("fixtures/array_finished.txt")).unwrap(),
            &sub(24),
        );
        let failed = TaskState::Failed {
            exit_code: 1,
            signal: 0,
            reason: "NonZeroExitCode".into(),
        };
        assert_eq!(
            els.iter().map(|e| (e.index, e.state.clone())).collect::<Vec<_>>(),
            [
                (Some(0), TaskState::Completed),
                (Some(1), failed.clone()),
                (Some(2), TaskState::Completed)
            ]
        );
        assert_eq!(els[1].log, Path::new("/tmp/sl exp/logs/24_1.out"));
        assert!(els.iter().all(|e| e.state.is_final()));
        assert_eq!(failed.to_string(), "failed (exit code 1)");
    }

    #[test]
    fn held_and_throttled_arrays_expand_their_pending_range() {
        assert_eq!(
            states(include_str!("fixtures/array_held.txt"), 4),
            (0..4)
                .map(|i| (Some(i), pending("JobHeldUser")))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            states(include_str!("fixtures/array_throttled.txt"), 4),
            [
                (Some(0), TaskState::Running),
                (Some(1), TaskState::Running),
                (Some(2), pending("JobArrayTaskLimit")),
                (Some(3), pending("JobArrayTaskLimit"))
            ]
        );
    }

    #[test]
    fn cancelled_timed_out_and_unlaunched_elements() {
        assert_eq!(
            states(include_str!("fixtures/array_cancelled.txt"), 4),
            (0..4)
                .map(|i| (Some(i), TaskState::Cancelled))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            states(include_str!("fixtures/array_timeout.txt"), 8),
            [(Some(0), TaskState::Timeout)]
        );
        let unlaunched = TaskState::Failed {
            exit_code: 0,
            signal: 53,
            reason: "JobLaunchFailure".into(),
        };
        assert_eq!(
            states(include_str!("fixtures/array_launch_failed.txt"), 9),
            [(Some(0), unlaunched.clone()), (Some(1), unlaunched.clone())]
        );
        assert_eq!(
            unlaunched.to_string(),
            "failed (could not start: does its log folder exist?)"
        );
    }

    #[test]
    fn single_job_waiting_on_a_dependency() {
        let s = sub(25);
        let pending_report = elements(
            parse_show_job(include_str!("fixtures/report_pending.txt")).unwrap(),
            &s,
        );
        assert_eq!(
            pending_report,
            [Element {
                index: None,
                state: pending("Dependency"),
                log: "/tmp/sl exp/logs/25.out".into()
            }]
        );
        assert_eq!(
            states(include_str!("fixtures/report_finished.txt"), 25),
            [(None, TaskState::Completed)]
        );
    }

    #[test]
    fn fields_keep_spaces_inside_values() {
        let f = fields("JobId=3 Command=/tmp/sl exp/a.sh WorkDir=/tmp/sl exp StdOut=/x y/1.out Power= ");
        assert_eq!(
            f,
            [
                ("JobId", "3".to_string()),
                ("Command", "/tmp/sl exp/a.sh".to_string()),
                ("WorkDir", "/tmp/sl exp".to_string()),
                ("StdOut", "/x y/1.out".to_string()),
                ("Power", String::new())
            ]
        );
    }

    #[test]
    fn other_states_and_exit_codes() {
        let line = |state: &str, code: &str| {
            parse_record(&format!(
                "JobId=5 ArrayJobId=5 ArrayTaskId=0 JobState={state} Reason=None ExitCode={code}"
            ))
            .unwrap()
            .state
        };
        assert_eq!(line("NODE_FAIL", "0:0"), TaskState::NodeFail);
        assert_eq!(line("OUT_OF_MEMORY", "0:125"), TaskState::OutOfMemory);
        assert_eq!(line("COMPLETING", "0:0"), TaskState::Completing);
        assert!(!line("COMPLETING", "0:0").is_final());
        assert_eq!(
            line("REQUEUED", "0:0"),
            TaskState::Other {
                state: "REQUEUED".into()
            }
        );
        assert!(!line("REQUEUED", "0:0").is_final());
        let killed = line("FAILED", "0:9");
        assert_eq!(killed.to_string(), "failed (signal 9)");
        assert!(killed.is_final() && !killed.is_success());
        let e = parse_record("JobId=5 JobState=FAILED ExitCode=x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ExitCode is not E:S"), "{e}");
        assert!(parse_record("JobId=5 ExitCode=0:0").is_err());
    }

    #[test]
    fn index_lists() {
        assert_eq!(parse_indexes("7"), Some(vec![7]));
        assert_eq!(parse_indexes("0-3%2"), Some(vec![0, 1, 2, 3]));
        assert_eq!(parse_indexes("1,3,5-7"), Some(vec![1, 3, 5, 6, 7]));
        assert_eq!(parse_indexes("3-1"), None);
        assert_eq!(parse_indexes("a"), None);
    }

    /// A stand-in scontrol that prints the given answers in turn (the last one again and again). Each
    /// answer is (stdout, stderr, exit code).
    fn scripted_scontrol(dir: &Path, answers: &[(&str, &str, i32)]) -> SlurmTools {
        let mut body = format!(
            "n=$(cat '{0}/count' 2>/dev/null || echo 0); echo $((n + 1)) > '{0}/count'\n",
            dir.display()
        );
        for (i, (out, err, code)) in answers.iter().enumerate() {
            let (o, e) = (dir.join(format!("out{i}")), dir.join(format!("err{i}")));
            std::fs::write(&o, out).unwrap();
            std::fs::write(&e, err).unwrap();
            let test = if i + 1 == answers.len() {
                "true".to_string()
            } else {
                format!("((n == {i}))")
            };
            body += &format!(
                "if {test}; then cat '{}'; cat '{}' >&2; exit {code}; fi\n",
                o.display(),
                e.display()
            );
        }
        SlurmTools {
            sbatch: dir.join("sbatch"),
            scontrol: fake_program(dir, "scontrol", &body),
        }
    }

    fn quick() -> WaitOptions {
        WaitOptions {
            poll: Duration::from_millis(10),
            timeout: Some(Duration::from_secs(20)),
            patience: Duration::from_secs(20),
        }
    }

    #[test]
    fn wait_polls_until_every_element_is_final() {
        let tmp = tempfile::tempdir().unwrap();
        let unreachable = include_str!("fixtures/controller_down.stderr");
        let tools = scripted_scontrol(
            tmp.path(),
            &[
                (include_str!("fixtures/array_running.txt"), "", 0),
                ("", unreachable, 1),
                (include_str!("fixtures/array_finished.txt"), "", 0),
            ],
        );
        let mut seen = Vec::new();
        let done = tools
            .wait(&sub(24), &quick(), |els| {
                seen.push(els.iter().filter(|e| e.state.is_final()).count())
            })
            .unwrap();
        assert_eq!(seen, [0, 3]);
        assert_eq!(done.len(), 3);
        assert_eq!(done[1].log, Path::new("/tmp/sl exp/logs/24_1.out"));
        assert!(matches!(done[1].state, TaskState::Failed { exit_code: 1, .. }));
    }

    #[test]
    fn wait_gives_up_when_the_controller_stays_away() {
        let tmp = tempfile::tempdir().unwrap();
        let unreachable = include_str!("fixtures/controller_down.stderr");
        let tools = scripted_scontrol(tmp.path(), &[("", unreachable, 1)]);
        let options = WaitOptions {
            patience: Duration::from_millis(50),
            ..quick()
        };
        let e = tools.wait(&sub(24), &options, |_| {}).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`scontrol show job 24` failed: slurm_load_jobs error: Unable to contact slurm controller (connect failure)"
        );
    }

    #[test]
    fn wait_stops_at_an_unknown_job_and_at_its_timeout() {
        let tmp = tempfile::tempdir().unwrap();
        let tools = scripted_scontrol(
            tmp.path(),
            &[("", include_str!("fixtures/unknown_job.stderr"), 1)],
        );
        let e = tools.wait(&sub(999), &quick(), |_| {}).unwrap_err();
        assert!(matches!(e, QueueError::UnknownJob { job: JobId(999), .. }), "{e}");
        assert!(e.to_string().contains("its logs are in /tmp/sl exp/logs"), "{e}");

        let tmp = tempfile::tempdir().unwrap();
        let tools = scripted_scontrol(tmp.path(), &[(include_str!("fixtures/array_running.txt"), "", 0)]);
        let options = WaitOptions {
            timeout: Some(Duration::from_millis(100)),
            ..quick()
        };
        let e = tools.wait(&sub(24), &options, |_| {}).unwrap_err();
        let QueueError::TimedOut { last, .. } = &e else {
            panic!("{e}")
        };
        assert_eq!(last.len(), 3);
    }

    #[test]
    fn missing_scontrol_is_named() {
        let tools = SlurmTools {
            sbatch: "/nonexistent/sbatch".into(),
            scontrol: "/nonexistent/scontrol".into(),
        };
        let e = tools.elements(&sub(1)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`/nonexistent/scontrol` was not found: install Slurm's client tools to follow Slurm jobs"
        );
    }
}

//! Where each run of a Slurm submission stands: queued, running, done or failed, from the submission's
//! record (which element trains which run) and `scontrol` (each element's state), with the element's log.

use super::{RunTask, same_task};
use crate::slurm::{Element, JobId, QueueError, RecordError, SlurmTools, SubmissionRecord, TaskState};
use std::fmt;
use std::path::{Path, PathBuf};

/// A run's place in Slurm's queue, in four words (the `TaskState` keeps Slurm's detail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueState {
    /// Waiting to start; Slurm's reason (Priority, Resources, Dependency…).
    Queued(String),
    /// Running (or suspended, or finishing: it still holds its place).
    Running,
    /// The element exited 0: the run is done.
    Done,
    /// It ended any other way: exit code, scancel, time limit, node failure… Its completed stages and its
    /// last checkpoint stay in the cache: submitting again resumes it.
    Failed(TaskState),
}

impl QueueState {
    /// The four-word summary of a Slurm state.
    pub fn of(state: &TaskState) -> QueueState {
        match state {
            TaskState::Pending { reason } => QueueState::Queued(reason.clone()),
            TaskState::Completed => QueueState::Done,
            s if !s.is_final() => QueueState::Running,
            s => QueueState::Failed(s.clone()),
        }
    }

    /// `queued`, `running`, `done` or `failed`.
    pub fn word(&self) -> &'static str {
        match self {
            QueueState::Queued(_) => "queued",
            QueueState::Running => "running",
            QueueState::Done => "done",
            QueueState::Failed(_) => "failed",
        }
    }

    /// Whether the element has left the queue for good.
    pub fn is_final(&self) -> bool {
        matches!(self, QueueState::Done | QueueState::Failed(_))
    }
}

impl fmt::Display for QueueState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueState::Queued(reason) => write!(f, "queued ({reason})"),
            QueueState::Failed(s @ TaskState::Failed { .. }) => write!(f, "{s}"),
            QueueState::Failed(s) => write!(f, "failed: {s} (submitting again resumes it)"),
            other => f.write_str(other.word()),
        }
    }
}

/// One run of a submission and its element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInQueue {
    /// The run.
    pub task: RunTask,
    /// The array job.
    pub job: JobId,
    /// Its element's index.
    pub index: u32,
    /// Where it stands.
    pub state: QueueState,
    /// The element's log (whether Slurm has written it yet or not).
    pub log: PathBuf,
}

impl RunInQueue {
    /// `<job>_<index>`, as squeue and scancel write an element.
    pub fn element(&self) -> String {
        format!("{}_{}", self.job, self.index)
    }
}

/// The elements of an array as runs: element N is `tasks[N]` (elements with no task are left out).
pub fn runs_in_queue(tasks: &[RunTask], job: JobId, elements: &[Element]) -> Vec<RunInQueue> {
    elements
        .iter()
        .filter_map(|e| {
            let index = e.index?;
            Some(RunInQueue {
                task: tasks.get(index as usize)?.clone(),
                job,
                index,
                state: QueueState::of(&e.state),
                log: e.log.clone(),
            })
        })
        .collect()
}

/// The newest submission from an out directory and what Slurm says about its runs.
#[derive(Debug)]
pub struct LatestSubmission {
    /// Its folder (scripts, record, logs).
    pub dir: PathBuf,
    /// Its record.
    pub record: SubmissionRecord,
    /// Its runs, or why Slurm could not say (`QueueError::UnknownJob` once the job is long gone: then the
    /// run records are what is left to go by).
    pub runs: Result<Vec<RunInQueue>, QueueError>,
}

impl LatestSubmission {
    /// The entry of `task`, when Slurm still knows its element.
    pub fn run(&self, task: &RunTask) -> Option<&RunInQueue> {
        self.runs.as_ref().ok()?.iter().find(|r| same_task(&r.task, task))
    }
}

/// The newest submission from `out` with its runs' states; `None` when nothing was submitted from it.
pub fn latest(out: &Path, tools: &SlurmTools) -> Result<Option<LatestSubmission>, RecordError> {
    let Some((dir, record)) = SubmissionRecord::latest(out)? else {
        return Ok(None);
    };
    let runs = tools
        .elements(&record.array(&dir))
        .map(|els| runs_in_queue(&record.tasks, record.array_job, &els));
    Ok(Some(LatestSubmission { dir, record, runs }))
}

/// Runs that some submission from `out` still has queued or running, with their array job. A job Slurm no
/// longer knows, or cannot be asked about, holds none.
pub fn live_tasks(out: &Path, tools: &SlurmTools) -> Vec<(RunTask, JobId)> {
    let mut live = Vec::new();
    for (dir, record) in SubmissionRecord::all(out).unwrap_or_default() {
        let Ok(elements) = tools.elements(&record.array(&dir)) else {
            continue;
        };
        for run in runs_in_queue(&record.tasks, record.array_job, &elements) {
            if !run.state.is_final() {
                live.push((run.task, run.job));
            }
        }
    }
    live
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_words_for_every_slurm_state() {
        let word = |s: TaskState| QueueState::of(&s).word();
        assert_eq!(
            word(TaskState::Pending {
                reason: "Priority".into()
            }),
            "queued"
        );
        assert_eq!(word(TaskState::Running), "running");
        assert_eq!(word(TaskState::Completing), "running");
        assert_eq!(word(TaskState::Suspended), "running");
        assert_eq!(
            word(TaskState::Other {
                state: "REQUEUED".into()
            }),
            "running"
        );
        assert_eq!(word(TaskState::Completed), "done");
        for failed in [
            TaskState::Cancelled,
            TaskState::Timeout,
            TaskState::NodeFail,
            TaskState::OutOfMemory,
            TaskState::Preempted,
            TaskState::Failed {
                exit_code: 1,
                signal: 0,
                reason: "NonZeroExitCode".into(),
            },
        ] {
            assert_eq!(word(failed), "failed");
        }
        assert_eq!(
            QueueState::of(&TaskState::Cancelled).to_string(),
            "failed: cancelled (submitting again resumes it)"
        );
        assert_eq!(
            QueueState::of(&TaskState::Failed {
                exit_code: 1,
                signal: 0,
                reason: "NonZeroExitCode".into()
            })
            .to_string(),
            "failed (exit code 1)"
        );
    }

    #[test]
    fn elements_map_to_their_runs() {
        let tasks: Vec<RunTask> = ["a", "b"]
            .iter()
            .map(|r| RunTask {
                pipeline: "/lab/ci.yaml".into(),
                run: r.to_string(),
            })
            .collect();
        let element = |index: Option<u32>, state: TaskState| Element {
            index,
            state,
            log: format!("/o/slurm/s/7_{}.out", index.unwrap_or(99)).into(),
        };
        let runs = runs_in_queue(
            &tasks,
            JobId(7),
            &[
                element(Some(1), TaskState::Cancelled),
                element(Some(0), TaskState::Running),
                element(Some(5), TaskState::Running),
                element(None, TaskState::Running),
            ],
        );
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].task.run, "b");
        assert_eq!(runs[0].element(), "7_1");
        assert_eq!(runs[0].log, Path::new("/o/slurm/s/7_1.out"));
        assert_eq!(runs[1].task.run, "a");
        assert_eq!(runs[1].state, QueueState::Running);
    }
}

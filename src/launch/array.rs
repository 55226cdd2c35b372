//! `run --executor slurm`: the runs that still need work as one Slurm job array (element N runs
//! `labpipe run PIPELINE --run RUN[N]` on the shared out directory), and a report job after it if asked.
//!
//! A run that an earlier submission from the same out directory still has queued or running is not
//! submitted again, so two submissions never put the same run in the queue twice; the cache's locks would
//! keep them from computing a stage twice anyway, but the second element would hold a node while it waits.

use super::follow::live_tasks;
use super::{RunTask, same_task};
use crate::data::error::DataError;
use crate::out_dir::OutDir;
use crate::slurm::{
    ArrayJob, JobId, QueueError, ReportJob, RunSelector, ScriptError, SlurmOptions, SlurmTools, Submission,
    SubmitError, submission_dir,
};
use std::path::PathBuf;

/// What to submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArrayRequest {
    /// The labpipe executable the elements run (a path the compute nodes see).
    pub labpipe: PathBuf,
    /// The shared out directory.
    pub out: PathBuf,
    /// `-S` overrides for every element.
    pub overrides: Vec<String>,
    /// More `labpipe run` arguments for every element (`--device cuda`, `--workers 8`).
    pub run_args: Vec<String>,
    /// The runs that need work (see `work::runs_needing_work`).
    pub tasks: Vec<RunTask>,
    /// What to ask Slurm for.
    pub options: SlurmOptions,
    /// The job name.
    pub job_name: String,
    /// Pipeline files for a report job after the array (`--then-report`); `None`: no report job.
    pub report: Option<Vec<PathBuf>>,
}

/// What was submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The job array.
    pub array: Submission,
    /// Element N's run.
    pub tasks: Vec<RunTask>,
    /// The report job, if one was asked for.
    pub report: Option<Submission>,
    /// Where the report job writes report.md.
    pub report_out: Option<PathBuf>,
    /// Runs left out because an earlier submission still has them queued or running, with that job.
    pub already_queued: Vec<(RunTask, JobId)>,
}

/// Why the runs could not be handed to Slurm.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// sbatch is missing, refused the script, or the script could not be written.
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// The Slurm options or a name cannot go into a batch script.
    #[error(transparent)]
    Script(#[from] ScriptError),
    /// Slurm could not be asked about a job.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// Which runs need work could not be found (their input data is missing or unreadable).
    #[error(transparent)]
    Data(#[from] DataError),
    /// The labpipe executable could not be found.
    #[error("cannot find the labpipe executable to submit: {0}")]
    Executable(std::io::Error),
}

/// Whether the array has any element to submit after leaving out runs queued elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Submitted.
    Submitted(Submitted),
    /// Every run that needs work is queued or running in an earlier submission already.
    AllQueued(Vec<(RunTask, JobId)>),
}

impl ArrayRequest {
    /// Leaves out the runs an earlier submission still has in the queue, writes the scripts under
    /// `<out>/slurm/<stamp>/`, and submits the array (and the report job after it).
    pub fn submit(&self, tools: &SlurmTools) -> Result<Outcome, LaunchError> {
        let live = live_tasks(&self.out, tools);
        let mut tasks = Vec::new();
        let mut already_queued = Vec::new();
        for task in &self.tasks {
            match live.iter().find(|(t, _)| same_task(t, task)) {
                Some((_, job)) => already_queued.push((task.clone(), *job)),
                None => tasks.push(task.clone()),
            }
        }
        if tasks.is_empty() {
            return Ok(Outcome::AllQueued(already_queued));
        }
        // Check the options before a submission folder is made for them.
        self.options.validate().map_err(ScriptError::from)?;
        let dir = submission_dir(&self.out)?;
        let job = ArrayJob {
            labpipe: self.labpipe.clone(),
            out: self.out.clone(),
            overrides: self.overrides.clone(),
            run_args: self.run_args.clone(),
            tasks: tasks.clone(),
            options: self.options.clone(),
            job_name: self.job_name.clone(),
            dir: dir.clone(),
            selector: RunSelector::Run,
        };
        let array = tools.submit_array(&job)?;
        let (report, report_out) = match &self.report {
            Some(pipelines) => {
                let report_out =
                    std::path::absolute(OutDir::new(&self.out).report()).map_err(LaunchError::Executable)?;
                let job = ReportJob {
                    labpipe: self.labpipe.clone(),
                    pipelines: pipelines.clone(),
                    results: self.out.clone(),
                    report_out: report_out.clone(),
                    report_args: Vec::new(),
                    after: array.id,
                    options: self.options.for_report(),
                    job_name: format!("{}-report", self.job_name),
                    dir,
                };
                (Some(tools.submit_report(&job)?), Some(report_out))
            }
            None => (None, None),
        };
        Ok(Outcome::Submitted(Submitted {
            array,
            tasks,
            report,
            report_out,
            already_queued,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slurm::{ArrayTask, SubmissionRecord};
    use std::path::Path;

    fn program(dir: &Path, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/bash\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// A stand-in sbatch handing out IDs 100, 101… and noting each script's element count, and an scontrol
    /// for which every job is still pending (an array none of whose elements has started is one record,
    /// `ArrayTaskId=0-N`).
    fn tools(dir: &Path) -> SlurmTools {
        let d = dir.display();
        let sbatch = program(
            dir,
            "sbatch",
            &format!(
                "n=$(cat '{d}/next' 2>/dev/null || echo 100); echo $((n + 1)) > '{d}/next'\n\
                 (grep -c '^PIPELINE' \"$2\" || true) > '{d}/job-'$n; echo $n"
            ),
        );
        let scontrol = program(
            dir,
            "scontrol",
            &format!(
                "id=$4; n=$(cat '{d}/job-'$id)\n\
                 if ((n == 0)); then echo \"JobId=$id JobState=PENDING Reason=Dependency ExitCode=0:0\"\n\
                 else echo \"JobId=$id ArrayJobId=$id ArrayTaskId=0-$((n - 1)) JobState=PENDING Reason=Priority ExitCode=0:0\"; fi"
            ),
        );
        SlurmTools { sbatch, scontrol }
    }

    fn task(dir: &Path, run: &str) -> RunTask {
        ArrayTask {
            pipeline: dir.join("ci.yaml"),
            run: run.into(),
        }
    }

    #[test]
    fn a_second_submission_leaves_out_what_the_first_still_has_queued() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        std::fs::write(tmp.path().join("ci.yaml"), "name: ci\n").unwrap();
        let tools = tools(tmp.path());
        let request = |runs: &[&str]| ArrayRequest {
            labpipe: "/bin/labpipe".into(),
            out: out.clone(),
            overrides: vec![],
            run_args: vec![],
            tasks: runs.iter().map(|r| task(tmp.path(), r)).collect(),
            options: SlurmOptions::default(),
            job_name: "labpipe-ci".into(),
            report: Some(vec![tmp.path().join("ci.yaml")]),
        };
        let submit = |runs: &[&str]| request(runs).submit(&tools).unwrap();
        let Outcome::Submitted(first) = submit(&["a", "b"]) else {
            panic!("nothing submitted")
        };
        assert_eq!(first.array.id, JobId(100));
        assert_eq!(first.report.as_ref().unwrap().id, JobId(101));
        assert_eq!(
            first.report_out,
            Some(std::path::absolute(out.join("report")).unwrap())
        );
        assert!(first.already_queued.is_empty());
        let record = SubmissionRecord::load(&first.array.dir).unwrap();
        assert_eq!(record.report_job, Some(JobId(101)));
        let script = std::fs::read_to_string(&first.array.script).unwrap();
        assert!(script.contains("--run \"${RUN[$i]}\""), "{script}");

        let Outcome::Submitted(second) = submit(&["a", "b", "c"]) else {
            panic!("nothing submitted")
        };
        assert_eq!(second.tasks, [task(tmp.path(), "c")]);
        assert_eq!(
            second.already_queued,
            [
                (task(tmp.path(), "a"), JobId(100)),
                (task(tmp.path(), "b"), JobId(100))
            ]
        );
        assert_eq!(
            submit(&["a", "c"]),
            Outcome::AllQueued(vec![
                (task(tmp.path(), "a"), JobId(100)),
                (task(tmp.path(), "c"), JobId(102))
            ])
        );
    }

    #[test]
    fn options_are_checked_before_anything_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let request = ArrayRequest {
            labpipe: "/bin/labpipe".into(),
            out: tmp.path().join("out"),
            overrides: vec![],
            run_args: vec![],
            tasks: vec![task(tmp.path(), "a")],
            options: SlurmOptions {
                extra: vec!["--array=0-3".into()],
                ..SlurmOptions::default()
            },
            job_name: "labpipe".into(),
            report: None,
        };
        let e = request.submit(&tools(tmp.path())).unwrap_err();
        assert_eq!(
            e.to_string(),
            "slurm `extra` entry `--array=0-3`: labpipe sets --array itself"
        );
        assert!(!tmp.path().join("out/slurm").exists());
    }
}

//! Handing a batch script to Slurm: `sbatch --parsable`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::job::{JobId, Submission};
use super::record::{RecordError, SubmissionRecord};
use super::script::{ArrayJob, ReportJob, ScriptError};

/// The Slurm client programs labpipe runs. `from_path` finds them on PATH; tests point at stand-ins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmTools {
    /// The `sbatch` program.
    pub sbatch: PathBuf,
    /// The `scontrol` program.
    pub scontrol: PathBuf,
}

impl Default for SlurmTools {
    fn default() -> Self {
        Self::from_path()
    }
}

/// Why sbatch did not accept a script.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The script could not be written.
    #[error(transparent)]
    Script(#[from] ScriptError),
    /// The job was submitted but its record (`submission.json`) could not be written.
    #[error("submitted job {job}, but {source}")]
    Record {
        /// The job Slurm accepted.
        job: JobId,
        /// The cause.
        source: RecordError,
    },
    /// No such program: Slurm's client tools are not installed here.
    #[error(
        "`{}` was not found: install Slurm's client tools (e.g. `apt-get install slurm-client`, configured for \
         your cluster) or run without `--executor slurm` to train here",
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
    /// sbatch ran and said no; `stderr` is Slurm's own message, verbatim.
    #[error("sbatch refused `{}` ({status}):\n{}", script.display(), stderr.trim_end())]
    Refused {
        /// The script.
        script: PathBuf,
        /// sbatch's exit status.
        status: std::process::ExitStatus,
        /// What sbatch wrote to stderr.
        stderr: String,
    },
    /// sbatch succeeded but did not print a job ID.
    #[error("sbatch accepted `{}` but printed no job ID: `{}`", script.display(), stdout.trim())]
    NoJobId {
        /// The script.
        script: PathBuf,
        /// What sbatch printed.
        stdout: String,
    },
}

impl SlurmTools {
    /// `sbatch` and `scontrol` as found on PATH.
    pub fn from_path() -> Self {
        SlurmTools {
            sbatch: "sbatch".into(),
            scontrol: "scontrol".into(),
        }
    }

    /// Writes the array's script into its submission folder (which must exist: see `submission_dir`),
    /// submits it, and records the job and its tasks in the folder's `submission.json`.
    pub fn submit_array(&self, job: &ArrayJob) -> Result<Submission, SubmitError> {
        let script = job.write()?;
        let id = self.submit(&script)?;
        let record = SubmissionRecord {
            array_job: id,
            report_job: None,
            tasks: job.tasks.clone(),
        };
        record
            .save(&job.dir)
            .map_err(|source| SubmitError::Record { job: id, source })?;
        Ok(Submission {
            id,
            script,
            dir: job.dir.clone(),
        })
    }

    /// Writes the report job's script (`--dependency=afterany:<array>`), submits it, and adds it to the
    /// folder's `submission.json` when the array job was submitted from the same folder.
    pub fn submit_report(&self, job: &ReportJob) -> Result<Submission, SubmitError> {
        let script = job.write()?;
        let id = self.submit(&script)?;
        if let Ok(mut record) = SubmissionRecord::load(&job.dir)
            && record.array_job == job.after
        {
            record.report_job = Some(id);
            record
                .save(&job.dir)
                .map_err(|source| SubmitError::Record { job: id, source })?;
        }
        Ok(Submission {
            id,
            script,
            dir: job.dir.clone(),
        })
    }

    /// Submits a batch script (its `#SBATCH` lines say what to run where) and returns the job's ID.
    pub fn submit(&self, script: &Path) -> Result<JobId, SubmitError> {
        let output = Command::new(&self.sbatch)
            .arg("--parsable")
            .arg(script)
            .output()
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => SubmitError::NotInstalled {
                    program: self.sbatch.clone(),
                },
                _ => SubmitError::Spawn {
                    program: self.sbatch.clone(),
                    source,
                },
            })?;
        if !output.status.success() {
            return Err(SubmitError::Refused {
                script: script.to_path_buf(),
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        parse_parsable(&stdout).ok_or_else(|| SubmitError::NoJobId {
            script: script.to_path_buf(),
            stdout,
        })
    }
}

/// The job ID in `sbatch --parsable` output: `ID` or `ID;CLUSTER`, on the last line (warnings may come first).
fn parse_parsable(stdout: &str) -> Option<JobId> {
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty())?;
    last.trim().split(';').next()?.parse().ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A stand-in program in `dir` that runs `body` (bash). The file is written by a `cp` child, never through
    /// a descriptor of this process: another test thread that forks meanwhile would inherit a writable one, and
    /// executing the program would then fail with "text file busy".
    pub(crate) fn fake_program(dir: &Path, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        let draft = dir.join(format!(".{name}.draft"));
        std::fs::write(&draft, format!("#!/bin/bash\n{body}\n")).unwrap();
        let copied = std::process::Command::new("cp")
            .arg(&draft)
            .arg(&path)
            .status()
            .unwrap();
        assert!(copied.success());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn tools_with_sbatch(dir: &Path, body: &str) -> SlurmTools {
        SlurmTools {
            sbatch: fake_program(dir, "sbatch", body),
            scontrol: dir.join("scontrol"),
        }
    }

    #[test]
    fn parsable_output() {
        assert_eq!(parse_parsable("24\n"), Some(JobId(24)));
        assert_eq!(parse_parsable("1234;cluster2\n"), Some(JobId(1234)));
        assert_eq!(parse_parsable("sbatch: warning: x\n77\n\n"), Some(JobId(77)));
        assert_eq!(parse_parsable("Submitted batch job 5\n"), None);
        assert_eq!(parse_parsable(""), None);
    }

    #[test]
    fn submit_passes_parsable_and_the_script() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("args");
        let tools = tools_with_sbatch(
            tmp.path(),
            &format!("printf '%s\\n' \"$@\" > '{}'; echo 4242", log.display()),
        );
        let script = tmp.path().join("my job.sbatch");
        assert_eq!(tools.submit(&script).unwrap(), JobId(4242));
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            format!("--parsable\n{}\n", script.display())
        );
    }

    #[test]
    fn missing_sbatch_says_what_to_do() {
        let tmp = tempfile::tempdir().unwrap();
        let tools = SlurmTools {
            sbatch: tmp.path().join("no-such-sbatch"),
            scontrol: tmp.path().join("no-such-scontrol"),
        };
        let e = tools.submit(Path::new("x.sbatch")).unwrap_err();
        assert!(matches!(e, SubmitError::NotInstalled { .. }));
        let msg = e.to_string();
        assert!(
            msg.contains("was not found: install Slurm") && msg.contains("without `--executor slurm`"),
            "{msg}"
        );
    }

    #[test]
    fn refusal_carries_slurms_message_verbatim() {
        // Captured from sbatch 22.05 (`sbatch -p gpu` on a cluster without that partition).
        let stderr = include_str!("fixtures/sbatch_invalid_partition.stderr");
        let tmp = tempfile::tempdir().unwrap();
        let captured = tmp.path().join("stderr");
        std::fs::write(&captured, stderr).unwrap();
        let tools = tools_with_sbatch(tmp.path(), &format!("cat '{}' >&2; exit 1", captured.display()));
        let e = tools.submit(Path::new("/out/slurm/s/array.sbatch")).unwrap_err();
        let SubmitError::Refused { stderr: got, .. } = &e else {
            panic!("{e}")
        };
        assert_eq!(got, stderr);
        assert_eq!(
            e.to_string(),
            "sbatch refused `/out/slurm/s/array.sbatch` (exit status: 1):\n\
             sbatch: error: invalid partition specified: gpu\n\
             sbatch: error: Batch job submission failed: Invalid partition name specified"
        );
    }

    #[test]
    fn submitting_an_array_and_its_report_records_both() {
        use crate::slurm::script::{ArrayTask, RunSelector, submission_dir};
        let tmp = tempfile::tempdir().unwrap();
        // A stand-in sbatch that hands out IDs 100, 101... and keeps each script it was given.
        let tools = tools_with_sbatch(
            tmp.path(),
            &format!(
                "n=$(cat '{0}/next' 2>/dev/null || echo 100); echo $((n + 1)) > '{0}/next'; cp \"$2\" '{0}/got-'$n; echo $n",
                tmp.path().display()
            ),
        );
        let dir = submission_dir(&tmp.path().join("out")).unwrap();
        let tasks = vec![ArrayTask {
            pipeline: "/lab/ci.yaml".into(),
            run: "baseline".into(),
        }];
        let array = tools
            .submit_array(&ArrayJob {
                labpipe: "/bin/labpipe".into(),
                out: tmp.path().join("out"),
                overrides: vec![],
                run_args: vec![],
                tasks: tasks.clone(),
                options: Default::default(),
                job_name: "labpipe".into(),
                dir: dir.clone(),
                selector: RunSelector::Only,
            })
            .unwrap();
        assert_eq!(
            array,
            Submission {
                id: JobId(100),
                script: dir.join("array.sbatch"),
                dir: dir.clone()
            }
        );
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("got-100")).unwrap(),
            std::fs::read_to_string(dir.join("array.sbatch")).unwrap()
        );
        let report = tools
            .submit_report(&ReportJob {
                labpipe: "/bin/labpipe".into(),
                pipelines: vec!["/lab/ci.yaml".into()],
                results: tmp.path().join("out"),
                report_out: tmp.path().join("out/report"),
                report_args: vec![],
                after: array.id,
                options: Default::default(),
                job_name: "labpipe-report".into(),
                dir: dir.clone(),
            })
            .unwrap();
        assert_eq!(report.id, JobId(101));
        assert!(
            std::fs::read_to_string(tmp.path().join("got-101"))
                .unwrap()
                .contains("--dependency=afterany:100")
        );
        assert_eq!(
            SubmissionRecord::load(&dir).unwrap(),
            SubmissionRecord {
                array_job: JobId(100),
                report_job: Some(JobId(101)),
                tasks
            }
        );
    }

    #[test]
    fn success_without_an_id_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let tools = tools_with_sbatch(tmp.path(), "echo 'Submitted batch job 5'");
        let e = tools.submit(Path::new("a.sbatch")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "sbatch accepted `a.sbatch` but printed no job ID: `Submitted batch job 5`"
        );
    }
}

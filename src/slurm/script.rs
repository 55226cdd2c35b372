//! The batch scripts labpipe submits: a job array with one element per run, and the report job after it.
//!
//! Both are written under `<out>/slurm/<stamp>/` beside their logs, so that a user can read them and
//! resubmit them with a plain `sbatch`. Every path in them is absolute: a job starts in whatever directory
//! sbatch was called from.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::job::JobId;
use super::options::{OptionsError, SlurmOptions};
use super::quote::{sbatch_word, shell_word};
use crate::out_dir::OutDir;

/// The job array's script file name in its submission folder.
pub const ARRAY_SCRIPT: &str = "array.sbatch";
/// The report job's script file name in its submission folder.
pub const REPORT_SCRIPT: &str = "report.sbatch";

/// One array element's work: one run of one pipeline file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArrayTask {
    /// The pipeline file that defines the run.
    pub pipeline: PathBuf,
    /// The run's name (`baseline`, `lr[lr=0.01,scheduler=step]`).
    pub run: String,
}

/// How an element's `labpipe run` picks exactly its one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunSelector {
    /// `--only NAME`. labpipe's `--only` is a glob in which only `*` and `?` are special (`[` is not), and
    /// run names are unique in a pipeline, so a name without `*` and `?` selects exactly that run; a name
    /// with them is refused ([`ScriptError::WildcardRunName`]), as the glob cannot escape them.
    Only,
    /// `--run NAME`: an exact-name selector for `labpipe run` (like `labpipe summary --run`), for names with
    /// `*` or `?`. `labpipe run` must have this flag before this selector is used.
    Run,
}

/// A job array: element N runs `labpipe run` for `tasks[N]` with the same out directory and overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArrayJob {
    /// The labpipe executable the elements run (a path the compute nodes see, e.g. on a shared file system).
    pub labpipe: PathBuf,
    /// `--out` of every element.
    pub out: PathBuf,
    /// `-S PATH=VALUE` overrides, the same for every element.
    pub overrides: Vec<String>,
    /// More `labpipe run` arguments for every element, e.g. `["--device", "cuda"]`.
    pub run_args: Vec<String>,
    /// The runs still to do, one array element each, in element order.
    pub tasks: Vec<ArrayTask>,
    /// What to ask Slurm for.
    pub options: SlurmOptions,
    /// Slurm job name (`squeue` shows it).
    pub job_name: String,
    /// The submission folder (see [`submission_dir`]): the script goes there, and each element's log.
    pub dir: PathBuf,
    /// How an element selects its run.
    pub selector: RunSelector,
}

/// A job that renders the report once an array job has left the queue, whatever became of its elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportJob {
    /// The labpipe executable.
    pub labpipe: PathBuf,
    /// The pipeline files to report on.
    pub pipelines: Vec<PathBuf>,
    /// `--out`: the out directory the array job wrote.
    pub results: PathBuf,
    /// `--out`: where report.md and its figures go.
    pub report_out: PathBuf,
    /// More `labpipe report` arguments, e.g. `["--format", "html"]`.
    pub report_args: Vec<String>,
    /// The job to wait for (`--dependency=afterany:<id>`).
    pub after: JobId,
    /// What to ask Slurm for (usually [`SlurmOptions::for_report`] of the array job's options).
    pub options: SlurmOptions,
    /// Slurm job name.
    pub job_name: String,
    /// The submission folder (the array job's, so that the two sit together).
    pub dir: PathBuf,
}

/// Why a script cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// An array needs at least one element.
    #[error("nothing to submit: no run needs work")]
    NoTasks,
    /// The Slurm options are not usable.
    #[error(transparent)]
    Options(#[from] OptionsError),
    /// A path that bash and sbatch cannot be given as text.
    #[error("{what} `{}` is not valid UTF-8; a batch script cannot name it", path.display())]
    NotUtf8 {
        /// What the path is (`pipeline file`, `out directory`...).
        what: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// A value with a NUL character, which no command-line argument can hold.
    #[error("{what} `{}` contains a NUL character", value.escape_debug())]
    Nul {
        /// What the value is.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// A value that must fit on one `#SBATCH` line holds a line break.
    #[error("{what} `{}` contains a line break", value.escape_debug())]
    LineBreak {
        /// What the value is.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// A backslash anywhere in an --output path turns off its `%A`/`%a` replacement.
    #[error(
        "the submission folder `{}` contains a backslash, which makes Slurm write every log to one literal \
         `%A_%a.out`; choose an out directory without one",
        dir.display()
    )]
    BackslashInLogDir {
        /// The folder.
        dir: PathBuf,
    },
    /// `--only` cannot select this name exactly.
    #[error(
        "run `{run}` has `*` or `?` in its name, which `labpipe run --only` reads as wildcards, so its array \
         element could train other runs too; an exact selector (`labpipe run --run NAME`) is needed"
    )]
    WildcardRunName {
        /// The run name.
        run: String,
    },
    /// Creating the folder or writing the script failed.
    #[error("cannot write `{}`: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Creates and returns `<out>/slurm/<UTC time>/` (absolute), e.g. `out/slurm/20260102-030405`; a second
/// submission in the same second gets `-2`, `-3`... Slurm does not create log folders: a job whose
/// --output folder is missing fails at once (JobLaunchFailure, exit code 0:53), so this runs before sbatch.
pub fn submission_dir(out: &Path) -> Result<PathBuf, ScriptError> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    submission_dir_at(out, &utc_stamp(secs))
}

/// [`submission_dir`] with a given stamp.
pub fn submission_dir_at(out: &Path, stamp: &str) -> Result<PathBuf, ScriptError> {
    let parent = absolute(&OutDir::new(out).slurm())?;
    std::fs::create_dir_all(&parent).map_err(|source| ScriptError::Io {
        path: parent.clone(),
        source,
    })?;
    for n in 1u32.. {
        let dir = match n {
            1 => parent.join(stamp),
            _ => parent.join(format!("{stamp}-{n}")),
        };
        // create_dir (not _all) fails when the folder exists: two submissions never share one.
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(ScriptError::Io { path: dir, source }),
        }
    }
    unreachable!("u32 range exhausted")
}

/// `YYYYMMDD-HHMMSS` for a Unix time, in UTC.
fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil: the proleptic Gregorian date of a day count since 1970-01-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn absolute(path: &Path) -> Result<PathBuf, ScriptError> {
    std::path::absolute(path).map_err(|source| ScriptError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A path as text for a script, made absolute.
fn path_text(what: &'static str, path: &Path) -> Result<String, ScriptError> {
    let abs = absolute(path)?;
    let text = abs.to_str().ok_or_else(|| ScriptError::NotUtf8 {
        what,
        path: abs.clone(),
    })?;
    text_arg(what, text)
}

/// A value for a bash word, refused when it holds a NUL.
fn text_arg(what: &'static str, value: &str) -> Result<String, ScriptError> {
    if value.contains('\0') {
        return Err(ScriptError::Nul {
            what,
            value: value.to_string(),
        });
    }
    Ok(value.to_string())
}

/// A value for an `#SBATCH` line, refused when it holds a line break or a NUL.
fn line_arg(what: &'static str, value: &str) -> Result<String, ScriptError> {
    if value.contains(['\n', '\r']) {
        return Err(ScriptError::LineBreak {
            what,
            value: value.to_string(),
        });
    }
    text_arg(what, value)
}

/// The `--output` pattern for a submission folder: `%` in the folder doubled (Slurm reads `%x` as the job
/// name), then `file` (`%A_%a.out` or `%j.out`).
fn output_option(dir: &Path, file: &str) -> Result<String, ScriptError> {
    let dir_text = path_text("submission folder", dir)?;
    if dir_text.contains('\\') {
        return Err(ScriptError::BackslashInLogDir {
            dir: dir.to_path_buf(),
        });
    }
    let dir_text = line_arg("submission folder", &dir_text)?;
    Ok(format!("--output={}/{file}", dir_text.replace('%', "%%")))
}

/// The `#SBATCH` header: labpipe's own options, then the user's.
fn header(own: &[String], options: &SlurmOptions) -> Result<String, ScriptError> {
    options.validate()?;
    let mut text = String::new();
    for arg in own.iter().chain(&options.sbatch_args()) {
        let arg = line_arg("sbatch option", arg)?;
        writeln!(text, "#SBATCH {}", sbatch_word(&arg)).expect("writing to a String");
    }
    Ok(text)
}

impl ArrayJob {
    /// The script's text (see the module's tests for an example).
    pub fn render(&self) -> Result<String, ScriptError> {
        let n = self.tasks.len();
        if n == 0 {
            return Err(ScriptError::NoTasks);
        }
        let job_name = line_arg("job name", &self.job_name)?;
        let own = [
            format!("--job-name={job_name}"),
            format!("--array=0-{}", n - 1),
            output_option(&self.dir, "%A_%a.out")?,
        ];
        let script = path_text("script", &self.dir.join(ARRAY_SCRIPT))?;
        let runs = if n == 1 { "1 run" } else { &format!("{n} runs") };
        let mut s = format!(
            "#!/bin/bash\n\
             # labpipe: {runs}, one Slurm array element each. Resubmit with: sbatch {}\n\
             # (runs that have finished meanwhile are found in labpipe's cache and not trained again)\n",
            shell_word(&script)
        );
        s += &header(&own, &self.options)?;
        s += "set -euo pipefail\n\n# Array element N trains run RUN[N] of pipeline PIPELINE[N].\n";
        for (i, task) in self.tasks.iter().enumerate() {
            let pipeline = path_text("pipeline file", &task.pipeline)?;
            let run = text_arg("run name", &task.run)?;
            if self.selector == RunSelector::Only && run.contains(['*', '?']) {
                return Err(ScriptError::WildcardRunName { run });
            }
            writeln!(
                s,
                "PIPELINE[{i}]={}; RUN[{i}]={}",
                shell_word(&pipeline),
                shell_word(&run)
            )
            .expect("writing to a String");
        }
        let mut command = vec![
            shell_word(&path_text("labpipe executable", &self.labpipe)?),
            "run".into(),
            r#""${PIPELINE[$i]}""#.into(),
            "--out".into(),
            shell_word(&path_text("out directory", &self.out)?),
            match self.selector {
                RunSelector::Only => "--only".into(),
                RunSelector::Run => "--run".into(),
            },
            r#""${RUN[$i]}""#.into(),
        ];
        for o in &self.overrides {
            command.push("-S".into());
            command.push(shell_word(&text_arg("override", o)?));
        }
        for a in &self.run_args {
            command.push(shell_word(&text_arg("labpipe run argument", a)?));
        }
        s += "\ni=${SLURM_ARRAY_TASK_ID:?this script is a Slurm job array: submit it with sbatch}\n";
        s += "[[ -n ${RUN[$i]+set} ]] || { echo \"labpipe: no run for array element $i\" >&2; exit 2; }\n";
        s += "echo \"labpipe: array element $i: run ${RUN[$i]} of ${PIPELINE[$i]}\" >&2\n";
        // Without cgroups a job sees every core of its node: compute with as many threads as it was given.
        s += "# Compute with the CPUs Slurm gave this element (--cpus-per-task) unless RAYON_NUM_THREADS is set.\n";
        s += "if [[ -n ${SLURM_CPUS_PER_TASK:-} && -z ${RAYON_NUM_THREADS:-} ]]; then export RAYON_NUM_THREADS=$SLURM_CPUS_PER_TASK; fi\n";
        s += &format!("exec {}\n", command.join(" "));
        Ok(s)
    }

    /// Writes the script to `<dir>/array.sbatch` (executable) and returns that path.
    pub fn write(&self) -> Result<PathBuf, ScriptError> {
        write_script(&self.dir.join(ARRAY_SCRIPT), &self.render()?)
    }
}

impl ReportJob {
    /// The script's text.
    pub fn render(&self) -> Result<String, ScriptError> {
        let job_name = line_arg("job name", &self.job_name)?;
        let own = [
            format!("--job-name={job_name}"),
            format!("--dependency=afterany:{}", self.after),
            output_option(&self.dir, "%j.out")?,
        ];
        let script = path_text("script", &self.dir.join(REPORT_SCRIPT))?;
        let mut s = format!(
            "#!/bin/bash\n\
             # labpipe: renders the report once job {} has left the queue, whatever its runs' outcome.\n\
             # Resubmit with: sbatch {}\n",
            self.after,
            shell_word(&script)
        );
        s += &header(&own, &self.options)?;
        s += "set -euo pipefail\n\n";
        let mut command = vec![
            shell_word(&path_text("labpipe executable", &self.labpipe)?),
            "report".into(),
        ];
        for p in &self.pipelines {
            command.push(shell_word(&path_text("pipeline file", p)?));
        }
        command.push("--out".into());
        command.push(shell_word(&path_text("results directory", &self.results)?));
        command.push("--to".into());
        command.push(shell_word(&path_text("report directory", &self.report_out)?));
        for a in &self.report_args {
            command.push(shell_word(&text_arg("labpipe report argument", a)?));
        }
        s += &format!("exec {}\n", command.join(" "));
        Ok(s)
    }

    /// Writes the script to `<dir>/report.sbatch` (executable) and returns that path.
    pub fn write(&self) -> Result<PathBuf, ScriptError> {
        write_script(&self.dir.join(REPORT_SCRIPT), &self.render()?)
    }
}

fn write_script(path: &Path, text: &str) -> Result<PathBuf, ScriptError> {
    let io = |source| ScriptError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(path, text).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
    }
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slurm::options::SlurmOptions;

    fn task(pipeline: &str, run: &str) -> ArrayTask {
        ArrayTask {
            pipeline: pipeline.into(),
            run: run.into(),
        }
    }

    fn ci_job() -> ArrayJob {
        ArrayJob {
            labpipe: "/opt/labpipe/bin/labpipe".into(),
            out: "/lab/out".into(),
            overrides: vec!["train.epochs=5".into(), "data.augment=[]".into()],
            run_args: vec!["--device".into(), "cuda".into()],
            tasks: vec![
                task("/lab/pipelines/ci.yaml", "baseline"),
                task("/lab/pipelines/ci.yaml", "lr[lr=0.01,scheduler=step]"),
                task("/lab/pipelines/task 1.yaml", "it's \"quoted\""),
            ],
            options: SlurmOptions {
                partition: Some("gpu".into()),
                gres: Some("gpu:1".into()),
                time: Some("2:00:00".parse().unwrap()),
                cpus_per_task: Some(8),
                mem: Some("16G".parse().unwrap()),
                account: Some("lab".into()),
                extra: vec!["--qos=high".into(), "--comment=labpipe #scale".into()],
            },
            job_name: "labpipe-ci".into(),
            dir: "/lab/out/slurm/20260102-030405".into(),
            selector: RunSelector::Only,
        }
    }

    #[test]
    fn array_script_golden() {
        let expected = r#"#!/bin/bash
# labpipe: 3 runs, one Slurm array element each. Resubmit with: sbatch '/lab/out/slurm/20260102-030405/array.sbatch'
# (runs that have finished meanwhile are found in labpipe's cache and not trained again)
#SBATCH --job-name=labpipe-ci
#SBATCH --array=0-2
#SBATCH --output=/lab/out/slurm/20260102-030405/%A_%a.out
#SBATCH --partition=gpu
#SBATCH --gres=gpu:1
#SBATCH --time=2:00:00
#SBATCH --cpus-per-task=8
#SBATCH --mem=16G
#SBATCH --account=lab
#SBATCH --qos=high
#SBATCH "--comment=labpipe #scale"
set -euo pipefail

# Array element N trains run RUN[N] of pipeline PIPELINE[N].
PIPELINE[0]='/lab/pipelines/ci.yaml'; RUN[0]='baseline'
PIPELINE[1]='/lab/pipelines/ci.yaml'; RUN[1]='lr[lr=0.01,scheduler=step]'
PIPELINE[2]='/lab/pipelines/task 1.yaml'; RUN[2]='it'\''s "quoted"'

i=${SLURM_ARRAY_TASK_ID:?this script is a Slurm job array: submit it with sbatch}
[[ -n ${RUN[$i]+set} ]] || { echo "labpipe: no run for array element $i" >&2; exit 2; }
echo "labpipe: array element $i: run ${RUN[$i]} of ${PIPELINE[$i]}" >&2
# Compute with the CPUs Slurm gave this element (--cpus-per-task) unless RAYON_NUM_THREADS is set.
if [[ -n ${SLURM_CPUS_PER_TASK:-} && -z ${RAYON_NUM_THREADS:-} ]]; then export RAYON_NUM_THREADS=$SLURM_CPUS_PER_TASK; fi
exec '/opt/labpipe/bin/labpipe' run "${PIPELINE[$i]}" --out '/lab/out' --only "${RUN[$i]}" -S 'train.epochs=5' -S 'data.augment=[]' '--device' 'cuda'
"#;
        assert_eq!(ci_job().render().unwrap(), expected);
    }

    #[test]
    fn minimal_array_script_golden() {
        let job = ArrayJob {
            labpipe: "/usr/bin/labpipe".into(),
            out: "/srv/my out/100%".into(),
            overrides: vec![],
            run_args: vec![],
            tasks: vec![task("/srv/lab.yaml", "baseline")],
            options: SlurmOptions::default(),
            job_name: "labpipe".into(),
            dir: "/srv/my out/100%/slurm/20260102-030405".into(),
            selector: RunSelector::Run,
        };
        let expected = r#"#!/bin/bash
# labpipe: 1 run, one Slurm array element each. Resubmit with: sbatch '/srv/my out/100%/slurm/20260102-030405/array.sbatch'
# (runs that have finished meanwhile are found in labpipe's cache and not trained again)
#SBATCH --job-name=labpipe
#SBATCH --array=0-0
#SBATCH "--output=/srv/my out/100%%/slurm/20260102-030405/%A_%a.out"
set -euo pipefail

# Array element N trains run RUN[N] of pipeline PIPELINE[N].
PIPELINE[0]='/srv/lab.yaml'; RUN[0]='baseline'

i=${SLURM_ARRAY_TASK_ID:?this script is a Slurm job array: submit it with sbatch}
[[ -n ${RUN[$i]+set} ]] || { echo "labpipe: no run for array element $i" >&2; exit 2; }
echo "labpipe: array element $i: run ${RUN[$i]} of ${PIPELINE[$i]}" >&2
# Compute with the CPUs Slurm gave this element (--cpus-per-task) unless RAYON_NUM_THREADS is set.
if [[ -n ${SLURM_CPUS_PER_TASK:-} && -z ${RAYON_NUM_THREADS:-} ]]; then export RAYON_NUM_THREADS=$SLURM_CPUS_PER_TASK; fi
exec '/usr/bin/labpipe' run "${PIPELINE[$i]}" --out '/srv/my out/100%' --run "${RUN[$i]}"
"#;
        assert_eq!(job.render().unwrap(), expected);
    }

    #[test]
    fn report_script_golden() {
        let job = ReportJob {
            labpipe: "/opt/labpipe/bin/labpipe".into(),
            pipelines: vec![
                "/lab/pipelines/ci.yaml".into(),
                "/lab/pipelines/task 1.yaml".into(),
            ],
            results: "/lab/out".into(),
            report_out: "/lab/out/report".into(),
            report_args: vec!["--format".into(), "html".into()],
            after: JobId(4242),
            options: ci_job().options.for_report(),
            job_name: "labpipe-ci-report".into(),
            dir: "/lab/out/slurm/20260102-030405".into(),
        };
        let expected = r#"#!/bin/bash
# labpipe: renders the report once job 4242 has left the queue, whatever its runs' outcome.
# Resubmit with: sbatch '/lab/out/slurm/20260102-030405/report.sbatch'
#SBATCH --job-name=labpipe-ci-report
#SBATCH --dependency=afterany:4242
#SBATCH --output=/lab/out/slurm/20260102-030405/%j.out
#SBATCH --partition=gpu
#SBATCH --time=2:00:00
#SBATCH --account=lab
set -euo pipefail

exec '/opt/labpipe/bin/labpipe' report '/lab/pipelines/ci.yaml' '/lab/pipelines/task 1.yaml' --out '/lab/out' --to '/lab/out/report' '--format' 'html'
"#;
        assert_eq!(job.render().unwrap(), expected);
    }

    #[test]
    fn array_body_maps_each_element_to_its_exact_run() {
        // Run the generated body with bash, a stand-in labpipe that prints its arguments, and each
        // SLURM_ARRAY_TASK_ID: the arguments must come back exactly as the tasks and overrides hold them.
        let tmp = tempfile::tempdir().unwrap();
        let fake = tmp.path().join("labpipe");
        write_script(&fake, "#!/bin/bash\nprintf '%s\\0' \"$@\"\n").unwrap();
        let mut job = ci_job();
        job.labpipe = fake;
        job.tasks
            .push(task("/lab/p.yaml", "two\nlines $(echo injected) `x`"));
        let script = tmp.path().join("array.sbatch");
        std::fs::write(&script, job.render().unwrap()).unwrap();
        for (i, t) in job.tasks.iter().enumerate() {
            let out = std::process::Command::new("bash")
                .arg(&script)
                .env("SLURM_ARRAY_TASK_ID", i.to_string())
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let banner = format!(
                "labpipe: array element {i}: run {} of {}\n",
                t.run,
                t.pipeline.display()
            );
            assert_eq!(String::from_utf8(out.stderr).unwrap(), banner);
            let stdout = String::from_utf8(out.stdout).unwrap();
            let got: Vec<&str> = stdout.split_terminator('\0').collect();
            let pipeline = t.pipeline.to_str().unwrap();
            assert_eq!(
                got,
                [
                    "run",
                    pipeline,
                    "--out",
                    "/lab/out",
                    "--only",
                    &t.run,
                    "-S",
                    "train.epochs=5",
                    "-S",
                    "data.augment=[]",
                    "--device",
                    "cuda"
                ]
            );
        }
        // Outside Slurm, or with an index past the end, the script stops with a message.
        let out = std::process::Command::new("bash")
            .arg(&script)
            .env_remove("SLURM_ARRAY_TASK_ID")
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("submit it with sbatch"));
        let out = std::process::Command::new("bash")
            .arg(&script)
            .env("SLURM_ARRAY_TASK_ID", "9")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("no run for array element 9"));

        // An element computes with the CPUs Slurm gave it, unless the user sized rayon's pool.
        let threads = tmp.path().join("threads");
        write_script(&threads, "#!/bin/bash\necho \"${RAYON_NUM_THREADS:-unset}\"\n").unwrap();
        job.labpipe = threads;
        std::fs::write(&script, job.render().unwrap()).unwrap();
        let threads_with = |cpus: Option<&str>, rayon: Option<&str>| {
            let mut c = std::process::Command::new("bash");
            c.arg(&script).env("SLURM_ARRAY_TASK_ID", "0");
            c.env_remove("SLURM_CPUS_PER_TASK")
                .env_remove("RAYON_NUM_THREADS");
            if let Some(n) = cpus {
                c.env("SLURM_CPUS_PER_TASK", n);
            }
            if let Some(n) = rayon {
                c.env("RAYON_NUM_THREADS", n);
            }
            String::from_utf8(c.output().unwrap().stdout).unwrap()
        };
        assert_eq!(threads_with(Some("3"), None), "3\n");
        assert_eq!(threads_with(Some("3"), Some("5")), "5\n");
        assert_eq!(threads_with(None, None), "unset\n");
    }

    #[test]
    fn refusals_say_why() {
        let mut job = ci_job();
        job.tasks.clear();
        assert_eq!(
            job.render().unwrap_err().to_string(),
            "nothing to submit: no run needs work"
        );

        let mut job = ci_job();
        job.tasks.push(task("/p.yaml", "lr*"));
        let e = job.render().unwrap_err().to_string();
        assert!(e.starts_with("run `lr*` has `*` or `?`"), "{e}");
        job.selector = RunSelector::Run;
        assert!(job.render().unwrap().contains("RUN[3]='lr*'"));

        let mut job = ci_job();
        job.options.extra = vec!["--array=1-3".into()];
        assert_eq!(
            job.render().unwrap_err().to_string(),
            "slurm `extra` entry `--array=1-3`: labpipe sets --array itself"
        );

        let mut job = ci_job();
        job.job_name = "a\nb".into();
        assert_eq!(
            job.render().unwrap_err().to_string(),
            "job name `a\\nb` contains a line break"
        );

        let mut job = ci_job();
        job.overrides = vec!["a=\0".into()];
        assert_eq!(
            job.render().unwrap_err().to_string(),
            "override `a=\\0` contains a NUL character"
        );

        let mut job = ci_job();
        job.dir = r"/lab/out\x/slurm/1".into();
        assert!(
            job.render()
                .unwrap_err()
                .to_string()
                .contains("contains a backslash")
        );
    }

    #[test]
    fn relative_paths_become_absolute() {
        let mut job = ci_job();
        job.out = "out".into();
        job.tasks = vec![task("pipelines/ci.yaml", "baseline")];
        let text = job.render().unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert!(
            text.contains(&format!("--out '{}'", cwd.join("out").display())),
            "{text}"
        );
        assert!(text.contains(&format!(
            "PIPELINE[0]='{}'",
            cwd.join("pipelines/ci.yaml").display()
        )));
    }

    #[test]
    fn stamps_are_utc_calendar_times() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(951_782_400), "20000229-000000");
        assert_eq!(utc_stamp(1_767_323_045), "20260102-030405");
        assert_eq!(utc_stamp(4_102_444_799), "20991231-235959");
    }

    #[test]
    fn submission_dirs_are_never_shared() {
        let tmp = tempfile::tempdir().unwrap();
        let a = submission_dir_at(tmp.path(), "20260102-030405").unwrap();
        let b = submission_dir_at(tmp.path(), "20260102-030405").unwrap();
        assert_eq!(a, tmp.path().join("slurm/20260102-030405"));
        assert_eq!(b, tmp.path().join("slurm/20260102-030405-2"));
        assert!(a.is_dir() && b.is_dir());
        let now = submission_dir(tmp.path()).unwrap();
        assert!(now.starts_with(tmp.path().join("slurm")) && now.is_dir());
    }

    #[test]
    fn write_puts_an_executable_script_in_the_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let mut job = ci_job();
        job.dir = submission_dir_at(tmp.path(), "s").unwrap();
        let path = job.write().unwrap();
        assert_eq!(path, job.dir.join("array.sbatch"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), job.render().unwrap());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o755
        );
    }
}

//! Against a real Slurm cluster: runs only with LABPIPE_SLURM_TESTS=1 (set by CI after .ci/slurm-up), and
//! then fails, rather than skips, when Slurm is not usable.

use std::path::Path;
use std::time::Duration;

use super::*;

fn enabled() -> bool {
    if std::env::var("LABPIPE_SLURM_TESTS").as_deref() == Ok("1") {
        return true;
    }
    eprintln!("NOT RUN: no slurm (LABPIPE_SLURM_TESTS is not 1; .ci/slurm-up starts a cluster)");
    false
}

/// A stand-in labpipe: prints each argument on its own line and fails for the run named `fails`.
fn fake_labpipe(dir: &Path) -> std::path::PathBuf {
    crate::slurm::submit::tests::fake_program(
        dir,
        "labpipe",
        "printf 'arg=%s\\n' \"$@\"\n\
         for a in \"$@\"; do [[ $a != fails ]] || { echo 'failing on purpose' >&2; exit 1; }; done",
    )
}

fn wait_options() -> WaitOptions {
    WaitOptions {
        poll: Duration::from_millis(500),
        timeout: Some(Duration::from_secs(180)),
        patience: Duration::from_secs(30),
    }
}

#[test]
fn array_and_report_job_on_a_real_cluster() {
    if !enabled() {
        return;
    }
    // A space and a `%` in the out directory: the --output line must be quoted and its `%` doubled.
    let tmp = tempfile::Builder::new()
        .prefix("labpipe slurm 100% ")
        .tempdir()
        .unwrap();
    let out = tmp.path().join("out");
    let pipeline = tmp.path().join("lab.yaml");
    std::fs::write(&pipeline, "name: lab\n").unwrap();
    let labpipe = fake_labpipe(tmp.path());
    let runs = ["baseline", "it's \"lr[lr=0.01,scheduler=step]\"", "fails"];
    let dir = submission_dir(&out).unwrap();
    let job = ArrayJob {
        labpipe: labpipe.clone(),
        out: out.clone(),
        overrides: vec!["train.epochs=1".into()],
        run_args: vec![],
        tasks: runs
            .iter()
            .map(|r| ArrayTask {
                pipeline: pipeline.clone(),
                run: r.to_string(),
            })
            .collect(),
        options: SlurmOptions {
            time: Some("5".parse().unwrap()),
            cpus_per_task: Some(1),
            ..SlurmOptions::default()
        },
        job_name: "labpipe-test".into(),
        dir: dir.clone(),
        selector: RunSelector::Only,
    };
    let tools = SlurmTools::from_path();
    let array = tools.submit_array(&job).unwrap();
    assert_eq!(array.script, dir.join("array.sbatch"));
    let report = tools
        .submit_report(&ReportJob {
            labpipe,
            pipelines: vec![pipeline.clone()],
            results: out.clone(),
            report_out: out.join("report"),
            report_args: vec![],
            after: array.id,
            options: job.options.for_report(),
            job_name: "labpipe-test-report".into(),
            dir: dir.clone(),
        })
        .unwrap();
    let (latest, record) = SubmissionRecord::latest(&out).unwrap().unwrap();
    assert_eq!(latest, dir);
    assert_eq!(
        record,
        SubmissionRecord {
            array_job: array.id,
            report_job: Some(report.id),
            tasks: job.tasks.clone()
        }
    );

    let mut polls = 0;
    let done = tools.wait(&array, &wait_options(), |_| polls += 1).unwrap();
    let states: Vec<_> = done.iter().map(|e| (e.index, e.state.clone())).collect();
    assert_eq!(
        states,
        [
            (Some(0), TaskState::Completed),
            (Some(1), TaskState::Completed),
            (
                Some(2),
                TaskState::Failed {
                    exit_code: 1,
                    signal: 0,
                    reason: "NonZeroExitCode".into()
                }
            )
        ],
        "after {polls} polls"
    );
    for (e, run) in done.iter().zip(runs) {
        let i = e.index.unwrap();
        assert_eq!(e.log, dir.join(format!("{}_{i}.out", array.id)));
        let log = std::fs::read_to_string(&e.log).unwrap_or_else(|err| panic!("{}: {err}", e.log.display()));
        let args = format!(
            "arg=run\narg={}\narg=--out\narg={}\narg=--only\narg={run}\narg=-S\narg=train.epochs=1\n",
            pipeline.display(),
            out.display()
        );
        assert!(log.contains(&args), "element {i} log:\n{log}");
        assert!(
            log.contains(&format!("labpipe: array element {i}: run {run} of ")),
            "{log}"
        );
        assert_eq!(log.contains("failing on purpose"), run == "fails", "{log}");
    }

    // The report job waited for the whole array (afterany: a failed element does not stop it).
    let report_done = tools.wait(&report, &wait_options(), |_| {}).unwrap();
    assert_eq!(report_done.len(), 1);
    assert_eq!(report_done[0].state, TaskState::Completed);
    let log = std::fs::read_to_string(report.log_path(None)).unwrap();
    assert_eq!(
        log,
        format!(
            "arg=report\narg={}\narg=--out\narg={}\narg=--to\narg={}\n",
            pipeline.display(),
            out.display(),
            out.join("report").display()
        )
    );
}

#[test]
fn sbatch_refusal_on_a_real_cluster() {
    if !enabled() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let job = ArrayJob {
        labpipe: "/bin/true".into(),
        out: tmp.path().into(),
        overrides: vec![],
        run_args: vec![],
        tasks: vec![ArrayTask {
            pipeline: tmp.path().join("lab.yaml"),
            run: "baseline".into(),
        }],
        options: SlurmOptions {
            partition: Some("no-such-partition".into()),
            ..SlurmOptions::default()
        },
        job_name: "labpipe-test".into(),
        dir: submission_dir(tmp.path()).unwrap(),
        selector: RunSelector::Only,
    };
    let e = SlurmTools::from_path().submit_array(&job).unwrap_err();
    assert!(matches!(e, SubmitError::Refused { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("sbatch: error: invalid partition specified: no-such-partition"),
        "{e}"
    );
}

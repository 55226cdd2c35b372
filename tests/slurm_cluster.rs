//! `run --executor slurm` against a real Slurm cluster: only with LABPIPE_SLURM_TESTS=1 (set by .ci/run after
//! .ci/slurm-up), and then failing, not skipping, when Slurm is not usable.

use crate::util::binary::{labpipe, stderr, stdout, wait_for};
use crate::util::cache::{assert_same_results, epochs_done};
use crate::util::files::{read_json, write};
use crate::util::pipeline::long_pipeline;
use crate::util::scale::{assert_each_stage_built_once, assert_same_outs, reference, runs_pipeline};
use std::path::Path;

fn enabled() -> bool {
    if std::env::var("LABPIPE_SLURM_TESTS").as_deref() == Ok("1") {
        return true;
    }
    eprintln!("NOT RUN: no slurm (LABPIPE_SLURM_TESTS is not 1; .ci/slurm-up starts a cluster)");
    false
}

/// The job ID in `submitted job array ID: …`.
fn job_id(out: &str) -> String {
    let rest = out
        .split("submitted job array ")
        .nth(1)
        .unwrap_or_else(|| panic!("no job submitted:\n{out}"));
    rest.split(':').next().unwrap().to_string()
}

/// The logs of every array element submitted from `out`.
fn element_logs(out: &Path) -> Vec<String> {
    let mut logs = Vec::new();
    for sub in std::fs::read_dir(out.join("slurm")).unwrap().flatten() {
        for f in std::fs::read_dir(sub.path()).unwrap().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.ends_with(".out") && name.contains('_') {
                logs.push(std::fs::read_to_string(f.path()).unwrap());
            }
        }
    }
    logs
}

/// `labpipe status --json`'s rows.
fn status_rows(dir: &Path) -> Vec<serde_json::Value> {
    let o = labpipe(dir, &["status", "p.yaml", "--out", "out", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str::<serde_json::Value>(&stdout(&o))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Each run's Slurm state (`none` when it has none), asked at most twice a second.
fn slurm_states(dir: &Path) -> Vec<String> {
    std::thread::sleep(std::time::Duration::from_millis(500));
    status_rows(dir)
        .iter()
        .map(|r| r["slurm"]["state"].as_str().unwrap_or("none").to_string())
        .collect()
}

const SLURM: [&str; 6] = ["--executor", "slurm", "--cpus-per-task", "1", "--time", "10"];

fn submit(dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["run", "p.yaml", "--out", "out"];
    args.extend_from_slice(&SLURM);
    args.extend_from_slice(extra);
    labpipe(dir, &args)
}

#[test]
fn slurm_array_matches_one_process_and_status_follows_it() {
    if !enabled() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "p.yaml", &runs_pipeline());
    let out = dir.join("out");
    let o = submit(dir, &["--wait", "--then-report"]);
    let text = stdout(&o);
    assert!(o.status.success(), "{text}\n{}", stderr(&o));
    let id = job_id(&text);
    assert!(text.contains(&format!("job array {id} ended after")), "{text}");
    assert_eq!(text.matches(": done\n").count(), 5, "{text}");
    assert!(
        text.contains("report job ") && text.contains(": done, "),
        "{text}"
    );
    assert!(out.join("report/report.md").is_file());

    assert_same_outs(reference(), &out);
    assert_each_stage_built_once(&out, &element_logs(&out));

    let o = labpipe(dir, &["status", "p.yaml", "--out", "out"]);
    let status = stdout(&o);
    for i in 0..5 {
        assert!(status.contains(&format!("| slurm {id}_{i}: done")), "{status}");
    }
    let o = submit(dir, &[]);
    assert!(o.status.success());
    assert!(
        stdout(&o).contains("nothing to submit: every selected run is done"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_cancelled_element_is_shown_and_resumes_when_submitted_again() {
    if !enabled() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "p.yaml", &long_pipeline("long", 6));
    let out = dir.join("out");
    let o = submit(dir, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let id = job_id(&stdout(&o));
    wait_for(180, "the element to checkpoint an epoch", || {
        std::thread::sleep(std::time::Duration::from_millis(100));
        epochs_done(&out).is_some_and(|n| n >= 1)
    });
    let cancel = std::process::Command::new("scancel").arg(&id).output().unwrap();
    assert!(cancel.status.success(), "{}", stderr(&cancel));
    wait_for(60, "Slurm to show the element cancelled", || {
        slurm_states(dir) == ["failed"]
    });
    let o = labpipe(dir, &["status", "p.yaml", "--out", "out"]);
    let status = stdout(&o);
    assert!(
        status.contains(&format!(
            "| slurm {id}_0: failed: cancelled (submitting again resumes it), log "
        )),
        "{status}"
    );
    assert!(status.contains("long/baseline: interrupted"), "{status}");
    // The failed element's log, as a path from where status ran.
    let log = dir.join(status_rows(dir)[0]["slurm"]["log"].as_str().unwrap());
    assert!(log.is_file(), "{}", log.display());

    let o = submit(dir, &["--wait"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let second = job_id(&stdout(&o));
    assert_ne!(second, id);
    let resumed = element_logs(&out)
        .into_iter()
        .any(|l| l.contains("baseline: resuming after epoch"));
    assert!(resumed, "the second element started over");

    // Bit for bit what one uninterrupted run gives.
    let whole = tempfile::tempdir().unwrap();
    write(whole.path(), "p.yaml", &long_pipeline("long", 6));
    let o = labpipe(whole.path(), &["run", "p.yaml", "--out", "out", "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_results(&whole.path().join("out"), &out);
    assert_eq!(read_json(&out.join("runs/long/baseline.json"))["status"], "done");
}

#[test]
fn a_second_submission_does_not_queue_the_same_runs_again() {
    if !enabled() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "p.yaml", &runs_pipeline());
    let out = dir.join("out");
    let o = submit(dir, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = submit(dir, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("nothing to submit: every run that needs work is queued or running already"),
        "{}",
        stdout(&o)
    );
    wait_for(300, "the array to end", || {
        slurm_states(dir).iter().all(|s| s == "done" || s == "failed")
    });
    assert_eq!(slurm_states(dir), ["done"; 5]);
    assert_eq!(std::fs::read_dir(out.join("slurm")).unwrap().count(), 1);
    assert_each_stage_built_once(&out, &element_logs(&out));
}

#[test]
fn sbatch_refusing_the_options_is_an_error_with_slurms_message() {
    if !enabled() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "p.yaml", &runs_pipeline());
    let o = submit(dir, &["--partition", "no-such-partition"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("sbatch: error: invalid partition specified: no-such-partition"),
        "{}",
        stderr(&o)
    );
}

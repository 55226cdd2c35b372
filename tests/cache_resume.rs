//! Training survives `kill -9` and Ctrl-C: the next `labpipe run` resumes after the last checkpointed epoch
//! and ends with exactly the bytes an uninterrupted run produces.

use crate::util::binary::{command, labpipe, signal, spawn, stderr, stdout, wait_for};
use crate::util::cache::{
    assert_same_results, checkpoint_epoch, complete_dir, epochs_done, manifest_files, partials, stage_dirs,
    train_partial,
};
use crate::util::files::{read_json, write};
use crate::util::pipeline::long_pipeline;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const EPOCHS: usize = 4;

/// An uninterrupted run of the pipeline, made once for the tests of this file.
fn reference() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "p.yaml", &long_pipeline("resume", EPOCHS));
        let o = labpipe(tmp.path(), &["run", "p.yaml", "-q"]);
        assert!(o.status.success(), "{}", stderr(&o));
        tmp
    })
    .path()
}

fn reference_out() -> PathBuf {
    reference().join("out")
}

#[test]
fn kill_9_in_epoch_3_resumes_after_epoch_2_bit_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "p.yaml", &long_pipeline("resume", EPOCHS));
    let out = dir.join("out");

    let log = dir.join("first.log");
    let mut child = spawn(dir, &["run", "p.yaml"], &log);
    // Mid-epoch 3: epoch 2 is checkpointed and epoch 3 has trained its first batch (of 50).
    wait_for(120, "epoch 3's first batch", || {
        epochs_done(&out) == Some(2)
            && std::fs::read_to_string(&log).is_ok_and(|l| l.contains("epoch 3/4 batch 1/50"))
    });
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run finished before it could be killed"
    );
    signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        !log.contains("epoch 3/4: train loss"),
        "epoch 3 finished before the kill:\n{log}"
    );
    assert!(complete_dir_missing(&out, "train"));
    let partial = train_partial(&out).expect("the killed build's directory is kept");
    assert_eq!(checkpoint_epoch(&partial.join("last.safetensors")), 2);

    // Other thread counts (labpipe's kernels, Candle's) and worker count: none may change a single bit.
    let o = command(dir, &["run", "p.yaml", "--workers", "3"])
        .env("RAYON_NUM_THREADS", "1")
        .env("CANDLE_NUM_THREADS", "2")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("baseline: resuming after epoch 2 of 4"), "{err}");
    assert!(
        !err.contains("epoch 1/4: train loss") && !err.contains("epoch 2/4: train loss"),
        "{err}"
    );
    assert!(
        err.contains("epoch 3/4: train loss") && err.contains("epoch 4/4: train loss"),
        "{err}"
    );
    assert_same_results(&reference_out(), &out);

    // Nothing half-written survives into the entry, and no build is left over.
    assert!(partials(&out).is_empty(), "{:?}", partials(&out));
    let train = complete_dir(&out, "train");
    let mut listed = manifest_files(&train);
    listed.sort();
    assert_eq!(
        listed,
        [
            "config.json",
            "history.csv",
            "history.json",
            "last.safetensors",
            "model.safetensors",
            "outcome.json"
        ]
    );
    let outcome = read_json(&train.join("outcome.json"));
    assert_eq!(outcome["resumed_epochs"], 2);
}

fn complete_dir_missing(out: &Path, stage: &str) -> bool {
    stage_dirs(out, stage).iter().all(|d| d.starts_with(".partial-"))
}

#[test]
fn ctrl_c_once_stops_with_130_keeps_the_last_epoch_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "p.yaml", &long_pipeline("resume", EPOCHS));
    let out = dir.join("out");

    let mut child = spawn(dir, &["run", "p.yaml"], &dir.join("first.log"));
    wait_for(120, "resume.json to record 1 epoch", || {
        epochs_done(&out) == Some(1)
    });
    signal(&child, libc::SIGINT);
    let status = child.wait().unwrap();
    let log = std::fs::read_to_string(dir.join("first.log")).unwrap();
    assert_eq!(status.code(), Some(130), "{log}");
    assert!(log.contains("interrupt: finishing the current batch"), "{log}");
    assert!(log.contains("`labpipe run` again resumes"), "{log}");

    // The current batch finishes, then the loop stops: the checkpoint is the last complete epoch (1, or 2
    // when the signal landed after epoch 2's last batch).
    let done = epochs_done(&out).expect("resume state kept");
    assert!((1..EPOCHS).contains(&done), "epochs done: {done}");
    let partial = train_partial(&out).unwrap();
    assert_eq!(checkpoint_epoch(&partial.join("last.safetensors")), done);
    assert!(partial.join("model.safetensors").is_file());
    assert!(complete_dir_missing(&out, "train"));
    let record = read_json(&out.join("runs/resume/baseline.json"));
    assert_eq!(record["status"], "interrupted");

    let o = labpipe(dir, &["plan", "p.yaml"]);
    assert!(
        stdout(&o).contains(&format!(
            "train    will run: interrupted earlier; resumes after epoch {done}"
        )),
        "{}",
        stdout(&o)
    );

    let o = labpipe(dir, &["run", "p.yaml"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!("resuming after epoch {done} of 4")),
        "{err}"
    );
    assert_same_results(&reference_out(), &out);
    assert!(partials(&out).is_empty());
}

//! A damaged resume state is never resumed: a flipped bit or a truncated `resume-N.safetensors` is reported,
//! training resumes from the epoch before (or from scratch when that is damaged too), `plan` says exactly
//! what `run` will do, and the result is bit for bit the uninterrupted run's.

use crate::util::binary::{labpipe, signal, spawn, stderr, stdout, wait_for};
use crate::util::cache::{assert_same_results, complete_dir, epochs_done, partials, train_partial};
use crate::util::files::{read_json, write};
use crate::util::pipeline::long_pipeline;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const EPOCHS: usize = 4;

/// An uninterrupted run, and a run killed in epoch 3 (epochs 1 and 2 checkpointed), made once.
fn runs() -> &'static (tempfile::TempDir, tempfile::TempDir) {
    static DIRS: OnceLock<(tempfile::TempDir, tempfile::TempDir)> = OnceLock::new();
    DIRS.get_or_init(|| {
        let reference = tempfile::tempdir().unwrap();
        write(reference.path(), "p.yaml", &long_pipeline("damage", EPOCHS));
        let o = labpipe(reference.path(), &["run", "p.yaml", "-q"]);
        assert!(o.status.success(), "{}", stderr(&o));

        let killed = tempfile::tempdir().unwrap();
        let dir = killed.path();
        write(dir, "p.yaml", &long_pipeline("damage", EPOCHS));
        let (out, log) = (dir.join("out"), dir.join("first.log"));
        let mut child = spawn(dir, &["run", "p.yaml"], &log);
        wait_for(120, "epoch 3's first batch", || {
            epochs_done(&out) == Some(2)
                && std::fs::read_to_string(&log).is_ok_and(|l| l.contains("epoch 3/4 batch 1/50"))
        });
        signal(&child, libc::SIGKILL);
        child.wait().unwrap();
        (reference, killed)
    })
}

/// A copy of the killed run's directory to damage.
fn copy_of_killed_run() -> tempfile::TempDir {
    let from = runs().1.path();
    let to = tempfile::tempdir().unwrap();
    for e in walkdir::WalkDir::new(from).into_iter().flatten() {
        let dest = to.path().join(e.path().strip_prefix(from).unwrap());
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
    to
}

fn state_file(dir: &Path, epochs: usize) -> PathBuf {
    train_partial(&dir.join("out"))
        .unwrap()
        .join(format!("resume-{epochs}.safetensors"))
}

fn flip_a_bit(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

fn truncate(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    std::fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
}

/// Damage the copy with `damage`, then check that `plan` says `plan_says`, that `run` says `run_says`,
/// resumes after epoch `from` (0: from scratch), and ends with the uninterrupted run's bytes.
fn damaged_resume(damage: impl FnOnce(&Path), plan_says: &str, run_says: &[&str], from: usize) {
    let tmp = copy_of_killed_run();
    let dir = tmp.path();
    damage(dir);
    let o = labpipe(dir, &["plan", "p.yaml"]);
    let plan = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        plan.contains(&format!("train    will run: {plan_says}")),
        "{plan}"
    );

    // -q: the damage is said all the same.
    let o = labpipe(dir, &["run", "p.yaml", "-q"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    for said in run_says {
        assert!(err.contains(said), "`{said}` not in:\n{err}");
    }
    let outcome = read_json(&complete_dir(&dir.join("out"), "train").join("outcome.json"));
    assert_eq!(outcome["resumed_epochs"], from, "{err}");

    assert_same_results(&runs().0.path().join("out"), &dir.join("out"));
    assert!(partials(&dir.join("out")).is_empty());
}

#[test]
fn an_intact_state_resumes_after_epoch_2() {
    damaged_resume(|_| {}, "interrupted earlier; resumes after epoch 2", &[], 2);
}

#[test]
fn a_flipped_bit_in_the_newest_state_resumes_from_the_epoch_before() {
    damaged_resume(
        |dir| flip_a_bit(&state_file(dir, 2)),
        "interrupted earlier; the resume state saved after epoch 2 is damaged (resume-2.safetensors \
         differs from what was written (its blake3 differs)); resumes after epoch 1 instead",
        &[
            "baseline: the resume state saved after epoch 2 is damaged (resume-2.safetensors differs from \
             what was written (its blake3 differs)); resuming after epoch 1 of 4 instead",
        ],
        1,
    );
}

#[test]
fn a_truncated_newest_state_resumes_from_the_epoch_before() {
    damaged_resume(
        |dir| truncate(&state_file(dir, 2)),
        "interrupted earlier; the resume state saved after epoch 2 is damaged (resume-2.safetensors is ",
        &["were written); resuming after epoch 1 of 4 instead"],
        1,
    );
}

#[test]
fn both_states_damaged_or_a_damaged_record_start_again_from_scratch() {
    damaged_resume(
        |dir| {
            truncate(&state_file(dir, 2));
            flip_a_bit(&state_file(dir, 1));
        },
        "interrupted earlier; the resume state saved after epoch 2 is damaged (resume-2.safetensors is ",
        &[
            "the resume state saved after epoch 1 is damaged (resume-1.safetensors differs",
            "; training starts again from epoch 1",
        ],
        0,
    );
    damaged_resume(
        |dir| {
            let json = train_partial(&dir.join("out")).unwrap().join("resume.json");
            let text = std::fs::read_to_string(&json).unwrap();
            std::fs::write(&json, &text[..text.len() / 2]).unwrap();
        },
        "interrupted earlier; resume.json is damaged (",
        &[
            "baseline: resume.json is damaged (",
            "training starts again from epoch 1",
        ],
        0,
    );
}

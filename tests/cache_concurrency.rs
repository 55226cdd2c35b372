//! Two `labpipe run` processes on one out directory: the second waits on the stage lock and reuses what the
//! first built; a lock whose holder was killed is released by the kernel and the waiter takes over.

use crate::util::binary::{labpipe, signal, spawn, stderr, stdout, wait_for};
use crate::util::cache::{assert_same_results, epochs_done, partials, stage_dirs, train_partial};
use crate::util::files::write;
use crate::util::pipeline::long_pipeline;
use std::path::Path;

const EPOCHS: usize = 4;

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

#[test]
fn second_run_waits_then_reuses_the_first_runs_training() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "p.yaml", &long_pipeline("both", EPOCHS));
    let out = dir.join("out");

    let mut first = spawn(dir, &["run", "p.yaml"], &dir.join("first.log"));
    // The first holds the train lock once its build directory exists.
    wait_for(120, "the first run to start training", || {
        train_partial(&out).is_some()
    });
    let mut second = spawn(dir, &["run", "p.yaml"], &dir.join("second.log"));
    let (a, b) = (first.wait().unwrap(), second.wait().unwrap());
    let (log1, log2) = (read(&dir.join("first.log")), read(&dir.join("second.log")));
    assert!(a.success(), "{log1}");
    assert!(b.success(), "{log2}");

    assert!(log1.contains("baseline: train    ran in"), "{log1}");
    assert!(
        log2.contains("baseline: train    waiting: another labpipe process is building this stage"),
        "{log2}"
    );
    assert!(
        log2.contains("baseline: train    cached (")
            && log2.contains("another labpipe process built it meanwhile"),
        "{log2}"
    );
    assert!(!log2.contains("train loss"), "the second run trained:\n{log2}");
    for stage in ["dataset", "model", "train", "evaluate", "plot"] {
        assert_eq!(
            stage_dirs(&out, stage).len(),
            1,
            "{stage}: {:?}",
            stage_dirs(&out, stage)
        );
    }
    assert!(partials(&out).is_empty(), "{:?}", partials(&out));
    let o = labpipe(dir, &["plan", "p.yaml"]);
    assert!(stdout(&o).contains("everything is cached"), "{}", stdout(&o));
}

#[test]
fn a_killed_lock_holder_does_not_block_the_waiter() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "p.yaml", &long_pipeline("both", EPOCHS));
    let out = dir.join("out");

    let mut holder = spawn(dir, &["run", "p.yaml"], &dir.join("holder.log"));
    wait_for(120, "the holder to checkpoint an epoch", || {
        epochs_done(&out) == Some(1)
    });
    let mut waiter = spawn(dir, &["run", "p.yaml"], &dir.join("waiter.log"));
    wait_for(60, "the second run to wait on the lock", || {
        read(&dir.join("waiter.log")).contains("waiting: another labpipe process")
    });
    assert!(
        holder.try_wait().unwrap().is_none(),
        "the holder finished before it could be killed"
    );
    signal(&holder, libc::SIGKILL);
    holder.wait().unwrap();

    let status = waiter.wait().unwrap();
    let log = read(&dir.join("waiter.log"));
    assert!(status.success(), "{log}");
    // The waiter takes the lock and resumes from the killed build's checkpoint instead of starting over.
    assert!(log.contains("baseline: resuming after epoch"), "{log}");
    assert!(log.contains("baseline: train    ran in"), "{log}");
    assert!(partials(&out).is_empty(), "{:?}", partials(&out));

    // Bit-identical to an uninterrupted run.
    let reference = tempfile::tempdir().unwrap();
    write(reference.path(), "p.yaml", &long_pipeline("both", EPOCHS));
    let o = labpipe(reference.path(), &["run", "p.yaml", "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_results(&reference.path().join("out"), &out);
}

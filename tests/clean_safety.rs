//! `labpipe clean` removes only what labpipe made and nothing a running labpipe holds: `--all` during a
//! training leaves its build (and its lock and record) alone and the training completes; a cache or `runs/`
//! folder holding anything else, or a symbolic link, is refused whole with a message naming what was found.

use crate::util::binary::{labpipe, signal, spawn, stderr, stdout, wait_for};
use crate::util::cache::{complete_dir, epochs_done, train_partial};
use crate::util::files::{files_under, read_json, write};
use crate::util::pipeline::{long_pipeline, pipeline};
use std::path::Path;

fn clean(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["clean"];
    all.extend(args);
    labpipe(dir, &all)
}

#[test]
fn clean_all_while_a_run_trains_keeps_what_its_lock_holds_and_the_run_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = dir.join("out");
    // Something to remove: a finished run of another pipeline.
    write(dir, "done.yaml", &pipeline("done", 1, ""));
    assert!(labpipe(dir, &["run", "done.yaml", "-q"]).status.success());
    let finished_train = complete_dir(&out, "train");

    write(dir, "p.yaml", &long_pipeline("busy", 3));
    let log = dir.join("run.log");
    let mut child = spawn(dir, &["run", "p.yaml"], &log);
    // In its train stage, with an epoch checkpointed: the build holds state worth keeping.
    wait_for(120, "the run to checkpoint its first epoch", || {
        epochs_done(&out) == Some(1)
    });
    let partial = train_partial(&out).expect("the running build's directory");
    let partial_name = partial.file_name().unwrap().to_string_lossy().into_owned();
    let key = partial_name.trim_start_matches(".partial-").to_string();

    let o = clean(dir, &["--all"]);
    let said = stdout(&o);
    assert!(o.status.success(), "{}{said}", stderr(&o));
    assert!(
        said.contains(&format!(
            "kept train/{partial_name}: a running labpipe holds its lock (it is building this stage)"
        )),
        "{said}"
    );
    assert!(
        said.contains("kept run record ") && said.contains("busy/baseline.json: its run is in progress"),
        "{said}"
    );
    assert!(
        said.contains("; kept 1 entry a running labpipe holds and 1 run record"),
        "{said}"
    );
    assert!(partial.exists(), "the running build was removed");
    assert!(
        out.join(format!("cache/train/.{key}.lock")).exists(),
        "its lock file was removed"
    );
    assert!(!finished_train.exists(), "the finished run's entry was kept");
    assert!(
        !out.join("runs/done").exists(),
        "the finished run's record was kept"
    );

    let status = child.wait().unwrap();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "the training failed after clean:\n{log}");
    assert!(log.contains("epoch 3/3: train loss"), "{log}");
    let train = complete_dir(&out, "train");
    assert_eq!(train.file_name().unwrap().to_string_lossy(), key);
    assert_eq!(read_json(&out.join("runs/busy/baseline.json"))["status"], "done");
}

#[test]
fn dry_run_of_clean_all_names_what_a_running_labpipe_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = dir.join("out");
    write(dir, "p.yaml", &long_pipeline("busy", 3));
    let mut child = spawn(dir, &["run", "p.yaml"], &dir.join("run.log"));
    wait_for(120, "the run to start its train stage", || {
        train_partial(&out).is_some()
    });
    let partial = train_partial(&out).unwrap();
    let dataset = complete_dir(&out, "dataset");
    let o = clean(dir, &["--all", "--dry-run"]);
    let said = stdout(&o);
    assert!(o.status.success(), "{}{said}", stderr(&o));
    let name = partial.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        said.contains(&format!("kept train/{name}: a running labpipe holds its lock")),
        "{said}"
    );
    assert!(said.contains("would remove the whole cache"), "{said}");
    signal(&child, libc::SIGINT);
    child.wait().unwrap();
    assert!(
        dataset.exists() && partial.exists(),
        "a dry run removed something"
    );
    assert!(out.join("runs/busy/baseline.json").exists());
}

/// `clean --all --out v` on a directory that is not labpipe's: nothing is removed, and the message names
/// what was found.
#[test]
fn a_foreign_out_directory_is_refused_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let v = dir.join("v");
    std::fs::create_dir_all(v.join("cache")).unwrap();
    std::fs::create_dir_all(v.join("runs")).unwrap();
    std::fs::write(v.join("cache/keep.txt"), "x").unwrap();
    std::fs::create_dir_all(v.join("runs/thesis")).unwrap();
    std::fs::write(v.join("runs/thesis/chapter1.tex"), "my thesis").unwrap();
    let before = files_under(&v);
    for args in [
        &["--all", "--out", "v"][..],
        &["--out", "v"],
        &["--all", "--dry-run", "--out", "v"],
    ] {
        let o = clean(dir, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stdout(&o));
        let err = stderr(&o);
        let found = if args.contains(&"--all") { 2 } else { 1 };
        assert!(
            err.contains(&format!(
                "refusing to clean `v`: it holds {found} thing{} that labpipe did not make",
                if found == 1 { "" } else { "s" }
            )),
            "{err}"
        );
        assert!(
            err.contains("v/cache/keep.txt: not a stage folder of labpipe's cache"),
            "{err}"
        );
        if args.contains(&"--all") {
            assert!(
                err.contains("v/runs/thesis/chapter1.tex: not a run record"),
                "{err}"
            );
        }
        assert!(err.contains("Nothing was removed."), "{err}");
        assert_eq!(files_under(&v), before, "{args:?} removed something");
    }
}

/// labpipe's own out directory with one stranger in it: an unknown file in a cache entry, a file in a run's
/// folder, a symbolic link out of the cache. Each alone stops `clean --all`; without them it cleans.
#[test]
fn labpipes_out_with_anything_else_in_it_is_refused_and_links_are_never_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = dir.join("out");
    write(dir, "p.yaml", &pipeline("p", 1, ""));
    assert!(labpipe(dir, &["run", "p.yaml", "-q"]).status.success());
    let train = complete_dir(&out, "train");
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("precious.txt"), "not labpipe's").unwrap();

    let strangers: Vec<(std::path::PathBuf, &str)> = vec![
        (train.join("notes.txt"), "a file the train stage does not write"),
        (
            out.join("runs/p/baseline/plot.py"),
            "not a file labpipe publishes for a run",
        ),
        (
            out.join("cache/plot/linked"),
            "a symbolic link (labpipe never follows one)",
        ),
        (
            train.join("linked"),
            "a symbolic link (labpipe never follows one)",
        ),
    ];
    for (path, why) in &strangers {
        if path.ends_with("linked") {
            std::os::unix::fs::symlink(outside.path(), path).unwrap();
        } else {
            std::fs::write(path, "mine").unwrap();
        }
        let before = files_under(&out);
        let o = clean(dir, &["--all"]);
        assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
        let err = stderr(&o);
        let shown = path.strip_prefix(dir).unwrap().display().to_string();
        assert!(err.contains(&format!("{shown}: {why}")), "{err}");
        assert_eq!(files_under(&out), before);
        assert!(outside.path().join("precious.txt").exists());
        std::fs::remove_file(path).unwrap();
    }

    // labpipe's own files only: all of it goes.
    let o = clean(dir, &["--all"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("removed the cache ("), "{}", stdout(&o));
    assert!(stdout(&o).contains("and 1 run record"), "{}", stdout(&o));
    assert!(!out.join("cache").exists() && !out.join("runs").exists());
    assert!(outside.path().join("precious.txt").exists());
}

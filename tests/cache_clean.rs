//! `labpipe clean`: lists and removes what no current run uses (with sizes), keeps what runs use and the
//! builds they will resume, leaves alone what a running labpipe holds, and `--all` empties the cache.

use crate::util::binary::{labpipe, signal, spawn, stderr, stdout, wait_for};
use crate::util::cache::{complete_dir, epochs_done, stage_dirs, train_partial};
use crate::util::files::write;
use crate::util::pipeline::{LONG_TRAIN_SIZE, pipeline, sized_pipeline};
use std::path::Path;

fn clean(dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["clean"];
    all.extend(args);
    let o = labpipe(dir, &all);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
}

fn make_partial(out: &Path, key: &str) -> std::path::PathBuf {
    let p = out.join("cache/train").join(format!(".partial-{key}"));
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join("last.safetensors"), vec![0u8; 2500]).unwrap();
    std::fs::write(out.join("cache/train").join(format!(".{key}.lock")), b"").unwrap();
    p
}

#[test]
fn clean_removes_only_what_no_run_uses() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = dir.join("out");
    write(dir, "p.yaml", &pipeline("p", 1, ""));
    assert!(labpipe(dir, &["run", "p.yaml", "-q"]).status.success());
    let old_train = complete_dir(&out, "train");
    let old_eval = complete_dir(&out, "evaluate");
    let old_plot = complete_dir(&out, "plot");
    // The run now uses another train key (its file changed; a `-S` run would be a run of its own); the first
    // one's train, evaluate and plot entries are unused.
    write(
        dir,
        "p.yaml",
        &pipeline("p", 1, "").replace("lr: 0.01", "lr: 0.02"),
    );
    assert!(labpipe(dir, &["run", "p.yaml", "-q"]).status.success());
    let cache = out.join("cache");
    let used: Vec<_> = ["dataset", "model", "train", "evaluate", "plot"]
        .iter()
        .flat_map(|s| {
            let stage = cache.join(s);
            stage_dirs(&out, s).into_iter().map(move |d| stage.join(d))
        })
        .filter(|p| ![&old_train, &old_eval, &old_plot].contains(&p))
        .collect();
    assert_eq!(used.len(), 5);
    let current_train = used[2].file_name().unwrap().to_string_lossy().into_owned();

    // An interrupted run of a second pipeline: its build is what the next run resumes.
    write(dir, "q.yaml", &sized_pipeline("q", 3, LONG_TRAIN_SIZE, ""));
    let mut q = spawn(dir, &["run", "q.yaml"], &dir.join("q.log"));
    wait_for(120, "q to checkpoint an epoch", || epochs_done(&out) == Some(1));
    signal(&q, libc::SIGINT);
    assert_eq!(q.wait().unwrap().code(), Some(130));
    let resumable = train_partial(&out).unwrap();

    // Leftovers: a build of a key no run refers to, a build of a key that is complete, and a build another
    // labpipe holds the lock of.
    let orphan = make_partial(&out, "00000000deadbeef");
    let stale = make_partial(&out, &current_train);
    let held = make_partial(&out, "00000000cafecafe");
    let lock = std::fs::File::options()
        .write(true)
        .open(out.join("cache/train/.00000000cafecafe.lock"))
        .unwrap();
    lock.lock().unwrap();

    let dry = clean(dir, &["--dry-run"]);
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    for (stage, path, why) in [
        ("train", &old_train, "not used by any current run"),
        ("evaluate", &old_eval, "not used by any current run"),
        ("plot", &old_plot, "not used by any current run"),
        ("train", &orphan, "unfinished build of a key no run refers to"),
        ("train", &stale, "unfinished build of a completed key"),
    ] {
        let line = dry
            .lines()
            .find(|l| l.starts_with(&format!("would remove {stage}/{} (", name(path))))
            .unwrap_or_else(|| panic!("{stage}/{} not listed:\n{dry}", name(path)));
        assert!(line.ends_with(why), "{line}");
        let size = line.split(" (").nth(1).unwrap().split(')').next().unwrap();
        assert!(
            size.ends_with(" B") || size.ends_with(" KB") || size.ends_with(" MB"),
            "no size in `{line}`"
        );
    }
    assert!(
        dry.contains(" (2.5 KB): unfinished build of a key no run refers to"),
        "{dry}"
    );
    assert!(
        !dry.contains(&name(&resumable)),
        "a build to resume is listed:\n{dry}"
    );
    assert!(dry.contains("6 entries to remove; would free"), "{dry}");
    for p in [&old_train, &orphan, &stale, &held, &resumable] {
        assert!(p.exists(), "--dry-run removed {}", p.display());
    }

    let done = clean(dir, &[]);
    assert!(
        done.contains("kept train/.partial-00000000cafecafe: a running labpipe is using it"),
        "{done}"
    );
    assert!(done.contains("removed 5 entries; freed"), "{done}");
    assert!(
        done.contains("1 in use by a running labpipe left alone"),
        "{done}"
    );
    for p in [&old_train, &old_eval, &old_plot, &orphan, &stale] {
        assert!(!p.exists(), "{} was not removed", p.display());
    }
    assert!(
        !out.join("cache/train/.00000000deadbeef.lock").exists(),
        "orphan lock file kept"
    );
    assert!(held.exists() && resumable.exists());
    for p in &used {
        assert!(p.exists(), "{} is used but was removed", p.display());
    }
    drop(lock);

    // What runs use is intact: nothing retrains, and the interrupted run resumes.
    let o = labpipe(dir, &["run", "p.yaml"]);
    assert!(stderr(&o).contains("up to date, nothing ran"), "{}", stderr(&o));
    let o = labpipe(dir, &["run", "q.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("baseline: resuming after epoch 1 of 3"),
        "{}",
        stderr(&o)
    );
    // Back to the first file: its entries were cleaned, so training would run again, and plan says why.
    write(dir, "p.yaml", &pipeline("p", 1, ""));
    let o = labpipe(dir, &["plan", "p.yaml"]);
    assert!(
        stdout(&o).contains("train    will run: train.optimizer.lr changed from 0.02 to 0.01"),
        "{}",
        stdout(&o)
    );

    let dry = clean(dir, &["--all", "--dry-run"]);
    assert!(dry.starts_with("would remove the whole cache"), "{dry}");
    assert!(out.join("cache").exists());
    let all = clean(dir, &["--all"]);
    assert!(all.starts_with("removed the cache ("), "{all}");
    assert!(!out.join("cache").exists() && !out.join("runs").exists());
    let o = labpipe(dir, &["plan", "p.yaml"]);
    assert!(
        stdout(&o).contains("train    will run: new run"),
        "{}",
        stdout(&o)
    );
}

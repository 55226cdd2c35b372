//! Which runs a command works on, and where their records go: a run with `-S` overrides is its own run, every
//! command selects runs as `run` does, and names that would leave `out/` or share a record are refused.

use crate::util::binary::{labpipe, stderr, stdout};
use crate::util::files::{files_under, read_json, write};

/// A linear model on a few synthetic images: each run trains in well under a second.
fn pipeline(name: &str) -> String {
    format!(
        "name: {name}
data: {{dataset: synthetic, train_size: 100, test_size: 20, val_split: 20, normalize: train_mean_std}}
model:
  layers:
    - flatten
    - linear: {{out_features: 10}}
train:
  epochs: 1
  batch_size: 40
  optimizer: {{name: adam, lr: 0.01}}
"
    )
}

#[test]
fn a_run_with_overrides_is_its_own_run_and_every_command_selects_it_like_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "p.yaml", &pipeline("t"));
    let o = labpipe(dir, &["run", "-q", "p.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = labpipe(dir, &["run", "-q", "p.yaml", "-S", "train.epochs=2"]);
    assert!(o.status.success(), "{}", stderr(&o));

    // Two records side by side; the plain run's is untouched.
    let plain = read_json(&dir.join("out/runs/t/baseline.json"));
    assert_eq!(plain["spec"]["name"], "baseline");
    assert_eq!(plain["spec"]["train"]["epochs"], 1);
    let records: Vec<String> = files_under(&dir.join("out/runs/t"))
        .into_iter()
        .filter(|f| f.ends_with(".json"))
        .collect();
    assert_eq!(records.len(), 2, "{records:?}");
    let set = read_json(&dir.join("out/runs/t/baseline_train.epochs=2_.json"));
    assert_eq!(set["spec"]["name"], "baseline[train.epochs=2]");
    assert_eq!(set["spec"]["train"]["epochs"], 2);
    assert_eq!(set["spec"]["set"][0], "train.epochs=2");

    // report, status, plan, eval and summary find the overridden run under the same -S.
    let o = labpipe(dir, &["report", "p.yaml", "-S", "train.epochs=2"]);
    let md = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        md.contains("### Run `baseline[train.epochs=2]`") && !md.contains("not run yet"),
        "{md}"
    );
    assert!(md.contains("Number of epochs: 2"), "{md}");
    let o = labpipe(
        dir,
        &["status", "p.yaml", "-S", "train.epochs=2", "--only", "base*"],
    );
    let s = stdout(&o);
    assert!(
        s.contains("t/baseline[train.epochs=2]: done") && s.contains("epochs 2/2"),
        "{s}"
    );
    assert!(!s.contains("t/baseline:"), "{s}");
    let o = labpipe(dir, &["status", "p.yaml"]);
    let s = stdout(&o);
    assert!(s.contains("t/baseline: done") && s.contains("epochs 1/1"), "{s}");
    let o = labpipe(dir, &["plan", "p.yaml", "-S", "train.epochs=2"]);
    let s = stdout(&o);
    assert!(
        s.contains("baseline[train.epochs=2]") && s.contains("everything is cached"),
        "{s}"
    );
    let o = labpipe(dir, &["eval", "p.yaml", "-S", "train.epochs=2", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = labpipe(
        dir,
        &["summary", "p.yaml", "-S", "train.epochs=2", "--run", "baseline"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // Without files, every record is reported, and `--only` picks among them.
    let o = labpipe(dir, &["status", "--only", "baseline[*"]);
    let s = stdout(&o);
    assert_eq!(s.lines().count(), 1, "{s}");
    let o = labpipe(dir, &["status", "-S", "train.epochs=2"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("`-S` needs the pipeline files"),
        "{}",
        stderr(&o)
    );

    // report reads results from --out like every command, and renders into --to.
    std::fs::rename(dir.join("out"), dir.join("res")).unwrap();
    let o = labpipe(dir, &["report", "p.yaml", "--out", "res", "--to", "rendered"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = std::fs::read_to_string(dir.join("rendered/report.md")).unwrap();
    assert!(
        md.contains("### Run `baseline`") && !md.contains("not run yet"),
        "{md}"
    );
    let o = labpipe(dir, &["report", "p.yaml", "--results", "res"]);
    assert_eq!(o.status.code(), Some(2), "the old flag is gone: {}", stderr(&o));
}

#[test]
fn names_that_would_leave_out_are_refused_with_their_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let work = dir.join("work");
    std::fs::create_dir(&work).unwrap();
    for name in ["../../escaped", "/tmp/labpipe-trust-escaped", "a/b"] {
        write(
            &work,
            "p.yaml",
            &pipeline(name).replace(&format!("name: {name}"), &format!("name: '{name}'")),
        );
        let o = labpipe(&work, &["run", "-q", "p.yaml"]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{name}: {err}");
        assert!(
            err.contains("the pipeline name") && err.contains("p.yaml:1:7"),
            "{name}: {err}"
        );
        assert!(err.contains("path separator `/`"), "{name}: {err}");
    }
    assert!(!work.join("out").exists(), "nothing was written");
    assert_eq!(files_under(dir), ["work/p.yaml"]);
    assert!(!std::path::Path::new("/tmp/labpipe-trust-escaped").exists());
}

#[test]
fn two_pipelines_with_one_name_in_one_call_are_refused_naming_both() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "a.yaml", &pipeline("same"));
    write(dir, "b.yaml", &format!("# a copy\n{}", pipeline("same")));
    let o = labpipe(dir, &["run", "-q", "a.yaml", "b.yaml"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("a.yaml:1") && err.contains("b.yaml:2"), "{err}");
    assert!(err.contains("runs/same/"), "{err}");
    assert!(!dir.join("out").exists());
    // The same file twice is one pipeline.
    let o = labpipe(dir, &["plan", "a.yaml", "a.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).matches("same (a.yaml)").count(), 1, "{}", stdout(&o));
}

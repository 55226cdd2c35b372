//! `status` lists matrix runs in the order the file lists their values, not in the order of their names.

use crate::util::binary::{labpipe, stderr, stdout};
use crate::util::files::write;
use crate::util::pipeline::linear_pipeline;

#[test]
fn status_lists_matrix_runs_in_the_files_order() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // As strings these sort 0.0001 < 0.001 < 0.01 < 0.1; the file says otherwise.
    write(
        dir,
        "p.yaml",
        &(linear_pipeline("o", 1)
            + "experiments:\n  lr:\n    matrix:\n      train.optimizer.lr: [0.1, 0.01, 0.001, 0.0001]\n"),
    );
    let want = ["lr[lr=0.1]", "lr[lr=0.01]", "lr[lr=0.001]", "lr[lr=0.0001]"];
    let runs_of = |text: &str| -> Vec<String> {
        text.lines()
            .map(|l| l.split(": ").next().unwrap().trim_start_matches("o/").to_string())
            .collect()
    };
    // Not run yet, then two of them run (the last first), then all: the file's order every time.
    let o = labpipe(dir, &["status", "p.yaml"]);
    assert_eq!(runs_of(&stdout(&o)), want);
    let o = labpipe(
        dir,
        &["run", "p.yaml", "-q", "--workers", "1", "--only", "*0.0001*"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = labpipe(
        dir,
        &["run", "p.yaml", "-q", "--workers", "1", "--only", "lr[lr=0.01]"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = labpipe(dir, &["status", "p.yaml"]);
    let text = stdout(&o);
    assert_eq!(runs_of(&text), want, "{text}");
    assert!(text.lines().nth(1).unwrap().contains(": done"), "{text}");
    assert!(text.lines().nth(2).unwrap().contains(": not run"), "{text}");
    // Without the file, from the records alone.
    let o = labpipe(dir, &["status"]);
    assert_eq!(runs_of(&stdout(&o)), ["lr[lr=0.01]", "lr[lr=0.0001]"]);
    let o = labpipe(dir, &["run", "p.yaml", "-q", "--workers", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = labpipe(dir, &["status"]);
    assert_eq!(runs_of(&stdout(&o)), want);
    let o = labpipe(dir, &["status", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let names: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run"].as_str().unwrap())
        .collect();
    assert_eq!(names, want);
}

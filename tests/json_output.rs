//! `run --json` (one JSON object per finished run, JSON lines, nothing else on stdout) and `plan --json`,
//! parsed as a script would.

use crate::util::binary::{labpipe, stderr, stdout};
use crate::util::files::write;
use crate::util::pipeline::linear_pipeline;
use serde_json::Value;

/// Every stdout line parsed as JSON (fails on any other line).
fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}")))
        .collect()
}

#[test]
fn run_json_prints_one_object_per_finished_run_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "p.yaml", &linear_pipeline("j", 2));
    let sweep = ["--sweep", "train.optimizer.lr=0.1,0.01"];
    let o = labpipe(
        dir,
        &[&["run", "p.yaml", "--json", "--workers", "1"][..], &sweep].concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // Progress stays on stderr.
    assert!(stderr(&o).contains("train"), "{}", stderr(&o));
    let runs = json_lines(&stdout(&o));
    assert_eq!(runs.len(), 2, "{}", stdout(&o));
    assert_eq!(runs[0]["run"], "baseline[lr=0.1]");
    assert_eq!(runs[1]["run"], "baseline[lr=0.01]");
    for r in &runs {
        assert_eq!(r["pipeline"], "j");
        assert_eq!(r["status"], "done");
        assert_eq!(r["cached"], false);
        assert_eq!(r["epochs"], 2);
        assert_eq!(r["max_epochs"], 2);
        assert!(r["failed_stage"].is_null() && r["message"].is_null(), "{r}");
        assert_eq!(r["id"].as_str().unwrap().len(), 12);
        let best = r["best_val_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&best), "{r}");
        assert!((1..=2).contains(&r["best_epoch"].as_u64().unwrap()), "{r}");
        assert!((0.0..=1.0).contains(&r["test_accuracy"].as_f64().unwrap()), "{r}");
        assert!(r["train_seconds"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["seconds"].as_f64().unwrap() > 0.0, "{r}");
    }

    // Again: the same runs, from the cache, and they say so.
    let o = labpipe(
        dir,
        &[&["run", "p.yaml", "--json", "--workers", "1"][..], &sweep].concat(),
    );
    let again = json_lines(&stdout(&o));
    assert_eq!(again.len(), 2);
    for (a, r) in again.iter().zip(&runs) {
        assert_eq!(a["status"], "cached");
        assert_eq!(a["cached"], true);
        assert_eq!(a["test_accuracy"], r["test_accuracy"]);
        assert_eq!(a["id"], r["id"]);
    }

    // --jobs: the parent prints one line per run; whether training was cached, only the children knew.
    let o = labpipe(
        dir,
        &[&["run", "p.yaml", "--json", "--jobs", "2"][..], &sweep].concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let mut by_jobs = json_lines(&stdout(&o));
    assert_eq!(by_jobs.len(), 2, "{}", stdout(&o));
    by_jobs.sort_by_key(|r| r["run"].as_str().unwrap().to_string());
    assert_eq!(by_jobs[0]["run"], "baseline[lr=0.01]");
    assert_eq!(by_jobs[0]["status"], "done");
    assert!(by_jobs[0]["cached"].is_null());

    // Slurm runs finish in the queue: refused, pointing at `status --json`.
    let o = labpipe(dir, &["run", "p.yaml", "--json", "--executor", "slurm"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("labpipe status --json"), "{}", stderr(&o));
}

#[test]
fn plan_json_lists_each_run_with_its_stages_keys_and_reasons() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "p.yaml", &linear_pipeline("j", 2));
    let o = labpipe(dir, &["plan", "p.yaml", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let plan: Value = serde_json::from_str(&stdout(&o)).expect("one JSON document");
    let runs = plan.as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let r = &runs[0];
    assert_eq!(r["pipeline"], "j");
    assert_eq!(r["file"], "p.yaml");
    assert_eq!(r["run"], "baseline");
    assert_eq!(r["images_to_train"], 2 * 80);
    assert!(r["macs_to_train"].as_u64().unwrap() > 0);
    let stages: Vec<&str> = r["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["dataset", "model", "train", "evaluate", "plot"]);
    for s in r["stages"].as_array().unwrap() {
        assert_eq!(s["state"], "will_run");
        assert_eq!(s["why"], "new run");
        assert_eq!(s["key"].as_str().unwrap().len(), 16);
    }
    // `run --dry-run --json` is the same document.
    let o2 = labpipe(dir, &["run", "p.yaml", "--dry-run", "--json"]);
    assert_eq!(stdout(&o2), stdout(&o));

    let o = labpipe(dir, &["run", "p.yaml", "-q", "--workers", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = labpipe(dir, &["plan", "p.yaml", "--json"]);
    let plan: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let r = &plan[0];
    assert_eq!(r["images_to_train"], 0);
    for s in r["stages"].as_array().unwrap() {
        assert_eq!(s["state"], "cached");
        assert!(s["why"].is_null());
    }
}

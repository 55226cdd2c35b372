//! Training behaviour through the real binary: divergence, early stopping, failure isolation, eval.

use crate::util::binary::{labpipe, stderr, stdout};
use crate::util::cache::stage_dirs;
use crate::util::files::read_json;
use std::path::{Path, PathBuf};

fn pipeline(train_extra: &str, experiments: &str) -> String {
    format!(
        "name: t
data:
  dataset: synthetic
  train_size: 200
  test_size: 60
  val_split: 40
  normalize: none
model:
  layers:
    - conv2d: {{out_channels: 8, kernel: 3, padding: 1}}
    - batch_norm2d
    - relu
    - max_pool2d: {{kernel: 4}}
    - flatten
    - linear: {{out_features: 10}}
train:
  batch_size: 50
  seed: 3
{train_extra}{experiments}"
    )
}

/// `file` in every entry of `stage` in `dir/out`'s cache that has one.
fn find(dir: &Path, stage: &str, file: &str) -> Vec<PathBuf> {
    let entries = dir.join("out/cache").join(stage);
    stage_dirs(&dir.join("out"), stage)
        .into_iter()
        .map(|d| entries.join(d).join(file))
        .filter(|p| p.is_file())
        .collect()
}

#[test]
fn divergence_is_reported_and_isolated_from_other_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let yaml = pipeline(
        "  epochs: 3\n  optimizer: {name: sgd, lr: 0.05}\n",
        "experiments:\n  sane: {}\n  absurd: {train.optimizer.lr: 1.0e+30}\n",
    );
    std::fs::write(dir.join("p.yaml"), yaml).unwrap();
    let o = labpipe(dir, &["run", "p.yaml"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("1 run(s) did not complete"), "{err}");
    assert!(
        err.contains("t / absurd: training diverged: the loss became"),
        "{err}"
    );
    assert!(err.contains("learning rate 1e30"), "{err}");
    assert!(err.contains("Try a learning rate"), "{err}");
    // The sane run completed, and the diverged run kept its artifacts and is marked.
    let outcomes: Vec<serde_json::Value> = find(dir, "train", "outcome.json")
        .iter()
        .map(|p| read_json(p))
        .collect();
    assert_eq!(outcomes.len(), 2);
    assert_eq!(outcomes.iter().filter(|o| !o["diverged"].is_null()).count(), 1);
    let record = read_json(&dir.join("out/runs/t/absurd.json"));
    assert!(record["status"]["diverged"].is_object(), "{record}");
    let status = labpipe(dir, &["status", "p.yaml"]);
    let out = stdout(&status);
    assert!(
        out.contains("t/absurd: diverged") && out.contains("t/sane: done"),
        "{out}"
    );
}

#[test]
fn early_stopping_stops_at_patience() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // min_delta of 1.0 means no epoch ever counts as an improvement after the first.
    let yaml = pipeline(
        "  epochs: 6\n  optimizer: {name: adam, lr: 0.01}\n  early_stopping: {metric: val_loss, patience: 2, min_delta: 1.0}\n",
        "",
    );
    std::fs::write(dir.join("p.yaml"), yaml).unwrap();
    let o = labpipe(dir, &["run", "p.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let outcome = read_json(&find(dir, "train", "outcome.json")[0]);
    assert_eq!(outcome["stopped_early_at"], 3, "{outcome}");
    assert_eq!(outcome["history"]["epochs"].as_array().unwrap().len(), 3);
    assert!(stderr(&o).contains("early stopping after epoch 3"));
}

#[test]
fn eval_reproduces_the_recorded_test_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("p.yaml"),
        pipeline("  epochs: 2\n  optimizer: {name: adam, lr: 0.01}\n", ""),
    )
    .unwrap();
    assert!(labpipe(dir, &["run", "p.yaml"]).status.success());
    let recorded = read_json(&find(dir, "evaluate", "metrics.json")[0]);
    let o = labpipe(dir, &["eval", "p.yaml", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["metrics"]["accuracy"], recorded["accuracy"]);
    assert_eq!(v["metrics"]["confusion"], recorded["confusion"]);
    let o = labpipe(dir, &["eval", "p.yaml"]);
    let text = stdout(&o);
    assert!(text.starts_with("Model loaded from out/cache/train/"), "{text}");
    assert!(
        text.contains(&format!(
            "Test accuracy: {:.3}",
            recorded["accuracy"].as_f64().unwrap()
        )),
        "{text}"
    );
    assert!(text.contains("confusion matrix"));
    // A given checkpoint that does not fit the model is a clear error.
    std::fs::write(dir.join("bad.safetensors"), b"junk").unwrap();
    let o = labpipe(dir, &["eval", "p.yaml", "--checkpoint", "bad.safetensors"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("bad.safetensors"), "{}", stderr(&o));
    let o = labpipe(dir, &["eval", "p.yaml", "--run", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("has no run `nope`"));
}

#[test]
fn same_pipeline_same_seed_same_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("p.yaml"),
        pipeline("  epochs: 2\n  optimizer: {name: adam, lr: 0.01}\n", ""),
    )
    .unwrap();
    assert!(labpipe(dir, &["run", "p.yaml", "--out", "a"]).status.success());
    assert!(
        labpipe(dir, &["run", "p.yaml", "--out", "b", "--workers", "3"])
            .status
            .success()
    );
    let weights = |out: &str| {
        let d = dir.join(out).join("cache/train");
        let k = std::fs::read_dir(&d)
            .unwrap()
            .flatten()
            .find(|e| e.path().is_dir())
            .unwrap()
            .path();
        std::fs::read(k.join("model.safetensors")).unwrap()
    };
    assert_eq!(
        weights("a"),
        weights("b"),
        "same seed, different worker count: identical weights"
    );
}

//! Stage keys change with everything that changes results and with nothing else, and `labpipe plan` says
//! why a stage will run in the words of the pipeline file.

use crate::util::binary::{labpipe, stderr, stdout};
use crate::util::files::write;
use crate::util::pipeline::pipeline;
use std::path::Path;

fn plan(dir: &Path, file: &str, set: &[&str]) -> String {
    let mut args = vec!["plan", file];
    for s in set {
        args.extend(["-S", s]);
    }
    let o = labpipe(dir, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
}

/// The `will run` reason plan prints for `stage`, or `cached`.
fn state<'a>(plan: &'a str, stage: &str) -> &'a str {
    plan.lines()
        .find_map(|l| l.trim_start().strip_prefix(stage))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {stage} line in:\n{plan}"))
}

/// The same pipeline as `pipeline("keys", 1, "")`, written differently: a header comment and blank lines
/// (every layer moves down), sections and keys in another order, flow maps as block maps, speed-only
/// settings, and defaults spelled out.
const REWRITTEN: &str = "# The same experiment, reformatted.

train:
  seed: 1
  scheduler:
    gamma: 0.5
    step_size: 1
    name: step
  optimizer: {lr: 0.01, name: adam}
  batch_size: 40
  epochs: 1
  eval_batch_size: 7   # speed only
  select: best_val_accuracy
  label_smoothing: 0.0
name: keys

model:
  layers:
    - conv2d: {padding: 1, kernel: 3, out_channels: 8}
    - batch_norm2d
    - relu
    - max_pool2d: {kernel: 4}
    - flatten
    - dropout: {p: 0.3}
    - linear: {out_features: 10}
data:
  augment:
    - random_crop: {padding: 4, size: 32}
    - random_horizontal_flip: {p: 0.5}
  workers: 1           # speed only
  normalize: first_image
  val_split: 40
  test_size: 60
  train_size: 240
  dataset: synthetic
";

#[test]
fn keys_ignore_formatting_and_speed_settings_and_follow_every_result_field() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "p.yaml", &pipeline("keys", 1, ""));
    let o = labpipe(dir, &["plan", "p.yaml"]);
    for stage in ["dataset", "model", "train", "evaluate", "plot"] {
        assert_eq!(state(&stdout(&o), stage), "will run: new run", "{}", stdout(&o));
    }
    let o = labpipe(dir, &["run", "p.yaml", "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));

    // Nothing that leaves results alone changes a key.
    write(dir, "rewritten.yaml", REWRITTEN);
    let p = plan(dir, "rewritten.yaml", &[]);
    assert!(p.contains("everything is cached: nothing to train"), "{p}");
    for set in ["data.workers=2", "train.eval_batch_size=13"] {
        let p = plan(dir, "p.yaml", &[set]);
        assert!(p.contains("everything is cached"), "{set}:\n{p}");
    }
    let o = labpipe(dir, &["run", "rewritten.yaml", "-S", "data.workers=2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("up to date, nothing ran"), "{}", stderr(&o));

    // Every field that changes results changes the key of the stage it feeds, and plan names it.
    let train_only: [(&str, &str); 6] = [
        (
            "train.optimizer.lr=0.02",
            "train.optimizer.lr changed from 0.01 to 0.02",
        ),
        ("train.epochs=2", "train.epochs changed from 1 to 2"),
        ("train.batch_size=20", "train.batch_size changed from 40 to 20"),
        (
            "train.scheduler.gamma=0.1",
            "train.scheduler.gamma changed from 0.5 to 0.1",
        ),
        (
            "train.scheduler={name: constant}",
            "train.scheduler.name changed from step to constant",
        ),
        (
            "data.augment=[]",
            "data.augment changed from [{\"random_crop\": {\"size\": 32, \"padding\": 4",
        ),
    ];
    for (set, why) in train_only {
        let p = plan(dir, "p.yaml", &[set]);
        assert_eq!(state(&p, "dataset"), "cached", "{set}:\n{p}");
        assert_eq!(state(&p, "model"), "cached", "{set}:\n{p}");
        assert!(
            state(&p, "train").starts_with(&format!("will run: {why}")),
            "{set}:\n{p}"
        );
        assert_eq!(
            state(&p, "evaluate"),
            "will run: upstream stage `train` will run",
            "{set}:\n{p}"
        );
        assert_eq!(
            state(&p, "plot"),
            "will run: upstream stage `train`, `evaluate` will run",
            "{set}:\n{p}"
        );
    }
    let p = plan(
        dir,
        "p.yaml",
        &["data.augment=[{random_horizontal_flip: {p: 0.2}}, {random_crop: {size: 32, padding: 4}}]"],
    );
    assert!(
        state(&p, "train").starts_with("will run: data.augment[0]"),
        "augment order matters:\n{p}"
    );

    let dataset_fields: [(&str, &str); 3] = [
        (
            "data.normalize=none",
            "data.normalize changed from first_image to none",
        ),
        ("data.val_split=50", "data.val_split changed from 40 to 50"),
        (
            "train.seed=2",
            "train.seed (it also draws the validation split) changed from 1 to 2",
        ),
    ];
    for (set, why) in dataset_fields {
        let p = plan(dir, "p.yaml", &[set]);
        assert_eq!(state(&p, "dataset"), format!("will run: {why}"), "{set}:\n{p}");
        assert_eq!(state(&p, "model"), "cached", "{set}:\n{p}");
        assert!(
            state(&p, "train").ends_with("upstream stage `dataset` will run"),
            "{set}:\n{p}"
        );
    }
    assert_eq!(
        state(&plan(dir, "p.yaml", &["train.seed=2"]), "train"),
        "will run: train.seed changed from 1 to 2; upstream stage `dataset` will run"
    );

    write(
        dir,
        "wider.yaml",
        &pipeline("keys", 1, "").replace("out_channels: 8", "out_channels: 16"),
    );
    let p = plan(dir, "wider.yaml", &[]);
    assert_eq!(state(&p, "dataset"), "cached", "{p}");
    assert_eq!(
        state(&p, "model"),
        "will run: model.layers[0].conv2d.out_channels changed from 8 to 16",
        "{p}"
    );
    assert_eq!(
        state(&p, "train"),
        "will run: upstream stage `model` will run",
        "{p}"
    );
    let p = plan(dir, "p.yaml", &["train.optimizer.lr=0.02", "train.epochs=2"]);
    assert_eq!(
        state(&p, "train"),
        "will run: train.epochs changed from 1 to 2; train.optimizer.lr changed from 0.01 to 0.02",
        "{p}"
    );
}

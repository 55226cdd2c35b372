//! End-to-end tests: the real `labpipe` binary on small generated pipelines, in temporary directories.

use crate::util::binary::{labpipe, stderr, stdout};
use crate::util::cache::stage_dirs;
use crate::util::files::{files_under, read_json, write};
use std::path::Path;

/// A small network so the suite stays fast in debug builds; SimpleCNN itself is exercised in `tiny_simple_cnn`.
const SMALL_MODEL: &str = "model:
  layers:
    - conv2d: {out_channels: 8, kernel: 3, padding: 1}
    - batch_norm2d
    - relu
    - max_pool2d: {kernel: 4}
    - flatten
    - linear: {out_features: 10}
";

fn pipeline(name: &str, model: &str, extra_train: &str) -> String {
    format!(
        "name: {name}
data:
  dataset: synthetic
  train_size: 200
  test_size: 60
  val_split: 40
  normalize: first_image
  augment:
    - random_crop: {{size: 32, padding: 4}}
    - random_horizontal_flip: {{p: 0.5}}
{model}train:
  epochs: 2
  batch_size: 50
  optimizer: {{name: adam, lr: 0.01}}
  scheduler: {{name: step, step_size: 1, gamma: 0.5}}
  seed: 1
{extra_train}"
    )
}

#[test]
fn tiny_pipeline_end_to_end_then_cached_then_lr_change() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "p.yaml", &pipeline("tiny", SMALL_MODEL, ""));
    let o = labpipe(dir, &["run", "p.yaml"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    for stage in ["dataset", "model", "train", "evaluate", "plot"] {
        assert!(
            err.contains(&format!("baseline: {stage:<9}ran in")),
            "{stage} did not run:\n{err}"
        );
    }

    // Every artifact, listed by its manifest, exists.
    let files = files_under(&dir.join("out"));
    for f in [
        "dataset.json",
        "split.json",
        "summary.json",
        "summary.txt",
        "diagram.png",
        "diagram.svg",
        "model.safetensors",
        "last.safetensors",
        "history.json",
        "history.csv",
        "outcome.json",
        "config.json",
        "metrics.json",
        "curves.png",
        "curves.svg",
        "confusion.png",
    ] {
        assert!(
            files.iter().any(|p| p.ends_with(f)),
            "missing artifact {f} in {files:#?}"
        );
    }
    assert!(files.iter().any(|p| p == "runs/tiny/baseline.json"));
    assert!(
        !files
            .iter()
            .any(|p| p.contains(".partial-") || p.contains(".tmp")),
        "half-written files: {files:#?}"
    );
    let train = dir.join("out/cache/train");
    let history = read_json(
        &train.join(
            files_under(&train)
                .into_iter()
                .find(|p| p.ends_with("history.json"))
                .unwrap(),
        ),
    );
    assert_eq!(history["epochs"].as_array().unwrap().len(), 2);
    assert_eq!(
        history["epochs"][1]["lr"].as_f64().unwrap(),
        0.005,
        "StepLR halves after epoch 1"
    );

    // The report: summary table, accuracy, a figure link that resolves.
    let o = labpipe(dir, &["report", "p.yaml"]);
    let (md, err) = (stdout(&o), stderr(&o));
    assert!(o.status.success(), "{err}");
    assert!(
        md.contains("Layer (type)") && md.contains("Total params: 5,370"),
        "{md}"
    );
    assert!(md.contains("Test accuracy: "), "{md}");
    let link = md
        .split("](")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("a figure link");
    assert!(dir.join(link).is_file(), "figure link {link} does not resolve");

    // A second identical run trains nothing.
    let o = labpipe(dir, &["run", "p.yaml"]);
    let err = stderr(&o);
    assert!(o.status.success());
    assert!(!err.contains("ran in"), "{err}");
    assert!(err.contains("up to date, nothing ran"), "{err}");

    // Changing the learning rate re-runs training but not the dataset stage.
    let datasets = stage_dirs(&dir.join("out"), "dataset");
    let o = labpipe(dir, &["run", "p.yaml", "-S", "train.optimizer.lr=0.02"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    // A run with overrides is its own run, named with them.
    assert!(
        err.contains("baseline[train.optimizer.lr=0.02]: dataset  cached"),
        "{err}"
    );
    assert!(
        err.contains("baseline[train.optimizer.lr=0.02]: model    cached"),
        "{err}"
    );
    assert!(
        err.contains("baseline[train.optimizer.lr=0.02]: train    ran in"),
        "{err}"
    );
    assert_eq!(stage_dirs(&dir.join("out"), "dataset"), datasets);
    assert_eq!(stage_dirs(&dir.join("out"), "train").len(), 2);
}

#[test]
fn tiny_simple_cnn_summary_matches_the_seed() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "p.yaml",
        &pipeline("t1", "model:\n  arch: simple_cnn\n", ""),
    );
    let o = labpipe(tmp.path(), &["summary", "p.yaml"]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(o.status.success(), "{err}");
    assert_eq!(out, include_str!("fixtures/summaries/simplecnn_summary.txt"));
}

#[test]
fn layers_copy_of_simple_cnn_prints_the_same_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let block = |c: u32| {
        format!(
            "    - conv2d: {{out_channels: {c}, kernel: 3, padding: 1}}\n    - batch_norm2d\n    - relu\n    - max_pool2d: {{kernel: 2}}\n"
        )
    };
    let model = format!(
        "model:\n  class_name: MyCNN\n  layers:\n{}{}{}    - dropout: {{p: 0.5}}\n    - view\n    - linear: {{out_features: 10}}\n",
        block(32),
        block(64),
        block(128)
    );
    write(tmp.path(), "p.yaml", &pipeline("mine", &model, ""));
    let o = labpipe(tmp.path(), &["summary", "p.yaml"]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(o.status.success(), "{err}");
    assert_eq!(out, include_str!("fixtures/summaries/simplecnn_summary.txt"));
    // With an nn.Flatten module instead of view, torchsummary lists it: one more row.
    write(
        tmp.path(),
        "f.yaml",
        &pipeline("mine", &model.replace("- view", "- flatten"), ""),
    );
    let out = stdout(&labpipe(tmp.path(), &["summary", "f.yaml"]));
    assert!(out.contains("Flatten-14") && out.contains("Linear-15"), "{out}");
}

fn assert_bad_input(dir: &Path, args: &[&str], needles: &[&str]) {
    let o = labpipe(dir, args);
    let err = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "expected exit 2 for {args:?}, stderr:\n{err}"
    );
    for n in needles {
        assert!(err.contains(n), "expected `{n}` in:\n{err}");
    }
    assert!(
        !dir.join("out").exists() || files_under(&dir.join("out")).is_empty(),
        "bad input wrote to out/"
    );
}

#[test]
fn bad_pipeline_files_exit_2_with_located_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    assert_bad_input(
        dir,
        &["run", "missing.yaml"],
        &[
            "cannot read pipeline file `missing.yaml`",
            "pipelines/quickstart.yaml",
        ],
    );

    let good = pipeline("bad", SMALL_MODEL, "");
    write(
        dir,
        "syntax.yaml",
        &good.replace(
            "optimizer: {name: adam, lr: 0.01}",
            "optimizer: {name: adam, lr: 0.01",
        ),
    );
    assert_bad_input(dir, &["run", "syntax.yaml"], &["syntax.yaml:"]);

    write(dir, "unknown.yaml", &good.replace("  seed: 1", "  sead: 1"));
    assert_bad_input(
        dir,
        &["run", "unknown.yaml"],
        &[
            "unknown field `sead`",
            "unknown.yaml:24:3",
            "did you mean `seed`?",
        ],
    );

    write(dir, "type.yaml", &good.replace("epochs: 2", "epochs: two"));
    assert_bad_input(dir, &["run", "type.yaml"], &["type.yaml:20:11"]);

    write(dir, "zero.yaml", &good.replace("epochs: 2", "epochs: 0"));
    assert_bad_input(
        dir,
        &["run", "zero.yaml"],
        &[
            "`train.epochs` must be at least 1",
            "zero.yaml:20:11",
            "20 |   epochs: 0",
        ],
    );

    write(dir, "shape.yaml", &good.replace("    - flatten\n", ""));
    assert_bad_input(
        dir,
        &["run", "shape.yaml"],
        &["add `flatten` before it", "shape.yaml:17:"],
    );

    write(dir, "ok.yaml", &good);
    assert_bad_input(
        dir,
        &["run", "ok.yaml", "-S", "train.optimiser.lr=1"],
        &["did you mean `train.optimizer.lr`?"],
    );
    assert_bad_input(
        dir,
        &["run", "ok.yaml", "--only", "nothing*"],
        &["no run of `ok.yaml` matches"],
    );
}

#[test]
fn missing_and_truncated_cifar_files_exit_1_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = dir.join("cifar");
    let ds = labpipe::data::synthetic::generate(30, 10);
    labpipe::data::cifar10::write_cifar10(&root, &ds, 10).unwrap();
    // Point the download at a closed port so a missing file can never be fetched.
    let yaml = pipeline("c", SMALL_MODEL, "").replace(
        "  dataset: synthetic\n  train_size: 200\n  test_size: 60\n  val_split: 40\n",
        "  dataset: cifar10\n  root: cifar\n  url: http://127.0.0.1:9/cifar.tar.gz\n  val_split: 10\n",
    );
    write(dir, "c.yaml", &yaml);

    let batch = root.join("cifar-10-batches-bin/data_batch_2.bin");
    let bytes = std::fs::read(&batch).unwrap();
    std::fs::write(&batch, &bytes[..bytes.len() - 100]).unwrap();
    let o = labpipe(dir, &["run", "c.yaml"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("data_batch_2.bin") && err.contains("multiple of 3073"),
        "{err}"
    );
    assert!(
        !files_under(&dir.join("out"))
            .iter()
            .any(|f| f.ends_with("split.json")),
        "no dataset artifacts on failure"
    );
    assert!(
        stage_dirs(&dir.join("out"), "dataset").is_empty(),
        "no half-built stage directory"
    );

    std::fs::remove_file(&batch).unwrap();
    let o = labpipe(dir, &["run", "c.yaml"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("data_batch_2.bin"), "{err}");
}

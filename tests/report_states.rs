//! A report always renders: diverged runs are shown as diverged, damaged stages as damaged with the command
//! that rebuilds them, in both templates; the pipeline's `report:` section and `description:` are used, and
//! the lab template describes the checkpoint policy the run used.

use crate::util::binary::{labpipe, stderr, stdout};
use crate::util::cache::complete_dir;
use crate::util::files::write;
use std::path::Path;

const LAB2: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/report_templates/lab2.md.j2");

fn pipeline(name: &str, model: &str, optimizer: &str, extra: &str) -> String {
    format!(
        "name: {name}
data: {{dataset: synthetic, train_size: 100, test_size: 20, val_split: 20, normalize: train_mean_std}}
model:
  layers:
{model}train:
  epochs: 2
  batch_size: 40
  optimizer: {optimizer}
{extra}"
    )
}

const LINEAR: &str = "    - flatten\n    - linear: {out_features: 10}\n";
const MLP: &str =
    "    - flatten\n    - linear: {out_features: 64}\n    - relu\n    - linear: {out_features: 10}\n";

fn report(dir: &Path, args: &[&str]) -> String {
    let o = labpipe(dir, &[&["report"], args].concat());
    assert!(o.status.success(), "report failed: {}", stderr(&o));
    stdout(&o)
}

#[test]
fn diverged_runs_render_as_diverged_in_both_templates() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // An exploding but finite loss (the divergence bound), and a loss that becomes NaN.
    write(
        dir,
        "big.yaml",
        &pipeline("big", LINEAR, "{name: adam, lr: 1e6}", ""),
    );
    write(
        dir,
        "nan.yaml",
        &pipeline("nan", MLP, "{name: sgd, lr: 1e30}", ""),
    );
    let o = labpipe(dir, &["run", "-q", "big.yaml", "nan.yaml"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("big / baseline: training diverged: epoch 1's mean training loss"),
        "{err}"
    );
    assert!(
        err.contains("nan / baseline: training diverged: the loss became NaN"),
        "{err}"
    );
    let s = stdout(&labpipe(dir, &["status", "big.yaml", "nan.yaml"]));
    assert_eq!(s.matches(": diverged |").count(), 2, "{s}");

    let md = report(dir, &["big.yaml", "nan.yaml"]);
    for p in ["big", "nan"] {
        let section = md.split(&format!("## Pipeline `{p}`")).nth(1).unwrap();
        assert!(section.contains("> **diverged** in epoch 1:"), "{p}:\n{section}");
        assert!(
            section.contains("Try a learning rate 3-10x smaller"),
            "{p}:\n{section}"
        );
        assert!(
            section.contains("the initial weights are kept"),
            "{p}:\n{section}"
        );
    }
    assert!(
        md.contains("(learning rate 1e6;") && md.contains("learning rate 1e30"),
        "{md}"
    );
    let md = report(dir, &["big.yaml", "nan.yaml", "--template", LAB2]);
    assert!(
        md.contains("Training diverged in epoch 1, before any epoch completed"),
        "{md}"
    );
    assert!(md.contains("> **diverged** in epoch 1:"), "{md}");
    assert!(!md.contains("not run yet"), "{md}");
}

#[test]
fn a_damaged_stage_renders_as_damaged_with_the_command_that_rebuilds_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(
        dir,
        "p.yaml",
        &pipeline("p", LINEAR, "{name: adam, lr: 0.01}", ""),
    );
    let o = labpipe(dir, &["run", "-q", "p.yaml", "-S", "train.epochs=1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let train = complete_dir(&dir.join("out"), "train");
    std::fs::remove_file(train.join("model.safetensors")).unwrap();

    for template in [None, Some(LAB2)] {
        let mut args = vec!["p.yaml", "-S", "train.epochs=1"];
        if let Some(t) = template {
            args.extend(["--template", t]);
        }
        let md = report(dir, &args);
        assert!(
            md.contains("**damaged**: re-run `labpipe run p.yaml --only baseline -S train.epochs=1`"),
            "{template:?}:\n{md}"
        );
        assert!(
            md.contains("train stage: artifact model.safetensors is missing"),
            "{template:?}:\n{md}"
        );
    }
    let s = stdout(&labpipe(dir, &["status", "p.yaml", "-S", "train.epochs=1"]));
    assert!(s.contains("train damaged"), "{s}");
    // The command it names rebuilds it.
    let o = labpipe(
        dir,
        &[
            "run",
            "-q",
            "p.yaml",
            "--only",
            "baseline",
            "-S",
            "train.epochs=1",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let md = report(dir, &["p.yaml", "-S", "train.epochs=1"]);
    assert!(
        !md.contains("damaged") && md.contains("Test accuracy: **"),
        "{md}"
    );
}

#[test]
fn the_report_section_description_and_checkpoint_policy_are_what_the_pipeline_says() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let extra = "  select: best_val_loss\ndescription: A linear model, for testing.\nreport:\n  title: My own lab\n  captions:\n    baseline: The linear model's curves\n";
    write(
        dir,
        "p.yaml",
        &pipeline("p", LINEAR, "{name: adam, lr: 0.01}", extra),
    );
    let o = labpipe(dir, &["run", "-q", "p.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));

    let md = report(dir, &["p.yaml", "--template", LAB2]);
    assert!(
        md.contains("### My own lab\n") && md.contains("*A linear model, for testing.*"),
        "{md}"
    );
    assert!(md.contains("Figure 1 The linear model's curves"), "{md}");
    assert!(
        md.contains("whenever the validation loss reached a new minimum"),
        "{md}"
    );
    assert!(
        !md.contains("whenever the validation accuracy reached a new best"),
        "{md}"
    );
    assert!(md.contains(", validation loss "), "{md}");
    let md = report(dir, &["p.yaml"]);
    assert!(
        md.contains("## My own lab\n\nA linear model, for testing."),
        "{md}"
    );
    assert!(md.contains("Figure 2 The linear model's curves"), "{md}");
    // Reported from the records alone, the pipeline file still gives its settings.
    let md = report(dir, &[]);
    assert!(md.contains("## My own lab"), "{md}");

    write(
        dir,
        "last.yaml",
        &pipeline("last", LINEAR, "{name: adam, lr: 0.01}", "  select: last\n"),
    );
    let o = labpipe(dir, &["run", "-q", "last.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = report(dir, &["last.yaml", "--template", LAB2]);
    assert!(
        md.contains("The weights after the last epoch trained are kept"),
        "{md}"
    );
    assert!(!md.contains("whenever the validation"), "{md}");
}

//! The default lab report rendered from a tiny task1/task2-shaped pair of pipelines, by the real binary.

use crate::util::binary::{labpipe, stderr, stdout};

const DATA: &str = "data:
  dataset: synthetic
  train_size: 120
  test_size: 40
  val_split: 20
  normalize: first_image
  augment:
    - random_crop: {size: 32, padding: 4}
    - random_horizontal_flip: {p: 0.5}
";

fn task1() -> String {
    format!(
        "name: task1\n{DATA}model:\n  layers:\n    - conv2d: {{out_channels: 4, kernel: 3, padding: 1}}\n    - batch_norm2d\n    - relu\n    - max_pool2d: {{kernel: 4}}\n    - flatten\n    - linear: {{out_features: 10}}\ntrain:\n  epochs: 2\n  batch_size: 40\n  optimizer: {{name: adam, lr: 0.01}}\n  seed: 0\n"
    )
}

fn task2() -> String {
    format!(
        "name: task2\n{DATA}model:\n  arch: resnet18\n  stem: cifar\n  width: 2\ntrain:\n  epochs: 2\n  batch_size: 40\n  optimizer: {{name: adam, lr: 0.001}}\n  scheduler: {{name: step, step_size: 1, gamma: 0.5}}\n  seed: 0\nexperiments:\n  baseline: {{}}\n  no_normalization: {{data.normalize: none}}\n  no_augmentation: {{data.augment: []}}\n  lr:\n    matrix:\n      train.optimizer.lr: [0.01, 0.001]\n      train.scheduler: [{{name: step, step_size: 1, gamma: 0.5}}, {{name: constant}}]\n"
    )
}

#[test]
fn lab_report_from_task_shaped_pipelines() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("task1.yaml"), task1()).unwrap();
    std::fs::write(dir.join("task2.yaml"), task2()).unwrap();

    // Before any run: every result is marked, with a warning, and nothing crashes.
    let o = labpipe(dir, &["report", "task1.yaml", "task2.yaml"]);
    let (md, err) = (stdout(&o), stderr(&o));
    assert!(o.status.success(), "{err}");
    assert!(
        md.contains("**not run yet**") && err.contains("warning: task2/baseline: not run yet"),
        "{md}\n{err}"
    );

    let o = labpipe(dir, &["run", "-q", "task1.yaml", "task2.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));

    let render = |out: &str| {
        let o = labpipe(dir, &["report", "task1.yaml", "task2.yaml", "--to", out]);
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::read_to_string(dir.join(out).join("report.md")).unwrap()
    };
    let md = render("rep");
    for section in [
        "### Task 1",
        "(1) Print model summary",
        "(2) Print test accuracy",
        "(3) Describe how",
        "## Task 2",
        "(4)",
        "(5)",
        "(6)",
        "(7) Experiment",
        "(8) What challenges",
    ] {
        assert!(md.contains(section), "missing {section}:\n{md}");
    }
    assert!(!md.contains("not run yet"), "{md}");
    assert!(
        md.contains("Model loaded from") && md.contains("Test loss: "),
        "{md}"
    );
    assert!(
        md.contains("Figure 1 ") && md.contains("Figure 2 ResNet-18 baseline"),
        "{md}"
    );
    // Figures 1..7: task1, baseline, two variants, three non-baseline learning-rate runs.
    assert!(md.contains("Figure 7 ") && !md.contains("Figure 8 "), "{md}");
    assert!(
        !md.contains("(figure ?"),
        "a table refers to a figure never shown:\n{md}"
    );
    // Every table row is filled: no empty cells.
    for line in md
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|--") && !l.starts_with("|  |"))
    {
        assert!(
            !line.contains("|  |") && !line.contains("| |"),
            "empty cell in `{line}`"
        );
    }
    // Every image link resolves.
    for link in md.split("](").skip(1).filter_map(|s| s.split(')').next()) {
        assert!(
            dir.join("rep").join(link).is_file(),
            "link {link} does not resolve"
        );
    }
    // Deterministic: a second rendering is byte-identical, figures included; --check agrees.
    let figs = |d: &str| {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.join(d).join("figures"))
            .unwrap()
            .flatten()
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let md2 = render("rep2");
    assert_eq!(md, md2);
    assert_eq!(figs("rep"), figs("rep2"));
    let o = labpipe(
        dir,
        &[
            "report",
            "task1.yaml",
            "task2.yaml",
            "--to",
            "rep",
            "--check",
            "rep/report.md",
        ],
    );
    assert!(o.status.success());
    std::fs::write(dir.join("rep/report.md"), md.replace("Figure 2", "Figure 3")).unwrap();
    let o = labpipe(
        dir,
        &[
            "report",
            "task1.yaml",
            "task2.yaml",
            "--to",
            "rep",
            "--check",
            "rep/report.md",
        ],
    );
    assert_eq!(o.status.code(), Some(1));

    // HTML: one file, figures inlined.
    let o = labpipe(
        dir,
        &[
            "report",
            "task1.yaml",
            "task2.yaml",
            "--to",
            "html",
            "--format",
            "html",
        ],
    );
    assert!(o.status.success());
    let html = std::fs::read_to_string(dir.join("html/report.html")).unwrap();
    assert!(html.contains("data:image/png;base64,") && html.contains("<table>"));
}

#[test]
fn template_errors_name_the_template_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("task1.yaml"), task1()).unwrap();
    std::fs::write(dir.join("bad.md.j2"), "ok\n{{ pipelines.task1.nothing }}\n").unwrap();
    let o = labpipe(dir, &["report", "task1.yaml", "--template", "bad.md.j2"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("template `bad.md.j2` line 2"), "{err}");
}

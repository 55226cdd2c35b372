//! `labpipe init`: the starter pipeline runs as written, nothing is overwritten, templates only when asked.

use crate::util::binary::{labpipe, stderr, stdout};

#[test]
fn the_starter_pipeline_runs_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = labpipe(dir.path(), &["init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(dir.path().join("pipeline.yaml")).unwrap();
    assert!(text.starts_with("# yaml-language-server: $schema="), "{text}");
    assert!(
        text.contains("dataset: synthetic") && text.contains("arch: simple_cnn"),
        "{text}"
    );
    assert!(!dir.path().join("report_templates").exists());
    let schema = std::fs::read_to_string(dir.path().join("labpipe.schema.json")).unwrap();
    assert_eq!(schema, stdout(&labpipe(dir.path(), &["schema"])));

    let run = labpipe(dir.path(), &["run", "pipeline.yaml", "--quiet"]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(dir.path().join("out/runs/starter/baseline.json").exists());
}

#[test]
fn init_writes_the_chosen_dataset_and_model_and_templates_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let out = labpipe(
        dir.path(),
        &[
            "init",
            "lab",
            "--dataset",
            "mnist",
            "--model",
            "lenet5",
            "--templates",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(dir.path().join("lab/pipeline.yaml")).unwrap();
    assert!(
        text.contains("dataset: mnist") && text.contains("class_name: LeNet5"),
        "{text}"
    );
    // 28×28 digits: LeNet-5 pads its first convolution to reach the 5×5 maps of the 32×32 original.
    assert!(
        text.contains("{out_channels: 6, kernel: 5, padding: 2}"),
        "{text}"
    );
    for name in ["lab2.md.j2", "report.md.j2"] {
        let copied = std::fs::read_to_string(dir.path().join("lab/report_templates").join(name)).unwrap();
        let shipped = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("report_templates")
                .join(name),
        )
        .unwrap();
        assert_eq!(copied, shipped, "{name}");
    }
}

#[test]
fn init_refuses_to_overwrite_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pipeline.yaml"), "mine\n").unwrap();
    let out = labpipe(dir.path(), &["init", "."]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("pipeline.yaml") && err.contains("already exists"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("pipeline.yaml")).unwrap(),
        "mine\n"
    );

    // An existing template is refused before anything is written.
    let other = tempfile::tempdir().unwrap();
    std::fs::create_dir(other.path().join("report_templates")).unwrap();
    std::fs::write(other.path().join("report_templates/report.md.j2"), "x").unwrap();
    let out = labpipe(other.path(), &["init", "--templates"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("report.md.j2"), "{}", stderr(&out));
    assert!(!other.path().join("pipeline.yaml").exists());
}

#[test]
fn init_rejects_an_unknown_dataset_listing_the_choices() {
    let dir = tempfile::tempdir().unwrap();
    let out = labpipe(dir.path(), &["init", "--dataset", "imagenet"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("imagenet") && err.contains("fashion_mnist"), "{err}");
    assert!(!dir.path().join("pipeline.yaml").exists());
}

#[test]
fn init_into_a_path_that_is_a_file_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("taken"), "a file\n").unwrap();
    let out = labpipe(dir.path(), &["init", "taken"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("taken"), "{}", stderr(&out));
}

//! End to end through the public API: the seed's two models give the seed report's text and a diagram.

use labpipe::model::builtins::{Stem, resnet18, simple_cnn};
use labpipe::summary::diagram::draw_diagram;
use labpipe::summary::{render_seed_text, summarize};

use crate::util::binary::{labpipe, stderr, stdout};

#[test]
fn seed_models_print_the_seed_report_text() {
    let cases = [
        (
            simple_cnn(10, 0.5),
            include_str!("fixtures/summaries/simplecnn_summary.txt"),
        ),
        (
            resnet18(10, Stem::Imagenet, 64),
            include_str!("fixtures/summaries/resnet18_summary.txt"),
        ),
    ];
    for (decl, expected) in cases {
        let s = summarize(&decl).expect("built-in models are valid");
        assert_eq!(render_seed_text(&s), expected, "{}", decl.class_name);
    }
}

#[test]
fn diagram_files_are_written_next_to_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let decl = resnet18(10, Stem::Cifar, 8);
    let s = summarize(&decl).unwrap();
    let (svg, png) = (dir.path().join("fig/model.svg"), dir.path().join("fig/model.png"));
    draw_diagram(&decl, &s, &svg, &png).unwrap();
    assert!(std::fs::metadata(&svg).unwrap().len() > 1000);
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(std::fs::read_dir(dir.path().join("fig")).unwrap().count(), 2);
}

/// `labpipe summary` on the shipped MNIST pipelines prints torchsummary's and thop's text for 1×28×28 input,
/// from an empty folder: the input shape is the dataset's, known without its files.
#[test]
fn mnist_pipelines_print_pytorchs_summary_without_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (pipeline, expected) in [
        (
            "pipelines/mnist.yaml",
            include_str!("fixtures/summaries/lenet5_mnist_summary.txt"),
        ),
        (
            "pipelines/fashion_mnist.yaml",
            include_str!("fixtures/summaries/simplecnn_mnist_summary.txt"),
        ),
    ] {
        let path = root.join(pipeline);
        let out = labpipe(dir.path(), &["summary", path.to_str().unwrap()]);
        assert!(out.status.success(), "{pipeline}: {}", stderr(&out));
        assert_eq!(stdout(&out), expected, "{pipeline}");
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "summary wrote nothing"
    );
}

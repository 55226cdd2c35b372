//! Trust item 8: CIFAR-10 files with fewer records than the official 10 000 are used as they are, with a
//! warning and their counts in dataset.json; asking for more images than they hold is an error naming the
//! sizes.

use crate::util::binary::{labpipe, stderr};
use crate::util::datasets::{cache_entries, pipeline};
use crate::util::files::read_json;
use labpipe::data::cifar10::write_cifar10;
use std::fs;

fn short_cifar10(root: &std::path::Path) {
    // 35 training images at 7 per file, 7 test images.
    let ds = labpipe::data::synthetic::generate(35, 7);
    write_cifar10(root, &ds, 7).unwrap();
}

#[test]
fn asking_for_more_images_than_the_files_hold_is_an_error_naming_the_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    short_cifar10(&tmp.path().join("c10"));
    let data = "  dataset: cifar10\n  root: c10\n  train_size: 1000\n  test_size: 300\n  val_split: 5\n";
    fs::write(tmp.path().join("p.yaml"), pipeline("short", data, 10)).unwrap();
    let out = labpipe(tmp.path(), &["run", "p.yaml"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("`data.train_size: 1000` asks for 1000 training images"),
        "{err}"
    );
    assert!(
        err.contains("the CIFAR-10 (c10) files hold 35 (data_batch_1.bin: 7,"),
        "{err}"
    );
    assert!(err.contains("test_batch.bin: 7)"), "{err}");
    assert!(cache_entries(&tmp.path().join("out"), "dataset").is_empty());
    // The test set alone too.
    let data = "  dataset: cifar10\n  root: c10\n  test_size: 300\n  val_split: 5\n";
    fs::write(tmp.path().join("p.yaml"), pipeline("short", data, 10)).unwrap();
    let err = stderr(&labpipe(tmp.path(), &["run", "p.yaml"]));
    assert!(
        err.contains("`data.test_size: 300` asks for 300 test images") && err.contains("hold 7"),
        "{err}"
    );
}

#[test]
fn short_files_are_used_said_so_and_counted_in_dataset_json() {
    let tmp = tempfile::tempdir().unwrap();
    short_cifar10(&tmp.path().join("c10"));
    let data = "  dataset: cifar10\n  root: c10\n  val_split: 5\n";
    fs::write(tmp.path().join("p.yaml"), pipeline("short", data, 10)).unwrap();
    let out = labpipe(tmp.path(), &["run", "p.yaml"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning: CIFAR-10 files are not the official ones, used as they are"),
        "{err}"
    );
    assert!(
        err.contains("data_batch_1.bin: 7 images (the official file has 10000)"),
        "{err}"
    );
    let dir = crate::util::cache::complete_dir(&tmp.path().join("out"), "dataset");
    let info = read_json(&dir.join("dataset.json"));
    assert_eq!(info["train_images"], 30);
    assert_eq!(info["test_images"], 7);
    let files = info["files"].as_array().unwrap();
    assert_eq!(files.len(), 6);
    assert_eq!(
        files[5],
        serde_json::json!({"file": "test_batch.bin", "records": 7, "official": 10000})
    );
}

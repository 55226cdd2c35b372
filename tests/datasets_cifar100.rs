//! CIFAR-100 end to end: generated binary files trained through the real binary, the archive downloaded from
//! a local server, `labels: fine | coarse`, and the look-alike archives (CIFAR-10 for CIFAR-100 and back).

use crate::util::binary::{labpipe, stderr};
use crate::util::datasets::{cache_entries, cifar100_files, pipeline, tar_gz, write_files};
use crate::util::files::read_json;
use crate::util::http_server::{Mode, TestServer};
use std::fs;

const ARCHIVE: &str = "/cifar-100-binary.tar.gz";

fn data(root: &str, extra: &str) -> String {
    format!("  dataset: cifar100\n  root: {root}\n  val_split: 4\n{extra}")
}

/// Serves `files` as the archive (in `mode`) and runs a CIFAR-100 pipeline whose `url` and `md5` name it.
fn served_run(
    files: &[(String, Vec<u8>)],
    mode: Mode,
) -> (TestServer, tempfile::TempDir, std::process::Output) {
    let archive = tar_gz(files);
    let md5 = format!("{:x}", md5::compute(&archive));
    let server = TestServer::start(vec![(ARCHIVE, archive)], mode);
    let tmp = tempfile::tempdir().unwrap();
    let extra = format!("  url: {}\n  md5: {md5}\n", server.url(ARCHIVE));
    fs::write(
        tmp.path().join("p.yaml"),
        pipeline("dl", &data("c100", &extra), 100),
    )
    .unwrap();
    let out = labpipe(tmp.path(), &["run", "p.yaml"]);
    (server, tmp, out)
}

fn dataset_json(out: &std::path::Path) -> serde_json::Value {
    read_json(&crate::util::cache::complete_dir(out, "dataset").join("dataset.json"))
}

#[test]
fn fine_labels_train_and_name_the_classes() {
    let tmp = tempfile::tempdir().unwrap();
    write_files(&tmp.path().join("c100"), &cifar100_files(40, 12));
    fs::write(
        tmp.path().join("p.yaml"),
        pipeline("c100", &data("c100", ""), 100),
    )
    .unwrap();
    let out = labpipe(tmp.path(), &["run", "p.yaml"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let info = dataset_json(&tmp.path().join("out"));
    assert_eq!(info["name"], "CIFAR-100 (fine)");
    assert_eq!(info["class_names"].as_array().unwrap().len(), 100);
    assert_eq!(info["class_names"][42], "fine_42");
    assert_eq!(info["train_images"], 36);
    assert_eq!(info["test_images"], 12);
    // Files of 40 and 12 records are not the official 50 000 and 10 000: used, said so, and recorded.
    assert!(
        err.contains("warning: CIFAR-100 (fine) files are not the official ones"),
        "{err}"
    );
    assert!(
        err.contains("train.bin: 40 images (the official file has 50000)"),
        "{err}"
    );
    assert_eq!(info["files"][0]["records"], 40);
    assert_eq!(info["files"][1]["official"], 10000);
}

#[test]
fn coarse_labels_have_twenty_classes_and_a_key_of_their_own() {
    let tmp = tempfile::tempdir().unwrap();
    write_files(&tmp.path().join("c100"), &cifar100_files(40, 12));
    let yaml = pipeline("c100", &data("c100", "  labels: coarse\n"), 20);
    fs::write(tmp.path().join("p.yaml"), yaml).unwrap();
    let out = labpipe(tmp.path(), &["run", "p.yaml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info = dataset_json(&tmp.path().join("out"));
    assert_eq!(info["name"], "CIFAR-100 (coarse)");
    assert_eq!(info["class_names"].as_array().unwrap().len(), 20);
    assert_eq!(info["class_names"][19], "coarse_19");
    // Fine labels are another dataset entry: `labels` is part of the key.
    let yaml = pipeline("c100", &data("c100", ""), 100);
    fs::write(tmp.path().join("p.yaml"), yaml).unwrap();
    let out = labpipe(tmp.path(), &["run", "p.yaml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(cache_entries(&tmp.path().join("out"), "dataset").len(), 2);
}

#[test]
fn the_archive_is_downloaded_from_a_mirror_checked_and_unpacked() {
    let (server, tmp, out) = served_run(&cifar100_files(30, 10), Mode::DropFirst);
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = tmp.path().join("c100/cifar-100-binary");
    for f in [
        "train.bin",
        "test.bin",
        "fine_label_names.txt",
        "coarse_label_names.txt",
    ] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    // The first transfer broke off half way and was resumed.
    assert!(
        server.seen().iter().any(|s| s.range_start.is_some()),
        "{:?}",
        server.seen()
    );
    assert!(!tmp.path().join("c100/.download").exists());
}

#[test]
fn a_cifar10_archive_given_as_cifar100_is_named() {
    // An archive holding cifar-10-batches-bin/ served where CIFAR-100 is expected (the user's md5 accepts it).
    let files = vec![(
        "cifar-10-batches-bin/data_batch_1.bin".to_string(),
        vec![0u8; 3073],
    )];
    let (_server, tmp, out) = served_run(&files, Mode::Full);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("holds the CIFAR-10 binary dataset, not CIFAR-100"),
        "{err}"
    );
    assert!(err.contains("dataset: cifar10"), "{err}");
    assert!(!tmp.path().join("c100/cifar-100-binary").exists());
    assert!(cache_entries(&tmp.path().join("out"), "dataset").is_empty());
}

#[test]
fn a_cifar100_archive_given_as_cifar10_is_named() {
    let archive = tar_gz(&cifar100_files(3, 2));
    let md5 = format!("{:x}", md5::compute(&archive));
    let server = TestServer::start(vec![("/c.tar.gz", archive)], Mode::Full);
    let tmp = tempfile::tempdir().unwrap();
    let data = format!(
        "  dataset: cifar10\n  root: c10\n  val_split: 1\n  url: {}\n  md5: {md5}\n",
        server.url("/c.tar.gz")
    );
    fs::write(tmp.path().join("p.yaml"), pipeline("dl", &data, 10)).unwrap();
    let out = labpipe(tmp.path(), &["run", "p.yaml"]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("holds the CIFAR-100 binary dataset, not CIFAR-10"),
        "{err}"
    );
    assert!(err.contains("dataset: cifar100"), "{err}");
    assert!(!tmp.path().join("c10/cifar-10-batches-bin").exists());
    // And unpacked CIFAR-100 files under a CIFAR-10 root are named the same way, before any download.
    write_files(&tmp.path().join("c10"), &cifar100_files(3, 2));
    let data = "  dataset: cifar10\n  root: c10\n  val_split: 1\n";
    fs::write(tmp.path().join("q.yaml"), pipeline("x", data, 10)).unwrap();
    let err = stderr(&labpipe(tmp.path(), &["run", "q.yaml"]));
    assert!(
        err.contains("c10/cifar-100-binary holds the CIFAR-100 binary dataset"),
        "{err}"
    );
    assert!(cache_entries(&tmp.path().join("out"), "dataset").is_empty());
}

#[test]
fn asking_for_more_images_than_the_files_hold_names_the_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    write_files(&tmp.path().join("c100"), &cifar100_files(20, 5));
    let yaml = pipeline("c100", &data("c100", "  train_size: 1000\n"), 100);
    fs::write(tmp.path().join("p.yaml"), yaml).unwrap();
    let out = labpipe(tmp.path(), &["run", "p.yaml"]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("`data.train_size: 1000` asks for 1000 training images"),
        "{err}"
    );
    assert!(err.contains("hold 20 (train.bin: 20, test.bin: 5)"), "{err}");
    assert!(cache_entries(&tmp.path().join("out"), "dataset").is_empty());
}

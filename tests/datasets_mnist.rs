//! MNIST and Fashion-MNIST end to end: generated IDX files (gzip) trained through the real binary, the four
//! files downloaded from local mirrors (the first one dead, a transfer broken off and resumed), and every bad
//! IDX file named in the error with nothing cached.

use crate::util::binary::{labpipe, stderr};
use crate::util::datasets::{cache_entries, gz, idx_labels, mnist_files, pipeline, write_mnist};
use crate::util::files::{files_under, read_json};
use crate::util::http_server::{Mode, TestServer, dead_url};
use labpipe::data::idx::{self, IdxDataset, Resource};
use std::fs;
use std::path::Path;

fn data(dataset: &str, extra: &str) -> String {
    format!("  dataset: {dataset}\n  root: digits\n  val_split: 4\n{extra}")
}

fn run(dir: &Path, dataset: &str) -> std::process::Output {
    fs::write(dir.join("p.yaml"), pipeline("digits", &data(dataset, ""), 10)).unwrap();
    labpipe(dir, &["run", "p.yaml"])
}

#[test]
fn mnist_trains_one_epoch_and_records_its_shape_and_digits() {
    let tmp = tempfile::tempdir().unwrap();
    write_mnist(&tmp.path().join("digits"), 40, 12);
    let out = run(tmp.path(), "mnist");
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let info =
        read_json(&crate::util::cache::complete_dir(&tmp.path().join("out"), "dataset").join("dataset.json"));
    assert_eq!(info["name"], "MNIST");
    assert_eq!(
        info["shape"],
        serde_json::json!({"channels": 1, "height": 28, "width": 28})
    );
    assert_eq!(info["class_names"][7], "7");
    assert_eq!(info["train_images"], 36);
    assert_eq!(info["files"][0]["records"], 40);
    assert!(
        err.contains("train-images-idx3-ubyte.gz: 40 images (the official file has 60000)"),
        "{err}"
    );
}

#[test]
fn fashion_mnist_has_its_official_class_names() {
    let tmp = tempfile::tempdir().unwrap();
    write_mnist(&tmp.path().join("digits"), 40, 12);
    let out = run(tmp.path(), "fashion_mnist");
    assert!(out.status.success(), "{}", stderr(&out));
    let info =
        read_json(&crate::util::cache::complete_dir(&tmp.path().join("out"), "dataset").join("dataset.json"));
    assert_eq!(info["name"], "Fashion-MNIST");
    assert_eq!(info["class_names"][0], "T-shirt/top");
    assert_eq!(info["class_names"][9], "Ankle boot");
}

#[test]
fn the_four_files_come_from_the_first_mirror_that_answers_checked_and_resumed() {
    let files = mnist_files(20, 10, 3);
    let served: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|(n, b)| (format!("/m/{n}"), b.clone()))
        .collect();
    let server = TestServer::start(
        served.iter().map(|(p, b)| (p.as_str(), b.clone())).collect(),
        Mode::DropFirst,
    );
    let resources: Vec<Resource> = files
        .iter()
        .map(|(name, bytes)| Resource {
            name,
            md5: format!("{:x}", md5::compute(bytes)),
            size: bytes.len() as u64,
        })
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("mnist");
    let mirrors = vec![dead_url("/m/"), server.url("/m/")];
    idx::ensure_files(&root, IdxDataset::Mnist, &resources, &mirrors, false).unwrap();
    assert!(idx::present(&root));
    let d = idx::read(&root, IdxDataset::Mnist).unwrap();
    assert_eq!((d.train.labels.len(), d.test.labels.len()), (20, 10));
    assert!(
        server.seen().iter().any(|s| s.range_start.is_some()),
        "{:?}",
        server.seen()
    );
    assert!(!root.join(".download").exists());
    // Everything there: nothing is asked again.
    let before = server.seen().len();
    idx::ensure_files(&root, IdxDataset::Mnist, &resources, &mirrors, false).unwrap();
    assert_eq!(server.seen().len(), before);
}

#[test]
fn a_mirror_serving_other_files_is_named_and_nothing_is_kept() {
    let files = mnist_files(20, 10, 3);
    let served: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|(n, b)| (format!("/m/{n}"), b.clone()))
        .collect();
    let server = TestServer::start(
        served.iter().map(|(p, b)| (p.as_str(), b.clone())).collect(),
        Mode::Full,
    );
    let tmp = tempfile::tempdir().unwrap();
    let extra = format!("  url: {}\n", server.url("/m/"));
    fs::write(
        tmp.path().join("p.yaml"),
        pipeline("d", &data("mnist", &extra), 10),
    )
    .unwrap();
    let out = labpipe(tmp.path(), &["run", "p.yaml"]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("train-images-idx3-ubyte.gz is 9912422 bytes"),
        "{err}"
    );
    assert!(
        !err.contains("data.md5"),
        "MNIST's files have fixed checksums: {err}"
    );
    assert!(
        files_under(&tmp.path().join("digits")).is_empty(),
        "{:?}",
        files_under(&tmp.path().join("digits"))
    );
    assert!(cache_entries(&tmp.path().join("out"), "dataset").is_empty());
}

#[test]
fn no_mirror_answering_names_the_files_to_place_by_hand() {
    let tmp = tempfile::tempdir().unwrap();
    let extra = format!("  url: {}\n", dead_url("/m/"));
    fs::write(
        tmp.path().join("p.yaml"),
        pipeline("d", &data("mnist", &extra), 10),
    )
    .unwrap();
    let err = stderr(&labpipe(tmp.path(), &["run", "p.yaml"]));
    assert!(
        err.contains("train-images-idx3-ubyte.gz") && err.contains("t10k-labels-idx1-ubyte.gz"),
        "{err}"
    );
    assert!(err.contains("To install MNIST by hand"), "{err}");
}

/// Replaces one of the four files with `bytes` (gzipped) and returns the run's stderr.
fn broken(name: &str, bytes: &[u8]) -> (String, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("digits");
    write_mnist(&root, 20, 10);
    fs::write(root.join(name), gz(bytes)).unwrap();
    let out = run(tmp.path(), "mnist");
    assert!(!out.status.success());
    assert!(
        cache_entries(&tmp.path().join("out"), "dataset").is_empty(),
        "nothing cached"
    );
    (stderr(&out), tmp)
}

#[test]
fn every_bad_idx_file_is_named() {
    let labels: Vec<u8> = (0..10).collect();
    // Truncated image file.
    let mut images = crate::util::datasets::idx_images(&mut labpipe::rng::Rng::new(1), &labels);
    images.truncate(images.len() - 100);
    let (err, _t) = broken("t10k-images-idx3-ubyte.gz", &images);
    assert!(err.contains("t10k-images-idx3-ubyte.gz is truncated"), "{err}");
    // Wrong magic: a label file where the images belong.
    let (err, _t) = broken("t10k-images-idx3-ubyte.gz", &idx_labels(&labels));
    assert!(
        err.contains("t10k-images-idx3-ubyte.gz is not an IDX image file"),
        "{err}"
    );
    // Label count differs from the image count.
    let (err, _t) = broken("t10k-labels-idx1-ubyte.gz", &idx_labels(&labels[..7]));
    assert!(
        err.contains("holds 10 images but") && err.contains("t10k-labels-idx1-ubyte.gz holds 7 labels"),
        "{err}"
    );
    // A label beyond the ten classes.
    let mut bad = labels.clone();
    bad[4] = 12;
    let (err, _t) = broken("t10k-labels-idx1-ubyte.gz", &idx_labels(&bad));
    assert!(
        err.contains("t10k-labels-idx1-ubyte.gz record 4 (0-based) has label 12, expected 0..=9"),
        "{err}"
    );
    // A missing file, with no mirror to get it from.
    let tmp = tempfile::tempdir().unwrap();
    write_mnist(&tmp.path().join("digits"), 20, 10);
    fs::remove_file(tmp.path().join("digits/train-labels-idx1-ubyte.gz")).unwrap();
    let extra = format!("  url: {}\n", dead_url("/m/"));
    fs::write(
        tmp.path().join("p.yaml"),
        pipeline("d", &data("mnist", &extra), 10),
    )
    .unwrap();
    let err = stderr(&labpipe(tmp.path(), &["run", "p.yaml"]));
    assert!(err.contains("train-labels-idx1-ubyte.gz"), "{err}");
    assert!(cache_entries(&tmp.path().join("out"), "dataset").is_empty());
}

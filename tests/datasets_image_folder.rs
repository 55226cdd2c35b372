//! image_folder end to end: a folder of PNGs trained through the real binary (train/test folders, or one
//! folder with `test_split`), resized and converted, and every bad folder named in the error with nothing
//! cached.

use crate::util::binary::{labpipe, stderr};
use crate::util::datasets::{cache_entries, pipeline, write_image_folder, write_png};
use crate::util::files::read_json;
use labpipe::rng::Rng;
use std::fs;
use std::path::Path;

fn data(extra: &str) -> String {
    format!("  dataset: image_folder\n  root: pics\n  val_split: 2\n{extra}")
}

fn run(dir: &Path, extra: &str, classes: usize) -> std::process::Output {
    fs::write(dir.join("p.yaml"), pipeline("pics", &data(extra), classes)).unwrap();
    labpipe(dir, &["run", "p.yaml"])
}

fn info(dir: &Path) -> serde_json::Value {
    read_json(&crate::util::cache::complete_dir(&dir.join("out"), "dataset").join("dataset.json"))
}

#[test]
fn a_folder_of_pngs_trains_with_its_folder_names_as_classes() {
    let tmp = tempfile::tempdir().unwrap();
    write_image_folder(&tmp.path().join("pics"), &["cat", "dog", "emu"], 6, 32, 32, true);
    // What torchvision would trip over or pass by: counted and said.
    fs::write(tmp.path().join("pics/train/cat/.DS_Store"), b"x").unwrap();
    fs::write(tmp.path().join("pics/train/dog/notes.txt"), b"x").unwrap();
    fs::write(tmp.path().join("pics/train/README"), b"x").unwrap();
    let out = run(tmp.path(), "", 3);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(
            "skipped 1 at the class level (not in a class folder), 1 hidden, 1 not of an image type"
        ),
        "{err}"
    );
    let info = info(tmp.path());
    assert_eq!(info["name"], "image folder pics");
    assert_eq!(info["class_names"], serde_json::json!(["cat", "dog", "emu"]));
    assert_eq!(
        info["shape"],
        serde_json::json!({"channels": 3, "height": 32, "width": 32})
    );
    assert_eq!(
        (info["train_images"].as_u64(), info["test_images"].as_u64()),
        (Some(16), Some(12))
    );
    assert_eq!(info["skipped"]["hidden"], 1);
    // A second run decodes nothing new: everything is cached.
    let again = run(tmp.path(), "", 3);
    assert!(stderr(&again).contains("up to date"), "{}", stderr(&again));
    // A changed image is a changed dataset.
    write_png(
        &tmp.path().join("pics/train/cat/000.png"),
        &mut Rng::new(9),
        1,
        3,
        32,
        32,
        true,
    );
    let changed = run(tmp.path(), "", 3);
    assert!(
        stderr(&changed).contains("dataset  ran in"),
        "{}",
        stderr(&changed)
    );
}

#[test]
fn image_size_resizes_and_test_split_holds_out_images() {
    let tmp = tempfile::tempdir().unwrap();
    write_image_folder(&tmp.path().join("all"), &["a", "b"], 8, 40, 36, true);
    // One folder of classes (no train/ and test/): take the training half only.
    fs::rename(tmp.path().join("all/train"), tmp.path().join("pics")).unwrap();
    let out = run(tmp.path(), "  image_size: 32\n  test_split: 0.25\n", 2);
    assert!(out.status.success(), "{}", stderr(&out));
    let info = info(tmp.path());
    assert_eq!(
        info["shape"],
        serde_json::json!({"channels": 3, "height": 32, "width": 32})
    );
    assert_eq!(info["test_images"], 4);
    assert_eq!(info["train_images"], 10);
}

#[test]
fn greyscale_conversion_gives_one_channel() {
    let tmp = tempfile::tempdir().unwrap();
    write_image_folder(&tmp.path().join("pics"), &["a", "b"], 4, 30, 30, true);
    let out = run(tmp.path(), "  channels: 1\n  image_size: [28, 28]\n", 2);
    let info = info(tmp.path());
    assert_eq!(
        info["shape"],
        serde_json::json!({"channels": 1, "height": 28, "width": 28}),
        "{}",
        stderr(&out)
    );
}

/// Runs on a folder made by `make` and returns stderr, checking that it failed and cached nothing.
fn refused(extra: &str, make: impl FnOnce(&Path)) -> String {
    let tmp = tempfile::tempdir().unwrap();
    make(&tmp.path().join("pics"));
    let out = run(tmp.path(), extra, 2);
    assert!(!out.status.success());
    assert!(
        cache_entries(&tmp.path().join("out"), "dataset").is_empty(),
        "nothing cached"
    );
    stderr(&out)
}

#[test]
fn every_bad_folder_is_named() {
    let err = refused("", |p| write_image_folder(p, &["only"], 3, 8, 8, true));
    assert!(
        err.contains("pics/train has only one class folder (`only`)"),
        "{err}"
    );
    let err = refused("", |p| {
        write_image_folder(p, &["a", "b"], 3, 8, 8, true);
        fs::write(p.join("train/b/001.png"), b"not a png").unwrap();
    });
    assert!(
        err.contains("cannot read image") && err.contains("pics/train/b/001.png"),
        "{err}"
    );
    let err = refused("", |p| {
        write_image_folder(p, &["a", "b"], 3, 8, 8, true);
        write_png(&p.join("train/b/002.png"), &mut Rng::new(1), 1, 2, 9, 8, true);
    });
    assert!(
        err.contains("train/b/002.png is 8×9") && err.contains("need `data.image_size`"),
        "{err}"
    );
    let err = refused("", |p| {
        write_image_folder(p, &["a", "b"], 3, 8, 8, true);
        fs::create_dir_all(p.join("train/c")).unwrap();
        fs::create_dir_all(p.join("test/c")).unwrap();
    });
    assert!(
        err.contains("class folder") && err.contains("pics/train/c holds no image"),
        "{err}"
    );
    let err = refused("", |p| {
        write_image_folder(p, &["a", "b"], 3, 8, 8, true);
        fs::remove_dir_all(p.join("test")).unwrap();
    });
    assert!(
        err.contains("no `test/` folder") && err.contains("test_split"),
        "{err}"
    );
}

#[test]
fn two_channels_is_a_located_error() {
    let tmp = tempfile::tempdir().unwrap();
    write_image_folder(&tmp.path().join("pics"), &["a", "b"], 3, 8, 8, true);
    let out = run(tmp.path(), "  channels: 2\n", 2);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("`data.channels: 2`") && err.contains("p.yaml:6"),
        "{err}"
    );
    assert!(err.contains("expected 1 (greyscale"), "{err}");
}

/// Every file of every complete entry of `stage`, as bytes, for comparing two out directories.
fn entry_files(out: &Path, stage: &str, file: &str) -> Vec<Vec<u8>> {
    crate::util::cache::stage_dirs(out, stage)
        .into_iter()
        .filter(|d| !d.starts_with(".partial-"))
        .map(|d| fs::read(out.join("cache").join(stage).join(d).join(file)).unwrap())
        .collect()
}

#[test]
fn decoded_images_are_kept_by_the_dataset_stage_and_train_as_freshly_decoded_ones() {
    let tmp = tempfile::tempdir().unwrap();
    write_image_folder(&tmp.path().join("pics"), &["cat", "dog"], 6, 16, 16, true);
    fs::write(tmp.path().join("p.yaml"), pipeline("pics", &data(""), 2)).unwrap();
    // A: the dataset stage is built (and the folder decoded) by a first call; the second call's new run finds
    // it cached and trains from the images it kept. B: the same run in one call, decoding the folder itself.
    for args in [
        &["run", "p.yaml", "--out", "a"][..],
        &["run", "p.yaml", "--out", "a", "-S", "train.epochs=2"],
        &["run", "p.yaml", "--out", "b", "-S", "train.epochs=2"],
    ] {
        let out = labpipe(tmp.path(), args);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let dataset_dir = crate::util::cache::complete_dir(&tmp.path().join("a"), "dataset");
    let kept = fs::read(dataset_dir.join("images.bin")).unwrap();
    let magic = b"labpipe-decoded-images-v1\n";
    assert!(kept.starts_with(magic));
    // Every image of the folder, 3×16×16 bytes and one label byte each, after the header line.
    let info = read_json(&dataset_dir.join("dataset.json"));
    let images: u64 = ["train_images", "val_images", "test_images"]
        .iter()
        .map(|k| info[*k].as_u64().unwrap())
        .sum();
    let header = kept[magic.len()..].iter().position(|&b| b == b'\n').unwrap() + 1;
    assert_eq!(
        (kept.len() - magic.len() - header) as u64,
        images * (3 * 16 * 16 + 1)
    );
    // The kept test labels are the folder's: 4 cats and 4 dogs (rows of the confusion matrix).
    for metrics in entry_files(&tmp.path().join("a"), "evaluate", "metrics.json") {
        let m: serde_json::Value = serde_json::from_slice(&metrics).unwrap();
        let rows: Vec<u64> = m["confusion"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_array().unwrap().iter().map(|c| c.as_u64().unwrap()).sum())
            .collect();
        assert_eq!(rows, vec![4, 4]);
    }
    let fresh = entry_files(&tmp.path().join("b"), "evaluate", "metrics.json");
    let from_kept = entry_files(&tmp.path().join("a"), "evaluate", "metrics.json");
    assert_eq!(fresh.len(), 1);
    assert!(
        from_kept.contains(&fresh[0]),
        "the run trained from the kept images differs from the one that decoded them"
    );
    let weights = entry_files(&tmp.path().join("b"), "train", "model.safetensors");
    assert!(entry_files(&tmp.path().join("a"), "train", "model.safetensors").contains(&weights[0]));
}

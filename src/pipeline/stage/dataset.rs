//! The dataset stage: load the data, draw the validation split with the seed, compute the normalization
//! statistics. Writes `dataset.json` (what was decided), `split.json` (the indices) and `images.bin` (an image
//! folder's decoded pixels, so later processes never decode it again; empty for datasets whose files are read
//! as they are).

use super::artifact::{ArtifactError, StageFailure, existing, read_json, write_json};
use crate::cache::StageDir;
use crate::cache::key::{Seg, SpecDiff};
use crate::data::config::{DatasetKind, Normalize};
use crate::data::image_folder::Skipped;
use crate::data::normalize::{NormStats, stats_for};
use crate::data::shape::InputShape;
use crate::data::source::FileRecords;
use crate::data::split::{Split, split};
use crate::data::{Dataset, ImageSet, source};
use crate::spec::RunSpec;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::Path;

/// The stage's name.
pub const NAME: &str = "dataset";
const INFO: &str = "dataset.json";
const SPLIT: &str = "split.json";
const DECODED: &str = "images.bin";
/// The files a complete build holds.
pub const FILES: &[&str] = &[INFO, SPLIT, DECODED];
/// First bytes of a non-empty `images.bin`: the format, then one JSON line of sizes, then the raw bytes.
const DECODED_MAGIC: &[u8] = b"labpipe-decoded-images-v1\n";
/// The code that decides what the stage writes (see `Stage::sources`).
pub const SOURCES: &[&str] = &["src/data/", "src/rng.rs", "src/pipeline/stage/dataset.rs"];

/// `dataset.json`: what the dataset stage decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// Where the images came from.
    pub source: String,
    /// The dataset's display name ("MNIST", "CIFAR-100 (fine)", "image folder <root>").
    #[serde(default)]
    pub name: String,
    /// The shape of one image.
    #[serde(default = "cifar_shape")]
    pub shape: InputShape,
    /// Class names.
    pub class_names: Vec<String>,
    /// Training images (after the validation split).
    pub train_images: usize,
    /// Validation images.
    pub val_images: usize,
    /// Test images.
    pub test_images: usize,
    /// The normalization mode as written.
    pub normalize: Normalize,
    /// The statistics used.
    pub stats: NormStats,
    /// The dataset's files and their image counts beside the official ones (empty for synthetic data and
    /// image folders).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileRecords>,
    /// Image folders: the files passed over (hidden, not images, beside the class folders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<Skipped>,
}

/// Stages written before the shape was recorded held CIFAR-shaped images.
fn cifar_shape() -> InputShape {
    InputShape::CIFAR
}

/// A complete dataset stage, read back.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetArtifacts {
    /// What was decided.
    pub info: DatasetInfo,
    /// Which training images validate.
    pub split: Split,
}

impl DatasetArtifacts {
    /// Read the artifacts of a complete dataset stage.
    pub fn read(dir: &StageDir) -> Result<Self, ArtifactError> {
        Ok(DatasetArtifacts {
            info: read_json(&dir.path, INFO)?,
            split: read_json(&dir.path, SPLIT)?,
        })
    }
}

/// What the dataset stage's key hashes.
pub(crate) fn key_input(run: &RunSpec, fingerprint: &str) -> Value {
    let d = &run.data;
    let mut key = json!({
        "dataset": d.dataset,
        "source": fingerprint,
        "train_size": d.train_size,
        "test_size": d.test_size,
        "val_split": d.val_split,
        "normalize": d.normalize,
        "seed": run.train.seed,
    });
    // Fields that only some datasets read join the key only for them, so the keys of other datasets (and
    // users' caches of them) stay as they were.
    let extra = match d.dataset {
        DatasetKind::Cifar100 => json!({ "labels": d.labels.unwrap_or_default() }),
        DatasetKind::ImageFolder => json!({
            "image_size": d.image_size,
            "channels": d.channels.unwrap_or(3),
            "test_split": d.test_split,
        }),
        _ => json!({}),
    };
    if let (Some(key), Value::Object(extra)) = (key.as_object_mut(), extra) {
        key.extend(extra);
    }
    key
}

/// Where a dataset key field comes from in the pipeline file.
pub(crate) fn user_path(path: &[Seg]) -> String {
    match Seg::first_key(path) {
        Some("seed") => "train.seed (it also draws the validation split)".into(),
        Some("source") => "the input data (its files or size)".into(),
        _ => Seg::join("data", path),
    }
}

/// The fingerprint follows the dataset's kind and size: name it only when nothing written changed.
pub(crate) fn drop_implied_source_change(diffs: &mut Vec<SpecDiff>) {
    let top = |d: &SpecDiff| Seg::first_key(&d.0).unwrap_or_default().to_string();
    if diffs
        .iter()
        .any(|d| ["dataset", "train_size", "test_size"].contains(&top(d).as_str()))
    {
        diffs.retain(|d| top(d) != "source");
    }
}

/// Build the stage into `dir` from the loaded `data`.
pub(crate) fn build(run: &RunSpec, data: &Dataset, dir: &Path) -> Result<(), StageFailure> {
    let train = data.train.len();
    let val = run.data.val_split.count(train);
    if val == 0 || val >= train {
        return Err(StageFailure::ValSplit { val, train });
    }
    let sp = split(train, val, run.train.seed);
    let stats = stats_for(&run.data.normalize, &data.train, &sp.train);
    let files = source::file_records(&run.data);
    let info = DatasetInfo {
        source: source::describe(&run.data),
        name: source::display_name(&run.data),
        shape: data.train.shape,
        class_names: data.class_names.clone(),
        train_images: sp.train.len(),
        val_images: sp.val.len(),
        test_images: data.test.len(),
        normalize: run.data.normalize.clone(),
        stats,
        files,
        skipped: source::skipped(&run.data),
    };
    write_json(dir, INFO, &info)?;
    write_json(dir, SPLIT, &sp)?;
    // Only an image folder is slow to read again: the other datasets' files are raw pixels.
    let keep = run.data.dataset == DatasetKind::ImageFolder;
    write_decoded(dir, keep.then_some(data))
}

/// Sizes heading a non-empty `images.bin`.
#[derive(Debug, Serialize, Deserialize)]
struct DecodedHeader {
    shape: InputShape,
    train: usize,
    test: usize,
}

/// `images.bin`: the decoded train and test sets of `data`, or an empty file when there is nothing to keep.
fn write_decoded(dir: &Path, data: Option<&Dataset>) -> Result<(), StageFailure> {
    let path = dir.join(DECODED);
    let mut bytes = Vec::new();
    if let Some(data) = data {
        let header = DecodedHeader {
            shape: data.train.shape,
            train: data.train.len(),
            test: data.test.len(),
        };
        bytes.extend_from_slice(DECODED_MAGIC);
        bytes.extend(serde_json::to_vec(&header).map_err(|e| StageFailure::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?);
        bytes.push(b'\n');
        for set in [&data.train, &data.test] {
            bytes.extend_from_slice(&set.pixels);
            bytes.extend_from_slice(&set.labels);
        }
    }
    std::fs::write(&path, bytes).map_err(|source| StageFailure::Io { path, source })
}

/// The decoded images a complete dataset stage kept (`None` when its dataset is read from its own files).
pub fn read_decoded(dir: &Path, class_names: &[String]) -> Result<Option<Dataset>, ArtifactError> {
    let path = existing(dir, DECODED)?;
    let damaged = |reason: String| ArtifactError::Damaged {
        path: path.clone(),
        reason,
    };
    let bytes = std::fs::read(&path).map_err(|e| damaged(e.to_string()))?;
    if bytes.is_empty() {
        return Ok(None);
    }
    let rest = bytes
        .strip_prefix(DECODED_MAGIC)
        .ok_or_else(|| damaged("not a labpipe decoded-images file".into()))?;
    let line_end = rest
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| damaged("no header line".into()))?;
    let header: DecodedHeader =
        serde_json::from_slice(&rest[..line_end]).map_err(|e| damaged(format!("header: {e}")))?;
    let mut body = &rest[line_end + 1..];
    let per_image = header.shape.values();
    let expected = (header.train + header.test) * (per_image + 1);
    if body.len() != expected {
        return Err(damaged(format!(
            "{} bytes of images, expected {expected} for {} + {} images of {}",
            body.len(),
            header.train,
            header.test,
            header.shape
        )));
    }
    let mut take = |n: usize| {
        let (head, tail) = body.split_at(n);
        body = tail;
        head.to_vec()
    };
    let [train, test] = [header.train, header.test].map(|n| ImageSet {
        shape: header.shape,
        pixels: take(n * per_image),
        labels: take(n),
    });
    Ok(Some(Dataset {
        train,
        test,
        class_names: class_names.to_vec(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synthetic;

    #[test]
    fn kept_images_read_back_as_they_were_written() {
        let dir = tempfile::tempdir().unwrap();
        let data = synthetic::generate(7, 3);
        write_decoded(dir.path(), Some(&data)).unwrap();
        assert_eq!(
            read_decoded(dir.path(), &data.class_names).unwrap(),
            Some(data.clone())
        );
        write_decoded(dir.path(), None).unwrap();
        assert_eq!(read_decoded(dir.path(), &data.class_names).unwrap(), None);
    }

    #[test]
    fn a_cut_or_foreign_images_file_is_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let data = synthetic::generate(4, 2);
        write_decoded(dir.path(), Some(&data)).unwrap();
        let path = dir.path().join(DECODED);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        let err = read_decoded(dir.path(), &data.class_names)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("expected 18438 for 4 + 2 images of 3×32×32"),
            "{err}"
        );
        std::fs::write(&path, b"P6 not ours").unwrap();
        let err = read_decoded(dir.path(), &data.class_names)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a labpipe decoded-images file"), "{err}");
    }
}

//! The dataset stage: load the data, draw the validation split with the seed, compute the normalization
//! statistics. Writes `dataset.json` (what was decided) and `split.json` (the indices).

use super::artifact::{ArtifactError, StageFailure, read_json, write_json};
use crate::cache::StageDir;
use crate::cache::key::{Seg, SpecDiff};
use crate::data::config::{DatasetKind, Normalize};
use crate::data::image_folder::Skipped;
use crate::data::normalize::{NormStats, stats_for};
use crate::data::shape::InputShape;
use crate::data::source::FileRecords;
use crate::data::split::{Split, split};
use crate::data::{Dataset, source};
use crate::spec::RunSpec;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::Path;

/// The stage's name.
pub const NAME: &str = "dataset";
const INFO: &str = "dataset.json";
const SPLIT: &str = "split.json";
/// The files a complete build holds.
pub const FILES: &[&str] = &[INFO, SPLIT];
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
    write_json(dir, SPLIT, &sp)
}

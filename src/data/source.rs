//! Where a pipeline's images come from: the embedded generator, the CIFAR-10/100 and MNIST/Fashion-MNIST
//! files (downloaded when missing) or a folder of one's own images, cut to the sizes the pipeline asks for,
//! with a fingerprint of the content for cache keys.

use super::cifar10::{self, DATA_DIR};
use super::config::Cifar100Labels;
use super::config::{DataSpec, DatasetKind};
use super::download::{DownloadSpec, ensure_cifar10};
use super::error::DataError;
use super::idx::{self, IdxDataset};
use super::shape::InputShape;
use super::{Dataset, ImageSet, cifar100, image_folder, synthetic};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Default folder of the CIFAR-10 files.
pub const DEFAULT_CIFAR_ROOT: &str = "data/cifar10";

/// The dataset root a spec points at (relative paths are relative to the working directory).
pub fn root(spec: &DataSpec) -> PathBuf {
    let default = match spec.dataset {
        DatasetKind::Cifar100 => cifar100::DEFAULT_ROOT,
        DatasetKind::Mnist => IdxDataset::Mnist.default_root(),
        DatasetKind::FashionMnist => IdxDataset::FashionMnist.default_root(),
        DatasetKind::ImageFolder => "data/images",
        DatasetKind::Synthetic | DatasetKind::Cifar10 => DEFAULT_CIFAR_ROOT,
    };
    PathBuf::from(spec.root.clone().unwrap_or_else(|| default.to_string()))
}

/// The CIFAR-10 root a spec points at (relative paths are relative to the working directory).
pub fn cifar_root(spec: &DataSpec) -> PathBuf {
    root(spec)
}

fn idx_kind(kind: DatasetKind) -> Option<IdxDataset> {
    match kind {
        DatasetKind::Mnist => Some(IdxDataset::Mnist),
        DatasetKind::FashionMnist => Some(IdxDataset::FashionMnist),
        _ => None,
    }
}

/// What identifies a source's loaded content: datasets and fingerprints are shared between runs with the same.
pub fn source_id(spec: &DataSpec) -> String {
    serde_json::to_string(&(
        (&spec.dataset, &spec.root, spec.train_size, spec.test_size),
        (spec.labels, spec.image_size, spec.channels, spec.test_split),
    ))
    .unwrap_or_default()
}

/// blake3 of `files` in order, as a short hex string.
fn hash_files(files: &[PathBuf]) -> Result<String, DataError> {
    let mut h = blake3::Hasher::new();
    for p in files {
        let mut f = std::fs::File::open(p).map_err(|e| DataError::io("read", p, e))?;
        std::io::copy(&mut f, &mut h).map_err(|e| DataError::io("read", p, e))?;
    }
    Ok(h.finalize().to_hex()[..32].to_string())
}

/// A fingerprint of the input data: for downloaded datasets the blake3 of their files (or the official
/// archive's MD5 before the download), for synthetic data the generator version and sizes. Computed
/// without loading anything into the trainer.
pub fn fingerprint(spec: &DataSpec) -> Result<String, DataError> {
    let root = root(spec);
    match spec.dataset {
        DatasetKind::Synthetic => Ok(format!(
            "synthetic-v1:{}:{}",
            spec.train_size.unwrap_or(synthetic::DEFAULT_TRAIN),
            spec.test_size.unwrap_or(synthetic::DEFAULT_TEST)
        )),
        DatasetKind::Cifar10 => {
            if !cifar10::cifar10_present(&root) {
                // Not there yet: it will be downloaded, and the official archive is fixed by its MD5.
                return Ok(format!("cifar10-md5:{}", super::download::CIFAR10_MD5));
            }
            let files: Vec<PathBuf> = cifar10::required_files()
                .into_iter()
                .map(|n| root.join(DATA_DIR).join(n))
                .collect();
            Ok(format!("cifar10-blake3:{}", hash_files(&files)?))
        }
        DatasetKind::Cifar100 => {
            if !cifar100::layout().present(&root) {
                return Ok(format!("cifar100-md5:{}", cifar100::MD5));
            }
            let files: Vec<PathBuf> = cifar100::required_files()
                .into_iter()
                .map(|n| root.join(cifar100::DATA_DIR).join(n))
                .collect();
            Ok(format!("cifar100-blake3:{}", hash_files(&files)?))
        }
        DatasetKind::Mnist | DatasetKind::FashionMnist => {
            let which = idx_kind(spec.dataset).unwrap_or(IdxDataset::Mnist);
            let resources = which.resources();
            if !idx::present(&root) {
                let md5s: Vec<&str> = resources.iter().map(|r| r.md5.as_str()).collect();
                return Ok(format!("{}-md5:{}", which.display(), md5s.join(",")));
            }
            let files: Vec<PathBuf> = resources.iter().map(|r| idx::path_of(&root, r.name)).collect();
            Ok(format!("{}-blake3:{}", which.display(), hash_files(&files)?))
        }
        DatasetKind::ImageFolder => Ok(format!(
            "image-folder-blake3:{}",
            image_folder::fingerprint(&root)?
        )),
    }
}

fn first(set: ImageSet, n: Option<usize>) -> ImageSet {
    match n {
        Some(n) if n < set.len() => set.select(&(0..n).collect::<Vec<_>>()),
        _ => set,
    }
}

/// Make sure the files a spec needs are on disk, downloading them when missing. Runs before stage keys are
/// computed, so a dataset's fingerprint is the same before and after its first download.
pub fn ensure_present(spec: &DataSpec, progress: bool) -> Result<(), DataError> {
    let root = root(spec);
    match spec.dataset {
        DatasetKind::Cifar10 => ensure_cifar10_present(spec, &root, progress),
        DatasetKind::Cifar100 => {
            if !cifar100::layout().present(&root) && cifar10::cifar10_present(&root) {
                return Err(other_dataset(&root.join(DATA_DIR), DatasetKind::Cifar100));
            }
            let mut dl = cifar100::download_spec();
            override_download(spec, &mut dl);
            cifar100::ensure(&root, &dl, progress)
        }
        DatasetKind::Mnist | DatasetKind::FashionMnist => {
            let which = idx_kind(spec.dataset).unwrap_or(IdxDataset::Mnist);
            idx::ensure(&root, which, spec.url.as_deref(), progress)
        }
        DatasetKind::Synthetic | DatasetKind::ImageFolder => Ok(()),
    }
}

/// The error for CIFAR files of the other kind found where the pipeline's dataset was expected.
fn other_dataset(path: &Path, asked: DatasetKind) -> DataError {
    match asked {
        DatasetKind::Cifar100 => DataError::OtherDataset {
            path: path.to_path_buf(),
            found: "the CIFAR-10 binary dataset",
            expected: "CIFAR-100",
            advice: "write `dataset: cifar10` to train on it, or point `data.root` at CIFAR-100's folder",
        },
        _ => DataError::OtherDataset {
            path: path.to_path_buf(),
            found: "the CIFAR-100 binary dataset",
            expected: "CIFAR-10",
            advice: "write `dataset: cifar100` to train on it, or point `data.root` at CIFAR-10's folder",
        },
    }
}

fn override_download(spec: &DataSpec, dl: &mut DownloadSpec) {
    if let Some(url) = &spec.url {
        dl.url = url.clone();
    }
    if let Some(md5) = &spec.md5 {
        dl.md5 = md5.to_lowercase();
        // Only the official archive's size is known.
        dl.size = None;
    }
}

fn ensure_cifar10_present(spec: &DataSpec, root: &Path, progress: bool) -> Result<(), DataError> {
    if !cifar10::cifar10_present(root) && cifar100::layout().present(root) {
        return Err(other_dataset(
            &root.join(cifar100::DATA_DIR),
            DatasetKind::Cifar10,
        ));
    }
    let mut dl = DownloadSpec::cifar10();
    override_download(spec, &mut dl);
    let dir = root.join(DATA_DIR);
    let missing: Vec<&str> = cifar10::required_files()
        .into_iter()
        .filter(|f| !dir.join(f).is_file())
        .collect();
    let partial = dir.is_dir() && missing.len() < cifar10::required_files().len();
    ensure_cifar10(root, &dl, progress).map_err(|e| match (partial, missing.first()) {
        // A half-installed folder whose completion could not be downloaded: name the file that is missing.
        (true, Some(f)) => DataError::MissingFile {
            dataset: "CIFAR-10",
            path: dir.join(f),
            hint: super::cifar10_layout::manual_install_hint(root),
        },
        _ => e,
    })
}

/// One dataset file and how many images it holds, beside the official count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecords {
    /// The file name (no directories: nothing path-like leaves `out/`).
    pub file: String,
    /// Images in it.
    pub records: usize,
    /// Images in the official file.
    pub official: usize,
}

/// The record count of every file of a downloaded dataset (from sizes and headers, nothing decoded); empty
/// for datasets without official files.
pub fn file_records(spec: &DataSpec) -> Vec<FileRecords> {
    let root = root(spec);
    let entry = |file: &str, records: Option<usize>, official| {
        records.map(|records| FileRecords {
            file: file.to_string(),
            records,
            official,
        })
    };
    let size = |p: PathBuf| std::fs::metadata(p).ok().map(|m| m.len());
    match spec.dataset {
        DatasetKind::Cifar10 => {
            let dir = root.join(DATA_DIR);
            let files = cifar10::TRAIN_FILES.iter().chain([&cifar10::TEST_FILE]);
            files
                .filter_map(|f| {
                    let n = size(dir.join(f)).map(|s| s as usize / cifar10::RECORD_BYTES);
                    entry(f, n, cifar10::RECORDS_PER_FILE)
                })
                .collect()
        }
        DatasetKind::Cifar100 => {
            let dir = root.join(cifar100::DATA_DIR);
            [
                (cifar100::TRAIN_FILE, cifar100::TRAIN_RECORDS),
                (cifar100::TEST_FILE, cifar100::TEST_RECORDS),
            ]
            .into_iter()
            .filter_map(|(f, official)| {
                let n = size(dir.join(f)).and_then(cifar100::records_in);
                entry(f, n, official)
            })
            .collect()
        }
        DatasetKind::Mnist | DatasetKind::FashionMnist => [
            (idx::TRAIN_IMAGES, idx::TRAIN_RECORDS),
            (idx::TEST_IMAGES, idx::TEST_RECORDS),
        ]
        .into_iter()
        .filter_map(|(f, official)| entry(f, idx::record_count(&idx::path_of(&root, f)), official))
        .collect(),
        DatasetKind::Synthetic | DatasetKind::ImageFolder => Vec::new(),
    }
}

/// Files whose record count is not the official one, in words (empty when all are official).
pub fn unofficial_counts(records: &[FileRecords]) -> Vec<String> {
    records
        .iter()
        .filter(|r| r.records != r.official)
        .map(|r| {
            format!(
                "{}: {} images (the official file has {})",
                r.file, r.records, r.official
            )
        })
        .collect()
}

/// Cuts `set` to the first `asked` images, or says that the files hold fewer.
fn cut(
    set: ImageSet,
    asked: Option<usize>,
    field: &'static str,
    which: &'static str,
    spec: &DataSpec,
    records: &[FileRecords],
) -> Result<ImageSet, DataError> {
    if let Some(n) = asked
        && n > set.len()
    {
        let files: Vec<String> = records
            .iter()
            .map(|r| format!("{}: {}", r.file, r.records))
            .collect();
        return Err(DataError::TooFewImages {
            field,
            which,
            asked: n,
            available: set.len(),
            dataset: describe(spec),
            files: if files.is_empty() {
                String::new()
            } else {
                format!(" ({})", files.join(", "))
            },
        });
    }
    Ok(first(set, asked))
}

/// A set of images of `shape` from raw bytes.
fn image_set(shape: InputShape, pixels: Vec<u8>, labels: Vec<u8>) -> ImageSet {
    ImageSet {
        shape,
        pixels,
        labels,
    }
}

/// Load (and download if needed) the dataset a spec describes. Files whose record counts differ from the
/// official ones are used as they are, with a warning on stderr when `progress` (not `-q`).
pub fn load(spec: &DataSpec, progress: bool) -> Result<Dataset, DataError> {
    let root = root(spec);
    let full = match spec.dataset {
        DatasetKind::Synthetic => {
            return Ok(synthetic::generate(
                spec.train_size.unwrap_or(synthetic::DEFAULT_TRAIN),
                spec.test_size.unwrap_or(synthetic::DEFAULT_TEST),
            ));
        }
        DatasetKind::Cifar10 => {
            ensure_present(spec, progress)?;
            cifar10::read_cifar10(&root)?
        }
        DatasetKind::Cifar100 => {
            ensure_present(spec, progress)?;
            cifar100::read(&root, spec.labels.unwrap_or_default())?
        }
        DatasetKind::Mnist | DatasetKind::FashionMnist => {
            ensure_present(spec, progress)?;
            let d = idx::read(&root, idx_kind(spec.dataset).unwrap_or(IdxDataset::Mnist))?;
            Dataset {
                train: image_set(InputShape::MNIST, d.train.pixels, d.train.labels),
                test: image_set(InputShape::MNIST, d.test.pixels, d.test.labels),
                class_names: d.class_names,
            }
        }
        DatasetKind::ImageFolder => load_folder(spec, &root, progress)?,
    };
    let records = file_records(spec);
    let odd = unofficial_counts(&records);
    // `-q` keeps stderr quiet; the counts are in dataset.json and the report either way.
    if progress && !odd.is_empty() {
        eprintln!(
            "warning: {} files are not the official ones, used as they are: {}",
            display_name(spec),
            odd.join("; ")
        );
    }
    Ok(Dataset {
        train: cut(
            full.train,
            spec.train_size,
            "train_size",
            "training",
            spec,
            &records,
        )?,
        test: cut(full.test, spec.test_size, "test_size", "test", spec, &records)?,
        class_names: full.class_names,
    })
}

/// Decodes an image folder (see [`image_folder`]), saying on stderr what was skipped.
fn load_folder(spec: &DataSpec, root: &Path, progress: bool) -> Result<Dataset, DataError> {
    let listing = image_folder::list(root)?;
    if progress && !listing.skipped.is_empty() {
        eprintln!("note: {}: skipped {}", root.display(), listing.skipped.describe());
    }
    let n = listing.train.items.len();
    let (train_items, test_items) = image_folder::split_items(&listing, spec.test_split.map(|t| t.count(n)))?;
    let channels = spec.channels.unwrap_or(3);
    let size = spec.image_size.map(|s| s.height_width());
    let train = image_folder::decode_all(&train_items, channels, size)?;
    let test = image_folder::decode_all(&test_items, channels, size)?;
    if test.shape != train.shape {
        return Err(DataError::MixedSizes {
            path: test_items[0].0.clone(),
            size: (test.shape.height, test.shape.width),
            first: train_items[0].0.clone(),
            first_size: (train.shape.height, train.shape.width),
        });
    }
    Ok(Dataset {
        train: image_set(train.shape, train.pixels, train.labels),
        test: image_set(test.shape, test.pixels, test.labels),
        class_names: listing.classes,
    })
}

/// What listing an image folder skipped (`None` for other datasets, or when it cannot be listed).
pub fn skipped(spec: &DataSpec) -> Option<image_folder::Skipped> {
    (spec.dataset == DatasetKind::ImageFolder)
        .then(|| image_folder::list(&root(spec)).ok().map(|l| l.skipped))
        .flatten()
}

/// The dataset's display name for the report: "MNIST", "Fashion-MNIST", "CIFAR-100 (fine)", "image folder
/// <root>".
pub fn display_name(spec: &DataSpec) -> String {
    match spec.dataset {
        DatasetKind::Synthetic => "synthetic".into(),
        DatasetKind::Cifar10 => "CIFAR-10".into(),
        DatasetKind::Cifar100 => match spec.labels.unwrap_or_default() {
            Cifar100Labels::Fine => "CIFAR-100 (fine)".into(),
            Cifar100Labels::Coarse => "CIFAR-100 (coarse)".into(),
        },
        DatasetKind::Mnist => "MNIST".into(),
        DatasetKind::FashionMnist => "Fashion-MNIST".into(),
        DatasetKind::ImageFolder => format!("image folder {}", root(spec).display()),
    }
}

/// Human description of the source for the report.
pub fn describe(spec: &DataSpec) -> String {
    match spec.dataset {
        DatasetKind::Synthetic => "synthetic (embedded, generated)".into(),
        DatasetKind::ImageFolder => display_name(spec),
        _ => format!("{} ({})", display_name(spec), root(spec).display()),
    }
}

/// The shape of one input image for a spec, known before anything is loaded: fixed by the dataset, or for
/// an image folder by `channels` and `image_size`.
pub fn input_shape(spec: &DataSpec) -> Result<InputShape, DataError> {
    match spec.dataset {
        DatasetKind::Synthetic | DatasetKind::Cifar10 | DatasetKind::Cifar100 => Ok(InputShape::CIFAR),
        DatasetKind::Mnist | DatasetKind::FashionMnist => Ok(InputShape::MNIST),
        DatasetKind::ImageFolder => match spec.image_size {
            Some(size) => {
                let (h, w) = size.height_width();
                Ok(InputShape::new(spec.channels.unwrap_or(3), h, w))
            }
            None => image_folder::first_image_shape(&root(spec), spec.channels.unwrap_or(3)),
        },
    }
}

/// How many classes a spec's dataset has, known before its images are loaded.
pub fn class_count(spec: &DataSpec) -> Result<usize, DataError> {
    match spec.dataset {
        DatasetKind::Synthetic | DatasetKind::Cifar10 | DatasetKind::Mnist | DatasetKind::FashionMnist => {
            Ok(10)
        }
        DatasetKind::Cifar100 => Ok(match spec.labels.unwrap_or_default() {
            Cifar100Labels::Fine => 100,
            Cifar100Labels::Coarse => 20,
        }),
        DatasetKind::ImageFolder => Ok(image_folder::list(&root(spec))?.classes.len()),
    }
}

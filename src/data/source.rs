//! Where a pipeline's images come from: the embedded generator or the CIFAR-10 files (downloaded when
//! missing), cut to the sizes the pipeline asks for, with a fingerprint of the content for cache keys.

use super::cifar10::{self, DATA_DIR};
use super::config::Cifar100Labels;
use super::config::{DataSpec, DatasetKind};
use super::download::{DownloadSpec, ensure_cifar10};
use super::error::DataError;
use super::shape::InputShape;
use super::{Dataset, ImageSet, synthetic};
use std::path::{Path, PathBuf};

/// Default folder of the CIFAR-10 files.
pub const DEFAULT_CIFAR_ROOT: &str = "data/cifar10";

/// The CIFAR-10 root a spec points at (relative paths are relative to the working directory).
pub fn cifar_root(spec: &DataSpec) -> PathBuf {
    PathBuf::from(
        spec.root
            .clone()
            .unwrap_or_else(|| DEFAULT_CIFAR_ROOT.to_string()),
    )
}

/// What identifies a source's loaded content: datasets and fingerprints are shared between runs with the same.
pub fn source_id(spec: &DataSpec) -> String {
    serde_json::to_string(&(&spec.dataset, &spec.root, spec.train_size, spec.test_size)).unwrap_or_default()
}

/// A fingerprint of the input data: for CIFAR-10 the blake3 of its files, for synthetic data the generator
/// version and sizes. Computed without loading anything into the trainer.
pub fn fingerprint(spec: &DataSpec) -> Result<String, DataError> {
    match spec.dataset {
        DatasetKind::Synthetic => Ok(format!(
            "synthetic-v1:{}:{}",
            spec.train_size.unwrap_or(synthetic::DEFAULT_TRAIN),
            spec.test_size.unwrap_or(synthetic::DEFAULT_TEST)
        )),
        DatasetKind::Cifar10 => {
            let root = cifar_root(spec);
            if !cifar10::cifar10_present(&root) {
                // Not there yet: it will be downloaded, and the official archive is fixed by its MD5.
                return Ok(format!("cifar10-md5:{}", super::download::CIFAR10_MD5));
            }
            let mut h = blake3::Hasher::new();
            for name in cifar10::required_files() {
                let p = root.join(DATA_DIR).join(name);
                let mut f = std::fs::File::open(&p).map_err(|e| DataError::io("read", &p, e))?;
                std::io::copy(&mut f, &mut h).map_err(|e| DataError::io("read", &p, e))?;
            }
            Ok(format!("cifar10-blake3:{}", &h.finalize().to_hex()[..32]))
        }
        other => Err(DataError::NotReadable {
            dataset: format!("{other:?}"),
        }),
    }
}

fn first(set: ImageSet, n: Option<usize>) -> ImageSet {
    match n {
        Some(n) if n < set.len() => set.select(&(0..n).collect::<Vec<_>>()),
        _ => set,
    }
}

/// Make sure the files a spec needs are on disk, downloading CIFAR-10 when missing. Runs before stage keys are
/// computed, so a dataset's fingerprint is the same before and after its first download.
pub fn ensure_present(spec: &DataSpec, progress: bool) -> Result<(), DataError> {
    if spec.dataset != DatasetKind::Cifar10 {
        return Ok(());
    }
    let root = cifar_root(spec);
    let mut dl = DownloadSpec::cifar10();
    if let Some(url) = &spec.url {
        dl.url = url.clone();
    }
    if let Some(md5) = &spec.md5 {
        dl.md5 = md5.to_lowercase();
        // Only the official archive's size is known.
        dl.size = None;
    }
    let dir = root.join(DATA_DIR);
    let missing: Vec<&str> = cifar10::required_files()
        .into_iter()
        .filter(|f| !dir.join(f).is_file())
        .collect();
    let partial = dir.is_dir() && missing.len() < cifar10::required_files().len();
    ensure_cifar10(&root, &dl, progress).map_err(|e| match (partial, missing.first()) {
        // A half-installed folder whose completion could not be downloaded: name the file that is missing.
        (true, Some(f)) => DataError::MissingFile {
            path: dir.join(f),
            root: root.clone(),
        },
        _ => e,
    })
}

/// Load (and for CIFAR-10, download if needed) the dataset a spec describes.
pub fn load(spec: &DataSpec, progress: bool) -> Result<Dataset, DataError> {
    match spec.dataset {
        DatasetKind::Synthetic => Ok(synthetic::generate(
            spec.train_size.unwrap_or(synthetic::DEFAULT_TRAIN),
            spec.test_size.unwrap_or(synthetic::DEFAULT_TEST),
        )),
        DatasetKind::Cifar10 => {
            let root = cifar_root(spec);
            ensure_present(spec, progress)?;
            let d = cifar10::read_cifar10(&root)?;
            Ok(Dataset {
                train: first(d.train, spec.train_size),
                test: first(d.test, spec.test_size),
                class_names: d.class_names,
            })
        }
        other => Err(DataError::NotReadable {
            dataset: format!("{other:?}"),
        }),
    }
}

/// Human description of the source for the report.
pub fn describe(spec: &DataSpec) -> String {
    match spec.dataset {
        DatasetKind::Synthetic => "synthetic (embedded, generated)".into(),
        DatasetKind::Cifar10 => format!("CIFAR-10 ({})", Path::new(&cifar_root(spec)).display()),
        other => format!("{other:?}"),
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
            None => Err(DataError::NotReadable {
                dataset: "image_folder".into(),
            }),
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
        DatasetKind::ImageFolder => Err(DataError::NotReadable {
            dataset: "image_folder".into(),
        }),
    }
}

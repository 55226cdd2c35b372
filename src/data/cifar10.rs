//! The CIFAR-10 binary format: reading `cifar-10-batches-bin/` into a [`Dataset`] and writing one back.
//!
//! Each batch file is a sequence of 3073-byte records: one label byte, then 3072 pixel bytes (32×32 red,
//! then green, then blue). The real dataset has 10 000 records per file; any whole number is accepted so
//! tests and fixtures can use small files.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::data::error::DataError;
use crate::data::shape::InputShape;
use crate::data::{Dataset, ImageSet};

pub use super::cifar10_layout::{
    DATA_DIR, IMAGE_BYTES, META_FILE, NUM_CLASSES, RECORD_BYTES, RECORDS_PER_FILE, TEST_FILE, TRAIN_FILES,
    TRAIN_IMAGES, cifar10_present, required_files,
};

/// Reads the CIFAR-10 binary dataset under `root/cifar-10-batches-bin/`.
pub fn read_cifar10(root: &Path) -> Result<Dataset, DataError> {
    let dir = root.join(DATA_DIR);
    let mut train = ImageSet::empty(InputShape::CIFAR);
    for name in TRAIN_FILES {
        read_batch(root, &dir.join(name), &mut train)?;
    }
    let mut test = ImageSet::empty(InputShape::CIFAR);
    read_batch(root, &dir.join(TEST_FILE), &mut test)?;
    let class_names = read_class_names(root, &dir.join(META_FILE))?;
    Ok(Dataset {
        train,
        test,
        class_names,
    })
}

/// Reads a file, reporting a missing one as [`DataError::MissingFile`] so the message says how to get it.
fn read_dataset_file(root: &Path, path: &Path) -> Result<Vec<u8>, DataError> {
    fs::read(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => DataError::MissingFile {
            dataset: "CIFAR-10",
            path: path.to_path_buf(),
            hint: super::cifar10_layout::manual_install_hint(root),
        },
        _ => DataError::io("read", path, e),
    })
}

/// Appends the records of one batch file to `set`.
fn read_batch(root: &Path, path: &Path, set: &mut ImageSet) -> Result<(), DataError> {
    let bytes = read_dataset_file(root, path)?;
    if bytes.is_empty() {
        return Err(DataError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    if bytes.len() % RECORD_BYTES != 0 {
        return Err(DataError::BadFileSize {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
            record: RECORD_BYTES,
            real: "10 000 records = 30 730 000 bytes",
            dataset: "CIFAR-10",
            dir: DATA_DIR,
            other: super::cifar10_layout::other_format_note(bytes.len()),
        });
    }
    let records = bytes.len() / RECORD_BYTES;
    set.pixels.reserve(records * IMAGE_BYTES);
    set.labels.reserve(records);
    for (index, record) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
        let label = record[0];
        if usize::from(label) >= NUM_CLASSES {
            return Err(DataError::BadLabel {
                path: path.to_path_buf(),
                index,
                label,
                classes: NUM_CLASSES,
                dataset: "CIFAR-10",
                note: " (CIFAR-100 files have two label bytes: for them write `dataset: cifar100`)",
            });
        }
        set.labels.push(label);
        set.pixels.extend_from_slice(&record[1..]);
    }
    Ok(())
}

/// Reads the class names, one per non-blank line.
fn read_class_names(root: &Path, path: &Path) -> Result<Vec<String>, DataError> {
    let bytes = read_dataset_file(root, path)?;
    let text = String::from_utf8_lossy(&bytes);
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if names.len() != NUM_CLASSES {
        return Err(DataError::BadClassNames {
            path: path.to_path_buf(),
            found: names.len(),
            expected: NUM_CLASSES,
        });
    }
    Ok(names)
}

/// Writes `ds` in the CIFAR-10 binary layout under `root/cifar-10-batches-bin/`.
///
/// The training set fills the five batch files in order, `per_batch` records each (later files may be
/// short or empty); it must fit in five. The test set goes to `test_batch.bin` whole. Each file is written
/// to a temporary name and renamed into place.
pub fn write_cifar10(root: &Path, ds: &Dataset, per_batch: usize) -> Result<(), DataError> {
    let not_writable = |reason: String| DataError::NotWritable {
        root: root.to_path_buf(),
        reason,
    };
    check_writable(&ds.train, "train").map_err(not_writable)?;
    check_writable(&ds.test, "test").map_err(not_writable)?;
    if ds.class_names.len() != NUM_CLASSES {
        return Err(not_writable(format!(
            "{} class names given, the format needs 10",
            ds.class_names.len()
        )));
    }
    if let Some(bad) = ds
        .class_names
        .iter()
        .find(|n| n.trim().is_empty() || n.contains(['\n', '\r']))
    {
        return Err(not_writable(format!(
            "class name {bad:?} is blank or spans lines"
        )));
    }
    let capacity = per_batch.saturating_mul(TRAIN_FILES.len());
    if ds.train.len() > capacity {
        return Err(not_writable(format!(
            "{} training images do not fit in 5 files of per_batch = {per_batch}",
            ds.train.len()
        )));
    }

    let dir = root.join(DATA_DIR);
    fs::create_dir_all(&dir).map_err(|e| DataError::io("create directory", &dir, e))?;
    for (i, name) in TRAIN_FILES.iter().enumerate() {
        let start = (i * per_batch).min(ds.train.len());
        let end = ((i + 1) * per_batch).min(ds.train.len());
        write_atomic(&dir.join(name), &encode_records(&ds.train, start..end))?;
    }
    write_atomic(&dir.join(TEST_FILE), &encode_records(&ds.test, 0..ds.test.len()))?;
    let mut meta = ds.class_names.join("\n");
    meta.push('\n');
    write_atomic(&dir.join(META_FILE), meta.as_bytes())
}

/// Says why `set` cannot be written, if it cannot.
fn check_writable(set: &ImageSet, which: &str) -> Result<(), String> {
    if set.shape != InputShape::CIFAR {
        return Err(format!(
            "{which} set holds {} images, the format holds {}",
            set.shape,
            InputShape::CIFAR
        ));
    }
    if set.pixels.len() != set.labels.len() * IMAGE_BYTES {
        return Err(format!(
            "{which} set has {} labels but {} pixel bytes (expected {} × {IMAGE_BYTES})",
            set.labels.len(),
            set.pixels.len(),
            set.labels.len()
        ));
    }
    if let Some((i, &l)) = set
        .labels
        .iter()
        .enumerate()
        .find(|(_, l)| usize::from(**l) >= NUM_CLASSES)
    {
        return Err(format!("{which} image {i} has label {l}, the format holds 0..=9"));
    }
    Ok(())
}

/// The records for images `range` of `set`.
fn encode_records(set: &ImageSet, range: std::ops::Range<usize>) -> Vec<u8> {
    let mut out = Vec::with_capacity(range.len() * RECORD_BYTES);
    for i in range {
        out.push(set.labels[i]);
        out.extend_from_slice(set.image(i));
    }
    out
}

/// Writes `bytes` to a temporary sibling of `path`, syncs it and renames it over `path`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    let tmp = temp_sibling(path);
    let result = (|| {
        let mut f = fs::File::create(&tmp).map_err(|e| DataError::io("create", &tmp, e))?;
        f.write_all(bytes).map_err(|e| DataError::io("write", &tmp, e))?;
        f.sync_all().map_err(|e| DataError::io("sync", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| DataError::io("rename into place", path, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A hidden name next to `path` that is unique to this process.
fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    const NAMES: [&str; 10] = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ];

    fn random_set(rng: &mut Rng, n: usize) -> ImageSet {
        let pixels = (0..n * IMAGE_BYTES).map(|_| rng.below(256) as u8).collect();
        let labels = (0..n).map(|_| rng.below(10) as u8).collect();
        ImageSet {
            shape: InputShape::CIFAR,
            pixels,
            labels,
        }
    }

    fn small_dataset(seed: u64) -> Dataset {
        let mut rng = Rng::new(seed);
        Dataset {
            train: random_set(&mut rng, 13),
            test: random_set(&mut rng, 4),
            class_names: NAMES.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn batch_path(root: &Path, name: &str) -> PathBuf {
        root.join(DATA_DIR).join(name)
    }

    #[test]
    fn round_trip_preserves_everything_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let ds = small_dataset(1);
        write_cifar10(dir.path(), &ds, 3).unwrap();
        assert!(cifar10_present(dir.path()));
        // 13 images at 3 per file: 3, 3, 3, 3, 1.
        let sizes: Vec<u64> = TRAIN_FILES
            .iter()
            .map(|f| fs::metadata(batch_path(dir.path(), f)).unwrap().len())
            .collect();
        let r = RECORD_BYTES as u64;
        assert_eq!(sizes, vec![3 * r, 3 * r, 3 * r, 3 * r, r]);
        assert_eq!(read_cifar10(dir.path()).unwrap(), ds);
    }

    #[test]
    fn reads_hand_made_records_byte_exactly() {
        let dir = tempfile::tempdir().unwrap();
        write_cifar10(dir.path(), &small_dataset(2), 3).unwrap();
        // Replace batch 1 with two hand-made records: label 7 with pixels 0..3072 mod 251, label 0 all 255.
        let mut bytes = vec![7u8];
        bytes.extend((0..IMAGE_BYTES).map(|i| (i % 251) as u8));
        bytes.push(0);
        bytes.extend(std::iter::repeat_n(255u8, IMAGE_BYTES));
        fs::write(batch_path(dir.path(), "data_batch_1.bin"), &bytes).unwrap();
        let ds = read_cifar10(dir.path()).unwrap();
        assert_eq!(ds.train.len(), 2 + 3 * 3 + 1);
        assert_eq!(&ds.train.labels[..2], &[7, 0]);
        assert_eq!(ds.train.image(0)[1023], (1023 % 251) as u8);
        assert_eq!(ds.train.image(0)[3071], (3071 % 251) as u8);
        assert!(ds.train.image(1).iter().all(|&p| p == 255));
    }

    #[test]
    fn meta_names_skip_blank_lines_and_trim() {
        let dir = tempfile::tempdir().unwrap();
        write_cifar10(dir.path(), &small_dataset(3), 3).unwrap();
        // The official file ends with a blank line; Windows copies may carry \r.
        let text = format!("\n{}\r\n\n\n", NAMES.join("\r\n"));
        fs::write(batch_path(dir.path(), META_FILE), text).unwrap();
        assert_eq!(read_cifar10(dir.path()).unwrap().class_names, NAMES);
    }

    #[test]
    fn wrong_number_of_class_names_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        write_cifar10(dir.path(), &small_dataset(4), 3).unwrap();
        fs::write(batch_path(dir.path(), META_FILE), "cat\ndog\n").unwrap();
        let err = read_cifar10(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::BadClassNames { found: 2, .. }), "{err}");
        assert!(err.to_string().contains(META_FILE));
    }

    #[test]
    fn truncated_file_names_file_size_and_expectation() {
        let dir = tempfile::tempdir().unwrap();
        write_cifar10(dir.path(), &small_dataset(5), 3).unwrap();
        let path = batch_path(dir.path(), "data_batch_3.bin");
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
        let err = read_cifar10(dir.path()).unwrap_err();
        let size = 3 * RECORD_BYTES as u64 - 100;
        assert!(matches!(&err, DataError::BadFileSize { path: p, size: s, .. } if *p == path && *s == size));
        let msg = err.to_string();
        assert!(msg.contains("data_batch_3.bin"), "{msg}");
        assert!(msg.contains(&format!("{size} bytes")), "{msg}");
        assert!(
            msg.contains(
                "expected a multiple of 3073 bytes (10 000 records = 30 730 000 bytes in the real dataset)"
            ),
            "{msg}"
        );
    }

    #[test]
    fn a_zero_byte_file_is_called_empty() {
        let dir = tempfile::tempdir().unwrap();
        write_cifar10(dir.path(), &small_dataset(5), 3).unwrap();
        for name in TRAIN_FILES.iter().chain([&TEST_FILE]) {
            fs::write(batch_path(dir.path(), name), b"").unwrap();
        }
        let err = read_cifar10(dir.path()).unwrap_err();
        assert!(matches!(&err, DataError::EmptyFile { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("data_batch_1.bin is empty (0 bytes)"), "{msg}");
        assert!(!msg.contains("validation images"), "{msg}");
    }

    #[test]
    fn label_out_of_range_names_file_and_record() {
        let dir = tempfile::tempdir().unwrap();
        write_cifar10(dir.path(), &small_dataset(6), 3).unwrap();
        let path = batch_path(dir.path(), TEST_FILE);
        let mut bytes = fs::read(&path).unwrap();
        bytes[2 * RECORD_BYTES] = 10;
        fs::write(&path, &bytes).unwrap();
        let err = read_cifar10(dir.path()).unwrap_err();
        assert!(
            matches!(
                &err,
                DataError::BadLabel {
                    index: 2,
                    label: 10,
                    ..
                }
            ),
            "{err}"
        );
        let msg = err.to_string();
        assert!(msg.contains(TEST_FILE) && msg.contains("record 2"), "{msg}");
    }

    #[test]
    fn missing_file_names_it_and_says_how_to_get_it() {
        let dir = tempfile::tempdir().unwrap();
        write_cifar10(dir.path(), &small_dataset(7), 3).unwrap();
        fs::remove_file(batch_path(dir.path(), "data_batch_4.bin")).unwrap();
        assert!(!cifar10_present(dir.path()));
        let err = read_cifar10(dir.path()).unwrap_err();
        assert!(matches!(&err, DataError::MissingFile { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("data_batch_4.bin is missing"), "{msg}");
        assert!(
            msg.contains(&dir.path().join(DATA_DIR).display().to_string()),
            "{msg}"
        );
        assert!(
            msg.contains("test_batch.bin") && msg.contains("batches.meta.txt"),
            "{msg}"
        );
        assert!(msg.contains("download"), "{msg}");
    }

    #[test]
    fn empty_root_is_not_present() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!cifar10_present(dir.path()));
        assert!(matches!(
            read_cifar10(dir.path()),
            Err(DataError::MissingFile { .. })
        ));
    }

    #[test]
    fn writer_refuses_what_the_format_cannot_hold() {
        let dir = tempfile::tempdir().unwrap();
        let ds = small_dataset(8);
        // 13 training images cannot fit in 5 files of 2.
        assert!(matches!(
            write_cifar10(dir.path(), &ds, 2),
            Err(DataError::NotWritable { .. })
        ));
        let mut bad = ds.clone();
        bad.test.labels[1] = 12;
        assert!(matches!(
            write_cifar10(dir.path(), &bad, 3),
            Err(DataError::NotWritable { .. })
        ));
        let mut bad = ds.clone();
        bad.train.pixels.pop();
        assert!(matches!(
            write_cifar10(dir.path(), &bad, 3),
            Err(DataError::NotWritable { .. })
        ));
        let mut bad = ds.clone();
        bad.train.shape = InputShape::MNIST;
        assert!(matches!(
            write_cifar10(dir.path(), &bad, 3),
            Err(DataError::NotWritable { .. })
        ));
        let mut bad = ds;
        bad.class_names.pop();
        assert!(matches!(
            write_cifar10(dir.path(), &bad, 3),
            Err(DataError::NotWritable { .. })
        ));
        assert!(
            !dir.path().join(DATA_DIR).exists(),
            "nothing is written when the dataset is refused"
        );
    }
}

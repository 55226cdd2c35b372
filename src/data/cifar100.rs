//! The CIFAR-100 binary format: `cifar-100-binary/train.bin` and `test.bin`, records of a coarse label byte,
//! a fine label byte and 3072 pixel bytes (32×32 red, then green, then blue); class names in
//! `fine_label_names.txt` and `coarse_label_names.txt`. Any whole number of records is read, so tests and
//! users' subsets can use small files.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use super::config::Cifar100Labels;
use super::download::{ArchiveLayout, DownloadSpec, Wanted, ensure_archive};
use super::error::DataError;
use super::shape::InputShape;
use super::{Dataset, ImageSet};

/// Bytes of one image.
const IMAGE_BYTES: usize = InputShape::CIFAR.values();

/// Directory inside the dataset root that holds the files (as the official archive unpacks).
pub const DATA_DIR: &str = super::cifar10_layout::CIFAR100_DIR;
/// The training file (50 000 records in the official archive).
pub const TRAIN_FILE: &str = "train.bin";
/// The test file (10 000 records in the official archive).
pub const TEST_FILE: &str = "test.bin";
/// The 100 fine class names, one per line.
pub const FINE_NAMES: &str = "fine_label_names.txt";
/// The 20 coarse class names, one per line.
pub const COARSE_NAMES: &str = "coarse_label_names.txt";
/// Bytes per record: coarse label, fine label, image.
pub const RECORD_BYTES: usize = 2 + IMAGE_BYTES;
/// Records in the official training file.
pub const TRAIN_RECORDS: usize = 50_000;
/// Records in the official test file.
pub const TEST_RECORDS: usize = 10_000;
/// The official archive's name.
pub const ARCHIVE: &str = "cifar-100-binary.tar.gz";
/// Where the CIFAR-100 authors publish the binary version.
pub const URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz";
/// MD5 of `cifar-100-binary.tar.gz` as published on the CIFAR page.
pub const MD5: &str = "03b5dce01913d631647c71ecec9e9cb8";
/// Default dataset root.
pub const DEFAULT_ROOT: &str = "data/cifar100";

/// Every file the reader needs, relative to `DATA_DIR`.
pub fn required_files() -> Vec<&'static str> {
    vec![TRAIN_FILE, TEST_FILE, FINE_NAMES, COARSE_NAMES]
}

/// The archive's layout, for the download.
pub fn layout() -> ArchiveLayout {
    ArchiveLayout {
        dir: DATA_DIR,
        required: required_files(),
        optional: Vec::new(),
        sibling: Some((
            super::cifar10_layout::DATA_DIR,
            "the CIFAR-10 binary dataset",
            "write `dataset: cifar10` to train on it",
        )),
        expected: "CIFAR-100",
        archive: ARCHIVE,
    }
}

/// Tells the user which files to put where to install CIFAR-100 without labpipe's download.
pub fn manual_install_hint(root: &Path) -> String {
    format!(
        "To install CIFAR-100 by hand, unpack {ARCHIVE} (see https://www.cs.toronto.edu/~kriz/cifar.html) so \
         that {TRAIN_FILE}, {TEST_FILE}, {FINE_NAMES} and {COARSE_NAMES} are in {}; or let labpipe download it \
         (`data.url` can point at a mirror)",
        root.join(DATA_DIR).display()
    )
}

/// Downloads and extracts CIFAR-100 into `root` when its files are not there.
pub fn ensure(root: &Path, spec: &DownloadSpec, progress: bool) -> Result<(), DataError> {
    let wanted = Wanted {
        dataset: "CIFAR-100",
        file: ARCHIVE.to_string(),
        hint: manual_install_hint(root),
        md5_settable: true,
    };
    ensure_archive(root, spec, &layout(), &wanted, progress)
}

/// The official archive.
pub fn download_spec() -> DownloadSpec {
    DownloadSpec {
        url: URL.to_string(),
        md5: MD5.to_string(),
        // The page publishes only the MD5; it alone identifies the file.
        size: None,
    }
}

/// Reads CIFAR-100 under `root/cifar-100-binary/` with the fine or the coarse labels.
pub fn read(root: &Path, labels: Cifar100Labels) -> Result<Dataset, DataError> {
    let dir = root.join(DATA_DIR);
    let train = read_records(root, &dir.join(TRAIN_FILE), labels)?;
    let test = read_records(root, &dir.join(TEST_FILE), labels)?;
    let (names_file, count) = match labels {
        Cifar100Labels::Fine => (FINE_NAMES, 100),
        Cifar100Labels::Coarse => (COARSE_NAMES, 20),
    };
    let class_names = read_names(root, &dir.join(names_file), count)?;
    Ok(Dataset {
        train,
        test,
        class_names,
    })
}

/// Records in a CIFAR-100 file of `size` bytes, or `None` when it is not a whole number of them.
pub fn records_in(size: u64) -> Option<usize> {
    size.is_multiple_of(RECORD_BYTES as u64)
        .then_some((size / RECORD_BYTES as u64) as usize)
}

fn read_file(root: &Path, path: &Path) -> Result<Vec<u8>, DataError> {
    fs::read(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => DataError::MissingFile {
            dataset: "CIFAR-100",
            path: path.to_path_buf(),
            hint: manual_install_hint(root),
        },
        _ => DataError::io("read", path, e),
    })
}

fn read_records(root: &Path, path: &Path, labels: Cifar100Labels) -> Result<ImageSet, DataError> {
    let bytes = read_file(root, path)?;
    let bad_size = |other: String| DataError::BadFileSize {
        path: path.to_path_buf(),
        size: bytes.len() as u64,
        record: RECORD_BYTES,
        real: "train.bin: 50 000 records = 153 700 000 bytes, test.bin: 10 000 records = 30 740 000 bytes",
        dataset: "CIFAR-100",
        dir: DATA_DIR,
        other,
    };
    if bytes.is_empty() {
        return Err(bad_size(String::new()));
    }
    if records_in(bytes.len() as u64).is_none() {
        let other = if bytes.len() % super::cifar10_layout::RECORD_BYTES == 0 {
            "; its size is a whole number of 3073-byte CIFAR-10 records: for CIFAR-10 files write \
             `dataset: cifar10`"
                .to_string()
        } else {
            String::new()
        };
        return Err(bad_size(other));
    }
    let column = match labels {
        Cifar100Labels::Coarse => 0,
        Cifar100Labels::Fine => 1,
    };
    let records = bytes.len() / RECORD_BYTES;
    let mut pixels = Vec::with_capacity(records * IMAGE_BYTES);
    let mut labels = Vec::with_capacity(records);
    for (index, record) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
        // Both labels are checked: a CIFAR-10 file that happens to fit the size has pixels where they are.
        for (c, limit) in [(0, 20usize), (1, 100usize)] {
            if usize::from(record[c]) >= limit {
                return Err(DataError::BadLabel {
                    path: path.to_path_buf(),
                    index,
                    label: record[c],
                    classes: limit,
                    dataset: "CIFAR-100",
                    note: if c == 0 {
                        " (coarse label)"
                    } else {
                        " (fine label)"
                    },
                });
            }
        }
        labels.push(record[column]);
        pixels.extend_from_slice(&record[2..]);
    }
    Ok(ImageSet {
        shape: InputShape::CIFAR,
        pixels,
        labels,
    })
}

fn read_names(root: &Path, path: &Path, expected: usize) -> Result<Vec<String>, DataError> {
    let bytes = read_file(root, path)?;
    let names: Vec<String> = String::from_utf8_lossy(&bytes)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if names.len() != expected {
        return Err(DataError::BadClassNames {
            path: path.to_path_buf(),
            found: names.len(),
            expected,
        });
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes records (coarse, fine, first pixel) and `n_fine`/20 names under `root`.
    fn write(root: &Path, train: &[(u8, u8, u8)], test: &[(u8, u8, u8)], n_fine: usize) {
        let dir = root.join(DATA_DIR);
        fs::create_dir_all(&dir).unwrap();
        for (name, records) in [(TRAIN_FILE, train), (TEST_FILE, test)] {
            let mut out = Vec::new();
            for &(c, f, p) in records {
                out.extend([c, f]);
                out.extend((0..IMAGE_BYTES).map(|i| p.wrapping_add(i as u8)));
            }
            fs::write(dir.join(name), out).unwrap();
        }
        let fine: Vec<String> = (0..n_fine).map(|i| format!("fine{i}")).collect();
        let coarse: Vec<String> = (0..20).map(|i| format!("coarse{i}")).collect();
        fs::write(dir.join(FINE_NAMES), fine.join("\n") + "\n").unwrap();
        fs::write(dir.join(COARSE_NAMES), coarse.join("\n") + "\n").unwrap();
    }

    #[test]
    fn fine_and_coarse_labels_come_from_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[(3, 42, 7), (19, 99, 1)], &[(0, 0, 5)], 100);
        let fine = read(dir.path(), Cifar100Labels::Fine).unwrap();
        assert_eq!(fine.train.labels, vec![42, 99]);
        assert_eq!(fine.class_names.len(), 100);
        assert_eq!(fine.class_names[42], "fine42");
        assert_eq!(fine.train.image(0)[0], 7);
        assert_eq!(fine.train.image(1)[3071], 1u8.wrapping_add(3071u16 as u8));
        let coarse = read(dir.path(), Cifar100Labels::Coarse).unwrap();
        assert_eq!(coarse.train.labels, vec![3, 19]);
        assert_eq!(
            coarse.class_names,
            (0..20).map(|i| format!("coarse{i}")).collect::<Vec<_>>()
        );
        assert_eq!(coarse.test.len(), 1);
    }

    #[test]
    fn cifar10_records_are_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[(1, 1, 0)], &[(0, 0, 0)], 100);
        // Three CIFAR-10 records (3 × 3073 bytes) is not a whole number of CIFAR-100 records.
        fs::write(dir.path().join(DATA_DIR).join(TRAIN_FILE), vec![0u8; 3 * 3073]).unwrap();
        let err = read(dir.path(), Cifar100Labels::Fine).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("train.bin") && msg.contains("multiple of 3074"),
            "{msg}"
        );
        assert!(
            msg.contains("CIFAR-10 records") && msg.contains("dataset: cifar10"),
            "{msg}"
        );
    }

    #[test]
    fn a_label_beyond_the_classes_names_file_record_and_kind() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[(1, 1, 0)], &[(0, 0, 0), (2, 100, 0)], 100);
        let err = read(dir.path(), Cifar100Labels::Coarse).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("test.bin record 1") && msg.contains("label 100"),
            "{msg}"
        );
        assert!(msg.contains("0..=99") && msg.contains("fine label"), "{msg}");
    }

    #[test]
    fn missing_and_short_name_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[(1, 1, 0)], &[(0, 0, 0)], 99);
        let err = read(dir.path(), Cifar100Labels::Fine).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::BadClassNames {
                    found: 99,
                    expected: 100,
                    ..
                }
            ),
            "{err}"
        );
        fs::remove_file(dir.path().join(DATA_DIR).join(TEST_FILE)).unwrap();
        let msg = read(dir.path(), Cifar100Labels::Fine).unwrap_err().to_string();
        assert!(
            msg.contains("CIFAR-100 file") && msg.contains("test.bin is missing"),
            "{msg}"
        );
        assert!(msg.contains(ARCHIVE), "{msg}");
    }
}

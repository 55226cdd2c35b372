//! MNIST and Fashion-MNIST: the four IDX files (gzip-compressed as published), their downloads from the
//! mirrors torchvision uses, and a reader that checks every header.
//!
//! An IDX file is a big-endian header (magic `0x00000803` for images, `0x00000801` for labels, the item
//! count, and for images the rows and columns) followed by one byte per pixel or label.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use super::download::{Wanted, fetch_from_mirrors};
use super::error::DataError;

/// Magic number of an IDX file of unsigned bytes in three dimensions (images).
pub const IMAGE_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes in one dimension (labels).
pub const LABEL_MAGIC: u32 = 0x0000_0801;
/// Image side in pixels.
pub const SIDE: usize = 28;
/// Classes in both datasets.
pub const CLASSES: usize = 10;
/// Images in the official training files.
pub const TRAIN_RECORDS: usize = 60_000;
/// Images in the official test files.
pub const TEST_RECORDS: usize = 10_000;

/// Which of the two IDX datasets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdxDataset {
    /// Handwritten digits.
    Mnist,
    /// Zalando's article images.
    FashionMnist,
}

/// One of the four files: its name, MD5 and size as torchvision lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// File name, also the last segment of its URL.
    pub name: &'static str,
    /// MD5 of the `.gz` file.
    pub md5: String,
    /// Size of the `.gz` file in bytes.
    pub size: u64,
}

/// Training images file.
pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte.gz";
/// Training labels file.
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte.gz";
/// Test images file.
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte.gz";
/// Test labels file.
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte.gz";

const FASHION_NAMES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

impl IdxDataset {
    /// The display name.
    pub fn display(self) -> &'static str {
        match self {
            IdxDataset::Mnist => "MNIST",
            IdxDataset::FashionMnist => "Fashion-MNIST",
        }
    }

    /// The default root folder.
    pub fn default_root(self) -> &'static str {
        match self {
            IdxDataset::Mnist => "data/mnist",
            IdxDataset::FashionMnist => "data/fashion_mnist",
        }
    }

    /// Where the files are published, tried in order (torchvision's `mirrors`).
    pub fn mirrors(self) -> Vec<String> {
        let list: &[&str] = match self {
            IdxDataset::Mnist => &[
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "http://yann.lecun.com/exdb/mnist/",
            ],
            IdxDataset::FashionMnist => &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        };
        list.iter().map(|s| s.to_string()).collect()
    }

    /// The four files with torchvision's MD5s and their published sizes.
    pub fn resources(self) -> [Resource; 4] {
        let r = |name, md5: &str, size| Resource {
            name,
            md5: md5.to_string(),
            size,
        };
        match self {
            IdxDataset::Mnist => [
                r(TRAIN_IMAGES, "f68b3c2dcbeaaa9fbdd348bbdeb94873", 9_912_422),
                r(TRAIN_LABELS, "d53e105ee54ea40749a09fcbcd1e9432", 28_881),
                r(TEST_IMAGES, "9fb629c4189551a2d022fa330f9573f3", 1_648_877),
                r(TEST_LABELS, "ec29112dd5afa0611ce80d1b7f02629c", 4_542),
            ],
            IdxDataset::FashionMnist => [
                r(TRAIN_IMAGES, "8d4fb7e6c68d591d4c3dfef9ec88bf0d", 26_421_880),
                r(TRAIN_LABELS, "25c81989df183df01b3e8a0aad5dffbe", 29_515),
                r(TEST_IMAGES, "bef4ecab320f06d8554ea6380940ec79", 4_422_102),
                r(TEST_LABELS, "bb300cfdad3c16e7a12a480ee83cd310", 5_148),
            ],
        }
    }

    /// Class names, index = label: MNIST's digits, Fashion-MNIST's official names.
    pub fn class_names(self) -> Vec<String> {
        match self {
            IdxDataset::Mnist => (0..10).map(|d| d.to_string()).collect(),
            IdxDataset::FashionMnist => FASHION_NAMES.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Tells the user which files to put where, or how to name a mirror.
    pub fn install_hint(self, root: &Path) -> String {
        format!(
            "To install {} by hand, put {TRAIN_IMAGES}, {TRAIN_LABELS}, {TEST_IMAGES} and {TEST_LABELS} in {}; \
             or let labpipe download them (`data.url` can name a mirror folder that holds the four files)",
            self.display(),
            root.display()
        )
    }
}

/// The images and labels of one split, images as 28×28 bytes each, row-major.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IdxSplit {
    /// `labels.len() * 784` bytes.
    pub pixels: Vec<u8>,
    /// One class index per image.
    pub labels: Vec<u8>,
}

/// Both splits of an IDX dataset, as read.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxData {
    /// The training files.
    pub train: IdxSplit,
    /// The test files.
    pub test: IdxSplit,
    /// Class names.
    pub class_names: Vec<String>,
}

/// The path of `name` under `root`: the `.gz` as published, or the file unpacked by hand (without `.gz`).
fn locate(root: &Path, name: &str) -> PathBuf {
    let gz = root.join(name);
    let plain = root.join(name.trim_end_matches(".gz"));
    if !gz.is_file() && plain.is_file() {
        plain
    } else {
        gz
    }
}

/// True when all four files are under `root` (compressed or not).
pub fn present(root: &Path) -> bool {
    [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS]
        .iter()
        .all(|n| locate(root, n).is_file())
}

/// Downloads whichever of the four files are missing from `root`, from `mirror` (a folder URL) or the
/// dataset's mirror list; each is checked by size and MD5 before it is put in place.
pub fn ensure(root: &Path, which: IdxDataset, mirror: Option<&str>, progress: bool) -> Result<(), DataError> {
    let mirrors = match mirror {
        Some(m) if m.ends_with('/') => vec![m.to_string()],
        Some(m) => vec![format!("{m}/")],
        None => which.mirrors(),
    };
    ensure_files(root, which, &which.resources(), &mirrors, progress)
}

/// Downloads whichever of `resources` are missing from `root`, trying `mirrors` (folder URLs ending in `/`)
/// in order for each.
pub fn ensure_files(
    root: &Path,
    which: IdxDataset,
    resources: &[Resource],
    mirrors: &[String],
    progress: bool,
) -> Result<(), DataError> {
    for res in resources {
        if locate(root, res.name).is_file() {
            continue;
        }
        std::fs::create_dir_all(root).map_err(|e| DataError::io("create directory", root, e))?;
        let wanted = Wanted {
            dataset: which.display(),
            file: res.name.to_string(),
            hint: which.install_hint(root),
            md5_settable: false,
        };
        let dest = root.join(res.name);
        fetch_from_mirrors(root, mirrors, &res.md5, Some(res.size), &wanted, &dest, progress)?;
    }
    Ok(())
}

/// Reads the four files under `root`.
pub fn read(root: &Path, which: IdxDataset) -> Result<IdxData, DataError> {
    let split = |images, labels| read_split(root, which, images, labels);
    Ok(IdxData {
        train: split(TRAIN_IMAGES, TRAIN_LABELS)?,
        test: split(TEST_IMAGES, TEST_LABELS)?,
        class_names: which.class_names(),
    })
}

fn read_split(root: &Path, which: IdxDataset, images: &str, labels: &str) -> Result<IdxSplit, DataError> {
    let images_path = locate(root, images);
    let labels_path = locate(root, labels);
    let (count, pixels) = read_idx(root, which, &images_path, IdxKind::Images)?;
    let (label_count, labels) = read_idx(root, which, &labels_path, IdxKind::Labels)?;
    if count != label_count {
        return Err(DataError::IdxCountMismatch {
            images: images_path,
            images_count: count,
            labels: labels_path,
            labels_count: label_count,
        });
    }
    if let Some((index, &label)) = labels
        .iter()
        .enumerate()
        .find(|(_, l)| usize::from(**l) >= CLASSES)
    {
        return Err(DataError::BadLabel {
            path: labels_path,
            index,
            label,
            classes: CLASSES,
            dataset: which.display(),
            note: "",
        });
    }
    Ok(IdxSplit { pixels, labels })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum IdxKind {
    Images,
    Labels,
}

/// Reads an IDX file (gzip when its name ends in `.gz`) and checks its header: returns the item count and
/// the data bytes.
fn read_idx(
    root: &Path,
    which: IdxDataset,
    path: &Path,
    kind: IdxKind,
) -> Result<(usize, Vec<u8>), DataError> {
    let file = File::open(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => DataError::MissingFile {
            dataset: which.display(),
            path: path.to_path_buf(),
            hint: which.install_hint(root),
        },
        _ => DataError::io("read", path, e),
    })?;
    let mut bytes = Vec::new();
    let gz = path.extension().is_some_and(|e| e == "gz");
    if gz {
        GzDecoder::new(file)
            .read_to_end(&mut bytes)
            .map_err(|source| DataError::NotGzip {
                path: path.to_path_buf(),
                source,
            })?;
    } else {
        let mut file = file;
        file.read_to_end(&mut bytes)
            .map_err(|e| DataError::io("read", path, e))?;
    }
    let header = match kind {
        IdxKind::Images => 16,
        IdxKind::Labels => 8,
    };
    let word =
        |i: usize| u32::from_be_bytes([bytes[4 * i], bytes[4 * i + 1], bytes[4 * i + 2], bytes[4 * i + 3]]);
    let (expected_magic, other_magic, kind_word) = match kind {
        IdxKind::Images => (IMAGE_MAGIC, LABEL_MAGIC, "image"),
        IdxKind::Labels => (LABEL_MAGIC, IMAGE_MAGIC, "label"),
    };
    if bytes.len() < 4 || word(0) != expected_magic {
        let found = if bytes.len() >= 4 { word(0) } else { 0 };
        let note = if found == other_magic {
            "; it is an IDX file of the other kind: are the image and label files swapped?"
        } else if found >> 16 == 0x1f8b {
            "; it is gzip-compressed but its name does not end in .gz"
        } else if bytes.len() < 4 {
            "; the file is shorter than an IDX header"
        } else {
            ""
        };
        return Err(DataError::IdxBadMagic {
            path: path.to_path_buf(),
            kind: kind_word,
            found,
            expected: expected_magic,
            note,
        });
    }
    if bytes.len() < header {
        return Err(DataError::IdxTruncated {
            path: path.to_path_buf(),
            state: "truncated",
            expected: header as u64,
            actual: bytes.len() as u64,
        });
    }
    let count = word(1) as usize;
    let item = match kind {
        IdxKind::Images => {
            let (rows, cols) = (word(2), word(3));
            if rows as usize != SIDE || cols as usize != SIDE {
                return Err(DataError::IdxBadDims {
                    path: path.to_path_buf(),
                    rows,
                    cols,
                });
            }
            SIDE * SIDE
        }
        IdxKind::Labels => 1,
    };
    let expected = header as u64 + count as u64 * item as u64;
    if bytes.len() as u64 != expected {
        return Err(DataError::IdxTruncated {
            path: path.to_path_buf(),
            state: if (bytes.len() as u64) < expected {
                "truncated"
            } else {
                "longer than its header says"
            },
            expected,
            actual: bytes.len() as u64,
        });
    }
    bytes.drain(..header);
    Ok((count, bytes))
}

/// Records in an IDX file, read from its header (decompressing only the first bytes); `None` when unreadable.
pub fn record_count(path: &Path) -> Option<usize> {
    let file = File::open(path).ok()?;
    let mut head = [0u8; 8];
    if path.extension().is_some_and(|e| e == "gz") {
        GzDecoder::new(file).read_exact(&mut head).ok()?;
    } else {
        let mut file = file;
        file.read_exact(&mut head).ok()?;
    }
    Some(u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize)
}

/// The path a file of the dataset is read from (for messages and counts).
pub fn path_of(root: &Path, name: &str) -> PathBuf {
    locate(root, name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn images(n: u32, rows: u32) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [IMAGE_MAGIC, n, rows, 28] {
            b.extend(w.to_be_bytes());
        }
        b.extend((0..n as usize * rows as usize * 28).map(|i| (i % 256) as u8));
        b
    }

    fn labels(values: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [LABEL_MAGIC, values.len() as u32] {
            b.extend(w.to_be_bytes());
        }
        b.extend(values);
        b
    }

    fn write_all(root: &Path, train: (Vec<u8>, Vec<u8>), test: (Vec<u8>, Vec<u8>)) {
        for (name, bytes) in [
            (TRAIN_IMAGES, train.0),
            (TRAIN_LABELS, train.1),
            (TEST_IMAGES, test.0),
            (TEST_LABELS, test.1),
        ] {
            std::fs::write(root.join(name), gz(&bytes)).unwrap();
        }
    }

    fn message(root: &Path) -> String {
        read(root, IdxDataset::Mnist).unwrap_err().to_string()
    }

    #[test]
    fn reads_images_labels_and_names() {
        let dir = tempfile::tempdir().unwrap();
        write_all(
            dir.path(),
            (images(3, 28), labels(&[1, 9, 0])),
            (images(2, 28), labels(&[4, 4])),
        );
        let d = read(dir.path(), IdxDataset::Mnist).unwrap();
        assert_eq!(d.train.labels, vec![1, 9, 0]);
        assert_eq!(d.train.pixels.len(), 3 * 784);
        assert_eq!(d.train.pixels[785], (785 % 256) as u8);
        assert_eq!(d.test.labels, vec![4, 4]);
        assert_eq!(d.class_names[3], "3");
        assert_eq!(IdxDataset::FashionMnist.class_names()[0], "T-shirt/top");
        assert_eq!(record_count(&dir.path().join(TRAIN_IMAGES)), Some(3));
    }

    #[test]
    fn unpacked_files_are_read_too() {
        let dir = tempfile::tempdir().unwrap();
        write_all(
            dir.path(),
            (images(1, 28), labels(&[1])),
            (images(1, 28), labels(&[2])),
        );
        std::fs::remove_file(dir.path().join(TEST_LABELS)).unwrap();
        std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), labels(&[7])).unwrap();
        assert!(present(dir.path()));
        assert_eq!(read(dir.path(), IdxDataset::Mnist).unwrap().test.labels, vec![7]);
    }

    #[test]
    fn every_bad_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let good = || ((images(2, 28), labels(&[1, 2])), (images(1, 28), labels(&[3])));
        // Missing.
        write_all(root, good().0, good().1);
        std::fs::remove_file(root.join(TRAIN_LABELS)).unwrap();
        let msg = message(root);
        assert!(
            msg.contains("MNIST file") && msg.contains("train-labels-idx1-ubyte.gz is missing"),
            "{msg}"
        );
        // Truncated.
        let (mut imgs, lbls) = good().0;
        imgs.truncate(imgs.len() - 10);
        write_all(root, (imgs, lbls), good().1);
        let msg = message(root);
        assert!(msg.contains("train-images-idx3-ubyte.gz is truncated"), "{msg}");
        assert!(msg.contains(&format!("{}", 16 + 2 * 784)), "{msg}");
        // Wrong magic: files swapped.
        write_all(root, (labels(&[1, 2]), images(2, 28)), good().1);
        let msg = message(root);
        assert!(
            msg.contains("train-images-idx3-ubyte.gz is not an IDX image file"),
            "{msg}"
        );
        assert!(msg.contains("0x00000801") && msg.contains("swapped"), "{msg}");
        // Wrong size.
        write_all(root, (images(2, 32), labels(&[1, 2])), good().1);
        assert!(message(root).contains("32×28 pixels, expected 28×28"));
        // Counts differ.
        write_all(root, good().0, (images(1, 28), labels(&[3, 4])));
        let msg = message(root);
        assert!(msg.contains("t10k-images-idx3-ubyte.gz holds 1 images"), "{msg}");
        assert!(msg.contains("t10k-labels-idx1-ubyte.gz holds 2 labels"), "{msg}");
        // Label out of range.
        write_all(root, good().0, (images(1, 28), labels(&[10])));
        let msg = message(root);
        assert!(
            msg.contains("t10k-labels-idx1-ubyte.gz record 0") && msg.contains("0..=9"),
            "{msg}"
        );
        // Not gzip.
        std::fs::write(root.join(TEST_IMAGES), b"plain text").unwrap();
        let msg = message(root);
        assert!(
            msg.contains("t10k-images-idx3-ubyte.gz is not a readable gzip file"),
            "{msg}"
        );
    }
}

//! Where CIFAR-10's binary files live and what they are called: shared by the reader, the download and the
//! error messages that tell a user how to install the files by hand.

use super::shape::InputShape;
use std::path::Path;

/// Bytes of one stored image: 32×32, all red, then green, then blue.
pub const IMAGE_BYTES: usize = InputShape::CIFAR.values();

/// Directory inside the dataset root that holds the batch files (as the official archive unpacks).
pub const DATA_DIR: &str = "cifar-10-batches-bin";
/// The directory CIFAR-100's binary archive unpacks to: named here so that CIFAR-10's download can recognise
/// it (and tell the user) without importing the CIFAR-100 reader.
pub const CIFAR100_DIR: &str = "cifar-100-binary";
/// Training batch files, read in this order.
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// The test batch file.
pub const TEST_FILE: &str = "test_batch.bin";
/// Class names, one per line, index = label.
pub const META_FILE: &str = "batches.meta.txt";
/// Bytes per record: the label byte and the image.
pub const RECORD_BYTES: usize = 1 + IMAGE_BYTES;
/// Number of classes; labels are `0..NUM_CLASSES`.
pub const NUM_CLASSES: usize = 10;
/// Records in each official file.
pub const RECORDS_PER_FILE: usize = 10_000;
/// Images in the official training set (five files).
pub const TRAIN_IMAGES: usize = RECORDS_PER_FILE * TRAIN_FILES.len();

/// Every file the reader needs, relative to `DATA_DIR`.
pub fn required_files() -> Vec<&'static str> {
    let mut files = TRAIN_FILES.to_vec();
    files.push(TEST_FILE);
    files.push(META_FILE);
    files
}

/// True when every file [`read_cifar10`] needs exists under `root` (their contents are checked on reading).
pub fn cifar10_present(root: &Path) -> bool {
    let dir = root.join(DATA_DIR);
    required_files().iter().all(|f| dir.join(f).is_file())
}

/// Tells the user which files to put where to install CIFAR-10 without labpipe's download.
pub fn manual_install_hint(root: &Path) -> String {
    format!(
        "To install CIFAR-10 by hand, put data_batch_1.bin … data_batch_5.bin, {TEST_FILE} and {META_FILE} \
         (from cifar-10-binary.tar.gz, see https://www.cs.toronto.edu/~kriz/cifar.html) in {}; or let labpipe \
         download them (`data.url` can point at a mirror)",
        root.join(DATA_DIR).display()
    )
}

/// What a batch file of `size` bytes that is not whole CIFAR-10 records is instead, when it is whole
/// CIFAR-100 records (starts with "; "), else nothing.
pub fn other_format_note(size: usize) -> String {
    if size.is_multiple_of(RECORD_BYTES + 1) {
        "; its size is a whole number of 3074-byte CIFAR-100 records: for CIFAR-100 files write \
         `dataset: cifar100`"
            .to_string()
    } else {
        String::new()
    }
}

//! Errors from reading, writing and downloading datasets, each naming the file or URL and what to do.

use std::path::{Path, PathBuf};

use super::cifar10_layout::DATA_DIR;

/// Everything that can go wrong while getting a dataset from disk or the network into memory.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file system operation failed on `path`.
    #[error("could not {action} {}: {source}", .path.display())]
    Io {
        /// What was being done, e.g. "read" or "create directory".
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A dataset file the reader needs does not exist.
    #[error("{dataset} file {} is missing. {hint}", .path.display())]
    MissingFile {
        /// The dataset's display name, e.g. "CIFAR-10".
        dataset: &'static str,
        /// The file that was expected.
        path: PathBuf,
        /// Which files to put where, or how to let labpipe download them.
        hint: String,
    },

    /// A batch file is not a whole number of records.
    #[error(
        "{} is {size} bytes, expected a multiple of {record} bytes ({real} in the real dataset); the file is \
         truncated or is not a {dataset} binary batch{other}: delete the `{dir}` directory and let labpipe \
         download the dataset again",
        .path.display()
    )]
    BadFileSize {
        /// The batch file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// Bytes per record.
        record: usize,
        /// The size of the official file, in words.
        real: &'static str,
        /// The dataset's display name.
        dataset: &'static str,
        /// The dataset's folder under the root.
        dir: &'static str,
        /// What the size says the file is instead, when it fits another format (starts with "; ").
        other: String,
    },

    /// A record's label is not a class index.
    #[error(
        "{} record {index} (0-based) has label {label}, expected 0..={}: the file is corrupt or not a {dataset} \
         file{note}",
        .path.display(), .classes - 1
    )]
    BadLabel {
        /// The file holding the labels.
        path: PathBuf,
        /// 0-based record index within the file.
        index: usize,
        /// The label found.
        label: u8,
        /// The dataset's class count.
        classes: usize,
        /// The dataset's display name.
        dataset: &'static str,
        /// More on the likely cause (starts with " ("), or empty.
        note: &'static str,
    },

    /// The class-name file does not list the expected number of names.
    #[error(
        "{} lists {found} class names, expected {expected} (one per line, blank lines ignored, index = label)",
        .path.display()
    )]
    BadClassNames {
        /// The meta file.
        path: PathBuf,
        /// How many non-blank lines it had.
        found: usize,
        /// How many the dataset has.
        expected: usize,
    },

    /// The pipeline asks for more images than the dataset's files hold.
    #[error(
        "`data.{field}: {asked}` asks for {asked} {which} images, but the {dataset} files hold {available}{files}; \
         lower `data.{field}` to at most {available} or remove it to use them all"
    )]
    TooFewImages {
        /// `train_size` or `test_size`.
        field: &'static str,
        /// "training" or "test".
        which: &'static str,
        /// What the pipeline asked for.
        asked: usize,
        /// What the files hold.
        available: usize,
        /// The dataset's display name.
        dataset: String,
        /// The files and their record counts, e.g. " (data_batch_1.bin: 7, …)".
        files: String,
    },

    /// The files hold another dataset than the one the pipeline names.
    #[error(
        "{} holds {found}, not {expected}: {advice}",
        .path.display()
    )]
    OtherDataset {
        /// The archive, file or folder.
        path: PathBuf,
        /// What it holds, e.g. "the CIFAR-100 binary dataset".
        found: &'static str,
        /// What the pipeline asked for.
        expected: &'static str,
        /// What to do, e.g. "write `dataset: cifar100`".
        advice: &'static str,
    },

    /// An IDX file (MNIST's format) does not start with the magic number its kind needs.
    #[error(
        "{} is not an IDX {kind} file: it starts with 0x{found:08x}, expected 0x{expected:08x}{note}",
        .path.display()
    )]
    IdxBadMagic {
        /// The file.
        path: PathBuf,
        /// "image" or "label".
        kind: &'static str,
        /// The first four bytes (big-endian).
        found: u32,
        /// The magic number of the kind.
        expected: u32,
        /// A likely cause (starts with "; "), or empty.
        note: &'static str,
    },

    /// An IDX file's header announces more data than the file holds, or it is shorter than its header.
    #[error(
        "{} is {state}: its header announces {expected} bytes (decompressed), the file holds {actual}; delete it \
         and let labpipe download it again",
        .path.display()
    )]
    IdxTruncated {
        /// The file (decompressed content).
        path: PathBuf,
        /// "truncated", or "longer than its header says".
        state: &'static str,
        /// Bytes the header announces (header included).
        expected: u64,
        /// Bytes present.
        actual: u64,
    },

    /// An IDX image file whose images are not 28×28.
    #[error("{} holds images of {rows}×{cols} pixels, expected 28×28 (MNIST's size)", .path.display())]
    IdxBadDims {
        /// The file.
        path: PathBuf,
        /// Rows per image.
        rows: u32,
        /// Columns per image.
        cols: u32,
    },

    /// An IDX image file and its label file disagree on the number of items.
    #[error(
        "{} holds {images_count} images but {} holds {labels_count} labels: the two files must be of the same \
         split (train-… or t10k-…) and both complete",
        .images.display(), .labels.display()
    )]
    IdxCountMismatch {
        /// The image file.
        images: PathBuf,
        /// Its item count.
        images_count: usize,
        /// The label file.
        labels: PathBuf,
        /// Its item count.
        labels_count: usize,
    },

    /// `data.root` of an image folder is not a directory.
    #[error(
        "image folder {} does not exist or is not a directory: `data.root` must name a folder holding \
         `train/<class>/<image>` and `test/<class>/<image>` (or `<class>/<image>` with `data.test_split`)",
        .path.display()
    )]
    FolderMissing {
        /// The folder.
        path: PathBuf,
    },

    /// An image folder without class folders.
    #[error(
        "{} has no class folders: put each class's images in a folder named after the class, e.g. \
         {}/cat/1.png",
        .path.display(), .path.display()
    )]
    NoClasses {
        /// The folder that should hold the class folders.
        path: PathBuf,
    },

    /// An image folder with only one class: nothing to classify.
    #[error(
        "{} has only one class folder (`{class}`): a classifier needs at least two classes; add a folder per \
         class",
        .path.display()
    )]
    OneClass {
        /// The folder that holds the class folders.
        path: PathBuf,
        /// The one class.
        class: String,
    },

    /// More classes than labels of one byte can hold.
    #[error("{} has {count} class folders; labpipe handles at most 256 classes", .path.display())]
    TooManyClasses {
        /// The folder that holds the class folders.
        path: PathBuf,
        /// How many there are.
        count: usize,
    },

    /// A class folder without a single image (torchvision's ImageFolder refuses these too).
    #[error(
        "class folder {} holds no image (png, jpg, jpeg, bmp, gif or webp); remove the folder or add images",
        .path.display()
    )]
    EmptyClass {
        /// The class folder.
        path: PathBuf,
    },

    /// The test folder's classes are not the training folder's.
    #[error(
        "{} has the classes {train_classes:?} but {} has {test_classes:?}: both must hold the same class \
         folders, so that the labels mean the same",
        .train.display(), .test.display()
    )]
    TestClassesDiffer {
        /// The training folder.
        train: PathBuf,
        /// The test folder.
        test: PathBuf,
        /// Its classes.
        train_classes: Vec<String>,
        /// The test folder's classes.
        test_classes: Vec<String>,
    },

    /// An image file that cannot be decoded.
    #[error("cannot read image {}: {reason}; remove or replace the file", .path.display())]
    UnreadableImage {
        /// The file.
        path: PathBuf,
        /// The decoder's message.
        reason: String,
    },

    /// Images of different sizes and no `data.image_size` to bring them to one.
    #[error(
        "image {} is {}×{} (height×width) but {} is {}×{}: images of different sizes need `data.image_size` \
         (e.g. `image_size: 28` or `[H, W]`) to be resized to one",
        .path.display(), .size.0, .size.1, .first.display(), .first_size.0, .first_size.1
    )]
    MixedSizes {
        /// The image that differs.
        path: PathBuf,
        /// Its height and width (after conversion).
        size: (usize, usize),
        /// The first image.
        first: PathBuf,
        /// The first image's height and width.
        first_size: (usize, usize),
    },

    /// Nothing to decode.
    #[error("the image folder holds no images")]
    NoImages,

    /// An image folder without `test/` and without `data.test_split`.
    #[error(
        "the image folder has no `test/` folder beside `train/`, and `data.test_split` is not set: add a \
         `test/<class>/…` folder, or hold out part of the {count} images with e.g. `test_split: 0.2`"
    )]
    NoTestImages {
        /// Images in the folder.
        count: usize,
    },

    /// `data.test_split` leaves no training or no test images.
    #[error(
        "`data.test_split` holds out {count} of the folder's {available} images: it must leave at least one \
         image for testing and one for training"
    )]
    TestSplitTooLarge {
        /// Images asked for testing.
        count: usize,
        /// Images in the folder.
        available: usize,
    },

    /// A dataset file could not be decompressed.
    #[error("{} is not a readable gzip file: {source}; delete it and let labpipe download it again", .path.display())]
    NotGzip {
        /// The file.
        path: PathBuf,
        /// The decoding error.
        #[source]
        source: std::io::Error,
    },

    /// `write_cifar10` was given a dataset that the format cannot hold.
    #[error("cannot write a CIFAR-10 dataset to {}: {reason}", .root.display())]
    NotWritable {
        /// Where it was to be written.
        root: PathBuf,
        /// What is wrong with the dataset or the arguments.
        reason: String,
    },

    /// The server could not be reached, or the transfer broke off with an error.
    #[error(
        "downloading {url} failed: {source}. {}{hint}",
        resume_note(*.kept, .part)
    )]
    Network {
        /// The URL that failed.
        url: String,
        /// Which files to put where by hand, or how to point labpipe at a mirror.
        hint: String,
        /// The partial download kept for resuming.
        part: PathBuf,
        /// Bytes already in `part`.
        kept: u64,
        /// The transport error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The server answered with an HTTP error status.
    #[error("downloading {url} failed: the server answered HTTP {status}. {hint}")]
    HttpStatus {
        /// The URL that failed.
        url: String,
        /// Which files to put where by hand, or how to point labpipe at a mirror.
        hint: String,
        /// The status code.
        status: u16,
    },

    /// The body ended cleanly but before the expected size was reached.
    #[error(
        "downloading {url} stopped after {got} of {expected} bytes. {}{hint}",
        resume_note(*.got, .part)
    )]
    Incomplete {
        /// The URL being downloaded.
        url: String,
        /// Which files to put where by hand, or how to point labpipe at a mirror.
        hint: String,
        /// The partial download kept for resuming.
        part: PathBuf,
        /// Bytes received so far.
        got: u64,
        /// Bytes expected.
        expected: u64,
    },

    /// The download is complete but is not the file that was asked for (bad MD5); it has been deleted.
    #[error(
        "the file downloaded from {url} has MD5 {actual}, expected {expected}; it was deleted. The server sent a \
         different or corrupted file: run again, or point `data.url` at a mirror of {file}{md5_note}"
    )]
    ChecksumMismatch {
        /// The URL downloaded.
        url: String,
        /// The official name of the file.
        file: String,
        /// How to accept a different file on purpose (starts with " "), or empty where that is not possible.
        md5_note: &'static str,
        /// The MD5 asked for.
        expected: String,
        /// The MD5 of what arrived.
        actual: String,
    },

    /// The download is larger than expected, or ended at a different size; it has been deleted.
    #[error(
        "the file downloaded from {url} is {actual} bytes, expected {expected}; it was deleted. Run again, or \
         point `data.url` at a mirror of {file}"
    )]
    SizeMismatch {
        /// The URL downloaded.
        url: String,
        /// The official name of the file.
        file: String,
        /// The size asked for.
        expected: u64,
        /// The size that arrived.
        actual: u64,
    },

    /// The server announces a file of another size than the archive asked for: a different file.
    #[error(
        "{url} is not the expected file: the server sends a file of {announced} bytes, and {file} is \
         {expected} bytes; nothing was downloaded. Point `data.url` at a mirror of {file}{md5_note}"
    )]
    WrongFile {
        /// The URL.
        url: String,
        /// The official name of the file.
        file: String,
        /// How to accept a different file on purpose (starts with ", "), or empty where that is not possible.
        md5_note: &'static str,
        /// The size asked for.
        expected: u64,
        /// The size the server announced.
        announced: u64,
    },

    /// A dataset file has no bytes at all.
    #[error(
        "{} is empty (0 bytes): a CIFAR-10 batch holds 10 000 records of 3073 bytes. Delete the `{}` directory \
         and let labpipe download the dataset again",
        .path.display(), DATA_DIR
    )]
    EmptyFile {
        /// The file.
        path: PathBuf,
    },

    /// An archive entry that could write outside its directory, or is a link or device, was refused.
    #[error(
        "archive {} has an unsafe entry {entry:?} ({reason}); nothing was extracted and the archive was \
         deleted. It is not the real {file}: check `data.url` and `data.md5`",
        .archive.display()
    )]
    UnsafeArchiveEntry {
        /// The archive.
        archive: PathBuf,
        /// The official archive's name.
        file: &'static str,
        /// The entry's path as stored.
        entry: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// The archive is readable but lacks dataset files.
    #[error(
        "archive {} does not contain {}; nothing was extracted and the archive was deleted. It is not the real \
         {file}: check `data.url` and `data.md5`",
        .archive.display(), .missing.join(", ")
    )]
    ArchiveIncomplete {
        /// The archive.
        archive: PathBuf,
        /// The official archive's name.
        file: &'static str,
        /// Paths inside the archive that were expected but absent.
        missing: Vec<String>,
    },

    /// The archive could not be decompressed or parsed.
    #[error(
        "archive {} is not a readable .tar.gz: {source}; nothing was extracted and the archive was deleted",
        .archive.display()
    )]
    BadArchive {
        /// The archive.
        archive: PathBuf,
        /// The decoding error.
        #[source]
        source: std::io::Error,
    },
}

impl DataError {
    /// Wraps an I/O error with the action and path it happened on.
    pub fn io(action: &'static str, path: &Path, source: std::io::Error) -> DataError {
        DataError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Says that a partial download survives and will be resumed, when there is one.
fn resume_note(kept: u64, part: &Path) -> String {
    if kept == 0 {
        String::new()
    } else {
        format!(
            "The {kept} bytes already in {} are resumed on the next run. ",
            part.display()
        )
    }
}

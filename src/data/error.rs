//! Errors from reading, writing and downloading datasets, each naming the file or URL and what to do.

use std::path::{Path, PathBuf};

use super::cifar10_layout::{DATA_DIR, manual_install_hint};

/// Everything that can go wrong while getting a dataset from disk or the network into memory.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// This build cannot read the dataset yet (its reader is being added).
    #[error("dataset `{dataset}` cannot be read by this build of labpipe yet")]
    NotReadable {
        /// The dataset asked for, as written in `data.dataset`.
        dataset: String,
    },

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
    #[error("CIFAR-10 file {} is missing. {}", .path.display(), manual_install_hint(.root))]
    MissingFile {
        /// The file that was expected.
        path: PathBuf,
        /// The dataset root (`data.root`).
        root: PathBuf,
    },

    /// A batch file is not a whole number of 3073-byte records.
    #[error(
        "{} is {size} bytes, expected a multiple of 3073 bytes (10 000 records = 30 730 000 bytes in the real \
         dataset); the file is truncated or is not a CIFAR-10 binary batch: delete the `{}` directory and let \
         labpipe download the dataset again",
        .path.display(), DATA_DIR
    )]
    BadFileSize {
        /// The batch file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
    },

    /// A record's label byte is not a class index.
    #[error(
        "{} record {index} (0-based) has label {label}, expected 0..=9: the file is corrupt or not a CIFAR-10 \
         batch (CIFAR-100 files have two label bytes and do not fit this reader)",
        .path.display()
    )]
    BadLabel {
        /// The batch file.
        path: PathBuf,
        /// 0-based record index within the file.
        index: usize,
        /// The label byte found.
        label: u8,
    },

    /// The class-name file does not list exactly ten names.
    #[error(
        "{} lists {found} class names, expected 10 (one per line, blank lines ignored, index = label)",
        .path.display()
    )]
    BadClassNames {
        /// The meta file.
        path: PathBuf,
        /// How many non-blank lines it had.
        found: usize,
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
        "downloading {url} failed: {source}. {}{}",
        resume_note(*.kept, .part), manual_install_hint(.root)
    )]
    Network {
        /// The URL that failed.
        url: String,
        /// The dataset root (`data.root`).
        root: PathBuf,
        /// The partial download kept for resuming.
        part: PathBuf,
        /// Bytes already in `part`.
        kept: u64,
        /// The transport error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The server answered with an HTTP error status.
    #[error("downloading {url} failed: the server answered HTTP {status}. {}", manual_install_hint(.root))]
    HttpStatus {
        /// The URL that failed.
        url: String,
        /// The dataset root (`data.root`).
        root: PathBuf,
        /// The status code.
        status: u16,
    },

    /// The body ended cleanly but before the expected size was reached.
    #[error(
        "downloading {url} stopped after {got} of {expected} bytes. {}{}",
        resume_note(*.got, .part), manual_install_hint(.root)
    )]
    Incomplete {
        /// The URL being downloaded.
        url: String,
        /// The dataset root (`data.root`).
        root: PathBuf,
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
         different or corrupted file: run again, or point `data.url` at a mirror of cifar-10-binary.tar.gz \
         (and `data.md5` at its checksum if it is a different file on purpose)"
    )]
    ChecksumMismatch {
        /// The URL downloaded.
        url: String,
        /// The MD5 asked for.
        expected: String,
        /// The MD5 of what arrived.
        actual: String,
    },

    /// The download is larger than expected, or ended at a different size; it has been deleted.
    #[error(
        "the file downloaded from {url} is {actual} bytes, expected {expected}; it was deleted. Run again, or \
         point `data.url` at a mirror of cifar-10-binary.tar.gz"
    )]
    SizeMismatch {
        /// The URL downloaded.
        url: String,
        /// The size asked for.
        expected: u64,
        /// The size that arrived.
        actual: u64,
    },

    /// The server announces a file of another size than the archive asked for: a different file.
    #[error(
        "{url} is not the expected archive: the server sends a file of {announced} bytes, and \
         cifar-10-binary.tar.gz is {expected} bytes; nothing was downloaded. Point `data.url` at a mirror of \
         cifar-10-binary.tar.gz, or, if this mirror's archive differs on purpose, give its checksum as `data.md5`"
    )]
    WrongFile {
        /// The URL.
        url: String,
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
         deleted. It is not the real cifar-10-binary.tar.gz: check `data.url` and `data.md5`",
        .archive.display()
    )]
    UnsafeArchiveEntry {
        /// The archive.
        archive: PathBuf,
        /// The entry's path as stored.
        entry: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// The archive is readable but lacks dataset files.
    #[error(
        "archive {} does not contain {}; nothing was extracted and the archive was deleted. It is not the real \
         cifar-10-binary.tar.gz: check `data.url` and `data.md5`",
        .archive.display(), .missing.join(", ")
    )]
    ArchiveIncomplete {
        /// The archive.
        archive: PathBuf,
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

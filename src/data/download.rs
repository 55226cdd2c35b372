//! Getting datasets onto disk: a resumable HTTP download, MD5 and size checks, a mirror list, and a safe
//! extraction of archives.
//!
//! A file streams into `root/.download/<name>.part`. An interrupted transfer keeps the `.part` and the
//! next attempt asks for the rest with an HTTP Range request; a server that ignores ranges gets a fresh
//! start. The `.part` is only renamed into place once its size and MD5 match. From an archive only the
//! expected regular files are taken, into a staging directory inside `root` that is renamed into place, so a
//! failed run never leaves something that looks like a dataset.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use flate2::read::GzDecoder;
use indicatif::{ProgressBar, ProgressStyle};
use tar::EntryType;

use crate::data::cifar10_layout::{DATA_DIR, manual_install_hint, required_files};
use crate::data::error::DataError;

/// Where the CIFAR-10 authors publish the binary version.
pub const CIFAR10_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
/// MD5 of `cifar-10-binary.tar.gz` as published on the CIFAR-10 page.
pub const CIFAR10_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";
/// Size of `cifar-10-binary.tar.gz` in bytes.
pub const CIFAR10_BYTES: u64 = 170_052_171;
/// Name of the official CIFAR-10 archive.
pub const CIFAR10_ARCHIVE: &str = "cifar-10-binary.tar.gz";

/// Directory under the dataset root that holds downloads in progress.
pub const DOWNLOAD_DIR: &str = ".download";
/// Extra file taken from the CIFAR-10 archive when present; the reader does not need it.
const OPTIONAL_FILE: &str = "readme.html";
/// No file in the real CIFAR archives exceeds 155 MB; anything far larger is not CIFAR and is refused before
/// it can fill the disk.
const MAX_ENTRY_BYTES: u64 = 256 << 20;
/// Attempts per call; another attempt is only made when the previous one received data.
const MAX_ATTEMPTS: usize = 5;

/// What to download and how to recognise it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadSpec {
    /// Where the file is fetched from (`http://` or `https://`).
    pub url: String,
    /// Expected MD5 of the file, hex.
    pub md5: String,
    /// Expected size in bytes, when known.
    pub size: Option<u64>,
}

impl DownloadSpec {
    /// The official CIFAR-10 binary archive.
    pub fn cifar10() -> DownloadSpec {
        DownloadSpec {
            url: CIFAR10_URL.to_string(),
            md5: CIFAR10_MD5.to_string(),
            size: Some(CIFAR10_BYTES),
        }
    }
}

/// What a download is for, so that its errors say which file it should have been and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The dataset's display name, shown on the progress bar.
    pub dataset: &'static str,
    /// The official name of the file.
    pub file: String,
    /// How to install the files by hand or point labpipe at a mirror.
    pub hint: String,
    /// Whether `data.md5` may name another file's checksum (archives; not the four IDX files).
    pub md5_settable: bool,
}

/// Which files of an archive make the dataset, and what a look-alike archive is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveLayout {
    /// The directory the archive unpacks to, under the dataset root.
    pub dir: &'static str,
    /// Files that must be in `dir`.
    pub required: Vec<&'static str>,
    /// Files taken when present.
    pub optional: Vec<&'static str>,
    /// The directory of the sibling dataset's archive, what that is, and what to write instead.
    pub sibling: Option<(&'static str, &'static str, &'static str)>,
    /// What the pipeline asked for, in words.
    pub expected: &'static str,
    /// The official archive's name.
    pub archive: &'static str,
}

impl ArchiveLayout {
    /// CIFAR-10's binary archive.
    pub fn cifar10() -> ArchiveLayout {
        ArchiveLayout {
            dir: DATA_DIR,
            required: required_files(),
            optional: vec![OPTIONAL_FILE],
            sibling: Some((
                crate::data::cifar10_layout::CIFAR100_DIR,
                "the CIFAR-100 binary dataset",
                "write `dataset: cifar100` to train on it",
            )),
            expected: "CIFAR-10",
            archive: CIFAR10_ARCHIVE,
        }
    }

    /// True when every required file exists under `root` (their contents are checked on reading).
    pub fn present(&self, root: &Path) -> bool {
        let dir = root.join(self.dir);
        self.required.iter().all(|f| dir.join(f).is_file())
    }
}

/// Makes sure the CIFAR-10 files are under `root`, downloading and extracting them when they are not.
///
/// `progress` shows what happens (a bar on a terminal, plain lines otherwise); without it nothing is printed.
pub fn ensure_cifar10(root: &Path, spec: &DownloadSpec, progress: bool) -> Result<(), DataError> {
    let wanted = Wanted {
        dataset: "CIFAR-10",
        file: CIFAR10_ARCHIVE.to_string(),
        hint: manual_install_hint(root),
        md5_settable: true,
    };
    ensure_archive(root, spec, &ArchiveLayout::cifar10(), &wanted, progress)
}

/// Makes sure `layout`'s files are under `root`, downloading `spec` and extracting it when they are not.
pub fn ensure_archive(
    root: &Path,
    spec: &DownloadSpec,
    layout: &ArchiveLayout,
    wanted: &Wanted,
    progress: bool,
) -> Result<(), DataError> {
    if layout.present(root) {
        return Ok(());
    }
    let download_dir = root.join(DOWNLOAD_DIR);
    let archive = download_dir.join(archive_name(&spec.url, &wanted.file));
    // A verified archive survives only when an earlier extraction failed on I/O; re-check it before use.
    if archive.exists() && verify(&archive, spec, wanted).is_err() {
        remove_file_if_exists(&archive)?;
    }
    if !archive.exists() {
        fetch_verified(root, spec, wanted, &archive, progress)?;
    }

    if progress {
        eprintln!(
            "extracting {} into {}",
            archive.display(),
            root.join(layout.dir).display()
        );
    }
    match extract(&archive, root, layout) {
        Ok(()) => {}
        Err(e) => {
            // A bad archive would fail the same way again, so it goes; an I/O failure keeps it for next time.
            if !matches!(e, DataError::Io { .. }) {
                remove_file_if_exists(&archive)?;
                let _ = fs::remove_dir(&download_dir);
            }
            return Err(e);
        }
    }
    remove_file_if_exists(&archive)?;
    // Another download (e.g. a different URL's .part) may still live there; then the directory stays.
    let _ = fs::remove_dir(&download_dir);
    Ok(())
}

/// Downloads `spec` into `root/.download/` (resuming a `.part` there), checks its size and MD5, and renames
/// it to `dest`. Nothing is at `dest` unless the check passed.
pub fn fetch_verified(
    root: &Path,
    spec: &DownloadSpec,
    wanted: &Wanted,
    dest: &Path,
    progress: bool,
) -> Result<(), DataError> {
    let download_dir = root.join(DOWNLOAD_DIR);
    fs::create_dir_all(&download_dir).map_err(|e| DataError::io("create directory", &download_dir, e))?;
    let part = download_dir.join(format!("{}.part", archive_name(&spec.url, &wanted.file)));
    let fetched = download(spec, wanted, &part, progress).and_then(|()| {
        if progress {
            eprintln!("verifying {}", part.display());
        }
        verify(&part, spec, wanted)?;
        fs::rename(&part, dest).map_err(|e| DataError::io("rename into place", dest, e))
    });
    if fetched.is_err() || dest.parent() != Some(download_dir.as_path()) {
        // Only an empty directory goes; one holding a .part kept for resuming stays.
        let _ = fs::remove_dir(&download_dir);
    }
    fetched
}

/// Tries `mirrors` in order for one file: a mirror that cannot be reached or answers with an HTTP error is
/// passed over; any other failure (a wrong file, a broken transfer kept for resuming) is reported at once.
pub fn fetch_from_mirrors(
    root: &Path,
    mirrors: &[String],
    md5: &str,
    size: Option<u64>,
    wanted: &Wanted,
    dest: &Path,
    progress: bool,
) -> Result<(), DataError> {
    let mut last = None;
    for (i, base) in mirrors.iter().enumerate() {
        let spec = DownloadSpec {
            url: format!("{base}{}", wanted.file),
            md5: md5.to_string(),
            size,
        };
        match fetch_verified(root, &spec, wanted, dest, progress) {
            Ok(()) => return Ok(()),
            Err(e @ (DataError::Network { kept: 0, .. } | DataError::HttpStatus { .. })) => {
                if progress && i + 1 < mirrors.len() {
                    eprintln!("{}; trying the next mirror", brief(&e));
                }
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| DataError::HttpStatus {
        url: String::new(),
        hint: wanted.hint.clone(),
        status: 0,
    }))
}

/// The download's file name: the URL's last path segment when it is a plain name, else the official name.
fn archive_name(url: &str, official: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or("");
    let last = path.rsplit('/').next().unwrap_or("");
    let plain = !last.is_empty()
        && !last.starts_with('.')
        && last
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if plain {
        last.to_string()
    } else {
        official.to_string()
    }
}

fn remove_file_if_exists(path: &Path) -> Result<(), DataError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(DataError::io("delete", path, e)),
        _ => Ok(()),
    }
}

/// Why one attempt ended early, and whether it got far enough that another attempt is worthwhile.
struct Failed {
    error: DataError,
    progressed: bool,
}

/// Downloads `spec.url` into `part`, resuming what is there, retrying while attempts make progress.
fn download(spec: &DownloadSpec, wanted: &Wanted, part: &Path, progress: bool) -> Result<(), DataError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        // 206 and 416 are part of the resume protocol, so every status is handled here.
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        // A stalled transfer fails and is resumed instead of hanging forever.
        .timeout_per_read(Some(Duration::from_secs(60)))
        .user_agent(concat!("labpipe/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut meter = Meter::new(progress, spec.size, wanted.dataset);
    let mut attempt = 1;
    loop {
        match fetch_once(&agent, spec, wanted, part, &mut meter) {
            Ok(()) => {
                meter.finish();
                return Ok(());
            }
            Err(Failed { error, progressed }) if progressed && attempt < MAX_ATTEMPTS => {
                attempt += 1;
                meter.line(&format!(
                    "{}; retrying (attempt {attempt} of {MAX_ATTEMPTS})",
                    brief(&error)
                ));
            }
            Err(Failed { error, .. }) => {
                meter.abandon();
                return Err(error);
            }
        }
    }
}

/// The cause of a failed attempt without the install advice, for the retry line.
fn brief(error: &DataError) -> String {
    match error {
        DataError::Network { source, kept: 0, .. } => source.to_string(),
        DataError::Network { source, kept, .. } => format!("transfer failed at byte {kept}: {source}"),
        DataError::Incomplete { got, expected, .. } => format!("transfer ended at byte {got} of {expected}"),
        other => other.to_string(),
    }
}

/// One HTTP request: resume from the end of `part` when the server allows it, else start over.
// One `Failed` per attempt, built only on the way out: its size does not matter.
#[allow(clippy::result_large_err)]
fn fetch_once(
    agent: &ureq::Agent,
    spec: &DownloadSpec,
    wanted: &Wanted,
    part: &Path,
    meter: &mut Meter,
) -> Result<(), Failed> {
    let fail = |error, progressed| Failed { error, progressed };
    let url = spec.url.as_str();
    let mut offset = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    if spec.size.is_some_and(|size| offset > size) {
        offset = 0;
    }
    let network = |kept: u64, source: Box<dyn std::error::Error + Send + Sync>| DataError::Network {
        url: url.to_string(),
        hint: wanted.hint.clone(),
        part: part.to_path_buf(),
        kept,
        source,
    };

    let mut request = agent.get(url);
    if offset > 0 {
        request = request.header("Range", format!("bytes={offset}-"));
    }
    let mut response = request
        .call()
        .map_err(|e| fail(network(offset, Box::new(e)), false))?;
    let status = response.status().as_u16();
    match status {
        206 => {
            let start = response
                .headers()
                .get("content-range")
                .and_then(|v| v.to_str().ok())
                .and_then(content_range_start);
            if start != Some(offset) {
                // A range we did not ask for cannot be appended; start clean on the next attempt.
                remove_file_if_exists(part).map_err(|e| fail(e, false))?;
                let reason =
                    format!("server answered a resume request with range start {start:?}, not {offset}");
                return Err(fail(network(0, reason.into()), true));
            }
        }
        200 => {
            if offset > 0 {
                meter.line("the server does not resume downloads; starting over");
            }
            offset = 0;
        }
        416 => {
            // The .part is as long as, or longer than, what the server has: it may be a different file, so
            // it is never taken as complete; start over on the next attempt.
            remove_file_if_exists(part).map_err(|e| fail(e, false))?;
            let reason = format!("server refused to resume at byte {offset} (HTTP 416)");
            return Err(fail(network(0, reason.into()), true));
        }
        _ => {
            let error = DataError::HttpStatus {
                url: url.to_string(),
                hint: wanted.hint.clone(),
                status,
            };
            return Err(fail(error, false));
        }
    }

    // A server that announces another size than the archive's sends another file: say so at once, keep
    // nothing, and do not retry (asking again gets the same file).
    let announced = match status {
        206 => response
            .headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .and_then(content_range_total),
        _ => response.body().content_length(),
    };
    if let (Some(expected), Some(announced)) = (spec.size, announced)
        && announced != expected
    {
        remove_file_if_exists(part).map_err(|e| fail(e, false))?;
        let error = DataError::WrongFile {
            url: url.to_string(),
            file: wanted.file.clone(),
            md5_note: md5_note(
                wanted,
                ", or, if this mirror's file differs on purpose, give its checksum as `data.md5`",
            ),
            expected,
            announced,
        };
        return Err(fail(error, false));
    }
    let total = response.body().content_length().map(|n| n + offset).or(spec.size);
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(offset == 0)
        .append(offset > 0)
        .open(part)
        .map_err(|e| fail(DataError::io("open", part, e), false))?;
    meter.start(url, part, offset, total);

    let mut body = response.body_mut().as_reader();
    let mut buf = vec![0u8; 256 * 1024];
    let mut received = 0u64;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = file.sync_all();
                return Err(fail(network(offset + received, Box::new(e)), received > 0));
            }
        };
        file.write_all(&buf[..n])
            .map_err(|e| fail(DataError::io("write", part, e), false))?;
        received += n as u64;
        meter.set(offset + received);
    }
    file.sync_all()
        .map_err(|e| fail(DataError::io("sync", part, e), false))?;

    let got = offset + received;
    match spec.size {
        // The body ended without an error before the expected size: keep it and resume.
        Some(expected) if got < expected => Err(fail(
            DataError::Incomplete {
                url: url.to_string(),
                hint: wanted.hint.clone(),
                part: part.to_path_buf(),
                got,
                expected,
            },
            received > 0,
        )),
        _ => Ok(()),
    }
}

/// The total of a `Content-Range: bytes START-END/TOTAL` header, when the server knows it.
fn content_range_total(value: &str) -> Option<u64> {
    value.rsplit('/').next()?.trim().parse().ok()
}

/// The first byte of a `Content-Range: bytes START-END/TOTAL` header.
fn content_range_start(value: &str) -> Option<u64> {
    let range = value.trim().strip_prefix("bytes")?.trim_start();
    range.split('-').next()?.trim().parse().ok()
}

/// Checks `file` against the expected size and MD5; a file that fails is deleted.
fn verify(file: &Path, spec: &DownloadSpec, wanted: &Wanted) -> Result<(), DataError> {
    let actual_size = fs::metadata(file)
        .map_err(|e| DataError::io("read", file, e))?
        .len();
    if let Some(expected) = spec.size
        && actual_size != expected
    {
        remove_file_if_exists(file)?;
        return Err(DataError::SizeMismatch {
            url: spec.url.clone(),
            file: wanted.file.clone(),
            expected,
            actual: actual_size,
        });
    }
    let actual = md5_hex(file)?;
    let expected = spec.md5.trim().to_ascii_lowercase();
    if actual != expected {
        remove_file_if_exists(file)?;
        return Err(DataError::ChecksumMismatch {
            url: spec.url.clone(),
            file: wanted.file.clone(),
            md5_note: md5_note(
                wanted,
                " (and `data.md5` at its checksum if it is a different file on purpose)",
            ),
            expected,
            actual,
        });
    }
    Ok(())
}

/// `note` when the pipeline may give another file's MD5, else nothing.
fn md5_note(wanted: &Wanted, note: &'static str) -> &'static str {
    if wanted.md5_settable { note } else { "" }
}

/// Lower-case hex MD5 of a file's contents.
fn md5_hex(path: &Path) -> Result<String, DataError> {
    let mut file = File::open(path).map_err(|e| DataError::io("open", path, e))?;
    let mut ctx = md5::Context::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| DataError::io("read", path, e))?;
        if n == 0 {
            break;
        }
        ctx.consume(&buf[..n]);
    }
    Ok(format!("{:x}", ctx.finalize()))
}

/// Unpacks the dataset files from `archive` into a staging directory in `root`, then moves them into place.
fn extract(archive: &Path, root: &Path, layout: &ArchiveLayout) -> Result<(), DataError> {
    let staging = root.join(format!(".extract-{}", std::process::id()));
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(|e| DataError::io("delete", &staging, e))?;
    }
    let staged = staging.join(layout.dir);
    fs::create_dir_all(&staged).map_err(|e| DataError::io("create directory", &staged, e))?;
    let result = unpack_expected(archive, &staged, layout)
        .and_then(|names| move_into_place(&staged, &root.join(layout.dir), &names));
    let _ = fs::remove_dir_all(&staging);
    result
}

/// Writes the expected regular files of `archive` into `dest`; refuses entries that could escape it.
fn unpack_expected(archive: &Path, dest: &Path, layout: &ArchiveLayout) -> Result<Vec<String>, DataError> {
    let bad_archive = |source| DataError::BadArchive {
        archive: archive.to_path_buf(),
        source,
    };
    let official = layout.archive;
    let file = File::open(archive).map_err(|e| DataError::io("open", archive, e))?;
    let mut tar = tar::Archive::new(GzDecoder::new(BufReader::new(file)));
    let names: BTreeSet<&str> = layout.required.iter().chain(&layout.optional).copied().collect();
    let mut found = BTreeSet::new();
    let mut sibling_seen = false;
    for entry in tar.entries().map_err(bad_archive)? {
        let mut entry = entry.map_err(bad_archive)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let refuse = |reason| DataError::UnsafeArchiveEntry {
            archive: archive.to_path_buf(),
            file: official,
            entry: raw.clone(),
            reason,
        };
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
            continue;
        }
        let path = relative_path(&raw).map_err(refuse)?;
        match kind {
            EntryType::Regular | EntryType::Continuous => {}
            EntryType::Directory => continue,
            EntryType::Symlink => return Err(refuse("symbolic link")),
            EntryType::Link => return Err(refuse("hard link")),
            EntryType::Char | EntryType::Block => return Err(refuse("device file")),
            EntryType::Fifo => return Err(refuse("named pipe")),
            _ => return Err(refuse("unsupported entry type")),
        }
        let mut parts = path.iter().map(|p| p.to_str().unwrap_or(""));
        let name = match (parts.next(), parts.next(), parts.next()) {
            (Some(dir), Some(name), None) if dir == layout.dir && names.contains(name) => name.to_string(),
            (Some(dir), _, _) if layout.sibling.is_some_and(|(s, _, _)| s == dir) => {
                sibling_seen = true;
                continue;
            }
            // Anything else a genuine archive might carry is simply not taken.
            _ => continue,
        };
        if entry.size() > MAX_ENTRY_BYTES {
            return Err(refuse("larger than any CIFAR file"));
        }
        if !found.insert(name.clone()) {
            return Err(refuse("appears twice"));
        }
        let out_path = dest.join(&name);
        let mut out = File::create(&out_path).map_err(|e| DataError::io("create", &out_path, e))?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = entry.read(&mut buf).map_err(bad_archive)?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])
                .map_err(|e| DataError::io("write", &out_path, e))?;
        }
        out.sync_all().map_err(|e| DataError::io("sync", &out_path, e))?;
    }
    let missing: Vec<String> = layout
        .required
        .iter()
        .filter(|f| !found.contains(**f))
        .map(|f| format!("{}/{f}", layout.dir))
        .collect();
    if !missing.is_empty() {
        if let (true, Some((_, what, advice))) = (found.is_empty() && sibling_seen, layout.sibling) {
            return Err(DataError::OtherDataset {
                path: archive.to_path_buf(),
                found: what,
                expected: layout.expected,
                advice,
            });
        }
        return Err(DataError::ArchiveIncomplete {
            archive: archive.to_path_buf(),
            file: official,
            missing,
        });
    }
    Ok(found.into_iter().collect())
}

/// The entry path with `.` removed, or why it is unsafe.
fn relative_path(raw: &str) -> Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for component in Path::new(raw).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("path climbs out with `..`"),
            Component::RootDir | Component::Prefix(_) => return Err("absolute path"),
        }
    }
    Ok(out)
}

/// Renames the staged files into `target`, the whole directory at once when it is new.
fn move_into_place(staged: &Path, target: &Path, names: &[String]) -> Result<(), DataError> {
    if !target.exists() {
        return fs::rename(staged, target).map_err(|e| DataError::io("rename into place", target, e));
    }
    // A partial directory from an earlier attempt or a hand install: replace file by file. The order does
    // not matter: the dataset only counts as present once every file is there.
    for name in names {
        let to = target.join(name);
        fs::rename(staged.join(name), &to).map_err(|e| DataError::io("rename into place", &to, e))?;
    }
    Ok(())
}

/// Progress output: an indicatif bar, or a plain line every tenth of the way; nothing at all when quiet.
struct Meter {
    bar: Option<ProgressBar>,
    total: Option<u64>,
    last_step: u64,
    quiet: bool,
    label: &'static str,
}

impl Meter {
    fn new(progress: bool, total: Option<u64>, label: &'static str) -> Meter {
        let bar = progress.then(|| {
            let bar = ProgressBar::new(total.unwrap_or(0));
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:40}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Meter {
            bar,
            total,
            last_step: 0,
            quiet: !progress,
            label,
        }
    }

    fn start(&mut self, url: &str, part: &Path, offset: u64, total: Option<u64>) {
        self.total = total.or(self.total);
        let resumed = if offset > 0 {
            format!(", resuming at byte {offset}")
        } else {
            String::new()
        };
        self.line(&format!("downloading {url} to {}{resumed}", part.display()));
        if let Some(bar) = &self.bar {
            bar.set_message(self.label);
            if let Some(total) = self.total {
                bar.set_length(total);
            }
            bar.set_position(offset);
        }
        self.last_step = self.step(offset);
    }

    /// Tenths done, or 16 MiB steps when the total is unknown.
    fn step(&self, position: u64) -> u64 {
        match self.total {
            Some(total) if total > 0 => position.saturating_mul(10) / total,
            _ => position >> 24,
        }
    }

    fn set(&mut self, position: u64) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(bar) => bar.set_position(position),
            None => {
                let step = self.step(position);
                if step > self.last_step {
                    self.last_step = step;
                    match self.total {
                        Some(total) => eprintln!("  {}% ({position} of {total} bytes)", step * 10),
                        None => eprintln!("  {position} bytes"),
                    }
                }
            }
        }
    }

    fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            // Unlike `println`, this still prints when the bar is hidden because stderr is not a terminal.
            Some(bar) => bar.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn abandon(&self) {
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_name_comes_from_the_url_when_plain() {
        let name = |url| archive_name(url, CIFAR10_ARCHIVE);
        assert_eq!(name(CIFAR10_URL), "cifar-10-binary.tar.gz");
        assert_eq!(name("http://m.example/x/c10.tgz?sig=a/b#frag"), "c10.tgz");
        assert_eq!(name("http://m.example/download/"), "cifar-10-binary.tar.gz");
        assert_eq!(name("http://m.example/..%2f"), "cifar-10-binary.tar.gz");
        assert_eq!(name("http://m.example/.."), "cifar-10-binary.tar.gz");
    }

    #[test]
    fn content_range_start_parses_the_first_byte() {
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes 0-0/*"), Some(0));
        assert_eq!(content_range_start("items 1-2/3"), None);
        assert_eq!(content_range_start("bytes */200"), None);
        assert_eq!(content_range_total("bytes 100-199/200"), Some(200));
        assert_eq!(content_range_total("bytes 0-0/*"), None);
    }

    #[test]
    fn relative_path_refuses_escapes() {
        assert_eq!(relative_path("./a/b").unwrap(), PathBuf::from("a/b"));
        assert!(relative_path("a/../../b").is_err());
        assert!(relative_path("/etc/passwd").is_err());
    }

    #[test]
    fn md5_matches_a_known_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"The quick brown fox jumps over the lazy dog").unwrap();
        assert_eq!(md5_hex(&path).unwrap(), "9e107d9d372bb6826bd81d3542a419d6");
    }
}

//! End-to-end tests of `ensure_cifar10` against a local HTTP server serving a generated CIFAR-10 archive.
//! No network: everything is served from 127.0.0.1.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::util::binary::{labpipe, stderr};
use crate::util::files::files_under;
use crate::util::http_server::{Mode, TestServer, dead_url};
use flate2::Compression;
use flate2::write::GzEncoder;
use labpipe::data::cifar10::{DATA_DIR, IMAGE_BYTES, cifar10_present, read_cifar10, write_cifar10};
use labpipe::data::download::{DOWNLOAD_DIR, DownloadSpec, ensure_cifar10};
use labpipe::data::error::DataError;
use labpipe::data::shape::InputShape;
use labpipe::data::{Dataset, ImageSet};
use labpipe::rng::Rng;
use tar::EntryType;

const ARCHIVE_PATH: &str = "/cifar-10-binary.tar.gz";
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

/// 10 training images (2 per batch file) and 3 test images of noise, which gzip cannot shrink, so the
/// archive is large enough (~40 KB) for a half-way hang-up to be meaningful.
fn small_dataset() -> Dataset {
    let mut rng = Rng::new(42);
    Dataset {
        train: random_set(&mut rng, 10),
        test: random_set(&mut rng, 3),
        class_names: NAMES.iter().map(|s| s.to_string()).collect(),
    }
}

/// One tar entry, written with its name bytes as given so hostile names survive (the `tar` builder would
/// refuse `..` and absolute paths).
struct RawEntry {
    name: String,
    kind: EntryType,
    data: Vec<u8>,
    link: Option<String>,
}

impl RawEntry {
    fn file(name: &str, data: Vec<u8>) -> RawEntry {
        RawEntry {
            name: name.to_string(),
            kind: EntryType::Regular,
            data,
            link: None,
        }
    }
}

fn tar_gz(entries: &[RawEntry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    for e in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(e.kind);
        header.set_size(e.data.len() as u64);
        header.set_mode(if e.kind == EntryType::Directory {
            0o755
        } else {
            0o644
        });
        let old = header.as_old_mut();
        assert!(
            e.name.len() < old.name.len(),
            "test entry name too long: {}",
            e.name
        );
        old.name[..e.name.len()].copy_from_slice(e.name.as_bytes());
        if let Some(link) = &e.link {
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_cksum();
        builder.append(&header, e.data.as_slice()).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// The entries of a genuine-looking archive of `ds`, in the shuffled order of the real one, plus a
/// directory entry, a readme and two files that must not be extracted.
fn dataset_entries(ds: &Dataset) -> Vec<RawEntry> {
    let src = tempfile::tempdir().unwrap();
    write_cifar10(src.path(), ds, 2).unwrap();
    let mut entries = vec![RawEntry {
        name: format!("{DATA_DIR}/"),
        kind: EntryType::Directory,
        data: vec![],
        link: None,
    }];
    for name in [
        "data_batch_1.bin",
        "batches.meta.txt",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "test_batch.bin",
        "data_batch_5.bin",
        "data_batch_2.bin",
    ] {
        let bytes = fs::read(src.path().join(DATA_DIR).join(name)).unwrap();
        entries.push(RawEntry::file(&format!("./{DATA_DIR}/{name}"), bytes));
    }
    entries.push(RawEntry::file(
        &format!("{DATA_DIR}/readme.html"),
        b"<html>CIFAR-10</html>".to_vec(),
    ));
    entries.push(RawEntry::file(&format!("{DATA_DIR}/extra.bin"), vec![1, 2, 3]));
    entries.push(RawEntry::file(
        "unrelated.txt",
        b"not part of the dataset".to_vec(),
    ));
    entries
}

fn spec_for(url: String, archive: &[u8]) -> DownloadSpec {
    DownloadSpec {
        url,
        md5: format!("{:x}", md5::compute(archive)),
        size: Some(archive.len() as u64),
    }
}

fn part_path(root: &Path) -> PathBuf {
    root.join(DOWNLOAD_DIR).join("cifar-10-binary.tar.gz.part")
}

/// The state after a successful download: the dataset reads back exactly, and nothing else is left.
fn assert_installed(root: &Path, ds: &Dataset) {
    assert!(cifar10_present(root));
    assert_eq!(&read_cifar10(root).unwrap(), ds);
    let names = files_under(root);
    let mut expected: Vec<String> = [
        "batches.meta.txt",
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
        "readme.html",
        "test_batch.bin",
    ]
    .iter()
    .map(|f| format!("{DATA_DIR}/{f}"))
    .collect();
    expected.sort();
    assert_eq!(
        names, expected,
        "only the dataset files remain (archive, .part and staging are gone)"
    );
}

#[test]
fn good_download_installs_the_dataset_and_cleans_up() {
    let ds = small_dataset();
    let archive = tar_gz(&dataset_entries(&ds));
    let server = TestServer::start(vec![(ARCHIVE_PATH, archive.clone())], Mode::Full);
    let root = tempfile::tempdir().unwrap();
    let spec = spec_for(server.url(ARCHIVE_PATH), &archive);

    ensure_cifar10(root.path(), &spec, true).unwrap();
    assert_installed(root.path(), &ds);
    assert_eq!(server.seen().len(), 1);
    assert_eq!(server.seen()[0].range_start, None);

    // Present now: a second call does not touch the network.
    ensure_cifar10(root.path(), &spec, false).unwrap();
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn bad_md5_is_an_error_and_keeps_nothing() {
    let ds = small_dataset();
    let archive = tar_gz(&dataset_entries(&ds));
    let server = TestServer::start(vec![(ARCHIVE_PATH, archive.clone())], Mode::Full);
    let root = tempfile::tempdir().unwrap();
    let mut spec = spec_for(server.url(ARCHIVE_PATH), &archive);
    spec.md5 = "00000000000000000000000000000000".to_string();

    let err = ensure_cifar10(root.path(), &spec, false).unwrap_err();
    assert!(matches!(err, DataError::ChecksumMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&spec.url) && msg.contains("00000000000000000000000000000000"),
        "{msg}"
    );
    assert!(msg.contains(&format!("{:x}", md5::compute(&archive))), "{msg}");
    assert!(
        files_under(root.path()).is_empty(),
        "left behind: {:?}",
        files_under(root.path())
    );
    assert!(!cifar10_present(root.path()));
}

#[test]
fn wrong_size_is_an_error_and_keeps_nothing() {
    let ds = small_dataset();
    let archive = tar_gz(&dataset_entries(&ds));
    let server = TestServer::start(vec![(ARCHIVE_PATH, archive.clone())], Mode::Full);
    let root = tempfile::tempdir().unwrap();
    let mut spec = spec_for(server.url(ARCHIVE_PATH), &archive);
    spec.size = Some(archive.len() as u64 - 1);

    let err = ensure_cifar10(root.path(), &spec, false).unwrap_err();
    // The server announces the size before sending anything: it is refused then, not after the download.
    assert!(matches!(err, DataError::WrongFile { .. }), "{err}");
    assert!(
        files_under(root.path()).is_empty(),
        "left behind: {:?}",
        files_under(root.path())
    );
}

#[test]
fn interrupted_transfer_is_resumed_within_the_same_call() {
    let ds = small_dataset();
    let archive = tar_gz(&dataset_entries(&ds));
    let server = TestServer::start(vec![(ARCHIVE_PATH, archive.clone())], Mode::DropFirst);
    let root = tempfile::tempdir().unwrap();
    let spec = spec_for(server.url(ARCHIVE_PATH), &archive);

    ensure_cifar10(root.path(), &spec, false).unwrap();
    assert_installed(root.path(), &ds);
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].range_start, None);
    assert_eq!(
        seen[1].range_start,
        Some(archive.len() as u64 / 2),
        "resumed where the first stopped"
    );
}

#[test]
fn broken_transfer_fails_keeps_the_part_and_the_next_call_resumes() {
    let ds = small_dataset();
    let archive = tar_gz(&dataset_entries(&ds));
    let server = TestServer::start(vec![(ARCHIVE_PATH, archive.clone())], Mode::DropHalfway);
    let root = tempfile::tempdir().unwrap();
    let spec = spec_for(server.url(ARCHIVE_PATH), &archive);

    let err = ensure_cifar10(root.path(), &spec, false).unwrap_err();
    assert!(matches!(err, DataError::Network { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&spec.url) && msg.contains("resumed on the next run"),
        "{msg}"
    );
    let part = part_path(root.path());
    let kept = fs::metadata(&part).unwrap().len();
    assert!(
        kept > 0 && kept < archive.len() as u64,
        "kept {kept} of {}",
        archive.len()
    );
    assert_eq!(
        fs::read(&part).unwrap(),
        archive[..kept as usize],
        "the .part is a true prefix"
    );
    assert!(
        !root.path().join(DATA_DIR).exists(),
        "an incomplete download is never extracted"
    );
    // Each attempt got half of what was left, so it kept trying (and resuming) up to the attempt limit.
    let first_call = server.seen();
    assert_eq!(first_call.len(), 5, "{first_call:?}");
    assert!(
        first_call[1..].iter().all(|s| s.range_start.is_some()),
        "{first_call:?}"
    );

    server.set_mode(Mode::Full);
    ensure_cifar10(root.path(), &spec, false).unwrap();
    assert_installed(root.path(), &ds);
    let seen = server.seen();
    assert_eq!(seen.len(), 6);
    assert_eq!(
        seen[5].range_start,
        Some(kept),
        "the second call resumed from the kept bytes"
    );
}

#[test]
fn part_is_restarted_when_the_server_ignores_ranges() {
    let ds = small_dataset();
    let archive = tar_gz(&dataset_entries(&ds));
    let server = TestServer::start(vec![(ARCHIVE_PATH, archive.clone())], Mode::NoRange);
    let root = tempfile::tempdir().unwrap();
    let spec = spec_for(server.url(ARCHIVE_PATH), &archive);
    let part = part_path(root.path());
    fs::create_dir_all(part.parent().unwrap()).unwrap();
    fs::write(&part, vec![0xAB; archive.len() / 3]).unwrap();

    ensure_cifar10(root.path(), &spec, false).unwrap();
    assert_installed(root.path(), &ds);
    assert_eq!(server.seen()[0].range_start, Some(archive.len() as u64 / 3));
}

#[test]
fn full_length_part_is_not_taken_as_complete() {
    let ds = small_dataset();
    let archive = tar_gz(&dataset_entries(&ds));
    let server = TestServer::start(vec![(ARCHIVE_PATH, archive.clone())], Mode::Full);
    let root = tempfile::tempdir().unwrap();
    let spec = spec_for(server.url(ARCHIVE_PATH), &archive);
    let part = part_path(root.path());
    fs::create_dir_all(part.parent().unwrap()).unwrap();
    // As long as the real archive, but garbage: the server answers 416 and the download starts over.
    fs::write(&part, vec![0u8; archive.len()]).unwrap();

    ensure_cifar10(root.path(), &spec, false).unwrap();
    assert_installed(root.path(), &ds);
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].range_start, Some(archive.len() as u64));
    assert_eq!(seen[1].range_start, None);
}

#[test]
fn corrupt_part_resumed_fails_the_checksum_then_a_fresh_download_succeeds() {
    let ds = small_dataset();
    let archive = tar_gz(&dataset_entries(&ds));
    let server = TestServer::start(vec![(ARCHIVE_PATH, archive.clone())], Mode::Full);
    let root = tempfile::tempdir().unwrap();
    let spec = spec_for(server.url(ARCHIVE_PATH), &archive);
    let part = part_path(root.path());
    fs::create_dir_all(part.parent().unwrap()).unwrap();
    let mut corrupt = archive[..archive.len() / 2].to_vec();
    corrupt[100] ^= 0xFF;
    fs::write(&part, &corrupt).unwrap();

    let err = ensure_cifar10(root.path(), &spec, false).unwrap_err();
    assert!(matches!(err, DataError::ChecksumMismatch { .. }), "{err}");
    assert!(
        files_under(root.path()).is_empty(),
        "left behind: {:?}",
        files_under(root.path())
    );

    ensure_cifar10(root.path(), &spec, false).unwrap();
    assert_installed(root.path(), &ds);
    assert_eq!(
        server.seen().last().unwrap().range_start,
        None,
        "the retry started from scratch"
    );
}

/// Serves `entries` as an archive with a matching MD5, runs `ensure_cifar10` in `sandbox/root`, and returns
/// the error after checking that nothing at all is left anywhere in the sandbox.
fn hostile_download(sandbox: &Path, entries: &[RawEntry]) -> DataError {
    let archive = tar_gz(entries);
    let server = TestServer::start(vec![(ARCHIVE_PATH, archive.clone())], Mode::Full);
    let root = sandbox.join("root");
    let err = ensure_cifar10(&root, &spec_for(server.url(ARCHIVE_PATH), &archive), false).unwrap_err();
    assert!(
        files_under(sandbox).is_empty(),
        "left behind: {:?}",
        files_under(sandbox)
    );
    assert!(!cifar10_present(&root));
    err
}

fn assert_unsafe_entry(err: &DataError, entry: &str, reason: &str) {
    match err {
        DataError::UnsafeArchiveEntry { entry: e, .. } => assert_eq!(e, entry),
        other => panic!("expected UnsafeArchiveEntry for {entry}, got {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(entry) && msg.contains(reason), "{msg}");
}

#[test]
fn parent_dir_entry_is_refused() {
    let sandbox = tempfile::tempdir().unwrap();
    let mut entries = dataset_entries(&small_dataset());
    entries.insert(3, RawEntry::file("../evil", b"escaped".to_vec()));
    let err = hostile_download(sandbox.path(), &entries);
    assert_unsafe_entry(&err, "../evil", "..");

    let mut entries = dataset_entries(&small_dataset());
    entries.push(RawEntry::file(
        &format!("{DATA_DIR}/../../evil2"),
        b"escaped".to_vec(),
    ));
    let err = hostile_download(sandbox.path(), &entries);
    assert_unsafe_entry(&err, &format!("{DATA_DIR}/../../evil2"), "..");
}

#[test]
fn absolute_entry_is_refused() {
    let sandbox = tempfile::tempdir().unwrap();
    let target = sandbox.path().join("absolute_evil");
    let name = target.display().to_string();
    let mut entries = dataset_entries(&small_dataset());
    entries.insert(0, RawEntry::file(&name, b"escaped".to_vec()));
    let err = hostile_download(sandbox.path(), &entries);
    assert_unsafe_entry(&err, &name, "absolute path");
    assert!(!target.exists());
}

#[test]
fn link_entries_are_refused() {
    let sandbox = tempfile::tempdir().unwrap();
    let victim = sandbox.path().join("victim");
    let link_name = format!("{DATA_DIR}/test_batch.bin");
    for (kind, reason) in [
        (EntryType::Symlink, "symbolic link"),
        (EntryType::Link, "hard link"),
    ] {
        let mut entries = dataset_entries(&small_dataset());
        // The link comes first, so a careless extractor would then write the real file through it.
        entries.insert(
            0,
            RawEntry {
                name: link_name.clone(),
                kind,
                data: vec![],
                link: Some(victim.display().to_string()),
            },
        );
        let err = hostile_download(sandbox.path(), &entries);
        assert_unsafe_entry(&err, &link_name, reason);
        assert!(!victim.exists());
    }
}

#[test]
fn device_entry_is_refused() {
    let sandbox = tempfile::tempdir().unwrap();
    let mut entries = dataset_entries(&small_dataset());
    entries.push(RawEntry {
        name: "dev_null".into(),
        kind: EntryType::Char,
        data: vec![],
        link: None,
    });
    let err = hostile_download(sandbox.path(), &entries);
    assert_unsafe_entry(&err, "dev_null", "device");
}

#[test]
fn archive_without_the_dataset_files_is_refused() {
    let sandbox = tempfile::tempdir().unwrap();
    let entries: Vec<RawEntry> = dataset_entries(&small_dataset())
        .into_iter()
        .filter(|e| !e.name.ends_with("test_batch.bin"))
        .collect();
    let err = hostile_download(sandbox.path(), &entries);
    assert!(matches!(err, DataError::ArchiveIncomplete { .. }), "{err}");
    assert!(
        err.to_string().contains("cifar-10-batches-bin/test_batch.bin"),
        "{err}"
    );
}

#[test]
fn not_a_gzip_is_refused() {
    let sandbox = tempfile::tempdir().unwrap();
    let body = b"<html>this mirror moved</html>".to_vec();
    let server = TestServer::start(vec![(ARCHIVE_PATH, body.clone())], Mode::Full);
    let root = sandbox.path().join("root");
    let err = ensure_cifar10(&root, &spec_for(server.url(ARCHIVE_PATH), &body), false).unwrap_err();
    assert!(matches!(err, DataError::BadArchive { .. }), "{err}");
    assert!(
        files_under(sandbox.path()).is_empty(),
        "left behind: {:?}",
        files_under(sandbox.path())
    );
}

#[test]
fn no_server_names_the_url_and_the_files_to_place_by_hand() {
    let root = tempfile::tempdir().unwrap();
    let url = dead_url(ARCHIVE_PATH);
    let spec = DownloadSpec {
        url: url.clone(),
        md5: "c32a1d4ab5d03f1284b67883e8d87530".into(),
        size: None,
    };
    let err = ensure_cifar10(root.path(), &spec, false).unwrap_err();
    assert!(matches!(err, DataError::Network { kept: 0, .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&url), "{msg}");
    assert!(
        msg.contains(&root.path().join(DATA_DIR).display().to_string()),
        "{msg}"
    );
    for file in [
        "data_batch_1.bin",
        "data_batch_5.bin",
        "test_batch.bin",
        "batches.meta.txt",
        "data.url",
    ] {
        assert!(msg.contains(file), "{file} missing from: {msg}");
    }
    assert!(files_under(root.path()).is_empty());
    assert!(!root.path().join(DOWNLOAD_DIR).exists());
}

#[test]
fn http_error_status_names_the_url() {
    let server = TestServer::start(vec![], Mode::Full);
    let root = tempfile::tempdir().unwrap();
    let url = server.url("/missing.tar.gz");
    let spec = DownloadSpec {
        url: url.clone(),
        md5: "c32a1d4ab5d03f1284b67883e8d87530".into(),
        size: None,
    };
    let err = ensure_cifar10(root.path(), &spec, false).unwrap_err();
    assert!(matches!(err, DataError::HttpStatus { status: 404, .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&url) && msg.contains("404") && msg.contains("test_batch.bin"),
        "{msg}"
    );
}

#[test]
fn partly_installed_dataset_is_completed_in_place() {
    let ds = small_dataset();
    let archive = tar_gz(&dataset_entries(&ds));
    let server = TestServer::start(vec![(ARCHIVE_PATH, archive.clone())], Mode::Full);
    let root = tempfile::tempdir().unwrap();
    // A hand install that stopped half-way, with one stale file.
    let dir = root.path().join(DATA_DIR);
    fs::create_dir_all(&dir).unwrap();
    fs::File::create(dir.join("data_batch_1.bin"))
        .unwrap()
        .write_all(b"stale")
        .unwrap();

    ensure_cifar10(root.path(), &spec_for(server.url(ARCHIVE_PATH), &archive), false).unwrap();
    assert_installed(root.path(), &ds);
}

/// Through the real binary: the first `labpipe run` downloads and trains; the second finds every stage cached
/// (the dataset's fingerprint does not change with its download) and asks the server for nothing.
#[test]
fn pipeline_downloads_once_then_everything_is_cached() {
    let ds = labpipe::data::synthetic::generate(10, 4);
    let archive = tar_gz(&dataset_entries(&ds));
    let md5 = format!("{:x}", md5::compute(&archive));
    let server = TestServer::start(vec![(ARCHIVE_PATH, archive)], Mode::Full);
    let tmp = tempfile::tempdir().unwrap();
    let yaml = format!(
        "name: dl\ndata:\n  dataset: cifar10\n  root: cifar\n  url: {}\n  md5: {md5}\n  val_split: 2\nmodel:\n  layers:\n    - conv2d: {{out_channels: 4, kernel: 3}}\n    - flatten\n    - linear: {{out_features: 10}}\ntrain:\n  epochs: 1\n  batch_size: 4\n  optimizer: {{name: adam, lr: 0.01}}\n",
        server.url(ARCHIVE_PATH)
    );
    fs::write(tmp.path().join("p.yaml"), yaml).unwrap();
    let run = || labpipe(tmp.path(), &["run", "p.yaml"]);
    let first = run();
    let err = stderr(&first);
    assert!(first.status.success(), "{err}");
    assert!(err.contains("baseline: train    ran in"), "{err}");
    let requests = server.seen().len();
    assert!(requests >= 1);
    let second = run();
    let err = stderr(&second);
    assert!(second.status.success(), "{err}");
    assert!(!err.contains("ran in") && err.contains("up to date"), "{err}");
    assert_eq!(server.seen().len(), requests, "no second download");
}

/// A mirror that serves some other file: said so at once with both sizes, not retried, nothing kept.
#[test]
fn a_different_file_from_a_mirror_is_named_not_retried_and_not_kept() {
    let body = vec![7u8; 5000];
    let server = TestServer::start(vec![(ARCHIVE_PATH, body)], Mode::Full);
    let root = tempfile::tempdir().unwrap();
    let spec = DownloadSpec {
        url: server.url(ARCHIVE_PATH),
        ..DownloadSpec::cifar10()
    };
    let err = ensure_cifar10(root.path(), &spec, false).unwrap_err();
    assert!(
        matches!(err, DataError::WrongFile { announced: 5000, .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("sends a file of 5000 bytes")
            && msg.contains("is 170052171 bytes")
            && msg.contains("data.md5"),
        "{msg}"
    );
    assert!(!msg.contains("stopped after"), "{msg}");
    assert_eq!(server.seen().len(), 1, "retried: {:?}", server.seen());
    assert!(
        files_under(root.path()).is_empty(),
        "left behind: {:?}",
        files_under(root.path())
    );

    // Resuming a .part against that mirror: the range's total gives it away too.
    let part = part_path(root.path());
    fs::create_dir_all(part.parent().unwrap()).unwrap();
    fs::write(&part, vec![7u8; 100]).unwrap();
    let err = ensure_cifar10(root.path(), &spec, false).unwrap_err();
    assert!(
        matches!(err, DataError::WrongFile { announced: 5000, .. }),
        "{err}"
    );
    assert_eq!(server.seen().last().unwrap().range_start, Some(100));
    assert!(!part.exists(), "the .part of another file is not kept");
}

/// `-q` means quiet: no download lines, no progress, no verifying or extracting.
#[test]
fn a_quiet_run_prints_nothing_about_the_download() {
    let ds = labpipe::data::synthetic::generate(10, 4);
    let archive = tar_gz(&dataset_entries(&ds));
    let md5 = format!("{:x}", md5::compute(&archive));
    let server = TestServer::start(vec![(ARCHIVE_PATH, archive)], Mode::Full);
    let tmp = tempfile::tempdir().unwrap();
    let yaml = format!(
        "name: dl\ndata:\n  dataset: cifar10\n  root: cifar\n  url: {}\n  md5: {md5}\n  val_split: 2\nmodel:\n  layers:\n    - flatten\n    - linear: {{out_features: 10}}\ntrain:\n  epochs: 1\n  batch_size: 4\n  optimizer: {{name: adam, lr: 0.01}}\n",
        server.url(ARCHIVE_PATH)
    );
    fs::write(tmp.path().join("p.yaml"), yaml).unwrap();
    let o = labpipe(tmp.path(), &["run", "-q", "--device", "cpu", "p.yaml"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(err, "", "a quiet run printed");
    assert!(!server.seen().is_empty());
    // Not quiet: it says what it downloads.
    fs::remove_dir_all(tmp.path().join("cifar")).unwrap();
    fs::remove_dir_all(tmp.path().join("out")).unwrap();
    let o = labpipe(tmp.path(), &["run", "--device", "cpu", "p.yaml"]);
    let err = stderr(&o);
    assert!(
        err.contains("downloading ") && err.contains("extracting "),
        "{err}"
    );
}

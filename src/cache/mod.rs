//! The stage cache: `out/cache/<stage>/<key>/` holds a stage's artifacts and a manifest of what produced
//! them. A stage is built in `.partial-<key>/` (kept across crashes so training can resume) and renamed into
//! place when complete, under a per-stage lock so concurrent runs never corrupt each other.

pub mod canonical;
pub mod code_identity;
pub mod key;

pub use canonical::canonical_json;

pub use key::{FORMAT_VERSION, StageKey};

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Cache trouble.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Filesystem trouble.
    #[error("cache `{path}`: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A build directory does not hold exactly the files its stage writes.
    #[error("the {stage} stage's build in `{}` {problem}", dir.display())]
    Contents {
        /// The stage.
        stage: String,
        /// The build directory.
        dir: PathBuf,
        /// What is wrong (`lacks model.safetensors`, `holds notes.txt, which the stage does not write`).
        problem: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One file a stage produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// File name inside the stage directory.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// blake3 of the content.
    pub blake3: String,
}

/// `manifest.json`: what a stage directory holds and what produced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Stage name.
    pub stage: String,
    /// The key (directory name).
    pub key: String,
    /// Everything the key was computed from.
    pub key_input: serde_json::Value,
    /// The files, with sizes and hashes.
    pub artifacts: Vec<Artifact>,
    /// Seconds the stage took.
    pub seconds: f64,
    /// labpipe version that wrote it.
    pub labpipe_version: String,
    /// blake3 of the other fields' canonical JSON ([`Manifest::digest`]): an edited manifest is damage.
    #[serde(default)]
    pub digest: String,
}

impl Manifest {
    /// The hash of everything in the manifest but its `digest` field.
    pub fn digest(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(m) = v.as_object_mut() {
            m.remove("digest");
        }
        blake3::hash(canonical_json(&v).as_bytes()).to_hex().to_string()
    }

    /// Why this manifest cannot vouch for the entry of `key` whose stage writes `files`, if it cannot.
    fn check(&self, key: &StageKey, files: &[&str]) -> Result<(), String> {
        if self.digest.is_empty() {
            return Err("manifest.json has no integrity hash (an older labpipe wrote it)".into());
        }
        if self.digest != self.digest() {
            return Err("manifest.json was edited (its integrity hash differs)".into());
        }
        if self.stage != key.stage || self.key != key.key {
            return Err(format!(
                "manifest.json describes {}/{}, not this entry",
                self.stage, self.key
            ));
        }
        if StageKey::hash_of(&self.key_input) != key.key {
            return Err("manifest.json's key input does not hash to its key".into());
        }
        let listed: Vec<&str> = self.artifacts.iter().map(|a| a.name.as_str()).collect();
        if let Some(missing) = files.iter().find(|f| !listed.contains(f)) {
            return Err(format!("manifest.json does not list {missing}"));
        }
        if let Some(extra) = listed.iter().find(|n| !files.contains(n)) {
            return Err(format!(
                "manifest.json lists {extra}, which the {} stage does not write",
                key.stage
            ));
        }
        Ok(())
    }
}

/// The cache under an out directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A complete, verified stage directory.
#[derive(Debug, Clone)]
pub struct StageDir {
    /// The directory.
    pub path: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
}

impl StageDir {
    /// Path of an artifact.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

/// Why a stage is not in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    /// No directory for the key.
    Absent,
    /// The directory exists but an artifact is missing, truncated or altered (the reason says which).
    Corrupt(String),
}

/// A held lock on a stage key, released on drop (and by the OS if the process dies).
pub struct StageLock {
    file: File,
    path: PathBuf,
}

impl StageLock {
    /// Delete the lock file and release the lock (for `labpipe clean`, once the key's directories are gone).
    /// Safe against racing lockers: [`Store::lock`] re-checks that the file it locked is still the one at the
    /// path, so a process that was waiting on the deleted file retries on a fresh one.
    pub fn remove(self) -> std::io::Result<()> {
        let r = std::fs::remove_file(&self.path);
        drop(self.file);
        r
    }
}

/// One directory in the cache: a complete stage entry or an unfinished build.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CacheEntry {
    /// Stage name.
    pub stage: String,
    /// The stage key (without the `.partial-` prefix).
    pub key: String,
    /// The directory.
    pub path: PathBuf,
    /// True for `.partial-<key>/`: a build that was interrupted or is running now.
    pub partial: bool,
}

/// A stage being built.
pub struct StageBuild {
    dir: PathBuf,
    final_dir: PathBuf,
    key: StageKey,
    _lock: StageLock,
}

/// Whether `name` is a temporary file of an atomic write (`x.tmp`, `x.tmp-<pid>`) that a killed process left.
pub fn is_temporary(name: &str) -> bool {
    name.ends_with(".tmp") || name.contains(".tmp-")
}

const MANIFEST: &str = "manifest.json";
const PARTIAL_PREFIX: &str = ".partial-";

/// Whether `name` has the shape of a stage key (16 lowercase hex characters).
fn is_key(name: &str) -> bool {
    name.len() == 16
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Something in the cache or beside it that labpipe did not make, and why it is not labpipe's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Foreign {
    /// The path.
    pub path: PathBuf,
    /// Why labpipe does not recognise it.
    pub why: String,
}

impl Foreign {
    /// `path` with the reason.
    pub fn new(path: &Path, why: impl Into<String>) -> Self {
        Foreign {
            path: path.to_path_buf(),
            why: why.into(),
        }
    }
}

/// What a directory entry is, without following a symbolic link.
pub enum EntryKind {
    /// A plain file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (never followed) or something else that is neither.
    Other(&'static str),
}

/// The kind of `path` as it is (a link is a link); None when it does not exist.
pub fn entry_kind(path: &Path) -> Option<EntryKind> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let t = meta.file_type();
    Some(if t.is_symlink() {
        EntryKind::Other("a symbolic link (labpipe never follows one)")
    } else if t.is_dir() {
        EntryKind::Dir
    } else if t.is_file() {
        EntryKind::File
    } else {
        EntryKind::Other("neither a file nor a directory")
    })
}

/// A stage key's lock file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LockFile {
    /// Stage name.
    pub stage: String,
    /// The key.
    pub key: String,
    /// The file.
    pub path: PathBuf,
}

/// The cache as `labpipe clean` sees it: labpipe's entries and lock files, and anything labpipe did not make.
#[derive(Debug, Default)]
pub struct Survey {
    /// Complete entries and unfinished builds, sorted.
    pub entries: Vec<CacheEntry>,
    /// Lock files, sorted.
    pub locks: Vec<LockFile>,
    /// Everything else, sorted: `clean` touches nothing while there is any.
    pub foreign: Vec<Foreign>,
}

/// Whether the locked `file` is still the file at `path` (clean may have deleted and another process
/// recreated it while this one waited): locking a deleted file would not exclude anyone.
fn still_linked(file: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        true
    }
}

/// The entries of `dir`, sorted (none when it cannot be read).
pub fn sorted_children(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut h = blake3::Hasher::new();
    let mut f = File::open(path)?;
    let n = std::io::copy(&mut f, &mut h)?;
    Ok((n, h.finalize().to_hex().to_string()))
}

impl Store {
    /// The cache in `out/cache`.
    pub fn new(out: &Path) -> Self {
        Store {
            root: out.join("cache"),
        }
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, key: &StageKey) -> PathBuf {
        self.root.join(&key.stage).join(&key.key)
    }

    /// The complete stage for `key`, whose stage writes exactly `files`, verified: the manifest is intact and
    /// describes this key, lists exactly `files`, the directory holds nothing else, and every file has the
    /// size and hash the manifest gives.
    pub fn lookup(&self, key: &StageKey, files: &[&str]) -> Result<StageDir, Miss> {
        let dir = self.dir(key);
        let text = match std::fs::read_to_string(dir.join(MANIFEST)) {
            Ok(t) => t,
            Err(_) if !dir.exists() => return Err(Miss::Absent),
            Err(_) => return Err(Miss::Corrupt("manifest.json is missing".into())),
        };
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| Miss::Corrupt(format!("manifest.json is unreadable: {e}")))?;
        manifest.check(key, files).map_err(Miss::Corrupt)?;
        let entries = std::fs::read_dir(&dir).map_err(|e| Miss::Corrupt(format!("{e}")))?;
        let mut extra: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != MANIFEST && !files.contains(&n.as_str()))
            .collect();
        extra.sort();
        if let Some(name) = extra.first() {
            return Err(Miss::Corrupt(format!(
                "{name} is in the entry but not in its manifest"
            )));
        }
        for a in &manifest.artifacts {
            let p = dir.join(&a.name);
            if !matches!(entry_kind(&p), Some(EntryKind::File)) {
                return Err(Miss::Corrupt(format!("artifact {} is missing", a.name)));
            }
            let meta = std::fs::metadata(&p)
                .map_err(|_| Miss::Corrupt(format!("artifact {} is missing", a.name)))?;
            if meta.len() != a.bytes {
                return Err(Miss::Corrupt(format!(
                    "artifact {} is {} bytes, the manifest says {}",
                    a.name,
                    meta.len(),
                    a.bytes
                )));
            }
            let (_, h) = hash_file(&p).map_err(|e| Miss::Corrupt(format!("artifact {}: {e}", a.name)))?;
            if h != a.blake3 {
                return Err(Miss::Corrupt(format!(
                    "artifact {} was altered (hash differs)",
                    a.name
                )));
            }
        }
        Ok(StageDir { path: dir, manifest })
    }

    fn open_lock(&self, key: &StageKey) -> Result<(File, PathBuf), CacheError> {
        let dir = self.root.join(&key.stage);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = dir.join(format!(".{}.lock", key.key));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        Ok((file, path))
    }

    /// Take the lock for `key`, waiting while another process holds it. The kernel releases a lock whose
    /// process dies (even by SIGKILL), so a crashed run never blocks the next one.
    pub fn lock(&self, key: &StageKey) -> Result<StageLock, CacheError> {
        loop {
            let (file, path) = self.open_lock(key)?;
            file.lock().map_err(io(&path))?;
            if still_linked(&file, &path) {
                return Ok(StageLock { file, path });
            }
        }
    }

    /// Take the lock for `key` if no other process holds it; `None` when one does.
    pub fn try_lock(&self, key: &StageKey) -> Result<Option<StageLock>, CacheError> {
        loop {
            let (file, path) = self.open_lock(key)?;
            match file.try_lock() {
                Ok(()) if still_linked(&file, &path) => return Ok(Some(StageLock { file, path })),
                Ok(()) => continue,
                Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
                Err(std::fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
            }
        }
    }

    /// Whether a live process holds the lock for `key` now (building the stage). Creates nothing: a key
    /// without a lock file is not locked.
    pub fn is_locked(&self, key: &StageKey) -> bool {
        let path = self.root.join(&key.stage).join(format!(".{}.lock", key.key));
        let Ok(file) = File::options().read(true).open(&path) else {
            return false;
        };
        // A shared lock is refused while a builder holds its exclusive one; taken, it is released at once.
        matches!(file.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock))
    }

    /// Take the lock for `key`; if another process holds it, call `on_wait` once (to tell the user) and wait.
    pub fn lock_or_wait(&self, key: &StageKey, on_wait: impl FnOnce()) -> Result<StageLock, CacheError> {
        if let Some(lock) = self.try_lock(key)? {
            return Ok(lock);
        }
        on_wait();
        self.lock(key)
    }

    /// Where an unfinished build of `key` lives (it may not exist).
    pub fn partial_dir(&self, key: &StageKey) -> PathBuf {
        self.root
            .join(&key.stage)
            .join(format!("{PARTIAL_PREFIX}{}", key.key))
    }

    /// Start building `key` (its lock must be held, and passed in); the work directory keeps whatever an
    /// interrupted earlier build left (so training can resume).
    pub fn begin(&self, key: &StageKey, lock: StageLock) -> Result<StageBuild, CacheError> {
        let final_dir = self.dir(key);
        let dir = self.partial_dir(key);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(StageBuild {
            dir,
            final_dir,
            key: key.clone(),
            _lock: lock,
        })
    }

    /// Every directory in the cache, complete entries and unfinished builds, sorted by stage then key
    /// (whatever their contents: see [`Store::survey`]).
    pub fn list(&self) -> Vec<CacheEntry> {
        self.survey(&[], |_, _, _| true).entries
    }

    /// Lock files: one per key ever built, including keys whose directories are gone.
    pub fn lock_files(&self) -> Vec<LockFile> {
        self.survey(&[], |_, _, _| true).locks
    }

    /// Everything under the cache, sorted into labpipe's entries and lock files and anything labpipe did not
    /// make. `stages` are the stage folders (empty: any folder is taken for one); `holds(stage, file,
    /// unfinished)` says whether a stage's directory may hold a file of that name, besides its manifest and
    /// temporary files. A symbolic link is never followed: it is foreign.
    pub fn survey(&self, stages: &[&str], holds: impl Fn(&str, &str, bool) -> bool) -> Survey {
        let mut out = Survey::default();
        match entry_kind(&self.root) {
            None => return out,
            Some(EntryKind::Dir) => {}
            Some(EntryKind::File) => {
                out.foreign.push(Foreign::new(
                    &self.root,
                    "a file where the cache folder should be",
                ));
                return out;
            }
            Some(EntryKind::Other(why)) => {
                out.foreign.push(Foreign::new(&self.root, why));
                return out;
            }
        }
        for s in sorted_children(&self.root) {
            let stage = s.file_name().unwrap_or_default().to_string_lossy().into_owned();
            match entry_kind(&s) {
                Some(EntryKind::Dir) if stages.is_empty() || stages.contains(&stage.as_str()) => {}
                Some(EntryKind::Other(why)) => {
                    out.foreign.push(Foreign::new(&s, why));
                    continue;
                }
                _ => {
                    out.foreign
                        .push(Foreign::new(&s, "not a stage folder of labpipe's cache"));
                    continue;
                }
            }
            for k in sorted_children(&s) {
                let name = k.file_name().unwrap_or_default().to_string_lossy().into_owned();
                let kind = entry_kind(&k);
                if let Some(EntryKind::Other(why)) = kind {
                    out.foreign.push(Foreign::new(&k, why));
                    continue;
                }
                let is_dir = matches!(kind, Some(EntryKind::Dir));
                if !is_dir {
                    match name.strip_prefix('.').and_then(|n| n.strip_suffix(".lock")) {
                        Some(key) if stages.is_empty() || is_key(key) => out.locks.push(LockFile {
                            stage: stage.clone(),
                            key: key.to_string(),
                            path: k,
                        }),
                        _ => out.foreign.push(Foreign::new(&k, "not a lock file of labpipe's")),
                    }
                    continue;
                }
                let (key, partial) = match name.strip_prefix(PARTIAL_PREFIX) {
                    Some(key) => (key.to_string(), true),
                    None => (name, false),
                };
                if !stages.is_empty() && !is_key(&key) {
                    out.foreign
                        .push(Foreign::new(&k, "not a cache entry (its name is no stage key)"));
                    continue;
                }
                for f in sorted_children(&k) {
                    let file = f.file_name().unwrap_or_default().to_string_lossy().into_owned();
                    match entry_kind(&f) {
                        Some(EntryKind::File)
                            if file == MANIFEST || is_temporary(&file) || holds(&stage, &file, partial) => {}
                        Some(EntryKind::Other(why)) => out.foreign.push(Foreign::new(&f, why)),
                        Some(EntryKind::Dir) => out
                            .foreign
                            .push(Foreign::new(&f, "a folder inside a cache entry")),
                        _ => out.foreign.push(Foreign::new(
                            &f,
                            format!("a file the {stage} stage does not write"),
                        )),
                    }
                }
                out.entries.push(CacheEntry {
                    stage: stage.clone(),
                    key,
                    path: k,
                    partial,
                });
            }
        }
        out.entries.sort();
        out.locks.sort();
        out
    }

    /// A key of `stage` named `key` (for locking an entry found by [`Store::list`]).
    pub fn key_of(stage: &str, key: &str) -> StageKey {
        StageKey {
            stage: stage.to_string(),
            key: key.to_string(),
            input: serde_json::Value::Null,
        }
    }
}

impl StageBuild {
    /// The directory to write artifacts into.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Hash the stage's `files`, write the manifest, and move the directory into place. Temporary files a
    /// killed earlier attempt left behind are deleted; a missing file, or any other file, is an error: the
    /// manifest lists exactly what the stage writes.
    pub fn commit(self, seconds: f64, files: &[&str]) -> Result<StageDir, CacheError> {
        let present: Vec<String> = std::fs::read_dir(&self.dir)
            .map_err(io(&self.dir))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        for n in present.iter().filter(|n| is_temporary(n)) {
            let _ = std::fs::remove_file(self.dir.join(n));
        }
        let contents = |problem: String| CacheError::Contents {
            stage: self.key.stage.clone(),
            dir: self.dir.clone(),
            problem,
        };
        let mut unexpected: Vec<&str> = present
            .iter()
            .map(String::as_str)
            .filter(|n| *n != MANIFEST && !is_temporary(n) && !files.contains(n))
            .collect();
        unexpected.sort();
        if !unexpected.is_empty() {
            return Err(contents(format!(
                "holds {}, which the stage does not write",
                unexpected.join(", ")
            )));
        }
        let mut names: Vec<&str> = files.to_vec();
        names.sort();
        let mut artifacts = Vec::new();
        for name in names {
            let p = self.dir.join(name);
            if !matches!(entry_kind(&p), Some(EntryKind::File)) {
                return Err(contents(format!("lacks {name}")));
            }
            let (bytes, blake3) = hash_file(&p).map_err(io(&p))?;
            artifacts.push(Artifact {
                name: name.to_string(),
                bytes,
                blake3,
            });
        }
        let mut manifest = Manifest {
            stage: self.key.stage.clone(),
            key: self.key.key.clone(),
            key_input: self.key.input.clone(),
            artifacts,
            seconds,
            labpipe_version: env!("CARGO_PKG_VERSION").to_string(),
            digest: String::new(),
        };
        manifest.digest = manifest.digest();
        let mpath = self.dir.join(MANIFEST);
        std::fs::write(&mpath, serde_json::to_vec_pretty(&manifest).unwrap_or_default())
            .map_err(io(&mpath))?;
        // A corrupt old directory under the final name is replaced.
        if self.final_dir.exists() {
            std::fs::remove_dir_all(&self.final_dir).map_err(io(&self.final_dir))?;
        }
        std::fs::rename(&self.dir, &self.final_dir).map_err(io(&self.final_dir))?;
        Ok(StageDir {
            path: self.final_dir.clone(),
            manifest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(stage: &str, v: serde_json::Value) -> StageKey {
        StageKey::new(stage, v, &[], "code")
    }

    /// Commit `files` (each holding its own name) as `k`'s entry.
    fn commit(store: &Store, k: &StageKey, files: &[&str]) -> StageDir {
        let b = store.begin(k, store.lock(k).unwrap()).unwrap();
        for f in files {
            std::fs::write(b.dir().join(f), f).unwrap();
        }
        b.commit(1.0, files).unwrap()
    }

    fn corrupt(r: Result<StageDir, Miss>) -> String {
        match r {
            Err(Miss::Corrupt(m)) => m,
            Err(Miss::Absent) => panic!("absent"),
            Ok(d) => panic!("accepted {}", d.path.display()),
        }
    }

    fn rewrite_manifest(dir: &StageDir, edit: impl FnOnce(&mut Manifest), reseal: bool) {
        let path = dir.file(MANIFEST);
        let mut m: Manifest = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        edit(&mut m);
        if reseal {
            m.digest = m.digest();
        }
        std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    }

    #[test]
    fn commit_then_lookup_then_detect_damage() {
        let out = tempfile::tempdir().unwrap();
        let store = Store::new(out.path());
        let k = key("train", json!({"lr": 0.1}));
        let files = ["a.json"];
        assert_eq!(store.lookup(&k, &files).unwrap_err(), Miss::Absent);
        let done = commit(&store, &k, &files);
        assert_eq!(done.manifest.artifacts.len(), 1);
        assert!(store.lookup(&k, &files).is_ok());
        assert!(!store.partial_dir(&k).exists());

        std::fs::write(done.file("a.json"), b"a.jsoN").unwrap();
        assert!(corrupt(store.lookup(&k, &files)).contains("altered"));
        std::fs::write(done.file("a.json"), b"{").unwrap();
        assert!(corrupt(store.lookup(&k, &files)).contains("1 bytes"));
        std::fs::remove_file(done.file("a.json")).unwrap();
        assert!(corrupt(store.lookup(&k, &files)).contains("missing"));
    }

    #[test]
    fn commit_lists_exactly_the_stages_files() {
        let out = tempfile::tempdir().unwrap();
        let store = Store::new(out.path());
        let k = key("plot", json!(3));
        let b = store.begin(&k, store.lock(&k).unwrap()).unwrap();
        std::fs::write(b.dir().join("a.png"), b"a").unwrap();
        std::fs::write(b.dir().join("scratch"), b"x").unwrap();
        let e = b.commit(0.0, &["a.png"]).unwrap_err().to_string();
        assert!(e.contains("holds scratch, which the stage does not write"), "{e}");
        let b = store.begin(&k, store.lock(&k).unwrap()).unwrap();
        std::fs::remove_file(b.dir().join("scratch")).unwrap();
        let e = b.commit(0.0, &["a.png", "b.png"]).unwrap_err().to_string();
        assert!(e.contains("lacks b.png"), "{e}");
        assert_eq!(store.lookup(&k, &["a.png"]).unwrap_err(), Miss::Absent);
    }

    #[test]
    fn a_manifest_protects_itself() {
        let out = tempfile::tempdir().unwrap();
        let store = Store::new(out.path());
        let k = key("train", json!(4));
        let files = ["model.safetensors", "outcome.json"];
        let done = commit(&store, &k, &files);
        assert!(store.lookup(&k, &files).is_ok());

        // An artifact dropped from the list, then altered: with or without a recomputed integrity hash.
        for reseal in [false, true] {
            rewrite_manifest(
                &done,
                |m| m.artifacts.retain(|a| a.name != "outcome.json"),
                reseal,
            );
            std::fs::write(done.file("outcome.json"), b"altered").unwrap();
            let why = corrupt(store.lookup(&k, &files));
            let want = if reseal {
                "manifest.json does not list outcome.json"
            } else {
                "manifest.json was edited (its integrity hash differs)"
            };
            assert_eq!(why, want);
            commit(&store, &k, &files);
        }
        // The stage's reader no longer expects a file the manifest lists.
        assert_eq!(
            corrupt(store.lookup(&k, &["model.safetensors"])),
            "manifest.json lists outcome.json, which the train stage does not write"
        );
        // A file added beside the listed ones.
        std::fs::write(done.file("notes.txt"), b"x").unwrap();
        assert_eq!(
            corrupt(store.lookup(&k, &files)),
            "notes.txt is in the entry but not in its manifest"
        );
        std::fs::remove_file(done.file("notes.txt")).unwrap();
        // Another key's manifest, or a key input that is not this key's, sealed anew.
        let other = key("train", json!(5));
        rewrite_manifest(&done, |m| m.key = other.key.clone(), true);
        assert!(corrupt(store.lookup(&k, &files)).contains("describes train/"));
        rewrite_manifest(
            &done,
            |m| {
                m.key = k.key.clone();
                m.key_input = other.input.clone();
            },
            true,
        );
        assert_eq!(
            corrupt(store.lookup(&k, &files)),
            "manifest.json's key input does not hash to its key"
        );
        // A manifest from before manifests were sealed.
        rewrite_manifest(
            &done,
            |m| {
                m.key_input = k.input.clone();
                m.digest = String::new();
            },
            false,
        );
        assert!(corrupt(store.lookup(&k, &files)).contains("no integrity hash"));
    }

    #[test]
    fn a_held_lock_excludes_others_and_survives_its_file_being_replaced() {
        let out = tempfile::tempdir().unwrap();
        let store = Store::new(out.path());
        let k = key("train", json!(1));
        assert!(!store.is_locked(&k));
        let held = store.lock(&k).unwrap();
        // flock locks belong to an open file, so a second open in this process is a second locker.
        assert!(store.try_lock(&k).unwrap().is_none());
        assert!(store.is_locked(&k));
        let waited = std::sync::atomic::AtomicBool::new(false);
        let other = std::thread::scope(|s| {
            let t = s.spawn(|| {
                store
                    .lock_or_wait(&k, || waited.store(true, std::sync::atomic::Ordering::SeqCst))
                    .unwrap()
            });
            while !waited.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            // Give the waiter time to block on the file before it disappears.
            std::thread::sleep(std::time::Duration::from_millis(50));
            // Deleting the file while the other thread waits on it: it must retry on a fresh file rather than
            // believe it holds a lock nobody else can see.
            held.remove().unwrap();
            t.join().unwrap()
        });
        assert!(
            store.try_lock(&k).unwrap().is_none(),
            "the waiter's lock is on the file at the path"
        );
        drop(other);
        assert!(store.try_lock(&k).unwrap().is_some());
    }

    #[test]
    fn commit_leaves_out_temporary_files_of_a_killed_attempt() {
        let out = tempfile::tempdir().unwrap();
        let store = Store::new(out.path());
        let k = key("train", json!(2));
        let b = store.begin(&k, store.lock(&k).unwrap()).unwrap();
        for f in ["model.safetensors", "model.tmp-4242", "resume.json.tmp"] {
            std::fs::write(b.dir().join(f), f).unwrap();
        }
        let done = b.commit(0.0, &["model.safetensors"]).unwrap();
        let names: Vec<&str> = done.manifest.artifacts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["model.safetensors"]);
        assert!(!done.file("model.tmp-4242").exists());
        assert!(store.lookup(&k, &["model.safetensors"]).is_ok());
    }

    #[test]
    fn list_shows_complete_entries_and_unfinished_builds() {
        let out = tempfile::tempdir().unwrap();
        let store = Store::new(out.path());
        let (a, b) = (key("train", json!("a")), key("train", json!("b")));
        commit(&store, &a, &[]);
        let building = store.begin(&b, store.lock(&b).unwrap()).unwrap();
        let listed: Vec<(String, bool)> = store.list().into_iter().map(|e| (e.key, e.partial)).collect();
        let mut expected = vec![(a.key.clone(), false), (b.key.clone(), true)];
        expected.sort();
        assert_eq!(listed, expected);
        assert_eq!(store.partial_dir(&b), building.dir());
        let locks: Vec<String> = store.lock_files().into_iter().map(|l| l.key).collect();
        assert!(locks.contains(&a.key) && locks.contains(&b.key));
    }

    #[test]
    fn a_survey_tells_labpipes_files_from_anything_else() {
        let out = tempfile::tempdir().unwrap();
        let store = Store::new(out.path());
        let stages = ["train", "plot"];
        let holds = |stage: &str, file: &str, partial: bool| {
            (stage == "train" && (file == "model.safetensors" || (partial && file == "resume.json")))
                || (stage == "plot" && file == "a.png")
        };
        let (t, p) = (key("train", json!(1)), key("plot", json!(1)));
        commit(&store, &t, &["model.safetensors"]);
        commit(&store, &p, &["a.png"]);
        let b = key("train", json!(2));
        let building = store.begin(&b, store.lock(&b).unwrap()).unwrap();
        std::fs::write(building.dir().join("resume.json"), "{}").unwrap();
        std::fs::write(building.dir().join("last.tmp-77"), "").unwrap();
        let clean = store.survey(&stages, holds);
        assert!(clean.foreign.is_empty(), "{:?}", clean.foreign);
        assert_eq!(clean.entries.len(), 3);
        assert_eq!(clean.locks.len(), 3);

        let root = store.root();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(root.join("keep.txt"), "x").unwrap();
        std::fs::create_dir_all(root.join("photos/2024")).unwrap();
        std::fs::create_dir_all(root.join("train/holiday")).unwrap();
        std::fs::write(root.join("train/notes.lock"), "").unwrap();
        std::fs::write(root.join("plot").join(&p.key).join("b.png"), "").unwrap();
        std::fs::write(building.dir().join("resume.json.bak"), "").unwrap();
        std::fs::create_dir(root.join("train").join(&t.key).join("sub")).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(outside.path(), root.join("train").join(&t.key).join("link")).unwrap();
        let found = store.survey(&stages, holds);
        let mut why: Vec<String> = found
            .foreign
            .iter()
            .map(|f| {
                let rel = f
                    .path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace(&t.key, "T");
                format!("{}: {}", rel.replace(&p.key, "P").replace(&b.key, "B"), f.why)
            })
            .collect();
        why.sort();
        let mut want = vec![
            "keep.txt: not a stage folder of labpipe's cache".to_string(),
            "photos: not a stage folder of labpipe's cache".into(),
            "plot/P/b.png: a file the plot stage does not write".into(),
            "train/.partial-B/resume.json.bak: a file the train stage does not write".into(),
            "train/T/sub: a folder inside a cache entry".into(),
            "train/holiday: not a cache entry (its name is no stage key)".into(),
            "train/notes.lock: not a lock file of labpipe's".into(),
        ];
        #[cfg(unix)]
        want.push("train/T/link: a symbolic link (labpipe never follows one)".into());
        want.sort();
        assert_eq!(why, want);
        assert!(outside.path().exists());
        drop(building);
    }

    #[test]
    fn rebuilding_a_corrupt_entry_replaces_it() {
        let out = tempfile::tempdir().unwrap();
        let store = Store::new(out.path());
        let k = key("plot", json!(1));
        for content in ["one", "two"] {
            let b = store.begin(&k, store.lock(&k).unwrap()).unwrap();
            std::fs::write(b.dir().join("f"), content).unwrap();
            b.commit(0.0, &["f"]).unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(store.lookup(&k, &["f"]).unwrap().file("f")).unwrap(),
            "two"
        );
    }
}

//! The stage cache: `out/cache/<stage>/<key>/` holds a stage's artifacts and a manifest of what produced
//! them. A stage is built in `.partial-<key>/` (kept across crashes so training can resume) and renamed into
//! place when complete, under a per-stage lock so concurrent runs never corrupt each other.

pub mod canonical;
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
fn is_temporary(name: &str) -> bool {
    name.ends_with(".tmp") || name.contains(".tmp-")
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

    /// The complete stage for `key`, verified against its manifest.
    pub fn lookup(&self, key: &StageKey) -> Result<StageDir, Miss> {
        let dir = self.dir(key);
        let text = match std::fs::read_to_string(dir.join("manifest.json")) {
            Ok(t) => t,
            Err(_) if !dir.exists() => return Err(Miss::Absent),
            Err(_) => return Err(Miss::Corrupt("manifest.json is missing".into())),
        };
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| Miss::Corrupt(format!("manifest.json is unreadable: {e}")))?;
        for a in &manifest.artifacts {
            let p = dir.join(&a.name);
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
        self.root.join(&key.stage).join(format!(".partial-{}", key.key))
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

    /// Every directory in the cache, complete entries and unfinished builds, sorted by stage then key.
    pub fn list(&self) -> Vec<CacheEntry> {
        let mut out = Vec::new();
        let Ok(stages) = std::fs::read_dir(&self.root) else {
            return out;
        };
        for s in stages.flatten() {
            let stage = s.file_name().to_string_lossy().to_string();
            let Ok(keys) = std::fs::read_dir(s.path()) else {
                continue;
            };
            for k in keys.flatten() {
                let name = k.file_name().to_string_lossy().to_string();
                if !k.path().is_dir() {
                    continue;
                }
                let (key, partial) = match name.strip_prefix(".partial-") {
                    Some(key) => (key.to_string(), true),
                    None => (name, false),
                };
                out.push(CacheEntry {
                    stage: stage.clone(),
                    key,
                    path: k.path(),
                    partial,
                });
            }
        }
        out.sort();
        out
    }

    /// Lock files as (stage, key, path): one per key ever built, including keys whose directories are gone.
    pub fn lock_files(&self) -> Vec<(String, String, PathBuf)> {
        let mut out = Vec::new();
        let Ok(stages) = std::fs::read_dir(&self.root) else {
            return out;
        };
        for s in stages.flatten() {
            let stage = s.file_name().to_string_lossy().to_string();
            for f in std::fs::read_dir(s.path()).into_iter().flatten().flatten() {
                let name = f.file_name().to_string_lossy().to_string();
                if let Some(key) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".lock")) {
                    out.push((stage.clone(), key.to_string(), f.path()));
                }
            }
        }
        out.sort();
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

    /// Hash every file, write the manifest, and move the directory into place. Files named in `skip`, and
    /// temporary files a killed earlier attempt left behind, are deleted rather than listed.
    pub fn commit(self, seconds: f64, skip: &[&str]) -> Result<StageDir, CacheError> {
        let mut artifacts = Vec::new();
        let files: Vec<String> = std::fs::read_dir(&self.dir)
            .map_err(io(&self.dir))?
            .flatten()
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        for n in files.iter().filter(|n| is_temporary(n)) {
            let _ = std::fs::remove_file(self.dir.join(n));
        }
        let mut names: Vec<String> = files
            .into_iter()
            .filter(|n| n != "manifest.json" && !is_temporary(n) && !skip.contains(&n.as_str()))
            .collect();
        names.sort();
        for name in &names {
            let p = self.dir.join(name);
            let (bytes, blake3) = hash_file(&p).map_err(io(&p))?;
            artifacts.push(Artifact {
                name: name.clone(),
                bytes,
                blake3,
            });
        }
        for s in skip {
            let _ = std::fs::remove_file(self.dir.join(s));
        }
        let manifest = Manifest {
            stage: self.key.stage.clone(),
            key: self.key.key.clone(),
            key_input: self.key.input.clone(),
            artifacts,
            seconds,
            labpipe_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let mpath = self.dir.join("manifest.json");
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
        StageKey::new(stage, v, &[])
    }

    #[test]
    fn commit_then_lookup_then_detect_damage() {
        let out = tempfile::tempdir().unwrap();
        let store = Store::new(out.path());
        let k = key("train", json!({"lr": 0.1}));
        assert_eq!(store.lookup(&k).unwrap_err(), Miss::Absent);
        let b = store.begin(&k, store.lock(&k).unwrap()).unwrap();
        std::fs::write(b.dir().join("a.json"), b"{\"x\": 1}").unwrap();
        std::fs::write(b.dir().join("scratch"), b"x").unwrap();
        let done = b.commit(1.0, &["scratch"]).unwrap();
        assert_eq!(done.manifest.artifacts.len(), 1);
        assert!(store.lookup(&k).is_ok());
        assert!(
            !out.path()
                .join("cache/train")
                .join(format!(".partial-{}", k.key))
                .exists()
        );

        std::fs::write(done.file("a.json"), b"{\"x\": 2}").unwrap();
        assert!(matches!(store.lookup(&k), Err(Miss::Corrupt(m)) if m.contains("altered")));
        std::fs::write(done.file("a.json"), b"{").unwrap();
        assert!(matches!(store.lookup(&k), Err(Miss::Corrupt(m)) if m.contains("1 bytes")));
        std::fs::remove_file(done.file("a.json")).unwrap();
        assert!(matches!(store.lookup(&k), Err(Miss::Corrupt(m)) if m.contains("missing")));
    }

    #[test]
    fn a_held_lock_excludes_others_and_survives_its_file_being_replaced() {
        let out = tempfile::tempdir().unwrap();
        let store = Store::new(out.path());
        let k = key("train", json!(1));
        let held = store.lock(&k).unwrap();
        // flock locks belong to an open file, so a second open in this process is a second locker.
        assert!(store.try_lock(&k).unwrap().is_none());
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
        let done = b.commit(0.0, &[]).unwrap();
        let names: Vec<&str> = done.manifest.artifacts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["model.safetensors"]);
        assert!(!done.file("model.tmp-4242").exists());
        assert!(store.lookup(&k).is_ok());
    }

    #[test]
    fn list_shows_complete_entries_and_unfinished_builds() {
        let out = tempfile::tempdir().unwrap();
        let store = Store::new(out.path());
        let (a, b) = (key("train", json!("a")), key("train", json!("b")));
        store
            .begin(&a, store.lock(&a).unwrap())
            .unwrap()
            .commit(0.0, &[])
            .unwrap();
        let building = store.begin(&b, store.lock(&b).unwrap()).unwrap();
        let listed: Vec<(String, bool)> = store.list().into_iter().map(|e| (e.key, e.partial)).collect();
        let mut expected = vec![(a.key.clone(), false), (b.key.clone(), true)];
        expected.sort();
        assert_eq!(listed, expected);
        assert_eq!(store.partial_dir(&b), building.dir());
        let locks: Vec<String> = store.lock_files().into_iter().map(|(_, k, _)| k).collect();
        assert!(locks.contains(&a.key) && locks.contains(&b.key));
    }

    #[test]
    fn rebuilding_a_corrupt_entry_replaces_it() {
        let out = tempfile::tempdir().unwrap();
        let store = Store::new(out.path());
        let k = key("plot", json!(1));
        for content in ["one", "two"] {
            let b = store.begin(&k, store.lock(&k).unwrap()).unwrap();
            std::fs::write(b.dir().join("f"), content).unwrap();
            b.commit(0.0, &[]).unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(store.lookup(&k).unwrap().file("f")).unwrap(),
            "two"
        );
    }
}
